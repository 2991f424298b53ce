// The browser benchmark: what `lstm-bench` times natively, timed in headless
// Chromium on its WebGPU adapter (SwiftShader, on the CPU, where there is no
// GPU) and on the CPU engine compiled to WebAssembly (one thread).
//
// Run from the repository root after web/build.sh (and `npm ci` in web/e2e):
//
//     node web/e2e/bench.mjs [--shapes "1,100,64,128;16,100,128,256"] [--iters 5]
//
// Prints a Markdown table: per shape and mode, the median time of a call that
// ends when the device has finished it (the input already on the device for a
// GPU forward; a whole training step for "train").

import path from "node:path";
import { fileURLToPath } from "node:url";
import { launchChromium, startServer } from "./browser.mjs";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const shapes = arg("--shapes", "1,100,64,128;16,100,128,256")
  .split(";")
  .map((s) => s.split(",").map(Number));
const iters = Number(arg("--iters", "5"));
const warmup = Number(arg("--warmup", "2"));
const devices = arg("--devices", "gpu,cpu").split(",");

const server = await startServer(path.join(REPO, "web"));
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await launchChromium();
let failed = false;
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => {
    console.error(`page error: ${e.message}`);
    failed = true;
  });
  await page.goto(`${base}/demo/`);
  const rows = await page.evaluate(
    async ({ shapes, iters, warmup, devices }) => {
      const m = await import("/pkg/wgpu_lstm_web.js");
      await m.default();
      const rows = [];
      for (const kind of devices) {
        const device = await m.Device.create(kind);
        for (const shape of shapes) {
          for (const mode of ["forward", "train"]) {
            const r = await m.benchmarkLstm(device, mode, shape, warmup, iters);
            rows.push({ device: device.name, shape, mode, ...r });
          }
        }
      }
      return rows;
    },
    { shapes, iters, warmup, devices },
  );
  console.log(`Chromium ${browser.version()}, ${new Date().toISOString().slice(0, 10)}`);
  console.log("| device | B | T | I | H | mode | median ms | min ms |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const [b, t, i, h] = r.shape;
    console.log(
      `| ${r.device} | ${b} | ${t} | ${i} | ${h} | ${r.mode} | ${r.medianMs.toFixed(2)} | ${r.minMs.toFixed(2)} |`,
    );
  }
} finally {
  await browser.close();
  server.close();
}
process.exit(failed ? 1 : 0);
