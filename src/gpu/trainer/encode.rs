//! Command encoding of one [`GpuTrainer`] step: the batch and scalars it
//! writes, then the dispatch lists and the LSTM's passes in order.

use super::space::{Dispatch, StepSpace};
use super::{GpuTrainer, scaling_mode};
use crate::error::Result;
use crate::gpu::InitialState;
use crate::gpu::kernels::TrainScalars;
use crate::gpu::tensor::TENSOR_USAGE;
use crate::model::{Batch, Inputs, Targets};
use crate::reference::OptimizerKind;

impl GpuTrainer {
    /// Writes the batch and this step's scalars (before the submit).
    pub(super) fn write_inputs(&self, idx: usize, batch: &Batch<'_>) {
        let q = self.ctx.queue();
        let sp = &self.spaces[idx];
        match batch.inputs {
            Inputs::Features(x) => q.write_buffer(&sp.input, 0, bytemuck::cast_slice(x)),
            Inputs::Tokens(ids) => {
                let ids: Vec<u32> = ids.iter().map(|&v| v as u32).collect();
                q.write_buffer(&sp.input, 0, bytemuck::cast_slice(&ids));
            }
        }
        let lens: Vec<u32> = match batch.lengths {
            Some(l) => l.iter().map(|&v| v as u32).collect(),
            None => vec![batch.seq_len as u32; batch.batch],
        };
        q.write_buffer(&sp.lengths, 0, bytemuck::cast_slice(&lens));
        match batch.targets {
            Targets::Values(v) => q.write_buffer(&sp.targets, 0, bytemuck::cast_slice(v)),
            Targets::Classes(c) => {
                let c: Vec<i32> = c.iter().map(|&k| k as i32).collect();
                q.write_buffer(&sp.targets, 0, bytemuck::cast_slice(&c));
            }
        }
        let t = self.step + 1;
        let (b1, b2) = match self.config.optimizer {
            OptimizerKind::Adam { betas, .. } | OptimizerKind::AdamW { betas, .. } => betas,
            OptimizerKind::Sgd { .. } => (0.0, 0.0),
        };
        let count = batch.loss_count(self.shape.head_kind, self.config.loss, self.shape.outputs);
        let s = TrainScalars {
            lr: self
                .config
                .schedule
                .lr(self.config.optimizer.lr(), self.step) as f32,
            bias1: (1.0 - b1.powi(t as i32)) as f32,
            bias2: (1.0 - b2.powi(t as i32)) as f32,
            inv_count: if count == 0 { 0.0 } else { 1.0 / count as f32 },
            clip_max: self.config.clip_grad_norm.unwrap_or(0.0) as f32,
            first: if self.step == 0 { 1.0 } else { 0.0 },
            step_index: self.step as u32,
            scaling: scaling_mode(self.loss_scale),
            ..Default::default()
        };
        q.write_buffer(
            &self.scalars,
            0,
            &bytemuck::bytes_of(&s)[..TrainScalars::HOST_BYTES as usize],
        );
    }

    pub(super) fn encode_step(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        idx: usize,
        batch: &Batch<'_>,
    ) -> Result<()> {
        let ctx = self.ctx.clone();
        self.run_list(enc, idx, |s| &s.before);
        let seed = self.config.dropout_seed.wrapping_add(self.batches());
        let lstm_in = self.spaces[idx].lstm_in.clone();
        // Stateful training starts from the carried state and keeps the final one.
        let state = match &self.carry {
            Some((h_0, c_0)) if self.config.stateful && self.carrying => {
                InitialState::Given { h_0, c_0 }
            }
            _ => InitialState::Zeros,
        };
        let w = self
            .lstm
            .encode_train_forward(enc, &lstm_in, batch.lengths, seed, state)?;
        if let (true, Some((h, c))) = (self.config.stateful, &self.carry) {
            let (h_n, c_n) = self.lstm.final_state(batch.batch);
            enc.copy_buffer_to_buffer(&h_n.buffer, 0, &h.buffer, 0, h.byte_len());
            enc.copy_buffer_to_buffer(&c_n.buffer, 0, &c.buffer, 0, c.byte_len());
            self.carrying = true;
        }
        let sp = &self.spaces[idx];
        let out = self.lstm.output_of(w);
        enc.copy_buffer_to_buffer(&out.buffer, 0, &sp.lstm_out.buffer, 0, out.byte_len());
        self.run_list(enc, idx, |s| &s.head);
        let sp = &self.spaces[idx];
        self.lstm.encode_train_backward(enc, w, &sp.d_output);
        if self.shape.embedding.is_some() {
            let d_in = self.lstm.d_input_of(w);
            enc.copy_buffer_to_buffer(&d_in.buffer, 0, &sp.d_embedded.buffer, 0, d_in.byte_len());
        }
        if self.config.grad_accumulation > 1 && self.accumulators.is_empty() {
            // One zeroed f32 accumulator per tensor the optimizer updates.
            let lens: Vec<usize> = self.tensors().iter().map(|t| t.4).collect();
            self.accumulators = lens
                .iter()
                .map(|&len| ctx.create_buffer("accumulated gradient", 4 * len as u64, TENSOR_USAGE))
                .collect::<Result<_>>()?;
        }
        if self.spaces[idx].after.is_empty() {
            // The LSTM's gradient buffers exist now: bind the update kernels.
            let (after, accumulate) = self.bind_after(idx)?;
            self.spaces[idx].after = after;
            self.spaces[idx].accumulate = accumulate;
        }
        if self.updates_now() {
            self.run_list(enc, idx, |s| &s.after);
            for acc in &self.accumulators {
                enc.clear_buffer(acc, 0, None);
            }
        } else {
            self.run_list(enc, idx, |s| &s.accumulate);
        }
        ctx.check()
    }

    fn run_list(
        &self,
        enc: &mut wgpu::CommandEncoder,
        idx: usize,
        list: impl Fn(&StepSpace) -> &Vec<Dispatch>,
    ) {
        let items = list(&self.spaces[idx]);
        if items.is_empty() {
            return;
        }
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("training"),
            timestamp_writes: None,
        });
        for dispatch in items {
            dispatch.encode(&self.ctx, &mut pass);
        }
    }
}
