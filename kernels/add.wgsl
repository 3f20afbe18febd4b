// Elementwise sum of two activation tensors of 4*COUNT elements: y[i] = a[i] + b[i].
// Used by residual connections (forward) and where a tensor feeds two consumers (the sum of their gradients).
//
// a, b, y: arrays of act4 (`act` storage, f32 or f16), any layout (elementwise), the sum in f32.
// Constants injected by lib/nn/ops.ts: COUNT (vec4 elements), WG (workgroup size).

// #include "shared/grid.wgsl"

@group(0) @binding(0) var<storage, read> a: array<act4>;
@group(0) @binding(1) var<storage, read> b: array<act4>;
@group(0) @binding(2) var<storage, read_write> y: array<act4>;

@compute @workgroup_size(WG)
fn add(ids: GridIds) {
  let i = grid_index(ids, WG);
  if (i >= COUNT) {
    return;
  }
  y[i] = act4(vec4f(a[i]) + vec4f(b[i]));
}
