//! The reference GRU cell: PyTorch's `nn.GRU`, forward and backward through
//! time for one layer·direction, in plain loops (DESIGN.md §9). The layers,
//! directions, lengths and dropout between layers around it are those of
//! `forward.rs` and `backward.rs`.
//!
//! Per step, with gate blocks r, z, n of H rows in `W_ih`, `W_hh` and the
//! biases (PyTorch's order):
//! ```text
//! gi = W_ih x_t + b_ih          gh = W_hh h_{t-1} + b_hh        (each [3H])
//! r = σ(gi_r + gh_r)            z = σ(gi_z + gh_z)
//! n = tanh(gi_n + r ⊙ gh_n)
//! h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}
//! ```
//! and backward, from dh = dy_t + dh_carry:
//! ```text
//! dn = dh ⊙ (1 − z)             dz = dh ⊙ (h_{t-1} − n)
//! dn_pre = dn ⊙ (1 − n²)        dr_pre = dn_pre ⊙ gh_n ⊙ r(1 − r)
//! dz_pre = dz ⊙ z(1 − z)
//! dgi = [dr_pre, dz_pre, dn_pre]     dgh = [dr_pre, dz_pre, dn_pre ⊙ r]
//! dh_carry = dgh · W_hh + dh ⊙ z
//! ```
//! then, over all T·B rows at once: dW_ih = dGiᵀ·X, db_ih = Σ dGi,
//! dW_hh = dGhᵀ·H_prev, db_hh = Σ dGh, dX = dGi·W_ih.
//!
//! The cache keeps, per step, r, z, n and gh_n in the LSTM's [T, B, 4H]
//! `gates` buffer, so both cells save the same amount.
//!
//! With the variational dropouts (as Keras' GRU `dropout` and
//! `recurrent_dropout`, one mask per sequence held over time): x_t is
//! x_t ⊙ m_x in gi, and h_{t-1} is h_{t-1} ⊙ m_h where it enters gh, while the
//! update z ⊙ h_{t-1} keeps the unmasked state. Backward, dX = (dGi·W_ih) ⊙
//! m_x, dh_carry = (dGh·W_hh) ⊙ m_h + dh ⊙ z, and dW_ih, dW_hh take the
//! masked input and state.

use super::backward::{Seen, add_input_grad, recurrent_weight_grad};
use super::forward::{Direction, DirectionCache, mask_rows};
use crate::gemm::{MatRef, Threads, matmul};
use crate::real::Real;
use crate::weights::LayerWeights;

/// b repeated for each of `rows` rows, or zeros without a bias: [rows, 3H].
fn bias_rows<T: Real>(bias: Option<&[T]>, rows: usize, width: usize) -> Vec<T> {
    match bias {
        Some(b) => b.repeat(rows),
        None => vec![T::zero(); rows * width],
    }
}

impl<T: Real> Direction<'_, T> {
    /// The GRU recurrence over `x` ([T, B, in]) from `h_0` ([B, H]),
    /// writing this direction's columns of `out`.
    /// `masks`: the input [B, in] and recurrent [B, H] dropout masks.
    pub(super) fn gru_forward(
        &self,
        x: &[T],
        h_0: Vec<T>,
        masks: (Option<Vec<T>>, Option<Vec<T>>),
        out: &mut [T],
    ) -> DirectionCache<T> {
        let (hid, bsz, tb) = (self.hidden, self.batch, self.seq_len * self.batch);
        let w: &LayerWeights<T> = self.weights;
        let (input_mask, recurrent_mask) = masks;
        let masked_x = input_mask.as_ref().map(|m| mask_rows(x, m, self.seq_len));
        let x = masked_x.as_deref().unwrap_or(x);

        // 1. Input projection for the whole sequence, one GEMM:
        //    GI = X · W_ihᵀ + b_ih                          [T·B, 3H]
        let mut gi = bias_rows(w.bias_ih.as_deref(), tb, 3 * hid);
        matmul(
            Threads::One,
            &mut gi,
            MatRef::new(x, tb, self.input_size),
            MatRef::new(&w.weight_ih, 3 * hid, self.input_size).t(),
            true,
        );

        // 2. The recurrence, one step at a time.
        let mut h = h_0.clone();
        let mut h_all = vec![T::zero(); tb * hid];
        let mut cache = vec![T::zero(); tb * 4 * hid];
        let b_hh = w.bias_hh.as_deref();
        for t in self.steps() {
            // GH = h_{t-1} · W_hhᵀ + b_hh                       [B, 3H]
            let mut gh = bias_rows(b_hh, bsz, 3 * hid);
            let h_in = match &recurrent_mask {
                Some(m) => mask_rows(&h, m, 1),
                None => h.clone(),
            };
            matmul(
                Threads::One,
                &mut gh,
                MatRef::new(&h_in, bsz, hid),
                MatRef::new(&w.weight_hh, 3 * hid, hid).t(),
                true,
            );
            for b in 0..bsz {
                if t >= self.lengths[b] {
                    continue; // padded step: state carries over, output stays 0
                }
                let row = t * bsz + b;
                let gi = &gi[row * 3 * hid..(row + 1) * 3 * hid];
                let gh = &gh[b * 3 * hid..(b + 1) * 3 * hid];
                let saved = &mut cache[row * 4 * hid..(row + 1) * 4 * hid];
                for j in 0..hid {
                    let r = (gi[j] + gh[j]).sigmoid();
                    let z = (gi[hid + j] + gh[hid + j]).sigmoid();
                    let gh_n = gh[2 * hid + j];
                    let n = (gi[2 * hid + j] + r * gh_n).tanh_act();
                    let h_prev = h[b * hid + j];
                    let h_new = (T::one() - z) * n + z * h_prev;
                    (
                        saved[j],
                        saved[hid + j],
                        saved[2 * hid + j],
                        saved[3 * hid + j],
                    ) = (r, z, n, gh_n);
                    h[b * hid + j] = h_new;
                    out[row * self.out_stride + self.out_offset + j] = h_new;
                }
            }
            h_all[t * bsz * hid..(t + 1) * bsz * hid].copy_from_slice(&h);
        }
        DirectionCache {
            gates: cache,
            c: Vec::new(),
            h: h_all,
            h_0,
            c_0: Vec::new(),
            input_mask,
            recurrent_mask,
            layer_norm: None,
        }
    }

    /// Backward through one GRU layer·direction. Accumulates into `d_input`
    /// ([T, B, in]; empty when no input gradient is wanted) and writes this
    /// direction's parameter gradients; returns dh_0 [B, H].
    pub(super) fn gru_backward(
        &self,
        x: &[T],
        saved: &DirectionCache<T>,
        dy: &[T],
        d_h_n: Vec<T>,
        grads: &mut LayerWeights<T>,
        d_input: &mut [T],
    ) -> Vec<T> {
        let (hid, bsz, tb) = (self.hidden, self.batch, self.seq_len * self.batch);
        let one = T::one();
        // Written at valid rows; padded rows must read as zero in the
        // weight gradients below.
        let (mut d_gi, mut d_gh) = (vec![T::zero(); tb * 3 * hid], vec![T::zero(); tb * 3 * hid]);
        let mut dh_carry = d_h_n;
        // dh ⊙ z: the part of dh_{t-1} that skips the gates.
        let mut dh_direct = vec![T::zero(); bsz * hid];
        let mut dh_rec = vec![T::zero(); bsz * hid];
        // The hidden state entering step t, in this direction's visiting order.
        let h_prev = |t: usize, b: usize, j: usize| match self.previous_step(t) {
            Some(p) => saved.h[(p * bsz + b) * hid + j],
            None => saved.h_0[b * hid + j],
        };
        for t in self.steps().rev() {
            for b in 0..bsz {
                if t >= self.lengths[b] {
                    continue; // padded step: gradients pass through to earlier steps
                }
                let row = t * bsz + b;
                let g = &saved.gates[row * 4 * hid..(row + 1) * 4 * hid];
                let dgi = &mut d_gi[row * 3 * hid..(row + 1) * 3 * hid];
                let dgh = &mut d_gh[row * 3 * hid..(row + 1) * 3 * hid];
                for j in 0..hid {
                    let (r, z, n, gh_n) = (g[j], g[hid + j], g[2 * hid + j], g[3 * hid + j]);
                    let dh =
                        dy[row * self.out_stride + self.out_offset + j] + dh_carry[b * hid + j];
                    let dn = dh * (one - z);
                    let dz = dh * (h_prev(t, b, j) - n);
                    let dn_pre = dn * (one - n * n);
                    let dr_pre = dn_pre * gh_n * r * (one - r);
                    let dz_pre = dz * z * (one - z);
                    (dgi[j], dgi[hid + j], dgi[2 * hid + j]) = (dr_pre, dz_pre, dn_pre);
                    (dgh[j], dgh[hid + j], dgh[2 * hid + j]) = (dr_pre, dz_pre, dn_pre * r);
                    dh_direct[b * hid + j] = dh * z;
                }
            }
            // dh_{t-1} = dGh_t · W_hh + dh ⊙ z                  [B, H]
            let rows = t * bsz * 3 * hid..(t + 1) * bsz * 3 * hid;
            matmul(
                Threads::One,
                &mut dh_rec,
                MatRef::new(&d_gh[rows], bsz, 3 * hid),
                MatRef::new(&self.weights.weight_hh, 3 * hid, hid),
                false,
            );
            if let Some(m) = &saved.recurrent_mask {
                dh_rec.iter_mut().zip(m).for_each(|(d, &m)| *d = *d * m);
            }
            for b in (0..bsz).filter(|&b| t < self.lengths[b]) {
                for j in b * hid..(b + 1) * hid {
                    dh_carry[j] = dh_rec[j] + dh_direct[j];
                }
            }
        }
        // Weight gradients: one GEMM each over all T·B rows, on the input
        // and states as the products saw them.
        let seen = Seen::new(x, saved, self.seq_len, mask_rows);
        let (h_0, h_saved) = seen.h(saved);
        matmul(
            Threads::One,
            &mut grads.weight_ih,
            MatRef::new(&d_gi, tb, 3 * hid).t(),
            MatRef::new(seen.x(x), tb, self.input_size),
            false,
        );
        recurrent_weight_grad(
            Threads::One,
            &mut grads.weight_hh,
            &d_gh,
            (h_0, h_saved),
            (self.seq_len, bsz, hid),
            self.reverse,
        );
        for (db, dg) in [(&mut grads.bias_ih, &d_gi), (&mut grads.bias_hh, &d_gh)] {
            if let Some(db) = db {
                for row in dg.chunks_exact(3 * hid) {
                    db.iter_mut().zip(row).for_each(|(d, &g)| *d = *d + g);
                }
            }
        }
        // dX += (dGi · W_ih) ⊙ m_x                        [T·B, in]
        if !d_input.is_empty() {
            add_input_grad(
                Threads::One,
                d_input,
                MatRef::new(&d_gi, tb, 3 * hid),
                MatRef::new(&self.weights.weight_ih, 3 * hid, self.input_size),
                saved.input_mask.as_deref(),
            );
        }
        dh_carry
    }
}
