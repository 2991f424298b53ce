//! A GRU on the LSTM's GPU machinery: its weights padded to four gate slots.
//!
//! The step kernels, the input projection GEMM and the wavefront all work on
//! four gate rows per unit. A GRU's three (r, z, n) are laid out there as
//!
//! ```text
//! W_ih slots (r, z, n, 0)        b_ih slots (b_ir, b_iz, b_in, 0)
//! W_hh slots (r, z, 0, n)        b_hh slots (b_hr, b_hz, 0, b_hn)
//! ```
//!
//! so that the input projection plus the recurrent product give, per unit,
//! `pre = (W_ir x + W_hr h + b_r, W_iz x + W_hz h + b_z, W_in x + b_in,
//! W_hn h + b_hn)`: exactly what `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`
//! needs apart (`gru_cell` in `shaders/common.wgsl`). The padding costs a
//! quarter more weight memory and projection work than three slots would,
//! and no new kernel layout.
//!
//! The backward pass keeps the same shapes: the saved gates are (r, z, n,
//! W_hn h + b_hn) and the gate gradients (dr, dz, dn, dn ⊙ r), so dX = dG·W_ih
//! and the recurrent carry dG·W_hh come out right through the zero slots.
//! The weight gradients of the padding slots are not zero, so training
//! clears them before the optimizer reads them (`zero_padding`).

use crate::weights::LayerWeights;

/// The padding slot of W_ih's and b_ih's rows, and of W_hh's and b_hh's.
pub(in crate::gpu) const IH_PAD: usize = 3;
pub(in crate::gpu) const HH_PAD: usize = 2;

/// A GRU layer·direction ([3H, ..] in PyTorch's layout, gates r, z, n) as
/// the four-slot [4H, ..] weights of the module docs.
pub(in crate::gpu) fn pad(w: &LayerWeights<f32>, hidden: usize) -> LayerWeights<f32> {
    // Slot q of the padded matrix takes gate `from[q]` of the GRU's, or zeros.
    let spread = |m: &[f32], from: [Option<usize>; 4]| -> Vec<f32> {
        let cols = m.len() / (3 * hidden);
        let mut out = vec![0.0; 4 * hidden * cols];
        for (q, g) in from.iter().enumerate() {
            if let Some(g) = g {
                out[q * hidden * cols..(q + 1) * hidden * cols]
                    .copy_from_slice(&m[g * hidden * cols..(g + 1) * hidden * cols]);
            }
        }
        out
    };
    let ih = [Some(0), Some(1), Some(2), None];
    let hh = [Some(0), Some(1), None, Some(2)];
    LayerWeights {
        weight_ih: spread(&w.weight_ih, ih),
        weight_hh: spread(&w.weight_hh, hh),
        bias_ih: w.bias_ih.as_deref().map(|b| spread(b, ih)),
        bias_hh: w.bias_hh.as_deref().map(|b| spread(b, hh)),
        weight_hr: None,
        layer_norm: None,
    }
}

/// The inverse of [`pad`]: the GRU's [3H, ..] weights out of four slots.
pub(in crate::gpu) fn unpad(w: &LayerWeights<f32>, hidden: usize) -> LayerWeights<f32> {
    let gather = |m: &[f32], from: [usize; 3]| -> Vec<f32> {
        let cols = m.len() / (4 * hidden);
        from.iter()
            .flat_map(|&q| {
                m[q * hidden * cols..(q + 1) * hidden * cols]
                    .iter()
                    .copied()
            })
            .collect()
    };
    let ih = [0, 1, 2];
    let hh = [0, 1, 3];
    LayerWeights {
        weight_ih: gather(&w.weight_ih, ih),
        weight_hh: gather(&w.weight_hh, hh),
        bias_ih: w.bias_ih.as_deref().map(|b| gather(b, ih)),
        bias_hh: w.bias_hh.as_deref().map(|b| gather(b, hh)),
        weight_hr: None,
        layer_norm: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_round_trips_and_zeroes_the_padding_slots() {
        let (h, i) = (3, 2);
        let seq = |n: usize, k: f32| (0..n).map(|v| v as f32 + k).collect::<Vec<_>>();
        let w = LayerWeights {
            weight_ih: seq(3 * h * i, 1.0),
            weight_hh: seq(3 * h * h, 100.0),
            bias_ih: Some(seq(3 * h, 200.0)),
            bias_hh: Some(seq(3 * h, 300.0)),
            weight_hr: None,
            layer_norm: None,
        };
        let p = pad(&w, h);
        assert_eq!(p.weight_ih.len(), 4 * h * i);
        assert!(p.weight_ih[IH_PAD * h * i..].iter().all(|&v| v == 0.0));
        assert!(
            p.weight_hh[HH_PAD * h * h..3 * h * h]
                .iter()
                .all(|&v| v == 0.0)
        );
        // n's recurrent rows sit in slot 3.
        assert_eq!(p.weight_hh[3 * h * h..], w.weight_hh[2 * h * h..]);
        assert_eq!(unpad(&p, h), w);
    }
}
