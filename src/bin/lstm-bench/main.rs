//! `lstm-bench`: times the CPU engine and the GPU engine on the same
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
//! FLOPs are counted as 2·G·H·(I_l + H)·B·T per layer·direction for the
//! forward pass (the G gates' input and recurrent products, 2 FLOPs per
//! multiply-add; G = 4 for an LSTM, 3 for a GRU), with I_l = I for the first layer and D·H after; a training
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

mod gemm_bench;
mod report;

use std::error::Error;
use std::time::{Duration, Instant};

use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use report::{Row, compare, json, median_times, print_table};
use wgpu_lstm::gpu::{GpuContext, GpuTensor, InitialState};
use wgpu_lstm::{
    Activation, Batch, Cell, Device, HeadKind, InitOptions, Inputs, LossKind, Lstm, LstmConfig,
    LstmInput, LstmWeights, Model, OptimizerKind, Precision, Targets, Tensor, TrainConfig, Trainer,
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
    /// The recurrent cell: lstm (`nn.LSTM`) or gru (`nn.GRU`).
    #[arg(long, default_value = "lstm", value_parser = parse_cell)]
    cell: Cell,
    /// The cell activation (Keras' `activation`): tanh or relu.
    #[arg(long, default_value = "tanh", value_parser = parse_activation)]
    activation: Activation,
    /// A layer-normalised LSTM (`haste`'s LayerNormLSTM; f32 on the GPU).
    #[arg(long)]
    layer_norm: bool,
    /// Inter-layer dropout (`nn.LSTM`'s `dropout`), in training.
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    /// Input dropout (Keras' `dropout`): one mask per sequence, in training.
    #[arg(long, default_value_t = 0.0)]
    input_dropout: f64,
    /// Recurrent dropout (Keras' `recurrent_dropout`): one mask per
    /// sequence, in training.
    #[arg(long, default_value_t = 0.0)]
    recurrent_dropout: f64,
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
    /// Time the GEMM kernel alone instead, in every tile, beside the CPU's
    /// `gemm` crate: products as "1024;512x256x1600:TN" (N for N³, or
    /// MxNxK; layout NT, the input projection's, unless ":NN" (dX) or ":TN"
    /// (weight gradients) follows), in GFLOP/s.
    #[arg(long, value_name = "SIZES")]
    gemm: Option<String>,
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

/// (B, T, I, H)
pub(crate) type Shape = (usize, usize, usize, usize);

fn parse_cell(s: &str) -> Result<Cell, String> {
    Cell::from_name(s).map_err(|e| e.to_string())
}

fn parse_activation(s: &str) -> Result<Activation, String> {
    Activation::from_name(s).map_err(|e| e.to_string())
}

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
                * 2.0
                * cfg.gates() as f64
                * h
                * (cfg.layer_input_size(l) as f64 + h)
                * (b * t) as f64
        })
        .sum()
}

/// Calls made with timestamp queries on, after the timed ones, for the
/// per-phase GPU times.
const PROFILED_CALLS: usize = 3;

/// A call's time to its result, and the part of it the host spent before
/// the call returned (encoding and submitting, on the GPU).
struct Timing {
    total: Vec<Duration>,
    host: Vec<Duration>,
}

/// Runs `f` `warmup` times untimed, then `iters` times timed, each ending
/// with `sync` (a wait for the GPU, which `f` does not do; nothing on the
/// CPU), so every time covers the work itself.
fn time(
    warmup: usize,
    iters: usize,
    mut f: impl FnMut() -> Result<(), Box<dyn Error>>,
    sync: impl Fn() -> Result<(), Box<dyn Error>>,
) -> Result<Timing, Box<dyn Error>> {
    for _ in 0..warmup {
        f()?;
    }
    sync()?;
    let mut timing = Timing {
        total: Vec::new(),
        host: Vec::new(),
    };
    for _ in 0..iters {
        let start = Instant::now();
        f()?;
        timing.host.push(start.elapsed());
        sync()?;
        timing.total.push(start.elapsed());
    }
    Ok(timing)
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
    if let Some(sizes) = &args.gemm {
        return gemm_bench::run(ctx.as_ref(), &gemm_bench::parse_sizes(sizes)?, iters);
    }

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
    println!(
        "cell {}, activation {}, layer_norm {}, dropout {}, input_dropout {}, recurrent_dropout {}",
        args.cell,
        args.activation,
        args.layer_norm,
        args.dropout,
        args.input_dropout,
        args.recurrent_dropout
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
            .bidirectional(args.bidirectional)
            .cell(args.cell)
            .activation(args.activation)
            .layer_norm(args.layer_norm)
            .dropout(args.dropout)
            .input_dropout(args.input_dropout)
            .recurrent_dropout(args.recurrent_dropout);
        cfg.validate()?;
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
                let sync = || -> Result<(), Box<dyn Error>> {
                    match device.gpu_context() {
                        Some(ctx) => Ok(ctx.synchronize()?),
                        None => Ok(()),
                    }
                };
                let before;
                let after;
                let kernels;
                let memory;
                let launch;
                let (times, result) = if mode == "forward" {
                    let mut lstm = Lstm::new(device, &weights)?;
                    let x = LstmInput::new(&input);
                    let out = lstm.forward(&x)?.output.into_data();
                    match lstm.gpu_mut() {
                        // Timed on the GPU-resident call: input already
                        // uploaded, nothing read back.
                        Some(gpu) => {
                            let ctx = gpu.context().clone();
                            let gx = GpuTensor::upload(&ctx, "bench input", &input)?;
                            gpu.forward(&gx, InitialState::Zeros, None)?;
                            before = counters();
                            gpu.forward(&gx, InitialState::Zeros, None)?;
                            after = counters();
                            let times = time(
                                warmup,
                                iters,
                                || Ok(gpu.forward(&gx, InitialState::Zeros, None).map(|_| ())?),
                                sync,
                            )?;
                            // Kernel times from separate profiled calls: reading
                            // timestamps back waits for the GPU inside the call.
                            kernels = if gpu.enable_profiling()? {
                                let mut samples = Vec::new();
                                for _ in 0..PROFILED_CALLS {
                                    gpu.forward(&gx, InitialState::Zeros, None)?;
                                    samples.extend(gpu.kernel_times());
                                }
                                Some(median_times(&samples))
                            } else {
                                None
                            };
                            memory = Some(gpu.memory());
                            launch = Some(gpu.step_launch(b));
                            (times, out)
                        }
                        None => {
                            (before, after, kernels, memory, launch) =
                                (None, None, None, None, None);
                            let times = time(
                                warmup,
                                iters,
                                || {
                                    lstm.forward(&x)?;
                                    Ok(())
                                },
                                sync,
                            )?;
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
                    trainer.step(&batch)?;
                    before = counters();
                    trainer.step(&batch)?;
                    after = counters();
                    let times = time(warmup, iters, || Ok(trainer.step(&batch)?), sync)?;
                    kernels = match trainer.gpu_mut() {
                        Some(gpu) => {
                            let mut samples = Vec::new();
                            if gpu.enable_profiling()? {
                                for _ in 0..PROFILED_CALLS {
                                    gpu.step(&batch)?;
                                    samples.extend(gpu.kernel_times());
                                }
                            }
                            (!samples.is_empty()).then(|| median_times(&samples))
                        }
                        None => None,
                    };
                    memory = trainer.gpu_mut().map(|g| g.memory());
                    launch = trainer.gpu_mut().map(|g| g.lstm().step_launch(b));
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
                    times: times.total,
                    host_times: times.host,
                    flops,
                    max_diff,
                    dispatches: work.map(|w| w.dispatches),
                    submits: work.map(|w| w.submits),
                    host_waits: work.map(|w| w.host_waits),
                    launch,
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
    if let Some(ctx) = &ctx {
        report::print_tuning(ctx);
    }
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
