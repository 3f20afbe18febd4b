// Prepended to every kernel by lib/gpu.ts (after the generated header: `act`, `act4` and constants).

// Per-step values of a training run. The host writes one Step per step into a table and, before each step's
// passes, copies that step's entry into the uniform buffer that kernels bind as `Step` (so one command buffer
// can hold many steps without host round-trips).
struct Step {
  step: u32,         // 0-based global step index
  epoch: u32,        // 0-based epoch
  batch_start: u32,  // offset of this batch in the epoch's permutation
  flags: u32,        // the gates and events of this step, one bit each (the experiment's plan sets them; each
                     // optimizer kernel gets its bit as a pipeline constant)
  // Per-step scalars the experiment's plan fills by slot (each optimizer group's lr, the lookahead decay, ...):
  // slot i is vals[i / 4][i % 4]; kernels get their slot as a pipeline constant and read it with step_value.
  vals: array<vec4f, STEP_SLOTS / 4u>,
}
const STEP_SLOTS: u32 = 16u;

// The per-step scalar in slot `slot` (< STEP_SLOTS) of a Step.
fn step_value(st: Step, slot: u32) -> f32 {
  return st.vals[slot / 4u][slot % 4u];
}

const GELU_INV_SQRT2: f32 = 0.70710678118654752;
const GELU_INV_SQRT_2PI: f32 = 0.39894228040143268;

// erf(x) for f32 to about 1 ulp-scale absolute error (< 2e-7): Abramowitz & Stegun 7.1.26 is too coarse near 0
// for relative checks, so use the Numerical Recipes erfc Chebyshev fit (fractional error < 1.2e-7).
fn erf_f32(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))));
  return select(r - 1.0, 1.0 - r, x >= 0.0);
}

// Exact GELU (PyTorch nn.GELU() default): x * Phi(x).
fn gelu_f32(x: f32) -> f32 {
  return 0.5 * x * (1.0 + erf_f32(x * GELU_INV_SQRT2));
}

// d/dx GELU = Phi(x) + x * phi(x).
fn gelu_grad_f32(x: f32) -> f32 {
  let cdf = 0.5 * (1.0 + erf_f32(x * GELU_INV_SQRT2));
  return cdf + x * GELU_INV_SQRT_2PI * exp(-0.5 * x * x);
}

fn gelu4(v: vec4f) -> vec4f {
  return vec4f(gelu_f32(v.x), gelu_f32(v.y), gelu_f32(v.z), gelu_f32(v.w));
}

fn gelu_grad4(v: vec4f) -> vec4f {
  return vec4f(gelu_grad_f32(v.x), gelu_grad_f32(v.y), gelu_grad_f32(v.z), gelu_grad_f32(v.w));
}
