// Ceiling probe for the bench: C = A * B, f32, row-major, register-blocked like the convolutions
// (each invocation computes TM rows x 4*TN4 columns with vec4 loads along the columns).
// Layouts: a [M][K], b [K][N], c [M][N], all f32; N % (4*TN4) == 0, M % TM == 0.
// Constants: M N K TM TN4 WG NWX.

const N4: u32 = N / 4u;
const CB: u32 = N4 / TN4;

@group(0) @binding(0) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn matmul(@builtin(global_invocation_id) gid: vec3u) {
  let tid = gid.x + gid.y * (NWX * WG);
  if (tid >= (M / TM) * CB) {
    return;
  }
  let cb = tid % CB;
  let r0 = (tid / CB) * TM;
  var acc: array<array<vec4<f32>, TN4>, TM>;
  for (var k4 = 0u; k4 < K / 4u; k4++) {
    var av: array<vec4<f32>, TM>;
    for (var m = 0u; m < TM; m++) {
      av[m] = a[((r0 + m) * K) / 4u + k4];
    }
    for (var j = 0u; j < 4u; j++) {
      for (var t = 0u; t < TN4; t++) {
        let bv = b[(k4 * 4u + j) * N4 + cb * TN4 + t];
        for (var m = 0u; m < TM; m++) {
          acc[m][t] = fma(vec4<f32>(av[m][j]), bv, acc[m][t]);
        }
      }
    }
  }
  for (var m = 0u; m < TM; m++) {
    for (var t = 0u; t < TN4; t++) {
      c[(r0 + m) * N4 + cb * TN4 + t] = acc[m][t];
    }
  }
}
