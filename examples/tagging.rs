//! Sequence tagging, as the articles build their named-entity recogniser:
//! `Embedding(5000, 128) → Bidirectional(LSTM(128)) → Bidirectional(LSTM(64))
//! → a per-step Dense(tags, softmax)`, trained with cross-entropy over the
//! valid steps of padded sentences. No free named-entity corpus fits here, so
//! it tags parts of speech: the 17 universal tags of a subset of the
//! Universal Dependencies English Web Treebank (CC BY-SA 4.0; see
//! `data/README.md`), 4,000 training and 800 test sentences.
//!
//! Prints per-token accuracy on the test sentences against two baselines:
//! always the most frequent tag, and each word's most frequent training tag.
//!
//! Run: `cargo run --release --example tagging` (`--device cpu` or
//! `--device gpu` to choose).

#[path = "support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::error::Error;
use std::time::Instant;

use clap::Parser;
use rand::seq::SliceRandom;
use wgpu_lstm::{
    Accuracy, Batch, HeadKind, Inputs, LossKind, LstmConfig, Model, OptimizerKind, Precision,
    Targets, TrainConfig, Trainer,
};

#[derive(Parser)]
struct Args {
    /// Passes over the training sentences.
    #[arg(long, default_value_t = 8)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Word ids: the most frequent lower-cased training words, and one id
    /// for every other word (Keras' `num_words`).
    #[arg(long, default_value_t = 5000)]
    vocab: usize,
    #[arg(long, default_value_t = 0.003)]
    lr: f64,
    /// auto (a hardware GPU, else the CPU engine), cpu or gpu.
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value = "target/tagging.svg")]
    plot: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// Batches come in few shapes, because each (T, B) keeps its own buffers on
/// a GPU and only the few most recent are kept: T is padded to a power of
/// two from 32 (the padded steps count for nothing, through `lengths`),
/// training batches are all full (each epoch's few left-over sentences wait
/// for the next shuffle), and the 800 test sentences make 8 batches of 100.
const T_MIN: usize = 32;
const TEST_BATCH: usize = 100;

/// A sentence: its words and their tags.
struct Sentence {
    words: Vec<String>,
    tags: Vec<String>,
}

fn load(name: &str) -> Vec<Sentence> {
    let text = support::text(support::data_path(&format!("ud_english/{name}")));
    text.split("\n\n")
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let (words, tags) = s
                .lines()
                .map(|l| {
                    let (w, t) = l.split_once('\t').expect("FORM<TAB>UPOS");
                    (w.to_string(), t.to_string())
                })
                .unzip();
            Sentence { words, tags }
        })
        .collect()
}

/// A padded, time-major batch of sentences.
struct Encoded {
    seq_len: usize,
    tokens: Vec<usize>,
    classes: Vec<i64>,
    lengths: Vec<usize>,
}

impl Encoded {
    fn new(
        sentences: &[&Sentence],
        words: &HashMap<String, usize>,
        tags: &HashMap<String, usize>,
    ) -> Encoded {
        let longest = sentences.iter().map(|s| s.words.len()).max().unwrap_or(1);
        let t = longest.next_power_of_two().max(T_MIN);
        let b = sentences.len();
        let (mut tokens, mut classes) = (vec![0; t * b], vec![0; t * b]);
        for (j, s) in sentences.iter().enumerate() {
            for (i, (w, tag)) in s.words.iter().zip(&s.tags).enumerate() {
                tokens[i * b + j] = words.get(&w.to_lowercase()).copied().unwrap_or(0);
                classes[i * b + j] = tags[tag] as i64;
            }
        }
        Encoded {
            seq_len: t,
            tokens,
            classes,
            lengths: sentences.iter().map(|s| s.words.len()).collect(),
        }
    }

    fn batch(&self) -> Batch<'_> {
        Batch {
            seq_len: self.seq_len,
            batch: self.lengths.len(),
            inputs: Inputs::Tokens(&self.tokens),
            targets: Targets::Classes(&self.classes),
            lengths: Some(&self.lengths),
        }
    }
}

/// The share of test tokens that `guess` tags right.
fn baseline(test: &[Sentence], guess: impl Fn(&str) -> String) -> f64 {
    let (mut right, mut total) = (0, 0);
    for s in test {
        for (w, t) in s.words.iter().zip(&s.tags) {
            right += usize::from(guess(w) == *t);
            total += 1;
        }
    }
    right as f64 / total as f64
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let device = support::device(&args.device, Precision::F32)?;
    let (train, test) = (load("train.tsv"), load("test.tsv"));

    // Word ids 1.. for the most frequent lower-cased words; 0 for the rest.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for s in &train {
        for w in &s.words {
            *counts.entry(w.to_lowercase()).or_default() += 1;
        }
    }
    let mut by_count: Vec<(String, usize)> = counts.into_iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let words: HashMap<String, usize> = by_count
        .into_iter()
        .take(args.vocab - 1)
        .enumerate()
        .map(|(i, (w, _))| (w, i + 1))
        .collect();
    let mut tag_names: Vec<String> = train.iter().flat_map(|s| s.tags.clone()).collect();
    tag_names.sort();
    tag_names.dedup();
    let tags: HashMap<String, usize> = tag_names
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i))
        .collect();

    // The baselines: the most frequent tag, and each word's most frequent tag.
    let mut tag_counts: HashMap<&str, usize> = HashMap::new();
    let mut word_tags: HashMap<&str, HashMap<&str, usize>> = HashMap::new();
    for s in &train {
        for (w, t) in s.words.iter().zip(&s.tags) {
            *tag_counts.entry(t).or_default() += 1;
            *word_tags.entry(w).or_default().entry(t).or_default() += 1;
        }
    }
    let most = |c: &HashMap<&str, usize>| {
        c.iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(t, _)| t.to_string())
            .expect("a tag")
    };
    let top = most(&tag_counts);
    let majority = baseline(&test, |_| top.clone());
    let per_word = baseline(&test, |w| word_tags.get(w).map_or(top.clone(), most));
    println!(
        "{} training and {} test sentences ({} test tokens), {} tags, {} word ids",
        train.len(),
        test.len(),
        test.iter().map(|s| s.words.len()).sum::<usize>(),
        tags.len(),
        words.len() + 1
    );

    let vocab = words.len() + 1;
    let model: Model = Model::builder()
        .embedding(vocab, 128)
        .layer(LstmConfig::new(128, 128).bidirectional(true))
        .layer(LstmConfig::new(256, 64).bidirectional(true))
        .head(tags.len(), HeadKind::PerStep)
        .build(args.seed)?;
    println!(
        "model: Embedding({vocab}, 128) → Bidirectional(LSTM(128)) → Bidirectional(LSTM(64)) → per-step Dense({})",
        tags.len()
    );
    let config = TrainConfig::new(
        LossKind::CrossEntropy { ignore_index: None },
        OptimizerKind::adam(args.lr),
    );
    let mut trainer = Trainer::new(&device, model, config)?;

    // Test batches of sentences of similar lengths, in few shapes.
    let mut by_len: Vec<&Sentence> = test.iter().collect();
    by_len.sort_by_key(|s| s.words.len());
    let test_batches: Vec<Encoded> = by_len
        .chunks(TEST_BATCH)
        .map(|c| Encoded::new(c, &words, &tags))
        .collect();
    let evaluate = |trainer: &mut Trainer| -> Result<Accuracy, Box<dyn Error>> {
        let mut acc = Accuracy::default();
        for b in &test_batches {
            acc += trainer.accuracy(&b.batch())?;
        }
        Ok(acc)
    };

    let mut rng = support::seeded_rng(args.seed);
    let mut order: Vec<&Sentence> = train.iter().collect();
    let steps_per_epoch = order.len() / args.batch;
    let bar = support::progress((args.epochs * steps_per_epoch) as u64, "training");
    let (mut loss_curve, mut acc_curve) = (Vec::new(), Vec::new());
    let start = Instant::now();
    for epoch in 0..args.epochs {
        // Shuffled, then grouped by length within windows of 20 batches, so
        // that batches are padded little.
        order.shuffle(&mut rng);
        for window in order.chunks_mut(20 * args.batch) {
            window.sort_by_key(|s| s.words.len());
        }
        let mut batches: Vec<&[&Sentence]> = order.chunks_exact(args.batch).collect();
        batches.shuffle(&mut rng);
        let mut total = 0.0;
        for chunk in batches {
            let enc = Encoded::new(chunk, &words, &tags);
            total += trainer.step_with_loss(&enc.batch())? as f64;
            bar.inc(1);
        }
        let mean = total / steps_per_epoch as f64;
        let acc = evaluate(&mut trainer)?;
        loss_curve.push(((epoch + 1) as f64, mean));
        acc_curve.push(((epoch + 1) as f64, acc.fraction()));
        bar.set_message(format!(
            "epoch {}: loss {mean:.3}, test accuracy {:.3}",
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
        "test per-token accuracy {:.3} ({} of {}), against {majority:.3} for always {top:?} \
         and {per_word:.3} for each word's most frequent training tag",
        acc.fraction(),
        acc.correct,
        acc.total
    );
    support::write_plot(
        std::path::Path::new(&args.plot),
        "tagging: training loss and test accuracy by epoch",
        &[
            ("training cross-entropy", &loss_curve),
            ("test accuracy", &acc_curve),
        ],
        false,
    );
    Ok(())
}
