// The demo page: regnet-wgpu's wasm API (pkg/, built by `scripts/web build`), no bundler.
// Engine "gpu": the model on the browser's WebGPU adapter (`Classifier`, the image decoded by
// the browser and preprocessed on the GPU); engine "cpu": the CPU backend in wasm, in a worker
// (`CpuEngine`; the file decoded and preprocessed in wasm, as `gpu_infer` does), on every core
// where the page is cross-origin isolated, else on one thread.
import init, { Classifier, models } from "./pkg/regnet_web.js";
import { CpuEngine } from "./cpu_engine.js";

const $ = (id) => document.getElementById(id);
let classifier = null;
let weightsBytes = null;
let lastImage = null;
let runs = 0; // on this classifier: the first run includes the browser's shader compilation

function setStatus(text, state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
}

/** The CPU engine behind the same two calls as `Classifier`. */
async function cpuClassifier(model, weights) {
  const e = await CpuEngine.create(model, weights, 1, navigator.hardwareConcurrency);
  const simd = e.relaxedSimd ? "relaxed SIMD" : "SIMD128";
  return {
    adapter: `CPU (wasm, ${simd}, ${e.threads} thread${e.threads === 1 ? "" : "s"})`,
    randomWeights: e.randomWeights,
    cpu: true,
    classify: async (blob, k) => e.classify(new Uint8Array(await blob.arrayBuffer()), k),
    close: () => e.close(),
  };
}

async function load() {
  const model = $("model").value;
  setStatus(`loading ${model}...`, "loading");
  classifier?.close?.();
  classifier = null;
  runs = 0;
  $("again").disabled = true;
  try {
    classifier = $("engine").value === "cpu"
      ? await cpuClassifier(model, weightsBytes)
      : await Classifier.create(model, weightsBytes);
  } catch (e) {
    setStatus(`error: ${e.message ?? e}`, "error");
    return;
  }
  $("adapter").textContent = `${classifier.cpu ? "Engine" : "Adapter"}: ${classifier.adapter}`;
  $("weights-note").textContent = classifier.randomWeights
    ? "Weights: RANDOM (deterministic, seed 0): no weights file was chosen, so the classes below are meaningless. Choose a torchvision or timm state_dict for real ones."
    : "Weights: the file you chose.";
  setStatus("ready: choose or drop an image", "ready");
  if (lastImage) await classify(lastImage);
}

async function classify(blob) {
  lastImage = blob;
  $("preview").src = URL.createObjectURL(blob);
  if (!classifier) return;
  setStatus("classifying...", "busy");
  try {
    // Keep the decoded pixels as they are: no colour-space conversion, no premultiplication.
    const r = classifier.cpu
      ? await classifier.classify(blob, 5)
      : await classifier.classify(await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" }), 5);
    const list = $("top");
    list.replaceChildren(...r.top.map((c) => {
      const li = document.createElement("li");
      li.textContent = `${(c.probability * 100).toFixed(2)}% ${c.name} (${c.index})`;
      li.dataset.index = c.index;
      return li;
    }));
    runs += 1;
    if (classifier.cpu) {
      $("time").textContent = `${r.ms.toFixed(1)} ms (decoding, preprocessing and inference)`;
    } else {
      const first = runs === 1 ? "; the first run includes compiling the shaders" : "";
      $("time").textContent = `${r.ms.toFixed(1)} ms (copy, preprocessing, inference and readback${first})`;
    }
    $("again").disabled = false;
    setStatus("done", "done");
  } catch (e) {
    setStatus(`error: ${e.message ?? e}`, "error");
  }
}

async function main() {
  try {
    await init();
  } catch (e) {
    setStatus(`error: cannot load the wasm module (${e})`, "error");
    return;
  }
  if (!navigator.gpu) {
    // No WebGPU: the CPU engine only.
    $("engine").value = "cpu";
    $("engine").querySelector("option[value=gpu]").disabled = true;
    $("adapter").textContent = "This browser has no WebGPU (navigator.gpu is missing): the CPU engine.";
  }
  for (const name of models()) {
    const opt = document.createElement("option");
    opt.value = opt.textContent = name;
    if (name === "regnet_y_400mf") opt.selected = true;
    $("model").append(opt);
  }
  $("model").addEventListener("change", load);
  $("engine").addEventListener("change", load);
  $("weights").addEventListener("change", async (e) => {
    const f = e.target.files[0];
    weightsBytes = f ? new Uint8Array(await f.arrayBuffer()) : null;
    await load();
  });
  $("again").addEventListener("click", () => lastImage && classify(lastImage));
  $("image").addEventListener("change", (e) => e.target.files[0] && classify(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer.files[0];
    if (f) classify(f);
  });
  await load();
}

main();
