//! Tuning the recurrent step kernels: which [`StepConfig`] splits a step's
//! work fastest on this adapter, for one layer width and batch-rows class.
//! The backward step kernel follows the choice (its tile has the same
//! invocations), and both are checked.

use super::{Candidate, TuneReport, select};
use crate::config::LstmConfig;
use crate::error::Result;
use crate::gpu::kernels::StepConfig;
use crate::gpu::{GpuContext, GpuLstm, GpuTensor, InitialState, Precision};
use crate::input::LstmInput;
use crate::reference::{self, OutputGrads};
use crate::tensor::Tensor;
use crate::weights::{InitOptions, LstmWeights};

/// The family's name in reports and the cache.
pub(crate) const FAMILY: &str = "lstm step";

/// Steps of the timed forward.
const TIMED_STEPS: usize = 16;
/// Timed repetitions (after one warm-up); the median counts.
const REPEATS: usize = 3;

/// The shape class a step configuration is chosen for: the storage
/// precision, the widths (H and H_out set the tile's vector loads and the
/// reduction length) and the batch rows per workgroup (1, 2, 4, 8 or 16).
pub(crate) fn class(precision: Precision, hidden: usize, h_out: usize, batch: usize) -> String {
    let rows = (batch.max(1) as u32).next_power_of_two().min(16);
    let p = match precision {
        Precision::F32 => "f32",
        Precision::F16 => "f16",
    };
    format!("{p} H={hidden} H_out={h_out} rows={rows}")
}

pub(crate) fn name(c: StepConfig) -> String {
    format!("{}x{}", c.lanes, c.units)
}

pub(crate) fn parse(s: &str) -> Option<StepConfig> {
    let (l, u) = s.split_once('x')?;
    Some(StepConfig {
        lanes: l.parse().ok()?,
        units: u.parse().ok()?,
    })
}

/// The candidates this device can launch.
fn candidates(ctx: &GpuContext) -> Vec<Candidate<StepConfig>> {
    let max = ctx.limits().max_compute_invocations_per_workgroup;
    StepConfig::CANDIDATES
        .into_iter()
        .filter(|c| c.validate(max).is_ok())
        .map(|config| Candidate {
            config,
            name: name(config),
        })
        .collect()
}

/// A deterministic tensor of values in [-1, 1).
fn tensor(shape: &[usize], seed: u64) -> Tensor<f32> {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let data = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect();
    Tensor::new(shape.to_vec(), data).expect("shape and data agree")
}

/// The largest error of `got` against `want`, relative to `want`'s largest
/// magnitude.
fn rel_err(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs())).max(1e-30);
    got.iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs()))
        / scale
}

/// Checks `config` on a small problem whose tiles have the class's vector
/// width and rows: the training forward and backward of one layer against
/// the f64 reference. `None` when it agrees.
fn check(
    ctx: &GpuContext,
    precision: Precision,
    hidden: usize,
    h_out: usize,
    batch: usize,
    config: StepConfig,
) -> Result<Option<String>> {
    // Widths with the class's remainders mod 4 (so the same vector loads),
    // small enough to check in milliseconds.
    let h = 48 + hidden % 4;
    let proj = if h_out < hidden { 24 + h_out % 4 } else { 0 };
    let cfg = LstmConfig::new(5, h).proj_size(proj);
    let (t, b) = (4, batch.clamp(1, 16));
    let w = LstmWeights::<f32>::init(&cfg, 7, InitOptions::default())?;
    let x = tensor(&[t, b, 5], 1);
    let dy = tensor(&[t, b, cfg.hidden_out()], 2);
    let mut gpu = GpuLstm::with_precision(ctx, &w, precision)?;
    gpu.set_step_config(config)?;
    let out = gpu.forward_train_host(&LstmInput::new(&x), 0)?;
    let grads = gpu.backward_host(&OutputGrads {
        d_output: &dy,
        d_h_n: None,
        d_c_n: None,
    })?;
    let w64 = w.cast::<f64>();
    let x64 = x.cast::<f64>();
    let (want_out, cache) = reference::forward_train(&w64, &LstmInput::new(&x64), 0)?;
    let want = reference::backward(
        &w64,
        &cache,
        &OutputGrads {
            d_output: &dy.cast::<f64>(),
            d_h_n: None,
            d_c_n: None,
        },
    )?;
    // Gross-error thresholds: a wrong kernel is off by O(1); f32 agrees to
    // about 1e-6 and f16 storage to about 1e-3 of the largest value.
    let tol = match precision {
        Precision::F32 => 1e-4,
        Precision::F16 => 3e-2,
    };
    let mut pairs = vec![
        ("output", rel_err(out.output.data(), want_out.output.data())),
        (
            "d_input",
            rel_err(grads.d_input.data(), want.d_input.data()),
        ),
    ];
    let (got_params, want_params) = (grads.weights.named_params(), want.weights.named_params());
    for ((n, _, g), (_, _, r)) in got_params.iter().zip(&want_params) {
        pairs.push((n.as_str(), rel_err(g, r)));
    }
    Ok(pairs
        .into_iter()
        // NaN counts as a disagreement.
        .filter(|(_, e)| e.is_nan() || *e > tol)
        .map(|(n, e)| format!("{n} off by {e:.2e} of its largest value (tolerance {tol:.0e})"))
        .reduce(|a, b| format!("{a}, {b}")))
}

/// Times `config`'s forward steps at the class's shape: GPU time of the step
/// dispatches where the adapter has timestamps, wall time of the forward
/// otherwise; the median of a few runs.
fn time(
    ctx: &GpuContext,
    precision: Precision,
    hidden: usize,
    h_out: usize,
    batch: usize,
    config: StepConfig,
) -> Result<(f64, &'static str)> {
    let proj = if h_out < hidden { h_out } else { 0 };
    let cfg = LstmConfig::new(8, hidden).proj_size(proj);
    let w = LstmWeights::<f32>::init(&cfg, 3, InitOptions::default())?;
    let mut gpu = GpuLstm::with_precision(ctx, &w, precision)?;
    gpu.set_step_config(config)?;
    let timestamps = gpu.enable_profiling()?;
    let x = GpuTensor::upload(ctx, "tuning input", &tensor(&[TIMED_STEPS, batch, 8], 5))?;
    let mut runs = Vec::new();
    for i in 0..=REPEATS {
        let start = std::time::Instant::now();
        gpu.forward(&x, InitialState::Zeros, None)?;
        ctx.synchronize()?;
        let wall = start.elapsed().as_secs_f64() * 1e3;
        let ms = match gpu.kernel_times() {
            Some(k) if timestamps => k.steps_ms,
            _ => wall,
        };
        if i > 0 {
            runs.push(ms);
        }
    }
    runs.sort_by(f64::total_cmp);
    let timer = if timestamps { "gpu timestamps" } else { "wall" };
    Ok((runs[runs.len() / 2], timer))
}

/// Chooses the step configuration for `class` by checking and timing every
/// candidate on `ctx`.
pub(crate) fn tune_step(
    ctx: &GpuContext,
    precision: Precision,
    hidden: usize,
    h_out: usize,
    batch: usize,
) -> Result<(StepConfig, TuneReport)> {
    let class = class(precision, hidden, h_out, batch);
    let mut timer = "wall";
    let s = select(
        FAMILY,
        &class,
        &candidates(ctx),
        |c| check(ctx, precision, hidden, h_out, batch, c),
        |c| {
            let (ms, t) = time(ctx, precision, hidden, h_out, batch, c)?;
            timer = t;
            Ok(ms)
        },
    )?;
    let chosen = s.chosen;
    Ok((chosen, TuneReport::measured(FAMILY, class, s, timer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_classes_group_batches_by_rows() {
        for c in StepConfig::CANDIDATES {
            assert_eq!(parse(&name(c)), Some(c));
        }
        assert_eq!(parse("32"), None);
        assert_eq!(parse("ax4"), None);
        assert_eq!(
            class(Precision::F32, 128, 128, 5),
            class(Precision::F32, 128, 128, 8)
        );
        assert_ne!(
            class(Precision::F32, 128, 128, 16),
            class(Precision::F32, 128, 128, 8)
        );
        assert_eq!(
            class(Precision::F32, 128, 128, 64),
            "f32 H=128 H_out=128 rows=16"
        );
    }
}
