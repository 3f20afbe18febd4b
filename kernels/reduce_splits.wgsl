// Sums KSPLIT partial results in a fixed order: out[i] = sum_s part[s][i]. Used after the split-K weight and
// bias gradients so their result is deterministic. Layouts: part [KSPLIT][L4] vec4 f32, out [L4] vec4 f32.
// Constants: L4 KSPLIT WG, and L4B KSPLITB BOFF for reduce_splits2.
//
// reduce_splits2 reduces two independent sets in one dispatch (a convolution's weight and bias gradients):
// invocations below BOFF (a multiple of WG) do exactly reduce_splits on part -> out, the others on
// part2 [KSPLITB][L4B] -> out2. Same bits as two reduce_splits dispatches.

// #include "shared/grid.wgsl"

@group(0) @binding(0) var<storage, read> part: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> part2: array<vec4<f32>>;      // reduce_splits2 only
@group(0) @binding(3) var<storage, read_write> out2: array<vec4<f32>>; // reduce_splits2 only

@compute @workgroup_size(WG)
fn reduce_splits(ids: GridIds) {
  let i = grid_index(ids, WG);
  if (i >= L4) {
    return;
  }
  var acc = vec4<f32>(0.0);
  for (var s = 0u; s < KSPLIT; s++) {
    acc += part[s * L4 + i];
  }
  out[i] = acc;
}

@compute @workgroup_size(WG)
fn reduce_splits2(ids: GridIds) {
  let t = grid_index(ids, WG);
  if (t < BOFF) {
    if (t >= L4) {
      return;
    }
    var acc = vec4<f32>(0.0);
    for (var s = 0u; s < KSPLIT; s++) {
      acc += part[s * L4 + t];
    }
    out[t] = acc;
  } else {
    let i = t - BOFF;
    if (i >= L4B) {
      return;
    }
    var acc = vec4<f32>(0.0);
    for (var s = 0u; s < KSPLITB; s++) {
      acc += part2[s * L4B + i];
    }
    out2[i] = acc;
  }
}
