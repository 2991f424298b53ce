//! The inter-layer dropout mask, drawn from a counter-based hash so that the
//! reference and every engine make bit-identical masks.
//!
//! Element (layer, t, b, unit) of the mask is kept when
//! `hash(seed, layer, t, b, unit) >= threshold(p)`, and kept values are scaled
//! by 1/(1-p). The hash chains the 32-bit PCG output permutation ("PCG hash",
//! Jarzynski & Olano, JCGT 2020) over the five counters, using only u32
//! wrapping arithmetic, so WGSL computes the same bits.

use crate::real::Real;

/// One round of the PCG-RXS-M-XS permutation of a 32-bit word.
#[inline]
pub fn pcg_hash(v: u32) -> u32 {
    let state = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let word = ((state >> ((state >> 28) + 4)) ^ state).wrapping_mul(277_803_737);
    (word >> 22) ^ word
}

/// The 32-bit hash of a mask element. `t` is the time index in the caller's
/// sequence order, `unit` indexes the layer's output features [0, D·H).
#[inline]
pub fn mask_hash(seed: u64, layer: u32, t: u32, b: u32, unit: u32) -> u32 {
    let mut h = pcg_hash(seed as u32);
    for word in [(seed >> 32) as u32, layer, t, b, unit] {
        h = pcg_hash(h ^ word);
    }
    h
}

/// The keep threshold for drop probability `p`: an element is kept when its
/// hash is `>=` this, which happens with probability 1 - p (to within 2^-32).
pub fn keep_threshold(p: f64) -> u32 {
    assert!((0.0..1.0).contains(&p), "dropout p must be in [0, 1)");
    (p * 4_294_967_296.0).round().min(u32::MAX as f64) as u32
}

/// Dropout parameters for one training forward pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// Drop probability, in [0, 1) (`nn.LSTM`'s `dropout`).
    pub p: f64,
    /// Seed of [`mask_hash`]; a different seed gives an independent mask.
    pub seed: u64,
}

impl Dropout {
    /// The mask for layer `layer`'s output, [T, B, units]: each element is 0
    /// or 1/(1-p).
    pub fn mask<T: Real>(
        &self,
        layer: usize,
        seq_len: usize,
        batch: usize,
        units: usize,
    ) -> Vec<T> {
        let threshold = keep_threshold(self.p);
        let kept = T::from_f64(1.0 / (1.0 - self.p));
        let mut mask = Vec::with_capacity(seq_len * batch * units);
        for t in 0..seq_len {
            for b in 0..batch {
                for u in 0..units {
                    let h = mask_hash(self.seed, layer as u32, t as u32, b as u32, u as u32);
                    mask.push(if h >= threshold { kept } else { T::zero() });
                }
            }
        }
        mask
    }
}

/// Which variational mask: on the input x_t, or on h_{t-1} where it enters
/// the recurrent product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskKind {
    /// Input dropout (Keras' `dropout`): one element per input feature.
    Input = 1,
    /// Recurrent dropout (Keras' `recurrent_dropout`): one element per
    /// hidden unit.
    Recurrent = 2,
}

/// A variational dropout mask (Gal & Ghahramani 2016): one element per
/// sequence (batch row) and unit, the same at every time step.
///
/// Element (b, unit) is kept when
/// `mask_hash(seed, stream, 0, b, unit) >= keep_threshold(p)`, with
/// `stream = kind << 28 | layer << 1 | direction` (kind 1 for the input,
/// 2 for the recurrent state). The input mask belongs to the layer: both
/// directions of a bidirectional layer read the same input, so they share
/// it (its direction bit is 0). The recurrent mask belongs to one
/// layer·direction. The inter-layer mask's `layer` word is below 2^28, so
/// the streams never meet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VariationalMask {
    /// Drop probability, in [0, 1).
    pub p: f64,
    /// The seed of the training step (the same one the inter-layer mask uses).
    pub seed: u64,
    /// Input or recurrent.
    pub kind: MaskKind,
    /// The layer, from 0.
    pub layer: usize,
    /// 0 forward, 1 reverse (ignored for [`MaskKind::Input`]).
    pub direction: usize,
}

impl VariationalMask {
    /// The hash's `layer` word for this mask.
    pub fn stream(&self) -> u32 {
        let direction = match self.kind {
            MaskKind::Input => 0,
            MaskKind::Recurrent => self.direction as u32,
        };
        ((self.kind as u32) << 28) | ((self.layer as u32) << 1) | direction
    }

    /// The mask, [B, units]: each element is 0 or 1/(1-p).
    pub fn mask<T: Real>(&self, batch: usize, units: usize) -> Vec<T> {
        let threshold = keep_threshold(self.p);
        let kept = T::from_f64(1.0 / (1.0 - self.p));
        let stream = self.stream();
        let mut mask = Vec::with_capacity(batch * units);
        for b in 0..batch {
            for u in 0..units {
                let h = mask_hash(self.seed, stream, 0, b as u32, u as u32);
                mask.push(if h >= threshold { kept } else { T::zero() });
            }
        }
        mask
    }
}

/// The variational masks of one layer·direction in a training pass with
/// `seed`, [B, in] and [B, H_out]; `None` where that dropout is off.
pub(crate) fn variational_masks<T: Real>(
    cfg: &crate::config::LstmConfig,
    seed: u64,
    layer: usize,
    direction: usize,
    batch: usize,
) -> (Option<Vec<T>>, Option<Vec<T>>) {
    let draw = |p: f64, kind: MaskKind, units: usize| {
        (p > 0.0).then(|| {
            VariationalMask {
                p,
                seed,
                kind,
                layer,
                direction,
            }
            .mask::<T>(batch, units)
        })
    };
    (
        draw(
            cfg.input_dropout,
            MaskKind::Input,
            cfg.layer_input_size(layer),
        ),
        draw(cfg.recurrent_dropout, MaskKind::Recurrent, cfg.hidden_out()),
    )
}
