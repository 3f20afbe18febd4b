// Sums KSPLIT partial results in a fixed order: out[i] = sum_s part[s][i]. Used after the split-K weight and
// bias gradients so their result is deterministic. Layouts: part [KSPLIT][L4] vec4 f32, out [L4] vec4 f32.
// Constants: L4 KSPLIT WG NWX.

@group(0) @binding(0) var<storage, read> part: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn reduce_splits(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x + gid.y * (NWX * WG);
  if (i >= L4) {
    return;
  }
  var acc = vec4<f32>(0.0);
  for (var s = 0u; s < KSPLIT; s++) {
    acc += part[s * L4 + i];
  }
  out[i] = acc;
}
