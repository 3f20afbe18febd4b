// The lookahead EMA over a flat f32 vector.
//
// Layouts: params, ema: one range of the flat f32 parameter buffers [COUNT] (elementwise). Constants injected
// by lib/nn/ops.ts emaUpdate: COUNT (elements), WG (workgroup size), DECAY_SLOT (u32: the Step slot of the
// decay), EVENT_BIT (u32: the flag of the steps that update).

// #include "shared/grid.wgsl"
// #include "shared/step.wgsl"

// ---- lookahead: binding 0 params [COUNT], binding 1 ema [COUNT], binding 2 Step.
// When the step's flags have EVENT_BIT: ema = torch.lerp(ema, p, 1 - decay); p = ema, with decay the Step's
// slot DECAY_SLOT. Otherwise nothing is written.
@group(0) @binding(0) var<storage, read_write> ema_p: array<f32>;
@group(0) @binding(1) var<storage, read_write> ema_e: array<f32>;
@group(0) @binding(2) var<uniform> ema_st: Step;

@compute @workgroup_size(WG)
fn lookahead(ids: GridIds) {
  let i = grid_index(ids, WG);
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
