// Bias gradient of a convolution: db[co] = sum over all M output pixels of dy[p][co].
// Split into KSPLIT fixed chunks of pixels, partial sums to part [KSPLIT][CO] f32, summed afterwards in a
// fixed order by reduce_splits.wgsl (deterministic, no atomics). One invocation per (chunk, 4 channels).
// Layouts: dy NHWC flattened to [M][CO] act. Constants: M CO KSPLIT WG.

// #include "shared/grid.wgsl"
// #include "shared/bias_chunks.wgsl"

@compute @workgroup_size(WG)
fn bias_grad(ids: GridIds) {
  let tid = grid_index(ids, WG);
  if (tid >= CO4 * KSPLIT) {
    return;
  }
  let c4 = tid % CO4;
  let s = tid / CO4;
  part[s * CO4 + c4] = chunk_sum(s, c4, 0u, 1u);
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
  red[lid] = chunk_sum(s, c4, lid, WG);
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
