// Flat f32 vector kernels: the SGD step (torch.optim.SGD: momentum, Nesterov or not, dampening 0, coupled
// weight decay), the lookahead EMA, and acc = a * acc + b * x (test-time-augmentation logit averaging).
//
// Layouts: params, grads, mom, ema: the flat f32 parameter buffers [COUNT] (each tensor at its own offset;
// the kernels are elementwise, so the layout does not matter); acc, x [COUNT] f32.
// Constants injected by lib/ops.ts (every pipeline of this file defines all of them; the entry points that do
// not use one get a neutral value): COUNT (elements), WG (workgroup size);
// SGD (one parameter range with the same settings): LR_SLOT (u32: the Step slot holding this range's lr),
// MOMENTUM, WEIGHT_DECAY (f32, constant over the run), NESTEROV (bool), GATE_START, GATE_END, GATE_BIT (the
// range [GATE_START, GATE_END) stays untouched unless the step's flags have GATE_BIT; an empty range when there
// is no gate); lookahead: DECAY_SLOT (u32: the Step slot of the decay), EVENT_BIT (u32: the flag of the steps
// that update).
// Each entry point has its own bindings; binding numbers repeat across entry points (only the interface of
// one entry point has to be collision-free). 2-D grids: linear index from num_workgroups.

fn flat_index(wid: vec3u, nwg: vec3u, lid: u32) -> u32 {
  return (wid.y * nwg.x + wid.x) * WG + lid;
}

// ---- SGD: binding 0 params [COUNT], binding 1 grads [COUNT], binding 2 momentum buffer [COUNT],
//      binding 3 Step.
// Per element, as torch: g = grad + wd * p; buf = momentum * buf + g; then p = p - lr * (g + momentum * buf)
// (Nesterov) or p = p - lr * buf. (A zero-initialised buffer gives torch's first step, buf = g.)
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

// ---- lookahead: binding 0 params [COUNT], binding 1 ema [COUNT], binding 2 Step.
// When the step's flags have EVENT_BIT: ema = torch.lerp(ema, p, 1 - decay); p = ema, with decay the Step's
// slot DECAY_SLOT. Otherwise nothing is written.
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
  if (i >= COUNT || (ema_st.flags & EVENT_BIT) == 0u) {
    return;
  }
  let w = 1.0 - step_value(ema_st, DECAY_SLOT);
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
