// 2-D convolution as implicit GEMM with register blocking and vec4 loads.
//
// Layouts (all row-major):
//   activations  NHWC: x [N][H][W][CI], y [N][HO][WO][CO]   (storage `act`, f32 or f16; math in f32)
//   weights      HWIO: w [KH][KW][CI][CO]                    (f32)
//   bias         [CO]                                        (f32)
// CI and CO are multiples of 4, so every load and store is a vec4 along channels.
//
// Constants injected by lib/nn/conv.ts: N H W CI CO KH KW PAD HO WO (shape), TM TN4 (register block), WG
// (workgroup size). The input gradient of a convolution is this kernel applied to dy with the weights flipped
// in space and transposed in channels (conv_transpose.wgsl) and padding KH-1-PAD, so it shares the forward's
// blocking.

// #include "shared/grid.wgsl"

const CI4: u32 = CI / 4u;
const CO4: u32 = CO / 4u;
const KTOTAL: u32 = N * HO * WO; // output pixels: the GEMM's M for forward, its K for the weight gradient

// ---------------------------------------------------------------------------------------------------------
// Forward: y = conv(x, w) + b. Each invocation computes TM consecutive output pixels x (4*TN4) channels.

@group(0) @binding(0) var<storage, read> x: array<act4>;        // NHWC [N][H][W][CI]
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;   // HWIO [KH][KW][CI][CO]
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;   // [CO]
@group(0) @binding(3) var<storage, read_write> y: array<act4>;  // NHWC [N][HO][WO][CO]

@compute @workgroup_size(WG)
fn conv_forward(ids: GridIds) {
  const CB: u32 = CO4 / TN4; // channel blocks per pixel block
  const MB: u32 = (KTOTAL + TM - 1u) / TM;
  let tid = grid_index(ids, WG);
  if (tid >= MB * CB) {
    return;
  }
  let cb = tid % CB;
  let pb = tid / CB;

  var py: array<i32, TM>;
  var px: array<i32, TM>;
  var pn: array<u32, TM>;
  for (var m = 0u; m < TM; m++) {
    let p = min(pb * TM + m, KTOTAL - 1u); // the tail block recomputes the last pixel; it is not stored
    px[m] = i32(p % WO);
    py[m] = i32((p / WO) % HO);
    pn[m] = p / (WO * HO);
  }

  var acc: array<array<vec4<f32>, TN4>, TM>;
  for (var ky = 0u; ky < KH; ky++) {
    for (var kx = 0u; kx < KW; kx++) {
      // act4 index of x[n][iy][ix][0] per pixel, and whether that tap is inside the image (else zero padding)
      var base: array<u32, TM>;
      var inside: array<bool, TM>;
      for (var m = 0u; m < TM; m++) {
        let iy = py[m] + i32(ky) - i32(PAD);
        let ix = px[m] + i32(kx) - i32(PAD);
        inside[m] = iy >= 0 && iy < i32(H) && ix >= 0 && ix < i32(W);
        base[m] = select(0u, ((pn[m] * H + u32(iy)) * W + u32(ix)) * CI4, inside[m]);
      }
      let wrow = (ky * KW + kx) * CI; // first weight row of this tap
      for (var c4 = 0u; c4 < CI4; c4++) {
        var xv: array<vec4<f32>, TM>;
        for (var m = 0u; m < TM; m++) {
          xv[m] = select(vec4<f32>(0.0), vec4<f32>(x[base[m] + c4]), inside[m]);
        }
        for (var j = 0u; j < 4u; j++) {
          let wi = (wrow + c4 * 4u + j) * CO4 + cb * TN4;
          for (var t = 0u; t < TN4; t++) {
            let wv = w[wi + t];
            for (var m = 0u; m < TM; m++) {
              acc[m][t] = fma(vec4<f32>(xv[m][j]), wv, acc[m][t]);
            }
          }
        }
      }
    }
  }

  for (var m = 0u; m < TM; m++) {
    let p = pb * TM + m;
    if (p < KTOTAL) {
      for (var t = 0u; t < TN4; t++) {
        y[p * CO4 + cb * TN4 + t] = act4(acc[m][t] + b[cb * TN4 + t]);
      }
    }
  }
}
