#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests/sweep_test.ts (and trying `deno task sweep --slurm`
# without a cluster). Needs root and Debian's `slurm-wlm` and `munge` (.ci/run installs them):
#   munged (as user munge, the package's key), then slurmctld and slurmd as root, from a slurm.conf written for
#   this host into $AIRBENCH_SLURM_DIR (default /var/tmp/airbench-slurm): proctrack/linuxproc, task/none,
#   jobacct_gather/none, select/cons_tres; one partition "debug" with this node.
# Prints `SLURM_CONF=<path>` on its last line (sbatch, squeue, ... need it in their environment), exit 0 once
# `sinfo` sees the node idle. Exit 3 naming what is missing when it cannot start (no root, no package).
# Idempotent: daemons already running from this folder are kept. tools/slurm/stop.sh stops them.
set -euo pipefail
dir=${AIRBENCH_SLURM_DIR:-/var/tmp/airbench-slurm}
missing() {
  echo "slurm: cannot start: $1" >&2
  exit 3
}
[ "$(id -u)" = 0 ] || missing "not root (slurmctld and slurmd run as root here)"
for b in munged slurmctld slurmd sinfo sbatch; do
  command -v "$b" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "$b" >/dev/null 2>&1 ||
    missing "no $b (apt-get install --no-install-recommends slurm-wlm munge)"
done
export PATH=$PATH:/usr/sbin
[ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create >/dev/null 2>&1 ||
  missing "no /etc/munge/munge.key and mungekey could not make one"

host=$(hostname -s)
cpus=$(nproc)
mem=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024))
mkdir -p "$dir/ctld" "$dir/d"
conf="$dir/slurm.conf"
cat >"$conf.new" <<CONF
ClusterName=airbench
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=${dir}/ctld
SlurmdSpoolDir=${dir}/d
SlurmctldPidFile=${dir}/slurmctld.pid
SlurmdPidFile=${dir}/slurmd.pid
SlurmctldLogFile=${dir}/slurmctld.log
SlurmdLogFile=${dir}/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
mv "$conf.new" "$conf"
export SLURM_CONF=$conf

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if ! pgrep -u munge -x munged >/dev/null 2>&1; then
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- munged || missing "munged did not start"
fi
alive "$dir/slurmctld.pid" || slurmctld -i || missing "slurmctld did not start (see $dir/slurmctld.log)"
alive "$dir/slurmd.pid" || slurmd || missing "slurmd did not start (see $dir/slurmd.log)"

for _ in $(seq 1 60); do
  if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
    echo "SLURM_CONF=$conf"
    exit 0
  fi
  sleep 0.5
done
missing "the node did not come up idle in 30 s: $(sinfo -h -o '%T %E' 2>&1 | head -1) (see $dir/*.log)"
