//! Layers around the LSTM: `nn.Linear`, `nn.Embedding`, and the selection of
//! each sequence's last valid step for many-to-one heads. Each has a forward
//! and a backward written out by hand.
//!
//! Shapes are programming contracts here (the caller builds them from its
//! own sizes), so a mismatch panics with a message; values that come from
//! data, such as token ids, are checked and reported as [`LstmError`]s.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{LstmError, Result};
use crate::gemm::{MatRef, Threads, matmul};
use crate::real::Real;

/// `nn.Linear(in_features, out_features)`: y = x · Wᵀ + b.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear<T = f32> {
    /// `in_features`: inputs per row.
    pub in_features: usize,
    /// `out_features`: outputs per row.
    pub out_features: usize,
    /// [out, in], PyTorch's layout.
    pub weight: Vec<T>,
    /// \[out\]
    pub bias: Vec<T>,
}

/// Gradients of [`Linear::backward`].
#[derive(Clone, Debug, PartialEq)]
pub struct LinearGrads<T = f32> {
    /// [out, in]: dW = dyᵀ · x.
    pub weight: Vec<T>,
    /// \[out\]: db = Σ_rows dy.
    pub bias: Vec<T>,
    /// [rows, in]: dx = dy · W.
    pub input: Vec<T>,
}

impl<T: Real> Linear<T> {
    /// PyTorch's default initialisation of `nn.Linear`: weight and bias both
    /// from U(-1/√in, 1/√in) (`kaiming_uniform_(a=√5)` reduces to that bound),
    /// drawn from a ChaCha8 stream seeded with `seed`, weight first (row-major),
    /// then bias.
    pub fn init(in_features: usize, out_features: usize, seed: u64) -> Self {
        let bound = 1.0 / (in_features.max(1) as f64).sqrt();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut draw = |n: usize| -> Vec<T> {
            (0..n)
                .map(|_| T::from_f64(rng.random_range(-bound..bound)))
                .collect()
        };
        let weight = draw(out_features * in_features);
        let bias = draw(out_features);
        Linear {
            in_features,
            out_features,
            weight,
            bias,
        }
    }

    fn check(&self, name: &str, data: &[T], rows: usize, cols: usize) {
        assert_eq!(
            self.weight.len(),
            self.out_features * self.in_features,
            "Linear: weight must be [out, in]"
        );
        assert_eq!(
            self.bias.len(),
            self.out_features,
            "Linear: bias must be [out]"
        );
        assert_eq!(
            data.len(),
            rows * cols,
            "Linear: `{name}` must be [rows = {rows}, {cols}]"
        );
    }

    /// y [rows, out] = x [rows, in] · Wᵀ + b.
    ///
    /// # Panics
    /// If `x` is not `rows · in_features` long.
    pub fn forward(&self, x: &[T], rows: usize) -> Vec<T> {
        self.check("x", x, rows, self.in_features);
        let (n_in, n_out) = (self.in_features, self.out_features);
        let mut y = Vec::with_capacity(rows * n_out);
        for _ in 0..rows {
            y.extend_from_slice(&self.bias);
        }
        matmul(
            Threads::One,
            &mut y,
            MatRef::new(x, rows, n_in),
            MatRef::new(&self.weight, n_out, n_in).t(),
            true,
        );
        y
    }

    /// Backward of [`forward`](Self::forward) at input `x` [rows, in] with
    /// upstream gradient `dy` [rows, out].
    ///
    /// # Panics
    /// If `x` or `dy` has the wrong length.
    pub fn backward(&self, x: &[T], rows: usize, dy: &[T]) -> LinearGrads<T> {
        self.check("x", x, rows, self.in_features);
        self.check("dy", dy, rows, self.out_features);
        let (n_in, n_out) = (self.in_features, self.out_features);
        let dy_m = MatRef::new(dy, rows, n_out);
        let mut weight = vec![T::zero(); n_out * n_in];
        matmul(
            Threads::One,
            &mut weight,
            dy_m.t(),
            MatRef::new(x, rows, n_in),
            false,
        );
        let mut bias = vec![T::zero(); n_out];
        for row in dy.chunks_exact(n_out.max(1)).take(rows) {
            bias.iter_mut().zip(row).for_each(|(b, &d)| *b = *b + d);
        }
        let mut input = vec![T::zero(); rows * n_in];
        matmul(
            Threads::One,
            &mut input,
            dy_m,
            MatRef::new(&self.weight, n_out, n_in),
            false,
        );
        LinearGrads {
            weight,
            bias,
            input,
        }
    }
}

/// `nn.Embedding(num_embeddings, embedding_dim)`: row lookup.
#[derive(Clone, Debug, PartialEq)]
pub struct Embedding<T = f32> {
    /// `num_embeddings`: rows, i.e. the vocabulary size.
    pub num_embeddings: usize,
    /// `embedding_dim`: values per row.
    pub embedding_dim: usize,
    /// [num, dim]
    pub weight: Vec<T>,
}

/// One standard normal from two uniforms of `rng` (Box–Muller, cosine
/// branch): √(-2 ln u₁) · cos(2π u₂) with u₁ ∈ (0, 1], u₂ ∈ [0, 1).
fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

impl<T: Real> Embedding<T> {
    /// PyTorch's default initialisation: every weight from N(0, 1), row-major,
    /// from a ChaCha8 stream seeded with `seed` (two uniforms per value; see
    /// `standard_normal`).
    pub fn init(num_embeddings: usize, embedding_dim: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let weight = (0..num_embeddings * embedding_dim)
            .map(|_| T::from_f64(standard_normal(&mut rng)))
            .collect();
        Embedding {
            num_embeddings,
            embedding_dim,
            weight,
        }
    }

    /// Looks up `tokens` \[N\]: returns [N, dim]. A token ≥ `num_embeddings`
    /// is an [`LstmError::InvalidValue`] naming its position and value.
    pub fn forward(&self, tokens: &[usize]) -> Result<Vec<T>> {
        let dim = self.embedding_dim;
        assert_eq!(
            self.weight.len(),
            self.num_embeddings * dim,
            "Embedding: weight must be [num, dim]"
        );
        let mut out = Vec::with_capacity(tokens.len() * dim);
        for (i, &tok) in tokens.iter().enumerate() {
            if tok >= self.num_embeddings {
                return Err(LstmError::value(
                    "tokens",
                    format!(
                        "tokens[{i}] = {tok}, but the embedding has {} rows (ids 0..{})",
                        self.num_embeddings, self.num_embeddings
                    ),
                ));
            }
            out.extend_from_slice(&self.weight[tok * dim..(tok + 1) * dim]);
        }
        Ok(out)
    }

    /// d loss / d weight [num, dim] from `dy` [N, dim]: row `tokens[i]`
    /// accumulates `dy[i]` (scatter-add; repeated tokens sum). Tokens must
    /// have passed [`forward`](Self::forward).
    ///
    /// # Panics
    /// If `dy` is not `N · dim` long or a token is out of range.
    pub fn backward(&self, tokens: &[usize], dy: &[T]) -> Vec<T> {
        let dim = self.embedding_dim;
        assert_eq!(
            dy.len(),
            tokens.len() * dim,
            "Embedding: dy must be [N, dim]"
        );
        let mut dw = vec![T::zero(); self.num_embeddings * dim];
        for (i, &tok) in tokens.iter().enumerate() {
            assert!(
                tok < self.num_embeddings,
                "Embedding: token {tok} out of range"
            );
            let row = &mut dw[tok * dim..(tok + 1) * dim];
            row.iter_mut()
                .zip(&dy[i * dim..(i + 1) * dim])
                .for_each(|(w, &d)| *w = *w + d);
        }
        dw
    }
}

fn check_lengths(seq_len: usize, batch: usize, lengths: Option<&[usize]>) {
    if let Some(l) = lengths {
        assert_eq!(l.len(), batch, "lengths must be [B]");
        assert!(
            l.iter().all(|&n| (1..=seq_len).contains(&n)),
            "every length must be in 1..={seq_len}, got {l:?}"
        );
    }
}

/// The output at each sequence's last valid step, for many-to-one heads:
/// from time-major `y` [T, B, F], returns [B, F] with row b = y[len_b - 1, b, :]
/// (len_b = T when `lengths` is `None`).
///
/// # Panics
/// If `y` is not [T, B, F] or a length is outside 1..=T.
pub fn last_valid_step<T: Real>(
    y: &[T],
    seq_len: usize,
    batch: usize,
    features: usize,
    lengths: Option<&[usize]>,
) -> Vec<T> {
    assert_eq!(y.len(), seq_len * batch * features, "y must be [T, B, F]");
    check_lengths(seq_len, batch, lengths);
    let mut out = Vec::with_capacity(batch * features);
    for b in 0..batch {
        let t = lengths.map_or(seq_len, |l| l[b]) - 1;
        let at = (t * batch + b) * features;
        out.extend_from_slice(&y[at..at + features]);
    }
    out
}

/// Backward of [`last_valid_step`]: `dlast` [B, F] placed at each sequence's
/// last valid step of a zero [T, B, F].
///
/// # Panics
/// If `dlast` is not [B, F] or a length is outside 1..=T.
pub fn last_valid_step_backward<T: Real>(
    dlast: &[T],
    seq_len: usize,
    batch: usize,
    features: usize,
    lengths: Option<&[usize]>,
) -> Vec<T> {
    assert_eq!(dlast.len(), batch * features, "dlast must be [B, F]");
    check_lengths(seq_len, batch, lengths);
    let mut dy = vec![T::zero(); seq_len * batch * features];
    for b in 0..batch {
        let t = lengths.map_or(seq_len, |l| l[b]) - 1;
        let at = (t * batch + b) * features;
        dy[at..at + features].copy_from_slice(&dlast[b * features..(b + 1) * features]);
    }
    dy
}
