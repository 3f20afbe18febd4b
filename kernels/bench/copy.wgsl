// Ceiling probe for the bench: a plain vec4 copy, dst[i] = src[i], to measure memory bandwidth.
// Constants: L4 (vec4 count) WG.

// #include "shared/grid.wgsl"

@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn copy(ids: GridIds) {
  let i = grid_index(ids, WG);
  if (i < L4) {
    dst[i] = src[i];
  }
}
