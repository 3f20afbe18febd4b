// Ceiling probe for the bench: C = A * B in f32 with A stored K-major (at [K][M], i.e. column-major A) and
// B, C row-major. Each step k is an outer product of a row of `at` and a row of `b`, both read as contiguous
// vec4s: each invocation keeps a (4*TMV) x (4*TN4) block of C in registers, the same register blocking as the
// convolution weight gradient (kernels/conv_wgrad.wgsl).
// Layouts: at [K][M], b [K][N], c [M][N], all f32; M % (4*TMV) == 0, N % (4*TN4) == 0.
// Constants: M N K TMV TN4 WG.

// #include "shared/grid.wgsl"

const M4: u32 = M / 4u;
const N4: u32 = N / 4u;
const CB: u32 = N4 / TN4; // column blocks
const RB: u32 = M4 / TMV; // row blocks

@group(0) @binding(0) var<storage, read> at: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> c: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn matmul(ids: GridIds) {
  let tid = grid_index(ids, WG);
  if (tid >= RB * CB) {
    return;
  }
  let cb = tid % CB;
  let rb = tid / CB;
  var acc: array<array<vec4<f32>, TN4>, TMV * 4u>;
  for (var k = 0u; k < K; k++) {
    var bv: array<vec4<f32>, TN4>;
    for (var t = 0u; t < TN4; t++) {
      bv[t] = b[k * N4 + cb * TN4 + t];
    }
    for (var v = 0u; v < TMV; v++) {
      let av = at[k * M4 + rb * TMV + v];
      for (var j = 0u; j < 4u; j++) {
        for (var t = 0u; t < TN4; t++) {
          acc[v * 4u + j][t] = fma(vec4<f32>(av[j]), bv[t], acc[v * 4u + j][t]);
        }
      }
    }
  }
  for (var r = 0u; r < TMV * 4u; r++) {
    for (var t = 0u; t < TN4; t++) {
      c[(rb * TMV * 4u + r) * N4 + cb * TN4 + t] = acc[r][t];
    }
  }
}
