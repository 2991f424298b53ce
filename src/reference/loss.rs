//! Losses with PyTorch's mean reductions. Each returns the scalar loss and
//! its gradient with respect to the prediction, the start of the backward
//! pass. Sums are accumulated in `T`, in index order.

use crate::error::{LstmError, Result};
use crate::real::Real;

/// PyTorch's `nn.MSELoss()` (mean over all elements):
/// loss = Σ (p - y)² / N, d loss / d p = 2 (p - y) / N.
///
/// `target` must have the length of `pred` ([`LstmError::ShapeMismatch`]
/// named `target` otherwise); both must be non-empty (PyTorch returns NaN
/// for empty tensors; here it is an [`LstmError::InvalidValue`]).
pub fn mse<T: Real>(pred: &[T], target: &[T]) -> Result<(T, Vec<T>)> {
    if target.len() != pred.len() {
        return Err(LstmError::shape("target", &[pred.len()], &[target.len()]));
    }
    if pred.is_empty() {
        return Err(LstmError::value(
            "pred",
            "is empty; the mean of no elements is undefined",
        ));
    }
    let n = T::from_f64(pred.len() as f64);
    let two = T::from_f64(2.0);
    let mut sum = T::zero();
    let grad = pred
        .iter()
        .zip(target)
        .map(|(&p, &y)| {
            let d = p - y;
            sum = sum + d * d;
            two * d / n
        })
        .collect();
    Ok((sum / n, grad))
}

/// Mean squared error over the valid steps of padded, time-major sequences:
/// `pred` and `target` are [T, B, F]; position (t, b, f) counts when
/// t < lengths\[b\]. With n = F · Σ_b lengths\[b\] valid elements,
/// loss = Σ_valid (p - y)² / n and d loss / d p = 2 (p - y) / n at valid
/// positions, 0 at padded ones. With `lengths = None` every step is valid
/// and this equals [`mse`].
///
/// Errors: `pred` not [T, B, F] ([`LstmError::ShapeMismatch`] `pred`),
/// `target` not the same ([`LstmError::ShapeMismatch`] `target`), `lengths`
/// not \[B\] or a length outside 1..=T, or no element at all
/// ([`LstmError::InvalidValue`]).
pub fn mse_masked<T: Real>(
    pred: &[T],
    target: &[T],
    seq_len: usize,
    batch: usize,
    features: usize,
    lengths: Option<&[usize]>,
) -> Result<(T, Vec<T>)> {
    let two = T::from_f64(2.0);
    masked_mean(pred, target, [seq_len, batch, features], lengths, |p, y| {
        let d = p - y;
        (d * d, two * d)
    })
}

/// PyTorch's `nn.BCEWithLogitsLoss()` (mean) over the valid steps of padded,
/// time-major sequences, on logits z and targets y in \[0, 1\] (soft labels
/// allowed), both [T, B, F], masked as [`mse_masked`]. Per element, in the
/// stable form PyTorch uses,
/// ℓ = max(z, 0) − z·y + ln(1 + exp(−|z|)), and d ℓ / d z = σ(z) − y; the
/// loss is their mean over the n valid elements, the gradient divided by n.
/// This is the binary cross-entropy of σ(z), Keras' `binary_crossentropy`
/// after a sigmoid output, without its rounding at saturation.
///
/// Errors: those of [`mse_masked`], and a target outside \[0, 1\]
/// ([`LstmError::InvalidValue`] `target`, naming the index).
pub fn bce_with_logits_masked<T: Real>(
    pred: &[T],
    target: &[T],
    seq_len: usize,
    batch: usize,
    features: usize,
    lengths: Option<&[usize]>,
) -> Result<(T, Vec<T>)> {
    if let Some(i) = target
        .iter()
        .position(|&y| !(y >= T::zero() && y <= T::one()))
    {
        return Err(LstmError::value(
            "target",
            format!("target[{i}] = {} is outside [0, 1]", target[i].as_f64()),
        ));
    }
    masked_mean(pred, target, [seq_len, batch, features], lengths, |z, y| {
        let loss = z.max(T::zero()) - z * y + (-z.abs()).exp().ln_1p();
        (loss, z.sigmoid() - y)
    })
}

/// The mean of `elem(p, y).0` over the valid elements of [T, B, F] `pred`
/// and `target` (step t of sequence b is valid when t < lengths\[b\]), and
/// its gradient: `elem(p, y).1 / n` at valid elements, 0 at padded ones.
fn masked_mean<T: Real>(
    pred: &[T],
    target: &[T],
    shape: [usize; 3],
    lengths: Option<&[usize]>,
    elem: impl Fn(T, T) -> (T, T),
) -> Result<(T, Vec<T>)> {
    let [seq_len, batch, features] = shape;
    if pred.len() != seq_len * batch * features {
        return Err(LstmError::shape("pred", &shape, &[pred.len()]));
    }
    if target.len() != pred.len() {
        return Err(LstmError::shape("target", &shape, &[target.len()]));
    }
    let lengths: Vec<usize> = match lengths {
        None => vec![seq_len; batch],
        Some(l) if l.len() != batch => {
            return Err(LstmError::shape("lengths", &[batch], &[l.len()]));
        }
        Some(l) => {
            if let Some((b, &n)) = l.iter().enumerate().find(|&(_, &n)| n == 0 || n > seq_len) {
                return Err(LstmError::value(
                    "lengths",
                    format!("lengths[{b}] = {n}, but each length must be in 1..={seq_len} (T)"),
                ));
            }
            l.to_vec()
        }
    };
    let valid = features * lengths.iter().sum::<usize>();
    if valid == 0 {
        return Err(LstmError::value(
            "pred",
            "has no valid element to average over",
        ));
    }
    let n = T::from_f64(valid as f64);
    let mut sum = T::zero();
    let mut grad = vec![T::zero(); pred.len()];
    for t in 0..seq_len {
        for (b, &len) in lengths.iter().enumerate() {
            if t >= len {
                continue; // padded step: no loss, zero gradient
            }
            let at = (t * batch + b) * features;
            for i in at..at + features {
                let (l, g) = elem(pred[i], target[i]);
                sum = sum + l;
                grad[i] = g / n;
            }
        }
    }
    Ok((sum / n, grad))
}

/// PyTorch's `nn.CrossEntropyLoss(ignore_index=...)` with mean reduction,
/// on `logits` [N, classes] and class ids `targets` \[N\].
///
/// Per row i with target c: ℓᵢ = logsumexp(zᵢ) - zᵢ\[c\], computed stably as
/// PyTorch's log-softmax does: ℓᵢ = -((zᵢ\[c\] - m) - ln Σ_j exp(zᵢⱼ - m)) with
/// m = maxⱼ zᵢⱼ. The loss is the mean of ℓᵢ
/// over the n rows whose target is not `ignore_index`, and
/// d loss / d zᵢ = (softmax(zᵢ) - onehot(c)) / n for those rows, 0 for
/// ignored rows. `ignore_index: None` ignores nothing; PyTorch's default is
/// `Some(-100)`.
///
/// If every target is ignored this returns loss 0 and zero gradients
/// (PyTorch returns NaN, 0/0, there).
///
/// Errors: `classes` = 0 or `logits` not [N, classes]
/// ([`LstmError::ShapeMismatch`] `logits`/`targets`); a target outside
/// 0..classes that is not the ignore index ([`LstmError::InvalidValue`]
/// `targets`, naming the row and value).
pub fn cross_entropy<T: Real>(
    logits: &[T],
    classes: usize,
    targets: &[i64],
    ignore_index: Option<i64>,
) -> Result<(T, Vec<T>)> {
    let rows = targets.len();
    if classes == 0 {
        return Err(LstmError::value("classes", "must be at least 1, got 0"));
    }
    if logits.len() != rows * classes {
        return Err(LstmError::shape(
            "logits",
            &[rows, classes],
            &[logits.len()],
        ));
    }
    let mut counted = 0usize;
    for (i, &c) in targets.iter().enumerate() {
        if Some(c) == ignore_index {
            continue;
        }
        if c < 0 || c as u64 >= classes as u64 {
            return Err(LstmError::value(
                "targets",
                format!(
                    "targets[{i}] = {c}, but class ids must be in 0..{classes}{}",
                    ignore_index.map_or(String::new(), |k| format!(" or the ignore index {k}"))
                ),
            ));
        }
        counted += 1;
    }
    let mut grad = vec![T::zero(); logits.len()];
    if counted == 0 {
        return Ok((T::zero(), grad));
    }
    let n = T::from_f64(counted as f64);
    let mut sum = T::zero();
    for (i, &c) in targets.iter().enumerate() {
        if Some(c) == ignore_index {
            continue;
        }
        let z = &logits[i * classes..(i + 1) * classes];
        let g = &mut grad[i * classes..(i + 1) * classes];
        let m = z.iter().copied().fold(T::neg_infinity(), T::max);
        let mut denom = T::zero();
        for (gj, &zj) in g.iter_mut().zip(z) {
            *gj = (zj - m).exp(); // softmax numerator, normalised below
            denom = denom + *gj;
        }
        let c = c as usize;
        // -log_softmax(z)[c] = -((z[c] - m) - ln Σ): exact for large logits.
        sum = sum - ((z[c] - m) - denom.ln());
        for gj in g.iter_mut() {
            *gj = *gj / denom / n;
        }
        g[c] = g[c] - T::one() / n;
    }
    Ok((sum / n, grad))
}
