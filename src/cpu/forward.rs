//! The CPU reference forward pass: PyTorch `nn.LSTM`, written to be checked
//! by eye against the equations in the README.
//!
//! Internally everything is time-major: x [T, B, in], gates [T, B, 4H].

use std::any::TypeId;
use std::borrow::Cow;

use super::fused::{Isa, Recurrence, StepInput};
use super::fused_projection::project;
use super::gemm::{MatRef, matmul};
use super::scratch;
use crate::dropout::Dropout;
use crate::error::Result;
use crate::input::LstmInput;
use crate::real::Real;
use crate::tensor::Tensor;
use crate::weights::{LayerWeights, LstmWeights};

/// What a forward pass returns, in PyTorch's layouts.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmOutput<T = f32> {
    /// [T, B, D·H] (or [B, T, D·H] with `batch_first`); forward direction in
    /// `[.., 0..H]`, reverse in `[.., H..2H]`; zero past each sequence's length.
    pub output: Tensor<T>,
    /// [D·L, B, H]: hidden state at each sequence's last valid step.
    pub h_n: Tensor<T>,
    /// [D·L, B, H]: cell state at each sequence's last valid step.
    pub c_n: Tensor<T>,
}

/// What one layer·direction saves for the backward pass: 6·T·B·H values
/// (5·T·B·H + T·B·P with a projection).
#[derive(Clone, Debug)]
pub struct DirectionCache<T> {
    /// [T, B, 4H]: activated gates i, f, g, o at valid steps. Rows of padded
    /// steps are never read.
    pub gates: Vec<T>,
    /// [T, B, H]: cell state after step t; padded steps carry it unchanged.
    pub c: Vec<T>,
    /// [T, B, H_out]: hidden state after step t; padded steps carry it unchanged.
    pub h: Vec<T>,
    /// The initial states this direction started from: h_0 [B, H_out], c_0 [B, H].
    pub h_0: Vec<T>,
    pub c_0: Vec<T>,
}

/// What one layer saves.
#[derive(Clone, Debug)]
pub struct LayerCache<T> {
    /// [T, B, in]: the layer's input (after the previous layer's dropout).
    pub input: Vec<T>,
    /// One per direction.
    pub directions: Vec<DirectionCache<T>>,
    /// [T, B, D·H]: the dropout mask applied to this layer's output (0 or
    /// 1/(1-p)); `None` for the last layer and when p = 0.
    pub dropout_mask: Option<Vec<T>>,
}

/// Everything the backward pass needs, saved by [`forward_train`].
#[derive(Clone, Debug)]
pub struct ForwardCache<T> {
    pub seq_len: usize,
    pub batch: usize,
    /// \[B\]: valid steps per sequence (all T when no lengths were given).
    pub lengths: Vec<usize>,
    pub layers: Vec<LayerCache<T>>,
}

impl<T: Real> ForwardCache<T> {
    /// Gives the cache's buffers back to this thread for reuse by later
    /// calls (see [`release_scratch`](super::release_scratch)).
    pub fn release(self) {
        self.layers.into_iter().for_each(LayerCache::release);
    }
}

impl<T: Real> LayerCache<T> {
    fn release(self) {
        scratch::recycle(self.input);
        if let Some(mask) = self.dropout_mask {
            scratch::recycle(mask);
        }
        for d in self.directions {
            scratch::recycle(d.gates);
            scratch::recycle(d.c);
            scratch::recycle(d.h);
        }
    }
}

/// Inference: PyTorch's `lstm.eval()(input, (h_0, c_0))`. Dropout is off.
pub fn forward<T: Real>(weights: &LstmWeights<T>, x: &LstmInput<'_, T>) -> Result<LstmOutput<T>> {
    run(weights, x, None, false).map(|(out, _)| out)
}

/// Training-mode forward: applies inter-layer dropout with the mask drawn from
/// `dropout_seed` (see [`crate::dropout`]) and saves what
/// [`backward`](super::backward) needs.
pub fn forward_train<T: Real>(
    weights: &LstmWeights<T>,
    x: &LstmInput<'_, T>,
    dropout_seed: u64,
) -> Result<(LstmOutput<T>, ForwardCache<T>)> {
    let (out, cache) = run(weights, x, Some(dropout_seed), true)?;
    Ok((out, cache.expect("training run saves a cache")))
}

fn run<T: Real>(
    weights: &LstmWeights<T>,
    x: &LstmInput<'_, T>,
    dropout_seed: Option<u64>,
    save: bool,
) -> Result<(LstmOutput<T>, Option<ForwardCache<T>>)> {
    let cfg = &weights.config;
    cfg.validate()?;
    let (seq_len, batch) = x.validate(cfg)?;
    let (h, dirs, layers) = (cfg.hidden_size, cfg.num_directions(), cfg.num_layers);
    let hout = cfg.hidden_out();
    let lengths: Vec<usize> = x.lengths.map_or(vec![seq_len; batch], <[usize]>::to_vec);
    let padded = lengths.iter().any(|&n| n < seq_len);
    // Direction idx's [B, n] slice of a [D·L, B, n] state.
    let state = |t: Option<&Tensor<T>>, idx: usize, n: usize| match t {
        Some(t) => t.data()[idx * batch * n..(idx + 1) * batch * n].to_vec(),
        None => vec![T::zero(); batch * n],
    };

    // Inference reads the caller's time-major input in place; training keeps
    // a copy in the cache.
    let mut layer_input: Cow<'_, [T]> = if cfg.batch_first {
        Cow::Owned(x.input.swap_first_two_axes().into_data())
    } else if save {
        let mut v = scratch::reused(x.input.data().len());
        v.copy_from_slice(x.input.data());
        Cow::Owned(v)
    } else {
        Cow::Borrowed(x.input.data())
    };
    let mut h_n = Vec::with_capacity(layers * dirs * batch * hout);
    let mut c_n = Vec::with_capacity(layers * dirs * batch * h);
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
                hidden_out: hout,
                seq_len,
                batch,
                reverse: dir == 1,
                lengths: &lengths,
                out_offset: dir * hout,
                out_stride: dirs * hout,
                save,
            };
            let idx = layer * dirs + dir;
            let dc = run.forward_split(
                &layer_input,
                state(x.h_0, idx, hout),
                state(x.c_0, idx, h),
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
                .mask::<T>(layer, seq_len, batch, dirs * hout);
                layer_output
                    .iter_mut()
                    .zip(&mask)
                    .for_each(|(y, &m)| *y = *y * m);
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
        if save {
            caches.push(layer);
        } else {
            layer.release();
        }
    }

    let state_shape = [layers * dirs, batch, h];
    let output = Tensor::new([seq_len, batch, dirs * hout], layer_input.into_owned())?;
    let out = LstmOutput {
        output: if cfg.batch_first {
            output.swap_first_two_axes()
        } else {
            output
        },
        h_n: Tensor::new([layers * dirs, batch, hout], h_n)?,
        c_n: Tensor::new(state_shape, c_n)?,
    };
    let cache = save.then_some(ForwardCache {
        seq_len,
        batch,
        lengths,
        layers: caches,
    });
    Ok((out, cache))
}

/// One layer in one direction: the shapes and where its output goes.
pub(super) struct Direction<'a, T> {
    pub weights: &'a LayerWeights<T>,
    pub input_size: usize,
    /// H: units of the cell state and the gates.
    pub hidden: usize,
    /// H_out: units of h, P with a projection (`weights.weight_hr`), else H.
    pub hidden_out: usize,
    pub seq_len: usize,
    pub batch: usize,
    pub reverse: bool,
    pub lengths: &'a [usize],
    /// This direction's columns in the layer output [T, B, D·H].
    pub out_offset: usize,
    pub out_stride: usize,
    /// Whether the forward pass keeps the per-step states for backward.
    pub save: bool,
}

pub(super) struct DirectionResult<T> {
    pub h_last: Vec<T>,
    pub c_last: Vec<T>,
    pub cache: DirectionCache<T>,
}

impl<T: Real> Direction<'_, T> {
    /// This direction's recurrence for the fused f32 kernels, when `T` is f32.
    /// (None with a projection: the plain loops run it.)
    pub(super) fn recurrence(&self) -> Option<Recurrence<'_>> {
        (TypeId::of::<T>() == TypeId::of::<f32>() && self.weights.weight_hr.is_none()).then(|| {
            Recurrence {
                weight_hh: bytemuck::cast_slice(&self.weights.weight_hh),
                hidden: self.hidden,
                batch: self.batch,
                seq_len: self.seq_len,
                reverse: self.reverse,
                lengths: self.lengths,
                out_offset: self.out_offset,
                out_stride: self.out_stride,
                isa: Isa::detect(),
            }
        })
    }

    /// Time indices in the order this direction visits them.
    pub fn steps(&self) -> impl DoubleEndedIterator<Item = usize> + use<T> {
        let (n, rev) = (self.seq_len, self.reverse);
        (0..n).map(move |s| if rev { n - 1 - s } else { s })
    }

    /// The time index visited just before `t`, if any.
    pub fn previous_step(&self, t: usize) -> Option<usize> {
        if self.reverse {
            (t + 1 < self.seq_len).then_some(t + 1)
        } else {
            t.checked_sub(1)
        }
    }

    pub(super) fn forward(
        &self,
        x: &[T],
        h_0: Vec<T>,
        c_0: Vec<T>,
        out: &mut [T],
    ) -> DirectionResult<T> {
        let (hid, bsz, tb) = (self.hidden, self.batch, self.seq_len * self.batch);
        let w = self.weights;

        // 1. Input projection for the whole sequence, one GEMM:
        //    G = X · W_ihᵀ + (b_ih + b_hh)        [T·B, 4H]
        //    In f32 it runs on the step kernel's register tiles: inside the
        //    step kernel itself with at least a full tile of rows (`gates`
        //    then only receives the activations saved for training), else
        //    before the recurrence (`fused_projection.rs`).
        let bias: Vec<T> = match (&w.bias_ih, &w.bias_hh) {
            (Some(b_ih), Some(b_hh)) => b_ih.iter().zip(b_hh).map(|(&a, &b)| a + b).collect(),
            _ => vec![T::zero(); 4 * hid],
        };
        // (With fewer rows than a full tile, one batched projection over all
        // T·B rows keeps more accumulators busy than the per-step tiles.)
        let fused = self.recurrence();
        let fused_input = fused.as_ref().is_some_and(|r| bsz >= r.isa.rows());
        let mut gates = if fused_input && !self.save {
            Vec::new()
        } else {
            // Every element is written below (or, with the fused input,
            // every one the backward pass reads).
            scratch::reused(tb * 4 * hid)
        };
        match &fused {
            _ if fused_input => {}
            Some(fused) => project(
                bytemuck::cast_slice(x),
                bytemuck::cast_slice(&w.weight_ih),
                bytemuck::cast_slice(&bias),
                hid,
                self.input_size,
                bytemuck::cast_slice_mut(&mut gates),
                fused.isa,
            ),
            None => {
                for row in gates.chunks_exact_mut(4 * hid) {
                    row.copy_from_slice(&bias);
                }
                matmul(
                    &mut gates,
                    MatRef::new(x, tb, self.input_size),
                    MatRef::new(&w.weight_ih, 4 * hid, self.input_size).t(),
                    true,
                );
            }
        }

        // 2. The recurrence: in f32 by the fused kernel of `fused.rs`, which
        //    computes exactly the loop below (without a projection).
        let hout = self.hidden_out;
        let (mut h, mut c) = (h_0.clone(), c_0.clone());
        let (saved_h, saved_c) = if self.save {
            (tb * hout, tb * hid)
        } else {
            (0, 0)
        };
        // Both paths write every step of every row (padding carries the state).
        let (mut h_all, mut c_all) = (scratch::reused(saved_h), scratch::reused(saved_c));
        if let Some(fused) = &fused {
            fused.run(
                fused_input.then(|| StepInput {
                    x: bytemuck::cast_slice(x),
                    size: self.input_size,
                    weight_ih: bytemuck::cast_slice(&w.weight_ih),
                    bias: bytemuck::cast_slice(&bias),
                }),
                bytemuck::cast_slice_mut(&mut gates),
                bytemuck::cast_slice_mut(&mut h),
                bytemuck::cast_slice_mut(&mut c),
                bytemuck::cast_slice_mut(out),
                bytemuck::cast_slice_mut(&mut h_all),
                bytemuck::cast_slice_mut(&mut c_all),
            );
        } else {
            // With a projection, m = o ⊙ tanh(c) [B, H] and h = m · W_hrᵀ [B, P].
            let mut m = vec![T::zero(); if w.weight_hr.is_some() { bsz * hid } else { 0 }];
            let mut h_proj = vec![T::zero(); if w.weight_hr.is_some() { bsz * hout } else { 0 }];
            for t in self.steps() {
                // gates[t] += h_{t-1} · W_hhᵀ                      [B, 4H]
                let g_t = &mut gates[t * bsz * 4 * hid..(t + 1) * bsz * 4 * hid];
                matmul(
                    g_t,
                    MatRef::new(&h, bsz, hout),
                    MatRef::new(&w.weight_hh, 4 * hid, hout).t(),
                    true,
                );
                for b in 0..bsz {
                    if t >= self.lengths[b] {
                        continue; // padded step: state carries over, output stays 0
                    }
                    let g = &mut g_t[b * 4 * hid..(b + 1) * 4 * hid];
                    for j in 0..hid {
                        let i_g = g[j].sigmoid();
                        let f_g = g[hid + j].sigmoid();
                        let g_g = g[2 * hid + j].tanh_act();
                        let o_g = g[3 * hid + j].sigmoid();
                        let c_new = f_g * c[b * hid + j] + i_g * g_g;
                        let h_new = o_g * c_new.tanh_act();
                        (g[j], g[hid + j], g[2 * hid + j], g[3 * hid + j]) = (i_g, f_g, g_g, o_g);
                        c[b * hid + j] = c_new;
                        if w.weight_hr.is_some() {
                            m[b * hid + j] = h_new;
                        } else {
                            h[b * hid + j] = h_new;
                            out[(t * bsz + b) * self.out_stride + self.out_offset + j] = h_new;
                        }
                    }
                }
                if let Some(w_hr) = &w.weight_hr {
                    // h_t = m · W_hrᵀ                                  [B, P]
                    matmul(
                        &mut h_proj,
                        MatRef::new(&m, bsz, hid),
                        MatRef::new(w_hr, hout, hid).t(),
                        false,
                    );
                    for b in (0..bsz).filter(|&b| t < self.lengths[b]) {
                        let row = &h_proj[b * hout..(b + 1) * hout];
                        h[b * hout..(b + 1) * hout].copy_from_slice(row);
                        let at = (t * bsz + b) * self.out_stride + self.out_offset;
                        out[at..at + hout].copy_from_slice(row);
                    }
                }
                if self.save {
                    h_all[t * bsz * hout..(t + 1) * bsz * hout].copy_from_slice(&h);
                    c_all[t * bsz * hid..(t + 1) * bsz * hid].copy_from_slice(&c);
                }
            }
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
            },
        }
    }
}
