// Drives web/www/bench.html in headless Chromium (scripts/web bench): serves the page
// cross-origin isolated, waits for the race to end, prints its JSON lines on stdout.
import puppeteer from "puppeteer-core";
import { serve } from "./serve.mjs";

const query = process.argv[2] ?? "";
const server = await serve({ isolated: true });
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--enable-unsafe-webgpu", "--disable-dev-shm-usage"],
  protocolTimeout: 0,
});
try {
  const page = await browser.newPage();
  page.on("console", (m) => {
    const t = m.text();
    (t.startsWith("{") ? console.log : console.error)(t);
  });
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(`${server.url}bench.html${query}`);
  await page.waitForFunction(() => document.getElementById("status").dataset.state !== "running", { timeout: 0 });
  const status = await page.$eval("#status", (s) => s.textContent);
  if (status !== "done") { console.error(status); process.exitCode = 1; }
} finally {
  await browser.close();
  server.close();
}
