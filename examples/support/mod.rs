//! Shared utilities of the training examples (`adding`, `forecast`, `charlm`).
//!
//! An example includes this module with
//!
//! ```ignore
//! #[path = "support/mod.rs"]
//! mod support;
//! ```
//!
//! It depends only on `rand` / `rand_chacha` (normal dependencies of the crate)
//! and on the dev-dependencies `indicatif` (progress bars) and `plotters`
//! (SVG charts, no font libraries). Apart from [`device`], which turns the
//! examples' `--device` flag into a [`Device`], it knows nothing of the LSTM
//! itself: every batch is a plain `Vec` in time-major order, ready for
//! `Tensor::new`.
//!
//! Layouts (row-major, last index fastest):
//! - sequences of features: `[T, B, F]`, element `(t, b, f)` at `(t * B + b) * F + f`;
//! - sequences of tokens: `[T, B]`, element `(t, b)` at `t * B + b`;
//! - per-sequence targets: `[B, 1]`.
//!
//! The data files live in `data/` (see `data/README.md`; regenerate them with
//! `python3 tools/make_data.py`).

// Every example uses a different part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::error::Error;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgpu_lstm::model::{Batch, Inputs, Targets};
use wgpu_lstm::{Device, Precision};

// ---------------------------------------------------------------------------
// Randomness, progress, plots
// ---------------------------------------------------------------------------

/// A deterministic random number generator: the same `seed` gives the same
/// stream on every platform (ChaCha8), so example runs are reproducible.
pub fn seeded_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A progress bar on stderr for a loop of `total` steps, labelled `what`.
///
/// It shows the label, elapsed time, a bar, `step/total`, steps per second,
/// the ETA and a message slot: call `pb.set_message(format!("loss {loss:.4}"))`
/// to show the current loss, `pb.inc(1)` after each step, `pb.println(..)` to
/// print a line above the bar without garbling it, and `pb.finish()` at the end
/// (which leaves the final state on screen). When stderr is not a terminal the
/// bar draws nothing (indicatif hides it), so logs stay clean.
pub fn progress(total: u64, what: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(
        "{prefix:.bold} [{elapsed_precise}] {wide_bar:.cyan/blue} {pos}/{len} \
         {rate} ETA {eta:>4} {msg}",
    )
    .expect("valid progress template")
    .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{:.1} it/s", s.per_sec());
    })
    .progress_chars("=> ");
    let pb = ProgressBar::new(total).with_style(style);
    pb.set_prefix(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Writes an SVG line chart of one or more loss curves to `path`.
///
/// `series` holds `(name, points)` pairs, each point `(step, loss)`; every
/// series becomes one coloured line with an entry in the legend (with a dot
/// at each point when it has at most 60 points). The x axis
/// is labelled "step", the y axis "loss"; with `y_log` it is logarithmic
/// (ticks at 1-2-5 × 10^k) and points with a loss `<= 0` are left out.
/// Non-finite points are always left out; it is an error if no point is left.
/// `title` is drawn above the chart.
///
/// Text is written as SVG `<text>` elements and laid out by whatever displays
/// the SVG (browser, `rsvg-convert`, ...), so no font library is needed here:
/// `plotters` is built without its `ttf`/`ab_glyph` features and uses its
/// built-in size estimate for layout.
pub fn plot_losses(
    path: &Path,
    title: &str,
    series: &[(&str, &[(f64, f64)])],
    y_log: bool,
) -> Result<(), Box<dyn Error>> {
    use plotters::prelude::*;

    // A log axis is drawn as a linear axis over log10(loss) with ticks at
    // 1-2-5 × 10^k (plotters' own log scale places its ticks poorly).
    let to_y = |y: f64| if y_log { y.log10() } else { y };
    let clean: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, pts)| {
            let pts = pts
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!y_log || *y > 0.0))
                .map(|&(x, y)| (x, to_y(y)))
                .collect();
            (*name, pts)
        })
        .collect();
    let all = || clean.iter().flat_map(|(_, pts)| pts.iter().copied());
    if all().next().is_none() {
        return Err(format!("plot_losses({}): no finite points to plot", path.display()).into());
    }
    let span = |f: fn((f64, f64)) -> f64| {
        all()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            })
    };
    let (mut x0, mut x1) = span(|p| p.0);
    let (mut y0, mut y1) = span(|p| p.1);
    if x1 <= x0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let pad = if y1 > y0 {
        0.05 * (y1 - y0)
    } else if y_log {
        0.1
    } else {
        0.5 * y0.abs().max(1e-3)
    };
    y0 -= pad;
    y1 += pad;

    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72);
    let y_ticks = if y_log {
        log_ticks(y0, y1)
    } else {
        linear_ticks(y0, y1)
    };
    let y_axis = TickedAxis {
        range: y0..y1,
        ticks: y_ticks,
    };
    let mut chart = builder.build_cartesian_2d(x0..x1, y_axis)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(if y_log { "loss (log scale)" } else { "loss" })
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 16))
        .x_label_formatter(&|x| axis_number(*x))
        .y_label_formatter(&|y| axis_number(if y_log { 10f64.powf(*y) } else { *y }))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(WHITE)
        .draw()?;
    for (i, (name, pts)) in clean.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(
                // Sparse curves (e.g. a validation loss every N steps) get dots.
                LineSeries::new(pts.iter().copied(), color.filled().stroke_width(2))
                    .point_size(if pts.len() <= 60 { 3 } else { 0 }),
            )?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A linear `f64` axis with the given tick positions (and no light lines).
struct TickedAxis {
    range: Range<f64>,
    ticks: Vec<f64>,
}

impl plotters::coord::ranged1d::Ranged for TickedAxis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let f = (value - self.range.start) / (self.range.end - self.range.start);
        limit.0 + (f * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<H: plotters::coord::ranged1d::KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// About 5-10 "nice" tick values (1-2-5 steps) within `[lo, hi]`.
fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 10.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Tick positions, in log10 units within `[lo, hi]`, at 1-2-5 × 10^k (or at
/// 1..9 × 10^k when that gives fewer than 4 ticks, or at 10^k only when the
/// range spans many decades).
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = (lo.floor() as i32)..=(hi.ceil() as i32);
    let at = |mantissas: &[f64]| -> Vec<f64> {
        decades
            .clone()
            .flat_map(|k| mantissas.iter().map(move |m| (m * 10f64.powi(k)).log10()))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    if hi - lo > 6.0 {
        return at(&[1.0]);
    }
    let ticks = at(&[1.0, 2.0, 5.0]);
    if ticks.len() >= 4 {
        ticks
    } else {
        at(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    }
}

/// A tick label: at most 4 significant digits, no trailing zeros, scientific
/// notation for very large or small magnitudes.
fn axis_number(v: f64) -> String {
    let a = v.abs();
    if a < 1e-12 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        let s = format!("{v:.2e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        return format!(
            "{}e{exponent}",
            mantissa.trim_end_matches('0').trim_end_matches('.')
        );
    }
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

// ---------------------------------------------------------------------------
// Data files
// ---------------------------------------------------------------------------

/// The path of a file in the crate's `data/` folder (independent of the
/// current directory).
pub fn data_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

/// Yearly mean sunspot numbers 1700–2008 from `data/sunspots.csv`, as
/// `(year, sunspots)` in order of year (309 rows).
///
/// Panics with a message naming the file if it is missing or malformed.
pub fn sunspots() -> Vec<(u32, f32)> {
    let path = data_path("sunspots.csv");
    let csv = text(&path);
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or_default();
    assert_eq!(
        header.trim(),
        "year,sunspots",
        "{}: unexpected header",
        path.display()
    );
    lines
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            let row = || format!("{}:{}: bad row {line:?}", path.display(), i + 2);
            let (year, value) = line.split_once(',').unwrap_or_else(|| panic!("{}", row()));
            let year: u32 = year.trim().parse().unwrap_or_else(|_| panic!("{}", row()));
            let value: f32 = value.trim().parse().unwrap_or_else(|_| panic!("{}", row()));
            (year, value)
        })
        .collect()
}

/// The whole of a UTF-8 text file. A relative `path` that does not exist from
/// the current directory is looked up from the crate root, so
/// `text("data/kjv.txt")` works wherever the example is run from.
///
/// Panics with a message naming the file if it cannot be read; a missing
/// file under `data/` can be regenerated with `python3 tools/make_data.py`.
pub fn text(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    let path = if path.is_relative() && !path.exists() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
    } else {
        path.to_path_buf()
    };
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (the files in data/ are made by `python3 tools/make_data.py`)",
            path.display()
        )
    })
}

/// The King James Version text of `data/kjv.txt` (Genesis–Joshua, ~0.9 MB,
/// plain ASCII).
pub fn kjv() -> String {
    text(data_path("kjv.txt"))
}

/// Splits `data` by position: the first `1 - valid_fraction` of it for
/// training, the rest (the end) for validation/testing.
pub fn split_by_position<T>(data: &[T], valid_fraction: f64) -> (&[T], &[T]) {
    assert!(
        (0.0..=1.0).contains(&valid_fraction),
        "valid_fraction must be in [0, 1]"
    );
    let cut = data.len() - (data.len() as f64 * valid_fraction).round() as usize;
    data.split_at(cut)
}

// ---------------------------------------------------------------------------
// The adding problem
// ---------------------------------------------------------------------------

/// One batch of the adding problem (Hochreiter & Schmidhuber 1997; the form
/// used by Le et al. 2015 and Arjovsky et al. 2016).
///
/// Returns `(input, target)`: `input` is `[T, B, 2]` time-major, channel 0
/// uniform in `[0, 1)`, channel 1 zero except for exactly two 1s per sequence,
/// one at a uniformly drawn step of the first half `[0, T/2)` and one of the
/// second half `[T/2, T)`; `target` is `[B, 1]`, the sum of the two marked
/// values. Always predicting the mean, 1, gives an MSE of Var(U + U') = 1/6
/// ≈ 0.167: the baseline a model has to beat.
pub fn adding_batch(rng: &mut impl Rng, seq_len: usize, batch: usize) -> (Vec<f32>, Vec<f32>) {
    assert!(seq_len >= 2, "the adding problem needs seq_len >= 2");
    let (t_len, half) = (seq_len, seq_len / 2);
    let mut input = vec![0.0f32; t_len * batch * 2];
    for v in input.iter_mut().step_by(2) {
        *v = rng.random::<f32>();
    }
    let mut target = vec![0.0f32; batch];
    for (b, tgt) in target.iter_mut().enumerate() {
        let first = rng.random_range(0..half);
        let second = rng.random_range(half..t_len);
        for t in [first, second] {
            let at = (t * batch + b) * 2;
            input[at + 1] = 1.0;
            *tgt += input[at];
        }
    }
    (input, target)
}

// ---------------------------------------------------------------------------
// Characters
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Time series
// ---------------------------------------------------------------------------

/// An affine standardisation `z = (x - mean) / std`, fitted on training data
/// only (fit on the training part, apply to both parts).
#[derive(Clone, Copy, Debug)]
pub struct Scaler {
    pub mean: f32,
    pub std: f32,
}

impl Scaler {
    /// Mean and (population) standard deviation of `xs`; a zero std becomes 1.
    pub fn fit(xs: &[f32]) -> Scaler {
        let n = xs.len().max(1) as f64;
        let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        let std = if var > 0.0 { var.sqrt() } else { 1.0 };
        Scaler {
            mean: mean as f32,
            std: std as f32,
        }
    }

    pub fn apply(&self, x: f32) -> f32 {
        (x - self.mean) / self.std
    }

    pub fn invert(&self, z: f32) -> f32 {
        z * self.std + self.mean
    }
}

/// Sliding windows over a series for one-step-ahead forecasting, split by
/// time: the window ending before index `i` (`series[i - T .. i]`) predicts
/// `series[i]`. Windows whose target lies in the last `test_fraction` of the
/// series form the test set; all others the training set. (A test window's
/// input may reach back into the training years; its target never does.)
#[derive(Clone, Debug)]
pub struct SeriesWindows {
    pub series: Vec<f32>,
    /// The window length `T`.
    pub window: usize,
    /// Index of the first test target.
    pub split: usize,
}

impl SeriesWindows {
    pub fn new(series: Vec<f32>, window: usize, test_fraction: f64) -> SeriesWindows {
        assert!(window >= 1);
        let (train, _) = split_by_position(&series, test_fraction);
        let split = train.len().max(window + 1);
        assert!(
            split <= series.len(),
            "series of {} values too short for window {window}",
            series.len()
        );
        SeriesWindows {
            series,
            window,
            split,
        }
    }

    /// Target indices of the training windows: `T .. split`.
    pub fn train_targets(&self) -> Range<usize> {
        self.window..self.split
    }

    /// Target indices of the test windows: `split .. len`.
    pub fn test_targets(&self) -> Range<usize> {
        self.split..self.series.len()
    }

    /// The batch predicting the given target indices: `(input [T, B, 1],
    /// target [B, 1])`, with `B = targets.len()`.
    pub fn batch(&self, targets: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let (t_len, batch) = (self.window, targets.len());
        let mut input = vec![0.0f32; t_len * batch];
        for (b, &i) in targets.iter().enumerate() {
            assert!(
                i >= t_len && i < self.series.len(),
                "target index {i} has no full window"
            );
            for t in 0..t_len {
                input[t * batch + b] = self.series[i - t_len + t];
            }
        }
        let target = targets.iter().map(|&i| self.series[i]).collect();
        (input, target)
    }

    /// `batch` training windows drawn uniformly (with replacement).
    pub fn train_batch(&self, rng: &mut impl Rng, batch: usize) -> (Vec<f32>, Vec<f32>) {
        let r = self.train_targets();
        let targets: Vec<usize> = (0..batch).map(|_| rng.random_range(r.clone())).collect();
        self.batch(&targets)
    }

    /// All test windows, in order of time, as one batch.
    pub fn test_batch(&self) -> (Vec<f32>, Vec<f32>) {
        self.batch(&self.test_targets().collect::<Vec<_>>())
    }
}

// ---------------------------------------------------------------------------
// The device
// ---------------------------------------------------------------------------

/// The [`Device`] that a `--device` flag names, storing weights and
/// activations in `precision`: `auto` is [`Device::auto`] (a hardware GPU,
/// else the CPU engine), `cpu` the CPU engine, `gpu` [`Device::gpu`] (an
/// error when there is none). f16 needs a GPU that has it. Prints the device.
pub fn device(name: &str, precision: Precision) -> Result<Device, Box<dyn Error>> {
    let device = match name {
        "auto" => Device::auto(),
        "cpu" => Device::cpu(),
        "gpu" => Device::gpu()?,
        other => return Err(format!("unknown device {other:?}: use auto, cpu or gpu").into()),
    };
    let device = device.with_precision(precision)?;
    println!("device: {}", device.name());
    Ok(device)
}
