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
use wgpu_lstm::reference::Gradients;
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

/// Asserts every gradient of `got` within `tol` of its tensor's largest
/// magnitude in `want` (see [`assert_close_to_max`]): each parameter,
/// `d_input`, and `d_h_0` and `d_c_0` when the pass started from a given state.
pub fn assert_grads_close<W: Real>(
    name: &str,
    got: &Gradients<f32>,
    want: &Gradients<W>,
    with_state: bool,
    tol: f64,
) {
    let (g, w) = (got.weights.named_params(), want.weights.named_params());
    assert_eq!(g.len(), w.len(), "{name}: parameter count");
    for ((n, _, g), (_, _, w)) in g.iter().zip(&w) {
        assert_close_to_max(&format!("{name}/{n}"), g, w, tol);
    }
    let mut pairs = vec![("d_input", &got.d_input, &want.d_input)];
    if with_state {
        pairs.push(("d_h_0", &got.d_h_0, &want.d_h_0));
        pairs.push(("d_c_0", &got.d_c_0, &want.d_c_0));
    }
    for (what, g, w) in pairs {
        assert_eq!(g.shape(), w.shape(), "{name}/{what}");
        assert_close_to_max(&format!("{name}/{what}"), g.data(), w.data(), tol);
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

/// The adding problem (Hochreiter & Schmidhuber 1997): `[T, B, 2]` inputs (a
/// value in [0, 1) and a marker at two steps, one in each half) and `[B]`
/// targets, the sum of the two marked values.
pub fn adding_batch(rng: &mut impl Rng, t: usize, b: usize) -> (Vec<f32>, Vec<f32>) {
    let mut x = vec![0.0f32; t * b * 2];
    for v in x.iter_mut().step_by(2) {
        *v = rng.random::<f32>();
    }
    let mut y = vec![0.0f32; b];
    for (r, y) in y.iter_mut().enumerate() {
        for s in [rng.random_range(0..t / 2), rng.random_range(t / 2..t)] {
            x[(s * b + r) * 2 + 1] = 1.0;
            *y += x[(s * b + r) * 2];
        }
    }
    (x, y)
}
