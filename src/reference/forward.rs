//! The reference forward pass: PyTorch's `nn.LSTM`, in plain loops that a
//! reader checks by eye against DESIGN.md §1. The layers, directions,
//! lengths and dropout between layers here serve the GRU too (`gru.rs` has
//! its cell).
//!
//! Internally everything is time-major: x [T, B, in], gates [T, B, 4H].

use crate::config::{Activation, Cell, LstmConfig};
use crate::dropout::{Dropout, variational_masks};
use crate::error::Result;
use crate::gemm::{MatRef, Threads, matmul};
use crate::input::LstmInput;
use crate::real::Real;
use crate::tensor::Tensor;
use crate::weights::{LayerWeights, LstmWeights};

/// What a forward pass returns, in PyTorch's layouts.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmOutput<T = f32> {
    /// [T, B, D·H_out] (or [B, T, D·H_out] with `batch_first`); forward
    /// direction in `[.., 0..H_out]`, reverse in `[.., H_out..2H_out]`; zero
    /// past each sequence's length.
    pub output: Tensor<T>,
    /// [D·L, B, H_out]: hidden state at each sequence's last valid step.
    pub h_n: Tensor<T>,
    /// [D·L, B, H]: cell state at each sequence's last valid step. A GRU
    /// has none: [D·L, B, 0], empty.
    pub c_n: Tensor<T>,
    /// With [`LstmInput::with_cell_states`]: the last layer's cell state c_t
    /// after every step, laid out as `output`: [T, B, D·H] (or [B, T, D·H]
    /// with `batch_first`), forward direction in `[.., 0..H]`, reverse in
    /// `[.., H..2H]`, zero past each sequence's length. `None` otherwise.
    pub cell_states: Option<Tensor<T>>,
}

/// [`LstmOutput::cell_states`] from the last layer's cache: its directions'
/// c [T, B, H] in the output's layout (batch-first when the model is),
/// zero at padded steps.
pub(crate) fn cell_states_of<T: Real>(
    cfg: &LstmConfig,
    last: &LayerCache<T>,
    seq_len: usize,
    batch: usize,
    lengths: &[usize],
) -> Result<Tensor<T>> {
    let hidden = cfg.hidden_size;
    let directions: Vec<&[T]> = last.directions.iter().map(|d| &d.c[..]).collect();
    let dirs = directions.len();
    let mut out = vec![T::zero(); seq_len * batch * dirs * hidden];
    for (d, c) in directions.iter().enumerate() {
        for t in 0..seq_len {
            for b in (0..batch).filter(|&b| t < lengths[b]) {
                let src = &c[(t * batch + b) * hidden..(t * batch + b + 1) * hidden];
                let at = ((t * batch + b) * dirs + d) * hidden;
                out[at..at + hidden].copy_from_slice(src);
            }
        }
    }
    let out = Tensor::new([seq_len, batch, dirs * hidden], out)?;
    Ok(if cfg.batch_first {
        out.swap_first_two_axes()
    } else {
        out
    })
}

/// What one layer·direction saves for the backward pass: 6·T·B·H values
/// (5·T·B·H + T·B·P with a projection; 5·T·B·H for a GRU).
#[derive(Clone, Debug)]
pub struct DirectionCache<T> {
    /// [T, B, 4H]: activated gates i, f, g, o at valid steps; for a GRU, the
    /// gates r, z, n and W_hn·h_{t-1} + b_hn. Rows of padded steps are never
    /// read.
    pub gates: Vec<T>,
    /// [T, B, H]: cell state after step t; padded steps carry it unchanged.
    /// Empty for a GRU.
    pub c: Vec<T>,
    /// [T, B, H_out]: hidden state after step t; padded steps carry it unchanged.
    pub h: Vec<T>,
    /// \[B, H_out\]: the hidden state this direction started from.
    pub h_0: Vec<T>,
    /// \[B, H\]: the cell state this direction started from (empty for a
    /// GRU).
    pub c_0: Vec<T>,
    /// [B, in]: the input dropout mask (0 or 1/(1-p)) this direction
    /// multiplied x_t by at every step; `None` without input dropout.
    pub input_mask: Option<Vec<T>>,
    /// [B, H_out]: the recurrent dropout mask h_{t-1} was multiplied by in
    /// the recurrent product; `None` without recurrent dropout.
    pub recurrent_mask: Option<Vec<T>>,
    /// A layer-normalised LSTM's saved norms; `None` otherwise.
    pub layer_norm: Option<LayerNormCache<T>>,
}

/// What a layer-normalised LSTM's direction saves of its three layer norms:
/// the normalised rows v̂ = (v − mean) / σ, before gain and bias, and 1/σ.
#[derive(Clone, Debug)]
pub struct LayerNormCache<T> {
    /// [T, B, 4H]: the normalised x̃ · W_ihᵀ.
    pub ih_hat: Vec<T>,
    /// [T, B]
    pub ih_rstd: Vec<T>,
    /// [T, B, 4H]: the normalised h̃_{t-1} · W_hhᵀ (valid rows).
    pub hh_hat: Vec<T>,
    /// [T, B]
    pub hh_rstd: Vec<T>,
    /// [T, B, H]: the normalised c_t (valid rows).
    pub c_hat: Vec<T>,
    /// [T, B]
    pub c_rstd: Vec<T>,
}

/// What one layer saves.
#[derive(Clone, Debug)]
pub struct LayerCache<T> {
    /// [T, B, in]: the layer's input (after the previous layer's dropout).
    pub input: Vec<T>,
    /// One per direction.
    pub directions: Vec<DirectionCache<T>>,
    /// [T, B, D·H_out]: the dropout mask applied to this layer's output (0 or
    /// 1/(1-p)); `None` for the last layer and when p = 0.
    pub dropout_mask: Option<Vec<T>>,
}

/// Everything the backward pass needs, saved by a training forward pass.
#[derive(Clone, Debug)]
pub struct ForwardCache<T> {
    /// T: the padded sequence length.
    pub seq_len: usize,
    /// B: the batch size.
    pub batch: usize,
    /// \[B\]: valid steps per sequence (all T when no lengths were given).
    pub lengths: Vec<usize>,
    /// One per layer, first layer first.
    pub layers: Vec<LayerCache<T>>,
}

/// Inference: PyTorch's `lstm.eval()(input, (h_0, c_0))` (or
/// `gru.eval()(input, h_0)`). Dropout is off.
pub fn forward<T: Real>(weights: &LstmWeights<T>, x: &LstmInput<'_, T>) -> Result<LstmOutput<T>> {
    run(weights, x, None).map(|(out, _)| out)
}

/// Training-mode forward: applies inter-layer dropout and the variational
/// input and recurrent dropouts with masks drawn from `dropout_seed` (see
/// [`crate::dropout`]) and saves what [`backward`](super::backward) needs.
pub fn forward_train<T: Real>(
    weights: &LstmWeights<T>,
    x: &LstmInput<'_, T>,
    dropout_seed: u64,
) -> Result<(LstmOutput<T>, ForwardCache<T>)> {
    run(weights, x, Some(dropout_seed))
}

fn run<T: Real>(
    weights: &LstmWeights<T>,
    x: &LstmInput<'_, T>,
    dropout_seed: Option<u64>,
) -> Result<(LstmOutput<T>, ForwardCache<T>)> {
    let cfg = &weights.config;
    cfg.validate()?;
    let (seq_len, batch) = x.validate(cfg)?;
    // c has H units in an LSTM, none in a GRU.
    let (h, hout, hc) = (cfg.hidden_size, cfg.hidden_out(), cfg.cell_state_size());
    let (dirs, layers) = (cfg.num_directions(), cfg.num_layers);
    let lengths: Vec<usize> = x.lengths.map_or(vec![seq_len; batch], <[usize]>::to_vec);
    // Direction idx's [B, n] slice of a [D·L, B, n] state.
    let state = |t: Option<&Tensor<T>>, idx: usize, n: usize| match t {
        Some(t) => t.data()[idx * batch * n..(idx + 1) * batch * n].to_vec(),
        None => vec![T::zero(); batch * n],
    };

    let mut layer_input = if cfg.batch_first {
        x.input.swap_first_two_axes().into_data()
    } else {
        x.input.data().to_vec()
    };
    let (mut h_n, mut c_n, mut caches) = (Vec::new(), Vec::new(), Vec::new());
    for layer in 0..layers {
        let mut layer_output = vec![T::zero(); seq_len * batch * dirs * hout];
        let mut directions = Vec::new();
        for dir in 0..dirs {
            let idx = layer * dirs + dir;
            let (input_mask, recurrent_mask) = match dropout_seed {
                Some(seed) => variational_masks::<T>(cfg, seed, layer, dir, batch),
                None => (None, None),
            };
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
                activation: cfg.activation,
                cell: cfg.cell,
            };
            let cache = run.forward(
                &layer_input,
                state(x.h_0, idx, hout),
                state(x.c_0, idx, hc),
                (input_mask, recurrent_mask),
                &mut layer_output,
            );
            // The state after the last step visited: padding carried it there.
            let last = if run.reverse { 0 } else { seq_len - 1 };
            h_n.extend_from_slice(&cache.h[last * batch * hout..(last + 1) * batch * hout]);
            c_n.extend_from_slice(&cache.c[last * batch * hc..(last + 1) * batch * hc]);
            directions.push(cache);
        }
        // Dropout on every layer's output but the last, in training only.
        let dropout_mask = match dropout_seed {
            Some(seed) if cfg.dropout > 0.0 && layer + 1 < layers => {
                let mask = Dropout {
                    p: cfg.dropout,
                    seed,
                }
                .mask::<T>(layer, seq_len, batch, dirs * hout);
                for (y, &m) in layer_output.iter_mut().zip(&mask) {
                    *y = *y * m;
                }
                Some(mask)
            }
            _ => None,
        };
        caches.push(LayerCache {
            input: std::mem::replace(&mut layer_input, layer_output),
            directions,
            dropout_mask,
        });
    }

    let output = Tensor::new([seq_len, batch, dirs * hout], layer_input)?;
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
        c_n: Tensor::new([layers * dirs, batch, hc], c_n)?,
    };
    let cache = ForwardCache {
        seq_len,
        batch,
        lengths,
        layers: caches,
    };
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
    /// This direction's columns in the layer output [T, B, D·H_out].
    pub out_offset: usize,
    pub out_stride: usize,
    /// The cell activation, of g and of c in h = o ⊙ act(c).
    pub activation: Activation,
    /// An LSTM's cell, or a GRU's (`gru.rs`).
    pub cell: Cell,
}

impl<T: Real> Direction<'_, T> {
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

    /// Runs the recurrence over `x` ([T, B, in]) from (h_0, c_0), writing
    /// this direction's columns of `out` and returning every step's state.
    /// `masks`: the input [B, in] and recurrent [B, H_out] dropout masks
    /// (each cell applies them to its own products).
    fn forward(
        &self,
        x: &[T],
        h_0: Vec<T>,
        c_0: Vec<T>,
        masks: (Option<Vec<T>>, Option<Vec<T>>),
        out: &mut [T],
    ) -> DirectionCache<T> {
        match self.cell {
            Cell::Lstm if self.weights.layer_norm.is_some() => {
                self.ln_forward(x, h_0, c_0, masks, out)
            }
            Cell::Lstm => self.lstm_forward(x, h_0, c_0, masks, out),
            Cell::Gru => {
                debug_assert!(c_0.is_empty());
                self.gru_forward(x, h_0, masks, out)
            }
        }
    }

    /// [`forward`](Self::forward) through the LSTM cell of DESIGN.md §1.
    fn lstm_forward(
        &self,
        x: &[T],
        h_0: Vec<T>,
        c_0: Vec<T>,
        masks: (Option<Vec<T>>, Option<Vec<T>>),
        out: &mut [T],
    ) -> DirectionCache<T> {
        let (input_mask, recurrent_mask) = masks;
        let act = |v: T| self.activation.apply(v);
        let (hid, hout, bsz, tb) = (
            self.hidden,
            self.hidden_out,
            self.batch,
            self.seq_len * self.batch,
        );
        let w = self.weights;

        // 1. Input projection for the whole sequence, one GEMM:
        //    G = X̃ · W_ihᵀ + (b_ih + b_hh)        [T·B, 4H]
        //    with X̃ = X ⊙ input mask (the same [B, in] rows at every step).
        let masked_x = input_mask.as_ref().map(|m| mask_rows(x, m, tb));
        let x = masked_x.as_deref().unwrap_or(x);
        let bias: Vec<T> = match (&w.bias_ih, &w.bias_hh) {
            (Some(b_ih), Some(b_hh)) => b_ih.iter().zip(b_hh).map(|(&a, &b)| a + b).collect(),
            _ => vec![T::zero(); 4 * hid],
        };
        let mut gates = bias.repeat(tb);
        matmul(
            Threads::One,
            &mut gates,
            MatRef::new(x, tb, self.input_size),
            MatRef::new(&w.weight_ih, 4 * hid, self.input_size).t(),
            true,
        );

        // 2. The recurrence, one step at a time.
        let (mut h, mut c) = (h_0.clone(), c_0.clone());
        let (mut h_all, mut c_all) = (vec![T::zero(); tb * hout], vec![T::zero(); tb * hid]);
        // With a projection, m = o ⊙ tanh(c) [B, H] and h = m · W_hrᵀ [B, P].
        let mut m = vec![T::zero(); bsz * hid];
        let mut h_proj = vec![T::zero(); bsz * hout];
        for t in self.steps() {
            // gates[t] += h̃_{t-1} · W_hhᵀ                      [B, 4H]
            // with h̃ = h ⊙ recurrent mask.
            let g_t = &mut gates[t * bsz * 4 * hid..(t + 1) * bsz * 4 * hid];
            let h_in = match &recurrent_mask {
                Some(m) => mask_rows(&h, m, 1),
                None => h.clone(),
            };
            matmul(
                Threads::One,
                g_t,
                MatRef::new(&h_in, bsz, hout),
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
                    let g_g = act(g[2 * hid + j]);
                    let o_g = g[3 * hid + j].sigmoid();
                    let c_new = f_g * c[b * hid + j] + i_g * g_g;
                    let h_new = o_g * act(c_new);
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
                    Threads::One,
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
            h_all[t * bsz * hout..(t + 1) * bsz * hout].copy_from_slice(&h);
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
            layer_norm: None,
        }
    }
}

/// `rows` ⊙ `mask` where `rows` is [reps, B, n] and `mask` is [B, n]: the
/// same mask row for row b at every step.
pub(super) fn mask_rows<T: Real>(rows: &[T], mask: &[T], reps: usize) -> Vec<T> {
    debug_assert_eq!(rows.len(), reps * mask.len());
    rows.chunks_exact(mask.len())
        .flat_map(|step| step.iter().zip(mask).map(|(&v, &m)| v * m))
        .collect()
}
