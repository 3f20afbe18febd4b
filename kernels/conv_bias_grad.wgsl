// Bias gradient of a convolution: db[co] = sum over all M output pixels of dy[p][co].
// Split into KSPLIT fixed chunks of pixels, partial sums to part [KSPLIT][CO] f32, summed afterwards in a fixed
// order by reduce_splits.wgsl (deterministic, no atomics). One invocation per (chunk, 4 channels).
// Layouts: dy NHWC flattened to [M][CO] act. Constants: M CO KSPLIT WG.

// #include "shared/grid.wgsl"

const CO4: u32 = CO / 4u;
const KCHUNK: u32 = (M + KSPLIT - 1u) / KSPLIT;

@group(0) @binding(0) var<storage, read> dy: array<act4>;
@group(0) @binding(1) var<storage, read_write> part: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn bias_grad(ids: GridIds) {
  let tid = grid_index(ids, WG);
  if (tid >= CO4 * KSPLIT) {
    return;
  }
  let c4 = tid % CO4;
  let s = tid / CO4;
  var acc = vec4<f32>(0.0);
  let p1 = min(M, (s + 1u) * KCHUNK);
  for (var p = s * KCHUNK; p < p1; p++) {
    acc += vec4<f32>(dy[p * CO4 + c4]);
  }
  part[s * CO4 + c4] = acc;
}

// bias_grad_wg: one workgroup of WG invocations per (chunk, 4 channels); its invocations stride over the
// chunk's pixels and the workgroup sums their vec4s by a fixed tree in workgroup memory (WG a power of two).
// Same outputs as bias_grad (partials [KSPLIT][CO], db itself when KSPLIT = 1); many more invocations per
// chunk, for GPUs. conv_bias_grad_sg.wgsl is the same with subgroup sums.
var<workgroup> red: array<vec4<f32>, WG>;

@compute @workgroup_size(WG)
fn bias_grad_wg(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let g = group_index(wid, nwg); // uniform across the workgroup
  if (g >= CO4 * KSPLIT) {
    return;
  }
  let c4 = g % CO4;
  let s = g / CO4;
  var acc = vec4<f32>(0.0);
  let p1 = min(M, (s + 1u) * KCHUNK);
  for (var p = s * KCHUNK + lid; p < p1; p += WG) {
    acc += vec4<f32>(dy[p * CO4 + c4]);
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var h = WG / 2u; h > 0u; h /= 2u) {
    if (lid < h) {
      red[lid] += red[lid + h];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    part[s * CO4 + c4] = red[0];
  }
}
