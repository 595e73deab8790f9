// The CPU engine (cpu_engine.js: the CPU backend in wasm, in a worker, on a pool of wasm
// threads) against torchvision: RegNetY-400MF's fixture (weights, a batch of 2 images, and
// torchvision's logits for them) from /fixtures/, once per thread count in ?threads= and
// build in ?relaxed= (auto: as detected, off: the SIMD128-only build). One JSON line per run
// goes into #results; web/cpu_test.mjs checks them.
import { CpuEngine } from "./cpu_engine.js";
import { reportEnd } from "./status.js";

const MODEL = "regnet_y_400mf";
const q = new URLSearchParams(location.search);
const threads = (q.get("threads") ?? "1,2").split(",").map(Number);
const relaxed = (q.get("relaxed") ?? "auto,off").split(",");
const out = document.getElementById("results");

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/** The F32 tensors of a safetensors file: name -> { shape, data }. */
function safetensors(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const tensors = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__" || t.dtype !== "F32") continue;
    const [a, b] = t.data_offsets;
    tensors[name] = { shape: t.shape, data: new Float32Array(bytes.slice(8 + n + a, 8 + n + b).buffer) };
  }
  return tensors;
}

/** Relative L2 error and worst absolute error over the largest reference value. */
function errors(got, want) {
  let num = 0, den = 0, worst = 0, big = 0;
  for (let i = 0; i < want.length; i++) {
    num += (got[i] - want[i]) ** 2; den += want[i] ** 2;
    worst = Math.max(worst, Math.abs(got[i] - want[i])); big = Math.max(big, Math.abs(want[i]));
  }
  return { rel: Math.sqrt(num / den), worst: worst / big };
}

function argmax(a, row, classes) {
  let best = 0;
  for (let c = 1; c < classes; c++) if (a[row * classes + c] > a[row * classes + best]) best = c;
  return best;
}

/** The message a promise rejects with, or null when it resolves. */
async function rejection(promise) {
  try { await promise; return null; } catch (e) { return String(e.message ?? e); }
}

async function main() {
  const weights = await fetchBytes(`fixtures/${MODEL}.safetensors`);
  const io = safetensors(await fetchBytes(`fixtures/${MODEL}.io.safetensors`));
  const [batch] = io.input.shape;
  const classes = io.logits.shape[1];
  for (const n of threads) for (const rx of relaxed) {
    const e = await CpuEngine.create(MODEL, weights, batch, n, { relaxedSimd: rx === "off" ? false : undefined });
    const t0 = performance.now();
    const logits = await e.run(io.input.data);
    const ms = performance.now() - t0;
    e.close();
    const top1 = [...Array(batch).keys()].map((i) => [argmax(logits, i, classes), argmax(io.logits.data, i, classes)]);
    const line = { model: MODEL, batch, threads_asked: n, threads: e.threads, has_threads: e.hasThreads,
      relaxed_asked: rx, relaxed_simd: e.relaxedSimd,
      cross_origin_isolated: crossOriginIsolated, ...errors(logits, io.logits.data), top1, ms: +ms.toFixed(1) };
    out.textContent += JSON.stringify(line) + "\n";
  }
  // Bad input: an error that names what is wrong, not a hang or a dead worker.
  const unknown = await rejection(CpuEngine.create("no_such_model", null, 1, 1));
  const huge = await rejection(CpuEngine.create(MODEL, null, 100000, 1));
  const e = await CpuEngine.create(MODEL, null, 1, 1);
  const short = await rejection(e.run(new Float32Array(5)));
  const after = (await e.run(new Float32Array(3 * 224 * 224))).length;
  e.close();
  out.textContent += JSON.stringify({ errors: { unknown, huge, short, after } }) + "\n";
}

reportEnd(main());
