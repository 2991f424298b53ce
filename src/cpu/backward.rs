//! The CPU engine's backward pass through time: the layers and directions
//! of `reference::backward`, with each LSTM recurrence run by the fused
//! kernel of `fused_backward.rs` (a GRU's by `gru.rs`) and the weight
//! gradients as threaded GEMMs.
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

use super::forward::{Direction, mask_steps};
use super::scratch;
use crate::config::Cell;
use crate::error::{LstmError, Result};
use crate::gemm::{MatRef, Threads, matmul};
use crate::reference::{
    DirectionCache, ForwardCache, Gradients, OutputGrads, ParamGradients, Seen, add_input_grad,
    recurrent_weight_grad,
};
use crate::tensor::Tensor;
use crate::weights::{LayerWeights, LstmWeights};

/// Backpropagates through the forward pass that produced `cache`.
pub(super) fn backward(
    weights: &LstmWeights<f32>,
    cache: &ForwardCache<f32>,
    grads: &OutputGrads<'_, f32>,
) -> Result<Gradients<f32>> {
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
pub(super) fn backward_params(
    weights: &LstmWeights<f32>,
    cache: &ForwardCache<f32>,
    grads: &OutputGrads<'_, f32>,
) -> Result<ParamGradients<f32>> {
    Ok(backward_impl(weights, cache, grads, false)?.0)
}

fn backward_impl(
    weights: &LstmWeights<f32>,
    cache: &ForwardCache<f32>,
    grads: &OutputGrads<'_, f32>,
    input_grad: bool,
) -> Result<(ParamGradients<f32>, Option<Tensor<f32>>)> {
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
    let state = |t: Option<&Tensor<f32>>, idx: usize, n: usize| match t {
        Some(t) => t.data()[idx * batch * n..(idx + 1) * batch * n].to_vec(),
        None => vec![0.0; batch * n],
    };

    let mut d_weights = LstmWeights::zeros(cfg)?;
    let mut d_h_0 = vec![0.0; layers * dirs * batch * hout];
    let mut d_c_0 = vec![0.0; layers * dirs * batch * hc];
    // dy: gradient w.r.t. the current layer's output [T, B, D·H], time-major.
    let mut dy = if cfg.batch_first {
        grads.d_output.swap_first_two_axes().into_data()
    } else {
        let mut v = scratch::reused(grads.d_output.data().len());
        v.copy_from_slice(grads.d_output.data());
        v
    };

    for layer in (0..layers).rev() {
        let lc = &cache.layers[layer];
        // The output that the next layer (or the caller) saw was y ⊙ mask.
        if let Some(mask) = &lc.dropout_mask {
            dy.iter_mut().zip(mask).for_each(|(d, &m)| *d *= m);
        }
        let input_size = cfg.layer_input_size(layer);
        // Empty: no input gradient wanted (the directions skip dX).
        let d_input_len = if layer > 0 || input_grad {
            seq_len * batch * input_size
        } else {
            0
        };
        let mut d_input = scratch::zeroed(d_input_len);
        for dir in 0..dirs {
            let idx = layer * dirs + dir;
            let run = Direction {
                weights: weights.layer(layer, dir),
                input_size,
                hidden: h,
                seq_len,
                batch,
                reverse: dir == 1,
                lengths: &cache.lengths,
                out_offset: dir * hout,
                out_stride: dirs * hout,
                save: false,
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
        scratch::recycle(std::mem::replace(&mut dy, d_input));
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

impl Direction<'_> {
    /// Backward through one layer·direction. Accumulates into `d_input`
    /// ([T, B, in]) and writes this direction's parameter gradients; returns
    /// (dh_0, dc_0), each [B, H] (dc_0 empty for a GRU).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward(
        &self,
        x: &[f32],
        saved: &DirectionCache<f32>,
        dy: &[f32],
        d_h_n: Vec<f32>,
        d_c_n: Vec<f32>,
        grads: &mut LayerWeights<f32>,
        d_input: &mut [f32],
    ) -> (Vec<f32>, Vec<f32>) {
        if self.cell == Cell::Gru {
            let dh_0 = self.gru_backward(x, saved, dy, d_h_n, grads, d_input);
            return (dh_0, Vec::new());
        }
        let (hid, bsz, tb) = (self.hidden, self.batch, self.seq_len * self.batch);
        // Written at valid rows; padded rows must read as zero in the
        // weight gradients below.
        let mut d_gates = if self.lengths.iter().any(|&n| n < self.seq_len) {
            scratch::zeroed(tb * 4 * hid)
        } else {
            scratch::reused(tb * 4 * hid)
        };
        let (mut dh_carry, mut dc_carry) = (d_h_n, d_c_n);

        // The fused kernel of `fused_backward.rs`: the loop of
        // `reference::backward`, step by step.
        self.recurrence().run_backward(
            &saved.gates,
            &saved.c,
            &saved.c_0,
            saved.recurrent_mask.as_deref(),
            dy,
            &mut d_gates,
            &mut dh_carry,
            &mut dc_carry,
        );

        // Weight gradients: one GEMM each over all T·B rows, on the input
        // and states as the products saw them (masked by the variational
        // dropouts).
        let seen = Seen::new(x, saved, self.seq_len, |r, m, _| mask_steps(r, m));
        let (h_0, h_saved) = seen.h(saved);
        let dg = MatRef::new(&d_gates, tb, 4 * hid);
        matmul(
            Threads::Pool,
            &mut grads.weight_ih,
            dg.t(),
            MatRef::new(seen.x(x), tb, self.input_size),
            false,
        );
        // dW_hh = Σ_t dG_tᵀ · h_prev(t)
        recurrent_weight_grad(
            Threads::Pool,
            &mut grads.weight_hh,
            &d_gates,
            (h_0, h_saved),
            (self.seq_len, bsz, hid),
            self.reverse,
        );
        if let (Some(db_ih), Some(db_hh)) = (&mut grads.bias_ih, &mut grads.bias_hh) {
            for row in d_gates.chunks_exact(4 * hid) {
                db_ih.iter_mut().zip(row).for_each(|(d, &g)| *d += g);
            }
            db_hh.copy_from_slice(db_ih);
        }
        // dX += dG · W_ih                                  [T·B, in]
        // (an empty d_input asks for no input gradient)
        if !d_input.is_empty() {
            add_input_grad(
                Threads::Pool,
                d_input,
                dg,
                MatRef::new(&self.weights.weight_ih, 4 * hid, self.input_size),
                saved.input_mask.as_deref(),
            );
        }
        seen.into_buffers().for_each(scratch::recycle);
        scratch::recycle(d_gates);
        (dh_carry, dc_carry)
    }
}
