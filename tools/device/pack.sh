#!/usr/bin/env bash
# Here, on a machine without a GPU: pack what a run on the `device` machine needs (it reaches no network) into
# .device-pack/, which .git/info/exclude keeps out of git and `carry` sends (64 MiB per call at most):
#   deno/      the Deno binary (xz) and a DENO_DIR holding the npm packages the programs import
#   vulkan/    the Vulkan loader (libvulkan1, amd64) for a machine that has none
#   b1 .. b6/  the six CIFAR-10 batches (xz, ~23 MB each), one folder each so that calls can carry them in turns
# Then see tools/device/run.sh for the calls. Needs the dataset cache (any earlier `deno run -A main.ts`).
set -euo pipefail
cd "$(dirname "$0")/../.."
P=.device-pack
if [ -d .git ] && ! grep -qx "/$P/" .git/info/exclude 2>/dev/null; then
  mkdir -p .git/info && printf "/%s/\n/%s.tmp/\n" "$P" "$P" >>.git/info/exclude
fi
DATA="${AIRBENCH_DATA:-data}/cifar-10-batches-bin"
for f in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do
  [ -f "$DATA/$f.bin" ] || { echo "pack: $DATA/$f.bin missing: run 'deno run -A main.ts --help' then any training run once" >&2; exit 2; }
done
rm -rf "$P.tmp" && mkdir -p "$P.tmp"/{deno,vulkan,b1,b2,b3,b4,b5,b6}
xz -T2 -6 -c "$(readlink -f "$(command -v deno)")" >"$P.tmp/deno/deno.xz"
# The npm packages the programs import, cached in a DENO_DIR of their own (the machine has no registry).
DENO_DIR="$PWD/$P.tmp/denodir" deno cache --quiet main.ts experiments/airbench94.ts lib/cli/bench.ts lib/cli/reproduce.ts
tar -C "$P.tmp" -cJf "$P.tmp/deno/denodir.tar.xz" denodir && rm -rf "$P.tmp/denodir"
o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64-lists)
mkdir -p /tmp/amd64-lists/partial
apt-get "${o[@]}" update -qq
(cd "$P.tmp/vulkan" && apt-get "${o[@]}" download -qq libvulkan1)
i=0
for f in data_batch_1 data_batch_2 data_batch_3 data_batch_4 data_batch_5 test_batch; do
  i=$((i + 1))
  xz -T2 -6 -c "$DATA/$f.bin" >"$P.tmp/b$i/$f.bin.xz"
done
rm -rf "$P" && mv "$P.tmp" "$P"
du -sh "$P"/* | sed 's/^/pack: /'
