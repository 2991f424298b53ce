//! `lstm-bench`: times the CPU reference and the GPU engine on the same
//! shapes, weights and inputs, and prints each speed figure beside its
//! correctness figure (the largest CPU/GPU difference) and the GPU's work
//! counts (dispatches and submits per call).
//!
//! Modes:
//! - `forward`: inference, `output, (h_n, c_n) = lstm(x)`.
//! - `train`: one training step: forward in training mode, a per-step
//!   `Linear(D·H → 1)` head, MSE against zeros, backward through time and an
//!   SGD update of every parameter.
//!
//! FLOPs are counted as 8·H·(I_l + H)·B·T per layer·direction for the forward
//! pass (the four gates' input and recurrent products, 2 FLOPs per
//! multiply-add), with I_l = I for the first layer and D·H after; a training
//! step is counted as 3× the forward (the backward pass does two products of
//! the forward's size).
//!
//! Correctness figures: for `forward`, the largest |GPU − CPU| over the
//! output sequence; for `train`, over the loss and every parameter after one
//! SGD step with learning rate 1 from identical weights, so that a parameter
//! difference is a gradient difference.
//!
//! On a software adapter (lavapipe, llvmpipe, WARP), the default grid keeps
//! the two smaller standard shapes: the larger ones take minutes per call
//! there. `--shapes` runs any grid on any adapter.
//!
//! `--precision f16` measures the GPU in f16 storage (`Precision::F16`) too,
//! one line beside each f32 line, and reports for both the GPU memory of the
//! weights and of the activations saved for the backward pass, from the
//! allocated buffer sizes.

use std::error::Error;
use std::time::{Duration, Instant};

use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgpu_lstm::gpu::{GpuContext, GpuMemory, GpuTensor, InitialState, KernelTimes};
use wgpu_lstm::{
    Batch, Device, HeadKind, InitOptions, Inputs, LossKind, Lstm, LstmConfig, LstmInput,
    LstmWeights, Model, OptimizerKind, Precision, Targets, Tensor, TrainConfig, Trainer,
};

const STANDARD: &str = "1,100,64,128;16,100,128,256;64,100,256,512;64,50,512,1024";
const QUICK: &str = "1,8,4,8;4,16,16,32";
/// The default grid on a software adapter: the two smaller standard shapes.
const SOFTWARE: &str = "1,100,64,128;16,100,128,256";

/// CPU and GPU LSTM benchmark, side by side.
#[derive(Parser)]
#[command(name = "lstm-bench", version)]
struct Args {
    /// Shapes as "B,T,I,H;B,T,I,H" (batch, steps, input size, hidden size).
    /// Default: the standard shapes "1,100,64,128;16,100,128,256;64,100,256,512;64,50,512,1024",
    /// or only the first two on a software adapter.
    #[arg(long)]
    shapes: Option<String>,
    #[arg(long, default_value_t = 1)]
    layers: usize,
    #[arg(long)]
    bidirectional: bool,
    /// cpu, gpu or both.
    #[arg(long, default_value = "both")]
    device: String,
    /// Comma-separated: forward, train.
    #[arg(long, default_value = "forward,train")]
    modes: String,
    /// Timed iterations per case (after warm-up).
    #[arg(long, default_value_t = 10)]
    iters: usize,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Tiny shapes and few iterations, for CI.
    #[arg(long)]
    quick: bool,
    /// Also write the rows as JSON (the schema of tools/bench_pytorch.py).
    #[arg(long)]
    json: Option<String>,
    /// Print the table as Markdown.
    #[arg(long)]
    markdown: bool,
    /// Rows from another engine (e.g. `tools/bench_pytorch.py --json`) to put
    /// beside ours: prints our time over theirs per shape and mode.
    #[arg(long)]
    compare: Option<String>,
    /// GPU storage precision: f32, or f16 to measure f16 beside f32.
    #[arg(long, default_value = "f32")]
    precision: Precision,
}

/// One measured case, in the JSON schema `tools/bench_pytorch.py` writes.
struct Row {
    device: &'static str,
    mode: String,
    shape: Shape,
    times: Vec<Duration>,
    flops: f64,
    max_diff: Option<f64>,
    dispatches: Option<u64>,
    submits: Option<u64>,
    /// Median GPU time per phase from timestamp queries, when the adapter has them.
    kernels: Option<KernelTimes>,
    /// The GPU's storage precision (f32 for CPU rows).
    precision: Precision,
    /// GPU rows: the allocated memory of weights and saved activations.
    memory: Option<GpuMemory>,
}

impl Row {
    fn median_ms(&self) -> f64 {
        let mut t: Vec<f64> = self.times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    }
    fn min_ms(&self) -> f64 {
        self.times
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .fold(f64::INFINITY, f64::min)
    }
    fn max_ms(&self) -> f64 {
        self.times
            .iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .fold(0.0, f64::max)
    }
    fn gflops(&self) -> f64 {
        self.flops / (self.median_ms() * 1e6)
    }
}

/// (B, T, I, H)
type Shape = (usize, usize, usize, usize);

fn parse_shapes(s: &str) -> Result<Vec<Shape>, Box<dyn Error>> {
    s.split(';')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let v: Vec<usize> = p
                .split(',')
                .map(|x| x.trim().parse())
                .collect::<Result<_, _>>()?;
            match v[..] {
                [b, t, i, h] if b > 0 && t > 0 && i > 0 && h > 0 => Ok((b, t, i, h)),
                _ => Err(format!("shape {p:?} is not B,T,I,H with every size ≥ 1").into()),
            }
        })
        .collect()
}

fn forward_flops(cfg: &LstmConfig, b: usize, t: usize) -> f64 {
    let h = cfg.hidden_size as f64;
    (0..cfg.num_layers)
        .map(|l| {
            cfg.num_directions() as f64
                * 8.0
                * h
                * (cfg.layer_input_size(l) as f64 + h)
                * (b * t) as f64
        })
        .sum()
}

/// Runs `f` `warmup` times untimed, then `iters` times timed.
fn time(
    warmup: usize,
    iters: usize,
    mut f: impl FnMut() -> Result<(), Box<dyn Error>>,
) -> Result<Vec<Duration>, Box<dyn Error>> {
    for _ in 0..warmup {
        f()?;
    }
    (0..iters)
        .map(|_| {
            let start = Instant::now();
            f()?;
            Ok(start.elapsed())
        })
        .collect()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let (iters, warmup) = if args.quick {
        (3, 1)
    } else {
        (args.iters.max(1), args.warmup)
    };
    let modes: Vec<String> = args
        .modes
        .split(',')
        .map(|m| m.trim().to_string())
        .collect();
    if let Some(m) = modes.iter().find(|m| *m != "forward" && *m != "train") {
        return Err(format!("unknown mode {m:?}; use forward, train").into());
    }
    let (use_cpu, use_gpu) = match args.device.as_str() {
        "cpu" => (true, false),
        "gpu" => (false, true),
        "both" => (true, true),
        d => return Err(format!("unknown device {d:?}; use cpu, gpu or both").into()),
    };
    // The CPU engine, then the GPU in each precision asked for.
    let gpu = if use_gpu { Some(Device::gpu()?) } else { None };
    let ctx = gpu.as_ref().and_then(Device::gpu_context).cloned();

    let precisions = match args.precision {
        Precision::F32 => vec![Precision::F32],
        Precision::F16 => vec![Precision::F32, Precision::F16],
    };
    let software = ctx
        .as_ref()
        .is_some_and(|c| c.adapter_info().device_type == wgpu::DeviceType::Cpu);
    let mut devices = Vec::new();
    if use_cpu {
        devices.push(Device::cpu());
    }
    for &p in gpu.iter().flat_map(|_| &precisions) {
        devices.push(gpu.clone().expect("a GPU").with_precision(p)?);
    }
    let shapes = parse_shapes(match (&args.shapes, args.quick) {
        (_, true) => QUICK,
        (Some(s), false) => s,
        (None, false) if software => SOFTWARE,
        (None, false) => STANDARD,
    })?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "lstm-bench: layers {}, bidirectional {}, GPU {precisions:?}, {iters} timed iterations after {warmup} warm-up",
        args.layers, args.bidirectional
    );
    println!("CPU: {} ({threads} threads)", cpu_model());
    if let Some(ctx) = &ctx {
        let i = ctx.adapter_info();
        println!(
            "GPU: {} ({:?}, {:?}, driver {} {})",
            i.name, i.backend, i.device_type, i.driver, i.driver_info
        );
        if software && args.shapes.is_none() && !args.quick {
            println!(
                "software adapter: default grid {SOFTWARE}; the larger standard shapes take \
                 minutes per call here (run them with --shapes)"
            );
        }
    }

    let cases = shapes.len() * modes.len() * devices.len();
    let bar = indicatif::ProgressBar::new(cases as u64);
    let mut rows = Vec::new();
    for &(b, t, i, h) in &shapes {
        let cfg = LstmConfig::new(i, h)
            .num_layers(args.layers)
            .bidirectional(args.bidirectional);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let x: Vec<f32> = (0..t * b * i)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let input = Tensor::new([t, b, i], x.clone())?;
        let weights = LstmWeights::<f32>::init(&cfg, 1, InitOptions::default())?;
        let fwd = forward_flops(&cfg, b, t);
        for mode in &modes {
            bar.set_message(format!("{mode} B={b} T={t} I={i} H={h}"));
            // The CPU engine's result, which the GPU rows are compared with.
            let mut cpu_ref: Option<Vec<f32>> = None;
            for device in &devices {
                let counters = || device.gpu_context().map(GpuContext::counters);
                let before;
                let after;
                let kernels;
                let memory;
                let (times, result) = if mode == "forward" {
                    let mut lstm = Lstm::new(device, &weights)?;
                    let x = LstmInput::new(&input);
                    let out = lstm.forward(&x)?.output.into_data();
                    match lstm.gpu_mut() {
                        // Timed on the GPU-resident call: input already
                        // uploaded, nothing read back.
                        Some(gpu) => {
                            let ctx = gpu.context().clone();
                            let profiling = gpu.enable_profiling()?;
                            let gx = GpuTensor::upload(&ctx, "bench input", &input)?;
                            gpu.forward(&gx, InitialState::Zeros, None)?;
                            before = counters();
                            gpu.forward(&gx, InitialState::Zeros, None)?;
                            after = counters();
                            let mut samples = Vec::new();
                            let times = time(warmup, iters, || {
                                gpu.forward(&gx, InitialState::Zeros, None)?;
                                samples.extend(gpu.kernel_times());
                                Ok(())
                            })?;
                            kernels = profiling.then(|| {
                                median_times(&samples[samples.len().saturating_sub(iters)..])
                            });
                            memory = Some(gpu.memory());
                            (times, out)
                        }
                        None => {
                            (before, after, kernels, memory) = (None, None, None, None);
                            let times = time(warmup, iters, || {
                                lstm.forward(&x)?;
                                Ok(())
                            })?;
                            (times, out)
                        }
                    }
                } else {
                    let (model, config, targets) = train_setup(&weights, t, b)?;
                    let batch = features_batch(&x, &targets, t, b);
                    let first = {
                        let mut reference =
                            Trainer::new(device, model.clone(), reference_config())?;
                        let loss = reference.step_with_loss(&batch)?;
                        loss_and_params(loss, &reference.model()?)
                    };
                    let mut trainer = Trainer::new(device, model, config)?;
                    let profiling = match trainer.gpu_mut() {
                        Some(gpu) => gpu.enable_profiling()?,
                        None => false,
                    };
                    trainer.step(&batch)?;
                    before = counters();
                    trainer.step(&batch)?;
                    after = counters();
                    let mut samples = Vec::new();
                    let times = time(warmup, iters, || {
                        trainer.step(&batch)?;
                        samples.extend(trainer.gpu_mut().and_then(|g| g.kernel_times()));
                        Ok(())
                    })?;
                    kernels = profiling
                        .then(|| median_times(&samples[samples.len().saturating_sub(iters)..]));
                    memory = trainer.gpu_mut().map(|g| g.memory());
                    (times, first)
                };
                let flops = if mode == "forward" { fwd } else { 3.0 * fwd };
                let work = before.zip(after).map(|(b, a)| a - b);
                let max_diff = if device.is_gpu() {
                    if cpu_ref.as_ref().is_some_and(|r| r.len() != result.len()) {
                        return Err("the CPU and GPU results differ in length".into());
                    }
                    cpu_ref.as_ref().map(|r| {
                        r.iter()
                            .zip(&result)
                            .map(|(a, b)| (a - b).abs() as f64)
                            .fold(0.0, f64::max)
                    })
                } else {
                    cpu_ref = Some(result);
                    None
                };
                rows.push(Row {
                    device: if device.is_gpu() { "gpu" } else { "cpu" },
                    mode: mode.clone(),
                    shape: (b, t, i, h),
                    times,
                    flops,
                    max_diff,
                    dispatches: work.map(|w| w.dispatches),
                    submits: work.map(|w| w.submits),
                    kernels,
                    precision: device.precision(),
                    memory,
                });
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    print_table(&rows, args.markdown);
    if let Some(path) = &args.compare {
        compare(&rows, path, args.layers, args.bidirectional)?;
    }
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            json(&rows, &cpu_model(), threads, ctx.as_ref(), &args, iters),
        )?;
        println!("wrote {path}");
    }
    Ok(())
}

/// A time-major batch of features and target values.
fn features_batch<'a>(x: &'a [f32], targets: &'a [f32], t: usize, b: usize) -> Batch<'a> {
    Batch {
        seq_len: t,
        batch: b,
        inputs: Inputs::Features(x),
        targets: Targets::Values(targets),
        lengths: None,
    }
}

/// The model, configuration and targets of the training mode.
type TrainSetup = (Model<f32>, TrainConfig, Vec<f32>);

/// The training-mode model: the benchmarked LSTM, a per-step Linear(D·H → 1)
/// head, MSE against zeros and SGD.
fn train_setup(
    weights: &LstmWeights<f32>,
    t: usize,
    b: usize,
) -> Result<TrainSetup, Box<dyn Error>> {
    let mut model = Model::<f32>::new(None, &weights.config, 1, HeadKind::PerStep, 1)?;
    model.lstm = weights.clone();
    Ok((
        model,
        TrainConfig::new(LossKind::Mse, OptimizerKind::sgd(1e-4)),
        vec![0.0; t * b],
    ))
}

/// The reference step's configuration: SGD with learning rate 1, so that the
/// parameters after one step differ between CPU and GPU exactly as their
/// gradients do.
fn reference_config() -> TrainConfig {
    TrainConfig::new(LossKind::Mse, OptimizerKind::sgd(1.0))
}

/// The loss followed by every parameter of `model`, flattened.
fn loss_and_params(loss: f32, model: &Model<f32>) -> Vec<f32> {
    let mut v = vec![loss];
    for (_, _, p) in model.named_params() {
        v.extend_from_slice(p);
    }
    v
}

/// One line per shape and mode, the CPU path and the GPU engine side by side.
fn print_table(rows: &[Row], markdown: bool) {
    let header = [
        "mode",
        "B",
        "T",
        "I",
        "H",
        "CPU ms",
        "CPU min–max",
        "CPU GFLOP/s",
        "GPU ms",
        "GPU min–max",
        "GPU GFLOP/s",
        "GPU÷CPU",
        "max |GPU−CPU|",
        "dispatches",
        "submits",
        "GPU ms: proj",
        "steps",
        "bwd steps",
        "bwd GEMMs",
    ];
    // With f16 rows: the precision and the memory columns.
    let with_f16 = rows.iter().any(|r| r.precision == Precision::F16);
    let extra = ["GPU prec", "weights B", "saved act. B"];
    let header: Vec<&str> = header
        .into_iter()
        .chain(extra.into_iter().filter(|_| with_f16))
        .collect();
    // One line per GPU precision; the CPU columns repeat on the f16 line.
    let mut keys: Vec<(Shape, &str, Precision)> = Vec::new();
    for r in rows {
        if !keys.contains(&(r.shape, r.mode.as_str(), r.precision)) {
            keys.push((r.shape, r.mode.as_str(), r.precision));
        }
    }
    let dash = || "-".to_string();
    let cells: Vec<Vec<String>> = keys
        .iter()
        .map(|&(shape, mode, precision)| {
            let find = |device| {
                rows.iter().find(|r| {
                    r.device == device
                        && r.shape == shape
                        && r.mode == mode
                        && (device == "cpu" || r.precision == precision)
                })
            };
            let (cpu, gpu) = (find("cpu"), find("gpu"));
            let timing = |r: Option<&Row>| match r {
                Some(r) => [
                    format!("{:.3}", r.median_ms()),
                    format!("{:.3}–{:.3}", r.min_ms(), r.max_ms()),
                    format!("{:.1}", r.gflops()),
                ],
                None => [dash(), dash(), dash()],
            };
            // The backward phases have no time in a forward call.
            let kernel = |backward: bool, f: fn(&KernelTimes) -> f64| {
                gpu.and_then(|g| g.kernels)
                    .filter(|_| !(backward && mode == "forward"))
                    .map_or_else(dash, |k| format!("{:.3}", f(&k)))
            };
            let (b, t, i, h) = shape;
            let mut c = vec![
                mode.to_string(),
                b.to_string(),
                t.to_string(),
                i.to_string(),
                h.to_string(),
            ];
            c.extend(timing(cpu));
            c.extend(timing(gpu));
            c.push(match (cpu, gpu) {
                (Some(c), Some(g)) => format!("{:.2}", g.median_ms() / c.median_ms()),
                _ => dash(),
            });
            c.push(
                gpu.and_then(|g| g.max_diff)
                    .map_or_else(dash, |d| format!("{d:.1e}")),
            );
            c.push(
                gpu.and_then(|g| g.dispatches)
                    .map_or_else(dash, |d| d.to_string()),
            );
            c.push(
                gpu.and_then(|g| g.submits)
                    .map_or_else(dash, |d| d.to_string()),
            );
            c.push(kernel(false, |k| k.projection_ms));
            c.push(kernel(false, |k| k.steps_ms));
            c.push(kernel(true, |k| k.backward_steps_ms));
            c.push(kernel(true, |k| k.backward_gemms_ms));
            if with_f16 {
                c.push(precision.to_string());
                let memory = gpu.and_then(|g| g.memory);
                c.push(memory.map_or_else(dash, |m| m.weights.to_string()));
                c.push(
                    memory
                        .filter(|m| m.saved_activations > 0)
                        .map_or_else(dash, |m| m.saved_activations.to_string()),
                );
            }
            c
        })
        .collect();
    if markdown {
        // A `|` inside a cell (max |GPU−CPU|) would split it.
        let escaped: Vec<String> = header.iter().map(|h| h.replace('|', "\\|")).collect();
        println!("| {} |", escaped.join(" | "));
        println!("|{}", "---|".repeat(header.len()));
        for c in &cells {
            println!("| {} |", c.join(" | "));
        }
        return;
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|k| {
            cells
                .iter()
                .map(|c| c[k].chars().count())
                .chain([header[k].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |c: &[String]| {
        c.iter()
            .zip(&widths)
            .map(|(s, w)| format!("{s:>w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!(
        "{}",
        line(&header.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    );
    for c in &cells {
        println!("{}", line(c));
    }
    println!(
        "max |GPU−CPU|: forward over the output; train over the loss and every parameter \
         after one SGD step with lr 1 (a gradient difference). Dispatches and submits per call."
    );
}

fn json(
    rows: &[Row],
    cpu: &str,
    threads: usize,
    ctx: Option<&GpuContext>,
    args: &Args,
    iters: usize,
) -> String {
    let adapter = ctx
        .map(|c| c.adapter_info().name.clone())
        .unwrap_or_default();
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let (b, t, i, h) = r.shape;
            serde_json::json!({
                "engine": "wgpu-lstm",
                "device": r.device,
                "adapter": if r.device == "cpu" { cpu } else { &adapter },
                "mode": r.mode,
                "precision": r.precision.to_string(),
                "weights_bytes": r.memory.map(|m| m.weights),
                "master_weights_bytes": r.memory.map(|m| m.master_weights),
                "saved_activation_bytes": r.memory.map(|m| m.saved_activations),
                "tf32": null,
                "batch": b, "seq_len": t, "input_size": i, "hidden_size": h,
                "layers": args.layers,
                "bidirectional": args.bidirectional,
                "threads": threads,
                "iters": iters,
                "median_ms": r.median_ms(), "min_ms": r.min_ms(), "max_ms": r.max_ms(),
                "gflops": r.gflops(),
                "max_abs_diff": r.max_diff,
                "dispatches": r.dispatches,
                "submits": r.submits,
                "kernel_ms": r.kernels.map(|k| serde_json::json!({
                    "input_projection": k.projection_ms,
                    "steps": k.steps_ms,
                    "backward_steps": k.backward_steps_ms,
                    "backward_gemms": k.backward_gemms_ms,
                })),
            })
        })
        .collect();
    let doc = serde_json::json!({ "meta": { "cpu": cpu, "threads": threads }, "rows": rows });
    serde_json::to_string_pretty(&doc).expect("JSON values serialise")
}

/// Prints ours ÷ theirs (median time) for every row of `path` that matches one
/// of ours: same mode, shape, layers and direction; CPU against CPU, our GPU
/// against their CUDA (once per TF32 setting).
fn compare(
    rows: &[Row],
    path: &str,
    layers: usize,
    bidirectional: bool,
) -> Result<(), Box<dyn Error>> {
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let theirs = doc["rows"]
        .as_array()
        .ok_or("the file has no \"rows\" array")?;
    println!("\ncompared with {path} (ours ÷ theirs, median time; below 1 means we are faster):");
    println!(
        "{:>7} {:>7} {:>22} {:>12} {:>10} {:>10} {:>8}",
        "ours", "theirs", "shape B,T,I,H", "mode", "ours ms", "theirs ms", "ratio"
    );
    for r in rows {
        let (b, t, i, h) = r.shape;
        for o in theirs {
            let same = o["mode"] == r.mode.as_str()
                && o["batch"] == b
                && o["seq_len"] == t
                && o["input_size"] == i
                && o["hidden_size"] == h
                && o["layers"] == layers
                && o["bidirectional"] == bidirectional
                && o["precision"]
                    .as_str()
                    .is_none_or(|p| p == r.precision.to_string())
                && match (r.device, o["device"].as_str()) {
                    ("cpu", Some("cpu")) => true,
                    ("gpu", Some(d)) => d != "cpu",
                    _ => false,
                };
            let Some(their_ms) = o["median_ms"].as_f64().filter(|_| same) else {
                continue;
            };
            let label = match o["tf32"].as_bool() {
                Some(true) => format!("{}+tf32", o["device"].as_str().unwrap_or("?")),
                _ => o["device"].as_str().unwrap_or("?").to_string(),
            };
            println!(
                "{:>7} {:>7} {:>22} {:>12} {:>10.3} {:>10.3} {:>8.2}",
                r.device,
                label,
                format!("{b},{t},{i},{h}"),
                r.mode,
                r.median_ms(),
                their_ms,
                r.median_ms() / their_ms
            );
        }
    }
    Ok(())
}

/// Median of each phase over `samples` (the timed iterations).
fn median_times(samples: &[KernelTimes]) -> KernelTimes {
    let med = |f: fn(&KernelTimes) -> f64| {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    KernelTimes {
        projection_ms: med(|k| k.projection_ms),
        steps_ms: med(|k| k.steps_ms),
        backward_steps_ms: med(|k| k.backward_steps_ms),
        backward_gemms_ms: med(|k| k.backward_gemms_ms),
    }
}
