//! Multivariate forecasting as the articles build it: `LSTM(50,
//! activation='relu', return_sequences=True) → LSTM(50) → Dense(1)` on
//! windows of 60 days of 3 features, predicting the next day's maximum
//! temperature. The data are seven years (2004–2010) of NOAA GHCN-Daily
//! observations at Worcester, MA: daily maximum and minimum temperature and
//! precipitation (public domain; see `data/README.md`).
//!
//! Train and test are split by time: the last 20% of days are only ever
//! predicted, never trained on. The yardstick is the naive forecast
//! "tomorrow's maximum equals today's"; the model's test mean absolute error
//! is printed beside it.
//!
//! Run: `cargo run --release --example weather` (`--device cpu` or
//! `--device gpu` to choose).

#[path = "support/mod.rs"]
mod support;

use std::error::Error;
use std::time::Instant;

use clap::Parser;
use rand::Rng;
use wgpu_lstm::{
    Activation, Batch, HeadKind, Inputs, LossKind, LrSchedule, LstmConfig, Model, OptimizerKind,
    Precision, Targets, TrainConfig, Trainer,
};

#[derive(Parser)]
struct Args {
    /// Days per window.
    #[arg(long, default_value_t = 60)]
    window: usize,
    #[arg(long, default_value_t = 400)]
    steps: u64,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[arg(long, default_value_t = 0.002)]
    lr: f64,
    /// auto (a hardware GPU, else the CPU engine), cpu or gpu.
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value = "target/weather.svg")]
    plot: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The features of the days: (date, [tmax °F, tmin °F, prcp in]).
fn load() -> Vec<(String, [f32; 3])> {
    support::text(support::data_path("weather/daily.csv"))
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let num = |i: usize| f[i].parse::<f32>().expect("a number");
            (f[0].to_string(), [num(1), num(2), num(3)])
        })
        .collect()
}

/// The batch of windows `x` ([T, B, 3]) and targets `y` ([B, 1]).
fn batch<'a>(seq_len: usize, x: &'a [f32], y: &'a [f32]) -> Batch<'a> {
    Batch {
        seq_len,
        batch: y.len(),
        inputs: Inputs::Features(x),
        targets: Targets::Values(y),
        lengths: None,
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let device = support::device(&args.device, Precision::F32)?;
    let days = load();
    let (w, n) = (args.window, days.len());
    let split = n - n / 5; // the first test target
    // Standardise each feature with statistics of the training days only.
    let scalers: Vec<support::Scaler> = (0..3)
        .map(|f| support::Scaler::fit(&days[..split].iter().map(|d| d.1[f]).collect::<Vec<_>>()))
        .collect();
    let z: Vec<[f32; 3]> = days
        .iter()
        .map(|d| [0, 1, 2].map(|f| scalers[f].apply(d.1[f])))
        .collect();
    // The window of the days before `target` ([T, B, 3]), and its scaled tmax.
    let batch_of = |targets: &[usize]| -> (Vec<f32>, Vec<f32>) {
        let b = targets.len();
        let mut x = vec![0.0; w * b * 3];
        for (j, &i) in targets.iter().enumerate() {
            for t in 0..w {
                x[(t * b + j) * 3..(t * b + j) * 3 + 3].copy_from_slice(&z[i - w + t]);
            }
        }
        (x, targets.iter().map(|&i| z[i][0]).collect())
    };
    let test: Vec<usize> = (split..n).collect();
    let naive: f64 = test
        .iter()
        .map(|&i| (days[i].1[0] - days[i - 1].1[0]).abs() as f64)
        .sum::<f64>()
        / test.len() as f64;
    println!(
        "{n} days {}–{}: training on targets to {}, testing on {}–{} ({} days)",
        days[0].0,
        days[n - 1].0,
        days[split - 1].0,
        days[split].0,
        days[n - 1].0,
        test.len()
    );

    let model: Model = Model::builder()
        .layer(LstmConfig::new(3, 50).activation(Activation::Relu))
        .layer(LstmConfig::new(50, 50))
        .head(1, HeadKind::LastStep)
        .build(args.seed)?;
    println!("model: LSTM(50, activation='relu') → LSTM(50) → Dense(1), {w} days of 3 features");
    let mut config = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(args.lr));
    config.clip_grad_norm = Some(1.0);
    config.schedule = LrSchedule::Cosine {
        t_max: args.steps,
        eta_min: args.lr / 10.0,
    };
    let mut trainer = Trainer::new(&device, model, config)?;

    let mut rng = support::seeded_rng(args.seed);
    let bar = support::progress(args.steps, "training");
    let mut curve = Vec::new();
    let start = Instant::now();
    for step in 0..args.steps {
        let targets: Vec<usize> = (0..args.batch)
            .map(|_| rng.random_range(w..split))
            .collect();
        let (x, y) = batch_of(&targets);
        trainer.step(&batch(w, &x, &y))?;
        if step % 10 == 0 {
            let l = trainer.loss()? as f64;
            curve.push((step as f64, l));
            bar.set_message(format!("scaled MSE {l:.4}"));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed();

    // Test: every day of the last fifth, in °F.
    let mut abs_err = 0.0;
    for chunk in test.chunks(128) {
        let (x, y) = batch_of(chunk);
        let pred = trainer.predict(&batch(w, &x, &y))?;
        for (&p, &i) in pred.iter().zip(chunk) {
            abs_err += (scalers[0].invert(p) - days[i].1[0]).abs() as f64;
        }
    }
    let mae = abs_err / test.len() as f64;
    println!("trained {} steps in {elapsed:.1?}", args.steps);
    println!(
        "test mean absolute error of the next day's maximum: {mae:.2} °F, against {naive:.2} °F \
         for the naive forecast (tomorrow = today)"
    );
    support::write_plot(
        std::path::Path::new(&args.plot),
        "weather: training MSE (standardised)",
        &[("train", &curve)],
        true,
    );
    Ok(())
}
