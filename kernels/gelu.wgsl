// Elementwise exact (erf) GELU and its gradient over a flat activation tensor of COUNT elements.
//
//   forward:  y[i]  = gelu(x[i])
//   backward: dx[i] = dy[i] * gelu'(x[i])
//
// x, y, dy, dx: `act` storage (f32 or f16), any layout (elementwise), math in f32.
// Constants injected by lib/ops.ts: COUNT (elements; vec4 elements for the *4 entry points), WG (workgroup
// size). The *4 entry points (element count a multiple of 4) bind the same buffers as arrays of act4.
// Grids wider than 65535 workgroups are 2-D (lib/gpu.ts grid2d): linear index from num_workgroups.
// Each entry point has its own bindings; binding numbers repeat across entry points (only the interface of
// one entry point has to be collision-free).

fn flat_index(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wid.y * nwg.x + wid.x) * WG + lid;
}

// ---- forward, scalar: binding 0 x [COUNT], binding 1 y [COUNT]
@group(0) @binding(0) var<storage, read> fx: array<act>;
@group(0) @binding(1) var<storage, read_write> fy: array<act>;

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
  fy[i] = act(gelu_f32(f32(fx[i])));
}

// ---- forward, vec4: binding 0 x [COUNT] act4, binding 1 y [COUNT] act4
@group(0) @binding(0) var<storage, read> fx4: array<act4>;
@group(0) @binding(1) var<storage, read_write> fy4: array<act4>;

fn gelu4(v: vec4f) -> vec4f {
  return vec4f(gelu_f32(v.x), gelu_f32(v.y), gelu_f32(v.z), gelu_f32(v.w));
}

fn gelu_grad4(v: vec4f) -> vec4f {
  return vec4f(gelu_grad_f32(v.x), gelu_grad_f32(v.y), gelu_grad_f32(v.z), gelu_grad_f32(v.w));
}

@compute @workgroup_size(WG)
fn gelu_fwd4(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = flat_index(wid, nwg, lid);
  if (i >= COUNT) {
    return;
  }
  fy4[i] = act4(gelu4(vec4f(fx4[i])));
}

// ---- backward, scalar: binding 0 x [COUNT], binding 1 dy [COUNT], binding 2 dx [COUNT]
@group(0) @binding(0) var<storage, read> bx: array<act>;
@group(0) @binding(1) var<storage, read> bdy: array<act>;
@group(0) @binding(2) var<storage, read_write> bdx: array<act>;

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
  bdx[i] = act(f32(bdy[i]) * gelu_grad_f32(f32(bx[i])));
}

// ---- backward, vec4: binding 0 x, binding 1 dy, binding 2 dx, each [COUNT] act4
@group(0) @binding(0) var<storage, read> bx4: array<act4>;
@group(0) @binding(1) var<storage, read> bdy4: array<act4>;
@group(0) @binding(2) var<storage, read_write> bdx4: array<act4>;

@compute @workgroup_size(WG)
fn gelu_bwd4(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = flat_index(wid, nwg, lid);
  if (i >= COUNT) {
    return;
  }
  bdx4[i] = act4(vec4f(bdy4[i]) * gelu_grad4(vec4f(bx4[i])));
}
