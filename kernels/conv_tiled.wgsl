// 2-D convolution as implicit GEMM with workgroup-memory tiling (the classic shared-memory tiled GEMM):
// the "workgroup" variant of conv_forward in conv.wgsl, for real GPUs (lib/conv.ts tilesFor()).
//
// Same semantics, layouts and bindings as conv_forward in conv.wgsl:
//   x NHWC [N][H][W][CI] act, w HWIO [KH][KW][CI][CO] f32, b [CO] f32, y NHWC [N][HO][WO][CO] act,
//   zero padding PAD, stride 1, CI and CO multiples of 4.
// As a GEMM: y[M][CO] = A[M][K] * w[K][CO] + b with M = N*HO*WO output pixels and K = KH*KW*CI, where A is the
// im2col'd input, A[p][(ky*KW + kx)*CI + ci] = x[n][oy+ky-PAD][ox+kx-PAD][ci] (0 outside the image). The HWIO
// weights are already w[K][CO] row-major with the same K order.
//
// A workgroup computes a BM x BN output tile (BM pixels x BN channels). It walks K in chunks of BK: the
// invocations cooperatively load the A tile [BM][BK] and the weight tile [BK][BN] into workgroup memory (f32),
// barrier, accumulate from workgroup memory into registers, barrier. Each invocation owns TM pixels (TM/4
// groups of 4 consecutive pixels, strided by 4*WGY) x TN4 vec4 channels (strided by WGX): the workgroup is
// WGX = BN/(4*TN4) by WGY = BM/TM invocations.
// Global loads are vec4 along channels: in the A tile consecutive invocations read consecutive channel vec4s
// of one pixel (NHWC), in the weight tile consecutive output-channel vec4s of one row (HWIO); output stores
// are consecutive channel vec4s. Because CI and BK are multiples of 4, a vec4 of K never straddles two taps.
// Edges: pixels >= M, channels >= CO and K rows >= K load as 0 and are not stored.
//
// Constants injected by lib/conv.ts: N H W CI CO KH KW PAD HO WO (shape), BM BN BK TM TN4 (tile), NWX (grid).
// The input gradient runs this kernel on dy with flipped, transposed weights (see conv.wgsl).

const CI4: u32 = CI / 4u;
const CO4: u32 = CO / 4u;
const M: u32 = N * HO * WO;
const KDIM: u32 = KH * KW * CI;
const BM4: u32 = BM / 4u;
const BN4: u32 = BN / 4u;
const BK4: u32 = BK / 4u;
const TMV: u32 = TM / 4u;           // vec4 pixel groups per invocation
const WGX: u32 = BN4 / TN4;         // invocations along channels
const WGY: u32 = BM4 / TMV;         // invocations along pixels
const WGS: u32 = WGX * WGY;         // workgroup size
const NT: u32 = (CO + BN - 1u) / BN; // channel tiles
const MT: u32 = (M + BM - 1u) / BM;  // pixel tiles
const KT: u32 = (KDIM + BK - 1u) / BK;
const A_VEC: u32 = BM * BK4;        // vec4 loads per A tile
const B_VEC: u32 = BK * BN4;        // vec4 loads per weight tile
const A_LOADS: u32 = (A_VEC + WGS - 1u) / WGS;
const B_LOADS: u32 = (B_VEC + WGS - 1u) / WGS;
// A tile stored transposed, [BK][BM] with 4 consecutive pixels per vec4; one vec4 of padding per row halves
// the bank conflicts of the transposing stores.
const AS_ROW: u32 = BM4 + 1u;

@group(0) @binding(0) var<storage, read> x: array<act4>;        // NHWC [N][H][W][CI]
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>;   // HWIO [KH][KW][CI][CO]
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;   // [CO]
@group(0) @binding(3) var<storage, read_write> y: array<act4>;  // NHWC [N][HO][WO][CO]

var<workgroup> As: array<vec4<f32>, BK * AS_ROW>; // As[k][m/4][m%4] = A[m0 + m][k0 + k]
var<workgroup> Bs: array<vec4<f32>, BK * BN4>;    // Bs[k][n4] = w[k0 + k][n0/4 + n4]

@compute @workgroup_size(WGS)
fn conv_forward(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let tile = wid.x + wid.y * NWX; // uniform across the workgroup, so the early return keeps barriers uniform
  if (tile >= MT * NT) {
    return;
  }
  let m0 = (tile / NT) * BM; // channel tiles of one pixel tile are neighbours: the A rows stay in cache
  let n04 = (tile % NT) * BN4;
  let tx = lid % WGX;
  let ty = lid / WGX;

  // The pixel each A-tile load slot reads is the same for every K chunk: decode it once.
  var a_m: array<u32, A_LOADS>;    // row of the A tile
  var a_kq: array<u32, A_LOADS>;   // vec4 column of the A tile
  var a_ok: array<bool, A_LOADS>;  // slot exists and the pixel is < M
  var a_py: array<i32, A_LOADS>;
  var a_px: array<i32, A_LOADS>;
  var a_pn: array<u32, A_LOADS>;
  for (var l = 0u; l < A_LOADS; l++) {
    let idx = lid + l * WGS;
    a_kq[l] = idx % BK4;
    a_m[l] = idx / BK4;
    let p = min(m0 + a_m[l], M - 1u);
    a_ok[l] = idx < A_VEC && m0 + a_m[l] < M;
    a_px[l] = i32(p % WO);
    a_py[l] = i32((p / WO) % HO);
    a_pn[l] = p / (WO * HO);
  }

  var acc: array<array<vec4<f32>, TN4>, TM>;
  for (var kt = 0u; kt < KT; kt++) {
    let k0 = kt * BK;
    // A tile: im2col gather, zero for padding and out-of-range rows / columns.
    for (var l = 0u; l < A_LOADS; l++) {
      let gk = k0 + a_kq[l] * 4u;
      let tap = gk / CI;
      let iy = a_py[l] + i32(tap / KW) - i32(PAD);
      let ix = a_px[l] + i32(tap % KW) - i32(PAD);
      let ok = a_ok[l] && gk < KDIM && iy >= 0 && iy < i32(H) && ix >= 0 && ix < i32(W);
      var v = vec4<f32>(0.0);
      if (ok) {
        v = vec4<f32>(x[((a_pn[l] * H + u32(iy)) * W + u32(ix)) * CI4 + (gk % CI) / 4u]);
      }
      if (lid + l * WGS < A_VEC) {
        let m = a_m[l];
        for (var j = 0u; j < 4u; j++) {
          As[(a_kq[l] * 4u + j) * AS_ROW + m / 4u][m % 4u] = v[j];
        }
      }
    }
    // Weight tile: rows k0.. of w[K][CO], zero beyond K and CO.
    for (var l = 0u; l < B_LOADS; l++) {
      let idx = lid + l * WGS;
      let n4 = idx % BN4;
      let kk = idx / BN4;
      let gk = k0 + kk;
      let gn4 = n04 + n4;
      var v = vec4<f32>(0.0);
      if (idx < B_VEC && gk < KDIM && gn4 < CO4) {
        v = w[gk * CO4 + gn4];
      }
      if (idx < B_VEC) {
        Bs[kk * BN4 + n4] = v;
      }
    }
    workgroupBarrier();

    for (var kk = 0u; kk < BK; kk++) {
      var av: array<vec4<f32>, TMV>;
      for (var i = 0u; i < TMV; i++) {
        av[i] = As[kk * AS_ROW + ty + WGY * i];
      }
      for (var t = 0u; t < TN4; t++) {
        let bv = Bs[kk * BN4 + tx + WGX * t];
        for (var i = 0u; i < TMV; i++) {
          for (var j = 0u; j < 4u; j++) {
            acc[i * 4u + j][t] = fma(vec4<f32>(av[i][j]), bv, acc[i * 4u + j][t]);
          }
        }
      }
    }
    workgroupBarrier();
  }

  for (var i = 0u; i < TMV; i++) {
    for (var j = 0u; j < 4u; j++) {
      let p = m0 + (ty + WGY * i) * 4u + j;
      if (p < M) {
        for (var t = 0u; t < TN4; t++) {
          let c4 = n04 + tx + WGX * t;
          if (c4 < CO4) {
            y[p * CO4 + c4] = act4(acc[i * 4u + j][t] + b[c4]);
          }
        }
      }
    }
  }
}
