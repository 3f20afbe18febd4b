// 2-D convolution as implicit GEMM with workgroup-memory tiling (the classic shared-memory tiled GEMM):
// the "workgroup" variant of conv_forward in conv.wgsl, for real GPUs (lib/nn/conv.ts tilesFor()).
//
// Same semantics, layouts and bindings as conv_forward in conv.wgsl:
//   x NHWC [N][H][W][CI] act, w HWIO [KH][KW][CI][CO] f32, b [CO] f32, y NHWC [N][HO][WO][CO] act,
//   zero padding PAD, stride 1, CI and CO multiples of 4.
// As a GEMM: y[M][CO] = A[M][K] * w[K][CO] + b with M = N*HO*WO output pixels and K = KH*KW*CI, where A is
// the im2col'd input, A[p][(ky*KW + kx)*CI + ci] = x[n][oy+ky-PAD][ox+kx-PAD][ci] (0 outside the image). The
// HWIO weights are already w[K][CO] row-major with the same K order.
//
// A workgroup computes a BM x BN output tile (BM pixels x BN channels). It walks K in chunks of BK: the
// invocations cooperatively load the A tile [BM][BK] and the weight tile [BK][BN] into workgroup memory
// (f32), barrier, accumulate from workgroup memory into registers, barrier. Each invocation owns TM pixels
// (TM/4 groups of 4 consecutive pixels, strided by 4*WGY) x TN4 vec4 channels (strided by WGX): the workgroup
// is WGX = BN/(4*TN4) by WGY = BM/TM invocations.
// Global loads are vec4 along channels: in the A tile consecutive invocations read consecutive channel vec4s
// of one pixel (NHWC), in the weight tile consecutive output-channel vec4s of one row (HWIO); output stores
// are consecutive channel vec4s. Because CI and BK are multiples of 4, a vec4 of K never straddles two taps.
// Edges: pixels >= M, channels >= CO and K rows >= K load as 0 and are not stored.
//
// DB = 2 double-buffers the workgroup tiles: chunk k+1 is loaded into the other buffer while chunk k is
// multiplied, one barrier per chunk instead of two (DB = 1: load, barrier, multiply, barrier).
//
// Constants injected by lib/nn/conv.ts: N H W CI CO KH KW PAD HO WO (shape), BM BN BK TM TN4 DB (tile).
// The input gradient runs this kernel on dy with flipped, transposed weights (see conv.wgsl).

// #include "shared/grid.wgsl"
// #include "shared/tile_mul.wgsl"

const CI4: u32 = CI / 4u;
const CO4: u32 = CO / 4u;
const M: u32 = N * HO * WO;
const KDIM: u32 = KH * KW * CI;
const BK4: u32 = BK / 4u;
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

var<workgroup> As: array<vec4<f32>, DB * BK * AS_ROW>; // As[buf][k][m/4][m%4] = A[m0 + m][k0 + k]
var<workgroup> Bs: array<vec4<f32>, DB * BK * BN4>;    // Bs[buf][k][n4] = w[k0 + k][n0/4 + n4]

// Stage K chunk kt into buffer `buf`: the im2col gather of the A tile (zero for padding and out-of-range rows
// and columns) and rows k0.. of w[K][CO] (zero beyond K and CO).
fn load_tiles(kt: u32, buf: u32, lid: u32, m0: u32, n04: u32) {
  let k0 = kt * BK;
  let ao = buf * BK * AS_ROW;
  let bo = buf * BK * BN4;
  for (var l = 0u; l < A_LOADS; l++) {
    let idx = lid + l * WGS;
    let kq = idx % BK4;
    let m = idx / BK4;
    let p = min(m0 + m, M - 1u);
    let px = i32(p % WO);
    let py = i32((p / WO) % HO);
    let pn = p / (WO * HO);
    let gk = k0 + kq * 4u;
    let tap = gk / CI;
    let iy = py + i32(tap / KW) - i32(PAD);
    let ix = px + i32(tap % KW) - i32(PAD);
    let ok = idx < A_VEC && m0 + m < M && gk < KDIM && iy >= 0 && iy < i32(H) && ix >= 0 && ix < i32(W);
    var v = vec4<f32>(0.0);
    if (ok) {
      v = vec4<f32>(x[((pn * H + u32(iy)) * W + u32(ix)) * CI4 + (gk % CI) / 4u]);
    }
    if (idx < A_VEC) {
      for (var j = 0u; j < 4u; j++) {
        As[ao + (kq * 4u + j) * AS_ROW + m / 4u][m % 4u] = v[j];
      }
    }
  }
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
      Bs[bo + kk * BN4 + n4] = v;
    }
  }
}

@compute @workgroup_size(WGS)
fn conv_forward(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let tile = group_index(wid, nwg); // uniform across the workgroup, so the early return keeps barriers uniform
  if (tile >= MT * NT) {
    return;
  }
  let m0 = (tile / NT) * BM; // channel tiles of one pixel tile are neighbours: the A rows stay in cache
  let n04 = (tile % NT) * BN4;
  let tx = lid % WGX;
  let ty = lid / WGX;

  var acc: array<array<vec4<f32>, TN4>, TM>;
  if (DB == 2u) {
    load_tiles(0u, 0u, lid, m0, n04);
    workgroupBarrier();
    for (var kt = 0u; kt < KT; kt++) {
      if (kt + 1u < KT) {
        load_tiles(kt + 1u, (kt + 1u) % 2u, lid, m0, n04);
      }
      mul_tiles(kt % 2u, tx, ty, &acc);
      workgroupBarrier();
    }
  } else {
    for (var kt = 0u; kt < KT; kt++) {
      load_tiles(kt, 0u, lid, m0, n04);
      workgroupBarrier();
      mul_tiles(0u, tx, ty, &acc);
      workgroupBarrier();
    }
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
