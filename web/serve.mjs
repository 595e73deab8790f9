// A static server for web/www (the demo page's folder), for the tests and the race: `/ort/`
// maps to onnxruntime-web's dist/ in node_modules, `/fixtures/` to the folder `fixtures` when
// given (the test of the CPU engine reads torchvision's reference there), and with `isolated`
// every response carries the cross-origin isolation headers (COOP/COEP) that let ONNX
// Runtime's wasm backend and regnet-cpu use threads. `node web/serve.mjs [PORT]` serves it
// isolated until Ctrl-C.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";

const root = normalize(join(import.meta.dirname, ".."));
const www = join(root, "web", "www");
const ortDist = join(root, "web", "node_modules", "onnxruntime-web", "dist");
const types = {
  ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
  ".wasm": "application/wasm", ".png": "image/png", ".json": "application/json",
};

/** Serves web/www on 127.0.0.1 (a free port unless `port`); resolves to { url, close }. */
export async function serve({ isolated = true, port = 0, fixtures } = {}) {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, "http://x").pathname);
    const [base, rel] = path.startsWith("/ort/") ? [ortDist, path.slice(5)]
      : fixtures && path.startsWith("/fixtures/") ? [normalize(fixtures), path.slice(10)]
      : [www, path];
    let file = normalize(join(base, rel));
    if (!file.startsWith(base)) { res.writeHead(403).end(); return; }
    if (file.endsWith("/") || file === base) file = join(file, "index.html");
    const headers = { "content-type": types[extname(file)] ?? "application/octet-stream" };
    if (isolated) {
      headers["cross-origin-opener-policy"] = "same-origin";
      headers["cross-origin-embedder-policy"] = "require-corp";
    }
    let body;
    try {
      body = await readFile(file);
    } catch {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, headers).end(body);
  }).listen(port, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  return { url: `http://127.0.0.1:${server.address().port}/`, close: () => server.close() };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { url } = await serve({ port: Number(process.argv[2] ?? 8000) });
  console.log(`serving web/www (cross-origin isolated) on ${url}`);
}
