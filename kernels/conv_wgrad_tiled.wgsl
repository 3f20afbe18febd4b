// Weight gradient of a 2-D convolution with workgroup-memory tiling: the "workgroup" variant of
// conv_wgrad.wgsl (same semantics, layouts, bindings and split-K scheme).
//
//   dw[ky][kx][ci][co] = sum over output pixels p = (n, oy, ox) of x[n][oy+ky-PAD][ox+kx-PAD][ci] * dy[p][co]
//
// A GEMM dw[R][CO] = A^T[R][P] * dy[P][CO] with R = KH*KW*CI rows (r = (ky*KW + kx)*CI + ci, the HWIO row
// order), CO columns and the reduction over P = N*HO*WO pixels, A[p][r] the im2col'd input. P is split into
// KSPLIT fixed chunks whose partial sums go to `part` and are summed in a fixed order by reduce_splits.wgsl
// (deterministic, no atomics).
//
// A workgroup computes a BM x BN tile of one chunk's partial dw (BM rows x BN output channels). It walks its
// chunk BK pixels at a time: the invocations cooperatively load A[BK pixels][BM rows] and dy[BK][BN] into
// workgroup memory (f32), barrier, accumulate into registers, barrier. Each invocation owns TM rows (TM/4
// groups of 4 consecutive rows, strided by 4*WGY) x TN4 vec4 channels (strided by WGX).
// Global loads are vec4 along channels: consecutive invocations read consecutive input-channel vec4s of one
// pixel (x, NHWC) and consecutive output-channel vec4s of one pixel (dy, NHWC); stores are consecutive vec4s.
// Edges: rows >= R, channels >= CO and pixels past the chunk load as 0 and are not stored.
//
// Layouts: x NHWC [N][H][W][CI] act; dy NHWC [N][HO][WO][CO] act;
//          part [KSPLIT][KH][KW][CI][CO] f32 (with KSPLIT = 1 this is dw itself, HWIO).
// DB = 2 double-buffers the workgroup tiles (the next pixel step loads while this one multiplies; one barrier
// per step), DB = 1 loads, barriers, multiplies, barriers.
//
// Constants: N H W CI CO KH KW PAD HO WO (shape), BM BN BK TM TN4 DB (tile), KSPLIT.

// #include "shared/grid.wgsl"
// #include "shared/tile_mul.wgsl"

const CI4: u32 = CI / 4u;
const CO4: u32 = CO / 4u;
const P: u32 = N * HO * WO;
const R: u32 = KH * KW * CI;
const R4: u32 = R / 4u;
const KCHUNK: u32 = (P + KSPLIT - 1u) / KSPLIT;
const AS_ROW: u32 = BM4; // the A tile's rows are unpadded
const NT: u32 = (CO + BN - 1u) / BN; // channel tiles
const MT: u32 = (R + BM - 1u) / BM;  // row tiles
const A_VEC: u32 = BK * BM4;
const B_VEC: u32 = BK * BN4;
const A_LOADS: u32 = (A_VEC + WGS - 1u) / WGS;
const B_LOADS: u32 = (B_VEC + WGS - 1u) / WGS;

@group(0) @binding(0) var<storage, read> x: array<act4>;
@group(0) @binding(1) var<storage, read> dy: array<act4>;
@group(0) @binding(2) var<storage, read_write> part: array<vec4<f32>>;

var<workgroup> As: array<vec4<f32>, DB * BK * AS_ROW>; // As[buf][k][r4] = A[p0 + k][r0 + 4*r4 ..]
var<workgroup> Bs: array<vec4<f32>, DB * BK * BN4>; // Bs[buf][k][n4] = dy[p0 + k][n0 + 4*n4 ..]

// Stage the BK pixels from p0 (< pb, the chunk's end) into buffer `buf`.
fn load_tiles(p0: u32, pb: u32, buf: u32, lid: u32, r04: u32, n04: u32) {
  let ao = buf * BK * BM4;
  let bo = buf * BK * BN4;
  for (var l = 0u; l < A_LOADS; l++) {
    let idx = lid + l * WGS;
    let r4 = idx % BM4;
    let k = idx / BM4;
    let gr4 = r04 + r4;
    let tap = min(gr4, R4 - 1u) / CI4;
    let c4 = min(gr4, R4 - 1u) % CI4;
    let p = p0 + k;
    let pc = min(p, P - 1u);
    let iy = i32((pc / WO) % HO) + i32(tap / KW) - i32(PAD);
    let ix = i32(pc % WO) + i32(tap % KW) - i32(PAD);
    let n = pc / (WO * HO);
    let ok = idx < A_VEC && gr4 < R4 && p < pb && iy >= 0 && iy < i32(H) && ix >= 0 && ix < i32(W);
    var v = vec4<f32>(0.0);
    if (ok) {
      v = vec4<f32>(x[((n * H + u32(iy)) * W + u32(ix)) * CI4 + c4]);
    }
    if (idx < A_VEC) {
      As[ao + k * BM4 + r4] = v;
    }
  }
  for (var l = 0u; l < B_LOADS; l++) {
    let idx = lid + l * WGS;
    let n4 = idx % BN4;
    let kk = idx / BN4;
    let p = p0 + kk;
    let gn4 = n04 + n4;
    var v = vec4<f32>(0.0);
    if (idx < B_VEC && p < pb && gn4 < CO4) {
      v = vec4<f32>(dy[p * CO4 + gn4]);
    }
    if (idx < B_VEC) {
      Bs[bo + kk * BN4 + n4] = v;
    }
  }
}

@compute @workgroup_size(WGS)
fn conv_wgrad(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let g = group_index(wid, nwg); // uniform across the workgroup, so the early return keeps barriers uniform
  if (g >= MT * NT * KSPLIT) {
    return;
  }
  let s = g / (MT * NT);
  let tile = g % (MT * NT);
  let r04 = (tile / NT) * BM4;
  let n04 = (tile % NT) * BN4;
  let tx = lid % WGX;
  let ty = lid / WGX;
  let pa = s * KCHUNK;
  let pb = min(P, pa + KCHUNK);

  var acc: array<array<vec4<f32>, TN4>, TM>;
  let steps = (pb - min(pa, pb) + BK - 1u) / BK; // uniform: pa, pb depend on the workgroup only
  if (DB == 2u) {
    if (steps > 0u) {
      load_tiles(pa, pb, 0u, lid, r04, n04);
    }
    workgroupBarrier();
    for (var st = 0u; st < steps; st++) {
      if (st + 1u < steps) {
        load_tiles(pa + (st + 1u) * BK, pb, (st + 1u) % 2u, lid, r04, n04);
      }
      mul_tiles(st % 2u, tx, ty, &acc);
      workgroupBarrier();
    }
  } else {
    for (var st = 0u; st < steps; st++) {
      load_tiles(pa + st * BK, pb, 0u, lid, r04, n04);
      workgroupBarrier();
      mul_tiles(0u, tx, ty, &acc);
      workgroupBarrier();
    }
  }

  for (var i = 0u; i < TMV; i++) {
    let r4 = r04 + ty + WGY * i;
    if (r4 < R4) {
      for (var j = 0u; j < 4u; j++) {
        for (var t = 0u; t < TN4; t++) {
          let c4 = n04 + tx + WGX * t;
          if (c4 < CO4) {
            part[(s * R + r4 * 4u + j) * CO4 + c4] = acc[i * 4u + j][t];
          }
        }
      }
    }
  }
}
