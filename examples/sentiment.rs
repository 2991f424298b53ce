//! Sentiment classification, as the articles build it in Keras:
//! `Embedding(vocab, 128) → LSTM(64, dropout=0.2, recurrent_dropout=0.2) →
//! Dense(1, sigmoid)`, trained with binary cross-entropy and Adam, scored by
//! accuracy. The data are the 3,000 "Sentiment Labelled Sentences" of
//! Kotzias et al. (KDD 2015; UCI, CC BY 4.0; see `data/README.md`): review
//! sentences from Amazon, IMDb and Yelp, half positive. A shuffled fifth is
//! held out, and the model's accuracy on it is printed beside the majority
//! class's.
//!
//! Run: `cargo run --release --example sentiment` (a hardware GPU if there is
//! one, else the CPU engine; `--device cpu` or `--device gpu` to choose).

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::error::Error;
use std::time::Instant;

use clap::Parser;
use rand::seq::SliceRandom;
use wgpu_lstm::model::{Accuracy, Batch, HeadKind, Inputs, LossKind, Model, Targets, TrainConfig};
use wgpu_lstm::{LstmConfig, OptimizerKind, Precision, Trainer};

#[derive(Parser)]
struct Args {
    /// Passes over the training sentences.
    #[arg(long, default_value_t = 12)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Words kept: the most frequent in the training sentences (Keras'
    /// `num_words`); the rest share one out-of-vocabulary id.
    #[arg(long, default_value_t = 10000)]
    vocab: usize,
    #[arg(long, default_value_t = 128)]
    embedding: usize,
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Sentences are cut to this many words, and every batch padded to it.
    #[arg(long, default_value_t = 40)]
    max_len: usize,
    #[arg(long, default_value_t = 0.002)]
    lr: f64,
    /// Keras' `dropout` (on the LSTM's input) and `recurrent_dropout`.
    #[arg(long, default_value_t = 0.2)]
    dropout: f64,
    /// auto (a hardware GPU, else the CPU engine), cpu or gpu.
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value = "target/sentiment.svg")]
    plot: String,
    /// Also save the trained model and optimizer state as a checkpoint
    /// (safetensors; the README shows the PyTorch module that loads it).
    #[arg(long)]
    save: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// One sentence: its word ids (1 = out of vocabulary) and its label.
struct Example {
    words: Vec<String>,
    label: f32,
}

/// Lowercase words: runs of letters, digits and apostrophes.
fn words(sentence: &str) -> Vec<String> {
    sentence
        .to_lowercase()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The three files of `data/sentiment/`: `sentence \t score` per line.
fn load() -> Vec<Example> {
    let mut out = Vec::new();
    for name in ["amazon_cells_labelled", "imdb_labelled", "yelp_labelled"] {
        let path = support::data_path(&format!("sentiment/{name}.txt"));
        for (i, line) in support::text(&path).lines().enumerate() {
            let (sentence, score) = line
                .rsplit_once('\t')
                .unwrap_or_else(|| panic!("{}:{}: no tab", path.display(), i + 1));
            let label = match score.trim() {
                "0" => 0.0,
                "1" => 1.0,
                s => panic!("{}:{}: score {s:?}", path.display(), i + 1),
            };
            out.push(Example {
                words: words(sentence),
                label,
            });
        }
    }
    out
}

/// Word ids by frequency in `train` (ties by the word): 0 is padding, 1
/// out of vocabulary, then the `keep` most frequent words.
fn vocabulary(train: &[&Example], keep: usize) -> HashMap<String, usize> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for ex in train {
        for w in &ex.words {
            *counts.entry(w).or_default() += 1;
        }
    }
    let mut by_count: Vec<(&str, usize)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    by_count
        .into_iter()
        .take(keep)
        .enumerate()
        .map(|(i, (w, _))| (w.to_string(), i + 2))
        .collect()
}

/// A batch of sentences, time-major and padded to `t` steps: token ids
/// [T·B], labels [B] and lengths [B] (an empty sentence is one padding
/// token). The lengths make the padding count for nothing (the head reads
/// each sentence's last word); one T for every batch lets a GPU keep one set
/// of buffers rather than making them for each new length.
struct Encoded {
    seq_len: usize,
    tokens: Vec<usize>,
    labels: Vec<f32>,
    lengths: Vec<usize>,
}

fn encode(batch: &[&Example], vocab: &HashMap<String, usize>, t: usize) -> Encoded {
    let ids: Vec<Vec<usize>> = batch
        .iter()
        .map(|ex| {
            let mut v: Vec<usize> = ex
                .words
                .iter()
                .take(t)
                .map(|w| vocab.get(w).copied().unwrap_or(1))
                .collect();
            if v.is_empty() {
                v.push(0);
            }
            v
        })
        .collect();
    let b = batch.len();
    let mut tokens = vec![0; t * b];
    for (j, seq) in ids.iter().enumerate() {
        for (s, &id) in seq.iter().enumerate() {
            tokens[s * b + j] = id;
        }
    }
    Encoded {
        seq_len: t,
        tokens,
        labels: batch.iter().map(|ex| ex.label).collect(),
        lengths: ids.iter().map(Vec::len).collect(),
    }
}

impl Encoded {
    fn batch(&self) -> Batch<'_> {
        Batch {
            seq_len: self.seq_len,
            batch: self.labels.len(),
            inputs: Inputs::Tokens(&self.tokens),
            targets: Targets::Values(&self.labels),
            lengths: Some(&self.lengths),
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let device = support::device(&args.device, Precision::F32)?;
    let mut all = load();
    let mut rng = support::seeded_rng(args.seed);
    all.shuffle(&mut rng);
    let cut = all.len() * 4 / 5;
    let (train, test): (Vec<&Example>, Vec<&Example>) =
        (all[..cut].iter().collect(), all[cut..].iter().collect());
    let vocab = vocabulary(&train, args.vocab);
    // Every batch has T = the longest sentence's words, at most --max-len.
    let steps = all
        .iter()
        .map(|e| e.words.len())
        .max()
        .unwrap_or(1)
        .clamp(1, args.max_len);
    let vocab_size = vocab.len() + 2;
    // The majority class of the training sentences, scored on the test ones.
    let positive = train.iter().filter(|e| e.label == 1.0).count();
    let majority = if 2 * positive >= train.len() {
        1.0
    } else {
        0.0
    };
    let baseline = test.iter().filter(|e| e.label == majority).count() as f64 / test.len() as f64;
    println!(
        "{} sentences: {} for training ({} positive), {} held out; vocabulary {} words; {steps} steps per sentence",
        all.len(),
        train.len(),
        positive,
        test.len(),
        vocab_size - 2
    );
    let lstm = LstmConfig::new(args.embedding, args.hidden)
        .input_dropout(args.dropout)
        .recurrent_dropout(args.dropout);
    println!(
        "model: Embedding({vocab_size}, {}) → LSTM({}, dropout={d}, recurrent_dropout={d}) → Dense(1, sigmoid)",
        args.embedding,
        args.hidden,
        d = args.dropout
    );
    let model = Model::<f32>::new(
        Some((vocab_size, args.embedding)),
        &lstm,
        1,
        HeadKind::LastStep,
        args.seed,
    )?;
    let config = TrainConfig::new(LossKind::BceWithLogits, OptimizerKind::adam(args.lr));
    let mut trainer = Trainer::new(&device, model, config)?;

    let test_batches: Vec<Encoded> = test
        .chunks(args.batch)
        .map(|c| encode(c, &vocab, steps))
        .collect();
    let evaluate = |trainer: &mut Trainer| -> Result<Accuracy, Box<dyn Error>> {
        let mut acc = Accuracy::default();
        for b in &test_batches {
            acc += trainer.accuracy(&b.batch())?;
        }
        Ok(acc)
    };
    let steps_per_epoch = train.len().div_ceil(args.batch);
    let bar = support::progress((args.epochs * steps_per_epoch) as u64, "training");
    let (mut loss_curve, mut acc_curve) = (Vec::new(), Vec::new());
    let mut order = train.clone();
    let start = Instant::now();
    for epoch in 0..args.epochs {
        order.shuffle(&mut rng);
        let mut total = 0.0;
        for chunk in order.chunks(args.batch) {
            let enc = encode(chunk, &vocab, steps);
            total += trainer.step_with_loss(&enc.batch())? as f64;
            bar.inc(1);
        }
        let mean = total / steps_per_epoch as f64;
        let acc = evaluate(&mut trainer)?;
        loss_curve.push(((epoch + 1) as f64, mean));
        acc_curve.push(((epoch + 1) as f64, acc.fraction()));
        bar.set_message(format!(
            "epoch {}: loss {mean:.3}, held-out accuracy {:.3}",
            epoch + 1,
            acc.fraction()
        ));
    }
    bar.finish_and_clear();
    let acc = evaluate(&mut trainer)?;
    println!(
        "trained {} epochs ({} steps) in {:.1?}",
        args.epochs,
        args.epochs * steps_per_epoch,
        start.elapsed()
    );
    println!(
        "held-out accuracy {:.3} ({} of {}), against {baseline:.3} for the majority class ({})",
        acc.fraction(),
        acc.correct,
        acc.total,
        if majority == 1.0 {
            "positive"
        } else {
            "negative"
        }
    );
    // Two sentences of our own, with their word ids: a PyTorch module loading
    // the checkpoint gives the same probabilities for the same ids.
    for text in [
        "a great phone, i love it",
        "the worst movie i have ever seen",
    ] {
        let ex = Example {
            words: words(text),
            label: 0.0,
        };
        let enc = encode(&[&ex], &vocab, ex.words.len().max(1));
        let logit = trainer.predict(&enc.batch())?[0];
        println!(
            "{text:?}: word ids {:?}, logit {logit:.5}, P(positive) = {:.4}",
            enc.tokens,
            1.0 / (1.0 + (-logit).exp())
        );
    }
    if let Some(path) = &args.save {
        trainer.save_checkpoint(path)?;
        println!("checkpoint: {}", path.display());
    }
    support::write_plot(
        std::path::Path::new(&args.plot),
        "sentiment: training loss and held-out accuracy by epoch",
        &[
            ("training BCE", &loss_curve),
            ("held-out accuracy", &acc_curve),
        ],
        false,
    );
    Ok(())
}
