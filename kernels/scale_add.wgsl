// acc = a * acc + b * x over flat f32 vectors (test-time-augmentation logit averaging).
//
// Layouts: acc, x [COUNT] f32. Constants injected by lib/nn/ops.ts scaleAdd: COUNT (elements), WG (workgroup
// size); a and b are a uniform (they change per call, not per pipeline).

// #include "shared/grid.wgsl"

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
fn scale_add(ids: GridIds) {
  let i = grid_index(ids, WG);
  if (i >= COUNT) {
    return;
  }
  // a == 0 overwrites: the old contents (even NaN) are not read into the result
  let prev = select(sa_args.a * sa_acc[i], 0.0, sa_args.a == 0.0);
  sa_acc[i] = prev + sa_args.b * sa_x[i];
}
