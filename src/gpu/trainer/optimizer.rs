//! The optimizer half of a [`GpuTrainer`] step: embedding backward,
//! gradient norms, clipping and parameter updates, bound once the LSTM has
//! made its gradient buffers.

use super::GpuTrainer;
use super::space::Dispatch;
use crate::error::Result;
use crate::gpu::kernels::{
    CastBuffers, GatherBuffers, GatherParams, Kernel, OptParams, OptimBuffers, PARTIALS_PER_TENSOR,
    grid,
};
use crate::gpu::tensor::TENSOR_USAGE;
use crate::gpu::workspace::Uniforms;
use crate::reference::OptimizerKind;

impl GpuTrainer {
    /// Every (value, grad, m, v, len) the optimizer updates: the embedding
    /// and head parameters, then the LSTM's in `GpuLayer::params` order.
    #[allow(clippy::type_complexity)]
    pub(super) fn tensors(
        &self,
    ) -> Vec<(
        &wgpu::Buffer,
        &wgpu::Buffer,
        &wgpu::Buffer,
        &wgpu::Buffer,
        usize,
    )> {
        // Every (value, grad, m, v, len) the optimizer updates.
        let mut tensors: Vec<(
            &wgpu::Buffer,
            &wgpu::Buffer,
            &wgpu::Buffer,
            &wgpu::Buffer,
            usize,
        )> = Vec::new();
        for p in &self.own {
            tensors.push((&p.value, &p.grad, &p.m, &p.v, p.len));
        }
        for (lstm, state) in self.lstms.iter().zip(&self.lstm_state) {
            let cfg = lstm.config();
            let grads = lstm
                .grad_layers()
                .expect("a training forward made the gradients");
            let (h, dirs) = (cfg.hidden_size, cfg.num_directions());
            for (l, (w, g)) in lstm.param_layers().iter().zip(grads).enumerate() {
                let (m, v) = (&state[0][l], &state[1][l]);
                // Element counts in `GpuLayer::params` order: W_ih, W_hh, the
                // biases (b_ih and b_hh in one buffer), W_hr, the layer norm's.
                // Four gate slots for either cell: a GRU's three are padded.
                let mut lens = vec![dirs * 4 * h * w.input_size, dirs * 4 * h * cfg.hidden_out()];
                if cfg.bias {
                    lens.push(2 * dirs * 4 * h);
                }
                if cfg.proj_size > 0 {
                    lens.push(dirs * cfg.proj_size * h);
                }
                if cfg.layer_norm {
                    lens.push(dirs * crate::gpu::params::LN_PARAMS * h);
                }
                let params = [w, g, m, v].map(|layer| layer.params(cfg.bias));
                for (i, len) in lens.into_iter().enumerate() {
                    tensors.push((params[0][i], params[1][i], params[2][i], params[3][i], len));
                }
            }
        }
        tensors
    }

    /// Embedding backward, gradient norms, clipping and updates for every
    /// parameter, and with gradient accumulation the dispatches of the
    /// batches that do not update (the embedding backward and the
    /// additions into the accumulators): bound once the LSTM has made its
    /// gradient buffers.
    pub(super) fn bind_after(&self, idx: usize) -> Result<(Vec<Dispatch>, Vec<Dispatch>)> {
        let ctx = &self.ctx;
        let sp = &self.spaces[idx];
        let tensors = self.tensors();
        let n = tensors.len();
        let partials = ctx.create_buffer(
            "norm partials",
            4 * (n as u64 * PARTIALS_PER_TENSOR as u64),
            TENSOR_USAGE,
        )?;
        let mut u = Uniforms::new(ctx, n + 2);
        let base = self.opt_params();
        for (i, t) in tensors.iter().enumerate() {
            u.put(
                i,
                &OptParams {
                    len: t.4 as u32,
                    partial_off: i as u32 * PARTIALS_PER_TENSOR,
                    partial_count: n as u32 * PARTIALS_PER_TENSOR,
                    ..base
                },
            );
        }
        u.put(
            n,
            &OptParams {
                partial_count: n as u32 * PARTIALS_PER_TENSOR,
                ..base
            },
        );
        let e = self.shape.embedding.map_or(0, |(_, d)| d);
        u.put(
            n + 1,
            &GatherParams {
                seq_len: sp.seq_len as u32,
                batch: sp.batch as u32,
                features: e as u32,
                vocab: self.shape.embedding.map_or(0, |(v, _)| v as u32),
                tokens: (sp.seq_len * sp.batch) as u32,
                _pad: [0; 3],
            },
        );
        let uniforms = ctx.create_buffer(
            "optimizer uniforms",
            u.bytes.len() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        ctx.queue().write_buffer(&uniforms, 0, &u.bytes);
        let at = |entry: usize| (&uniforms, u.offset(entry) as u64);
        let bind = |k: &Kernel,
                    entry: usize,
                    t: &(
            &wgpu::Buffer,
            &wgpu::Buffer,
            &wgpu::Buffer,
            &wgpu::Buffer,
            usize,
        )| {
            k.bind(
                ctx,
                &OptimBuffers {
                    params: at(entry),
                    param: t.0,
                    grad: t.1,
                    m: t.2,
                    v: t.3,
                    partials: &partials,
                    scalars: &self.scalars,
                },
            )
        };
        let mut list = Vec::new();
        let mut accumulate = Vec::new();
        if let Some((vocab, dim)) = self.shape.embedding {
            let emb = &self.own[0];
            for dst in [&mut list, &mut accumulate] {
                let bg = self.kernels.embed_backward.bind(
                    ctx,
                    &GatherBuffers {
                        params: at(n + 1),
                        src: &sp.d_embedded.buffer,
                        dst: &emb.grad,
                        index: &sp.input,
                    },
                );
                dst.push(Dispatch::new(
                    &self.kernels.embed_backward,
                    bg,
                    grid(ctx, vocab * dim),
                ));
            }
        }
        // Gradient accumulation: add into the accumulators, or at the N-th
        // batch make the gradients their mean before the norms.
        for (i, (t, acc)) in tensors.iter().zip(&self.accumulators).enumerate() {
            let (k, f) = (&self.kernels.accumulate, &self.kernels.finalize);
            let into_acc = bind(k, i, &(acc, t.1, t.2, t.3, t.4));
            accumulate.push(Dispatch::new(k, into_acc, grid(ctx, t.4)));
            let mean = bind(f, i, &(t.1, acc, t.2, t.3, t.4));
            list.push(Dispatch::new(f, mean, grid(ctx, t.4)));
        }
        for (i, t) in tensors.iter().enumerate() {
            let k = &self.kernels.sum_squares;
            list.push(Dispatch::new(k, bind(k, i, t), (PARTIALS_PER_TENSOR, 1, 1)));
        }
        let clip = &self.kernels.clip;
        list.push(Dispatch::new(clip, bind(clip, n, &tensors[0]), (1, 1, 1)));
        for (i, t) in tensors.iter().enumerate() {
            let k = &self.kernels.update;
            list.push(Dispatch::new(k, bind(k, i, t), grid(ctx, t.4)));
        }
        // The modules' tensors follow the embedding and head ones, in the
        // same order in both lists.
        let mut first = self.own.len();
        for lstm in &self.lstms {
            let bias = lstm.config().bias;
            // This module's tensors in the list, with or without a working copy.
            let count: usize = lstm
                .param_layers()
                .iter()
                .map(|w| w.params(bias).len())
                .sum();
            let copies: Vec<_> = lstm
                .working_copy()
                .into_iter()
                .flatten()
                .flat_map(|w| w.params(bias))
                .collect();
            for (i, dst) in copies.iter().enumerate() {
                let t = &tensors[first + i];
                let bg = self.kernels.cast.bind(
                    ctx,
                    &CastBuffers {
                        params: at(first + i),
                        src: t.0,
                        dst,
                    },
                );
                list.push(Dispatch::new(&self.kernels.cast, bg, grid(ctx, t.4)));
            }
            first += count;
        }
        ctx.check()?;
        Ok((list, accumulate))
    }

    /// The optimizer's hyper-parameters for the update kernel, and the loss
    /// scale's growth interval for the clip kernel.
    fn opt_params(&self) -> OptParams {
        let growth_interval = match self.loss_scale {
            Some(crate::gpu::LossScale::Dynamic {
                growth_interval, ..
            }) => growth_interval,
            _ => 0,
        };
        let params = match self.config.optimizer {
            OptimizerKind::Sgd {
                momentum,
                dampening,
                weight_decay,
                nesterov,
                ..
            } => OptParams {
                kind: 0,
                momentum: momentum as f32,
                dampening: dampening as f32,
                weight_decay: weight_decay as f32,
                nesterov: u32::from(nesterov),
                ..Default::default()
            },
            OptimizerKind::Adam {
                betas,
                eps,
                weight_decay,
                ..
            }
            | OptimizerKind::AdamW {
                betas,
                eps,
                weight_decay,
                ..
            } => OptParams {
                kind: if matches!(self.config.optimizer, OptimizerKind::Adam { .. }) {
                    1
                } else {
                    2
                },
                beta1: betas.0 as f32,
                beta2: betas.1 as f32,
                eps: eps as f32,
                weight_decay: weight_decay as f32,
                ..Default::default()
            },
        };
        OptParams {
            growth_interval,
            clip_value: self.config.clip_grad_value.unwrap_or(0.0) as f32,
            inv_accumulation: 1.0 / self.config.grad_accumulation as f32,
            ..params
        }
    }
}
