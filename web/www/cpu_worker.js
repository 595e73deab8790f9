// The worker behind cpu_engine.js: regnet-wgpu's CPU backend (wasm) runs here, off the page's
// thread. With a threaded build on a cross-origin isolated page, rayon's pool is more workers
// sharing this module's memory; this one waits for them (a worker may block, the page's
// thread may not: there it would spin beside them and take a core).
//
// Two builds of it: pkg-cpu-relaxed/ (wasm relaxed SIMD: fused multiply-adds in the GEMMs),
// where the browser validates relaxed SIMD, else pkg-cpu/ (SIMD128 only).

// A module whose one function is f32x4.relaxed_madd of three zero vectors: valid only where
// the engine has relaxed SIMD.
const v128Zero = [0xfd, 0x0c, ...new Array(16).fill(0)];
const body = [0x00, ...v128Zero, ...v128Zero, ...v128Zero, 0xfd, 0x85, 0x02, 0x0b];
const probe = new Uint8Array([0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 5, 1, 0x60, 0, 1, 0x7b,
  3, 2, 1, 0, 0x0a, body.length + 2, 1, body.length, ...body]);
export const hasRelaxedSimd = () => WebAssembly.validate(probe);

let cpu, runner;

const handlers = {
  async create({ model, weights, batch, threads, relaxedSimd }) {
    const relaxed = relaxedSimd ?? hasRelaxedSimd();
    cpu = await import(relaxed ? "./pkg-cpu-relaxed/regnet_web_cpu.js" : "./pkg-cpu/regnet_web_cpu.js");
    try {
      await cpu.default();
    } catch (e) {
      // A threaded build's memory is shared; some browsers make one only on isolated pages.
      const hint = self.crossOriginIsolated ? "" : " (the page is not cross-origin isolated, which"
        + " this browser may need for the threaded build's shared memory: serve it with the COOP"
        + " and COEP headers, as `node web/serve.mjs` does)";
      throw new Error(`cannot start the CPU engine's wasm module${hint}: ${e.message ?? e}`);
    }
    if (cpu.hasThreads() && self.crossOriginIsolated && threads > 1) await cpu.initThreadPool(threads);
    runner = cpu.CpuRunner.create(model, weights, batch);
    return { threads: cpu.threads(), hasThreads: cpu.hasThreads(), relaxedSimd: relaxed, macs: runner.macs, randomWeights: runner.randomWeights };
  },
  run({ input }) {
    const t0 = performance.now();
    const logits = runner.run(input);
    return { logits, ms: performance.now() - t0, transfer: [logits.buffer] };
  },
  classify({ image, k }) {
    return { result: runner.classify(image, k) };
  },
  profile({ input }) {
    return { rows: runner.profile(input) };
  },
};

self.onmessage = async ({ data }) => {
  try {
    const { transfer = [], ...result } = await handlers[data.op](data);
    self.postMessage({ id: data.id, ok: true, ...result }, transfer);
  } catch (e) {
    self.postMessage({ id: data.id, ok: false, error: String(e?.message ?? e) });
  }
};
