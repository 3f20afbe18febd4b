// Elementwise exact (erf) GELU and its gradient over a flat activation tensor of 4*COUNT elements.
//
//   forward:  y[i]  = gelu(x[i])
//   backward: dx[i] = dy[i] * gelu'(x[i])
//
// x, y, dy, dx: arrays of act4 (`act` storage, f32 or f16), any layout (elementwise), math in f32. Every
// activation tensor of the network has a multiple of 4 elements (channels are multiples of 4).
// Constants injected by lib/nn/ops.ts: COUNT (vec4 elements), WG (workgroup size).
// The two entry points have their own bindings; binding numbers repeat across them.

// #include "shared/grid.wgsl"
// #include "shared/gelu.wgsl"

// ---- forward: binding 0 x [COUNT] act4, binding 1 y [COUNT] act4
@group(0) @binding(0) var<storage, read> fx: array<act4>;
@group(0) @binding(1) var<storage, read_write> fy: array<act4>;

@compute @workgroup_size(WG)
fn gelu_fwd(ids: GridIds) {
  let i = grid_index(ids, WG);
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
fn gelu_bwd(ids: GridIds) {
  let i = grid_index(ids, WG);
  if (i >= COUNT) {
    return;
  }
  bdx[i] = act4(vec4f(bdy[i]) * gelu_grad4(vec4f(bx[i])));
}
