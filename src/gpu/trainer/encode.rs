//! Command encoding of one [`GpuTrainer`] step: the batch and scalars it
//! writes, then the dispatch lists and the LSTM's passes in order.

use super::space::{Dispatch, StepSpace};
use super::{GpuTrainer, scaling_mode};
use crate::error::Result;
use crate::gpu::InitialState;
use crate::gpu::kernels::TrainScalars;
use crate::gpu::tensor::TENSOR_USAGE;
use crate::model::{Batch, Inputs, Targets, module_seed};
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
        // Forward through the modules, each reading the one before's output.
        let mut input = self.spaces[idx].lstm_in.clone();
        let mut workspaces = Vec::with_capacity(self.lstms.len());
        for k in 0..self.lstms.len() {
            // Stateful training starts from the carried state and keeps the final one.
            let state = match self.carry.get(k) {
                Some((h_0, c_0)) if self.config.stateful && self.carrying => {
                    InitialState::Given { h_0, c_0 }
                }
                _ => InitialState::Zeros,
            };
            let lstm = &mut self.lstms[k];
            let w =
                lstm.encode_train_forward(enc, &input, batch.lengths, module_seed(seed, k), state)?;
            if let (true, Some((h, c))) = (self.config.stateful, self.carry.get(k)) {
                let (h_n, c_n) = lstm.final_state(batch.batch);
                enc.copy_buffer_to_buffer(&h_n.buffer, 0, &h.buffer, 0, h.byte_len());
                enc.copy_buffer_to_buffer(&c_n.buffer, 0, &c.buffer, 0, c.byte_len());
            }
            input = lstm.output_of(w).clone();
            workspaces.push(w);
        }
        self.carrying = self.config.stateful;
        let sp = &self.spaces[idx];
        enc.copy_buffer_to_buffer(&input.buffer, 0, &sp.lstm_out.buffer, 0, input.byte_len());
        self.run_list(enc, idx, |s| &s.head);
        // Backward from the last module: each one's input gradient is the
        // output gradient of the one before, and the first's trains the
        // embedding.
        let mut d_output = self.spaces[idx].d_output.clone();
        for (lstm, &w) in self.lstms.iter().zip(&workspaces).rev() {
            lstm.encode_train_backward(enc, w, &d_output);
            d_output = lstm.d_input_of(w).clone();
        }
        if self.shape.embedding.is_some() {
            let sp = &self.spaces[idx];
            enc.copy_buffer_to_buffer(
                &d_output.buffer,
                0,
                &sp.d_embedded.buffer,
                0,
                d_output.byte_len(),
            );
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
