// BatchNorm2d (PyTorch semantics) over NHWC activations seen as [M][C] rows, M = N*H*W, in `act` storage
// (math in f32); per-channel values (weight, bias, mean, invstd, running stats, gradients) are f32 [C], read
// as vec4s.
//
// Training forward:  bn_stats (split) -> bn_finalize (per channel) -> bn_apply (elementwise)
// Eval forward:      bn_eval (elementwise, running statistics)
// Backward:          bn_bwd_partial (split) -> bn_bwd_reduce[_dw] (per channel) -> bn_bwd_dx (elementwise)
//
// Split reductions: the rows are cut into KSPLIT chunks of KCHUNK rows (the last may be shorter, none empty).
// One workgroup per (chunk, block of C4B channel vec4s); its threads are LANES row lanes x C4B channel vec4s,
// lane l takes the l-th run of LCHUNK consecutive rows of the chunk (sequential streams: 1.5x faster than
// interleaved lanes on lavapipe). Lanes are combined by a fixed tree in workgroup memory, chunks by a fixed
// sequential loop in the per-channel kernel: deterministic, no atomics.
// Statistics are (count, mean, M2) triples: Welford within a lane, Chan et al.'s pairwise merge across lanes
// and chunks, so the variance does not cancel when |mean| >> std (and a constant channel gives exactly 0).
//
// Constants (lib/nn/batchnorm.ts defines all of them for every entry point): M, C4 (= C/4), KSPLIT, KCHUNK,
// C4B, LANES (LANES * C4B <= WG), LP2 (power of two >= LANES), CBLOCKS (= ceil(C4 / C4B)), WG, EPS, MOMENTUM.

// #include "shared/grid.wgsl"

const COUNT: u32 = M * C4; // vec4 elements of an activation tensor
const LCHUNK: u32 = (KCHUNK + LANES - 1u) / LANES; // rows per lane

// One thread's part of a split reduction: chunk s, channel vec4 c4, row lane, rows [p0, p1) of the chunk.
struct Slot {
  s: u32,
  c4: u32,
  lane: u32,
  live: bool,
  p0: u32,
  p1: u32,
}

fn slot(wid: vec3u, nwg: vec3u, lid: u32) -> Slot {
  let g = group_index(wid, nwg);
  let s = g / CBLOCKS;
  let lane = lid / C4B;
  let c4 = (g % CBLOCKS) * C4B + lid % C4B;
  let p0 = min(M, s * KCHUNK + lane * LCHUNK);
  let p1 = min(M, min((s + 1u) * KCHUNK, p0 + LCHUNK));
  return Slot(s, c4, lane, s < KSPLIT && lane < LANES && c4 < C4, p0, p1);
}

// Rows in chunk s (all chunks but the last hold KCHUNK).
fn chunk_rows(s: u32) -> f32 {
  return f32(min(M, (s + 1u) * KCHUNK) - s * KCHUNK);
}

struct Moments {
  n: f32,
  mean: vec4f,
  m2: vec4f, // sum of squared deviations from mean
}

// Chan, Golub & LeVeque: the moments of the union of two disjoint sets (either may be empty).
fn merge(a: Moments, b: Moments) -> Moments {
  if (b.n == 0.0) {
    return a;
  }
  if (a.n == 0.0) {
    return b;
  }
  let n = a.n + b.n;
  let f = b.n / n;
  let d = b.mean - a.mean;
  return Moments(n, a.mean + d * f, a.m2 + b.m2 + d * d * (a.n * f));
}

// Workgroup scratch of the split reductions: one entry per thread.
var<workgroup> wa: array<vec4f, WG>;
var<workgroup> wb: array<vec4f, WG>;
var<workgroup> wn: array<f32, WG>;

// ---- bn_stats: binding 0 x [M][C4] act4, binding 1 part [KSPLIT][2][C4] vec4 f32 (mean, M2 of each chunk)
@group(0) @binding(0) var<storage, read> sx: array<act4>;
@group(0) @binding(1) var<storage, read_write> spart: array<vec4f>;

@compute @workgroup_size(WG)
fn bn_stats(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let t = slot(wid, nwg, lid);
  var a = Moments(0.0, vec4f(0.0), vec4f(0.0));
  if (t.live) {
    for (var p = t.p0; p < t.p1; p++) {
      let v = vec4f(sx[p * C4 + t.c4]);
      a.n += 1.0;
      let d = v - a.mean;
      a.mean += d / a.n;
      a.m2 += d * (v - a.mean);
    }
  }
  wn[lid] = a.n;
  wa[lid] = a.mean;
  wb[lid] = a.m2;
  for (var stride = LP2 / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (t.live && t.lane < stride && t.lane + stride < LANES) {
      let o = lid + stride * C4B;
      let r = merge(Moments(wn[lid], wa[lid], wb[lid]), Moments(wn[o], wa[o], wb[o]));
      wn[lid] = r.n;
      wa[lid] = r.mean;
      wb[lid] = r.m2;
    }
  }
  if (t.live && t.lane == 0u) {
    spart[2u * t.s * C4 + t.c4] = wa[lid];
    spart[(2u * t.s + 1u) * C4 + t.c4] = wb[lid];
  }
}

// ---- bn_finalize: binding 0 part, 1 mean [C4], 2 invstd [C4], 3 running mean [C4], 4 running var [C4]
@group(0) @binding(0) var<storage, read> fpart: array<vec4f>;
@group(0) @binding(1) var<storage, read_write> fmean: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> finvstd: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> frmean: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> frvar: array<vec4f>;

@compute @workgroup_size(WG)
fn bn_finalize(ids: GridIds) {
  let c4 = grid_index(ids, WG);
  if (c4 >= C4) {
    return;
  }
  var a = Moments(0.0, vec4f(0.0), vec4f(0.0));
  for (var s = 0u; s < KSPLIT; s++) {
    a = merge(a, Moments(chunk_rows(s), fpart[2u * s * C4 + c4], fpart[(2u * s + 1u) * C4 + c4]));
  }
  fmean[c4] = a.mean;
  finvstd[c4] = 1.0 / sqrt(a.m2 / f32(M) + EPS);
  frmean[c4] = (1.0 - MOMENTUM) * frmean[c4] + MOMENTUM * a.mean;
  frvar[c4] = (1.0 - MOMENTUM) * frvar[c4] + MOMENTUM * (a.m2 / f32(M - 1u));
}

// ---- bn_apply / bn_eval: binding 0 x [M][C4] act4, 1 y act4, 2 weight, 3 bias, 4 mean, 5 invstd (bn_apply)
// or running mean, running var (bn_eval), all [C4] vec4 f32.
@group(0) @binding(0) var<storage, read> ax: array<act4>;
@group(0) @binding(1) var<storage, read_write> ay: array<act4>;
@group(0) @binding(2) var<storage, read> aweight: array<vec4f>;
@group(0) @binding(3) var<storage, read> abias: array<vec4f>;
@group(0) @binding(4) var<storage, read> amean: array<vec4f>;
@group(0) @binding(5) var<storage, read> ascale: array<vec4f>;

@compute @workgroup_size(WG)
fn bn_apply(ids: GridIds) {
  let i = grid_index(ids, WG);
  if (i >= COUNT) {
    return;
  }
  let c4 = i % C4;
  ay[i] = act4((vec4f(ax[i]) - amean[c4]) * (ascale[c4] * aweight[c4]) + abias[c4]);
}

@compute @workgroup_size(WG)
fn bn_eval(ids: GridIds) {
  let i = grid_index(ids, WG);
  if (i >= COUNT) {
    return;
  }
  let c4 = i % C4;
  let invstd = 1.0 / sqrt(ascale[c4] + EPS);
  ay[i] = act4((vec4f(ax[i]) - amean[c4]) * (invstd * aweight[c4]) + abias[c4]);
}

// ---- bn_bwd_partial: binding 0 x act4, 1 dy act4, 2 mean [C4], 3 part [KSPLIT][2][C4] vec4 f32:
// sum dy and sum dy * (x - mean) of each chunk.
@group(0) @binding(0) var<storage, read> gx: array<act4>;
@group(0) @binding(1) var<storage, read> gdy: array<act4>;
@group(0) @binding(2) var<storage, read> gmean: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> gpart: array<vec4f>;

@compute @workgroup_size(WG)
fn bn_bwd_partial(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nwg: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let t = slot(wid, nwg, lid);
  var sdy = vec4f(0.0);
  var sdyx = vec4f(0.0);
  if (t.live) {
    let mean = gmean[t.c4];
    for (var p = t.p0; p < t.p1; p++) {
      let dy = vec4f(gdy[p * C4 + t.c4]);
      sdy += dy;
      sdyx += dy * (vec4f(gx[p * C4 + t.c4]) - mean);
    }
  }
  wa[lid] = sdy;
  wb[lid] = sdyx;
  for (var stride = LP2 / 2u; stride > 0u; stride /= 2u) {
    workgroupBarrier();
    if (t.live && t.lane < stride && t.lane + stride < LANES) {
      let o = lid + stride * C4B;
      wa[lid] += wa[o];
      wb[lid] += wb[o];
    }
  }
  if (t.live && t.lane == 0u) {
    gpart[2u * t.s * C4 + t.c4] = wa[lid];
    gpart[(2u * t.s + 1u) * C4 + t.c4] = wb[lid];
  }
}

// ---- bn_bwd_reduce[_dw]: binding 0 part, 1 weight, 2 invstd, 3 coef [3][C4] (weight * invstd, mean dy,
// mean dy * xhat), 4 dbias, 5 dweight (bn_bwd_reduce_dw only); all vec4 f32.
@group(0) @binding(0) var<storage, read> rpart: array<vec4f>;
@group(0) @binding(1) var<storage, read> rweight: array<vec4f>;
@group(0) @binding(2) var<storage, read> rinvstd: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> rcoef: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> rdbias: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> rdweight: array<vec4f>;

// Writes coef and dbias of channel vec4 c4; returns dweight = sum dy * xhat.
fn bwd_reduce(c4: u32) -> vec4f {
  var sdy = vec4f(0.0);
  var sdyx = vec4f(0.0);
  for (var s = 0u; s < KSPLIT; s++) {
    sdy += rpart[2u * s * C4 + c4];
    sdyx += rpart[(2u * s + 1u) * C4 + c4];
  }
  let invstd = rinvstd[c4];
  let sdyxhat = sdyx * invstd;
  rcoef[c4] = rweight[c4] * invstd;
  rcoef[C4 + c4] = sdy / f32(M);
  rcoef[2u * C4 + c4] = sdyxhat / f32(M);
  rdbias[c4] = sdy;
  return sdyxhat;
}

@compute @workgroup_size(WG)
fn bn_bwd_reduce(ids: GridIds) {
  let c4 = grid_index(ids, WG);
  if (c4 < C4) {
    bwd_reduce(c4);
  }
}

@compute @workgroup_size(WG)
fn bn_bwd_reduce_dw(ids: GridIds) {
  let c4 = grid_index(ids, WG);
  if (c4 < C4) {
    rdweight[c4] = bwd_reduce(c4);
  }
}

// ---- bn_bwd_dx: binding 0 x act4, 1 dy act4, 2 dx act4, 3 mean, 4 invstd, 5 coef (vec4 f32):
// dx = weight * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)), xhat = (x - mean) * invstd.
@group(0) @binding(0) var<storage, read> dxx: array<act4>;
@group(0) @binding(1) var<storage, read> dxdy: array<act4>;
@group(0) @binding(2) var<storage, read_write> dxdx: array<act4>;
@group(0) @binding(3) var<storage, read> dxmean: array<vec4f>;
@group(0) @binding(4) var<storage, read> dxinvstd: array<vec4f>;
@group(0) @binding(5) var<storage, read> dxcoef: array<vec4f>;

@compute @workgroup_size(WG)
fn bn_bwd_dx(ids: GridIds) {
  let i = grid_index(ids, WG);
  if (i >= COUNT) {
    return;
  }
  let c4 = i % C4;
  let xhat = (vec4f(dxx[i]) - dxmean[c4]) * dxinvstd[c4];
  let g = vec4f(dxdy[i]) - dxcoef[C4 + c4] - xhat * dxcoef[2u * C4 + c4];
  dxdx[i] = act4(dxcoef[c4] * g);
}
