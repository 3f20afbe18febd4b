// Bias gradient with subgroup sums: bias_grad_wg of conv_bias_grad.wgsl (same bindings, constants and
// outputs), the workgroup's vec4s summed by subgroupAdd, then the subgroups' sums in workgroup memory in a
// fixed order. Compiled only where the device has the "subgroups" feature (lib/gpu/gpu.ts; the WGSL omits
// `enable subgroups;`, which Deno's naga rejects). Constants: M CO KSPLIT WG.

// #include "shared/grid.wgsl"
// #include "shared/bias_chunks.wgsl"

var<workgroup> red: array<vec4<f32>, WG>; // one slot per subgroup (at most WG of them)

@compute @workgroup_size(WG)
fn bias_grad_sg(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
  @builtin(subgroup_size) sg_size: u32,
  @builtin(subgroup_invocation_id) sg_lane: u32,
) {
  let g = group_index(wid, nwg); // uniform across the workgroup
  if (g >= CO4 * KSPLIT) {
    return;
  }
  let c4 = g % CO4;
  let s = g / CO4;
  let sum = subgroupAdd(chunk_sum(s, c4, lid, WG));
  // Subgroups are consecutive local invocation indices (lavapipe, Vulkan with full subgroups): subgroup
  // lid / sg_size; its first lane publishes the sum.
  if (sg_lane == 0u) {
    red[lid / sg_size] = sum;
  }
  workgroupBarrier();
  if (lid == 0u) {
    var total = vec4<f32>(0.0);
    for (var i = 0u; i < (WG + sg_size - 1u) / sg_size; i++) {
      total += red[i];
    }
    part[s * CO4 + c4] = total;
  }
}
