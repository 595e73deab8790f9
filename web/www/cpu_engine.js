// regnet-wgpu's CPU backend for a page: the model runs in a worker (cpu_worker.js) and, with
// a threaded build (scripts/web build) on a cross-origin isolated page, on a pool of
// `threads` more; with relaxed SIMD where the browser has it.
//
//   const e = await CpuEngine.create("regnet_y_400mf", weightsBytesOrNull, 1, navigator.hardwareConcurrency);
//   const logits = await e.run(new Float32Array(3 * 224 * 224)); // Float32Array [1, 1000]
//   console.log(e.threads, e.relaxedSimd, e.randomWeights, e.lastMs);
export class CpuEngine {
  #worker; #pending = new Map(); #next = 0;

  /** `relaxedSimd`: true or false picks the build, undefined detects (the default). */
  static async create(model, weights, batch, threads, { relaxedSimd } = {}) {
    const e = new CpuEngine();
    e.#worker = new Worker(new URL("./cpu_worker.js", import.meta.url), { type: "module" });
    e.#worker.onmessage = ({ data }) => {
      const p = e.#pending.get(data.id);
      e.#pending.delete(data.id);
      if (data.ok) p.resolve(data); else p.reject(new Error(data.error));
    };
    e.#worker.onerror = (ev) => {
      for (const p of e.#pending.values()) p.reject(new Error(`cpu worker: ${ev.message}`));
      e.#pending.clear();
    };
    const r = await e.#call({ op: "create", model, weights, batch, threads, relaxedSimd });
    /** Threads a run uses; whether the build has a pool; whether it is the relaxed-SIMD
     *  build; multiply-adds per image; whether the weights are random. */
    Object.assign(e, { threads: r.threads, hasThreads: r.hasThreads, relaxedSimd: r.relaxedSimd,
      macs: r.macs, randomWeights: r.randomWeights });
    return e;
  }

  #call(msg, transfer = []) {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, ...msg }, transfer);
    });
  }

  /** Logits (flat Float32Array) of a preprocessed batch `[batch, 3, 224, 224]` (flat);
   *  `lastMs` is then the run's time inside the worker. */
  async run(input) {
    const r = await this.#call({ op: "run", input });
    this.lastMs = r.ms;
    return r.logits;
  }

  /** The `k` most probable classes of a PNG or JPEG file's bytes (an engine of batch 1):
   *  `{ top: [{ index, name, probability }], ms }`. */
  async classify(image, k) { return (await this.#call({ op: "classify", image, k })).result; }

  /** Each op's wall time in one run: `[{label, ms}]`. */
  async profile(input) { return (await this.#call({ op: "profile", input })).rows; }

  /** Stops the worker and its pool. */
  close() { this.#worker.terminate(); }
}
