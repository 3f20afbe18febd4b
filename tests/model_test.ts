// The whole network on the GPU: PyTorch parity (tests/fixtures/net_small.safetensors, made by
// tests/torch_fixtures.py) and a finite-difference check of every parameter's gradient.

import { join } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { Conv2d, Flatten, GELU, GlobalMaxPool, Linear, MaxPool2d, Mul, Residual } from "../lib/nn/layers.ts";
import { initParams, INPUT_SHAPE, packParams } from "../lib/nn/model.ts";
import { Graph, type Module, Named, Sequential } from "../lib/nn/module.ts";
import { getF32, loadSafetensors } from "../lib/io/safetensors.ts";
import { submitSteps } from "../lib/gpu/steps.ts";
import { Trainer } from "../lib/train/trainer.ts";
import { hyp, makeNet } from "../main.ts";
import { assertClose, fixtureSgd, freshSeed, randn, sgdSteps, testGpu, testRng, toInput } from "./util.ts";

const FIXTURES = join(fileURLToPath(new URL(".", import.meta.url)), "fixtures");

/** The training step of `model` at batch N with the fixtures' SGD (the whitening bias gated, as main.ts). */
async function harness(
  model: Module,
  N: number,
  steps: number,
  sgd = { momentum: 0.85, weightDecay: 0 },
): Promise<Trainer> {
  const gpu = await testGpu();
  const trainer = new Trainer(gpu, new Graph(model, INPUT_SHAPE), {
    precision: "f32",
    batch: N,
    steps,
    loss: { labelSmoothing: 0.2 },
    optimizers: fixtureSgd(sgd),
  });
  await gpu.checkCompile();
  return trainer;
}

function mainNet(widths: number[]): Module {
  return makeNet({ ...hyp.defaults, net: { ...hyp.defaults.net, widths } });
}

/** main.ts's network against a PyTorch fixture: logits, loss, every gradient, two Nesterov SGD steps. */
async function torchParity(fixture: string) {
  const fx = loadSafetensors(join(FIXTURES, fixture));
  const t = fx.tensors, meta = fx.metadata;
  const N = Number(meta.batch);
  const widths = JSON.parse(meta.widths) as number[];
  const sgd = { momentum: Number(meta.momentum), weightDecay: Number(meta.weight_decay) };
  const h = await harness(mainNet(widths), N, 2, sgd);
  const { gpu, layout, state, net, step } = h;
  const trained = layout.trained;
  if (meta.state_dict) assert.deepEqual(layout.entries.map((e) => e.name), JSON.parse(meta.state_dict));
  const params: Record<string, Float32Array> = {};
  for (const e of layout.entries) params[e.name] = getF32(t, `param.${e.name}`);
  state.load(params);
  gpu.write(net.x, toInput(getF32(t, "input"), N));
  gpu.write(step.labels, Uint32Array.from(t.labels.data as Int32Array));
  gpu.poison(net.output);
  gpu.poison(state.grads);
  h.table.write(sgdSteps(step, 2, { lr: Number(meta.lr) }));
  const ops = step.ops();

  // Step 1: forward, loss, gradients (read before the optimizer's update is visible in params).
  submitSteps(gpu, h.table, 0, 1, net.forwardOps);
  assertClose(await gpu.readF32(net.output), getF32(t, "logits"), 1e-4, `${fixture} logits`);
  submitSteps(gpu, h.table, 0, 1, ops);
  const loss1 = (await gpu.readF32(step.stats, 0, 1))[0];
  assertClose([loss1], getF32(t, "loss"), 1e-4, `${fixture} loss`);
  const grads = await state.readGrads();
  for (const e of trained) {
    assertClose(grads[e.name].data, getF32(t, `grad.${e.name}`), 1e-4, `${fixture} grad ${e.name}`);
  }
  let now = await state.read();
  for (const e of trained) {
    assertClose(now[e.name].data, getF32(t, `step1.${e.name}`), 1e-4, `${fixture} step1 ${e.name}`);
  }
  // Step 2 uses the momentum buffer from step 1.
  submitSteps(gpu, h.table, 1, 2, ops);
  assertClose(await gpu.readF32(step.stats, 8, 1), getF32(t, "loss2"), 1e-4, `${fixture} loss2`);
  now = await state.read();
  for (const e of trained) {
    assertClose(now[e.name].data, getF32(t, `step2.${e.name}`), 1e-4, `${fixture} step2 ${e.name}`);
  }
  assertClose(now["0.weight"].data, getF32(t, "param.0.weight"), 0, "frozen whitening weight");
}

Deno.test("network matches PyTorch: logits, loss, every gradient, two Nesterov SGD steps", async () => {
  await torchParity("net_small.safetensors");
});

Deno.test("a four-block network matches PyTorch (nn.MaxPool2d(1) global pool, head 8.weight)", async () => {
  await torchParity("net_deep.safetensors");
});

/** The distance from |x| (an f32 value) to the next larger f32: one ulp. */
function f32Spacing(x: number): number {
  const f = new Float32Array([Math.abs(x)]);
  new Uint32Array(f.buffer)[0]++;
  return f[0] - Math.abs(x);
}

/**
 * The gradient of every trained parameter of `model` against central finite differences of the f32 loss.
 * Returns the op names of the step (to check which kernels ran).
 */
async function finiteDifferences(model: Module, label: string): Promise<string[]> {
  const rand = testRng(freshSeed(label));
  const N = 3;
  const h = await harness(model, N, 1);
  const { gpu, layout, state, net, step } = h;
  // PyTorch's init (so activations keep their scale), random biases and whitening filters.
  const init = initParams(layout, rand);
  for (const e of layout.entries) {
    if (e.name.endsWith("bias")) init[e.name] = Float32Array.from(randn(init[e.name].length, rand, 0.1));
    if (e.init === "external") init[e.name] = Float32Array.from(randn(init[e.name].length, rand, 0.5));
  }
  const flat = packParams(layout, init).params;
  state.load(init);
  gpu.write(net.x, Float32Array.from(randn(N * 32 * 32 * 4, rand)).map((v, i) => (i % 4 === 3 ? 0 : v)));
  gpu.write(step.labels, Uint32Array.from({ length: N }, () => Math.floor(rand() * 10)));
  h.table.write(sgdSteps(step, 1, { lr: 0 })); // lr 0: the optimizer leaves the parameters as they are
  const ops = step.ops();
  submitSteps(gpu, h.table, 0, 1, ops);
  const grads = await gpu.readF32(state.grads);
  const loss = async (params: Float32Array) => {
    gpu.write(state.params, params);
    submitSteps(gpu, h.table, 0, 1, ops);
    return (await gpu.readF32(step.stats, 0, 1))[0];
  };
  // The loss is an f32 sum whose last bits move with any perturbation: measured over 30 seeds (1,900
  // samples), a difference of two losses is off by up to ~8 ulps of the loss, so a central difference over
  // +-eps estimates g to about NOISE_ULPS * ulp(loss) / eps, whatever eps. Max-pooling makes the loss
  // piecewise smooth: a perturbation can move a window's argmax (a kink), which forward and backward
  // differences that disagree reveal; such a sample is replaced by another index of the same tensor. eps =
  // 3e-3 balances the noise (which favours a large eps) against kinks and curvature (which favour a small
  // one). Only entries whose |g| is well above the noise are informative: test the largest-gradient entries
  // of a random sample.
  const EPS = 3e-3, NOISE_ULPS = 8;
  const base = await loss(flat);
  const noise = (NOISE_ULPS * f32Spacing(base)) / EPS;
  const fdAt = async (i: number) => {
    const plus = flat.slice(), minus = flat.slice();
    plus[i] += EPS;
    minus[i] -= EPS;
    // The perturbations actually applied (the f32 parameter rounds p +- eps).
    const up = plus[i] - flat[i], down = flat[i] - minus[i];
    const [lp, lm] = [await loss(plus), await loss(minus)];
    return { fwd: (lp - base) / up, bwd: (base - lm) / down, central: (lp - lm) / (up + down) };
  };
  for (const p of layout.trained) {
    // Every entry of a small tensor (a bias), else 32 distinct random entries; largest |gradient| first.
    const picked = new Set<number>();
    while (picked.size < Math.min(32, p.count)) picked.add(p.offset + Math.floor(rand() * p.count));
    const candidates = [...picked].sort((x, y) => Math.abs(grads[y]) - Math.abs(grads[x]));
    let checked = 0;
    for (const i of candidates) {
      const g = grads[i];
      if (checked === 3 || Math.abs(g) < 5 * noise) break;
      const d = await fdAt(i);
      if (Math.abs(d.fwd - d.bwd) > 5e-3 * Math.abs(g) + noise) continue; // a max-pool kink next to this point
      const tol = 5e-3 * Math.abs(g) + noise;
      assert.ok(
        Math.abs(d.central - g) <= tol,
        `${label}: finite differences ${p.name}[${i - p.offset}]: gradient ${g}, central difference ` +
          `${d.central} (eps ${EPS}, loss ${base}): |difference| > ${tol.toExponential(3)}`,
      );
      checked++;
    }
    assert.ok(checked > 0, `${label}: finite differences ${p.name}: no usable sample`);
  }
  return ops.map((op) => op.name);
}

Deno.test("gradients of every parameter match central finite differences (f32)", async () => {
  await finiteDifferences(mainNet([8, 8, 12]), "finite differences");
});

Deno.test("a residual connection (a tensor with two consumers) gets the sum of both gradients", async () => {
  const conv = (cin: number, cout: number) => Conv2d(cin, cout, 3, { bias: true });
  const model = Sequential(
    Conv2d(3, 24, 2, {
      padding: 0,
      bias: true,
      frozenWeight: true,
      weightInit: "external",
      biasGroup: "whiten_bias",
    }),
    GELU(),
    Named({ conv1: conv(24, 8), pool: MaxPool2d(2), activ: GELU() }),
    Residual(Named({ conv: conv(8, 8), activ: GELU() })),
    MaxPool2d(3),
    GlobalMaxPool(),
    Flatten(),
    Linear(8, 10, { bias: false }),
    Mul(1 / 9),
  );
  const names = await finiteDifferences(model, "residual finite differences");
  assert.ok(names.includes("3.add"), "the residual's forward sum");
  assert.ok(names.includes("2.pool+activ.grad_sum"), "the two gradients of block 2's output are summed");
});
