// Flat f32 vector kernels: the SGD step (torch.optim.SGD, nesterov=True, dampening=0), the lookahead EMA, and
// acc = a * acc + b * x (test-time-augmentation logit averaging).
//
// Layouts: params, grads, mom, ema: the flat f32 parameter buffers [COUNT] (each tensor at its own offset;
// the kernels are elementwise, so the layout does not matter); acc, x [COUNT] f32.
// Constants injected by lib/ops.ts (every pipeline of this file defines all of them): COUNT (elements), WG
// (workgroup size), GATE_START, GATE_END (SGD leaves [GATE_START, GATE_END) untouched unless the step's
// STEP_WHITEN_BIAS flag is set; an empty range when there is no gate), LR_MULT and WD_MULT (f32: the SGD
// step's lr and weight decay are the Step's times these, for parameter groups; 1 and 1 by default).
// Each entry point has its own bindings; binding numbers repeat across entry points (only the interface of
// one entry point has to be collision-free). 2-D grids: linear index from num_workgroups.

fn flat_index(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wid.y * nwg.x + wid.x) * WG + lid;
}

// ---- SGD: binding 0 params [COUNT], binding 1 grads [COUNT], binding 2 momentum buffer [COUNT],
//      binding 3 Step.
// Per element, as torch: g = grad + wd * p; buf = momentum * buf + g; g = g + momentum * buf; p = p - lr * g.
// (A zero-initialised buffer gives torch's first step, buf = g.)
@group(0) @binding(0) var<storage, read_write> sgd_p: array<f32>;
@group(0) @binding(1) var<storage, read> sgd_g: array<f32>;
@group(0) @binding(2) var<storage, read_write> sgd_m: array<f32>;
@group(0) @binding(3) var<uniform> sgd_st: Step;

@compute @workgroup_size(WG)
fn sgd_step(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = flat_index(wid, nwg, lid);
  if (i >= COUNT) {
    return;
  }
  if (i >= GATE_START && i < GATE_END && (sgd_st.flags & STEP_WHITEN_BIAS) == 0u) {
    return; // frozen (torch: requires_grad = False): no decay, no momentum
  }
  let p = sgd_p[i];
  let g = sgd_g[i] + (sgd_st.weight_decay * WD_MULT) * p;
  let buf = sgd_st.momentum * sgd_m[i] + g;
  sgd_m[i] = buf;
  sgd_p[i] = p - (sgd_st.lr * LR_MULT) * (g + sgd_st.momentum * buf);
}

// ---- lookahead: binding 0 params [COUNT], binding 1 ema [COUNT], binding 2 Step.
// When STEP_EMA is set: ema = torch.lerp(ema, p, 1 - ema_decay); p = ema. Otherwise nothing is written.
@group(0) @binding(0) var<storage, read_write> ema_p: array<f32>;
@group(0) @binding(1) var<storage, read_write> ema_e: array<f32>;
@group(0) @binding(2) var<uniform> ema_st: Step;

@compute @workgroup_size(WG)
fn ema_update(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = flat_index(wid, nwg, lid);
  if (i >= COUNT || (ema_st.flags & STEP_EMA) == 0u) {
    return;
  }
  let w = 1.0 - ema_st.ema_decay;
  let a = ema_e[i];
  let d = ema_p[i] - a;
  // torch's lerp: the form that is exact at the end the weight is closer to
  let r = select(ema_p[i] - d * (1.0 - w), a + w * d, abs(w) < 0.5);
  ema_e[i] = r;
  ema_p[i] = r;
}

// ---- acc = a * acc + b * x (a = 0: acc = b * x): binding 0 acc [COUNT], binding 1 x [COUNT],
//      binding 2 (a, b) uniform
struct ScaleAddArgs {
  a: f32,
  b: f32,
}

@group(0) @binding(0) var<storage, read_write> sa_acc: array<f32>;
@group(0) @binding(1) var<storage, read> sa_x: array<f32>;
@group(0) @binding(2) var<uniform> sa_args: ScaleAddArgs;

@compute @workgroup_size(WG)
fn scale_add(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let i = flat_index(wid, nwg, lid);
  if (i >= COUNT) {
    return;
  }
  // a == 0 overwrites: the old contents (even NaN) are not read into the result
  let prev = select(sa_args.a * sa_acc[i], 0.0, sa_args.a == 0.0);
  sa_acc[i] = prev + sa_args.b * sa_x[i];
}
