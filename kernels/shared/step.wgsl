// The Step uniform (`// #include "shared/step.wgsl"`): lib/gpu/steps.ts packSteps writes it.

// Per-step values of a training run. The host writes one Step per step into a table and, before each step's
// passes, copies that step's entry into the uniform buffer that kernels bind as `Step` (so one command buffer
// can hold many steps without host round-trips).
struct Step {
  step: u32,         // 0-based global step index
  epoch: u32,        // 0-based epoch
  batch_start: u32,  // offset of this batch in the epoch's permutation
  flags: u32,        // the gates and events of this step, one bit each (the experiment's plan sets them; each
                     // optimizer kernel gets its bit as a pipeline constant)
  // Per-step scalars the experiment's plan fills by slot (each optimizer group's lr, the lookahead decay,
  // ...): slot i is vals[i / 4][i % 4]; kernels get their slot as a pipeline constant and read it with
  // step_value.
  vals: array<vec4f, STEP_SLOTS / 4u>,
}
const STEP_SLOTS: u32 = 16u;

// The per-step scalar in slot `slot` (< STEP_SLOTS) of a Step.
fn step_value(st: Step, slot: u32) -> f32 {
  return st.vals[slot / 4u][slot % 4u];
}
