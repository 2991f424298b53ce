//! Helpers shared by the integration tests: seeded inputs and comparisons
//! that report where and by how much two tensors differ.
#![allow(dead_code)]

pub mod case;
pub mod gpu;
pub mod lstm_fixtures;
pub mod training;

use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgpu_lstm::{Real, Tensor};

/// A tensor of standard-uniform-ish values in [-scale, scale), seeded.
pub fn random_tensor<T: Real>(shape: &[usize], seed: u64, scale: f64) -> Tensor<T> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product();
    let data = (0..n)
        .map(|_| T::from_f64(rng.random_range(-scale..scale)))
        .collect();
    Tensor::new(shape.to_vec(), data).unwrap()
}

/// Asserts `|got - want| <= atol + rtol·|want|` element-wise, naming the
/// worst element on failure.
pub fn assert_close<A: Real, B: Real>(name: &str, got: &[A], want: &[B], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: lengths differ");
    let mut worst: Option<(usize, f64, f64, f64)> = None;
    let mut max_err = 0.0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.as_f64(), w.as_f64());
        let err = (g - w).abs();
        max_err = max_err.max(err);
        let excess = err - (atol + rtol * w.abs());
        if (excess > 0.0 || excess.is_nan()) && worst.is_none_or(|(_, _, _, e)| excess > e) {
            worst = Some((i, g, w, excess));
        }
    }
    if let Some((i, g, w, _)) = worst {
        panic!(
            "{name}: element {i} is {g:e}, expected {w:e} (atol {atol:e}, rtol {rtol:e}); \
             max abs error over the tensor {max_err:e}"
        );
    }
}

/// Asserts `|got - want| <= tol · max|want|`: a tolerance relative to the
/// tensor's largest magnitude, for gradients whose entries span many scales.
pub fn assert_close_to_max<A: Real, B: Real>(name: &str, got: &[A], want: &[B], tol: f64) {
    let scale = want.iter().map(|w| w.as_f64().abs()).fold(0.0, f64::max);
    assert_close(name, got, want, tol * scale.max(f64::MIN_POSITIVE), 0.0);
}

/// The repository root: `WGPU_LSTM_ROOT` when set (test executables run on
/// another machine than the one that built them), else where cargo built them.
pub fn root() -> PathBuf {
    std::env::var_os("WGPU_LSTM_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
