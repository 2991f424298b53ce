// The demo page of the wasm package: a PyTorch checkpoint's forward pass,
// text generation from a character model and training on the adding problem,
// on WebGPU or on the CPU engine. Serve `web/` with any static server and open
// /demo/ (build the package into web/pkg/ with web/build.sh first).

const $ = (id) => document.getElementById(id);

/** The wasm-bindgen module, once loaded. */
let wasm = null;

// ---------------------------------------------------------------- helpers

function errorMessage(e) {
  if (e instanceof Error) return e.message;
  if (typeof e === "string") return e;
  try {
    return JSON.stringify(e);
  } catch {
    return String(e);
  }
}

/** Frees a wasm-bindgen object unless it was already freed or moved into Rust. */
function dispose(obj) {
  try {
    if (obj && typeof obj.free === "function" && obj.__wbg_ptr) obj.free();
  } catch {
    // Already released: nothing to do.
  }
}

/** Lets the browser handle events and repaint. */
const yieldToBrowser = () => new Promise((resolve) => setTimeout(resolve, 0));

/** A small, fast, seeded PRNG (mulberry32): uniform in [0, 1). */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const fmtShape = (shape) => (shape && shape.length ? `[${Array.from(shape).join(", ")}]` : "–");

function fmtTime(ms) {
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** A plain decimal string with 4 significant digits (no exponent above 1e-7). */
const fmtNum = (v) => (Number.isFinite(v) ? String(Number(v.toPrecision(4))) : String(v));

function fmtRate(perSecond) {
  if (!Number.isFinite(perSecond)) return "–";
  return perSecond >= 100 ? perSecond.toFixed(0) : perSecond.toFixed(1);
}

function intField(id, min, max) {
  const el = $(id);
  const v = Number(el.value);
  if (!Number.isInteger(v) || v < min || v > max) {
    const name = el.closest("label")?.querySelector("span")?.textContent ?? id;
    throw new Error(`${name} must be a whole number from ${min} to ${max}`);
  }
  return v;
}

function numberField(id, min, max) {
  const el = $(id);
  const v = Number(el.value);
  if (el.value.trim() === "" || !Number.isFinite(v) || v < min || v > max) {
    const name = el.closest("label")?.querySelector("span")?.textContent ?? id;
    throw new Error(`${name} must be a number from ${min} to ${max}`);
  }
  return v;
}

// ------------------------------------------------------------ job handling

/** Number of demos running: the device cannot change while one runs. */
let running = 0;

/**
 * A result area (`data-state` idle | running | done | error, `data-run` counts
 * the runs) with its status line.
 */
class Result {
  constructor(resultId, statusId) {
    this.el = $(resultId);
    this.status = $(statusId);
    this.runs = 0;
  }
  start(text) {
    this.runs += 1;
    this.el.dataset.run = String(this.runs);
    this.el.dataset.state = "running";
    this.status.textContent = text;
  }
  progress(text) {
    this.status.textContent = text;
  }
  done(text) {
    this.status.textContent = text;
    this.el.dataset.state = "done";
  }
  fail(e) {
    const msg = errorMessage(e);
    this.status.textContent = `Error: ${msg}`;
    this.el.dataset.state = "error";
    console.error(`${this.el.id}: ${msg}`);
  }
}

/**
 * Runs `body(job)` for a Run button that turns into a Stop button while it
 * runs (when `stoppable`); `job.stop` becomes true when Stop is clicked.
 */
function wireRun(button, label, stoppable, body) {
  let job = null;
  button.addEventListener("click", async () => {
    if (job) {
      if (stoppable) {
        job.stop = true;
        button.disabled = true;
      }
      return;
    }
    job = { stop: false };
    running += 1;
    $("device-kind").disabled = true;
    if (stoppable) {
      button.textContent = "Stop";
      button.classList.add("stop");
    } else {
      button.disabled = true;
      button.textContent = "Running…";
    }
    try {
      await body(job);
    } finally {
      job = null;
      running -= 1;
      if (running === 0) $("device-kind").disabled = false;
      button.textContent = label;
      button.classList.remove("stop");
      button.disabled = false;
      refreshButtons();
    }
  });
}

// ---------------------------------------------------------------- device

let device = { kind: null, promise: null };

function setDeviceInfo(state, text) {
  $("device-info").dataset.state = state;
  $("device-name").textContent = text;
}

async function createDevice(kind) {
  setDeviceInfo("running", kind === "gpu" ? "Requesting a WebGPU adapter…" : "Starting the CPU engine…");
  try {
    const d = await wasm.Device.create(kind);
    setDeviceInfo("done", d.isGpu ? `Adapter: ${d.name}` : `${d.name} (WebAssembly)`);
    return d;
  } catch (e) {
    const hint = kind === "gpu" ? " Choose cpu to run on the CPU engine." : "";
    setDeviceInfo("error", `No ${kind} device: ${errorMessage(e)}${hint}`);
    throw e;
  }
}

/** The device chosen in the selector, created once per choice. */
function getDevice() {
  const kind = $("device-kind").value;
  if (device.kind === kind && device.promise) return device.promise;
  const previous = device.promise;
  const promise = createDevice(kind);
  device = { kind, promise };
  promise.catch(() => {
    if (device.promise === promise) device = { kind: null, promise: null };
  });
  if (previous) previous.then(dispose, () => {});
  return promise;
}

// ------------------------------------------------ 1. a PyTorch checkpoint

const ckpt = { model: null, input: null };
const ckptResult = new Result("ckpt-result", "ckpt-status");

function setCkptFile(which, file) {
  ckpt[which] = file ?? null;
  const label = $(which === "model" ? "ckpt-model-label" : "ckpt-in-label");
  const name = $(which === "model" ? "ckpt-model-name" : "ckpt-in-name");
  label.classList.toggle("has-file", !!file);
  if (file) {
    const kb = file.size / 1024;
    name.textContent = `${file.name} · ${kb < 1024 ? `${kb.toFixed(1)} KB` : `${(kb / 1024).toFixed(1)} MB`}`;
    name.title = file.name;
  } else {
    name.textContent = which === "model" ? "state_dict .safetensors" : "input .safetensors";
    name.title = "";
  }
  if (ckptResult.el.dataset.state === "idle") {
    ckptResult.status.textContent =
      ckpt.model && ckpt.input ? "Ready: press Run forward." : "Choose a MODEL and an IN file.";
  }
  refreshButtons();
}

/** The tensor names in a safetensors file's header, or null if it is not one. */
async function safetensorsNames(file) {
  try {
    if (file.size < 8) return null;
    const n = Number(new DataView(await file.slice(0, 8).arrayBuffer()).getBigUint64(0, true));
    if (n < 2 || 8 + n > file.size) return null;
    const header = JSON.parse(await file.slice(8, 8 + n).text());
    return Object.keys(header).filter((k) => k !== "__metadata__");
  } catch {
    return null;
  }
}

/** An IN file holds `input` and no weights. */
const looksLikeInput = (names) => !!names && names.includes("input") && !names.some((k) => /weight_/.test(k));

async function dropFiles(files) {
  files = Array.from(files).slice(0, 2);
  if (files.length === 0) return;
  const isIn = await Promise.all(files.map(async (f) => looksLikeInput(await safetensorsNames(f))));
  if (files.length === 1) {
    setCkptFile(isIn[0] ? "input" : "model", files[0]);
  } else if (isIn[0] !== isIn[1]) {
    setCkptFile("model", isIn[0] ? files[1] : files[0]);
    setCkptFile("input", isIn[0] ? files[0] : files[1]);
  } else {
    setCkptFile("model", files[0]);
    setCkptFile("input", files[1]);
  }
}

function wireDrop() {
  const card = $("ckpt");
  let depth = 0;
  card.addEventListener("dragenter", (e) => {
    e.preventDefault();
    depth += 1;
    card.classList.add("dragover");
  });
  card.addEventListener("dragover", (e) => {
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  card.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) card.classList.remove("dragover");
  });
  card.addEventListener("drop", (e) => {
    e.preventDefault();
    depth = 0;
    card.classList.remove("dragover");
    dropFiles(e.dataTransfer.files);
  });
  // A file dropped elsewhere must not replace the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}

/** Above this many values the JSON dump is left out (it would stall the page). */
const JSON_LIMIT = 1_000_000;

function dumpJson(id, values) {
  $(id).textContent =
    values.length <= JSON_LIMIT ? JSON.stringify(Array.from(values)) : `null (${values.length} values: too many to show)`;
}

function clearCheckpoint() {
  for (const id of ["ckpt-describe", "ckpt-output-shape", "ckpt-hn-shape", "ckpt-cn-shape", "ckpt-adapter", "ckpt-time", "ckpt-values"]) {
    $(id).textContent = "–";
  }
  for (const id of ["ckpt-output", "ckpt-hn", "ckpt-cn"]) $(id).textContent = "";
}

async function runCheckpoint() {
  const res = ckptResult;
  res.start("Loading the checkpoint…");
  clearCheckpoint();
  let lstm = null;
  let first = null;
  let second = null;
  try {
    if (!ckpt.model || !ckpt.input) throw new Error("choose a MODEL and an IN file first");
    const dev = await getDevice();
    const [modelBuf, inBuf] = await Promise.all([ckpt.model.arrayBuffer(), ckpt.input.arrayBuffer()]);
    lstm = wasm.Lstm.fromSafetensors(dev, new Uint8Array(modelBuf));
    $("ckpt-describe").textContent = lstm.describe;
    $("ckpt-adapter").textContent = dev.name;

    res.progress("Running the forward pass…");
    const inBytes = new Uint8Array(inBuf);
    let t0 = performance.now();
    first = await lstm.forwardFile(inBytes);
    const firstMs = performance.now() - t0;
    // Again, now that the pipelines and buffers exist: the steady-state time.
    t0 = performance.now();
    second = await lstm.forwardFile(inBytes);
    const warmMs = performance.now() - t0;

    const output = first.output;
    const hN = first.hN;
    const cN = first.cN;
    const outputShape = first.outputShape;
    $("ckpt-output-shape").textContent = fmtShape(outputShape);
    $("ckpt-hn-shape").textContent = fmtShape(first.hNShape);
    const hasCell = cN && cN.length > 0;
    $("ckpt-cn-shape").textContent = hasCell ? fmtShape(first.cNShape) : `${fmtShape(first.cNShape)} (a GRU has no cell state)`;
    $("ckpt-time").textContent = `${fmtTime(warmMs)} (first call ${fmtTime(firstMs)})`;

    const shown = Array.from(output.slice(0, 8), (v) => (v < 0 ? "" : " ") + v.toFixed(5));
    const rows = [];
    for (let i = 0; i < shown.length; i += 4) rows.push(shown.slice(i, i + 4).join("  "));
    $("ckpt-values").textContent = rows.join("\n") + (output.length > 8 ? `\n… ${output.length} values in all` : "");
    dumpJson("ckpt-output", output);
    dumpJson("ckpt-hn", hN);
    dumpJson("ckpt-cn", hasCell ? cN : []);

    res.done(`Done: output ${fmtShape(outputShape)} in ${fmtTime(warmMs)}.`);
  } catch (e) {
    res.fail(e);
  } finally {
    dispose(second);
    dispose(first);
    dispose(lstm);
  }
}

// ------------------------------------------------------ 2. text generation

const genResult = new Result("gen-result", "gen-status");
/** The character model: file bytes, vocabulary and its index, description. */
let charlm = null;

async function loadCharlm() {
  if (charlm) return charlm;
  const [modelRes, vocabRes] = await Promise.all([fetch("charlm.safetensors"), fetch("charlm.vocab.json")]);
  if (!modelRes.ok) throw new Error(`could not load charlm.safetensors (HTTP ${modelRes.status})`);
  if (!vocabRes.ok) throw new Error(`could not load charlm.vocab.json (HTTP ${vocabRes.status})`);
  const bytes = new Uint8Array(await modelRes.arrayBuffer());
  const vocab = await vocabRes.json();
  if (!Array.isArray(vocab) || vocab.some((c) => typeof c !== "string")) {
    throw new Error("charlm.vocab.json must be a JSON array of strings");
  }
  const model = wasm.Model.fromSafetensors(bytes);
  const describe = model.describe;
  dispose(model);
  charlm = { bytes, vocab, index: new Map(vocab.map((c, i) => [c, i])), describe };
  return charlm;
}

/** Samples a token from logits: softmax at `temperature`, greedy at 0. */
function sampleToken(logits, temperature, rng) {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (!(temperature > 0)) return best;
  const max = logits[best];
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    p[i] = Math.exp((logits[i] - max) / temperature);
    sum += p[i];
  }
  let u = rng() * sum;
  for (let i = 0; i < p.length; i++) {
    u -= p[i];
    if (u < 0) return i;
  }
  return best;
}

async function runGeneration(job) {
  const res = genResult;
  res.start("Loading the model…");
  const echo = $("gen-prompt-echo");
  const out = $("gen-new");
  const pre = $("gen-text");
  echo.textContent = "";
  out.textContent = "";
  for (const id of ["gen-count", "gen-rate", "gen-prompt-time"]) $(id).textContent = "–";
  let gen = null;
  try {
    const length = intField("gen-length", 1, 5000);
    const temperature = numberField("gen-temperature", 0, 5);
    const seed = intField("gen-seed", 0, 2 ** 32 - 1);
    const prompt = $("gen-prompt").value;
    const dev = await getDevice();
    const lm = await loadCharlm();
    // The model lists its modules one a line: show them as a pipeline.
    const modules = lm.describe.trim().split(/\s*\n\s*/).join(" → ");
    $("gen-model").textContent = `${modules} · vocabulary of ${lm.vocab.length} characters`;

    // The prompt's characters that the vocabulary knows; an empty prompt starts at a newline.
    const tokens = [];
    const unknown = new Set();
    for (const ch of prompt) {
      const t = lm.index.get(ch);
      if (t === undefined) unknown.add(ch);
      else tokens.push(t);
    }
    if (tokens.length === 0) tokens.push(lm.index.get("\n") ?? lm.index.get(" ") ?? 0);
    const skipped = unknown.size
      ? ` Skipped ${unknown.size} character${unknown.size > 1 ? "s" : ""} not in the vocabulary: ${[...unknown].map((c) => JSON.stringify(c)).join(" ")}.`
      : "";

    const model = wasm.Model.fromSafetensors(lm.bytes);
    gen = wasm.Generator.create(dev, model);
    dispose(model);
    res.progress("Feeding the prompt…");
    echo.textContent = prompt.length ? tokens.map((t) => lm.vocab[t]).join("") : "";
    let t0 = performance.now();
    let logits = null;
    for (const t of tokens) logits = await gen.feed(t);
    $("gen-prompt-time").textContent = fmtTime(performance.now() - t0);
    if (logits.length !== lm.vocab.length) {
      throw new Error(`the model has ${logits.length} outputs but the vocabulary ${lm.vocab.length} characters`);
    }

    res.progress(`Generating ${length} characters…`);
    const rng = mulberry32(seed);
    const text = document.createTextNode("");
    out.appendChild(text);
    t0 = performance.now();
    let shownAt = t0;
    let count = 0;
    const show = () => {
      const elapsed = performance.now() - t0;
      $("gen-count").textContent = String(count);
      $("gen-rate").textContent = fmtRate((count / elapsed) * 1000);
      pre.scrollTop = pre.scrollHeight;
    };
    while (count < length && !job.stop) {
      const next = sampleToken(logits, temperature, rng);
      text.appendData(lm.vocab[next]);
      count += 1;
      if (count < length) logits = await gen.feed(next);
      if (performance.now() - shownAt > 50) {
        show();
        shownAt = performance.now();
        await yieldToBrowser();
      }
    }
    show();
    const elapsed = performance.now() - t0;
    const rate = fmtRate((count / elapsed) * 1000);
    const what = job.stop ? `Stopped after ${count} characters` : `Generated ${count} characters`;
    res.done(`${what} in ${fmtTime(elapsed)}: ${rate} characters/s.${skipped}`);
  } catch (e) {
    res.fail(e);
  } finally {
    dispose(gen);
  }
}

// ------------------------------------------------------------ 3. training

const trainResult = new Result("train-result", "train-status");
/** The mean predictor's MSE: the variance of a sum of two uniforms, 2/12. */
const BASELINE = 1 / 6;
const BATCH = 32;
/** Readings (one every 10 steps) averaged for the final loss. */
const FINAL_READINGS = 5;

/** One batch of the adding problem: x [T, B, 2] time-major, y [B]. */
function addingBatch(rng, T, B) {
  const x = new Float32Array(T * B * 2);
  const y = new Float32Array(B);
  for (let i = 0; i < x.length; i += 2) x[i] = rng();
  const half = Math.floor(T / 2);
  for (let b = 0; b < B; b++) {
    const marks = [Math.floor(rng() * half), half + Math.floor(rng() * (T - half))];
    for (const s of marks) {
      x[(s * B + b) * 2 + 1] = 1;
      y[b] += x[(s * B + b) * 2];
    }
  }
  return { x, y };
}

const plot = { readings: [], steps: 300 };

function niceStep(span, count) {
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
  return 10 * mag;
}

function drawPlot() {
  const canvas = $("loss-plot");
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (!w || !h) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);

  const css = getComputedStyle(document.documentElement);
  const accent = css.getPropertyValue("--accent").trim() || "#3457d5";
  const font = css.getPropertyValue("--sans").trim() || "sans-serif";
  const { readings, steps } = plot;
  const m = { left: 46, right: 14, top: 14, bottom: 28 };
  const pw = w - m.left - m.right;
  const ph = h - m.top - m.bottom;

  // Log-scale y axis spanning whole decades around the losses and the baseline.
  let lo = BASELINE;
  let hi = BASELINE;
  for (const r of readings) {
    if (r.loss > 0 && Number.isFinite(r.loss)) {
      lo = Math.min(lo, r.loss);
      hi = Math.max(hi, r.loss);
    }
  }
  let d0 = Math.floor(Math.log10(lo));
  let d1 = Math.ceil(Math.log10(hi));
  if (d1 - d0 < 2) d0 = d1 - 2;
  const ly0 = d0;
  const ly1 = d1;
  const xOf = (s) => m.left + (s / steps) * pw;
  const yOf = (v) => m.top + (1 - (Math.log10(v) - ly0) / (ly1 - ly0)) * ph;

  ctx.font = `11px ${font}`;
  ctx.lineWidth = 1;
  // Grid: decades, with 2 and 5 between them.
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let d = d0; d <= d1; d++) {
    for (const k of [1, 2, 5]) {
      const v = k * 10 ** d;
      if (Math.log10(v) > ly1 + 1e-9) continue;
      const y = Math.round(yOf(v)) + 0.5;
      ctx.strokeStyle = k === 1 ? "#e3e7ee" : "#f2f4f7";
      ctx.beginPath();
      ctx.moveTo(m.left, y);
      ctx.lineTo(m.left + pw, y);
      ctx.stroke();
      if (k === 1 || d1 - d0 <= 2) {
        ctx.fillStyle = k === 1 ? "#5d6677" : "#9aa2b1";
        ctx.fillText(fmtNum(v), m.left - 6, y);
      }
    }
  }
  // X axis ticks.
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  ctx.fillStyle = "#5d6677";
  const xs = niceStep(steps, 5);
  for (let s = 0; s <= steps + 1e-9; s += xs) {
    const x = Math.round(xOf(s)) + 0.5;
    ctx.strokeStyle = "#f2f4f7";
    ctx.beginPath();
    ctx.moveTo(x, m.top);
    ctx.lineTo(x, m.top + ph);
    ctx.stroke();
    ctx.fillText(String(s), x, m.top + ph + 6);
  }
  ctx.strokeStyle = "#c3cad6";
  ctx.beginPath();
  ctx.moveTo(m.left + 0.5, m.top);
  ctx.lineTo(m.left + 0.5, m.top + ph + 0.5);
  ctx.lineTo(m.left + pw, m.top + ph + 0.5);
  ctx.stroke();
  ctx.textAlign = "right";

  // The mean predictor: dashed.
  const by = yOf(BASELINE);
  ctx.save();
  ctx.strokeStyle = "#d9480f";
  ctx.setLineDash([6, 4]);
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  ctx.moveTo(m.left, by);
  ctx.lineTo(m.left + pw, by);
  ctx.stroke();
  ctx.restore();
  ctx.fillStyle = "#d9480f";
  ctx.textAlign = "right";
  ctx.textBaseline = "bottom";
  ctx.fillText(`mean predictor ${fmtNum(BASELINE)}`, m.left + pw - 4, by - 3);

  // The training loss.
  if (readings.length) {
    ctx.save();
    ctx.beginPath();
    ctx.rect(m.left, m.top, pw, ph);
    ctx.clip();
    ctx.strokeStyle = accent;
    ctx.lineWidth = 2;
    ctx.lineJoin = "round";
    ctx.beginPath();
    readings.forEach((r, i) => {
      const x = xOf(r.step);
      const y = yOf(Math.max(r.loss, 10 ** ly0));
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
    const last = readings[readings.length - 1];
    ctx.fillStyle = accent;
    ctx.beginPath();
    ctx.arc(xOf(last.step), yOf(Math.max(last.loss, 10 ** ly0)), 3.5, 0, 2 * Math.PI);
    ctx.fill();
    ctx.restore();
  }

  // Legend.
  ctx.textAlign = "left";
  ctx.textBaseline = "middle";
  ctx.fillStyle = accent;
  ctx.fillRect(m.left + 10, m.top + 9, 14, 2.5);
  ctx.fillStyle = "#1b2130";
  ctx.fillText("training loss (MSE, log scale)", m.left + 30, m.top + 10);
}

/** The verdict line; `final` is null before a result, `readings` the number averaged. */
function setVerdict(final, readings) {
  const v = $("train-verdict");
  const finalEl = $("train-final");
  const baselineEl = $("train-baseline");
  finalEl.textContent = final === null ? "–" : fmtNum(final);
  baselineEl.textContent = fmtNum(BASELINE);
  if (final === null) {
    v.className = "verdict";
    v.replaceChildren("Final loss ", finalEl, " vs. the mean predictor's ", baselineEl, ".");
    return;
  }
  const below = final < BASELINE;
  v.className = below ? "verdict good" : "verdict bad";
  let end = ": train for more steps.";
  if (final < 0.1 * BASELINE) end = ": the LSTM has learned to add.";
  else if (below) end = ": the LSTM has begun to use the marked values; more steps take it further.";
  v.replaceChildren(
    "Final loss ",
    finalEl,
    ` (mean of the last ${readings} readings) is ${below ? "" : "not "}below the mean predictor's `,
    baselineEl,
    end,
  );
}

async function runTraining(job) {
  const res = trainResult;
  res.start("Setting up…");
  let trainer = null;
  try {
    const T = intField("train-seq", 2, 1000);
    const hidden = intField("train-hidden", 1, 1024);
    const steps = intField("train-steps", 1, 100000);
    const lr = numberField("train-lr", 0, 1);
    const dev = await getDevice();

    plot.readings = [];
    plot.steps = steps;
    drawPlot();
    $("train-step").textContent = "0";
    $("train-loss").textContent = "–";
    $("train-rate").textContent = "–";
    $("train-heldout").textContent = "–";
    setVerdict(null, 0);

    const model = wasm.Model.lstm(2, hidden, 1, "last", 1);
    trainer = new wasm.Trainer(dev, model, "mse", "adam", lr);
    dispose(model);
    res.progress(`Training: LSTM(2 → ${hidden}) → Linear(1), T = ${T}, batch ${BATCH}, Adam lr ${lr}…`);

    const rng = mulberry32(1);
    const t0 = performance.now();
    let step = 0;
    while (step < steps && !job.stop) {
      const { x, y } = addingBatch(rng, T, BATCH);
      trainer.step(x, [T, BATCH, 2], y);
      step += 1;
      if (step === 1 || step % 10 === 0 || step === steps) {
        const loss = await trainer.loss();
        plot.readings.push({ step, loss });
        const elapsed = performance.now() - t0;
        $("train-step").textContent = String(step);
        $("train-loss").textContent = fmtNum(loss);
        $("train-rate").textContent = fmtRate((step / elapsed) * 1000);
        drawPlot();
        await yieldToBrowser();
      }
    }
    const elapsed = performance.now() - t0;
    if (!plot.readings.length || plot.readings[plot.readings.length - 1].step !== step) {
      plot.readings.push({ step, loss: await trainer.loss() });
      drawPlot();
    }

    const lastFew = plot.readings.slice(-FINAL_READINGS);
    const final = lastFew.reduce((s, r) => s + r.loss, 0) / lastFew.length;
    setVerdict(final, lastFew.length);

    // Held out: sequences the model has not seen.
    const evalB = 256;
    const test = addingBatch(mulberry32(99), T, evalB);
    const pred = await trainer.predict(test.x, [T, evalB, 2]);
    let mse = 0;
    for (let b = 0; b < evalB; b++) mse += (pred[b] - test.y[b]) ** 2;
    mse /= evalB;
    const example = (b) => {
      const vals = [];
      for (let s = 0; s < T; s++) if (test.x[(s * evalB + b) * 2 + 1] === 1) vals.push(test.x[(s * evalB + b) * 2]);
      return `${vals.map((v) => v.toFixed(2)).join(" + ")} = ${test.y[b].toFixed(2)} → ${pred[b].toFixed(2)}`;
    };
    $("train-heldout").textContent = `Held-out MSE on ${evalB} new sequences: ${fmtNum(mse)} · e.g. ${example(0)}`;

    const rate = fmtRate((step / elapsed) * 1000);
    const what = job.stop ? `Stopped after ${step} steps` : `Trained ${step} steps`;
    res.done(`${what} in ${fmtTime(elapsed)} (${rate} steps/s).`);
  } catch (e) {
    res.fail(e);
  } finally {
    dispose(trainer);
  }
}

// ------------------------------------------------------------------ start

let ready = false;

function refreshButtons() {
  if (!ready) return;
  const ckptButton = $("ckpt-run");
  if (ckptButton.textContent === "Run forward") ckptButton.disabled = !(ckpt.model && ckpt.input);
  for (const id of ["gen-run", "train-run"]) {
    const b = $(id);
    if (!b.classList.contains("stop")) b.disabled = false;
  }
}

async function main() {
  drawPlot();
  new ResizeObserver(() => drawPlot()).observe($("loss-plot"));
  wireDrop();
  $("ckpt-model").addEventListener("change", (e) => setCkptFile("model", e.target.files[0]));
  $("ckpt-in").addEventListener("change", (e) => setCkptFile("input", e.target.files[0]));
  wireRun($("ckpt-run"), "Run forward", false, runCheckpoint);
  wireRun($("gen-run"), "Generate", true, runGeneration);
  wireRun($("train-run"), "Train", true, runTraining);
  $("device-kind").addEventListener("change", () => getDevice().catch(() => {}));

  try {
    wasm = await import("../pkg/wgpu_lstm_web.js");
    await wasm.default();
  } catch (e) {
    setDeviceInfo("error", `Could not load the WebAssembly package (../pkg/wgpu_lstm_web.js): ${errorMessage(e)}. Build it with web/build.sh.`);
    console.error(e);
    return;
  }
  ready = true;
  refreshButtons();
  getDevice().catch(() => {});
}

main();
