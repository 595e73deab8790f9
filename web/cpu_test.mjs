// The CPU engine in headless Chromium (run by `scripts/web test` after `scripts/web build`):
// serves web/www cross-origin isolated with $REGNET_FIXTURES under /fixtures/, opens
// cpu_check.html, and checks that RegNetY-400MF's logits from the CPU backend in wasm, on one
// thread and on a pool of two, with relaxed SIMD (Chromium has it: the probe must say so) and
// without, are within 1e-4 of torchvision's with the same top-1, and that the pool really has
// two threads when the build has them; and that a page without cross-origin isolation runs it
// on one thread; and that bad input (an unknown model, a batch over wasm's memory, a short
// input) is a clear error.
import puppeteer from "puppeteer-core";
import { serve } from "./serve.mjs";

function fail(msg) {
  console.error(`cpu test: FAILED: ${msg}`);
  process.exit(1);
}

const fixtures = process.env.REGNET_FIXTURES;
if (!fixtures) fail("REGNET_FIXTURES is not set");
/** cpu_check.html's result lines, served cross-origin isolated or not. */
async function check(isolated, query) {
  const server = await serve({ isolated, fixtures });
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
    await page.goto(`${server.url}cpu_check.html${query}`);
    await page.waitForFunction(() => document.getElementById("status").dataset.state !== "running",
      { timeout: Number(process.env.PAGE_TEST_TIMEOUT_MS ?? 600000) });
    const status = await page.$eval("#status", (s) => s.textContent);
    if (status !== "done") fail(status);
    return (await page.$eval("#results", (p) => p.textContent)).trim().split("\n").map((l) => JSON.parse(l));
  } finally {
    await browser.close();
    server.close();
  }
}

const lines = await check(true, "?threads=1,2&relaxed=auto,off");
const { errors } = lines.pop();
console.log(`cpu test: bad input: ${JSON.stringify(errors)}`);
if (!errors.unknown?.includes("no_such_model")) fail(`an unknown model gave ${errors.unknown}`);
if (!errors.short?.includes("5")) fail(`an input of 5 floats gave ${errors.short}`);
if (!errors.huge?.includes("batch 100000")) fail(`a batch of 100000 gave ${errors.huge}`);
if (errors.after !== 1000) fail(`the engine gave ${errors.after} logits after the bad input, not 1000`);
// Without cross-origin isolation a page has no SharedArrayBuffer for a pool: one thread.
const plain = (await check(false, "?threads=2&relaxed=auto")).slice(0, 1);
if (plain[0].threads !== 1) fail(`${plain[0].threads} threads on a page that is not cross-origin isolated`);
lines.push(...plain);
for (const l of lines) {
  console.log(`cpu test: ${JSON.stringify(l)}`);
  if (!(l.rel <= 1e-4 && l.worst <= 1e-4)) fail(`${l.threads} threads: logits ${l.rel} / ${l.worst} from torchvision's (1e-4 allowed)`);
  if (l.top1.some(([a, b]) => a !== b)) fail(`${l.threads} threads: top-1 ${JSON.stringify(l.top1)} (ours, torchvision's)`);
  if (l.has_threads && l.cross_origin_isolated && l.threads !== l.threads_asked) fail(`asked for ${l.threads_asked} threads, ran on ${l.threads}`);
  if (l.relaxed_simd !== (l.relaxed_asked === "auto")) fail(`relaxed SIMD ${l.relaxed_simd} with relaxed=${l.relaxed_asked} (Chromium has relaxed SIMD)`);
}
if (lines.length !== 5) fail(`${lines.length} runs, not 5`);
if (!lines[0].has_threads) {
  console.log("cpu test: NOTE: pkg-cpu was built without wasm threads (no nightly with rust-src): one thread only");
}
console.log("cpu test: ok");
