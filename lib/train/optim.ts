// The optimizer seam. An experiment file declares its optimizers the way airbench declares `param_configs`
// and `torch.optim.SGD(...)`: which trained parameters each one updates (by state-dict name, shape or layer
// group), with which settings, and the names of the per-step values it reads (each group's lr, the lookahead
// decay) and of the gates it obeys. The experiment's plan sets those names per step (lib/gpu/steps.ts
// PlanStep); the library gives each name a slot or flag bit of the GPU Step and builds every optimizer's ops.
//
// An optimizer is anything with this interface: SGD and Lookahead here; another (Muon) lives in its own file.

import type { Gpu, Op } from "../gpu/gpu.ts";
import type { NetState, ParamLayout, Slot } from "../nn/model.ts";
import { emaUpdate, sgdStep } from "../nn/ops.ts";
import { StepSlots } from "../gpu/steps.ts";

/** Which trained parameters a group takes: a test of each state-dict entry, or "rest" (all not taken). */
export type Select = ((e: Slot) => boolean) | "rest";

/** The parameters of a layer group (a layer's `biasGroup`, e.g. "whiten_bias"; "default" otherwise). */
export const inGroup = (group: string): Select => (e) => e.group === group;
/** The parameters of these state-dict names. */
export const named = (...names: string[]): Select => (e) => names.includes(e.name);
/** The parameters with this many dimensions (4: convolution filters, 1: biases). */
export const ofRank = (rank: number): Select => (e) => e.torchShape.length === rank;

/** One parameter group of an optimizer: what it takes and a label for messages. */
export interface ParamGroup {
  params: Select;
  label?: string;
}

/** What an optimizer builds its ops from: the GPU, the network's state, the Step uniform and its slots. */
export interface OptimizerCtx {
  gpu: Gpu;
  state: NetState;
  stepBuf: GPUBuffer;
  slots: StepSlots;
}

export interface Optimizer {
  /** Its name in messages and in the bench's table ("sgd", "lookahead", "muon"). */
  readonly name: string;
  /** Its parameter groups: together, all optimizers' groups claim each trained parameter exactly once. */
  readonly groups: readonly ParamGroup[];
  /** The per-step values (Step slots) and the gates (Step flag bits) it reads, by name. */
  readonly values: readonly string[];
  readonly gates: readonly string[];
  /** Its ops for one step; `params[i]`: the entries group i claimed, in storage order. */
  ops(ctx: OptimizerCtx, params: Slot[][]): Op[];
}

/** The Step slots and flag bits of all the names a list of optimizers reads, in declaration order. */
export function stepSlotsOf(optimizers: readonly Optimizer[]): StepSlots {
  return new StepSlots(optimizers.flatMap((o) => o.values), optimizers.flatMap((o) => o.gates));
}

/**
 * The trained entries each optimizer's groups claim (`[optimizer][group]`, storage order). Every trained
 * parameter must be claimed by exactly one group, and every group must claim at least one: otherwise one
 * error names the parameter (or the group).
 */
export function claimParams(layout: ParamLayout, optimizers: readonly Optimizer[]): Slot[][][] {
  const groups = optimizers.flatMap((o, i) =>
    o.groups.map((g, j) => ({ o: i, g: j, select: g.params, label: `${o.name} group ${g.label ?? j}` }))
  );
  const rest = groups.filter((g) => g.select === "rest");
  if (rest.length > 1) {
    throw new Error(`two parameter groups take "rest": ${rest.map((g) => g.label).join(", ")}`);
  }
  const owner = new Map<string, (typeof groups)[number]>();
  for (const e of layout.trained) {
    for (const g of groups) {
      if (g.select === "rest" || !g.select(e)) continue;
      const had = owner.get(e.name);
      if (had) {
        throw new Error(
          `parameter ${e.name} is claimed by ${had.label} and by ${g.label}: each trained parameter needs ` +
            `exactly one optimizer group`,
        );
      }
      owner.set(e.name, g);
    }
    if (!owner.has(e.name)) {
      if (!rest.length) {
        throw new Error(
          `parameter ${e.name} is claimed by no optimizer group: add it to a group (or give one group ` +
            `params "rest")`,
        );
      }
      owner.set(e.name, rest[0]);
    }
  }
  const out = optimizers.map((o) => o.groups.map((): Slot[] => []));
  for (const e of layout.trained) {
    const g = owner.get(e.name)!;
    out[g.o][g.g].push(e);
  }
  for (const g of groups) {
    if (!out[g.o][g.g].length) throw new Error(`${g.label} claims no trained parameter`);
  }
  return out;
}

/** All optimizers' ops of one step, in the order declared. */
export function optimizerOps(
  ctx: OptimizerCtx,
  optimizers: readonly Optimizer[],
): { opt: Optimizer; ops: Op[] }[] {
  const claimed = claimParams(ctx.state.layout, optimizers);
  return optimizers.map((opt, i) => ({ opt, ops: opt.ops(ctx, claimed[i]) }));
}

// ---------------------------------------------------------------------------------------------------- SGD

/** torch.optim.SGD's settings (dampening 0); a group may override any of them. */
export interface SgdOptions {
  momentum: number;
  nesterov: boolean;
  /** Coupled, as torch: g = grad + weight_decay * p. Default 0. */
  weight_decay?: number;
}

export interface SgdGroup extends ParamGroup, Partial<SgdOptions> {
  /** The name of the per-step value that is this group's lr. */
  lr: string;
  /** The group trains only in steps where this gate is on (frozen otherwise: no decay, no momentum). */
  gate?: string;
}

/** A run of neighbouring entries that one SGD dispatch updates (with at most one gated sub-range). */
interface Span {
  start: number;
  end: number;
  key: string;
  gate?: { name: string; start: number; end: number };
}

/** The end of an entry's storage: the next entry's (aligned) offset; the padding between stays zero. */
function storedEnd(layout: ParamLayout, e: Slot): number {
  const after = layout.trained.map((q) => q.offset).filter((o) => o > e.offset);
  return after.length ? Math.min(...after) : layout.sizes.params;
}

/**
 * torch.optim.SGD over parameter groups: `SGD([{ params, lr: "lr" }, ...], { momentum, nesterov })`. One
 * dispatch per run of neighbouring parameters with the same lr, momentum, weight decay and Nesterov setting.
 */
export function SGD(groups: SgdGroup[], defaults: SgdOptions): Optimizer {
  const settings = groups.map((g) => ({
    lr: g.lr,
    momentum: g.momentum ?? defaults.momentum,
    nesterov: g.nesterov ?? defaults.nesterov,
    weightDecay: g.weight_decay ?? defaults.weight_decay ?? 0,
  }));
  return {
    name: "sgd",
    groups,
    values: groups.map((g) => g.lr),
    gates: groups.flatMap((g) => g.gate ? [g.gate] : []),
    ops(ctx, params) {
      const { layout } = ctx.state;
      const spans: (Span & { group: number })[] = [];
      const entries = params.flatMap((es, group) => es.map((e) => ({ e, group })));
      entries.sort((a, b) => a.e.offset - b.e.offset);
      for (const { e, group } of entries) {
        const key = JSON.stringify(settings[group]), gate = groups[group].gate;
        const end = storedEnd(layout, e), last = spans.at(-1);
        const joins = last && last.end === e.offset && last.key === key &&
          (!gate || !last.gate || (last.gate.name === gate && last.gate.end === e.offset));
        const span = joins ? last : { start: e.offset, end, key, group };
        if (span !== last) spans.push(span);
        span.end = end;
        if (gate) span.gate = { name: gate, start: span.gate?.start ?? e.offset, end };
      }
      const s = ctx.state;
      return spans.map((sp) => {
        const range = (buffer: GPUBuffer) => ({
          buffer,
          offset: sp.start * 4,
          size: (sp.end - sp.start) * 4,
        });
        const set = settings[sp.group];
        return sgdStep(ctx.gpu, {
          params: range(s.params),
          grads: range(s.grads),
          mom: range(s.mom),
          n: sp.end - sp.start,
          stepBuf: ctx.stepBuf,
          lrSlot: ctx.slots.value(set.lr),
          momentum: set.momentum,
          weightDecay: set.weightDecay,
          nesterov: set.nesterov,
          gate: sp.gate &&
            {
              start: sp.gate.start - sp.start,
              end: sp.gate.end - sp.start,
              bit: ctx.slots.gate(sp.gate.name),
            },
        });
      });
    },
  };
}

// ---------------------------------------------------------------------------------------------- lookahead

/**
 * Lookahead: in the steps where the event `on` is set, ema = lerp(ema, net, 1 - decay) and net = ema, with
 * decay the per-step value `decay`; over all trained parameters and the layers' buffers (BatchNorm running
 * statistics). It claims no parameter: it runs after the optimizers that do.
 */
export function Lookahead(
  names: { decay: string; on: string } = { decay: "lookahead", on: "lookahead" },
): Optimizer {
  return {
    name: "lookahead",
    groups: [],
    values: [names.decay],
    gates: [names.on],
    ops(ctx) {
      const s = ctx.state, { sizes } = s.layout;
      const at = {
        stepBuf: ctx.stepBuf,
        decaySlot: ctx.slots.value(names.decay),
        eventBit: ctx.slots.gate(names.on),
      };
      const ops = [emaUpdate(ctx.gpu, { params: s.params, ema: s.ema, n: sizes.params, ...at })];
      if (sizes.buffers > 0) {
        ops.push(
          emaUpdate(
            ctx.gpu,
            { params: s.buffers, ema: s.buffersEma, n: sizes.buffers, ...at },
            "ema_update.buffers",
          ),
        );
      }
      return ops;
    },
  };
}
