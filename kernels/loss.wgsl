// Label-smoothed cross-entropy over the logits: the loss, its gradient and the accuracy of a training step.
//
// Layouts: logits, dlogits [N][CLASSES] f32 row-major; labels [N] u32; stats [steps][2] f32 (loss sum,
// number correct). Constants injected by lib/nn/ops.ts crossEntropy: N (rows), CLASSES, SMOOTHING (f32).

// #include "shared/step.wgsl"
// #include "shared/logits.wgsl"

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
