// The whole network on the GPU: PyTorch parity (tests/fixtures/net_small.safetensors, made by
// tests/torch_fixtures.py) and a finite-difference check of every parameter's gradient.

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Gpu } from "../lib/gpu.ts";
import { initParams, Net, NetState, packParams, ParamLayout } from "../lib/model.ts";
import { getF32, loadSafetensors } from "../lib/safetensors.ts";
import { STEP_WHITEN_BIAS, StepTable, type StepValues, submitSteps } from "../lib/steps.ts";
import { assertClose, freshSeed, randn, testGpu, testRng } from "./util.ts";

const FIXTURE = join(fileURLToPath(new URL(".", import.meta.url)), "fixtures", "net_small.safetensors");

/** NCHW [N][3][32][32] -> the network's NHWC input with a zero 4th channel. */
function toInput(nchw: ArrayLike<number>, N: number): Float32Array {
  const out = new Float32Array(N * 32 * 32 * 4);
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < 1024; i++) out[(n * 1024 + i) * 4 + c] = nchw[(n * 3 + c) * 1024 + i];
    }
  }
  return out;
}

interface Harness {
  gpu: Gpu;
  layout: ParamLayout;
  state: NetState;
  net: Net;
  table: StepTable;
  stats: GPUBuffer;
  labels: GPUBuffer;
}

async function harness(widths: [number, number, number], N: number, steps: number): Promise<Harness> {
  const gpu = await testGpu();
  const layout = new ParamLayout({ widths, scale: 1 / 9, smoothing: 0.2 });
  const state = new NetState(gpu, layout);
  const net = new Net(gpu, "f32", layout, state, N);
  const table = new StepTable(gpu, steps);
  const stats = gpu.buffer(steps * 8, "stats");
  const labels = gpu.buffer(N * 4, "labels");
  net.buildTrainOps(labels, stats, table.current);
  await gpu.checkCompile();
  return { gpu, layout, state, net, table, stats, labels };
}

function sgdSteps(n: number, lr: number, weightDecay: number, momentum: number): StepValues[] {
  return Array.from({ length: n }, (_, step) => ({
    step,
    epoch: 0,
    batchStart: 0,
    flags: STEP_WHITEN_BIAS,
    lr,
    weightDecay,
    momentum,
    emaDecay: 0,
  }));
}

Deno.test("network matches PyTorch: logits, loss, every gradient, two Nesterov SGD steps", async () => {
  const fx = loadSafetensors(FIXTURE);
  const t = fx.tensors, meta = fx.metadata;
  const N = Number(meta.batch);
  const widths = JSON.parse(meta.widths) as [number, number, number];
  const h = await harness(widths, N, 2);
  const { gpu, layout, state, net } = h;
  const params: Record<string, Float32Array> = {};
  for (const p of [...layout.params, layout.whiten]) params[p.name] = getF32(t, `param.${p.name}`);
  state.load(params);
  gpu.write(net.x, toInput(getF32(t, "input"), N));
  gpu.write(h.labels, Uint32Array.from(t.labels.data as Int32Array));
  gpu.poison(net.logits);
  gpu.poison(state.grads);
  h.table.write(sgdSteps(2, Number(meta.lr), Number(meta.weight_decay), Number(meta.momentum)));
  const ops = [...net.forwardOps, ...net.trainOps];

  // Step 1: forward, loss, gradients (read before the optimizer's update is visible in params).
  submitSteps(gpu, h.table, 0, 1, net.forwardOps);
  assertClose(await gpu.readF32(net.logits), getF32(t, "logits"), 1e-4, "torch parity logits");
  submitSteps(gpu, h.table, 0, 1, ops);
  const loss1 = (await gpu.readF32(h.stats, 0, 1))[0];
  assertClose([loss1], getF32(t, "loss"), 1e-4, "torch parity loss");
  const grads = await state.readGrads();
  for (const p of layout.params) {
    assertClose(grads[p.name].data, getF32(t, `grad.${p.name}`), 1e-4, `torch parity grad ${p.name}`);
  }
  let now = await state.read();
  for (const p of layout.params) {
    assertClose(now[p.name].data, getF32(t, `step1.${p.name}`), 1e-4, `torch parity step1 ${p.name}`);
  }
  // Step 2 uses the momentum buffer from step 1.
  submitSteps(gpu, h.table, 1, 2, ops);
  assertClose(await gpu.readF32(h.stats, 8, 1), getF32(t, "loss2"), 1e-4, "torch parity loss2");
  now = await state.read();
  for (const p of layout.params) {
    assertClose(now[p.name].data, getF32(t, `step2.${p.name}`), 1e-4, `torch parity step2 ${p.name}`);
  }
  assertClose(now["0.weight"].data, getF32(t, "param.0.weight"), 0, "frozen whitening weight");
});

Deno.test("gradients of every parameter match central finite differences (f32)", async () => {
  const rand = testRng(freshSeed("finite differences"));
  const N = 3;
  const h = await harness([8, 8, 12], N, 1);
  const { gpu, layout, state, net } = h;
  // PyTorch's init (so activations keep their scale), random biases and whitening filters.
  const init = initParams(layout, rand);
  for (const p of layout.params) {
    if (p.name.endsWith("bias")) init[p.name] = Float32Array.from(randn(p.count, rand, 0.1));
  }
  init["0.weight"] = Float32Array.from(randn(24 * 12, rand, 0.5));
  const { flat } = packParams(layout, init);
  state.load(init);
  gpu.write(net.x, Float32Array.from(randn(N * 32 * 32 * 4, rand)).map((v, i) => (i % 4 === 3 ? 0 : v)));
  gpu.write(h.labels, Uint32Array.from({ length: N }, () => Math.floor(rand() * 10)));
  h.table.write(sgdSteps(1, 0, 0, 0)); // lr 0: the optimizer leaves the parameters as they are

  submitSteps(gpu, h.table, 0, 1, [...net.forwardOps, ...net.trainOps]);
  const grads = await gpu.readF32(state.grads);
  const loss = async (params: Float32Array) => {
    gpu.write(state.params, params);
    // crossEntropy is inside trainOps; run forward + train with lr 0 and read the summed loss.
    submitSteps(gpu, h.table, 0, 1, [...net.forwardOps, ...net.trainOps]);
    return (await gpu.readF32(h.stats, 0, 1))[0];
  };
  // Max-pooling makes the loss piecewise smooth: a perturbation can move a window's argmax (a kink). Forward
  // and backward differences that disagree reveal a kink next to the point; such a sample is replaced by
  // another index of the same tensor. The central difference of the accepted samples is compared.
  const base = await loss(flat);
  const fdAt = async (i: number, eps: number) => {
    const plus = flat.slice(), minus = flat.slice();
    plus[i] += eps;
    minus[i] -= eps;
    const [lp, lm] = [await loss(plus), await loss(minus)];
    return { fwd: (lp - base) / eps, bwd: (base - lm) / eps, central: (lp - lm) / (2 * eps) };
  };
  // The loss is an f32 sum (relative precision ~6e-8), so a difference resolves a gradient entry g only when
  // eps * |g| is many ulps of the loss: test the largest-gradient entries among a random sample of each tensor.
  for (const p of layout.params) {
    const candidates = Array.from(
      { length: Math.min(24, p.count) },
      () => p.offset + Math.floor(rand() * p.count),
    )
      .sort((x, y) => Math.abs(grads[y]) - Math.abs(grads[x]));
    let checked = 0;
    for (const i of candidates) {
      if (checked === 3) break;
      const g = grads[i];
      if (Math.abs(g) < 1e-3) break;
      const eps = Math.min(1e-2, Math.max(1e-3, (base * 2e-5) / Math.abs(g)));
      const d = await fdAt(i, eps);
      if (Math.abs(d.fwd - d.bwd) > 2e-2 * Math.abs(g)) continue; // a max-pool kink next to this point
      assertClose([g], [d.central], 1e-2, `finite differences ${p.name}`);
      checked++;
    }
    if (checked === 0) throw new Error(`finite differences ${p.name}: no usable sample`);
  }
});
