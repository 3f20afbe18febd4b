// The register-blocked multiply of the workgroup-tiled convolution GEMMs (conv_tiled.wgsl: forward and input
// gradient; conv_wgrad_tiled.wgsl: weight gradient): `// #include "shared/tile_mul.wgsl"`.
//
// The including kernel defines the constants BM BN BK TM TN4 DB (tile shape, double buffering) and AS_ROW
// (the vec4 stride of one K row of the A tile, >= BM/4), and declares the staged tiles
//   var<workgroup> As: array<vec4<f32>, DB * BK * AS_ROW>;  // As[buf][k][m/4][m%4]: A[m0 + m][k0 + k]
//   var<workgroup> Bs: array<vec4<f32>, DB * BK * BN4>;     // Bs[buf][k][n4]: B[k0 + k][n0/4 + n4]
// An invocation (tx, ty) owns the TM rows ty*4 + 4*WGY*i + j (i < TM/4, j < 4) and the TN4 vec4 columns
// tx + WGX*t of the BM x BN output tile.

const BM4: u32 = BM / 4u;
const BN4: u32 = BN / 4u;
const TMV: u32 = TM / 4u;   // vec4 row groups per invocation
const WGX: u32 = BN4 / TN4; // invocations along columns
const WGY: u32 = BM4 / TMV; // invocations along rows
const WGS: u32 = WGX * WGY; // workgroup size

// Multiply the staged chunk in buffer `buf` into this invocation's accumulators.
fn mul_tiles(buf: u32, tx: u32, ty: u32, acc: ptr<function, array<array<vec4<f32>, TN4>, TM>>) {
  let ao = buf * BK * AS_ROW;
  let bo = buf * BK * BN4;
  for (var kk = 0u; kk < BK; kk++) {
    var av: array<vec4<f32>, TMV>;
    for (var i = 0u; i < TMV; i++) {
      av[i] = As[ao + kk * AS_ROW + ty + WGY * i];
    }
    for (var t = 0u; t < TN4; t++) {
      let bv = Bs[bo + kk * BN4 + tx + WGX * t];
      for (var i = 0u; i < TMV; i++) {
        for (var j = 0u; j < 4u; j++) {
          (*acc)[i * 4u + j][t] = fma(vec4<f32>(av[i][j]), bv, (*acc)[i * 4u + j][t]);
        }
      }
    }
  }
}
