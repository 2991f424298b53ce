// End-to-end test of the demo page (web/demo/) in headless Chromium.
//
// Run from the repository root, after building the package with web/build.sh:
//
//     (cd web/e2e && npm ci)    # once: installs playwright-core (no browser download)
//     node web/e2e/run.mjs
//
// It serves web/ on 127.0.0.1, opens /demo/ in Chromium (CHROMIUM=/path/to/chrome
// overrides /usr/bin/chromium) with WebGPU enabled (without a GPU, Chromium's
// adapter is SwiftShader), and then:
//   1. runs a PyTorch checkpoint: an nn.LSTM split out of a float64 PyTorch fixture
//      (tests/fixtures/) into a MODEL file and an IN file, compared with PyTorch's
//      output, h_n and c_n within 1e-5; and tests/fixtures/state_dicts/lstm_f32
//      (2 layers, bidirectional) with a generated input; and a GRU state_dict PyTorch
//      saved (tests/fixtures/gru/gru_state_dict) against PyTorch's run of it;
//   2. generates 100 characters with the character model;
//   3. trains the adding problem with the page's defaults and checks that the final
//      loss is below the mean predictor's;
// saves a screenshot to target/web/demo.png, and repeats step 1 on the CPU engine
// (checking it against PyTorch and against the GPU's results).
// Any failed check, page error, console error or failed request fails the run
// (exit status 1).

import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CHROMIUM, launchChromium, startServer } from "./browser.mjs";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const WEB = path.join(REPO, "web");
const FIXTURES = path.join(REPO, "tests/fixtures");
const SCREENSHOT = path.join(REPO, "target/web/demo.png");
/** The PyTorch fixture whose LSTM is run (1 layer, given h_0/c_0, seq-first). */
const FIXTURE = "given_state";
const TOLERANCE = 1e-5;

// Time limits, about 3x what a run takes on SwiftShader with 2 CPU cores
// (checkpoint 3 s, most of it creating the pipelines; 100 characters 3 s;
// 300 training steps 115 s).
const TIMEOUT = {
  load: 60_000,
  checkpoint: 20_000,
  generate: 20_000,
  train: 360_000,
};

class CheckFailed extends Error {}

function fail(msg) {
  throw new CheckFailed(msg);
}

const seconds = (ms) => `${(ms / 1000).toFixed(2)} s`;

// ------------------------------------------------------------ safetensors

const DTYPES = {
  F64: Float64Array,
  F32: Float32Array,
  I64: BigInt64Array,
  I32: Int32Array,
};

/** Reads a safetensors file: { metadata, tensors: { name: { dtype, shape, data } } }. */
function readSafetensors(file) {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  const base = 8 + n;
  const tensors = {};
  let metadata = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = info;
      continue;
    }
    const Type = DTYPES[info.dtype];
    if (!Type) fail(`${file}: ${name} has dtype ${info.dtype}, which this reader does not know`);
    const [start, end] = info.data_offsets;
    // Copy so the typed array is aligned.
    const bytes = new Uint8Array(buf.subarray(base + start, base + end));
    tensors[name] = { dtype: info.dtype, shape: info.shape, data: new Type(bytes.buffer) };
  }
  return { metadata, tensors };
}

/** Writes tensors ([name, dtype, shape, typed array]) as safetensors bytes. */
function writeSafetensors(entries) {
  const header = {};
  let offset = 0;
  for (const [name, dtype, shape, data] of entries) {
    header[name] = { dtype, shape, data_offsets: [offset, offset + data.byteLength] };
    offset += data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const parts = [head, Buffer.from(json, "utf8")];
  for (const [, , , data] of entries) parts.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  return Buffer.concat(parts);
}

const toF32 = (t) => Float32Array.from(t.data, Number);

/**
 * Splits a PyTorch fixture into a MODEL file (the `lstm.*` tensors in F32) and
 * an IN file (input, h_0, c_0 in F32; lengths as I64), and returns PyTorch's
 * output, h_n and c_n.
 */
function splitFixture(name) {
  const { metadata, tensors } = readSafetensors(path.join(FIXTURES, `${name}.safetensors`));
  if (metadata.batch_first === "true") fail(`${name}: a batch_first fixture cannot be run by the page`);
  const model = Object.keys(tensors)
    .filter((k) => k.startsWith("lstm."))
    .sort()
    .map((k) => [k, "F32", tensors[k].shape, toF32(tensors[k])]);
  const input = ["input", "h_0", "c_0"]
    .filter((k) => tensors[k])
    .map((k) => [k, "F32", tensors[k].shape, toF32(tensors[k])]);
  if (tensors.lengths) input.push(["lengths", "I64", tensors.lengths.shape, BigInt64Array.from(tensors.lengths.data)]);
  const expected = {};
  for (const k of ["output", "h_n", "c_n"]) {
    expected[k] = { shape: tensors[k].shape, data: Float64Array.from(tensors[k].data, Number) };
  }
  return {
    model: { name: `${name}.model.safetensors`, mimeType: "application/octet-stream", buffer: writeSafetensors(model) },
    input: { name: `${name}.in.safetensors`, mimeType: "application/octet-stream", buffer: writeSafetensors(input) },
    expected,
    description: metadata.description,
  };
}

/**
 * A GRU checkpoint as PyTorch saved it (tests/fixtures/gru/gru_state_dict: a
 * 2-layer bidirectional nn.GRU(5, 8), bare keys), the input it was run on, and
 * PyTorch's float64 output and h_n; a GRU's c_n is empty.
 */
function gruCase() {
  const run = readSafetensors(path.join(FIXTURES, "gru/gru_state_dict_run.safetensors")).tensors;
  const f64 = (t) => ({ shape: t.shape, data: Float64Array.from(t.data, Number) });
  return {
    model: {
      name: "gru_state_dict.safetensors",
      mimeType: "application/octet-stream",
      buffer: readFileSync(path.join(FIXTURES, "gru/gru_state_dict.safetensors")),
    },
    input: {
      name: "gru.in.safetensors",
      mimeType: "application/octet-stream",
      buffer: writeSafetensors([["input", "F32", run.input.shape, toF32(run.input)]]),
    },
    expected: {
      output: f64(run.output),
      h_n: f64(run.h_n),
      c_n: { shape: [run.h_n.shape[0], run.h_n.shape[1], 0], data: new Float64Array(0) },
    },
  };
}

/** IN for tests/fixtures/state_dicts/lstm_f32 (input_size 6): [7, 3, 6]. */
function lstmF32Case() {
  const [T, B, I] = [7, 3, 6];
  const x = Float32Array.from({ length: T * B * I }, (_, i) => Math.sin(0.37 * i + 0.1) * 0.9);
  return {
    model: {
      name: "lstm_f32.safetensors",
      mimeType: "application/octet-stream",
      buffer: readFileSync(path.join(FIXTURES, "state_dicts/lstm_f32.safetensors")),
    },
    input: { name: "lstm_f32.in.safetensors", mimeType: "application/octet-stream", buffer: writeSafetensors([["input", "F32", [T, B, I], x]]) },
    shapes: { output: [T, B, 20], h_n: [4, B, 10], c_n: [4, B, 10] },
  };
}

// ------------------------------------------------------------ page helpers

/** Clicks a demo's Run button and waits for its result area to leave "running". */
async function runDemo(page, resultId, buttonId, timeout) {
  const before = Number((await page.getAttribute(`#${resultId}`, "data-run")) ?? 0);
  const t0 = performance.now();
  await page.click(`#${buttonId}`);
  await page.waitForFunction(
    ([id, run]) => {
      const el = document.getElementById(id);
      return Number(el.dataset.run ?? 0) > run && (el.dataset.state === "done" || el.dataset.state === "error");
    },
    [resultId, before],
    { timeout, polling: 100 },
  );
  const ms = performance.now() - t0;
  const state = await page.getAttribute(`#${resultId}`, "data-state");
  const status = (await page.textContent(`#${resultId} .status`)).trim();
  if (state !== "done") fail(`${resultId}: ${status}`);
  return { ms, status };
}

const text = async (page, selector) => ((await page.textContent(selector)) ?? "").trim();

/** The shape at the start of a shape line, such as "[4, 2, 0] (a GRU has no cell state)". */
const parseShape = (s) => JSON.parse(s.match(/^\s*(\[[^\]]*\])/)?.[1] ?? fail(`no shape in "${s}"`));

function sameShape(what, got, want) {
  if (JSON.stringify(got) !== JSON.stringify(want)) fail(`${what}: shape ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
}

function compare(what, got, want, tolerance) {
  if (got.length !== want.length) fail(`${what}: ${got.length} values, expected ${want.length}`);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  }
  if (!(worst <= tolerance)) {
    fail(`${what}: |difference| ${worst} at index ${at} (got ${got[at]}, expected ${want[at]}) exceeds ${tolerance}`);
  }
  return worst;
}

/** Loads a checkpoint case's files into the page and runs it; returns what the page shows. */
async function runCheckpoint(page, c, timeout) {
  await page.setInputFiles("#ckpt-model", c.model);
  await page.setInputFiles("#ckpt-in", c.input);
  const run = await runDemo(page, "ckpt-result", "ckpt-run", timeout);
  const json = async (id) => JSON.parse(await text(page, `#${id}`));
  return {
    ...run,
    describe: await text(page, "#ckpt-describe"),
    time: await text(page, "#ckpt-time"),
    shapes: {
      output: parseShape(await text(page, "#ckpt-output-shape")),
      h_n: parseShape(await text(page, "#ckpt-hn-shape")),
      c_n: parseShape(await text(page, "#ckpt-cn-shape")),
    },
    values: { output: await json("ckpt-output"), h_n: await json("ckpt-hn"), c_n: await json("ckpt-cn") },
  };
}

function checkAgainstPytorch(what, got, expected) {
  const diffs = [];
  for (const k of ["output", "h_n", "c_n"]) {
    sameShape(`${what} ${k}`, got.shapes[k], expected[k].shape);
    diffs.push(`${k} ${compare(`${what} ${k}`, got.values[k], expected[k].data, TOLERANCE).toExponential(1)}`);
  }
  return diffs.join(", ");
}

function checkLstmF32(what, got, c) {
  for (const want of ["nn.LSTM(", "input_size=6", "hidden_size=10", "num_layers=2", "bidirectional=True"]) {
    if (!got.describe.includes(want)) fail(`${what}: the module description "${got.describe}" lacks "${want}"`);
  }
  for (const k of ["output", "h_n", "c_n"]) {
    sameShape(`${what} ${k}`, got.shapes[k], c.shapes[k]);
    const n = c.shapes[k].reduce((a, b) => a * b, 1);
    if (got.values[k].length !== n) fail(`${what} ${k}: ${got.values[k].length} values, expected ${n}`);
    if (!got.values[k].every(Number.isFinite)) fail(`${what} ${k}: values that are not finite`);
  }
  if (got.values.output.every((v) => v === 0)) fail(`${what}: the output is all zeros`);
}

// ------------------------------------------------------------ the test

async function main() {
  for (const [file, hint] of [
    ["web/pkg/wgpu_lstm_web.js", "build the package with web/build.sh"],
    ["web/pkg/wgpu_lstm_web_bg.wasm", "build the package with web/build.sh"],
    ["web/demo/charlm.safetensors", "the character model of the text generation demo is missing"],
    ["web/demo/charlm.vocab.json", "the vocabulary of the text generation demo is missing"],
  ]) {
    if (!existsSync(path.join(REPO, file))) fail(`${file} not found: ${hint}`);
  }
  const vocab = JSON.parse(readFileSync(path.join(WEB, "demo/charlm.vocab.json"), "utf8"));
  const fixture = splitFixture(FIXTURE);
  const f32 = lstmF32Case();
  const gru = gruCase();

  const server = await startServer(WEB);
  const base = `http://127.0.0.1:${server.address().port}`;
  let browser = null;
  const problems = [];
  const timings = [];
  const report = (name, ms, detail) => {
    timings.push([name, ms]);
    console.log(`ok   ${name.padEnd(40)} ${seconds(ms).padStart(8)}   ${detail}`);
  };
  /** Fails on page errors, console errors and failed requests so far. */
  const checkProblems = () => {
    if (problems.length) fail(problems.join("\n     "));
  };

  try {
    browser = await launchChromium();
    console.log(`Chromium ${browser.version()} (${CHROMIUM}); serving ${WEB} at ${base}`);
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console error: ${m.text()}`);
    });
    page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} (${r.failure()?.errorText})`));
    page.on("response", (r) => {
      if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
    });

    // The page and the device.
    let t0 = performance.now();
    await page.goto(`${base}/demo/`);
    await page.waitForFunction(
      () => ["done", "error"].includes(document.getElementById("device-info").dataset.state),
      null,
      { timeout: TIMEOUT.load, polling: 100 },
    );
    const deviceLine = await text(page, "#device-name");
    if ((await page.getAttribute("#device-info", "data-state")) !== "done") fail(`device: ${deviceLine}`);
    if (!/^Adapter: \S/.test(deviceLine)) fail(`the device line names no adapter: "${deviceLine}"`);
    checkProblems();
    report("page load + gpu device", performance.now() - t0, deviceLine);

    // 1. Checkpoints on the GPU.
    const gpuF32 = await runCheckpoint(page, f32, TIMEOUT.checkpoint);
    checkLstmF32("lstm_f32 on gpu", gpuF32, f32);
    checkProblems();
    report("checkpoint lstm_f32 (gpu)", gpuF32.ms, `${JSON.stringify(gpuF32.shapes.output)}; forward ${gpuF32.time}`);

    const gpuFixture = await runCheckpoint(page, fixture, TIMEOUT.checkpoint);
    const gpuDiffs = checkAgainstPytorch(`${FIXTURE} on gpu`, gpuFixture, fixture.expected);
    checkProblems();
    report(`checkpoint ${FIXTURE} vs PyTorch (gpu)`, gpuFixture.ms, `max |diff| ${gpuDiffs}; forward ${gpuFixture.time}`);

    const gruRun = await runCheckpoint(page, gru, TIMEOUT.checkpoint);
    if (!gruRun.describe.includes("nn.GRU(input_size=5, hidden_size=8, num_layers=2")) {
      fail(`the GRU checkpoint is described as "${gruRun.describe}"`);
    }
    const gruDiffs = checkAgainstPytorch("gru_state_dict on gpu", gruRun, gru.expected);
    checkProblems();
    report("checkpoint nn.GRU vs PyTorch (gpu)", gruRun.ms, `max |diff| ${gruDiffs}; forward ${gruRun.time}`);

    // 2. Text generation.
    await page.fill("#gen-length", "100");
    const gen = await runDemo(page, "gen-result", "gen-run", TIMEOUT.generate);
    const generated = Array.from(await page.textContent("#gen-new"));
    if (generated.length < 100) fail(`generation: ${generated.length} new characters, expected at least 100`);
    const known = new Set(vocab);
    const strange = [...new Set(generated.filter((c) => !known.has(c)))];
    if (strange.length) fail(`generation: characters outside the vocabulary: ${JSON.stringify(strange)}`);
    const echo = await page.textContent("#gen-prompt-echo");
    if (echo !== "And God said") fail(`generation: the prompt shown is ${JSON.stringify(echo)}`);
    checkProblems();
    report("generate 100 characters (gpu)", gen.ms, `${await text(page, "#gen-rate")} characters/s`);
    console.log(`     ${JSON.stringify(echo + generated.join(""))}`);

    // 3. Training.
    const train = await runDemo(page, "train-result", "train-run", TIMEOUT.train);
    const final = Number(await text(page, "#train-final"));
    const baseline = Number(await text(page, "#train-baseline"));
    if (!Number.isFinite(final) || !Number.isFinite(baseline)) {
      fail(`training: final loss "${await text(page, "#train-final")}", baseline "${await text(page, "#train-baseline")}"`);
    }
    if (!(final < baseline)) fail(`training: final loss ${final} is not below the mean predictor's ${baseline}`);
    checkProblems();
    report(
      "train adding problem, 300 steps (gpu)",
      train.ms,
      `final loss ${final} < ${baseline}; ${await text(page, "#train-rate")} steps/s`,
    );
    console.log(`     ${await text(page, "#train-heldout")}`);

    // The screenshot, with all three demos run.
    mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.mouse.move(0, 0);
    await page.evaluate(() => {
      document.activeElement?.blur();
      window.scrollTo(0, 0);
    });
    await page.waitForTimeout(200);
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    console.log(`     screenshot: ${path.relative(REPO, SCREENSHOT)}`);

    // 1 again on the CPU engine.
    t0 = performance.now();
    await page.selectOption("#device-kind", "cpu");
    await page.waitForFunction(
      () => {
        const el = document.getElementById("device-info");
        return el.dataset.state === "error" || (el.dataset.state === "done" && !el.textContent.includes("Adapter"));
      },
      null,
      { timeout: TIMEOUT.load, polling: 100 },
    );
    const cpuLine = await text(page, "#device-name");
    if ((await page.getAttribute("#device-info", "data-state")) !== "done") fail(`cpu device: ${cpuLine}`);
    report("cpu device", performance.now() - t0, cpuLine);

    const cpuF32 = await runCheckpoint(page, f32, TIMEOUT.checkpoint);
    checkLstmF32("lstm_f32 on cpu", cpuF32, f32);
    const crossDiffs = ["output", "h_n", "c_n"]
      .map((k) => `${k} ${compare(`lstm_f32 ${k}: cpu vs gpu`, cpuF32.values[k], gpuF32.values[k], TOLERANCE).toExponential(1)}`)
      .join(", ");
    checkProblems();
    report("checkpoint lstm_f32 (cpu vs gpu)", cpuF32.ms, `max |diff| ${crossDiffs}; forward ${cpuF32.time}`);

    const cpuFixture = await runCheckpoint(page, fixture, TIMEOUT.checkpoint);
    const cpuDiffs = checkAgainstPytorch(`${FIXTURE} on cpu`, cpuFixture, fixture.expected);
    checkProblems();
    report(`checkpoint ${FIXTURE} vs PyTorch (cpu)`, cpuFixture.ms, `max |diff| ${cpuDiffs}; forward ${cpuFixture.time}`);

    const total = timings.reduce((s, [, ms]) => s + ms, 0);
    console.log(`PASS (${timings.length} checks in ${seconds(total)})`);
  } finally {
    if (browser) await browser.close();
    server.close();
  }
}

try {
  await main();
} catch (e) {
  const msg = e instanceof CheckFailed ? e.message : e?.stack ?? String(e);
  console.error(`FAIL ${msg}`);
  process.exit(1);
}
