// Sums KSPLIT partial results in a fixed order: out[i] = sum_s part[s][i]. Used after the split-K weight and
// bias gradients so their result is deterministic. Layouts: part [KSPLIT][L4] vec4 f32, out [L4] vec4 f32.
// Constants: L4 KSPLIT WG. kernels/reduce_splits2.wgsl reduces two sets in one dispatch with the same sum.

// #include "shared/grid.wgsl"

@group(0) @binding(0) var<storage, read> part: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;

// out[i] for i < L4.
fn reduce_part(i: u32) {
  var acc = vec4<f32>(0.0);
  for (var s = 0u; s < KSPLIT; s++) {
    acc += part[s * L4 + i];
  }
  out[i] = acc;
}

@compute @workgroup_size(WG)
fn reduce_splits(ids: GridIds) {
  let i = grid_index(ids, WG);
  if (i >= L4) {
    return;
  }
  reduce_part(i);
}
