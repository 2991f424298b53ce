//! One training step of a [`Model`] on the host: the specification of what
//! the [`Trainer`](crate::Trainer) does on any device.
//!
//! The step is written once, over the LSTM passes it is given
//! ([`LstmPasses`]): the reference's plain loops here, or the CPU engine's
//! kernels when a [`Trainer`](crate::Trainer) runs on [`Device::cpu`]
//! (crate::Device::cpu). The embedding, head, loss, clipping and optimizer
//! are the reference's in both.

use super::{
    ForwardCache, Gradients, LstmOutput, Optimizer, OutputGrads, ParamGradients, clip_grad_norm,
    clip_grad_value, last_valid_step, last_valid_step_backward,
};
use crate::error::{LstmError, Result};
use crate::input::LstmInput;
use crate::model::{Batch, HeadKind, Inputs, Model, TrainConfig, loss_of, module_seed};
use crate::real::Real;
use crate::tensor::Tensor;
use crate::weights::LstmWeights;

/// The LSTM's forward and backward passes, as a training step needs them.
pub(crate) trait LstmPasses<T> {
    fn forward(&self, w: &LstmWeights<T>, x: &LstmInput<'_, T>) -> Result<LstmOutput<T>>;
    fn forward_train(
        &self,
        w: &LstmWeights<T>,
        x: &LstmInput<'_, T>,
        seed: u64,
    ) -> Result<(LstmOutput<T>, ForwardCache<T>)>;
    fn backward(
        &self,
        w: &LstmWeights<T>,
        cache: &ForwardCache<T>,
        grads: &OutputGrads<'_, T>,
    ) -> Result<Gradients<T>>;
    fn backward_params(
        &self,
        w: &LstmWeights<T>,
        cache: &ForwardCache<T>,
        grads: &OutputGrads<'_, T>,
    ) -> Result<ParamGradients<T>>;
    /// Gives a cache's buffers back once the step is done with them.
    fn recycle(&self, _cache: ForwardCache<T>) {}
    /// Gives a large buffer of the step back, for the next step to reuse.
    fn recycle_buffer(&self, _buffer: Vec<T>) {}
}

/// The reference's own passes.
pub(crate) struct Plain;

impl<T: Real> LstmPasses<T> for Plain {
    fn forward(&self, w: &LstmWeights<T>, x: &LstmInput<'_, T>) -> Result<LstmOutput<T>> {
        super::forward(w, x)
    }
    fn forward_train(
        &self,
        w: &LstmWeights<T>,
        x: &LstmInput<'_, T>,
        seed: u64,
    ) -> Result<(LstmOutput<T>, ForwardCache<T>)> {
        super::forward_train(w, x, seed)
    }
    fn backward(
        &self,
        w: &LstmWeights<T>,
        cache: &ForwardCache<T>,
        grads: &OutputGrads<'_, T>,
    ) -> Result<Gradients<T>> {
        super::backward(w, cache, grads)
    }
    fn backward_params(
        &self,
        w: &LstmWeights<T>,
        cache: &ForwardCache<T>,
        grads: &OutputGrads<'_, T>,
    ) -> Result<ParamGradients<T>> {
        super::backward_params(w, cache, grads)
    }
}

/// A model, how it is trained, and the optimizer's state.
#[derive(Clone, Debug)]
pub(crate) struct TrainState<T> {
    pub model: Model<T>,
    pub config: TrainConfig,
    pub optimizer: Optimizer<T>,
    /// The loss of the last step, before its update.
    pub last_loss: Option<f64>,
    /// Stateful training: the final (h_n, c_n) of each recurrent module in
    /// the last forward pass (empty when the next starts from zeros).
    pub carry: Vec<(Tensor<T>, Tensor<T>)>,
    /// Gradient accumulation: the sum of the gradients of the `pending`
    /// batches since the last update (empty when none).
    accumulated: Vec<Vec<T>>,
    pub pending: u64,
}

impl<T: Real> TrainState<T> {
    pub fn new(model: Model<T>, config: TrainConfig) -> Result<Self> {
        config.validate()?;
        model.validate()?;
        let sizes: Vec<usize> = model
            .named_params()
            .iter()
            .map(|(_, _, v)| v.len())
            .collect();
        let optimizer = Optimizer::new(config.optimizer, &sizes)?;
        Ok(TrainState {
            model,
            config,
            optimizer,
            last_loss: None,
            carry: Vec::new(),
            accumulated: Vec::new(),
            pending: 0,
        })
    }

    /// Stateful training: the states the next forward pass starts from, one
    /// per recurrent module (none when it starts from zeros); a batch of
    /// another size is an error.
    #[allow(clippy::type_complexity)]
    fn carried(&self, batch: usize) -> Result<Option<&[(Tensor<T>, Tensor<T>)]>> {
        match self.carry.first() {
            Some(s) if self.config.stateful => {
                let carried = s.0.shape()[1];
                if carried != batch {
                    return Err(LstmError::value(
                        "batch",
                        format!(
                            "stateful training carries the state of {carried} sequences, \
                             this batch has {batch}; call reset_states() to start over"
                        ),
                    ));
                }
                Ok(Some(&self.carry))
            }
            _ => Ok(None),
        }
    }

    /// The forward pass of every recurrent module, from `x` (the first
    /// module's input): each module's output, and with `seed` (training)
    /// its cache. Keeps the final states when stateful.
    #[allow(clippy::type_complexity)]
    fn forward_modules(
        &mut self,
        passes: &impl LstmPasses<T>,
        x: Tensor<T>,
        batch: &Batch<'_>,
        seed: Option<u64>,
    ) -> Result<(Vec<Tensor<T>>, Vec<ForwardCache<T>>)> {
        let carried = self.carried(batch.batch)?;
        let (mut inputs, mut caches, mut finals) = (vec![x], Vec::new(), Vec::new());
        for (k, w) in self.model.recurrent().enumerate() {
            let x = inputs.last().expect("the input");
            let mut lx = LstmInput::new(x);
            if let Some(l) = batch.lengths {
                lx = lx.with_lengths(l);
            }
            if let Some((h, c)) = carried.map(|s| &s[k]) {
                lx = lx.with_carried(w.config.cell, h, c);
            }
            let out = match seed {
                Some(seed) => {
                    let (out, cache) = passes.forward_train(w, &lx, module_seed(seed, k))?;
                    caches.push(cache);
                    out
                }
                None => passes.forward(w, &lx)?,
            };
            finals.push((out.h_n, out.c_n));
            inputs.push(out.output);
        }
        if self.config.stateful {
            self.carry = finals;
        }
        // Training keeps only the last output (the caches hold the rest).
        let outputs = match seed {
            Some(_) => inputs.split_off(inputs.len() - 1),
            None => inputs,
        };
        Ok((outputs, caches))
    }

    /// Batches trained on so far: optimizer updates × N plus those pending.
    pub fn batches(&self) -> u64 {
        self.optimizer.step * self.config.grad_accumulation as u64 + self.pending
    }

    /// Forgets the gradients accumulated since the last update.
    pub fn drop_pending(&mut self) {
        self.accumulated.clear();
        self.pending = 0;
    }

    /// Forgets the carried state: the next forward pass starts from zeros
    /// (Keras' `reset_states`).
    pub fn reset_states(&mut self) {
        self.carry.clear();
    }

    /// The LSTM's input for `batch`: its features, or its tokens' embeddings.
    fn lstm_input(&self, batch: &Batch<'_>) -> Result<Tensor<T>> {
        let m = &self.model;
        let x: Vec<T> = match batch.inputs {
            Inputs::Features(f) => f.iter().map(|&v| T::from_f64(v as f64)).collect(),
            Inputs::Tokens(ids) => m.embedding.as_ref().expect("validated").forward(ids)?,
        };
        Tensor::new([batch.seq_len, batch.batch, m.lstm.config.input_size], x)
    }

    /// Evaluation mode: [rows, O] outputs, no dropout, nothing saved (but
    /// the final states, when stateful).
    pub fn predict(&mut self, passes: &impl LstmPasses<T>, batch: &Batch<'_>) -> Result<Vec<T>> {
        batch.validate(&self.model.shape(), self.config.loss)?;
        let (t, b) = (batch.seq_len, batch.batch);
        let x = self.lstm_input(batch)?;
        let (mut outputs, _) = self.forward_modules(passes, x, batch, None)?;
        let out = outputs.pop().expect("the last module's output");
        let m = &self.model;
        let f = m.features();
        let head_in = match m.head_kind {
            HeadKind::PerStep => out.into_data(),
            HeadKind::LastStep => last_valid_step(out.data(), t, b, f, batch.lengths),
        };
        Ok(m.head_forward(&head_in, head_in.len() / f).0)
    }

    /// Evaluation mode: the loss on `batch`.
    pub fn evaluate(&mut self, passes: &impl LstmPasses<T>, batch: &Batch<'_>) -> Result<f64> {
        let out = self.predict(passes, batch)?;
        loss_of(&self.model.shape(), self.config.loss, batch, &out).map(|(l, _)| l.as_f64())
    }

    /// One step: forward, loss, backward, clipping, update. Returns the loss
    /// before the update. A non-finite loss is an error naming the step, and
    /// nothing is updated.
    pub fn step(&mut self, passes: &impl LstmPasses<T>, batch: &Batch<'_>) -> Result<f64> {
        batch.validate(&self.model.shape(), self.config.loss)?;
        let step = self.optimizer.step;
        let (t, b) = (batch.seq_len, batch.batch);
        let x = self.lstm_input(batch)?;
        let seed = self.config.dropout_seed.wrapping_add(self.batches());
        let (mut outputs, caches) = self.forward_modules(passes, x, batch, Some(seed))?;
        let out = outputs.pop().expect("the last module's output");
        let m = &self.model;
        let features = m.features();
        let head_in = match m.head_kind {
            HeadKind::PerStep => out.into_data(),
            HeadKind::LastStep => last_valid_step(out.data(), t, b, features, batch.lengths),
        };
        let rows = head_in.len() / features;
        let (logits, hidden_out) = m.head_forward(&head_in, rows);
        let (loss, d_logits) = loss_of(&m.shape(), self.config.loss, batch, &logits)?;
        if !loss.is_finite() {
            self.last_loss = Some(loss.as_f64());
            return Err(LstmError::NonFiniteLoss {
                step,
                loss: loss.as_f64(),
            });
        }
        let (head_grads, hidden_grads) = match (&m.hidden, &hidden_out) {
            (Some(d), Some(a)) => {
                let mut g = m.head.backward(a, rows, &d_logits);
                let hg = d.backward(&head_in, a, rows, &g.input);
                g.input = hg.input.clone();
                (g, Some(hg))
            }
            _ => (m.head.backward(&head_in, rows, &d_logits), None),
        };
        let d_out = match m.head_kind {
            HeadKind::PerStep => head_grads.input,
            HeadKind::LastStep => {
                last_valid_step_backward(&head_grads.input, t, b, features, batch.lengths)
            }
        };
        // Backward through the modules, from the last: each one's input
        // gradient is the output gradient of the one before. The first
        // module's input gradient is needed only to train an embedding.
        let modules: Vec<&LstmWeights<T>> = m.recurrent().collect();
        let mut d_output = Tensor::new([t, b, features], d_out)?;
        let mut module_grads = Vec::with_capacity(modules.len());
        for (k, (w, cache)) in modules.iter().zip(caches).enumerate().rev() {
            let upstream = OutputGrads {
                d_output: &d_output,
                d_h_n: None,
                d_c_n: None,
            };
            let needs_input = k > 0 || m.embedding.is_some();
            let (weights, d_input) = match needs_input {
                true => {
                    let g = passes.backward(w, &cache, &upstream)?;
                    (g.weights, Some(g.d_input))
                }
                false => (passes.backward_params(w, &cache, &upstream)?.weights, None),
            };
            passes.recycle(cache);
            module_grads.push(weights);
            if let Some(d_input) = d_input {
                passes.recycle_buffer(std::mem::replace(&mut d_output, d_input).into_data());
            }
        }
        let mut grads: Vec<Vec<T>> = Vec::new();
        if let (Inputs::Tokens(ids), Some(e)) = (batch.inputs, &m.embedding) {
            grads.push(e.backward(ids, d_output.data()));
        }
        passes.recycle_buffer(head_in);
        passes.recycle_buffer(d_output.into_data());
        for g in module_grads.into_iter().rev() {
            grads.extend(g.into_params());
        }
        if let Some(hg) = hidden_grads {
            grads.push(hg.weight);
            grads.push(hg.bias);
        }
        grads.push(head_grads.weight);
        grads.push(head_grads.bias);
        // Gradient accumulation: sum until the N-th batch, then its mean.
        let n = self.config.grad_accumulation as u64;
        if n > 1 {
            if self.accumulated.is_empty() {
                self.accumulated = grads;
            } else {
                for (acc, g) in self.accumulated.iter_mut().zip(&grads) {
                    acc.iter_mut().zip(g).for_each(|(a, &g)| *a = *a + g);
                }
            }
            self.pending += 1;
            self.last_loss = Some(loss.as_f64());
            if self.pending < n {
                return Ok(loss.as_f64());
            }
            let scale = T::from_f64(1.0 / n as f64);
            grads = std::mem::take(&mut self.accumulated);
            grads
                .iter_mut()
                .for_each(|g| g.iter_mut().for_each(|v| *v = *v * scale));
            self.pending = 0;
        }
        if let Some(max) = self.config.clip_grad_norm {
            let mut refs: Vec<&mut [T]> = grads.iter_mut().map(|g| &mut g[..]).collect();
            clip_grad_norm(&mut refs, max);
        }
        if let Some(clip) = self.config.clip_grad_value {
            let mut refs: Vec<&mut [T]> = grads.iter_mut().map(|g| &mut g[..]).collect();
            clip_grad_value(&mut refs, clip);
        }
        let lr = self.config.schedule.lr(self.config.optimizer.lr(), step);
        let grad_refs: Vec<&[T]> = grads.iter().map(|g| &g[..]).collect();
        let mut params = self.model.params_mut();
        self.optimizer.step(&mut params, &grad_refs, lr)?;
        self.last_loss = Some(loss.as_f64());
        Ok(loss.as_f64())
    }
}

/// Trains a [`Model`] with the reference alone: the specification that every
/// device's [`Trainer`](crate::Trainer) is tested against, in f32 or f64.
#[derive(Clone, Debug)]
pub struct ReferenceTrainer<T = f32>(TrainState<T>);

impl<T: Real> ReferenceTrainer<T> {
    /// Prepares training of `model` with `config`; fails on an invalid config.
    pub fn new(model: Model<T>, config: TrainConfig) -> Result<Self> {
        TrainState::new(model, config).map(ReferenceTrainer)
    }

    /// One step: forward, loss, backward, clipping, update. Returns the loss
    /// before the update. A non-finite loss is an error naming the step, and
    /// nothing is updated.
    pub fn step(&mut self, batch: &Batch<'_>) -> Result<f64> {
        self.0.step(&Plain, batch)
    }

    /// Evaluation mode: the model's outputs for `batch` (its targets are
    /// ignored), with no dropout. Returns [rows, O]: rows = T·B for a
    /// per-step head, B for a last-step one.
    pub fn predict(&mut self, batch: &Batch<'_>) -> Result<Vec<T>> {
        self.0.predict(&Plain, batch)
    }

    /// Evaluation mode: the loss on `batch`.
    pub fn evaluate(&mut self, batch: &Batch<'_>) -> Result<f64> {
        self.0.evaluate(&Plain, batch)
    }

    /// Stateful training: forgets the carried state (Keras' `reset_states`).
    pub fn reset_states(&mut self) {
        self.0.reset_states();
    }

    /// The model as trained so far.
    pub fn model(&self) -> &Model<T> {
        &self.0.model
    }

    /// The optimizer and its state.
    pub fn optimizer(&self) -> &Optimizer<T> {
        &self.0.optimizer
    }

    /// Completed optimizer steps.
    pub fn step_count(&self) -> u64 {
        self.0.optimizer.step
    }
}
