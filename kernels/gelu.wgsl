// Elementwise exact (erf) GELU and its gradient over a flat activation tensor of 4*COUNT elements.
//
//   forward:  y[i]  = gelu(x[i])
//   backward: dx[i] = dy[i] * gelu'(x[i])
//
// x, y, dy, dx: arrays of act4 (`act` storage, f32 or f16), any layout (elementwise), math in f32. Every
// activation tensor of the network has a multiple of 4 elements (channels are multiples of 4).
// Constants injected by lib/ops.ts: COUNT (vec4 elements), WG (workgroup size).
// Grids wider than 65535 workgroups are 2-D (lib/gpu.ts grid2d): linear index from num_workgroups.
// The two entry points have their own bindings; binding numbers repeat across them.

fn flat_index(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wid.y * nwg.x + wid.x) * WG + lid;
}

// ---- forward: binding 0 x [COUNT] act4, binding 1 y [COUNT] act4
@group(0) @binding(0) var<storage, read> fx: array<act4>;
@group(0) @binding(1) var<storage, read_write> fy: array<act4>;

@compute @workgroup_size(WG)
fn gelu_fwd(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = flat_index(wid, nwg, lid);
  if (i >= COUNT) {
    return;
  }
  fy[i] = act4(gelu4(vec4f(fx[i])));
}

// ---- backward: binding 0 x [COUNT] act4, binding 1 dy [COUNT] act4, binding 2 dx [COUNT] act4
@group(0) @binding(0) var<storage, read> bx: array<act4>;
@group(0) @binding(1) var<storage, read> bdy: array<act4>;
@group(0) @binding(2) var<storage, read_write> bdx: array<act4>;

@compute @workgroup_size(WG)
fn gelu_bwd(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = flat_index(wid, nwg, lid);
  if (i >= COUNT) {
    return;
  }
  bdx[i] = act4(vec4f(bdy[i]) * gelu_grad4(vec4f(bx[i])));
}
