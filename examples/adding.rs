//! The adding problem (Hochreiter & Schmidhuber, 1997): each input step has a
//! random value and a marker; exactly two steps are marked, one in each half
//! of the sequence, and the target is the sum of their two values. Solving it
//! means carrying information across the whole sequence. Predicting the mean
//! (1.0) scores an MSE of about 1/6 ≈ 0.167; success is a test MSE below 0.01.
//!
//! Run: `cargo run --release --example adding` (defaults: T = 100, a
//! hardware GPU if there is one, else the CPU engine). `--device cpu` trains
//! with the CPU engine, `--device gpu` on the GPU; `--precision f16` trains on
//! the GPU with f16 weights and activations (f32 master weights, dynamic loss
//! scaling).

#[path = "support/mod.rs"]
mod support;

use std::time::Instant;

use clap::Parser;
use wgpu_lstm::model::{Batch, HeadKind, Inputs, LossKind, Model, Targets, TrainConfig};
use wgpu_lstm::{Cell, LstmConfig, OptimizerKind, Precision, Trainer};

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
    /// The recurrent cell: lstm or gru.
    #[arg(long, default_value = "lstm", value_parser = |s: &str| Cell::from_name(s).map_err(|e| e.to_string()))]
    cell: Cell,
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// auto (a hardware GPU, else the CPU engine), cpu or gpu.
    #[arg(long, default_value = "auto")]
    device: String,
    /// GPU storage precision: f32 or f16.
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Evaluate on a held-out batch every this many steps (and stop early below 0.005).
    #[arg(long, default_value_t = 100)]
    eval_every: u64,
    #[arg(long, default_value = "target/adding_loss.svg")]
    plot: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let device = support::device(&args.device, args.precision)?;
    let lstm = LstmConfig::new(2, args.hidden).cell(args.cell);
    let mut model = Model::<f32>::new(None, &lstm, 1, HeadKind::LastStep, args.seed)?;
    // Keras' unit_forget_bias: start by remembering (an LSTM's forget gate).
    for lw in model
        .lstm
        .layers
        .iter_mut()
        .filter(|_| args.cell == Cell::Lstm)
    {
        if let (Some(bi), Some(bh)) = (&mut lw.bias_ih, &mut lw.bias_hh) {
            bi[args.hidden..2 * args.hidden].fill(1.0);
            bh[args.hidden..2 * args.hidden].fill(0.0);
        }
    }
    let mut config = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(args.lr));
    config.clip_grad_norm = Some(1.0);
    let mut trainer = Trainer::new(&device, model, config)?;
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
        trainer.step(&batch)?;
        if step % 10 == 0 {
            // Reading the loss back costs a GPU a wait; every 10 steps is enough.
            let loss = trainer.loss()? as f64;
            train_curve.push((step as f64, loss));
            bar.set_message(format!("loss {loss:.4}"));
        }
        steps_done = step + 1;
        bar.inc(1);
        if (step + 1) % args.eval_every == 0 || step + 1 == args.steps {
            final_mse = trainer.evaluate(&test)?;
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
    if let Some(t) = trainer.gpu_mut()
        && t.precision() == Precision::F16
    {
        println!(
            "f16: final loss scale {}, {} steps skipped for overflow",
            t.loss_scale()?,
            t.skipped_steps()?
        );
    }
    let title = format!("adding problem, T = {}", args.seq_len);
    support::write_plot(
        std::path::Path::new(&args.plot),
        &title,
        &[("train MSE", &train_curve), ("test MSE", &test_curve)],
        true,
    );
    Ok(())
}
