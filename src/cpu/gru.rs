//! The CPU engine's GRU, one layer·direction at a time: the recurrence of
//! `reference/gru.rs` (which states the math), with every matrix product a
//! threaded GEMM and the elementwise step in vectors (`gru_cell.rs`). The
//! layers, directions, lengths and dropout between layers around it are
//! those of `forward.rs` and `backward.rs`.
//!
//! Forward: GI = X·W_ihᵀ + b_ih for all T·B rows in one GEMM; then per step
//! one GEMM GH = h_{t-1}·W_hhᵀ + b_hh [B, 3H] and the elementwise cell.
//! Backward: per step the elementwise cell and one GEMM dGh_t·W_hh [B, H];
//! then the weight gradients as GEMMs over the whole sequence.

use super::forward::{Direction, DirectionResult, mask_steps};
use super::gru_cell::{BackwardRow, ForwardRow, backward_row, forward_row};
use super::scratch;
use super::simd::Isa;
use crate::gemm::{MatRef, Threads, matmul};
use crate::reference::{DirectionCache, Seen, add_input_grad, recurrent_weight_grad};
use crate::weights::LayerWeights;

/// `m` [rows, cols] transposed to [cols, rows], row-major, in tiles that
/// stay in cache.
fn transposed(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut t = scratch::reused(rows * cols);
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    t[c * rows + r] = m[r * cols + c];
                }
            }
        }
    }
    t
}

/// `buf` [rows, n] set to `bias` [n] in every row, or to zeros.
fn fill_rows(buf: &mut [f32], bias: Option<&[f32]>) {
    match bias {
        Some(b) => buf
            .chunks_exact_mut(b.len())
            .for_each(|row| row.copy_from_slice(b)),
        None => buf.fill(0.0),
    }
}

impl Direction<'_> {
    /// The GRU recurrence over `x` ([T, B, in]) from `h_0` ([B, H]),
    /// writing this direction's columns of `out`.
    /// `masks`: the input [B, in] and recurrent [B, H] dropout masks of a
    /// training pass (as the reference's GRU applies them).
    pub(super) fn gru_forward(
        &self,
        x: &[f32],
        h_0: Vec<f32>,
        masks: (Option<Vec<f32>>, Option<Vec<f32>>),
        out: &mut [f32],
    ) -> DirectionResult {
        let (hid, bsz, tb) = (self.hidden, self.batch, self.seq_len * self.batch);
        let w: &LayerWeights<f32> = self.weights;
        let (input_mask, recurrent_mask) = masks;
        let masked_x = input_mask.as_ref().map(|m| mask_steps(x, m));
        let x = masked_x.as_deref().unwrap_or(x);
        // h ⊙ m_h, which the recurrent product reads under recurrent dropout.
        let mut h_in = vec![
            0.0;
            if recurrent_mask.is_some() {
                bsz * hid
            } else {
                0
            }
        ];
        let isa = Isa::detect();
        // W_ihᵀ [in, 3H] and W_hhᵀ [H, 3H], row-major: the gemm crate reads
        // a right-hand side laid out so without repacking it at every call,
        // which makes a step's small product several times faster.
        let w_ih_t = transposed(&w.weight_ih, 3 * hid, self.input_size);
        let w_hh_t = transposed(&w.weight_hh, 3 * hid, hid);

        // 1. GI = X · W_ihᵀ + b_ih                              [T·B, 3H]
        let mut gi = scratch::reused(tb * 3 * hid);
        fill_rows(&mut gi, w.bias_ih.as_deref());
        matmul(
            Threads::Pool,
            &mut gi,
            MatRef::new(x, tb, self.input_size),
            MatRef::new(&w_ih_t, self.input_size, 3 * hid),
            true,
        );

        // 2. The recurrence. Saved for the backward pass: r, z, n, gh_n
        //    [T, B, 4H] at valid rows (padded rows are never read) and h
        //    after every step (padding carries it).
        let mut h = h_0.clone();
        let mut gh = vec![0.0; bsz * 3 * hid];
        let kept = |n: usize| if self.save { n } else { 0 };
        let (mut gates, mut h_all) = (
            scratch::reused(kept(tb * 4 * hid)),
            scratch::reused(kept(tb * hid)),
        );
        for t in self.steps() {
            // GH = h_{t-1} · W_hhᵀ + b_hh                       [B, 3H]
            fill_rows(&mut gh, w.bias_hh.as_deref());
            let h_read = match &recurrent_mask {
                Some(m) => {
                    for ((o, &v), &k) in h_in.iter_mut().zip(&h).zip(m) {
                        *o = v * k;
                    }
                    &h_in[..]
                }
                None => &h[..],
            };
            matmul(
                Threads::Pool,
                &mut gh,
                MatRef::new(h_read, bsz, hid),
                MatRef::new(&w_hh_t, hid, 3 * hid),
                true,
            );
            for b in (0..bsz).filter(|&b| t < self.lengths[b]) {
                let row = t * bsz + b;
                let at = row * self.out_stride + self.out_offset;
                forward_row(
                    isa,
                    ForwardRow {
                        gi: &gi[row * 3 * hid..(row + 1) * 3 * hid],
                        gh: &gh[b * 3 * hid..(b + 1) * 3 * hid],
                        h: &mut h[b * hid..(b + 1) * hid],
                        out: &mut out[at..at + hid],
                        saved: self
                            .save
                            .then(|| &mut gates[row * 4 * hid..(row + 1) * 4 * hid]),
                    },
                );
            }
            if self.save {
                h_all[t * bsz * hid..(t + 1) * bsz * hid].copy_from_slice(&h);
            }
        }
        for v in [gi, w_ih_t, w_hh_t].into_iter().chain(masked_x) {
            scratch::recycle(v);
        }
        DirectionResult {
            h_last: h,
            c_last: Vec::new(),
            cache: DirectionCache {
                gates,
                c: Vec::new(),
                h: h_all,
                h_0,
                c_0: Vec::new(),
                input_mask,
                recurrent_mask,
                layer_norm: None,
            },
        }
    }

    /// Backward through one GRU layer·direction. Accumulates into `d_input`
    /// ([T, B, in]; empty when no input gradient is wanted) and writes this
    /// direction's parameter gradients; returns dh_0 [B, H].
    pub(super) fn gru_backward(
        &self,
        x: &[f32],
        saved: &DirectionCache<f32>,
        dy: &[f32],
        d_h_n: Vec<f32>,
        grads: &mut LayerWeights<f32>,
        d_input: &mut [f32],
    ) -> Vec<f32> {
        let (hid, bsz, tb) = (self.hidden, self.batch, self.seq_len * self.batch);
        let isa = Isa::detect();
        // Written at valid rows; padded rows must read as zero in the
        // weight gradients below.
        let padded = self.lengths.iter().any(|&n| n < self.seq_len);
        let take = |n| {
            if padded {
                scratch::zeroed(n)
            } else {
                scratch::reused(n)
            }
        };
        let (mut d_gi, mut d_gh) = (take(tb * 3 * hid), take(tb * 3 * hid));
        let mut dh_carry = d_h_n;
        let (mut dh_direct, mut dh_rec) = (vec![0.0; bsz * hid], vec![0.0; bsz * hid]);
        for t in self.steps().rev() {
            let prev = self.previous_step(t);
            for b in (0..bsz).filter(|&b| t < self.lengths[b]) {
                let row = t * bsz + b;
                let at = row * self.out_stride + self.out_offset;
                let (units, gates) = (b * hid..(b + 1) * hid, row * 3 * hid..(row + 1) * 3 * hid);
                backward_row(
                    isa,
                    BackwardRow {
                        saved: &saved.gates[row * 4 * hid..(row + 1) * 4 * hid],
                        dy: &dy[at..at + hid],
                        dh_carry: &dh_carry[units.clone()],
                        h_prev: match prev {
                            Some(p) => &saved.h[(p * bsz + b) * hid..(p * bsz + b + 1) * hid],
                            None => &saved.h_0[units.clone()],
                        },
                        d_gi: &mut d_gi[gates.clone()],
                        d_gh: &mut d_gh[gates],
                        dh_direct: &mut dh_direct[units],
                    },
                );
            }
            // dh_{t-1} = dGh_t · W_hh + dh ⊙ z                  [B, H]
            matmul(
                Threads::Pool,
                &mut dh_rec,
                MatRef::new(
                    &d_gh[t * bsz * 3 * hid..(t + 1) * bsz * 3 * hid],
                    bsz,
                    3 * hid,
                ),
                MatRef::new(&self.weights.weight_hh, 3 * hid, hid),
                false,
            );
            if let Some(m) = &saved.recurrent_mask {
                // h_{t-1} entered gh as h ⊙ m_h.
                dh_rec.iter_mut().zip(m).for_each(|(d, &m)| *d *= m);
            }
            for b in (0..bsz).filter(|&b| t < self.lengths[b]) {
                let units = b * hid..(b + 1) * hid;
                for ((c, &r), &d) in dh_carry[units.clone()]
                    .iter_mut()
                    .zip(&dh_rec[units.clone()])
                    .zip(&dh_direct[units])
                {
                    *c = r + d;
                }
            }
        }

        // Weight gradients: one GEMM each over all T·B rows, on the input
        // and state as the products saw them.
        let seen = Seen::new(x, saved, self.seq_len, |r, m, _| mask_steps(r, m));
        let (h_0, h_saved) = seen.h(saved);
        let dgi = MatRef::new(&d_gi, tb, 3 * hid);
        matmul(
            Threads::Pool,
            &mut grads.weight_ih,
            dgi.t(),
            MatRef::new(seen.x(x), tb, self.input_size),
            false,
        );
        recurrent_weight_grad(
            Threads::Pool,
            &mut grads.weight_hh,
            &d_gh,
            (h_0, h_saved),
            (self.seq_len, bsz, hid),
            self.reverse,
        );
        for (db, dg) in [(&mut grads.bias_ih, &d_gi), (&mut grads.bias_hh, &d_gh)] {
            if let Some(db) = db {
                for row in dg.chunks_exact(3 * hid) {
                    db.iter_mut().zip(row).for_each(|(d, &g)| *d += g);
                }
            }
        }
        // dX += dGi · W_ih                                  [T·B, in]
        if !d_input.is_empty() {
            add_input_grad(
                Threads::Pool,
                d_input,
                dgi,
                MatRef::new(&self.weights.weight_ih, 3 * hid, self.input_size),
                saved.input_mask.as_deref(),
            );
        }
        seen.into_buffers().for_each(scratch::recycle);
        scratch::recycle(d_gi);
        scratch::recycle(d_gh);
        dh_carry
    }
}
