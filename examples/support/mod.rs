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

mod plot;
mod series;
mod text;

// Each example uses some of these, none all of them.
#[allow(unused_imports)]
pub use plot::{plot_losses, write_plot};
#[allow(unused_imports)]
pub use series::{Scaler, SeriesWindows};
#[allow(unused_imports)]
pub use text::{
    CharBatch, CharCorpus, Vocab, char_batch, char_batch_at, char_eval_batches, one_hot,
    sample_logits, unigram_entropy_bits,
};

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgpu_lstm::{Device, Precision};

// ---------------------------------------------------------------------------
// Randomness, progress
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
    // As text: `main` prints an error with `Debug`.
    let device = device
        .with_precision(precision)
        .map_err(|e| e.to_string())?;
    println!("device: {}", device.name());
    Ok(device)
}
