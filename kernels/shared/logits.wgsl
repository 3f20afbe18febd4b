// The logit rows and labels of loss.wgsl and accuracy.wgsl (`// #include "shared/logits.wgsl"`): bindings 0
// (logits [N][CLASSES] f32, row-major) and 1 (labels [N] u32), the row argmax and the single-workgroup sum.
// The including kernel defines N and CLASSES. Argmax ties go to the first maximum (torch.argmax).
// Reductions run in one workgroup in a fixed order (deterministic, no atomics).

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
