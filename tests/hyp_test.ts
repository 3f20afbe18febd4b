// Hyperparameters as data (lib/io/hyp.ts, lib/io/flags.ts): every leaf an experiment declares is a flag with
// its help and bounds, with no edit of the library; bad values are one line naming the flag.

import assert from "node:assert/strict";
import { parseCommandLine, type RunOptions, UsageError } from "../lib/io/flags.ts";
import { hyperparameters, param } from "../lib/io/hyp.ts";
import { hyp as mainHyp } from "../main.ts";
import { hyp as bnHyp } from "../experiments/airbench94.ts";

const OPTS: RunOptions = { runs: 1, seed: 0, precision: "auto", logDir: "logs", quiet: false, verify: true };

const decl = hyperparameters({
  opt: { lr: param(0.5, "learning rate", { above: 0 }), steps: param(7, "steps", { int: true, min: 1 }) },
  muon: {
    lr: param(0.24, "Muon's learning rate", { flag: "muon-lr", min: 0 }),
    schedule: { nesterov: param(true, "Nesterov momentum for Muon") }, // nested two deep
    shape: param([2, 4], "a list", { int: true, multipleOf: 2, min: 2 }),
    mode: param("ns5", "orthogonalization", { choices: ["ns5", "svd"] }),
  },
});

const parse = (args: string[]) => parseCommandLine(args, decl, OPTS, { title: "t", file: "t.ts" });

Deno.test("hyp: a new key is a flag (nested, boolean, list, string), defaults untouched", () => {
  const { hyp } = parse([
    "--lr",
    "2",
    "--muon-lr",
    "0.1",
    "--nesterov",
    "false",
    "--shape",
    "4,6,8",
    "--mode",
    "svd",
  ]);
  assert.deepEqual(hyp, {
    opt: { lr: 2, steps: 7 },
    muon: { lr: 0.1, schedule: { nesterov: false }, shape: [4, 6, 8], mode: "svd" },
  });
  assert.equal(decl.defaults.muon.schedule.nesterov, true, "the declaration keeps its defaults");
  assert.deepEqual(parse([]).hyp, decl.defaults);
  const help = parse(["--help"]).help!;
  assert.match(help, /--nesterov true\|false +Nesterov momentum for Muon \[default: true\]/);
  assert.match(help, /--shape VALUE +a list \[default: 2,4\]/);
  assert.match(help, /--mode ns5\|svd/);
  assert.match(help, /--runs VALUE/);
});

Deno.test("hyp: bounds declared next to the value give one line naming the flag", () => {
  const bad = (args: string[], re: RegExp) =>
    assert.throws(() => parse(args), (e) => e instanceof UsageError && re.test(e.message));
  bad(["--lr", "0"], /^--lr "0": expected a number > 0$/);
  bad(["--lr", "x"], /^--lr "x": expected a number > 0$/);
  bad(["--steps", "1.5"], /^--steps "1.5": expected an integer >= 1$/);
  bad(["--nesterov", "yes"], /^--nesterov "yes": expected true or false$/);
  bad(
    ["--shape", "4,5"],
    /^--shape "4,5": expected comma-separated integers, each a multiple of 2 and >= 2, e\.g\. 2,4$/,
  );
  bad(["--mode", "qr"], /^--mode "qr": expected one of ns5, svd$/);
  bad(["--muon-lr", "-1"], /^--muon-lr "-1": expected a number >= 0$/);
  bad(["--muon.lr", "1"], /Unknown option '--muon\.lr'/);
});

Deno.test("hyp: main.ts and airbench94.ts keep today's flag names and checks", () => {
  const about = { title: "t", file: "main.ts" };
  const { hyp } = parseCommandLine(
    [
      "--epochs",
      "2",
      "--batch-size",
      "128",
      "--lr",
      "6",
      "--momentum",
      "0.9",
      "--weight-decay",
      "0",
      "--label-smoothing",
      "0.1",
      "--whiten-bias-epochs",
      "1",
      "--flip",
      "false",
      "--translate",
      "0",
      "--widths",
      "16,32,32",
      "--scale",
      "0.5",
      "--tta",
      "0",
    ],
    mainHyp,
    OPTS,
    about,
  );
  assert.deepEqual(hyp, {
    opt: {
      train_epochs: 2,
      batch_size: 128,
      lr: 6,
      momentum: 0.9,
      weight_decay: 0,
      label_smoothing: 0.1,
      whiten_bias_epochs: 1,
    },
    aug: { flip: false, translate: 0 },
    net: { widths: [16, 32, 32], scaling_factor: 0.5, tta_level: 0 },
  });
  const bn = parseCommandLine(["--bias-scaler", "32", "--batchnorm-momentum", "0.5"], bnHyp, OPTS, about).hyp;
  assert.equal(bn.opt.bias_scaler, 32);
  assert.equal(bn.net.batchnorm_momentum, 0.5);
  const bad = (args: string[], re: RegExp) =>
    assert.throws(
      () => parseCommandLine(args, mainHyp, OPTS, about),
      (e) => e instanceof UsageError && re.test(e.message),
    );
  bad(["--momentum", "1"], /^--momentum "1": expected a number in \[0, 1\)$/);
  bad(
    ["--widths", "16,30"],
    /^--widths "16,30": expected comma-separated integers, each a multiple of 4 and >= 4/,
  );
  bad(["--tta", "5"], /^--tta "5": expected one of 0, 1, 2$/);
  bad(["--translate", "9"], /^--translate "9": expected an integer in \[0, 8\]$/);
  bad(["--epochs", "0"], /^--epochs "0": expected a number > 0$/);
});

Deno.test("hyp: declaration mistakes are caught where they are made", () => {
  assert.throws(
    () => hyperparameters({ a: { lr: param(1, "x") }, b: { lr: param(2, "y") } }),
    /hyperparameters a\.lr and b\.lr are both --lr: give one a flag name/,
  );
  assert.throws(() => param(1.5, "steps", { int: true }), /the default is not an integer/);
  const clash = hyperparameters({ runs: param(3, "a key named like a run option") });
  assert.throws(() => parseCommandLine([], clash, OPTS), /hyperparameter runs is --runs, a run option/);
});
