// The CPU engine in headless Chromium (run by `scripts/web test` after `scripts/web build`):
// serves web/www cross-origin isolated with $REGNET_FIXTURES under /fixtures/, opens
// cpu_check.html, and checks that RegNetY-400MF's logits from the CPU backend in wasm, on one
// thread and on a pool of two, with relaxed SIMD (Chromium has it: the probe must say so) and
// without, are within 1e-4 of torchvision's with the same top-1, and that the pool really has
// two threads when the build has them.
import puppeteer from "puppeteer-core";
import { serve } from "./serve.mjs";

function fail(msg) {
  console.error(`cpu test: FAILED: ${msg}`);
  process.exit(1);
}

const fixtures = process.env.REGNET_FIXTURES;
if (!fixtures) fail("REGNET_FIXTURES is not set");
const server = await serve({ isolated: true, fixtures });
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
let lines;
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
  await page.goto(`${server.url}cpu_check.html?threads=1,2&relaxed=auto,off`);
  await page.waitForFunction(() => document.getElementById("status").dataset.state !== "running",
    { timeout: Number(process.env.PAGE_TEST_TIMEOUT_MS ?? 600000) });
  const status = await page.$eval("#status", (s) => s.textContent);
  if (status !== "done") fail(status);
  lines = (await page.$eval("#results", (p) => p.textContent)).trim().split("\n").map((l) => JSON.parse(l));
} finally {
  await browser.close();
  server.close();
}
for (const l of lines) {
  console.log(`cpu test: ${JSON.stringify(l)}`);
  if (!(l.rel <= 1e-4 && l.worst <= 1e-4)) fail(`${l.threads} threads: logits ${l.rel} / ${l.worst} from torchvision's (1e-4 allowed)`);
  if (l.top1.some(([a, b]) => a !== b)) fail(`${l.threads} threads: top-1 ${JSON.stringify(l.top1)} (ours, torchvision's)`);
  if (l.has_threads && l.threads !== l.threads_asked) fail(`asked for ${l.threads_asked} threads, ran on ${l.threads}`);
  if (l.relaxed_simd !== (l.relaxed_asked === "auto")) fail(`relaxed SIMD ${l.relaxed_simd} with relaxed=${l.relaxed_asked} (Chromium has relaxed SIMD)`);
}
if (lines.length !== 4) fail(`${lines.length} runs, not 4`);
if (!lines[0].has_threads) {
  console.log("cpu test: NOTE: pkg-cpu was built without wasm threads (no nightly with rust-src): one thread only");
}
console.log("cpu test: ok");
