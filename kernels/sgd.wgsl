// The SGD step over a flat f32 vector (torch.optim.SGD: momentum, Nesterov or not, dampening 0, coupled
// weight decay).
//
// Layouts: params, grads, mom: one range of the flat f32 parameter buffers [COUNT] (elementwise: the layout
// does not matter). Constants injected by lib/nn/ops.ts sgdStep: COUNT (elements), WG (workgroup size);
// LR_SLOT (u32: the Step slot holding this range's lr), MOMENTUM, WEIGHT_DECAY (f32, constant over the run),
// NESTEROV (bool), GATE_START, GATE_END, GATE_BIT (the range [GATE_START, GATE_END) stays untouched unless
// the step's flags have GATE_BIT; an empty range when there is no gate).

// #include "shared/grid.wgsl"
// #include "shared/step.wgsl"

// ---- SGD: binding 0 params [COUNT], binding 1 grads [COUNT], binding 2 momentum buffer [COUNT],
//      binding 3 Step.
// Per element, as torch: g = grad + wd * p; buf = momentum * buf + g; then p = p - lr * (g + momentum * buf)
// (Nesterov) or p = p - lr * buf. (A zero-initialised buffer gives torch's first step, buf = g.)
@group(0) @binding(0) var<storage, read_write> sgd_p: array<f32>;
@group(0) @binding(1) var<storage, read> sgd_g: array<f32>;
@group(0) @binding(2) var<storage, read_write> sgd_m: array<f32>;
@group(0) @binding(3) var<uniform> sgd_st: Step;

@compute @workgroup_size(WG)
fn sgd(ids: GridIds) {
  let i = grid_index(ids, WG);
  if (i >= COUNT) {
    return;
  }
  if (i >= GATE_START && i < GATE_END && (sgd_st.flags & GATE_BIT) == 0u) {
    return; // frozen (torch: requires_grad = False): no decay, no momentum
  }
  let p = sgd_p[i];
  let g = sgd_g[i] + WEIGHT_DECAY * p;
  let buf = MOMENTUM * sgd_m[i] + g;
  sgd_m[i] = buf;
  let lr = step_value(sgd_st, LR_SLOT);
  if (NESTEROV) {
    sgd_p[i] = p - lr * (g + MOMENTUM * buf);
  } else {
    sgd_p[i] = p - lr * buf;
  }
}
