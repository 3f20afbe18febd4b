// The 2-D grid index, shared by every kernel (`// #include "shared/grid.wgsl"`).
//
// A dispatch of more workgroups than the per-dimension limit is a 2-D grid (lib/gpu/gpu.ts grid2d): rows of
// num_workgroups.x workgroups, the last row possibly partial. Kernels flatten it row-major.

// The builtins of one invocation of a 1-D workgroup: an entry point without barriers takes them as one
// parameter, `fn k(ids: GridIds)`. (A kernel with barriers takes workgroup_id and num_workgroups as
// parameters of their own, so the uniformity analysis sees that group_index is uniform over the workgroup.)
struct GridIds {
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
}

// The workgroup's index in the flattened grid (uniform over the workgroup).
fn group_index(wid: vec3u, nwg: vec3u) -> u32 {
  return wid.y * nwg.x + wid.x;
}

// The invocation's index in the flattened grid of workgroups of `size` invocations.
fn grid_index(ids: GridIds, size: u32) -> u32 {
  return group_index(ids.wid, ids.nwg) * size + ids.lid;
}
