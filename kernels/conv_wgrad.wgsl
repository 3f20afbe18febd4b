// Weight gradient of a 2-D convolution: dw[ky][kx][ci][co] = sum over output pixels p = (n, oy, ox) of
//   x[n][oy+ky-PAD][ox+kx-PAD][ci] * dy[n][oy][ox][co].
// A GEMM with M = KH*KW*CI rows, CO columns and K = N*HO*WO (large): K is split into KSPLIT fixed chunks
// whose partial sums go to `part` and are summed in a fixed order by reduce_splits.wgsl (deterministic, no
// atomics). Each invocation computes 4*TMV input channels x 4*TN4 output channels for one tap and one chunk.
//
// Layouts: x NHWC [N][H][W][CI] act; dy NHWC [N][HO][WO][CO] act;
//          part [KSPLIT][KH][KW][CI][CO] f32 (with KSPLIT = 1 this is dw itself, HWIO).
// Constants: N H W CI CO KH KW PAD HO WO TMV TN4 KSPLIT WG.

// #include "shared/grid.wgsl"

const CI4: u32 = CI / 4u;
const CO4: u32 = CO / 4u;
const KTOTAL: u32 = N * HO * WO;
const KCHUNK: u32 = (KTOTAL + KSPLIT - 1u) / KSPLIT;
const CB: u32 = CO4 / TN4;        // column blocks
const RB: u32 = KH * KW * (CI4 / TMV); // row blocks

@group(0) @binding(0) var<storage, read> x: array<act4>;
@group(0) @binding(1) var<storage, read> dy: array<act4>;
@group(0) @binding(2) var<storage, read_write> part: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn conv_wgrad(ids: GridIds) {
  wgrad_block(grid_index(ids, WG));
}

fn wgrad_block(tid: u32) {
  if (tid >= CB * RB * KSPLIT) {
    return;
  }
  let cb = tid % CB;
  let rb = (tid / CB) % RB;
  let s = tid / (CB * RB);
  let tap = rb / (CI4 / TMV);
  let ky = tap / KW;
  let kx = tap % KW;
  let c40 = (rb % (CI4 / TMV)) * TMV; // first input-channel vec4

  var acc: array<array<vec4<f32>, TN4>, TMV * 4u>;
  let p0 = s * KCHUNK;
  let p1 = min(KTOTAL, p0 + KCHUNK);
  for (var p = p0; p < p1; p++) {
    let ox = p % WO;
    let oy = (p / WO) % HO;
    let n = p / (WO * HO);
    let iy = i32(oy) + i32(ky) - i32(PAD);
    let ix = i32(ox) + i32(kx) - i32(PAD);
    if (iy < 0 || iy >= i32(H) || ix < 0 || ix >= i32(W)) {
      continue; // zero padding contributes nothing
    }
    let xb = ((n * H + u32(iy)) * W + u32(ix)) * CI4 + c40;
    var dv: array<vec4<f32>, TN4>;
    for (var t = 0u; t < TN4; t++) {
      dv[t] = vec4<f32>(dy[p * CO4 + cb * TN4 + t]);
    }
    for (var v = 0u; v < TMV; v++) {
      let xv = vec4<f32>(x[xb + v]);
      for (var j = 0u; j < 4u; j++) {
        for (var t = 0u; t < TN4; t++) {
          acc[v * 4u + j][t] = fma(vec4<f32>(xv[j]), dv[t], acc[v * 4u + j][t]);
        }
      }
    }
  }

  // row r = (ky*KW + kx)*CI + ci of the HWIO gradient
  let row0 = tap * CI + c40 * 4u;
  for (var r = 0u; r < TMV * 4u; r++) {
    for (var t = 0u; t < TN4; t++) {
      part[(s * KH * KW * CI + row0 + r) * CO4 + cb * TN4 + t] = acc[r][t];
    }
  }
}
