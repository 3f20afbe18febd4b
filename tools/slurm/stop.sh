#!/usr/bin/env bash
# Stops the slurmd and slurmctld that tools/slurm/start.sh started (by their pid files); munged is left running
# (other programs may use it).
dir=${AIRBENCH_SLURM_DIR:-/var/tmp/airbench-slurm}
for d in slurmd slurmctld; do
  if [ -s "$dir/$d.pid" ] && kill -0 "$(cat "$dir/$d.pid")" 2>/dev/null; then
    kill "$(cat "$dir/$d.pid")"
  fi
done
