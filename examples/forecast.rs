//! Forecasting yearly sunspot numbers (1700–2008, public domain; see
//! `data/README.md`) one year ahead from the previous `--window` years.
//! Train and test are split by time: the last 20% of years are only ever
//! predicted, never trained on. The yardstick is the naive forecast "next
//! year equals this year"; the model should beat its test RMSE.
//!
//! Run: `cargo run --release --example forecast` (a hardware GPU if there is
//! one, else the CPU engine; `--device cpu` for the CPU engine, `--device gpu`
//! for the GPU).

#[path = "support/mod.rs"]
mod support;

use std::error::Error;
use std::time::Instant;

use clap::Parser;
use wgpu_lstm::model::{Batch, HeadKind, Inputs, LossKind, Model, Targets, TrainConfig};
use wgpu_lstm::{LrSchedule, LstmConfig, OptimizerKind, Precision, Trainer};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20)]
    window: usize,
    #[arg(long, default_value_t = 800)]
    steps: u64,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    #[arg(long, default_value_t = 0.005)]
    lr: f64,
    /// auto (a hardware GPU, else the CPU engine), cpu or gpu.
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value = "target/forecast_loss.svg")]
    plot: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let device = support::device(&args.device, Precision::F32)?;
    let years = support::sunspots();
    let raw: Vec<f32> = years.iter().map(|&(_, v)| v).collect();
    let windows = support::SeriesWindows::new(raw.clone(), args.window, 0.2);
    // Standardise with statistics of the training years only.
    let scaler = support::Scaler::fit(&raw[..windows.split]);
    let scaled = support::SeriesWindows::new(
        raw.iter().map(|&v| scaler.apply(v)).collect(),
        args.window,
        0.2,
    );
    let test_range = scaled.test_targets();
    println!(
        "sunspots {}–{}: training on targets {}–{}, testing on {}–{}",
        years[0].0,
        years[years.len() - 1].0,
        years[scaled.window].0,
        years[test_range.start - 1].0,
        years[test_range.start].0,
        years[years.len() - 1].0
    );

    let model = Model::<f32>::new(
        None,
        &LstmConfig::new(1, args.hidden),
        1,
        HeadKind::LastStep,
        args.seed,
    )?;
    let mut config = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(args.lr));
    config.schedule = LrSchedule::Cosine {
        t_max: args.steps,
        eta_min: args.lr / 20.0,
    };
    config.clip_grad_norm = Some(1.0);
    let mut trainer = Trainer::new(&device, model, config)?;
    let (test_x, test_y) = scaled.test_batch();
    let n_test = test_y.len();
    let test = Batch {
        seq_len: args.window,
        batch: n_test,
        inputs: Inputs::Features(&test_x),
        targets: Targets::Values(&test_y),
        lengths: None,
    };

    let mut rng = support::seeded_rng(args.seed);
    let bar = support::progress(args.steps, "training");
    let mut curve = Vec::new();
    let start = Instant::now();
    for step in 0..args.steps {
        let (x, y) = scaled.train_batch(&mut rng, args.batch);
        let batch = Batch {
            seq_len: args.window,
            batch: args.batch,
            inputs: Inputs::Features(&x),
            targets: Targets::Values(&y),
            lengths: None,
        };
        trainer.step(&batch)?;
        if step % 10 == 0 {
            let l = trainer.loss()? as f64;
            curve.push((step as f64, l));
            bar.set_message(format!("train MSE {l:.4}"));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed();

    // Test predictions, back in sunspot units.
    let pred = trainer.predict(&test)?;
    let rmse = |pairs: &mut dyn Iterator<Item = (f32, f32)>| {
        let (sum, n) = pairs.fold((0.0f64, 0usize), |(s, n), (p, y)| {
            (s + ((p - y) as f64).powi(2), n + 1)
        });
        (sum / n as f64).sqrt()
    };
    let model_rmse = rmse(
        &mut test_range
            .clone()
            .zip(&pred)
            .map(|(i, &p)| (scaler.invert(p), windows.series[i])),
    );
    let naive_rmse = rmse(
        &mut test_range
            .clone()
            .map(|i| (windows.series[i - 1], windows.series[i])),
    );
    println!("trained {} steps in {elapsed:.1?}", args.steps);
    println!(
        "test RMSE over {n_test} years: LSTM {model_rmse:.2}, naive last-value forecast {naive_rmse:.2} ({})",
        if model_rmse < naive_rmse {
            "the LSTM is better"
        } else {
            "the naive forecast is better"
        }
    );
    support::write_plot(
        std::path::Path::new(&args.plot),
        "sunspots: training MSE (standardised)",
        &[("train MSE", &curve)],
        true,
    );
    Ok(())
}
