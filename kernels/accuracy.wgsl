// The evaluation accuracy count: out[slot] = number of rows of the logits whose argmax is the label.
//
// Layouts: logits [N][CLASSES] f32 row-major; labels [N] u32; out [slots] u32. Constants injected by
// lib/nn/ops.ts countCorrect: N (rows), CLASSES.

// #include "shared/logits.wgsl"

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
