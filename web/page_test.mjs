// The demo page driven end to end in headless Chromium (run by `scripts/web test` after
// `scripts/web build`): serve web/www, open the page, choose assets/chelsea.png, wait for the
// result, check the top-1 against native `gpu_infer` on the same image and (random, seed 0)
// weights, and save a screenshot in target/web/page.png.
import { execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import puppeteer from "puppeteer-core";

const root = normalize(join(import.meta.dirname, ".."));
const www = join(root, "web", "www");
const image = join(root, "assets", "chelsea.png");
const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript",
  ".css": "text/css", ".wasm": "application/wasm", ".png": "image/png" };

function fail(msg) {
  console.error(`page test: FAILED: ${msg}`);
  process.exit(1);
}

// Native gpu_infer's top-1 for the same photo and weights.
const native = execFileSync("cargo", ["run", "--release", "--quiet", "--example", "gpu_infer", "--",
  "--image", image, "--json", "--top", "1"], { cwd: root, stdio: ["ignore", "pipe", "inherit"] })
  .toString().trim().split("\n").map((l) => JSON.parse(l));
const nativeTop = native[0].top[0];

const server = createServer(async (req, res) => {
  const path = normalize(join(www, decodeURIComponent(new URL(req.url, "http://x").pathname)));
  const file = path.endsWith("/") ? join(path, "index.html") : path;
  if (!file.startsWith(www)) { res.writeHead(403).end(); return; }
  try {
    const body = await readFile(file);
    res.writeHead(200, { "content-type": types[extname(file)] ?? "application/octet-stream" }).end(body);
  } catch {
    res.writeHead(404).end();
  }
}).listen(0, "127.0.0.1");
await new Promise((r) => server.once("listening", r));
const url = `http://127.0.0.1:${server.address().port}/`;

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
  const state = () => page.$eval("#status", (s) => s.dataset.state);
  await page.waitForFunction(() => ["ready", "error"].includes(document.getElementById("status").dataset.state), { timeout });
  if ((await state()) === "error") fail(await page.$eval("#status", (s) => s.textContent));
  const input = await page.$("#image");
  await input.uploadFile(image);
  await page.waitForFunction(() => ["done", "error"].includes(document.getElementById("status").dataset.state), { timeout });
  if ((await state()) === "error") fail(await page.$eval("#status", (s) => s.textContent));
  const firstTime = await page.$eval("#time", (p) => p.textContent);
  console.log(`page test: first run ${firstTime}`);
  // Once more, warm: what a user sees from the second image on.
  await page.evaluate(() => { document.getElementById("status").dataset.state = "busy"; });
  await page.click("#again");
  await page.waitForFunction(() => ["done", "error"].includes(document.getElementById("status").dataset.state), { timeout });
  if ((await state()) === "error") fail(await page.$eval("#status", (s) => s.textContent));
  const top = await page.$$eval("#top li", (lis) => lis.map((li) => ({ index: Number(li.dataset.index), text: li.textContent })));
  const adapter = await page.$eval("#adapter", (p) => p.textContent);
  const time = await page.$eval("#time", (p) => p.textContent);
  await page.screenshot({ path: join(root, "target", "web", "page.png") });
  console.log(`page test: ${adapter}; top-1 ${top[0].text}; ${time}`);
  console.log(`page test: native gpu_infer top-1 ${nativeTop.class} (${nativeTop.index})`);
  if (top.length !== 5) fail(`${top.length} classes shown, not 5`);
  if (top[0].index !== nativeTop.index) fail(`the page's top-1 ${top[0].index} is not native gpu_infer's ${nativeTop.index}`);
  console.log("page test: ok (screenshot: target/web/page.png)");
} finally {
  await browser.close();
  server.close();
}
