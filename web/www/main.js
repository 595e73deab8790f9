// The demo page: regnet-wgpu's wasm API (pkg/, built by `scripts/web build`), no bundler.
import init, { Classifier, models } from "./pkg/regnet_web.js";

const $ = (id) => document.getElementById(id);
let classifier = null;
let weightsBytes = null;
let lastImage = null;
let runs = 0; // on this classifier: the first run includes the browser's shader compilation

function setStatus(text, state) {
  $("status").textContent = text;
  $("status").dataset.state = state;
}

async function load() {
  const model = $("model").value;
  setStatus(`loading ${model}...`, "loading");
  classifier = null;
  runs = 0;
  $("again").disabled = true;
  try {
    classifier = await Classifier.create(model, weightsBytes);
  } catch (e) {
    setStatus(`error: ${e.message ?? e}`, "error");
    return;
  }
  $("adapter").textContent = `Adapter: ${classifier.adapter}`;
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
    const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    const r = await classifier.classify(bitmap, 5);
    const list = $("top");
    list.replaceChildren(...r.top.map((c) => {
      const li = document.createElement("li");
      li.textContent = `${(c.probability * 100).toFixed(2)}% ${c.name} (${c.index})`;
      li.dataset.index = c.index;
      return li;
    }));
    runs += 1;
    const first = runs === 1 ? "; the first run includes compiling the shaders" : "";
    $("time").textContent = `${r.ms.toFixed(1)} ms (copy, preprocessing, inference and readback${first})`;
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
    $("adapter").textContent = "This browser has no WebGPU (navigator.gpu is missing).";
    setStatus("error: no WebGPU", "error");
    return;
  }
  for (const name of models()) {
    const opt = document.createElement("option");
    opt.value = opt.textContent = name;
    if (name === "regnet_y_400mf") opt.selected = true;
    $("model").append(opt);
  }
  $("model").addEventListener("change", load);
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
