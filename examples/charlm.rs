//! A character-level language model on the King James Bible, Genesis to
//! Joshua (public domain, ≤ 1 MB; see `data/README.md`): embedding → LSTM →
//! per-step linear head, trained with cross-entropy to predict the next
//! character. Reports validation bits per character against the text's
//! unigram entropy (what a model that ignores context can reach), and samples
//! text at a chosen temperature.
//!
//! Run: `cargo run --release --example charlm` (a hardware GPU if there is
//! one, else the CPU engine; `--device cpu` for the CPU engine, `--device gpu`
//! for the GPU; larger models with `--hidden 256 --steps 8000`).

#[path = "support/mod.rs"]
mod support;

use std::error::Error;
use std::time::Instant;

use clap::Parser;
use wgpu_lstm::model::{HeadKind, LossKind, Model, TrainConfig};
use wgpu_lstm::{
    Cell, Device, LrSchedule, Lstm, LstmConfig, LstmInput, OptimizerKind, Precision, Tensor,
    Trainer,
};

#[derive(Parser)]
struct Args {
    /// Training steps: the default reaches about 1.6 bits per character,
    /// readable text, in under a minute on a 2-core CPU.
    #[arg(long, default_value_t = 4000)]
    steps: u64,
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// The recurrent cell: lstm or gru.
    #[arg(long, default_value = "lstm", value_parser = |s: &str| Cell::from_name(s).map_err(|e| e.to_string()))]
    cell: Cell,
    #[arg(long, default_value_t = 32)]
    embedding: usize,
    #[arg(long, default_value_t = 0.005)]
    lr: f64,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Characters to sample.
    #[arg(long, default_value_t = 300)]
    sample: usize,
    /// auto (a hardware GPU, else the CPU engine), cpu or gpu.
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value = "target/charlm_loss.svg")]
    plot: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to save the trained model (a model file, as
    /// `Model::save_safetensors` writes it), with its vocabulary beside it
    /// as a JSON array of characters (`PATH` with `.vocab.json` for
    /// `.safetensors`). The browser demo's model is saved so.
    #[arg(long)]
    save: Option<std::path::PathBuf>,
}

const LN2: f64 = std::f64::consts::LN_2;

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let device = support::device(&args.device, Precision::F32)?;
    let corpus = support::CharCorpus::new(&support::kjv(), 0.1);
    let vocab = corpus.vocab.len();
    let unigram = support::unigram_entropy_bits(&corpus.valid, vocab);
    println!(
        "text: {} training and {} validation characters, vocabulary {vocab}; unigram entropy of the validation text {unigram:.3} bits/char",
        corpus.train.len(),
        corpus.valid.len()
    );
    let lstm = LstmConfig::new(args.embedding, args.hidden).cell(args.cell);
    println!(
        "model: embedding {}, {} of {} units",
        args.embedding, args.cell, args.hidden
    );
    let model = Model::<f32>::new(
        Some((vocab, args.embedding)),
        &lstm,
        vocab,
        HeadKind::PerStep,
        args.seed,
    )?;
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
    let eval_batches = support::char_eval_batches(&corpus.valid, args.seq_len, args.batch, 8);
    let mut rng = support::seeded_rng(args.seed);
    let bar = support::progress(args.steps, "training");
    let mut curve = Vec::new();
    let start = Instant::now();
    for step in 0..args.steps {
        let cb = support::char_batch(&mut rng, &corpus.train, args.seq_len, args.batch);
        trainer.step(&cb.as_batch())?;
        if step % 10 == 0 {
            let l = trainer.loss()? as f64;
            curve.push((step as f64, l / LN2));
            bar.set_message(format!("{:.3} bits/char", l / LN2));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed();

    // Validation bits per character (evaluation mode: no dropout).
    let mut total = 0.0;
    for cb in &eval_batches {
        total += trainer.evaluate(&cb.as_batch())?;
    }
    let bpc = total / eval_batches.len() as f64 / LN2;
    println!("trained {} steps in {elapsed:.1?}", args.steps);
    println!(
        "validation: {bpc:.3} bits/char over {} characters, against a unigram entropy of {unigram:.3} ({:.0}% lower)",
        eval_batches.len() * args.seq_len * args.batch,
        100.0 * (1.0 - bpc / unigram)
    );

    // Sample with the trained weights on the same device, one character at a
    // time, carrying the state.
    let model = trainer.model()?;
    if let Some(path) = &args.save {
        model.save_safetensors(path)?;
        let vocab_path = path.with_extension("vocab.json");
        let chars: Vec<String> = corpus.vocab.chars.iter().map(|c| c.to_string()).collect();
        std::fs::write(&vocab_path, serde_json::to_string(&chars)? + "\n")?;
        println!("saved {} and {}", path.display(), vocab_path.display());
    }
    let text = sample(
        &device,
        &model,
        &corpus.vocab,
        "And God said",
        args.sample,
        args.temperature,
        &mut rng,
    )?;
    println!("sample at temperature {}:\n{text}", args.temperature);
    support::write_plot(
        std::path::Path::new(&args.plot),
        "character LM: training bits/char",
        &[("train", &curve)],
        false,
    );
    Ok(())
}

/// Generates `n` characters after `prompt` on `device`, feeding one
/// character at a time and carrying the LSTM state.
fn sample(
    device: &Device,
    m: &Model<f32>,
    vocab: &support::Vocab,
    prompt: &str,
    n: usize,
    temperature: f32,
    rng: &mut impl rand::Rng,
) -> Result<String, Box<dyn Error>> {
    let emb = m.embedding.as_ref().expect("the model has an embedding");
    let mut lstm = Lstm::new(device, &m.lstm)?;
    let mut feed = |token: usize| -> Result<Vec<f32>, Box<dyn Error>> {
        let x = Tensor::new([1, 1, m.lstm.config.input_size], emb.forward(&[token])?)?;
        let out = lstm.forward_stateful(&LstmInput::new(&x))?;
        Ok(m.head.forward(out.output.data(), 1))
    };
    let mut logits = Vec::new();
    for token in vocab.encode(prompt) {
        logits = feed(token)?;
    }
    let mut text = prompt.to_string();
    for _ in 0..n {
        let token = support::sample_logits(rng, &logits, temperature);
        text.push_str(&vocab.decode(&[token]));
        logits = feed(token)?;
    }
    Ok(text)
}
