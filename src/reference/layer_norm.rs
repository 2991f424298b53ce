//! The layer-normalised LSTM (Ba, Kiros & Hinton 2016), as `haste`'s
//! `LayerNormLSTM` formulates it, in plain loops. Per layer·direction, with
//! LN(v) = (v − mean(v)) / sqrt(var(v) + ε) over one row, ε = 1e-5, and the
//! variational masks of the plain LSTM where they are on:
//!
//! ```text
//! â = LN(x̃_t · W_ihᵀ) ⊙ γ_ih + β_ih        over the row's 4H
//! r̂ = LN(h̃_{t-1} · W_hhᵀ) ⊙ γ_hh + β_hh    over the row's 4H
//! pre = â + r̂ + b_ih + b_hh
//! i, f, o = σ(pre)   g = act(pre_g)
//! c_t = f ⊙ c_{t-1} + i ⊙ g                (c_t itself is carried)
//! h_t = o ⊙ act(LN(c_t) ⊙ γ_c + β_c)       over the row's H
//! ```
//!
//! The backward pass runs each norm's backward,
//! dv = (dŷ ⊙ γ − mean(dŷ ⊙ γ) − v̂ · mean(dŷ ⊙ γ ⊙ v̂)) / σ, with v̂ and 1/σ saved
//! by the forward pass; dW_ih and dW_hh take the gradients of the products
//! before their norms, the biases that of `pre`.

use super::backward::{Seen, add_input_grad, recurrent_weight_grad};
use super::forward::{Direction, DirectionCache, LayerNormCache, mask_rows};
use crate::gemm::{MatRef, Threads, matmul};
use crate::real::Real;
use crate::weights::{LayerNormWeights, LayerWeights};

/// nn.LayerNorm's default ε.
pub const LN_EPS: f64 = 1e-5;

/// Normalises `row` in place: (v − mean) / sqrt(var + ε), with the biased
/// variance; returns 1/sqrt(var + ε).
fn normalise<T: Real>(row: &mut [T]) -> T {
    let n = T::from_f64(row.len() as f64);
    let mean = row.iter().fold(T::zero(), |a, &v| a + v) / n;
    let var = row
        .iter()
        .fold(T::zero(), |a, &v| a + (v - mean) * (v - mean))
        / n;
    let rstd = T::one() / (var + T::from_f64(LN_EPS)).sqrt();
    row.iter_mut().for_each(|v| *v = (*v - mean) * rstd);
    rstd
}

/// The backward of `y = v̂ ⊙ γ + β` with `v̂ = LN(v)`: adds to dγ and dβ and
/// returns dv, from dy, v̂ and 1/σ.
fn norm_backward<T: Real>(
    dy: &[T],
    vhat: &[T],
    rstd: T,
    gain: &[T],
    (d_gain, d_bias): (&mut [T], &mut [T]),
) -> Vec<T> {
    let n = T::from_f64(dy.len() as f64);
    let mut dxhat = Vec::with_capacity(dy.len());
    for k in 0..dy.len() {
        d_gain[k] = d_gain[k] + dy[k] * vhat[k];
        d_bias[k] = d_bias[k] + dy[k];
        dxhat.push(dy[k] * gain[k]);
    }
    let mean = dxhat.iter().fold(T::zero(), |a, &v| a + v) / n;
    let mean_x = dxhat
        .iter()
        .zip(vhat)
        .fold(T::zero(), |a, (&d, &v)| a + d * v)
        / n;
    dxhat
        .iter()
        .zip(vhat)
        .map(|(&d, &v)| (d - mean - v * mean_x) * rstd)
        .collect()
}

impl<T: Real> Direction<'_, T> {
    /// The forward pass of the module docs over `x` ([T, B, in]) from
    /// (h_0, c_0), writing this direction's columns of `out`.
    pub(super) fn ln_forward(
        &self,
        x: &[T],
        h_0: Vec<T>,
        c_0: Vec<T>,
        masks: (Option<Vec<T>>, Option<Vec<T>>),
        out: &mut [T],
    ) -> DirectionCache<T> {
        let (input_mask, recurrent_mask) = masks;
        let act = |v: T| self.activation.apply(v);
        let (hid, bsz, tb) = (self.hidden, self.batch, self.seq_len * self.batch);
        let (g4, w) = (4 * hid, self.weights);
        let ln: &LayerNormWeights<T> = w.layer_norm.as_ref().expect("a layer-normalised LSTM");
        let masked_x = input_mask.as_ref().map(|m| mask_rows(x, m, self.seq_len));
        let x = masked_x.as_deref().unwrap_or(x);

        // â for every row at once: x̃ · W_ihᵀ, normalised per row.
        let mut ih_hat = vec![T::zero(); tb * g4];
        matmul(
            Threads::One,
            &mut ih_hat,
            MatRef::new(x, tb, self.input_size),
            MatRef::new(&w.weight_ih, g4, self.input_size).t(),
            false,
        );
        let ih_rstd: Vec<T> = ih_hat.chunks_exact_mut(g4).map(normalise).collect();
        let bias: Vec<T> = match (&w.bias_ih, &w.bias_hh) {
            (Some(a), Some(b)) => a.iter().zip(b).map(|(&a, &b)| a + b).collect(),
            _ => vec![T::zero(); g4],
        };

        let (mut h, mut c) = (h_0.clone(), c_0.clone());
        let mut gates = vec![T::zero(); tb * g4];
        let (mut h_all, mut c_all) = (vec![T::zero(); tb * hid], vec![T::zero(); tb * hid]);
        let mut hh_hat = vec![T::zero(); tb * g4];
        let mut hh_rstd = vec![T::zero(); tb];
        let mut c_hat = vec![T::zero(); tb * hid];
        let mut c_rstd = vec![T::zero(); tb];
        for t in self.steps() {
            let h_in = match &recurrent_mask {
                Some(m) => mask_rows(&h, m, 1),
                None => h.clone(),
            };
            let rows = t * bsz..(t + 1) * bsz;
            let r = &mut hh_hat[rows.start * g4..rows.end * g4];
            matmul(
                Threads::One,
                r,
                MatRef::new(&h_in, bsz, hid),
                MatRef::new(&w.weight_hh, g4, hid).t(),
                false,
            );
            for b in 0..bsz {
                let at = t * bsz + b;
                if t >= self.lengths[b] {
                    continue; // padded step: state carries over, output stays 0
                }
                hh_rstd[at] = normalise(&mut hh_hat[at * g4..(at + 1) * g4]);
                let g = &mut gates[at * g4..(at + 1) * g4];
                for k in 0..g4 {
                    let a = ih_hat[at * g4 + k] * ln.ih_weight[k] + ln.ih_bias[k];
                    let r = hh_hat[at * g4 + k] * ln.hh_weight[k] + ln.hh_bias[k];
                    g[k] = a + r + bias[k];
                }
                let cb = &mut c_hat[at * hid..(at + 1) * hid];
                for j in 0..hid {
                    let i_g = g[j].sigmoid();
                    let f_g = g[hid + j].sigmoid();
                    let g_g = act(g[2 * hid + j]);
                    let o_g = g[3 * hid + j].sigmoid();
                    (g[j], g[hid + j], g[2 * hid + j], g[3 * hid + j]) = (i_g, f_g, g_g, o_g);
                    c[b * hid + j] = f_g * c[b * hid + j] + i_g * g_g;
                    cb[j] = c[b * hid + j];
                }
                c_rstd[at] = normalise(cb);
                for j in 0..hid {
                    let h_new = g[3 * hid + j] * act(cb[j] * ln.cell_weight[j] + ln.cell_bias[j]);
                    h[b * hid + j] = h_new;
                    out[at * self.out_stride + self.out_offset + j] = h_new;
                }
            }
            h_all[t * bsz * hid..(t + 1) * bsz * hid].copy_from_slice(&h);
            c_all[t * bsz * hid..(t + 1) * bsz * hid].copy_from_slice(&c);
        }
        DirectionCache {
            gates,
            c: c_all,
            h: h_all,
            h_0,
            c_0,
            input_mask,
            recurrent_mask,
            layer_norm: Some(LayerNormCache {
                ih_hat,
                ih_rstd,
                hh_hat,
                hh_rstd,
                c_hat,
                c_rstd,
            }),
        }
    }

    /// The backward pass of [`ln_forward`](Self::ln_forward): accumulates
    /// into `d_input` ([T, B, in], empty for none), writes this direction's
    /// parameter gradients and returns (dh_0, dc_0).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn ln_backward(
        &self,
        x: &[T],
        saved: &DirectionCache<T>,
        dy: &[T],
        d_h_n: Vec<T>,
        d_c_n: Vec<T>,
        grads: &mut LayerWeights<T>,
        d_input: &mut [T],
    ) -> (Vec<T>, Vec<T>) {
        let (hid, bsz, tb) = (self.hidden, self.batch, self.seq_len * self.batch);
        let g4 = 4 * hid;
        let one = T::one();
        let w = self.weights;
        let ln = w.layer_norm.as_ref().expect("a layer-normalised LSTM");
        let lc = saved.layer_norm.as_ref().expect("a layer-normalised cache");
        let act = |v: T| self.activation.apply(v);
        let act_grad = |y: T| self.activation.derivative_from_output(y);
        let mut d_ln = grads.layer_norm.take().expect("layer-norm gradients");

        // dG: the gradient of pre (bias and both norms' outputs); dA and dR:
        // of the products before their norms.
        let mut d_pre = vec![T::zero(); tb * g4];
        let mut d_a = vec![T::zero(); tb * g4];
        let mut d_r = vec![T::zero(); tb * g4];
        let (mut dh_carry, mut dc_carry) = (d_h_n, d_c_n);
        let mut dh_rec = vec![T::zero(); bsz * hid];
        let c_prev = |t: usize, b: usize, j: usize| match self.previous_step(t) {
            Some(p) => saved.c[(p * bsz + b) * hid + j],
            None => saved.c_0[b * hid + j],
        };
        for t in self.steps().rev() {
            for b in 0..bsz {
                if t >= self.lengths[b] {
                    continue; // padded step: gradients pass through
                }
                let at = t * bsz + b;
                let g = &saved.gates[at * g4..(at + 1) * g4];
                let c_hat = &lc.c_hat[at * hid..(at + 1) * hid];
                // h = o ⊙ act(ĉ), ĉ = LN(c) ⊙ γ_c + β_c
                let mut d_chat = vec![T::zero(); hid];
                let mut d_o = vec![T::zero(); hid];
                for j in 0..hid {
                    let dh = dy[at * self.out_stride + self.out_offset + j] + dh_carry[b * hid + j];
                    let y = act(c_hat[j] * ln.cell_weight[j] + ln.cell_bias[j]);
                    d_o[j] = dh * y;
                    d_chat[j] = dh * g[3 * hid + j] * act_grad(y);
                }
                let dc_ln = norm_backward(
                    &d_chat,
                    c_hat,
                    lc.c_rstd[at],
                    &ln.cell_weight,
                    (&mut d_ln.cell_weight, &mut d_ln.cell_bias),
                );
                let dp = &mut d_pre[at * g4..(at + 1) * g4];
                for j in 0..hid {
                    let (i_g, f_g, g_g, o_g) = (g[j], g[hid + j], g[2 * hid + j], g[3 * hid + j]);
                    let dc = dc_ln[j] + dc_carry[b * hid + j];
                    dp[j] = dc * g_g * i_g * (one - i_g);
                    dp[hid + j] = dc * c_prev(t, b, j) * f_g * (one - f_g);
                    dp[2 * hid + j] = dc * i_g * act_grad(g_g);
                    dp[3 * hid + j] = d_o[j] * o_g * (one - o_g);
                    dc_carry[b * hid + j] = dc * f_g;
                }
                let dr = norm_backward(
                    dp,
                    &lc.hh_hat[at * g4..(at + 1) * g4],
                    lc.hh_rstd[at],
                    &ln.hh_weight,
                    (&mut d_ln.hh_weight, &mut d_ln.hh_bias),
                );
                d_r[at * g4..(at + 1) * g4].copy_from_slice(&dr);
            }
            // dh_{t-1} = (dR_t · W_hh) ⊙ m_h                    [B, H]
            let rows = t * bsz * g4..(t + 1) * bsz * g4;
            matmul(
                Threads::One,
                &mut dh_rec,
                MatRef::new(&d_r[rows], bsz, g4),
                MatRef::new(&w.weight_hh, g4, hid),
                false,
            );
            if let Some(m) = &saved.recurrent_mask {
                dh_rec.iter_mut().zip(m).for_each(|(d, &m)| *d = *d * m);
            }
            for b in (0..bsz).filter(|&b| t < self.lengths[b]) {
                dh_carry[b * hid..(b + 1) * hid].copy_from_slice(&dh_rec[b * hid..(b + 1) * hid]);
            }
        }
        // The input norm's backward, row by row (padded rows of dG are 0).
        for at in 0..tb {
            if d_pre[at * g4..(at + 1) * g4]
                .iter()
                .all(|&v| v == T::zero())
            {
                continue;
            }
            let da = norm_backward(
                &d_pre[at * g4..(at + 1) * g4],
                &lc.ih_hat[at * g4..(at + 1) * g4],
                lc.ih_rstd[at],
                &ln.ih_weight,
                (&mut d_ln.ih_weight, &mut d_ln.ih_bias),
            );
            d_a[at * g4..(at + 1) * g4].copy_from_slice(&da);
        }
        grads.layer_norm = Some(d_ln);

        let seen = Seen::new(x, saved, self.seq_len, mask_rows);
        let (h_0, h_saved) = seen.h(saved);
        matmul(
            Threads::One,
            &mut grads.weight_ih,
            MatRef::new(&d_a, tb, g4).t(),
            MatRef::new(seen.x(x), tb, self.input_size),
            false,
        );
        recurrent_weight_grad(
            Threads::One,
            &mut grads.weight_hh,
            &d_r,
            (h_0, h_saved),
            (self.seq_len, bsz, hid),
            self.reverse,
        );
        if let (Some(db_ih), Some(db_hh)) = (&mut grads.bias_ih, &mut grads.bias_hh) {
            for row in d_pre.chunks_exact(g4) {
                db_ih.iter_mut().zip(row).for_each(|(d, &g)| *d = *d + g);
            }
            db_hh.copy_from_slice(db_ih);
        }
        if !d_input.is_empty() {
            add_input_grad(
                Threads::One,
                d_input,
                MatRef::new(&d_a, tb, g4),
                MatRef::new(&w.weight_ih, g4, self.input_size),
                saved.input_mask.as_deref(),
            );
        }
        (dh_carry, dc_carry)
    }
}
