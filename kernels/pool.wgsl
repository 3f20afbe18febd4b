// Max pooling KxK with stride K and floor (PyTorch nn.MaxPool2d(K)), NHWC, plus the ConvGroup's fused
// pool -> GELU. Ties go to the first maximum in row-major window order (as PyTorch).
//
// Layouts (row-major, `act` storage, math in f32):
//   x, dx     [N][H][W][C]
//   y/pre, g  [N][HO][WO][C]   with HO = H / K, WO = W / K (floor)
//   dy        [N][HO][WO][C]
// Constants injected by lib/nn/ops.ts: N H W K HO WO (shape), WY = ceil(H / K), WX = ceil(W / K) (windows
// that touch x, including the partial ones cut off by the floor), CV (vec4 per pixel: C / 4), WG (workgroup
// size).
//
// Forward: one invocation per output element (consecutive invocations along channels: coalesced).
// Backward (gather, no atomics): one invocation per window and channel writes every dx element of its
// window: dy (times gelu'(pre) in the fused version) at the argmax, 0 elsewhere; the partial windows at the
// bottom and right edge (outside every pooling window) write 0. So every element of dx is written once.
//
// Each entry point has its own bindings; binding numbers repeat across entry points (only the interface of
// one entry point has to be collision-free).

// #include "shared/grid.wgsl"
// #include "shared/gelu.wgsl"

const OUT_COUNT: u32 = N * HO * WO * CV; // forward invocations
const WIN_COUNT: u32 = N * WY * WX * CV; // backward invocations

fn x_index(n: u32, yy: u32, xx: u32, cv: u32) -> u32 {
  return ((n * H + yy) * W + xx) * CV + cv;
}

fn y_index(n: u32, oy: u32, ox: u32, cv: u32) -> u32 {
  return ((n * HO + oy) * WO + ox) * CV + cv;
}

// x index of the top-left element of output o's window
fn window_base(o: u32) -> u32 {
  let cv = o % CV;
  let p = o / CV;
  let ox = p % WO;
  let q = p / WO;
  let oy = q % HO;
  let n = q / HO;
  return x_index(n, oy * K, ox * K, cv);
}

// (n, wy, wx, cv) of backward invocation o
fn window_coords(o: u32) -> vec4u {
  let cv = o % CV;
  let p = o / CV;
  let wx = p % WX;
  let q = p / WX;
  let wy = q % WY;
  let n = q / WY;
  return vec4u(n, wy, wx, cv);
}

// Offset of window element (ky, kx) from the window's top-left, in elements of the bound array.
fn tap(ky: u32, kx: u32) -> u32 {
  return (ky * W + kx) * CV;
}

// forward:  binding 0 x [N][H][W][C], binding 1 y (pre) [N][HO][WO][C], fused: binding 2 g = gelu(pre)
// backward: binding 0 x, binding 1 dy [N][HO][WO][C], binding 2 dx [N][H][W][C], fused: binding 3 pre
// All as arrays of act4: C is a multiple of 4 (CV = C / 4 vec4 per pixel).
@group(0) @binding(0) var<storage, read> px4: array<act4>;
@group(0) @binding(1) var<storage, read_write> py4: array<act4>;
@group(0) @binding(2) var<storage, read_write> pg4: array<act4>;
@group(0) @binding(1) var<storage, read> pdy4: array<act4>;
@group(0) @binding(2) var<storage, read_write> pdx4: array<act4>;
@group(0) @binding(3) var<storage, read> ppre4: array<act4>;

fn window_max4(base: u32) -> vec4f {
  var best = vec4f(px4[base]);
  for (var ky = 0u; ky < K; ky++) {
    for (var kx = 0u; kx < K; kx++) {
      let v = vec4f(px4[base + tap(ky, kx)]);
      best = select(best, v, v > best);
    }
  }
  return best;
}

fn route4(w: vec4u, g: vec4f) {
  let base = x_index(w.x, w.y * K, w.z * K, w.w);
  var best = vec4f(px4[base]);
  var arg = vec4u(0u);
  for (var ky = 0u; ky < K; ky++) {
    for (var kx = 0u; kx < K; kx++) {
      let v = vec4f(px4[base + tap(ky, kx)]);
      let gt = v > best;
      best = select(best, v, gt);
      arg = select(arg, vec4u(ky * K + kx), gt);
    }
  }
  for (var ky = 0u; ky < K; ky++) {
    for (var kx = 0u; kx < K; kx++) {
      pdx4[base + tap(ky, kx)] = act4(select(vec4f(0.0), g, vec4u(ky * K + kx) == arg));
    }
  }
}

fn zero_partial4(w: vec4u) {
  for (var ky = 0u; ky < K; ky++) {
    for (var kx = 0u; kx < K; kx++) {
      let yy = w.y * K + ky;
      let xx = w.z * K + kx;
      if (yy < H && xx < W) {
        pdx4[x_index(w.x, yy, xx, w.w)] = act4(vec4f(0.0));
      }
    }
  }
}

@compute @workgroup_size(WG)
fn pool_fwd(ids: GridIds) {
  let o = grid_index(ids, WG);
  if (o >= OUT_COUNT) {
    return;
  }
  py4[o] = act4(window_max4(window_base(o)));
}

@compute @workgroup_size(WG)
fn pool_gelu_fwd(ids: GridIds) {
  let o = grid_index(ids, WG);
  if (o >= OUT_COUNT) {
    return;
  }
  let m = window_max4(window_base(o));
  py4[o] = act4(m);
  pg4[o] = act4(gelu4(m));
}

@compute @workgroup_size(WG)
fn pool_bwd(ids: GridIds) {
  let o = grid_index(ids, WG);
  if (o >= WIN_COUNT) {
    return;
  }
  let w = window_coords(o);
  if (w.y < HO && w.z < WO) {
    route4(w, vec4f(pdy4[y_index(w.x, w.y, w.z, w.w)]));
  } else {
    zero_partial4(w);
  }
}

@compute @workgroup_size(WG)
fn pool_gelu_bwd(ids: GridIds) {
  let o = grid_index(ids, WG);
  if (o >= WIN_COUNT) {
    return;
  }
  let w = window_coords(o);
  if (w.y < HO && w.z < WO) {
    let yi = y_index(w.x, w.y, w.z, w.w);
    route4(w, vec4f(pdy4[yi]) * gelu_grad4(vec4f(ppre4[yi])));
  } else {
    zero_partial4(w);
  }
}
