//! The benchmark's report: the rows it measured, as a table (plain or
//! Markdown), as JSON in the schema of `tools/bench_pytorch.py`, and beside
//! another engine's rows.

use std::error::Error;
use std::time::Duration;

use wgpu_lstm::Precision;
use wgpu_lstm::gpu::{GpuContext, GpuMemory, KernelTimes, StepLaunch};

use crate::{Args, Shape};

/// One measured case, in the JSON schema `tools/bench_pytorch.py` writes.
pub(crate) struct Row {
    pub(crate) device: &'static str,
    pub(crate) mode: String,
    pub(crate) shape: Shape,
    /// Each timed call, to its finished result.
    pub(crate) times: Vec<Duration>,
    /// Each timed call, until it returned to the host (encoding and submit
    /// on the GPU, which does not wait).
    pub(crate) host_times: Vec<Duration>,
    pub(crate) flops: f64,
    pub(crate) max_diff: Option<f64>,
    pub(crate) dispatches: Option<u64>,
    pub(crate) submits: Option<u64>,
    /// Blocking waits for the GPU inside one call.
    pub(crate) host_waits: Option<u64>,
    /// GPU rows: what one forward step dispatch launches.
    pub(crate) launch: Option<StepLaunch>,
    /// Median GPU time per phase from timestamp queries, when the adapter has them.
    pub(crate) kernels: Option<KernelTimes>,
    /// The GPU's storage precision (f32 for CPU rows).
    pub(crate) precision: Precision,
    /// GPU rows: the allocated memory of weights and saved activations.
    pub(crate) memory: Option<GpuMemory>,
}

/// The median of `times`, in milliseconds.
fn median_ms(times: &[Duration]) -> f64 {
    let mut t: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

impl Row {
    fn median_ms(&self) -> f64 {
        median_ms(&self.times)
    }
    fn host_ms(&self) -> f64 {
        median_ms(&self.host_times)
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

/// One line per shape and mode, the CPU engine and the GPU side by side.
pub(crate) fn print_table(rows: &[Row], markdown: bool) {
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
        "GPU host ms",
        "dispatches",
        "submits",
        "waits",
        "step WGs",
        "W_hh B/step",
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
            c.push(gpu.map_or_else(dash, |g| format!("{:.3}", g.host_ms())));
            let count =
                |f: fn(&Row) -> Option<u64>| gpu.and_then(f).map_or_else(dash, |d| d.to_string());
            c.push(count(|g| g.dispatches));
            c.push(count(|g| g.submits));
            c.push(count(|g| g.host_waits));
            c.push(count(|g| g.launch.map(|l| l.workgroups)));
            c.push(count(|g| g.launch.map(|l| l.w_hh_bytes)));
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
         after one SGD step with lr 1 (a gradient difference). GPU host ms: the median time \
         until the call returned (encoding and submit; GPU ms waits for the result). \
         Dispatches, submits and host waits per call; step WGs: workgroups in one step \
         dispatch; W_hh B/step: bytes of W_hh one step reads, from its launch."
    );
}

pub(crate) fn json(
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
                "cell": args.cell.name(),
                "activation": args.activation.name(),
                "layer_norm": args.layer_norm,
                "dropout": args.dropout,
                "input_dropout": args.input_dropout,
                "recurrent_dropout": args.recurrent_dropout,
                "threads": threads,
                "iters": iters,
                "median_ms": r.median_ms(), "min_ms": r.min_ms(), "max_ms": r.max_ms(),
                "gflops": r.gflops(),
                "max_abs_diff": r.max_diff,
                "host_ms": (r.device == "gpu").then(|| r.host_ms()),
                "dispatches": r.dispatches,
                "submits": r.submits,
                "host_waits": r.host_waits,
                "step_workgroups": r.launch.map(|l| l.workgroups),
                "w_hh_bytes_per_step": r.launch.map(|l| l.w_hh_bytes),
                "kernel_ms": r.kernels.map(|k| serde_json::json!({
                    "input_projection": k.projection_ms,
                    "steps": k.steps_ms,
                    "backward_steps": k.backward_steps_ms,
                    "backward_gemms": k.backward_gemms_ms,
                })),
            })
        })
        .collect();
    let tuning: Vec<serde_json::Value> = ctx.map_or_else(Vec::new, |c| {
        c.tuning()
            .iter()
            .map(|r| {
                serde_json::json!({
                    "family": r.family,
                    "class": r.class,
                    "chosen": r.chosen,
                    "source": format!("{:?}", r.source).to_lowercase(),
                    "timer": r.timer,
                    "elapsed_ms": r.elapsed_ms,
                    "times_ms": r.times_ms.iter().map(|(n, ms)| serde_json::json!({"config": n, "ms": ms})).collect::<Vec<_>>(),
                    "excluded": r.excluded.iter().map(|(n, why)| serde_json::json!({"config": n, "why": why})).collect::<Vec<_>>(),
                })
            })
            .collect()
    });
    let doc = serde_json::json!({
        "meta": { "cpu": cpu, "threads": threads, "tuning": tuning },
        "rows": rows,
    });
    serde_json::to_string_pretty(&doc).expect("JSON values serialise")
}

/// Prints ours ÷ theirs (median time) for every row of `path` that matches one
/// of ours: same mode, shape, layers and direction; CPU against CPU, our GPU
/// against their CUDA (once per TF32 setting).
pub(crate) fn compare(
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
pub(crate) fn median_times(samples: &[KernelTimes]) -> KernelTimes {
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

/// The autotuner's choices on `ctx` during the run: per kernel family and
/// shape class, the configuration chosen, and the candidates' times.
pub(crate) fn print_tuning(ctx: &GpuContext) {
    let reports = ctx.tuning();
    if reports.is_empty() {
        return;
    }
    println!("tuner (WGPU_LSTM_TUNE {:?}):", ctx.tune_mode());
    for r in reports {
        println!("  {r}");
    }
}
