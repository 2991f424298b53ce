//! The reference backward pass through time, in plain loops.
//!
//! Per layer·direction, walking the steps in reverse visiting order:
//! ```text
//! dh_t = dy_t + dh_carry                       (dh_carry = dG_{t+1} · W_hh)
//! dc_t = dh_t ⊙ o ⊙ (1 - tanh²(c_t)) + dc_carry (dc_carry = dc_{t+1} ⊙ f_{t+1})
//! di = dc_t ⊙ g ⊙ i(1-i)      df = dc_t ⊙ c_{t-1} ⊙ f(1-f)
//! dg = dc_t ⊙ i ⊙ (1-g²)      do = dh_t ⊙ tanh(c_t) ⊙ o(1-o)
//! ```
//! then, over all T·B rows at once: dW_ih = dGᵀ·X, dW_hh = dGᵀ·H_prev,
//! db_ih = db_hh = Σ_rows dG, dX = dG·W_ih.
//!
//! With the variants: tanh above is the cell activation act (its derivative
//! taken from act's output); with input dropout X is X ⊙ m_x in dW_ih and
//! dX = (dG·W_ih) ⊙ m_x; with recurrent dropout H_prev is H_prev ⊙ m_h in
//! dW_hh and dh_carry = (dG·W_hh) ⊙ m_h.
//!
//! The layers, directions and dropout between layers here serve the GRU
//! too; `gru.rs` has its cell's backward.

use super::forward::{Direction, DirectionCache, ForwardCache, mask_rows};
use crate::config::Cell;
use crate::error::{LstmError, Result};
use crate::gemm::{MatRef, Threads, matmul};
use crate::real::Real;
use crate::tensor::Tensor;
use crate::weights::{LayerWeights, LstmWeights};

/// Upstream gradients: d(loss)/d(output), and optionally d/d(h_n), d/d(c_n).
#[derive(Clone, Copy, Debug)]
pub struct OutputGrads<'a, T = f32> {
    /// Same shape and layout as `output`.
    pub d_output: &'a Tensor<T>,
    /// [D·L, B, H_out]; zeros when `None`.
    pub d_h_n: Option<&'a Tensor<T>>,
    /// [D·L, B, H]; zeros when `None`. For a GRU, `None` or the empty
    /// [D·L, B, 0].
    pub d_c_n: Option<&'a Tensor<T>>,
}

/// Gradients of the loss with respect to everything the forward pass read.
#[derive(Clone, Debug)]
pub struct Gradients<T = f32> {
    /// Same names, shapes and layout as the parameters.
    pub weights: LstmWeights<T>,
    /// Same shape and layout as `input`; zero at padded steps.
    pub d_input: Tensor<T>,
    /// [D·L, B, H_out] (the gradient for a zero initial state when none was
    /// given).
    pub d_h_0: Tensor<T>,
    /// [D·L, B, H]; [D·L, B, 0], empty, for a GRU.
    pub d_c_0: Tensor<T>,
}

/// The gradients of [`backward_params`]: everything but the input's.
#[derive(Clone, Debug)]
pub struct ParamGradients<T = f32> {
    /// Same names, shapes and layout as the parameters.
    pub weights: LstmWeights<T>,
    /// [D·L, B, H_out] (the gradient for a zero initial state when none was
    /// given).
    pub d_h_0: Tensor<T>,
    /// [D·L, B, H]; [D·L, B, 0], empty, for a GRU.
    pub d_c_0: Tensor<T>,
}

/// Backpropagates through the forward pass that produced `cache`.
pub fn backward<T: Real>(
    weights: &LstmWeights<T>,
    cache: &ForwardCache<T>,
    grads: &OutputGrads<'_, T>,
) -> Result<Gradients<T>> {
    let (p, d_input) = backward_impl(weights, cache, grads, true)?;
    Ok(Gradients {
        weights: p.weights,
        d_input: d_input.expect("asked for the input gradient"),
        d_h_0: p.d_h_0,
        d_c_0: p.d_c_0,
    })
}

/// [`backward`] without the gradient with respect to the input, as PyTorch
/// computes it when the input does not require grad: the first layer's input
/// product dX = dG·W_ih is skipped. The parameter and state gradients are
/// those of [`backward`].
pub fn backward_params<T: Real>(
    weights: &LstmWeights<T>,
    cache: &ForwardCache<T>,
    grads: &OutputGrads<'_, T>,
) -> Result<ParamGradients<T>> {
    Ok(backward_impl(weights, cache, grads, false)?.0)
}

fn backward_impl<T: Real>(
    weights: &LstmWeights<T>,
    cache: &ForwardCache<T>,
    grads: &OutputGrads<'_, T>,
    input_grad: bool,
) -> Result<(ParamGradients<T>, Option<Tensor<T>>)> {
    let cfg = &weights.config;
    let (h, dirs, layers) = (cfg.hidden_size, cfg.num_directions(), cfg.num_layers);
    // c has H units in an LSTM, none in a GRU.
    let (hout, hc) = (cfg.hidden_out(), cfg.cell_state_size());
    let (seq_len, batch) = (cache.seq_len, cache.batch);
    let out_shape = if cfg.batch_first {
        [batch, seq_len, dirs * hout]
    } else {
        [seq_len, batch, dirs * hout]
    };
    if grads.d_output.shape() != out_shape {
        return Err(LstmError::shape(
            "d_output",
            &out_shape,
            grads.d_output.shape(),
        ));
    }
    if cache.layers.len() != layers {
        return Err(LstmError::value(
            "cache",
            format!(
                "holds {} layers, the weights have {layers}",
                cache.layers.len()
            ),
        ));
    }
    // h states are [D·L, B, H_out], c states [D·L, B, H] ([D·L, B, 0] in a GRU).
    let (h_shape, c_shape) = ([layers * dirs, batch, hout], [layers * dirs, batch, hc]);
    for (name, g, shape) in [
        ("d_h_n", grads.d_h_n, h_shape),
        ("d_c_n", grads.d_c_n, c_shape),
    ] {
        if let Some(g) = g.filter(|g| g.shape() != shape) {
            return Err(LstmError::shape(name, &shape, g.shape()));
        }
    }
    let state = |t: Option<&Tensor<T>>, idx: usize, n: usize| match t {
        Some(t) => t.data()[idx * batch * n..(idx + 1) * batch * n].to_vec(),
        None => vec![T::zero(); batch * n],
    };

    let mut d_weights = LstmWeights::zeros(cfg)?;
    let mut d_h_0 = vec![T::zero(); layers * dirs * batch * hout];
    let mut d_c_0 = vec![T::zero(); layers * dirs * batch * hc];
    // dy: gradient w.r.t. the current layer's output [T, B, D·H], time-major.
    let mut dy = if cfg.batch_first {
        grads.d_output.swap_first_two_axes().into_data()
    } else {
        grads.d_output.data().to_vec()
    };

    for layer in (0..layers).rev() {
        let lc = &cache.layers[layer];
        // The output that the next layer (or the caller) saw was y ⊙ mask.
        if let Some(mask) = &lc.dropout_mask {
            dy.iter_mut().zip(mask).for_each(|(d, &m)| *d = *d * m);
        }
        let input_size = cfg.layer_input_size(layer);
        // Empty: no input gradient wanted (the directions skip dX).
        let d_input_len = if layer > 0 || input_grad {
            seq_len * batch * input_size
        } else {
            0
        };
        let mut d_input = vec![T::zero(); d_input_len];
        for dir in 0..dirs {
            let idx = layer * dirs + dir;
            let run = Direction {
                weights: weights.layer(layer, dir),
                input_size,
                hidden: h,
                hidden_out: hout,
                seq_len,
                batch,
                reverse: dir == 1,
                lengths: &cache.lengths,
                out_offset: dir * hout,
                out_stride: dirs * hout,
                activation: cfg.activation,
                cell: cfg.cell,
            };
            let (dh0, dc0) = run.backward(
                &lc.input,
                &lc.directions[dir],
                &dy,
                state(grads.d_h_n, idx, hout),
                state(grads.d_c_n, idx, hc),
                d_weights.layer_mut(layer, dir),
                &mut d_input,
            );
            d_h_0[idx * batch * hout..(idx + 1) * batch * hout].copy_from_slice(&dh0);
            d_c_0[idx * batch * hc..(idx + 1) * batch * hc].copy_from_slice(&dc0);
        }
        dy = d_input;
    }

    let d_input = if input_grad {
        let d_input = Tensor::new([seq_len, batch, cfg.input_size], dy)?;
        Some(if cfg.batch_first {
            d_input.swap_first_two_axes()
        } else {
            d_input
        })
    } else {
        None
    };
    Ok((
        ParamGradients {
            weights: d_weights,
            d_h_0: Tensor::new(h_shape, d_h_0)?,
            d_c_0: Tensor::new(c_shape, d_c_0)?,
        },
        d_input,
    ))
}

impl<T: Real> Direction<'_, T> {
    /// Backward through one layer·direction. Accumulates into `d_input`
    /// ([T, B, in]) and writes this direction's parameter gradients; returns
    /// (dh_0, dc_0), each [B, H] (dc_0 empty for a GRU).
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        x: &[T],
        saved: &DirectionCache<T>,
        dy: &[T],
        d_h_n: Vec<T>,
        d_c_n: Vec<T>,
        grads: &mut LayerWeights<T>,
        d_input: &mut [T],
    ) -> (Vec<T>, Vec<T>) {
        match self.cell {
            Cell::Lstm if self.weights.layer_norm.is_some() => {
                self.ln_backward(x, saved, dy, d_h_n, d_c_n, grads, d_input)
            }
            Cell::Lstm => self.lstm_backward(x, saved, dy, d_h_n, d_c_n, grads, d_input),
            Cell::Gru => (
                self.gru_backward(x, saved, dy, d_h_n, grads, d_input),
                Vec::new(),
            ),
        }
    }

    /// [`backward`](Self::backward) through the LSTM cell.
    #[allow(clippy::too_many_arguments)]
    fn lstm_backward(
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
        let act_grad = |y: T| self.activation.derivative_from_output(y);
        // Written at valid rows; padded rows must read as zero in the
        // weight gradients below.
        let mut d_gates = vec![T::zero(); tb * 4 * hid];
        let (mut dh_carry, mut dc_carry) = (d_h_n, d_c_n);

        let one = T::one();
        let hout = self.hidden_out;
        let w_hr = self.weights.weight_hr.as_deref();
        let mut dh_rec = vec![T::zero(); bsz * hout];
        // With a projection: dh_t [T, B, P] (0 at padded rows),
        // m_t = o ⊙ tanh(c_t) [T, B, H], and dm_t = dh_t · W_hr [B, H].
        let proj_len = |n: usize| if w_hr.is_some() { n } else { 0 };
        let mut dh_all = vec![T::zero(); proj_len(tb * hout)];
        let mut m_all = vec![T::zero(); proj_len(tb * hid)];
        let mut dm = vec![T::zero(); proj_len(bsz * hid)];
        // The cell state entering step t, in this direction's visiting order.
        let c_prev = |t: usize, b: usize, j: usize| match self.previous_step(t) {
            Some(p) => saved.c[(p * bsz + b) * hid + j],
            None => saved.c_0[b * hid + j],
        };
        for t in self.steps().rev() {
            let row = t * bsz * 4 * hid;
            if let Some(w_hr) = w_hr {
                for b in (0..bsz).filter(|&b| t < self.lengths[b]) {
                    let g = &saved.gates[row + b * 4 * hid..row + (b + 1) * 4 * hid];
                    let y = (t * bsz + b) * self.out_stride + self.out_offset;
                    for k in 0..hout {
                        dh_all[(t * bsz + b) * hout + k] = dy[y + k] + dh_carry[b * hout + k];
                    }
                    for j in 0..hid {
                        m_all[(t * bsz + b) * hid + j] = g[3 * hid + j]
                            * self.activation.apply(saved.c[(t * bsz + b) * hid + j]);
                    }
                }
                // dm_t = dh_t · W_hr                            [B, H]
                let rows = t * bsz * hout..(t + 1) * bsz * hout;
                matmul(
                    Threads::One,
                    &mut dm,
                    MatRef::new(&dh_all[rows], bsz, hout),
                    MatRef::new(w_hr, hout, hid),
                    false,
                );
            }
            for b in 0..bsz {
                if t >= self.lengths[b] {
                    continue; // padded step: gradients pass through to earlier steps
                }
                let g = &saved.gates[row + b * 4 * hid..row + (b + 1) * 4 * hid];
                let dg = &mut d_gates[row + b * 4 * hid..row + (b + 1) * 4 * hid];
                for j in 0..hid {
                    let (i_g, f_g, g_g, o_g) = (g[j], g[hid + j], g[2 * hid + j], g[3 * hid + j]);
                    let c_t = saved.c[(t * bsz + b) * hid + j];
                    let c_prev = c_prev(t, b, j);
                    let tanh_c = self.activation.apply(c_t);
                    // d(loss)/d(o ⊙ tanh c): dh itself without a projection.
                    let dh = if w_hr.is_some() {
                        dm[b * hid + j]
                    } else {
                        dy[(t * bsz + b) * self.out_stride + self.out_offset + j]
                            + dh_carry[b * hid + j]
                    };
                    let dc = dh * o_g * act_grad(tanh_c) + dc_carry[b * hid + j];
                    dg[j] = dc * g_g * i_g * (one - i_g);
                    dg[hid + j] = dc * c_prev * f_g * (one - f_g);
                    dg[2 * hid + j] = dc * i_g * act_grad(g_g);
                    dg[3 * hid + j] = dh * tanh_c * o_g * (one - o_g);
                    dc_carry[b * hid + j] = dc * f_g;
                }
            }
            // dh_{t-1} = dG_t · W_hh                      [B, H_out]
            matmul(
                Threads::One,
                &mut dh_rec,
                MatRef::new(&d_gates[row..row + bsz * 4 * hid], bsz, 4 * hid),
                MatRef::new(&self.weights.weight_hh, 4 * hid, hout),
                false,
            );
            if let Some(m) = &saved.recurrent_mask {
                // h_{t-1} entered the product as h_{t-1} ⊙ m_h.
                dh_rec.iter_mut().zip(m).for_each(|(d, &m)| *d = *d * m);
            }
            for b in (0..bsz).filter(|&b| t < self.lengths[b]) {
                dh_carry[b * hout..(b + 1) * hout]
                    .copy_from_slice(&dh_rec[b * hout..(b + 1) * hout]);
            }
        }
        if let Some(d_w_hr) = &mut grads.weight_hr {
            // dW_hr = Σ_t dh_tᵀ · m_t                        [P, H]
            matmul(
                Threads::One,
                d_w_hr,
                MatRef::new(&dh_all, tb, hout).t(),
                MatRef::new(&m_all, tb, hid),
                false,
            );
        }

        // Weight gradients: one GEMM each over all T·B rows, on the masked
        // input and states where the forward pass masked them.
        let seen = Seen::new(x, saved, self.seq_len, mask_rows);
        let x_seen = seen.x(x);
        let (h_0, h_saved) = seen.h(saved);
        let dg = MatRef::new(&d_gates, tb, 4 * hid);
        matmul(
            Threads::One,
            &mut grads.weight_ih,
            dg.t(),
            MatRef::new(x_seen, tb, self.input_size),
            false,
        );
        // dW_hh = Σ_t dG_tᵀ · h_prev(t)
        recurrent_weight_grad(
            Threads::One,
            &mut grads.weight_hh,
            &d_gates,
            (h_0, h_saved),
            (self.seq_len, bsz, hout),
            self.reverse,
        );
        if let (Some(db_ih), Some(db_hh)) = (&mut grads.bias_ih, &mut grads.bias_hh) {
            for row in d_gates.chunks_exact(4 * hid) {
                db_ih.iter_mut().zip(row).for_each(|(d, &g)| *d = *d + g);
            }
            db_hh.copy_from_slice(db_ih);
        }
        // dX += (dG · W_ih) ⊙ m_x                         [T·B, in]
        // (an empty d_input asks for no input gradient)
        if !d_input.is_empty() {
            add_input_grad(
                Threads::One,
                d_input,
                dg,
                MatRef::new(&self.weights.weight_ih, 4 * hid, self.input_size),
                saved.input_mask.as_deref(),
            );
        }
        (dh_carry, dc_carry)
    }
}

/// dW_hh = Σ_t dG_tᵀ · h_prev(t)  ([G·H, H_out]), overwriting `d_w_hh`.
///
/// `d_gates` [T, B, G·H] holds dG at every step (zero at padded rows),
/// `h_saved` [T, B, H_out] the state after every step and `h_0` [B, H_out]
/// the state the direction started from. The state entering step t is the
/// saved h of the step visited before it, so over all steps but the first
/// one visited this is one GEMM on shifted views of dG and h, plus h_0's
/// term.
pub(crate) fn recurrent_weight_grad<T: Real>(
    threads: Threads,
    d_w_hh: &mut [T],
    d_gates: &[T],
    (h_0, h_saved): (&[T], &[T]),
    (seq_len, batch, hout): (usize, usize, usize),
    reverse: bool,
) {
    let rows = d_w_hh.len() / hout;
    debug_assert_eq!(d_gates.len(), seq_len * batch * rows);
    debug_assert_eq!(h_saved.len(), seq_len * batch * hout);
    let first = if reverse { seq_len - 1 } else { 0 };
    let rest = (seq_len - 1) * batch;
    let (dg_rest, h_rest) = if reverse {
        (&d_gates[..rest * rows], &h_saved[batch * hout..])
    } else {
        (&d_gates[batch * rows..], &h_saved[..rest * hout])
    };
    matmul(
        threads,
        d_w_hh,
        MatRef::new(
            &d_gates[first * batch * rows..(first + 1) * batch * rows],
            batch,
            rows,
        )
        .t(),
        MatRef::new(h_0, batch, hout),
        false,
    );
    if rest > 0 {
        matmul(
            threads,
            d_w_hh,
            MatRef::new(dg_rest, rest, rows).t(),
            MatRef::new(h_rest, rest, hout),
            true,
        );
    }
}

/// The input and states that a direction's forward products read: x ⊙ m_x
/// and (h_0 ⊙ m_h, h ⊙ m_h) where it masked them, which the weight
/// gradients take. `None` where it did not.
pub(crate) struct Seen<T> {
    x: Option<Vec<T>>,
    h: Option<(Vec<T>, Vec<T>)>,
}

impl<T: Real> Seen<T> {
    /// From the masks `saved` kept; `mask(rows, mask, reps)` multiplies
    /// `reps` blocks of `rows` by the mask (the engines pass their own).
    pub(crate) fn new(
        x: &[T],
        saved: &DirectionCache<T>,
        seq_len: usize,
        mask: impl Fn(&[T], &[T], usize) -> Vec<T>,
    ) -> Self {
        Seen {
            x: saved.input_mask.as_ref().map(|m| mask(x, m, seq_len)),
            h: saved
                .recurrent_mask
                .as_ref()
                .map(|m| (mask(&saved.h_0, m, 1), mask(&saved.h, m, seq_len))),
        }
    }

    /// The input the input product read.
    pub(crate) fn x<'a>(&'a self, x: &'a [T]) -> &'a [T] {
        self.x.as_deref().unwrap_or(x)
    }

    /// (h_0, h after every step) as the recurrent product read them.
    pub(crate) fn h<'a>(&'a self, saved: &'a DirectionCache<T>) -> (&'a [T], &'a [T]) {
        match &self.h {
            Some((h_0, h)) => (h_0, h),
            None => (&saved.h_0, &saved.h),
        }
    }

    /// The buffers, for a pool to take back.
    pub(crate) fn into_buffers(self) -> impl Iterator<Item = Vec<T>> {
        self.x
            .into_iter()
            .chain(self.h.into_iter().flat_map(|(a, b)| [a, b]))
    }
}

/// dX += (dG · W_ih) ⊙ m_x over [T·B, in], with m_x [B, in] the forward
/// pass's input mask when it had one.
pub(crate) fn add_input_grad<T: Real>(
    threads: Threads,
    d_input: &mut [T],
    d_g: MatRef<'_, T>,
    w_ih: MatRef<'_, T>,
    mask: Option<&[T]>,
) {
    let Some(m) = mask else {
        matmul(threads, d_input, d_g, w_ih, true);
        return;
    };
    let mut dx = vec![T::zero(); d_input.len()];
    matmul(threads, &mut dx, d_g, w_ih, false);
    for (d, r) in d_input
        .chunks_exact_mut(m.len())
        .zip(dx.chunks_exact(m.len()))
    {
        for ((d, &v), &k) in d.iter_mut().zip(r).zip(m) {
            *d = *d + v * k;
        }
    }
}
