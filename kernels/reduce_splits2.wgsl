// Two independent sets of split partial sums in one dispatch (a convolution's weight and bias gradients):
// invocations below BOFF (a multiple of WG) do exactly reduce_splits on part -> out, the others the same on
// part2 [KSPLITB][L4B] -> out2. Same bits as two reduce_splits dispatches.
// Constants: L4 KSPLIT WG (reduce_splits.wgsl), L4B KSPLITB BOFF.

// #include "reduce_splits.wgsl"

@group(0) @binding(2) var<storage, read> part2: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out2: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn reduce_splits2(ids: GridIds) {
  let t = grid_index(ids, WG);
  if (t < BOFF) {
    if (t < L4) {
      reduce_part(t);
    }
    return;
  }
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
