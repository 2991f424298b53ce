//! The adding problem (Hochreiter & Schmidhuber, 1997): each input step has a
//! random value and a marker; exactly two steps are marked, one in each half
//! of the sequence, and the target is the sum of their two values. Solving it
//! means carrying information across the whole sequence. Predicting the mean
//! (1.0) scores an MSE of about 1/6 ≈ 0.167; success is a test MSE below 0.01.
//!
//! Run: `cargo run --release --example adding` (defaults: T = 100, GPU).
//! `--device cpu` trains with the CPU reference instead.

#[path = "support/mod.rs"]
mod support;

use std::time::Instant;

use clap::Parser;
use wgpu_lstm::gpu::{GpuContext, GpuTrainer};
use wgpu_lstm::model::{
    Batch, CpuTrainer, HeadKind, Inputs, LossKind, Model, Targets, TrainConfig,
};
use wgpu_lstm::train::OptimizerKind;
use wgpu_lstm::{LstmConfig, Result};

#[derive(Parser)]
struct Args {
    /// Sequence length T.
    #[arg(long, default_value_t = 100)]
    seq_len: usize,
    /// Training steps.
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// gpu or cpu.
    #[arg(long, default_value = "gpu")]
    device: String,
    /// Evaluate on a held-out batch every this many steps (and stop early below 0.005).
    #[arg(long, default_value_t = 100)]
    eval_every: u64,
    #[arg(long, default_value = "target/adding_loss.svg")]
    plot: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

enum Trainer {
    Gpu(Box<GpuTrainer>),
    Cpu(Box<CpuTrainer<f32>>),
}

impl Trainer {
    fn step(&mut self, b: &Batch<'_>, want_loss: bool) -> Result<Option<f64>> {
        match self {
            Trainer::Gpu(t) if want_loss => Ok(Some(t.step_with_loss(b)? as f64)),
            Trainer::Gpu(t) => t.step(b).map(|_| None),
            Trainer::Cpu(t) => t.step(b).map(Some),
        }
    }

    fn test_mse(&mut self, b: &Batch<'_>) -> Result<f64> {
        match self {
            Trainer::Gpu(t) => t.evaluate(b),
            Trainer::Cpu(t) => {
                let mut gpu_free = GpuFreeEval(t);
                gpu_free.eval(b)
            }
        }
    }
}

/// CPU evaluation: the model in inference mode (no dropout) on the CPU reference.
struct GpuFreeEval<'a>(&'a mut CpuTrainer<f32>);

impl GpuFreeEval<'_> {
    fn eval(&mut self, b: &Batch<'_>) -> Result<f64> {
        let m = &self.0.model;
        let Inputs::Features(x) = b.inputs else {
            unreachable!()
        };
        let x = wgpu_lstm::Tensor::new([b.seq_len, b.batch, 2], x.to_vec())?;
        let out = wgpu_lstm::cpu::forward(&m.lstm, &wgpu_lstm::LstmInput::new(&x))?;
        let last = wgpu_lstm::train::last_valid_step(
            out.output.data(),
            b.seq_len,
            b.batch,
            m.head.in_features,
            None,
        );
        let pred = m.head.forward(&last, b.batch);
        let Targets::Values(y) = b.targets else {
            unreachable!()
        };
        Ok(pred
            .iter()
            .zip(y)
            .map(|(p, y)| ((p - y) as f64).powi(2))
            .sum::<f64>()
            / y.len() as f64)
    }
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let lstm = LstmConfig::new(2, args.hidden);
    let mut model = Model::<f32>::new(None, &lstm, 1, HeadKind::LastStep, args.seed)?;
    // Keras' unit_forget_bias: start by remembering.
    for lw in &mut model.lstm.layers {
        if let (Some(bi), Some(bh)) = (&mut lw.bias_ih, &mut lw.bias_hh) {
            bi[args.hidden..2 * args.hidden].fill(1.0);
            bh[args.hidden..2 * args.hidden].fill(0.0);
        }
    }
    let mut config = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(args.lr));
    config.clip_grad_norm = Some(1.0);
    let mut trainer = match args.device.as_str() {
        "gpu" => {
            let ctx = GpuContext::new()?;
            let info = ctx.adapter_info();
            println!("device: {} ({:?})", info.name, info.backend);
            Trainer::Gpu(Box::new(GpuTrainer::new(&ctx, &model, config)?))
        }
        _ => {
            println!("device: CPU reference");
            Trainer::Cpu(Box::new(CpuTrainer::new(model, config)?))
        }
    };
    let mut rng = support::seeded_rng(args.seed);
    let mut test_rng = support::seeded_rng(args.seed + 1_000_000);
    let (test_x, test_y) = support::adding_batch(&mut test_rng, args.seq_len, 1000);
    let test = Batch {
        seq_len: args.seq_len,
        batch: 1000,
        inputs: Inputs::Features(&test_x),
        targets: Targets::Values(&test_y),
        lengths: None,
    };
    let baseline = test_y
        .iter()
        .map(|y| ((y - 1.0) as f64).powi(2))
        .sum::<f64>()
        / test_y.len() as f64;
    println!(
        "adding problem, T = {}: predicting the mean scores test MSE {baseline:.4}",
        args.seq_len
    );

    let bar = support::progress(args.steps, "training");
    let (mut train_curve, mut test_curve) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let mut final_mse = f64::NAN;
    let mut steps_done = 0;
    for step in 0..args.steps {
        let (x, y) = support::adding_batch(&mut rng, args.seq_len, args.batch);
        let batch = Batch {
            seq_len: args.seq_len,
            batch: args.batch,
            inputs: Inputs::Features(&x),
            targets: Targets::Values(&y),
            lengths: None,
        };
        let report = step % 10 == 0;
        if let Some(loss) = trainer.step(&batch, report)? {
            if report {
                train_curve.push((step as f64, loss));
                bar.set_message(format!("loss {loss:.4}"));
            }
        }
        steps_done = step + 1;
        bar.inc(1);
        if (step + 1) % args.eval_every == 0 || step + 1 == args.steps {
            final_mse = trainer.test_mse(&test)?;
            test_curve.push(((step + 1) as f64, final_mse));
            bar.suspend(|| println!("step {:>5}: test MSE {final_mse:.5}", step + 1));
            if final_mse < 0.005 {
                break;
            }
        }
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed();
    println!(
        "after {steps_done} steps ({:.1?}): test MSE {final_mse:.5} (mean predictor {baseline:.4}); {}",
        elapsed,
        if final_mse < 0.01 {
            "solved (< 0.01)"
        } else {
            "not solved yet (goal < 0.01)"
        }
    );
    let title = format!("adding problem, T = {}", args.seq_len);
    support::plot_losses(
        std::path::Path::new(&args.plot),
        &title,
        &[("train MSE", &train_curve), ("test MSE", &test_curve)],
        true,
    )?;
    println!("loss curve: {}", args.plot);
    Ok(())
}
