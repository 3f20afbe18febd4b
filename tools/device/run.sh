#!/usr/bin/env bash
# On the device machine (a GPU, no network), from the repository root, after tools/device/pack.sh here:
#   tools/device/run.sh unpack           unpack what .device-pack/ holds so far (call after each carry)
#   tools/device/run.sh bench [ARGS]     deno task bench --report ARGS  (bench --full + one timed training run)
#   tools/device/run.sh train [ARGS]     deno run -A main.ts ARGS  (e.g. --runs 5: the full recipe)
#   tools/device/run.sh bn [ARGS]        deno run -A experiments/airbench94.ts ARGS
# Each stage unpacks first and writes its output and JSON logs straight into $OUT (what comes back; at most
# 8 files). Carry .device-pack/deno, vulkan and b1 in the first call, then b2 b3, then b4 b5, then b6 with
# the run, back to back (a warm machine keeps what was carried and unpacked for 30 s after each call).
set -uo pipefail
cd "$(dirname "$0")/../.."
P=.device-pack
OUT="${OUT:-$PWD/logs}"
BIN=/tmp/airbench-device
mkdir -p "$BIN" "$OUT" data/cifar-10-batches-bin

unpack() {
  if [ ! -x "$BIN/deno" ] && [ -f "$P/deno/deno.xz" ]; then
    xz -dc "$P/deno/deno.xz" >"$BIN/deno.tmp" && chmod +x "$BIN/deno.tmp" && mv "$BIN/deno.tmp" "$BIN/deno"
    tar -C "$BIN" -xJf "$P/deno/denodir.tar.xz"
  fi
  if ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in "$P"/vulkan/*.deb; do [ -f "$f" ] && dpkg -x "$f" /; done
    ldconfig
  fi
  local f name
  for f in "$P"/b*/*.bin.xz; do
    [ -f "$f" ] || continue
    name=$(basename "$f" .xz)
    [ -f "data/cifar-10-batches-bin/$name" ] && continue
    xz -dc "$f" >"data/cifar-10-batches-bin/$name.tmp" && mv "data/cifar-10-batches-bin/$name.tmp" \
      "data/cifar-10-batches-bin/$name"
  done
  echo "device: deno $([ -x "$BIN/deno" ] && echo yes || echo no)," \
    "libvulkan $(ldconfig -p | grep -q libvulkan.so.1 && echo yes || echo no)," \
    "$(ls data/cifar-10-batches-bin/*.bin 2>/dev/null | wc -l) of 6 CIFAR-10 batches"
}

ready() {
  [ -x "$BIN/deno" ] || { echo "device: no deno yet: carry .device-pack/deno" >&2; exit 2; }
  [ "$(ls data/cifar-10-batches-bin/*.bin 2>/dev/null | wc -l)" -eq 6 ] ||
    { echo "device: not all six CIFAR-10 batches are here yet: carry the remaining .device-pack/b*" >&2; exit 2; }
  export PATH="$BIN:$PATH" DENO_DIR="$BIN/denodir" DENO_NO_UPDATE_CHECK=1
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  return 0
}

stage="${1:-unpack}"
shift || true
unpack
case "$stage" in
  unpack) ;;
  bench) ready && deno run -A --cached-only lib/cli/bench.ts --report --log-dir "$OUT" "$@" 2>&1 | tee "$OUT/bench.txt" ;;
  train) ready && deno run -A --cached-only main.ts --log-dir "$OUT" "$@" 2>&1 | tee "$OUT/train.txt" ;;
  bn) ready && deno run -A --cached-only experiments/airbench94.ts --log-dir "$OUT" "$@" 2>&1 | tee "$OUT/bn.txt" ;;
  *) echo "usage: tools/device/run.sh unpack|bench|train|bn [ARGS]" >&2; exit 2 ;;
esac
