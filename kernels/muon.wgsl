// The elementwise and reduction steps of the Muon optimizer for one convolution weight (lib/train/muon.ts);
// the Newton-Schulz products between them are kernels/gemm.wgsl.
//
// Layouts: the weight, its gradient and momentum buffer are the tensor's range of the flat f32 buffers,
// stored HWIO [KH * KW * CIPAD][COLS] (COUNT = rows * COLS floats; COLS = output channels; input channels CI
// <= CIPAD, the padded ones zero). x, gp: [COUNT] f32 scratch. part: [2 * PARTS] f32. stats: [4] f32 =
// (sum x^2, sum y^2, 1 / (sqrt(sum x^2) + NS_EPS), TARGET_NORM / sqrt(sum y^2)).
// Constants (every pipeline of this file defines all): COUNT COLS CI CIPAD WG (a power of two) PARTS
// (= ceil(COUNT / WG)) LR_SLOT (u32), MOMENTUM NS_EPS TARGET_NORM (f32), NESTEROV (bool).
// Each entry point has its own bindings; binding numbers repeat across entry points. Sums have a fixed order
// (a workgroup tree, then one workgroup over the partials in index order): no atomics.

// #include "shared/grid.wgsl"
// #include "shared/step.wgsl"

// ---- momentum: binding 0 grads [COUNT], binding 1 momentum buffer [COUNT], binding 2 gp [COUNT] (out).
// As torch's Muon: buf = MOMENTUM * buf + g; gp = g + MOMENTUM * buf (NESTEROV) or buf. Padded input channels
// get buf = gp = 0 whatever the gradient holds there.
@group(0) @binding(0) var<storage, read> mo_g: array<f32>;
@group(0) @binding(1) var<storage, read_write> mo_buf: array<f32>;
@group(0) @binding(2) var<storage, read_write> mo_gp: array<f32>;

@compute @workgroup_size(WG)
fn muon_momentum(ids: GridIds) {
  let i = grid_index(ids, WG);
  if (i >= COUNT) {
    return;
  }
  if ((i / COLS) % CIPAD >= CI) {
    mo_buf[i] = 0.0;
    mo_gp[i] = 0.0;
    return;
  }
  let g = mo_g[i];
  let buf = MOMENTUM * mo_buf[i] + g;
  mo_buf[i] = buf;
  mo_gp[i] = select(buf, g + MOMENTUM * buf, NESTEROV);
}

// ---- sums of squares, stage 1: binding 0 x [COUNT], binding 1 y [COUNT], binding 2 part [2 * PARTS] (out).
// Workgroup w writes part[w] = sum of x^2 and part[PARTS + w] = sum of y^2 over elements [w * WG, w * WG +
// WG).
@group(0) @binding(0) var<storage, read> sq_x: array<f32>;
@group(0) @binding(1) var<storage, read> sq_y: array<f32>;
@group(0) @binding(2) var<storage, read_write> sq_part: array<f32>;

var<workgroup> red_x: array<f32, WG>;
var<workgroup> red_y: array<f32, WG>;

// Tree sum of red_x and red_y over the workgroup (all invocations call it); the totals land in element 0.
fn tree_sum(lid: u32) {
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid < s) {
      red_x[lid] += red_x[lid + s];
      red_y[lid] += red_y[lid + s];
    }
  }
  workgroupBarrier();
}

@compute @workgroup_size(WG)
fn muon_sumsq(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let w = group_index(wid, nwg);
  let i = w * WG + lid;
  let inside = i < COUNT;
  let x = select(0.0, sq_x[min(i, COUNT - 1u)], inside);
  let y = select(0.0, sq_y[min(i, COUNT - 1u)], inside);
  red_x[lid] = x * x;
  red_y[lid] = y * y;
  tree_sum(lid);
  if (lid == 0u && w < PARTS) {
    sq_part[w] = red_x[0];
    sq_part[PARTS + w] = red_y[0];
  }
}

// ---- sums of squares, stage 2 (one workgroup): binding 0 part [2 * PARTS], binding 1 stats [4] (out).
// Invocation t sums the partials t, t + WG, ... in order; then the workgroup tree.
@group(0) @binding(0) var<storage, read> st_part: array<f32>;
@group(0) @binding(1) var<storage, read_write> st_stats: array<f32>;

@compute @workgroup_size(WG)
fn muon_norms(@builtin(local_invocation_index) lid: u32) {
  var sx = 0.0;
  var sy = 0.0;
  for (var j = lid; j < PARTS; j += WG) {
    sx += st_part[j];
    sy += st_part[PARTS + j];
  }
  red_x[lid] = sx;
  red_y[lid] = sy;
  tree_sum(lid);
  if (lid == 0u) {
    let nx = sqrt(red_x[0]);
    st_stats[0] = red_x[0];
    st_stats[1] = red_y[0];
    st_stats[2] = 1.0 / (nx + NS_EPS);
    st_stats[3] = TARGET_NORM / sqrt(red_y[0]);
  }
}

// ---- Newton-Schulz input: binding 0 src [COUNT], binding 1 dst [COUNT] (out), binding 2 stats [4].
// dst = src / (||src|| + NS_EPS) (stats from muon_sumsq/muon_norms with x = src).
@group(0) @binding(0) var<storage, read> sc_src: array<f32>;
@group(0) @binding(1) var<storage, read_write> sc_dst: array<f32>;
@group(0) @binding(2) var<storage, read> sc_stats: array<f32>;

@compute @workgroup_size(WG)
fn muon_scale(ids: GridIds) {
  let i = grid_index(ids, WG);
  if (i >= COUNT) {
    return;
  }
  sc_dst[i] = sc_src[i] * sc_stats[2];
}

// ---- the step: binding 0 params [COUNT], binding 1 update [COUNT], binding 2 stats [4], binding 3 Step.
// p = p * (TARGET_NORM / ||p||) - lr * update, lr = the Step's slot LR_SLOT (||p|| from muon_norms, y = p).
@group(0) @binding(0) var<storage, read_write> up_p: array<f32>;
@group(0) @binding(1) var<storage, read> up_x: array<f32>;
@group(0) @binding(2) var<storage, read> up_stats: array<f32>;
@group(0) @binding(3) var<uniform> up_st: Step;

@compute @workgroup_size(WG)
fn muon_update(ids: GridIds) {
  let i = grid_index(ids, WG);
  if (i >= COUNT) {
    return;
  }
  up_p[i] = up_p[i] * up_stats[3] - step_value(up_st, LR_SLOT) * up_x[i];
}
