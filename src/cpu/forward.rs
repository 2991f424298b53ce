//! The CPU engine's forward pass: the layers and directions of
//! `reference::forward`, with each LSTM recurrence run by the fused step
//! kernels of `fused.rs` (a GRU's by `gru.rs`) and the large buffers taken
//! from the scratch pool.
//!
//! Internally everything is time-major: x [T, B, in], gates [T, B, 4H].

use std::borrow::Cow;

use super::fused::{Recurrence, StepInput};
use super::input_projection::project;
use super::scratch;
use super::simd::Isa;
use crate::config::{Activation, Cell};
use crate::dropout::{Dropout, variational_masks};
use crate::error::Result;
use crate::input::LstmInput;
use crate::reference::{DirectionCache, ForwardCache, LayerCache, LstmOutput, cell_states_of};
use crate::tensor::Tensor;
use crate::weights::{LayerWeights, LstmWeights};

/// Gives a training forward's buffers back to this thread's scratch pool
/// for reuse by later calls (see [`release_scratch`](super::release_scratch)).
pub(crate) fn recycle_cache(cache: ForwardCache<f32>) {
    for layer in cache.layers {
        scratch::recycle(layer.input);
        if let Some(mask) = layer.dropout_mask {
            scratch::recycle(mask);
        }
        for d in layer.directions {
            scratch::recycle(d.gates);
            scratch::recycle(d.c);
            scratch::recycle(d.h);
        }
    }
}

/// Inference: PyTorch's `lstm.eval()(input, (h_0, c_0))`. Dropout is off.
/// The model has no projection (the caller checks).
pub(super) fn forward(
    weights: &LstmWeights<f32>,
    x: &LstmInput<'_, f32>,
) -> Result<LstmOutput<f32>> {
    run(weights, x, None, false).map(|(out, _)| out)
}

/// Training-mode forward: applies inter-layer dropout with the mask drawn from
/// `dropout_seed` (see [`crate::dropout`]) and saves what the backward pass
/// needs.
pub(super) fn forward_train(
    weights: &LstmWeights<f32>,
    x: &LstmInput<'_, f32>,
    dropout_seed: u64,
) -> Result<(LstmOutput<f32>, ForwardCache<f32>)> {
    let (out, cache) = run(weights, x, Some(dropout_seed), true)?;
    Ok((out, cache.expect("training run saves a cache")))
}

fn run(
    weights: &LstmWeights<f32>,
    x: &LstmInput<'_, f32>,
    dropout_seed: Option<u64>,
    save: bool,
) -> Result<(LstmOutput<f32>, Option<ForwardCache<f32>>)> {
    let cfg = &weights.config;
    cfg.validate()?;
    let (seq_len, batch) = x.validate(cfg)?;
    let (h, dirs, layers) = (cfg.hidden_size, cfg.num_directions(), cfg.num_layers);
    // c has H units in an LSTM, none in a GRU.
    let (hout, hc) = (cfg.hidden_out(), cfg.cell_state_size());
    let lengths: Vec<usize> = x.lengths.map_or(vec![seq_len; batch], <[usize]>::to_vec);
    let padded = lengths.iter().any(|&n| n < seq_len);
    // Direction idx's [B, n] slice of a [D·L, B, n] state.
    let state = |t: Option<&Tensor<f32>>, idx: usize, n: usize| match t {
        Some(t) => t.data()[idx * batch * n..(idx + 1) * batch * n].to_vec(),
        None => vec![0.0; batch * n],
    };

    // Inference reads the caller's time-major input in place; training keeps
    // a copy in the cache.
    let mut layer_input: Cow<'_, [f32]> = if cfg.batch_first {
        Cow::Owned(x.input.swap_first_two_axes().into_data())
    } else if save {
        let mut v = scratch::reused(x.input.data().len());
        v.copy_from_slice(x.input.data());
        Cow::Owned(v)
    } else {
        Cow::Borrowed(x.input.data())
    };
    let mut h_n = Vec::with_capacity(layers * dirs * batch * hout);
    let mut c_n = Vec::with_capacity(layers * dirs * batch * hc);
    let mut caches = Vec::new();

    for layer in 0..layers {
        // Every element is written but those past a sequence's length.
        let n = seq_len * batch * dirs * hout;
        let mut layer_output = if padded {
            scratch::zeroed(n)
        } else {
            scratch::reused(n)
        };
        let mut directions = Vec::new();
        for dir in 0..dirs {
            let run = Direction {
                weights: weights.layer(layer, dir),
                input_size: cfg.layer_input_size(layer),
                hidden: h,
                seq_len,
                batch,
                reverse: dir == 1,
                lengths: &lengths,
                out_offset: dir * hout,
                out_stride: dirs * hout,
                // The last layer keeps its per-step states when the caller
                // asks for the cell states.
                save: save || (x.cell_states && layer + 1 == layers),
                activation: cfg.activation,
                cell: cfg.cell,
            };
            let idx = layer * dirs + dir;
            let masks = match dropout_seed {
                Some(seed) => variational_masks::<f32>(cfg, seed, layer, dir, batch),
                None => (None, None),
            };
            let dc = run.forward(
                &layer_input,
                state(x.h_0, idx, hout),
                state(x.c_0, idx, hc),
                masks,
                &mut layer_output,
            );
            h_n.extend_from_slice(&dc.h_last);
            c_n.extend_from_slice(&dc.c_last);
            directions.push(dc.cache);
        }

        // Dropout on every layer's output but the last, in training only.
        let dropout_mask = match dropout_seed {
            Some(seed) if cfg.dropout > 0.0 && layer + 1 < layers => {
                let mask = Dropout {
                    p: cfg.dropout,
                    seed,
                }
                .mask::<f32>(layer, seq_len, batch, dirs * hout);
                layer_output
                    .iter_mut()
                    .zip(&mask)
                    .for_each(|(y, &m)| *y *= m);
                Some(mask)
            }
            _ => None,
        };
        // Inference keeps no input, and never copies the caller's.
        let input = match std::mem::replace(&mut layer_input, Cow::Owned(layer_output)) {
            Cow::Owned(v) => v,
            Cow::Borrowed(v) if save => v.to_vec(),
            Cow::Borrowed(_) => Vec::new(),
        };
        let layer = LayerCache {
            input,
            directions,
            dropout_mask,
        };
        caches.push(layer);
    }

    let state_shape = [layers * dirs, batch, hc];
    let output = Tensor::new([seq_len, batch, dirs * hout], layer_input.into_owned())?;
    let cell_states = match caches.last() {
        Some(last) if x.cell_states => Some(cell_states_of(cfg, last, seq_len, batch, &lengths)?),
        _ => None,
    };
    let out = LstmOutput {
        cell_states,
        output: if cfg.batch_first {
            output.swap_first_two_axes()
        } else {
            output
        },
        h_n: Tensor::new([layers * dirs, batch, hout], h_n)?,
        c_n: Tensor::new(state_shape, c_n)?,
    };
    let cache = ForwardCache {
        seq_len,
        batch,
        lengths,
        layers: caches,
    };
    let cache = if save {
        Some(cache)
    } else {
        recycle_cache(cache);
        None
    };
    Ok((out, cache))
}

/// One layer in one direction: the shapes and where its output goes.
pub(super) struct Direction<'a> {
    pub weights: &'a LayerWeights<f32>,
    pub input_size: usize,
    /// H: units of the cell state and the gates.
    pub hidden: usize,
    pub seq_len: usize,
    pub batch: usize,
    pub reverse: bool,
    pub lengths: &'a [usize],
    /// This direction's columns in the layer output [T, B, D·H].
    pub out_offset: usize,
    pub out_stride: usize,
    /// Whether the forward pass keeps the per-step states for backward.
    pub save: bool,
    /// The cell activation.
    pub activation: Activation,
    /// An LSTM's cell (`fused.rs`), or a GRU's (`gru.rs`).
    pub cell: Cell,
}

pub(super) struct DirectionResult {
    pub h_last: Vec<f32>,
    pub c_last: Vec<f32>,
    pub cache: DirectionCache<f32>,
}

impl Direction<'_> {
    /// Time indices in the order this direction visits them.
    pub(super) fn steps(&self) -> impl DoubleEndedIterator<Item = usize> + use<> {
        let (n, rev) = (self.seq_len, self.reverse);
        (0..n).map(move |s| if rev { n - 1 - s } else { s })
    }

    /// The time index visited just before `t`, if any.
    pub(super) fn previous_step(&self, t: usize) -> Option<usize> {
        if self.reverse {
            (t + 1 < self.seq_len).then_some(t + 1)
        } else {
            t.checked_sub(1)
        }
    }

    /// This direction's recurrence for the fused step kernels.
    pub(super) fn recurrence(&self) -> Recurrence<'_> {
        Recurrence {
            weight_hh: &self.weights.weight_hh,
            hidden: self.hidden,
            batch: self.batch,
            seq_len: self.seq_len,
            reverse: self.reverse,
            lengths: self.lengths,
            out_offset: self.out_offset,
            out_stride: self.out_stride,
            relu: self.activation == Activation::Relu,
            isa: Isa::detect(),
        }
    }

    /// Runs the recurrence over `x` ([T, B, in]) from (h_0, c_0), writing
    /// this direction's columns of `out`. `masks`: the input [B, in] and
    /// recurrent [B, H] dropout masks of a training pass.
    pub(super) fn forward(
        &self,
        x: &[f32],
        h_0: Vec<f32>,
        c_0: Vec<f32>,
        masks: (Option<Vec<f32>>, Option<Vec<f32>>),
        out: &mut [f32],
    ) -> DirectionResult {
        if self.cell == Cell::Gru {
            debug_assert!(c_0.is_empty());
            return self.gru_forward(x, h_0, masks, out);
        }
        let (hid, bsz, tb) = (self.hidden, self.batch, self.seq_len * self.batch);
        let w = self.weights;
        let (input_mask, recurrent_mask) = masks;
        // Input dropout: X ⊙ m_x, the same [B, in] mask rows at every step.
        let masked_x = input_mask.as_ref().map(|m| mask_steps(x, m));
        let x = masked_x.as_deref().unwrap_or(x);

        // 1. Input projection for the whole sequence:
        //    G = X · W_ihᵀ + (b_ih + b_hh)        [T·B, 4H]
        //    It runs on the step kernel's register tiles: inside the step
        //    kernel itself with at least a full tile of rows (`gates` then
        //    only receives the activations saved for training), else before
        //    the recurrence (`input_projection.rs`): with fewer rows than a
        //    full tile, one batched projection over all T·B rows keeps more
        //    accumulators busy than the per-step tiles.
        let bias: Vec<f32> = match (&w.bias_ih, &w.bias_hh) {
            (Some(b_ih), Some(b_hh)) => b_ih.iter().zip(b_hh).map(|(&a, &b)| a + b).collect(),
            _ => vec![0.0; 4 * hid],
        };
        let fused = self.recurrence();
        let fused_input = bsz >= fused.isa.rows();
        let mut gates = if fused_input && !self.save {
            Vec::new()
        } else {
            // Every element is written below (or, with the fused input,
            // every one the backward pass reads).
            scratch::reused(tb * 4 * hid)
        };
        if !fused_input {
            project(
                x,
                &w.weight_ih,
                &bias,
                hid,
                self.input_size,
                &mut gates,
                fused.isa,
            );
        }

        // 2. The recurrence, by the fused kernel of `fused.rs`: the loop of
        //    `reference::forward`, step by step.
        let (mut h, mut c) = (h_0.clone(), c_0.clone());
        let saved = if self.save { tb * hid } else { 0 };
        // Every step of every row is written (padding carries the state).
        let (mut h_all, mut c_all) = (scratch::reused(saved), scratch::reused(saved));
        fused.run(
            fused_input.then(|| StepInput {
                x,
                size: self.input_size,
                weight_ih: &w.weight_ih,
                bias: &bias,
            }),
            &mut gates,
            &mut h,
            &mut c,
            recurrent_mask.as_deref(),
            out,
            &mut h_all,
            &mut c_all,
        );
        if let Some(v) = masked_x {
            scratch::recycle(v);
        }
        DirectionResult {
            h_last: h,
            c_last: c,
            cache: DirectionCache {
                gates,
                c: c_all,
                h: h_all,
                h_0,
                c_0,
                input_mask,
                recurrent_mask,
                layer_norm: None,
            },
        }
    }
}

/// `rows` ⊙ `mask` where `rows` is [T, B, n] and `mask` is [B, n]: the same
/// mask rows at every step, in a scratch buffer.
pub(super) fn mask_steps(rows: &[f32], mask: &[f32]) -> Vec<f32> {
    let mut out = scratch::reused(rows.len());
    for (o, r) in out
        .chunks_exact_mut(mask.len())
        .zip(rows.chunks_exact(mask.len()))
    {
        for ((o, &v), &m) in o.iter_mut().zip(r).zip(mask) {
            *o = v * m;
        }
    }
    out
}
