// The classifier head: a linear layer without bias followed by a constant scale (airbench's Mul(1/9)).
//
//   forward:  logits[n][k] = SCALE * sum_c x[n][c] * w[k][c]
//   backward: dx[n][c]     = SCALE * sum_k dlogits[n][k] * w[k][c]
//             dw[k][c]     = SCALE * sum_n dlogits[n][k] * x[n][c]     (written, not accumulated)
//
// Layouts (row-major): x, dx [N][C] `act` (the flattened 1x1xC feature map); w, dw [CLASSES][C] f32 (PyTorch
// nn.Linear layout); logits, dlogits [N][CLASSES] f32. Math in f32; every sum runs in a fixed order.
// Constants injected by lib/nn/ops.ts: N, C, CLASSES, SCALE (f32), WG (dx workgroup size).
// Each entry point has its own bindings; binding numbers repeat across entry points (only the interface of
// one entry point has to be collision-free).

// #include "shared/grid.wgsl"

const ROW_LANES: u32 = 16u; // forward: invocations per class and row (workgroup ROW_LANES x CLASSES per row)
const DW_LANES: u32 = 32u; // weight gradient: channels per workgroup
const DW_SLICES: u32 = 8u; // weight gradient: the batch is split into this many interleaved slices

// ---- forward: binding 0 x [N][C], binding 1 w [CLASSES][C], binding 2 logits [N][CLASSES]
@group(0) @binding(0) var<storage, read> fx: array<act>;
@group(0) @binding(1) var<storage, read> fw: array<f32>;
@group(0) @binding(2) var<storage, read_write> flogits: array<f32>;

var<workgroup> row_part: array<f32, CLASSES * ROW_LANES>; // [CLASSES][ROW_LANES] partial sums

// Invocation (l, k) of row n sums x[n][c] * w[k][c] over c = l, l + ROW_LANES, ...; then invocation (0, k)
// adds the ROW_LANES partial sums in order. (One barrier: lavapipe compiles barriers in loops very slowly.)
@compute @workgroup_size(ROW_LANES, CLASSES)
fn linear_fwd(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_id) lid: vec3u,
) {
  let n = group_index(wid, nwg); // the row; uniform over the workgroup
  let k = lid.y;
  var acc = 0.0;
  if (n < N) {
    for (var c = lid.x; c < C; c += ROW_LANES) {
      acc += f32(fx[n * C + c]) * fw[k * C + c];
    }
  }
  row_part[k * ROW_LANES + lid.x] = acc;
  workgroupBarrier();
  if (n < N && lid.x == 0u) {
    var s = 0.0;
    for (var l = 0u; l < ROW_LANES; l++) {
      s += row_part[k * ROW_LANES + l];
    }
    flogits[n * CLASSES + k] = SCALE * s;
  }
}

// ---- input gradient: binding 0 dlogits [N][CLASSES], binding 1 w [CLASSES][C], binding 2 dx [N][C]
// One invocation per dx element, consecutive invocations along C.
@group(0) @binding(0) var<storage, read> xdl: array<f32>;
@group(0) @binding(1) var<storage, read> xw: array<f32>;
@group(0) @binding(2) var<storage, read_write> xdx: array<act>;

@compute @workgroup_size(WG)
fn linear_bwd_dx(ids: GridIds) {
  let i = grid_index(ids, WG);
  if (i >= N * C) {
    return;
  }
  let n = i / C;
  let c = i % C;
  var s = 0.0;
  for (var k = 0u; k < CLASSES; k++) {
    s += xdl[n * CLASSES + k] * xw[k * C + c];
  }
  xdx[i] = act(SCALE * s);
}

// ---- weight gradient: binding 0 x [N][C], binding 1 dlogits [N][CLASSES], binding 2 dw [CLASSES][C]
// Workgroup (DW_LANES, DW_SLICES) covers DW_LANES channels; invocation (l, s) sums rows n = s, s + DW_SLICES,
// ... in order, then the slices are added in order (deterministic, no atomics).
@group(0) @binding(0) var<storage, read> wx: array<act>;
@group(0) @binding(1) var<storage, read> wdl: array<f32>;
@group(0) @binding(2) var<storage, read_write> wdw: array<f32>;

var<workgroup> dw_part: array<f32, DW_SLICES * CLASSES * DW_LANES>; // [DW_SLICES][CLASSES][DW_LANES]

@compute @workgroup_size(DW_LANES, DW_SLICES)
fn linear_bwd_dw(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid3: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let c0 = wid.x * DW_LANES;
  let c = c0 + lid3.x;
  var acc: array<f32, CLASSES>;
  if (c < C) {
    for (var n = lid3.y; n < N; n += DW_SLICES) {
      let xv = f32(wx[n * C + c]);
      for (var k = 0u; k < CLASSES; k++) {
        acc[k] += xv * wdl[n * CLASSES + k];
      }
    }
  }
  for (var k = 0u; k < CLASSES; k++) {
    dw_part[(lid3.y * CLASSES + k) * DW_LANES + lid3.x] = acc[k];
  }
  workgroupBarrier();
  for (var o = lid; o < CLASSES * DW_LANES; o += DW_LANES * DW_SLICES) {
    let k = o / DW_LANES;
    let l = o % DW_LANES;
    if (c0 + l < C) {
      var s = 0.0;
      for (var sl = 0u; sl < DW_SLICES; sl++) {
        s += dw_part[(sl * CLASSES + k) * DW_LANES + l];
      }
      wdw[k * C + c0 + l] = SCALE * s;
    }
  }
}
