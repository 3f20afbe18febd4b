// Logit kernels: label-smoothed cross-entropy (loss, gradient, accuracy) and the evaluation accuracy count.
//
// Layouts: logits, dlogits [N][CLASSES] f32 row-major; labels [N] u32; stats [steps][2] f32 (loss sum,
// number correct); count out [slots] u32. Constants injected by lib/ops.ts: N (rows), SMOOTHING (f32; every
// pipeline of this file defines both). Argmax ties go to the first maximum (torch.argmax).
// Reductions run in one workgroup in a fixed order (deterministic, no atomics).
// Each entry point has its own bindings; binding numbers repeat across entry points (only the interface of
// one entry point has to be collision-free).

const CLASSES: u32 = 10u;
const RED_WG: u32 = 64u; // invocations of the single-workgroup reductions

@group(0) @binding(0) var<storage, read> logits: array<f32>; // [N][CLASSES]
@group(0) @binding(1) var<storage, read> labels: array<u32>; // [N]

// index of the first maximum of row n
fn row_argmax(n: u32) -> u32 {
  var best = logits[n * CLASSES];
  var arg = 0u;
  for (var k = 1u; k < CLASSES; k++) {
    let v = logits[n * CLASSES + k];
    if (v > best) {
      best = v;
      arg = k;
    }
  }
  return arg;
}

var<workgroup> red_f: array<f32, RED_WG>;
var<workgroup> red_u: array<u32, RED_WG>;

// Sum of red_f / red_u over the workgroup, in order, by invocation 0 (the totals end in element 0). One
// barrier and a serial sum: cheap for RED_WG values, and lavapipe compiles multi-barrier trees very slowly.
fn reduce_workgroup(lid: u32) {
  workgroupBarrier();
  if (lid == 0u) {
    for (var j = 1u; j < RED_WG; j++) {
      red_f[0] += red_f[j];
      red_u[0] += red_u[j];
    }
  }
}

// ---- cross-entropy: binding 0 logits, binding 1 labels, binding 2 dlogits [N][CLASSES],
//      binding 3 stats [steps][2], binding 4 the Step uniform.
// Target t_k = (1 - SMOOTHING) * [k == label] + SMOOTHING / CLASSES; loss = sum_n sum_k -t_k * log_softmax_k;
// dlogits = softmax - t (the gradient of the summed loss). One workgroup; invocation i handles rows i,
// i + RED_WG, ...
@group(0) @binding(2) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;
@group(0) @binding(4) var<uniform> st: Step;

@compute @workgroup_size(RED_WG)
fn cross_entropy(@builtin(local_invocation_index) lid: u32) {
  const OFF: f32 = SMOOTHING / f32(CLASSES);
  const ON: f32 = 1.0 - SMOOTHING + OFF;
  var loss = 0.0;
  var correct = 0u;
  for (var n = lid; n < N; n += RED_WG) {
    let label = labels[n];
    let arg = row_argmax(n);
    let m = logits[n * CLASSES + arg];
    var sum = 0.0;
    for (var k = 0u; k < CLASSES; k++) {
      sum += exp(logits[n * CLASSES + k] - m);
    }
    let log_sum = log(sum);
    let inv = 1.0 / sum;
    var row = 0.0;
    for (var k = 0u; k < CLASSES; k++) {
      let d = logits[n * CLASSES + k] - m; // z_k - max
      let t = select(OFF, ON, k == label);
      dlogits[n * CLASSES + k] = exp(d) * inv - t;
      row += t * (log_sum - d); // -t_k * log_softmax_k
    }
    loss += row;
    correct += select(0u, 1u, arg == label);
  }
  red_f[lid] = loss;
  red_u[lid] = correct;
  reduce_workgroup(lid);
  if (lid == 0u) {
    stats[2u * st.step] = red_f[0];
    stats[2u * st.step + 1u] = f32(red_u[0]);
  }
}

// ---- evaluation accuracy: binding 0 logits, binding 1 labels, binding 2 out [slots] u32, binding 3 the slot
// (uniform CountArgs). out[slot] = number of rows with argmax == label (written, not accumulated).
struct CountArgs {
  slot: u32,
}

@group(0) @binding(2) var<storage, read_write> count_out: array<u32>;
@group(0) @binding(3) var<uniform> count_args: CountArgs;

@compute @workgroup_size(RED_WG)
fn count_correct(@builtin(local_invocation_index) lid: u32) {
  var correct = 0u;
  for (var n = lid; n < N; n += RED_WG) {
    correct += select(0u, 1u, row_argmax(n) == labels[n]);
  }
  red_f[lid] = 0.0;
  red_u[lid] = correct;
  reduce_workgroup(lid);
  if (lid == 0u) {
    count_out[count_args.slot] = red_u[0];
  }
}
