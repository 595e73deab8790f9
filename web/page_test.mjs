// The demo page driven end to end in headless Chromium (run by `scripts/web test` after
// `scripts/web build`): serve web/www, open the page, choose assets/chelsea.png, wait for the
// result, check the top-1 against native `gpu_infer` on the same image and (random, seed 0)
// weights, and save a screenshot in target/web/page.png; then the same with the page's CPU
// engine (target/web/page-cpu.png).
import { execFileSync } from "node:child_process";
import { join, normalize } from "node:path";
import puppeteer from "puppeteer-core";
import { serve } from "./serve.mjs";

const root = normalize(join(import.meta.dirname, ".."));
const image = join(root, "assets", "chelsea.png");

function fail(msg) {
  console.error(`page test: FAILED: ${msg}`);
  process.exit(1);
}

// Native gpu_infer's top-1 for the same photo and weights.
const native = execFileSync("cargo", ["run", "--release", "--quiet", "--example", "gpu_infer", "--",
  "--image", image, "--json", "--top", "1"], { cwd: root, stdio: ["ignore", "pipe", "inherit"] })
  .toString().trim().split("\n").map((l) => JSON.parse(l));
const nativeTop = native[0].top[0];

const server = await serve({ isolated: false });
const url = server.url;

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--enable-unsafe-webgpu", "--disable-dev-shm-usage"],
});
const timeout = Number(process.env.PAGE_TEST_TIMEOUT_MS ?? 600000);
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.log(`page: ${m.text()}`));
  page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
  await page.setViewport({ width: 1000, height: 700 });
  await page.goto(url);
  // Waits for the page's status to reach one of `states`; fails on an error.
  const until = async (states) => {
    await page.waitForFunction((st) => st.includes(document.getElementById("status").dataset.state), { timeout }, [...states, "error"]);
    const status = await page.$eval("#status", (s) => ({ state: s.dataset.state, text: s.textContent }));
    if (status.state === "error") fail(status.text);
  };
  // Runs `action` (which makes the page classify), waits for the result, keeps a screenshot,
  // and checks the five classes shown against native gpu_infer's top-1.
  const classified = async (what, action, screenshot) => {
    await page.evaluate(() => { document.getElementById("status").dataset.state = "busy"; });
    await action();
    await until(["done"]);
    const top = await page.$$eval("#top li", (lis) => lis.map((li) => ({ index: Number(li.dataset.index), text: li.textContent })));
    const engine = await page.$eval("#adapter", (p) => p.textContent);
    const time = await page.$eval("#time", (p) => p.textContent);
    await page.screenshot({ path: join(root, "target", "web", screenshot) });
    console.log(`page test: ${engine}; top-1 ${top[0].text}; ${time}`);
    if (top.length !== 5) fail(`${what}: ${top.length} classes shown, not 5`);
    if (top[0].index !== nativeTop.index) fail(`${what}: the page's top-1 ${top[0].index} is not native gpu_infer's ${nativeTop.index}`);
  };
  await until(["ready"]);
  const input = await page.$("#image");
  await input.uploadFile(image);
  await until(["done"]);
  const firstTime = await page.$eval("#time", (p) => p.textContent);
  console.log(`page test: first run ${firstTime}`);
  console.log(`page test: native gpu_infer top-1 ${nativeTop.class} (${nativeTop.index})`);
  // Once more, warm: what a user sees from the second image on.
  await classified("WebGPU", () => page.click("#again"), "page.png");
  // The CPU engine: the same photo, classified again once the engine is switched.
  await classified("the CPU engine", () => page.select("#engine", "cpu"), "page-cpu.png");
  console.log("page test: ok (screenshots: target/web/page.png, page-cpu.png)");
} finally {
  await browser.close();
  server.close();
}
