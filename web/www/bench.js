// The race (scripts/web bench): regnet-wgpu on WebGPU and its CPU backend in wasm (engine
// regnet-cpu) against onnxruntime-web's webgpu and wasm execution providers, on RegNetY-400MF (the same weights: the fixture's state_dict and
// its ONNX export), batch by batch, in this page. Every engine is warmed until its times
// settle, then timed; one JSON line per engine and batch goes into #results.
import init, { Runner } from "./pkg/regnet_web.js";
import { CpuEngine } from "./cpu_engine.js";
import { reportEnd } from "./status.js";
import * as ort from "./ort/ort.all.min.mjs";

const q = new URLSearchParams(location.search);
const engines = (q.get("engines") ?? "regnet-wgpu,regnet-cpu,ort-webgpu,ort-wasm").split(",");
const batches = (q.get("batch") ?? "1,8").split(",").map(Number);
const runs = Number(q.get("runs") ?? 20);
const maxWarmup = Number(q.get("warmup") ?? 60);
const slowRuns = Number(q.get("slow_runs") ?? 5); // ort-webgpu on a software adapter: seconds a run
const tiling = q.get("tiling") ?? undefined; // regnet-wgpu: "cpu" or "gpu" tile rules (default: by adapter type)
const textures = q.has("textures") ? q.get("textures") === "on" : undefined; // regnet-wgpu: "on" or "off" (default: by adapter type)
const cpuThreads = Number(q.get("cpu_threads") ?? navigator.hardwareConcurrency); // regnet-cpu's thread pool (where the build and the page allow one)
const profileRuns = Number(q.get("profile") ?? 0); // regnet-wgpu / regnet-cpu: per-dispatch device times / per-op wall times, median of this many profiled runs
const MODEL = "regnet_y_400mf";
const MACS = 401842848; // per image at 224x224

const out = document.getElementById("results");
const emit = (o) => { const line = JSON.stringify(o); out.textContent += line + "\n"; console.log(line); };

function stats(t) {
  const s = [...t].sort((a, b) => a - b);
  const m = s.length >> 1;
  return { median: s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2, min: s[0], max: s[s.length - 1] };
}

// Warm until the median of the last 5 runs is within 5% of the 5 before (at least 10 runs,
// at most maxWarmup), then time `n` runs.
async function time(run, n, warmCap) {
  const warm = [];
  while (warm.length < warmCap) {
    const t0 = performance.now(); await run(); warm.push(performance.now() - t0);
    if (warm.length >= 10) {
      const a = stats(warm.slice(-5)).median, b = stats(warm.slice(-10, -5)).median;
      if (Math.abs(a - b) <= 0.05 * b) break;
    }
  }
  const times = [];
  for (let i = 0; i < n; i++) { const t0 = performance.now(); await run(); times.push(performance.now() - t0); }
  return { warm, times };
}

// Each dispatch's median device time over `profileRuns` profiled runs (timestamp queries, a
// pass per dispatch), or the reason there is none.
async function profileOf(r, x) {
  const runs = [];
  for (let i = 0; i < profileRuns; i++) {
    const rows = await r.profile(x); // a promise (GPU) or the rows (CPU)
    if (!rows) return "no timestamp-query on this adapter";
    runs.push(rows);
  }
  return runs[0].map((row, k) => ({
    label: row.label, median_ms: +stats(runs.map((rows) => rows[k].ms)).median.toFixed(3),
  }));
}

function input(batch) {
  const x = new Float32Array(batch * 3 * 224 * 224);
  for (let i = 0; i < x.length; i++) x[i] = ((i % 251) / 125) - 1;
  return x;
}

async function fetchBytes(url) { return new Uint8Array(await (await fetch(url)).arrayBuffer()); }

function relErr(a, b) {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num / den);
}

async function main() {
  await init();
  const gpu = await navigator.gpu?.requestAdapter();
  const i = gpu?.info ?? {};
  const webgpuAdapter = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(" ") || "unnamed";
  const weights = await fetchBytes("bench/regnet_y_400mf.safetensors");
  ort.env.wasm.wasmPaths = new URL("./ort/", location.href).href;
  // ort-wasm's threads: ort_threads=N, else every core the browser reports (its best setup here).
  ort.env.wasm.numThreads = crossOriginIsolated ? Number(q.get("ort_threads") ?? navigator.hardwareConcurrency) : 1;
  const reference = {}; // batch -> logits of the first engine, to compare the others with
  for (const batch of batches) {
    for (const engine of engines) {
      let run, adapter, backend, settings, logits, profile, close;
      const inner = []; // regnet-cpu: each run's time inside its worker
      const x = input(batch);
      const setup0 = performance.now();
      if (engine === "regnet-wgpu") {
        const r = await Runner.create(MODEL, weights, batch, tiling, textures);
        adapter = `${webgpuAdapter} (${r.adapter.trim()})`; backend = "webgpu";
        const operands = textures === undefined ? "adapter-type" : (textures ? "texture" : "storage");
        settings = `f32 storage, the browser's own robustness checks, no subgroups, ${tiling ?? "adapter-type"} tile rules, ${operands} operands`;
        run = async () => { logits = await r.run(x); };
        profile = async () => profileOf(r, x);
      } else if (engine === "regnet-cpu") {
        const r = await CpuEngine.create(MODEL, weights, batch, cpuThreads);
        adapter = `cpu (${r.threads} threads)`; backend = "wasm";
        const pool = r.hasThreads ? `${r.threads} threads (wasm threads: a rayon pool on Web Workers; cross-origin isolated: ${crossOriginIsolated})` : "1 thread (a build without wasm threads)";
        const simd = r.relaxedSimd ? "relaxed SIMD (fused multiply-adds)" : "SIMD128";
        settings = `the CPU backend in wasm, in a worker: f32, ${simd}, ${pool}`;
        run = async () => { logits = await r.run(x); inner.push(r.lastMs); };
        profile = async () => profileOf(r, x);
        close = () => r.close();
      } else {
        const ep = engine === "ort-webgpu" ? "webgpu" : "wasm";
        const session = await ort.InferenceSession.create("bench/regnet_y_400mf.onnx",
          { executionProviders: [ep], graphOptimizationLevel: "all" });
        const feeds = { [session.inputNames[0]]: new ort.Tensor("float32", x, [batch, 3, 224, 224]) };
        const outName = session.outputNames[0];
        run = async () => { logits = (await session.run(feeds))[outName].data; };
        backend = ep;
        adapter = ep === "webgpu" ? webgpuAdapter : `cpu (${ort.env.wasm.numThreads} threads)`;
        settings = ep === "wasm" ? `SIMD, ${ort.env.wasm.numThreads} threads (cross-origin isolated: ${crossOriginIsolated})` : "webgpu EP, graph optimisation all";
      }
      const slow = engine === "ort-webgpu";
      const first0 = performance.now(); await run(); const firstMs = performance.now() - first0;
      const { warm, times } = await time(run, slow ? slowRuns : runs, slow ? 2 : maxWarmup);
      const s = stats(times);
      const agree = reference[batch] ? relErr(logits, reference[batch]) : null;
      if (!reference[batch]) reference[batch] = logits.slice();
      emit({
        engine, backend, adapter, model: MODEL, batch, size: 224, precision: "f32",
        median_ms: +s.median.toFixed(2), min_ms: +s.min.toFixed(2), max_ms: +s.max.toFixed(2),
        images_per_s: +(batch * 1000 / s.median).toFixed(2),
        gflops: +(2 * MACS * batch / (s.median / 1000) / 1e9).toFixed(2),
        runs: times.length, warmup_runs: warm.length + 1, first_run_ms: +firstMs.toFixed(1),
        setup_ms: +(first0 - setup0).toFixed(1), rel_err_vs_first_engine: agree, settings,
        ...(inner.length ? { worker_median_ms: +stats(inner.slice(-times.length)).median.toFixed(2) } : {}),
      });
      if (profile && profileRuns > 0) emit({ engine, batch, profile: await profile() });
      close?.();
    }
  }
}

reportEnd(main());
