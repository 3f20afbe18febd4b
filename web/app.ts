/// <reference lib="dom" />
// The training page (web/index.html): the experiment files' own network and loop (main.ts's `experiment`,
// experiments/*.ts's, the files named to `deno task serve`: lib/cli/serve.ts bundles them with startPage)
// trained in this tab by web/run.ts with the project's kernels; live loss, accuracy, img/s and ETA drawn with
// lib/report/charts.ts; at the end the airbench table, a confusion matrix, test images with their
// predictions, and downloads of the JSON log (main.ts's keys) and the safetensors.
//
// Configuration in the URL: ?experiment=main.ts&widths=8,16,16&train_n=1000&epochs=1&batch_size=100&tta=0
// &seed=1&runs=1&autostart=1. The log is `window.airbenchLog` (status "running", "done" or "failed").

import {
  accuracyChart,
  type BrowserResult,
  BrowserTraining,
  PAGE_FLAGS,
  pageArgs,
  QUICK_NOTE,
  QUICK_RUN,
  statusLine,
} from "./run.ts";
import { escapeXml, lineChart, PALETTE, type Series } from "../lib/report/charts.ts";
import {
  BATCH_NAMES,
  BATCH_SHA256,
  type Cifar10,
  parseBatches,
  verifyBatch,
} from "../lib/data/cifar_batches.ts";
import { readBatchesFromTarGz } from "../lib/data/cifar_sources.ts";
import type { BaseHyp } from "../lib/io/hyp.ts";
import type { Experiment, ExperimentLog } from "../lib/train/session.ts";
import { testNote } from "../lib/report/html.ts";
import { COLUMNS, formatDuration } from "../lib/report/console.ts";
import type { Fingerprint } from "../lib/io/runlog.ts";

/** The experiment files the page trains, by path (lib/cli/serve.ts's bundle entry hands them to startPage). */
let EXPERIMENTS: Record<string, Experiment<BaseHyp>> = {};
const CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
const FIELDS = ["widths", "epochs", "train_n", "test_n", "batch_size", "lr", "tta", "seed", "runs"] as const;
type TestConfig = { testN?: number; testOf?: number };

/** The page's log, read by tests and scripts as `window.airbenchLog`. */
const page = globalThis as unknown as { airbenchLog?: Partial<ExperimentLog> & { status: string } };

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const form = $<HTMLFormElement>("config");
const field = (name: string) => form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement;

// ---------------------------------------------------------------------------------------------------------
// Errors in words, with what to do

function explain(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  if (/WebGPU is not available|navigator\.gpu/i.test(msg)) {
    return "This browser has no WebGPU. Use a current Chrome or Edge (on Linux start it with " +
      "--enable-unsafe-webgpu), Safari 26 or Firefox 141 on Windows, and load this page from " +
      "http://127.0.0.1 or https (WebGPU needs a secure context).";
  }
  if (/No WebGPU adapter/i.test(msg)) {
    return "WebGPU is there but offers no adapter: the GPU may be blocklisted or its driver missing. Check " +
      "chrome://gpu, update the GPU driver, or allow a software adapter (Chrome: --enable-unsafe-webgpu).";
  }
  if (/device lost|lost \(/i.test(msg)) {
    return `The GPU device was lost (${msg}). The driver reset it, or the tab was in the background too ` +
      "long. Reload the page and train again; a smaller batch_size or widths lowers the load.";
  }
  if (/out of memory|OutOfMemory/i.test(msg)) {
    return `The GPU ran out of memory (${msg}). Lower batch_size or widths, close other GPU-heavy tabs, ` +
      "and reload the page.";
  }
  if (/CIFAR-10/.test(msg)) return `${msg}\nDrop the official cifar-10-binary.tar.gz again.`;
  return `${msg}\nFix the configuration above (the same flags as main.ts) and press Train.`;
}

function showError(e: unknown) {
  const el = $("error");
  el.hidden = false;
  el.textContent = explain(e);
  console.warn(e);
}

// ---------------------------------------------------------------------------------------------------------
// What the page loads: kernels, the experiment's text, the fingerprint, the data

async function fetchText(url: string): Promise<string> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return await r.text();
}

async function loadKernels(): Promise<Record<string, string>> {
  const names = JSON.parse(await fetchText("kernels/index.json")) as string[];
  const texts = await Promise.all(names.map((n) => fetchText(`kernels/${n}`)));
  return Object.fromEntries(names.map((n, i) => [n, texts[i]]));
}

async function fetchBytes(url: string): Promise<Uint8Array> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

let data: Cifar10 | undefined;

/** The server's CIFAR-10 (loaded by lib/data/cifar.ts as main.ts loads it), if there is a server with data. */
async function serverData(): Promise<Cifar10 | undefined> {
  let info: { source: string; verified: boolean; train: number; test: number; error?: string };
  try {
    const r = await fetch("data/info.json");
    info = await r.json();
    if (!r.ok) {
      $("data").textContent =
        `data: the server could not load CIFAR-10 (${info.error}); drop the archive below`;
      return undefined;
    }
  } catch {
    return undefined; // a static page: no server data
  }
  const [ti, tl, vi, vl] = await Promise.all(
    ["train_images", "train_labels", "test_images", "test_labels"].map((p) => fetchBytes(`data/${p}.bin`)),
  );
  $("data").textContent = `data: ${info.train} training and ${info.test} test images from the server ` +
    `(${info.source}${info.verified ? ", SHA-256 verified" : ", not verified: your own data"})`;
  return {
    train: { images: ti, labels: tl, n: info.train },
    test: { images: vi, labels: vl, n: info.test },
    source: `server:${info.source}`,
  };
}

/** The official archive dropped or picked: gunzip + tar in the tab, every batch checked against its SHA-256. */
async function archiveData(file: File): Promise<Cifar10> {
  let got = 0;
  const batches = await readBatchesFromTarGz(
    file.stream() as unknown as AsyncIterable<Uint8Array>,
    file.name,
    {
      onBytes: (n) => {
        got += n;
        $("data").textContent = `data: reading ${file.name}: ${(100 * got / file.size).toFixed(0)}%`;
      },
    },
  );
  for (const name of BATCH_NAMES) {
    $("data").textContent = `data: checking ${name}`;
    await new Promise((r) => setTimeout(r, 0));
    verifyBatch(name, batches.get(name)!, BATCH_SHA256, `${file.name}: ${name}`);
  }
  const train = parseBatches(BATCH_NAMES.filter((n) => n !== "test_batch.bin").map((n) => batches.get(n)!));
  const test = parseBatches([batches.get("test_batch.bin")!]);
  $("data").textContent =
    `data: ${train.n} training and ${test.n} test images from ${file.name} (SHA-256 verified)`;
  return { train, test, source: `file:${file.name}` };
}

// ---------------------------------------------------------------------------------------------------------
// Live view

interface Live {
  loss: Map<number, [number, number][]>;
  t0: number;
  totalRuns: number;
  dirty: boolean;
}
let live: Live = { loss: new Map(), t0: 0, totalRuns: 1, dirty: false };
let training: BrowserTraining | undefined;

function drawCharts(log?: Partial<ExperimentLog>) {
  const lossSeries: Series[] = [...live.loss].map(([run, pts]) => ({
    name: `run ${run}`,
    color: PALETTE[run % PALETTE.length],
    points: pts,
    strokeWidth: 1.2,
  }));
  $("lossChart").innerHTML = lineChart({
    title: "Training loss per step (batch mean)",
    xLabel: "step",
    yLabel: "loss",
    series: lossSeries,
    markers: false,
  });
  $("accChart").innerHTML = lineChart(accuracyChart(log));
}

function cell(v: unknown): string {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(4);
  return typeof v === "string" ? v : "";
}

/** The airbench table (lib/report/console.ts's columns), as main.ts prints it. */
function drawTable(log: Partial<ExperimentLog>) {
  const head = COLUMNS.map((c) => `<th>${escapeXml(c.trim())}</th>`).join("");
  const rows: string[] = [];
  for (const r of log.runs ?? []) {
    if (!r) continue;
    r.epochs.forEach((e, i) => {
      const row: Record<string, unknown> = { ...e, run: i === 0 ? r.run : "" };
      rows.push(`<tr>${COLUMNS.map((c) => `<td>${escapeXml(cell(row[c.trim()]))}</td>`).join("")}</tr>`);
    });
    if (r.tta_val_acc !== undefined || r.error) {
      const row: Record<string, unknown> = {
        epoch: r.error ? "failed" : "eval",
        tta_val_acc: r.tta_val_acc,
        total_time_seconds: r.total_time_seconds,
      };
      rows.push(`<tr>${COLUMNS.map((c) => `<td>${escapeXml(cell(row[c.trim()]))}</td>`).join("")}</tr>`);
    }
  }
  const mean = typeof log.mean === "number" && Number.isFinite(log.mean)
    ? `<p>Mean: ${log.mean.toFixed(4)}  Std: ${(log.std ?? 0).toFixed(4)}` +
      `${
        testNote(log.config as TestConfig | undefined) ? ` (${testNote(log.config as TestConfig)})` : ""
      }</p>`
    : "";
  const note = testNote(log.config as TestConfig | undefined);
  const caption = note
    ? `<caption>accuracies on ${note} images (test_n): a subset, not the benchmark's figure</caption>`
    : "";
  $("table").innerHTML = `<table>${caption}<tr>${head}</tr>${rows.join("")}</table>${mean}`;
}

// ---------------------------------------------------------------------------------------------------------
// Results

function drawConfusion(pred: Uint8Array, labels: Uint8Array) {
  const m = Array.from({ length: 10 }, () => new Array(10).fill(0));
  for (let i = 0; i < pred.length; i++) m[labels[i]][pred[i]]++;
  const rowsum = m.map((r) => r.reduce((a, b) => a + b, 0));
  const head = `<tr><th>true \\ predicted</th>${
    CLASSES.map((c) => `<th>${c.slice(0, 5)}</th>`).join("")
  }</tr>`;
  const body = m.map((r, t) =>
    `<tr><th>${CLASSES[t]}</th>${
      r.map((v, p) => {
        const f = rowsum[t] ? v / rowsum[t] : 0;
        const bg = t === p
          ? `rgba(47,95,179,${f.toFixed(3)})`
          : `rgba(208,69,58,${Math.min(1, 2 * f).toFixed(3)})`;
        const fg = f > 0.55 ? "white" : "#1d2430";
        return `<td style="background:${bg};color:${fg}" title="true ${CLASSES[t]}, predicted ${
          CLASSES[p]
        }">${v}</td>`;
      }).join("")
    }</tr>`
  ).join("");
  $("confusion").innerHTML = `<table>${head}${body}</table>`;
}

function drawGrid(pred: Uint8Array, test: Cifar10["test"], count = 60) {
  const grid = $("grid");
  grid.innerHTML = "";
  for (let i = 0; i < Math.min(count, test.n); i++) {
    const fig = document.createElement("figure");
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 32;
    const ctx = canvas.getContext("2d")!;
    const img = ctx.createImageData(32, 32);
    const o = i * 3072;
    for (let p = 0; p < 1024; p++) {
      img.data[4 * p] = test.images[o + p];
      img.data[4 * p + 1] = test.images[o + 1024 + p];
      img.data[4 * p + 2] = test.images[o + 2048 + p];
      img.data[4 * p + 3] = 255;
    }
    ctx.putImageData(img, 0, 0);
    const ok = pred[i] === test.labels[i];
    fig.className = ok ? "right" : "wrong";
    const cap = document.createElement("figcaption");
    cap.textContent = `${CLASSES[pred[i]]} / ${CLASSES[test.labels[i]]}`;
    fig.append(canvas, cap);
    grid.append(fig);
  }
}

function download(name: string, bytes: BlobPart, type: string): string {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  return `<a href="${url}" download="${escapeXml(name)}">${escapeXml(name)}</a>`;
}

function showResults(res: BrowserResult) {
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const links = [download(`airbench-${stamp}.json`, JSON.stringify(res.log, null, 1), "application/json")];
  res.weights.forEach((w, run) => {
    if (w) {
      links.push(
        download(`airbench-${stamp}-run${run}.safetensors`, w as BlobPart, "application/octet-stream"),
      );
    }
  });
  $("downloads").innerHTML = `Downloads: ${links.join("")}`;
  if (res.predictions) {
    const level = (res.log.config as BaseHyp).net.tta_level;
    const of = (res.log.config as TestConfig).testOf ?? res.test.n;
    $("confusionNote").textContent = `(last run, ${res.test.n} of ${of} test images, TTA level ${level})`;
    drawConfusion(res.predictions, res.test.labels);
    drawGrid(res.predictions, res.test);
  }
  $("results").hidden = false;
}

// ---------------------------------------------------------------------------------------------------------
// The form, the URL and the buttons

function readConfig(): Record<string, string> {
  const c: Record<string, string> = { experiment: field("experiment").value };
  for (const f of FIELDS) c[f] = field(f).value.trim();
  // Flags without a form field (precision) pass through from the URL.
  const url = new URLSearchParams(location.search);
  for (const k of Object.keys(PAGE_FLAGS)) if (!(k in c) && url.get(k)) c[k] = url.get(k)!;
  return c;
}

/**
 * The form from the URL, else the settings of `preset` (URL: preset=recipe): "quick" (QUICK_RUN, the page's
 * default: a run that learns in minutes on a CPU) or "recipe" (the experiment's own defaults).
 */
function fillDefaults(expName: string, params: URLSearchParams, preset = params.get("preset") ?? "quick") {
  const h = EXPERIMENTS[expName].hyp, d = EXPERIMENTS[expName].defaults;
  const defaults: Record<string, string> = {
    widths: h.defaultText("widths") ?? "",
    epochs: h.defaultText("epochs") ?? "",
    train_n: "",
    test_n: "",
    batch_size: h.defaultText("batch-size") ?? "",
    lr: h.defaultText("lr") ?? "",
    tta: h.defaultText("tta") ?? "",
    seed: String(d.seed),
    runs: "1",
    ...(preset === "recipe" ? {} : QUICK_RUN),
  };
  for (const f of FIELDS) field(f).value = params.get(f) ?? defaults[f];
  (field("train_n") as HTMLInputElement).placeholder = "all";
  (field("test_n") as HTMLInputElement).placeholder = "all";
}

function setButtons(state: "idle" | "running" | "paused") {
  $<HTMLButtonElement>("train").disabled = state !== "idle" || !data;
  $<HTMLButtonElement>("stop").disabled = state !== "running";
  $<HTMLButtonElement>("continue").disabled = state !== "paused";
}

async function start() {
  if (!data) return;
  $("error").hidden = true;
  $("results").hidden = true;
  const config = readConfig();
  const url = new URL(location.href);
  for (const [k, v] of Object.entries(config)) {
    if (v) url.searchParams.set(k, v);
    else url.searchParams.delete(k);
  }
  url.searchParams.delete("autostart");
  history.replaceState(null, "", url);
  const expName = config.experiment;
  const exp = EXPERIMENTS[expName];
  live = { loss: new Map(), t0: performance.now(), totalRuns: Number(config.runs) || 1, dirty: true };
  page.airbenchLog = { status: "running" };
  setButtons("running");
  $("status").textContent = "loading kernels";
  try {
    const [kernels, code, fp] = await Promise.all([
      loadKernels(),
      fetchText(`src/${expName}`).catch(() => ""),
      fetch("fingerprint.json").then((r) => r.ok ? r.json() as Promise<Fingerprint> : null).catch(() => null),
    ]);
    let lastLog: ExperimentLog | undefined;
    training = new BrowserTraining(exp, pageArgs(config), data, {
      kernels,
      code,
      fingerprint: fp,
      experimentPath: expName,
      hooks: {
        onLog: (log) => {
          lastLog = log;
          page.airbenchLog = JSON.parse(JSON.stringify(log));
          drawTable(log);
          live.dirty = true;
        },
        onSteps: (run, rows) => {
          const pts = live.loss.get(run) ?? [];
          for (const r of rows) pts.push([r.step, r.loss]);
          live.loss.set(run, pts);
          live.dirty = true;
        },
        onProgress: (p) => {
          const bs = Number(config.batch_size) || exp.hyp.defaults.opt.batch_size;
          $("status").textContent = statusLine(p, bs, live.totalRuns) +
            (training?.isPaused ? " · stopped" : "");
        },
        say: (line) => $("status").textContent = line,
      },
    });
    const res = await training.done;
    drawTable(res.log);
    live.dirty = true;
    showResults(res);
    $("status").textContent = res.log.status === "done"
      ? `done: TTA accuracy ${(res.log.mean * 100).toFixed(2)}% ` +
        `(${formatDuration((performance.now() - live.t0) / 1000)} in all)`
      : `failed: ${res.log.error}`;
    lastLog = res.log;
    page.airbenchLog = JSON.parse(JSON.stringify(lastLog));
  } catch (e) {
    const log = training?.log;
    page.airbenchLog = log
      ? { ...JSON.parse(JSON.stringify(log)), status: "failed", error: (e as Error).message }
      : { status: "failed", error: e instanceof Error ? e.message : String(e) };
    $("status").textContent = "failed";
    showError(e);
  } finally {
    setButtons("idle");
  }
}

function redraw() {
  if (live.dirty) {
    live.dirty = false;
    drawCharts(page.airbenchLog);
  }
  requestAnimationFrame(redraw);
}

async function init() {
  const params = new URLSearchParams(location.search);
  const { sel, unknown } = selectExperiment(params);
  wireControls(sel);
  drawCharts();
  requestAnimationFrame(redraw);
  setButtons("idle");
  if (!await showAdapter()) return;
  wireDataDrop();
  await loadServerData();
  setButtons("idle");
  if (data && params.get("autostart") === "1" && !unknown) start();
}

/** Fill the experiment list; select the URL's experiment (an unknown one is an error, the first is used). */
function selectExperiment(params: URLSearchParams): { sel: HTMLSelectElement; unknown: boolean } {
  const sel = field("experiment") as HTMLSelectElement;
  for (const name of Object.keys(EXPERIMENTS)) sel.add(new Option(name, name));
  // Own keys only: "__proto__" or "toString" in the URL is no experiment.
  const asked = params.get("experiment");
  const unknown = asked !== null && !Object.hasOwn(EXPERIMENTS, asked);
  const first = Object.keys(EXPERIMENTS)[0];
  sel.value = asked !== null && !unknown ? asked : first;
  fillDefaults(sel.value, params);
  if (unknown) {
    const error = `unknown experiment ${JSON.stringify(asked)} in the URL; expected one of ` +
      `${Object.keys(EXPERIMENTS).join(", ")} (${first} is selected; nothing starts by itself)`;
    page.airbenchLog = { status: "failed", error };
    showError(new Error(error));
  }
  return { sel, unknown };
}

/** The experiment list, the quick/recipe presets, start, stop and continue. */
function wireControls(sel: HTMLSelectElement): void {
  sel.addEventListener("change", () => fillDefaults(sel.value, new URLSearchParams()));
  $("quick").addEventListener("click", () => fillDefaults(sel.value, new URLSearchParams(), "quick"));
  $("recipe").addEventListener("click", () => fillDefaults(sel.value, new URLSearchParams(), "recipe"));
  $("quickNote").textContent = QUICK_NOTE;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    start();
  });
  $("stop").addEventListener("click", () => {
    training?.pause();
    setButtons("paused");
    $("status").textContent += " · stopping after this submit";
  });
  $("continue").addEventListener("click", () => {
    training?.continue();
    setButtons("running");
  });
}

/** Name the browser's WebGPU adapter; false (the error shown and logged) when there is none. */
async function showAdapter(): Promise<boolean> {
  if (!("gpu" in navigator) || !navigator.gpu) {
    $("adapter").textContent = "adapter: none (no WebGPU in this browser)";
    page.airbenchLog = { status: "failed", error: "WebGPU is not available (navigator.gpu is missing)" };
    showError(new Error("WebGPU is not available (navigator.gpu is missing)"));
    return false;
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    $("adapter").textContent = "adapter: none";
    page.airbenchLog = { status: "failed", error: "No WebGPU adapter found" };
    showError(new Error("No WebGPU adapter found"));
    return false;
  }
  const i = adapter.info;
  const f16 = adapter.features.has("shader-f16") ? "shader-f16" : "no shader-f16";
  $("adapter").textContent =
    `adapter: ${[i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(" ")}` +
    ` (${f16}, max ${adapter.limits.maxComputeInvocationsPerWorkgroup} invocations per workgroup)`;
  return true;
}

/** An archive dropped on the page or picked becomes the data. */
function wireDataDrop(): void {
  const drop = $("drop"), file = $<HTMLInputElement>("file");
  const take = async (f: File | undefined) => {
    if (!f) return;
    try {
      data = await archiveData(f);
      setButtons("idle");
    } catch (e) {
      showError(e);
    }
  };
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    take(e.dataTransfer?.files[0]);
  });
  file.addEventListener("change", () => take(file.files?.[0]));
}

/** Ask the server for CIFAR-10; without it, show the drop zone. */
async function loadServerData(): Promise<void> {
  $("data").textContent = "data: asking the server for CIFAR-10…";
  data = await serverData().catch((e) => {
    showError(e);
    return undefined;
  });
  if (!data) {
    $("drop").hidden = false;
    if (!/could not/.test($("data").textContent ?? "")) $("data").textContent = "data: none yet";
  }
}

/** Start the page with these experiment files (path -> its `experiment`; the first is selected by default). */
export function startPage(experiments: Record<string, unknown>): void {
  EXPERIMENTS = experiments as Record<string, Experiment<BaseHyp>>;
  init().catch((e) => {
    page.airbenchLog = { status: "failed", error: e instanceof Error ? e.message : String(e) };
    showError(e);
  });
}
