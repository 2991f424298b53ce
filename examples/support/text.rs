//! Characters as tokens: the vocabulary, one-hot rows, batches of a corpus
//! and sampling from logits, for `charlm`.

use std::collections::HashMap;

use rand::Rng;
use wgpu_lstm::{Batch, Inputs, Targets};

use super::split_by_position;

/// A character vocabulary: token `i` is `chars[i]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    pub chars: Vec<char>,
}

impl Vocab {
    /// The distinct characters of `text`, sorted by code point.
    pub fn from_text(text: &str) -> Vocab {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Vocab { chars }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// The token of `c`, if it is in the vocabulary.
    pub fn index(&self, c: char) -> Option<usize> {
        self.chars.iter().position(|&x| x == c)
    }

    /// The tokens of `text`. Panics on a character outside the vocabulary.
    pub fn encode(&self, text: &str) -> Vec<usize> {
        let map: HashMap<char, usize> = self
            .chars
            .iter()
            .enumerate()
            .map(|(i, &c)| (c, i))
            .collect();
        text.chars()
            .map(|c| {
                *map.get(&c)
                    .unwrap_or_else(|| panic!("character {c:?} is not in the vocabulary"))
            })
            .collect()
    }

    /// The text of `tokens`. Panics on a token `>= len()`.
    pub fn decode(&self, tokens: &[usize]) -> String {
        tokens.iter().map(|&t| self.chars[t]).collect()
    }
}

/// The unigram (order-0) entropy of `tokens` in bits per token: the
/// cross-entropy, in bits, of the best model that ignores context — a model
/// whose loss is not below `ln 2 ×` this (in nats) has learned nothing of
/// the order of the characters. `vocab` is the number of token values; panics
/// on a token `>= vocab`. Returns 0 for an empty slice.
pub fn unigram_entropy_bits(tokens: &[usize], vocab: usize) -> f64 {
    let mut counts = vec![0u64; vocab];
    for &t in tokens {
        assert!(
            t < vocab,
            "token {t} out of range for vocabulary size {vocab}"
        );
        counts[t] += 1;
    }
    let n = tokens.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// One-hot encoding of `tokens` (any shape, e.g. `[T, B]`) into `[.., vocab]`
/// `f32`s, e.g. `[T, B, V]` for the input of an LSTM with `input_size = V`.
pub fn one_hot(tokens: &[usize], vocab: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; tokens.len() * vocab];
    for (i, &t) in tokens.iter().enumerate() {
        assert!(
            t < vocab,
            "token {t} out of range for vocabulary size {vocab}"
        );
        out[i * vocab + t] = 1.0;
    }
    out
}

/// A tokenised text split by position into training and validation streams.
#[derive(Clone, Debug)]
pub struct CharCorpus {
    pub vocab: Vocab,
    /// The first `1 - valid_fraction` of the text.
    pub train: Vec<usize>,
    /// The rest, the end of the text.
    pub valid: Vec<usize>,
}

impl CharCorpus {
    /// Builds the vocabulary from the whole `text`, encodes it and splits it:
    /// the last `valid_fraction` of the characters are held out.
    pub fn new(text: &str, valid_fraction: f64) -> CharCorpus {
        let vocab = Vocab::from_text(text);
        let tokens = vocab.encode(text);
        let (train, valid) = split_by_position(&tokens, valid_fraction);
        CharCorpus {
            vocab,
            train: train.to_vec(),
            valid: valid.to_vec(),
        }
    }
}

/// A batch of next-character prediction: `inputs` and `targets` are `[T, B]`
/// time-major tokens, with `targets[t, b]` the token that follows
/// `inputs[t, b]` in the stream.
#[derive(Clone, Debug)]
pub struct CharBatch {
    pub seq_len: usize,
    pub batch: usize,
    pub inputs: Vec<usize>,
    /// Class indices, as cross-entropy takes them.
    pub targets: Vec<i64>,
}

impl CharBatch {
    /// The model's view: token inputs and next-character class targets.
    pub fn as_batch(&self) -> Batch<'_> {
        Batch {
            seq_len: self.seq_len,
            batch: self.batch,
            inputs: Inputs::Tokens(&self.inputs),
            targets: Targets::Classes(&self.targets),
            lengths: None,
        }
    }
}

/// The batch whose sequence `b` is the window `tokens[starts[b] .. starts[b] + T + 1]`
/// (inputs its first `T` tokens, targets its last `T`).
pub fn char_batch_at(tokens: &[usize], seq_len: usize, starts: &[usize]) -> CharBatch {
    let batch = starts.len();
    let mut inputs = vec![0; seq_len * batch];
    let mut targets = vec![0; seq_len * batch];
    for (b, &s) in starts.iter().enumerate() {
        assert!(
            s + seq_len < tokens.len(),
            "window {s}..{} out of the stream",
            s + seq_len + 1
        );
        for t in 0..seq_len {
            inputs[t * batch + b] = tokens[s + t];
            targets[t * batch + b] = tokens[s + t + 1] as i64;
        }
    }
    CharBatch {
        seq_len,
        batch,
        inputs,
        targets,
    }
}

/// A batch of `batch` windows of length `T + 1` drawn uniformly from `tokens`.
pub fn char_batch(rng: &mut impl Rng, tokens: &[usize], seq_len: usize, batch: usize) -> CharBatch {
    assert!(
        tokens.len() > seq_len,
        "stream of {} tokens is too short for T = {seq_len}",
        tokens.len()
    );
    let starts: Vec<usize> = (0..batch)
        .map(|_| rng.random_range(0..tokens.len() - seq_len))
        .collect();
    char_batch_at(tokens, seq_len, &starts)
}

/// Deterministic evaluation batches over `tokens`: consecutive,
/// non-overlapping windows (each `T + 1` long, sharing one token with the
/// next), `batch` windows per batch, at most `max_batches` batches; a final
/// partial batch is dropped. Every target token is scored at most once.
pub fn char_eval_batches(
    tokens: &[usize],
    seq_len: usize,
    batch: usize,
    max_batches: usize,
) -> Vec<CharBatch> {
    let windows = (tokens.len().saturating_sub(1)) / seq_len;
    let starts: Vec<usize> = (0..windows).map(|w| w * seq_len).collect();
    starts
        .chunks_exact(batch)
        .take(max_batches)
        .map(|s| char_batch_at(tokens, seq_len, s))
        .collect()
}

/// Draws a token from unnormalised `logits` at `temperature` (`> 0`; lower is
/// greedier; `0` means argmax).
pub fn sample_logits(rng: &mut impl Rng, logits: &[f32], temperature: f32) -> usize {
    if temperature <= 0.0 {
        return logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &l)| {
                if l > best.1 { (i, l) } else { best }
            })
            .0;
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| (((l - max) / temperature) as f64).exp())
        .collect();
    let mut u = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}
