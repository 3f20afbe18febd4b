// Winograd convolution F(MT x MT, 3 x 3) for the stride-1 "same" (padding 1) 3x3 convolutions (Lavin & Gray,
// "Fast Algorithms for Convolutional Neural Networks", 2015): an output tile of MT x MT pixels is
// A^T [ (G g G^T) .* (B^T d B) ] A for the T x T input tile d (T = MT + 2) and the 3x3 filter g. Summed over
// the input channels, the elementwise product becomes T*T independent GEMMs (one per transformed position),
// which do (MT + 2)^2 / MT^2 multiplies per output where the direct convolution does 9: 2.25x fewer for
// F(2x2, 3x3), 4x fewer for F(4x4, 3x3). Four passes, each its own entry point:
//
//   wino_filter  w  HWIO [3][3][CI][CO] f32         -> U  [T*T][CI][CO] f32   (FLIP: the input gradient's
//                                                                               weights, see below)
//   wino_input   x  NHWC [N][H][W][CI] act          -> V  [T*T][PC][CI] f32
//   wino_gemm    V, U                               -> Mo [T*T][PC][CO] f32   (register-blocked, as
//   conv.wgsl) wino_output  Mo, b [CO] f32                     -> y  NHWC [N][H][W][CO] act (+ bias)
//
// The P = N * TH * TW tiles go through the last three in chunks of PC tiles (the first tile of a chunk in the
// uniform `chunk`), so the transformed tensors stay within the binding limit and near the cache. In the last
// chunk, rows past P hold the previous chunk's values: computed, never stored. The transformed tensors stay
// f32 whatever `act` is. Every sum has a fixed order: deterministic.
// Constants injected by lib/nn/winograd.ts: N H W CI CO (shape of the convolution computed), MT (2 or 4), T,
// TH TW (tiles per column and row), P, PC (tiles per chunk), FLIP (wino_filter: 1 reads w as the forward
// layer's HWIO [3][3][CO][CI], flipped in space and transposed in channels: the input gradient), TM TN4 (GEMM
// block), TMV TMV4 (wino_wgemm's block of input channels), WG (workgroup size). The transforms are written
// out for both tile sizes; arrays have room for T = 6.

// #include "shared/grid.wgsl"

const CI4: u32 = CI / 4u;
const CO4: u32 = CO / 4u;
const TT: u32 = T * T;

// B^T a (a column of T values of the input tile).
fn bt(a: array<vec4f, 6>) -> array<vec4f, 6> {
  var r: array<vec4f, 6>;
  if (MT == 2u) {
    r[0] = a[0] - a[2];
    r[1] = a[1] + a[2];
    r[2] = a[2] - a[1];
    r[3] = a[1] - a[3];
  } else {
    r[0] = 4.0 * a[0] - 5.0 * a[2] + a[4];
    r[1] = a[3] + a[4] - 4.0 * (a[1] + a[2]);
    r[2] = 4.0 * (a[1] - a[2]) - a[3] + a[4];
    r[3] = 2.0 * (a[3] - a[1]) - a[2] + a[4];
    r[4] = 2.0 * (a[1] - a[3]) - a[2] + a[4];
    r[5] = 4.0 * a[1] - 5.0 * a[3] + a[5];
  }
  return r;
}

// G a (a column of the 3 filter taps) -> T values.
fn gt(a0: vec4f, a1: vec4f, a2: vec4f) -> array<vec4f, 6> {
  var r: array<vec4f, 6>;
  if (MT == 2u) {
    r[0] = a0;
    r[1] = 0.5 * (a0 + a1 + a2);
    r[2] = 0.5 * (a0 - a1 + a2);
    r[3] = a2;
  } else {
    r[0] = a0 * 0.25;
    r[1] = (a0 + a1 + a2) * (-1.0 / 6.0);
    r[2] = (a0 - a1 + a2) * (-1.0 / 6.0);
    r[3] = a0 * (1.0 / 24.0) + a1 * (1.0 / 12.0) + a2 * (1.0 / 6.0);
    r[4] = a0 * (1.0 / 24.0) - a1 * (1.0 / 12.0) + a2 * (1.0 / 6.0);
    r[5] = a2;
  }
  return r;
}

// A^T a (T values) -> MT values.
fn at(a: array<vec4f, 6>) -> array<vec4f, 4> {
  var r: array<vec4f, 4>;
  if (MT == 2u) {
    r[0] = a[0] + a[1] + a[2];
    r[1] = a[1] - a[2] - a[3];
  } else {
    r[0] = a[0] + a[1] + a[2] + a[3] + a[4];
    r[1] = a[1] - a[2] + 2.0 * (a[3] - a[4]);
    r[2] = a[1] + a[2] + 4.0 * (a[3] + a[4]);
    r[3] = a[1] - a[2] + 8.0 * (a[3] - a[4]) + a[5];
  }
  return r;
}


// ---------------------------------------------------------------------------------------------------------
// Filter transform: one invocation per (input channel, 4 output channels).

@group(0) @binding(0) var<storage, read> fw: array<f32>;             // HWIO (FLIP: [3][3][CO][CI])
@group(0) @binding(1) var<storage, read_write> fu: array<vec4f>;    // [T*T][CI][CO]

fn filter_tap(tap: u32, ci: u32, co4: u32) -> vec4f {
  if (FLIP == 0u) {
    let i = (tap * CI + ci) * CO + co4 * 4u;
    return vec4f(fw[i], fw[i + 1u], fw[i + 2u], fw[i + 3u]);
  }
  let base = (8u - tap) * CO * CI + co4 * 4u * CI + ci; // flipped tap, channels transposed
  return vec4f(fw[base], fw[base + CI], fw[base + 2u * CI], fw[base + 3u * CI]);
}

@compute @workgroup_size(WG)
fn wino_filter(ids: GridIds) {
  let tid = grid_index(ids, WG);
  if (tid >= CI * CO4) {
    return;
  }
  let co4 = tid % CO4;
  let ci = tid / CO4;
  var cols: array<array<vec4f, 6>, 3>; // G applied down each of the 3 filter columns
  for (var kx = 0u; kx < 3u; kx++) {
    cols[kx] = gt(filter_tap(kx, ci, co4), filter_tap(3u + kx, ci, co4), filter_tap(6u + kx, ci, co4));
  }
  for (var i = 0u; i < T; i++) {
    let row = gt(cols[0][i], cols[1][i], cols[2][i]);
    for (var j = 0u; j < T; j++) {
      fu[((i * T + j) * CI + ci) * CO4 + co4] = row[j];
    }
  }
}

// The lane of invocation `tid` of a per-(tile, 4 channels) transform over the chunk that starts at tile
// `first`, `c4s` vec4 channels per tile: the tile in the chunk (`pl`), its image and tile coordinates,
// the channel vec4, and whether the lane has a tile (`ok`).
struct TileLane {
  pl: u32,
  c4: u32,
  tx: u32,
  ty: u32,
  n: u32,
  ok: bool,
}

fn tile_lane(tid: u32, first: u32, c4s: u32) -> TileLane {
  let pl = tid / c4s;
  let p = first + pl;
  return TileLane(pl, tid % c4s, p % TW, (p / TW) % TH, p / (TW * TH), tid < PC * c4s && p < P);
}

// ---------------------------------------------------------------------------------------------------------
// Input transform: one invocation per (tile, 4 input channels).

@group(0) @binding(0) var<storage, read> ix: array<act4>;            // NHWC [N][H][W][CI]
@group(0) @binding(1) var<storage, read_write> iv: array<vec4f>;    // [T*T][PC][CI]
@group(0) @binding(2) var<uniform> ichunk: vec4u;                    // x: the chunk's first tile

@compute @workgroup_size(WG)
fn wino_input(ids: GridIds) {
  let lane = tile_lane(grid_index(ids, WG), ichunk.x, CI4);
  if (!lane.ok) {
    return;
  }
  let y0 = i32(lane.ty * MT) - 1;
  let x0 = i32(lane.tx * MT) - 1;
  var cols: array<array<vec4f, 6>, 6>; // cols[j]: B^T applied down column j of the tile
  for (var j = 0u; j < T; j++) {
    var col: array<vec4f, 6>;
    let xx = x0 + i32(j);
    for (var i = 0u; i < T; i++) {
      let yy = y0 + i32(i);
      let inside = yy >= 0 && yy < i32(H) && xx >= 0 && xx < i32(W);
      let at_ = select(0u, ((lane.n * H + u32(yy)) * W + u32(xx)) * CI4 + lane.c4, inside);
      col[i] = select(vec4f(0.0), vec4f(ix[at_]), inside);
    }
    cols[j] = bt(col);
  }
  for (var i = 0u; i < T; i++) {
    var row: array<vec4f, 6>;
    for (var j = 0u; j < T; j++) {
      row[j] = cols[j][i];
    }
    let r = bt(row);
    for (var j = 0u; j < T; j++) {
      iv[((i * T + j) * PC + lane.pl) * CI4 + lane.c4] = r[j];
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// T*T GEMMs Mo[t] = V[t] U[t] ([PC][CI] x [CI][CO]); each invocation TM tiles x 4*TN4 channels of one t.

@group(0) @binding(0) var<storage, read> gv: array<vec4f>;           // [T*T][PC][CI]
@group(0) @binding(1) var<storage, read> gu: array<vec4f>;           // [T*T][CI][CO]
@group(0) @binding(2) var<storage, read_write> gm: array<vec4f>;    // [T*T][PC][CO]

@compute @workgroup_size(WG)
fn wino_gemm(ids: GridIds) {
  const CB: u32 = CO4 / TN4;
  const MB: u32 = (PC + TM - 1u) / TM;
  let tid = grid_index(ids, WG);
  if (tid >= TT * MB * CB) {
    return;
  }
  let cb = tid % CB;
  let pb = (tid / CB) % MB;
  let t = tid / (CB * MB);
  var rows: array<u32, TM>;
  for (var m = 0u; m < TM; m++) {
    rows[m] = (t * PC + min(pb * TM + m, PC - 1u)) * CI4; // the tail block recomputes the last tile, unstored
  }
  var acc: array<array<vec4f, TN4>, TM>;
  let ubase = t * CI * CO4 + cb * TN4;
  for (var c4 = 0u; c4 < CI4; c4++) {
    var av: array<vec4f, TM>;
    for (var m = 0u; m < TM; m++) {
      av[m] = gv[rows[m] + c4];
    }
    for (var j = 0u; j < 4u; j++) {
      let ui = ubase + (c4 * 4u + j) * CO4;
      for (var n = 0u; n < TN4; n++) {
        let uv = gu[ui + n];
        for (var m = 0u; m < TM; m++) {
          acc[m][n] = fma(vec4f(av[m][j]), uv, acc[m][n]);
        }
      }
    }
  }
  for (var m = 0u; m < TM; m++) {
    let p = pb * TM + m;
    if (p < PC) {
      for (var n = 0u; n < TN4; n++) {
        gm[(t * PC + p) * CO4 + cb * TN4 + n] = acc[m][n];
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Output transform (+ bias): one invocation per (tile, 4 output channels); pixels beyond H x W are dropped.

@group(0) @binding(0) var<storage, read> om: array<vec4f>;           // [T*T][PC][CO]
@group(0) @binding(1) var<storage, read> ob: array<vec4f>;           // [CO]
@group(0) @binding(2) var<storage, read_write> oy: array<act4>;     // NHWC [N][H][W][CO]
@group(0) @binding(3) var<uniform> ochunk: vec4u;                    // x: the chunk's first tile

@compute @workgroup_size(WG)
fn wino_output(ids: GridIds) {
  let lane = tile_lane(grid_index(ids, WG), ochunk.x, CO4);
  if (!lane.ok) {
    return;
  }
  var cols: array<array<vec4f, 4>, 6>; // cols[j]: A^T applied down column j
  for (var j = 0u; j < T; j++) {
    var col: array<vec4f, 6>;
    for (var i = 0u; i < T; i++) {
      col[i] = om[((i * T + j) * PC + lane.pl) * CO4 + lane.c4];
    }
    cols[j] = at(col);
  }
  let bias = ob[lane.c4];
  for (var r = 0u; r < MT; r++) {
    let yy = lane.ty * MT + r;
    var row: array<vec4f, 6>;
    for (var j = 0u; j < T; j++) {
      row[j] = cols[j][r];
    }
    let out = at(row);
    for (var s = 0u; s < MT; s++) {
      let xx = lane.tx * MT + s;
      if (yy < H && xx < W) {
        oy[((lane.n * H + yy) * W + xx) * CO4 + lane.c4] = act4(out[s] + bias);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Weight gradient: the forward is y = A^T [U .* V] A per tile, so dU[t] = sum over tiles V[t]^T dMo[t] with
// dMo = A dY A^T (wino_dy), and dw = G^T dU G (wino_dfilter). The tiles' sum runs chunk by chunk: the first
// chunk's wino_wgemm writes dU, the next ones add to it (fixed order: deterministic). V comes from
// wino_input.

// A d (MT values of dY down a column or along a row) -> T values.
fn a_(d: array<vec4f, 4>) -> array<vec4f, 6> {
  var r: array<vec4f, 6>;
  if (MT == 2u) {
    r[0] = d[0];
    r[1] = d[0] + d[1];
    r[2] = d[0] - d[1];
    r[3] = -d[1];
  } else {
    r[0] = d[0];
    r[1] = d[0] + d[1] + d[2] + d[3];
    r[2] = d[0] - d[1] + d[2] - d[3];
    r[3] = d[0] + 2.0 * d[1] + 4.0 * d[2] + 8.0 * d[3];
    r[4] = d[0] - 2.0 * d[1] + 4.0 * d[2] - 8.0 * d[3];
    r[5] = d[3];
  }
  return r;
}

// G^T a (T values) -> the 3 filter taps.
fn gtt(a: array<vec4f, 6>) -> array<vec4f, 3> {
  var r: array<vec4f, 3>;
  if (MT == 2u) {
    r[0] = a[0] + 0.5 * (a[1] + a[2]);
    r[1] = 0.5 * (a[1] - a[2]);
    r[2] = 0.5 * (a[1] + a[2]) + a[3];
  } else {
    r[0] = 0.25 * a[0] - (a[1] + a[2]) * (1.0 / 6.0) + (a[3] + a[4]) * (1.0 / 24.0);
    r[1] = (a[2] - a[1]) * (1.0 / 6.0) + (a[3] - a[4]) * (1.0 / 12.0);
    r[2] = (a[3] + a[4] - a[1] - a[2]) * (1.0 / 6.0) + a[5];
  }
  return r;
}

@group(0) @binding(0) var<storage, read> dyx: array<act4>;           // dy NHWC [N][H][W][CO]
@group(0) @binding(1) var<storage, read_write> dym: array<vec4f>;   // dMo [T*T][PC][CO]
@group(0) @binding(2) var<uniform> dchunk: vec4u;                    // x: the chunk's first tile

// One invocation per (tile, 4 output channels).
@compute @workgroup_size(WG)
fn wino_dy(ids: GridIds) {
  let lane = tile_lane(grid_index(ids, WG), dchunk.x, CO4);
  if (!lane.ok) {
    return;
  }
  var cols: array<array<vec4f, 6>, 4>; // cols[j]: A applied down column j of the MT x MT tile of dy
  for (var j = 0u; j < MT; j++) {
    var col: array<vec4f, 4>;
    let xx = lane.tx * MT + j;
    for (var i = 0u; i < MT; i++) {
      let yy = lane.ty * MT + i;
      let inside = yy < H && xx < W;
      let at_ = select(0u, ((lane.n * H + yy) * W + xx) * CO4 + lane.c4, inside);
      col[i] = select(vec4f(0.0), vec4f(dyx[at_]), inside);
    }
    cols[j] = a_(col);
  }
  for (var i = 0u; i < T; i++) {
    var row: array<vec4f, 4>;
    for (var j = 0u; j < MT; j++) {
      row[j] = cols[j][i];
    }
    let r = a_(row);
    for (var j = 0u; j < T; j++) {
      dym[((i * T + j) * PC + lane.pl) * CO4 + lane.c4] = r[j];
    }
  }
}

@group(0) @binding(0) var<storage, read> wv: array<vec4f>;           // V [T*T][PC][CI]
@group(0) @binding(1) var<storage, read> wm: array<vec4f>;           // dMo [T*T][PC][CO]
@group(0) @binding(2) var<storage, read_write> wdu: array<vec4f>;   // dU [T*T][CI][CO]
@group(0) @binding(3) var<uniform> wchunk: vec4u;                    // x: first tile, y: 1 = first chunk

// dU[t] (+)= V[t]^T dMo[t] over the chunk's tiles; each invocation 4*TMV input x 4*TN4 output channels of one
// t.
@compute @workgroup_size(WG)
fn wino_wgemm(ids: GridIds) {
  const CB: u32 = CO4 / TN4;
  const RB: u32 = CI4 / TMV;
  let tid = grid_index(ids, WG);
  if (tid >= TT * RB * CB) {
    return;
  }
  let cb = tid % CB;
  let rb = (tid / CB) % RB;
  let t = tid / (CB * RB);
  let rows = min(PC, P - wchunk.x); // valid tiles of this chunk
  var acc: array<array<vec4f, TN4>, TMV4>; // [input channel][vec4 of output channels]
  let first = wchunk.y == 1u;
  for (var r = 0u; r < TMV4; r++) {
    for (var n = 0u; n < TN4; n++) {
      let i = (t * CI + rb * TMV4 + r) * CO4 + cb * TN4 + n;
      acc[r][n] = select(wdu[i], vec4f(0.0), first);
    }
  }
  for (var p = 0u; p < rows; p++) {
    var mv: array<vec4f, TN4>;
    for (var n = 0u; n < TN4; n++) {
      mv[n] = wm[(t * PC + p) * CO4 + cb * TN4 + n];
    }
    for (var q = 0u; q < TMV; q++) {
      let vv = wv[(t * PC + p) * CI4 + rb * TMV + q];
      for (var j = 0u; j < 4u; j++) {
        for (var n = 0u; n < TN4; n++) {
          acc[q * 4u + j][n] = fma(vec4f(vv[j]), mv[n], acc[q * 4u + j][n]);
        }
      }
    }
  }
  for (var r = 0u; r < TMV4; r++) {
    for (var n = 0u; n < TN4; n++) {
      wdu[(t * CI + rb * TMV4 + r) * CO4 + cb * TN4 + n] = acc[r][n];
    }
  }
}

@group(0) @binding(0) var<storage, read> fdu: array<vec4f>;          // dU [T*T][CI][CO]
@group(0) @binding(1) var<storage, read_write> fdw: array<vec4f>;   // dw HWIO [3][3][CI][CO]

// dw = G^T dU G; one invocation per (input channel, 4 output channels).
@compute @workgroup_size(WG)
fn wino_dfilter(ids: GridIds) {
  let tid = grid_index(ids, WG);
  if (tid >= CI * CO4) {
    return;
  }
  let co4 = tid % CO4;
  let ci = tid / CO4;
  var cols: array<array<vec4f, 3>, 6>; // cols[j]: G^T applied down column j of dU
  for (var j = 0u; j < T; j++) {
    var col: array<vec4f, 6>;
    for (var i = 0u; i < T; i++) {
      col[i] = fdu[((i * T + j) * CI + ci) * CO4 + co4];
    }
    cols[j] = gtt(col);
  }
  for (var ky = 0u; ky < 3u; ky++) {
    var row: array<vec4f, 6>;
    for (var j = 0u; j < T; j++) {
      row[j] = cols[j][ky];
    }
    let r = gtt(row);
    for (var kx = 0u; kx < 3u; kx++) {
      fdw[((ky * 3u + kx) * CI + ci) * CO4 + co4] = r[kx];
    }
  }
}
