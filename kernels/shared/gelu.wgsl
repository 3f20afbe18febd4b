// Exact GELU math in f32 (`// #include "shared/gelu.wgsl"`): kernels/gelu.wgsl and the fused pool+GELU.

const GELU_INV_SQRT2: f32 = 0.70710678118654752;
const GELU_INV_SQRT_2PI: f32 = 0.39894228040143268;

// erf(x) for f32 to about 1 ulp-scale absolute error (< 2e-7): Abramowitz & Stegun 7.1.26 is too coarse near
// 0 for relative checks, so use the Numerical Recipes erfc Chebyshev fit (fractional error < 1.2e-7).
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
