//! Text generation as the articles build it: a stack of three LSTMs,
//! `LSTM(128, return_sequences) → LSTM(128, return_sequences) → LSTM(64) →
//! Dense(vocab, softmax)`, reading one-hot windows of characters of the King
//! James Bible (Genesis to Joshua, public domain; see `data/README.md`) and
//! predicting the character after each window, with cross-entropy.
//!
//! Reports held-out bits per character and next-character accuracy against
//! two baselines that ignore context (the unigram entropy, and always
//! guessing the most frequent character), then generates text by sliding the
//! window over its own output.
//!
//! Run: `cargo run --release --example textgen` (`--device cpu` or
//! `--device gpu`; longer with `--steps 6000`).

#[path = "support/mod.rs"]
mod support;

use std::error::Error;
use std::time::Instant;

use clap::Parser;
use rand::Rng;
use wgpu_lstm::{
    Accuracy, Batch, HeadKind, InitOptions, Inputs, LossKind, LrSchedule, LstmConfig, Model,
    OptimizerKind, Precision, Targets, TrainConfig, Trainer,
};

#[derive(Parser)]
struct Args {
    /// Training steps (batches of windows).
    #[arg(long, default_value_t = 3000)]
    steps: u64,
    /// Characters per window.
    #[arg(long, default_value_t = 40)]
    window: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 0.003)]
    lr: f64,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.6)]
    temperature: f32,
    /// Characters to generate.
    #[arg(long, default_value_t = 200)]
    sample: usize,
    /// auto (a hardware GPU, else the CPU engine), cpu or gpu.
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value = "target/textgen_loss.svg")]
    plot: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const LN2: f64 = std::f64::consts::LN_2;

/// Windows of `window` one-hot characters ([T, B, V]) and the class of the
/// character after each.
struct Windows {
    window: usize,
    batch: usize,
    x: Vec<f32>,
    y: Vec<i64>,
}

impl Windows {
    fn at(tokens: &[usize], vocab: usize, window: usize, starts: &[usize]) -> Windows {
        let batch = starts.len();
        let mut x = vec![0.0; window * batch * vocab];
        for (b, &s) in starts.iter().enumerate() {
            for t in 0..window {
                x[(t * batch + b) * vocab + tokens[s + t]] = 1.0;
            }
        }
        // The character after the window (none after the last: class 0).
        let y = starts
            .iter()
            .map(|&s| tokens.get(s + window).map_or(0, |&t| t as i64))
            .collect();
        Windows {
            window,
            batch,
            x,
            y,
        }
    }

    fn as_batch(&self) -> Batch<'_> {
        Batch {
            seq_len: self.window,
            batch: self.batch,
            inputs: Inputs::Features(&self.x),
            targets: Targets::Classes(&self.y),
            lengths: None,
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let device = support::device(&args.device, Precision::F32)?;
    let corpus = support::CharCorpus::new(&support::kjv(), 0.1);
    let vocab = corpus.vocab.len();
    let unigram = support::unigram_entropy_bits(&corpus.valid, vocab);
    // The most frequent character of the training text, and how often it
    // comes next in the held-out text.
    let mut counts = vec![0usize; vocab];
    corpus.train.iter().for_each(|&t| counts[t] += 1);
    let top = (0..vocab).max_by_key(|&t| counts[t]).expect("a vocabulary");
    let majority =
        corpus.valid.iter().filter(|&&t| t == top).count() as f64 / corpus.valid.len() as f64;
    println!(
        "text: {} training and {} held-out characters, vocabulary {vocab}",
        corpus.train.len(),
        corpus.valid.len()
    );

    // The articles' model, layer by layer, with Keras' initial forget-gate
    // bias of 1 (`unit_forget_bias`), which gets a deep stack trained on its
    // last step off the unigram plateau sooner.
    let model: Model = Model::builder()
        .init(InitOptions {
            unit_forget_bias: true,
        })
        .layer(LstmConfig::new(vocab, 128))
        .layer(LstmConfig::new(128, 128))
        .layer(LstmConfig::new(128, 64))
        .head(vocab, HeadKind::LastStep)
        .build(args.seed)?;
    println!("model: one-hot {vocab} → LSTM(128) → LSTM(128) → LSTM(64) → Dense({vocab})");
    let mut config = TrainConfig::new(
        LossKind::CrossEntropy { ignore_index: None },
        OptimizerKind::adam(args.lr),
    );
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
    let last_start = corpus.train.len() - args.window - 1;
    for step in 0..args.steps {
        let starts: Vec<usize> = (0..args.batch)
            .map(|_| rng.random_range(0..=last_start))
            .collect();
        let w = Windows::at(&corpus.train, vocab, args.window, &starts);
        trainer.step(&w.as_batch())?;
        if step % 10 == 0 {
            let l = trainer.loss()? as f64;
            curve.push((step as f64, l / LN2));
            bar.set_message(format!("{:.3} bits/char", l / LN2));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed();

    // Held out: every 7th window start of the held-out text (2 000 windows).
    let held: Vec<usize> = (0..corpus.valid.len() - args.window - 1)
        .step_by(7)
        .take(2000)
        .collect();
    let (mut loss, mut acc, mut n) = (0.0, Accuracy::default(), 0);
    for starts in held.chunks(args.batch) {
        let w = Windows::at(&corpus.valid, vocab, args.window, starts);
        loss += trainer.evaluate(&w.as_batch())? * starts.len() as f64;
        acc += trainer.accuracy(&w.as_batch())?;
        n += starts.len();
    }
    let bpc = loss / n as f64 / LN2;
    println!("trained {} steps in {elapsed:.1?}", args.steps);
    println!(
        "held out ({n} windows): {bpc:.3} bits/char against a unigram entropy of {unigram:.3}; \
         next-character accuracy {:.3} against {majority:.3} for always guessing {:?}",
        acc.fraction(),
        corpus.vocab.chars[top]
    );

    // Generation: the window slides over the model's own output.
    let prompt = "And God said unto Moses, ";
    let mut tokens = corpus
        .vocab
        .encode(&format!("{prompt:>w$}", w = args.window));
    let mut text = prompt.to_string();
    for _ in 0..args.sample {
        let w = Windows::at(
            &tokens[tokens.len() - args.window..],
            vocab,
            args.window,
            &[0],
        );
        let logits = trainer.predict(&w.as_batch())?;
        let next = support::sample_logits(&mut rng, &logits, args.temperature);
        tokens.push(next);
        text.push_str(&corpus.vocab.decode(&[next]));
    }
    println!("sample at temperature {}:\n{text}", args.temperature);
    support::write_plot(
        std::path::Path::new(&args.plot),
        "text generation: training bits/char",
        &[("train", &curve)],
        false,
    );
    Ok(())
}
