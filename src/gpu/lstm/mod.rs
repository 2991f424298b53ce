//! `GpuLstm`: `nn.LSTM` as WGSL kernels, forward and backward.
//!
//! Per layer, one GEMM projects the whole sequence through `W_ih` for both
//! directions at once, then one fused step dispatch per time step runs both
//! directions' recurrences. With a hidden projection (`proj_size` > 0) a second
//! dispatch per step computes h_t = m_t · W_hrᵀ, so a step is two dispatches
//! forward and two backward. A pass is one command buffer and one submit;
//! buffers, bind groups and per-step parameters for a given (T, B) are made
//! on the first call and reused.
//!
//! This file is the API; the other roles each have a file: `cache` (the
//! buffers and bind groups of each (T, B), made on first use), `encode`
//! (command encoding of the forward pass and submits), `backward` (command
//! encoding of backpropagation) and `bptt` (what a training forward saves
//! and the buffers of backpropagation through time).

mod backward;
pub(super) mod bptt;
mod cache;
mod chunked;
mod encode;
pub(in crate::gpu) mod gru;
mod launch;
pub(super) mod masks;

use cache::State;
use encode::Source;
pub use launch::StepLaunch;
use launch::wavefront_fits;

use crate::config::LstmConfig;
use crate::error::{LstmError, Result};
use crate::gpu::kernels::{
    BackwardStepKernel, ColumnSumKernel, HiddenProjBackwardKernel, HiddenProjKernel,
    LayerNormKernels, LstmGemms, MaskKernel, PermuteKernel, StepConfig, StepKernel,
    WavefrontKernel, ZeroSlotKernel, wavefront_block,
};
use crate::gpu::params::{download_layers_async, upload_layers, write_layers};
use crate::gpu::profiler::{KernelTimes, Profiler};
use crate::gpu::tensor::read_back_async;
use crate::gpu::workspace::{GpuLayer, Workspace};
use crate::gpu::{GpuContext, GpuTensor, Precision};
use crate::input::LstmInput;
use crate::reference::{Gradients, LstmOutput, OutputGrads};
use crate::tensor::Tensor;
use crate::weights::LstmWeights;

/// Where a forward pass starts from.
#[derive(Clone, Copy, Debug)]
pub enum InitialState<'a> {
    /// h_0 = c_0 = 0.
    Zeros,
    /// Given states: h_0 [D·L, B, H_out], c_0 [D·L, B, H].
    Given {
        /// [D·L, B, H_out]
        h_0: &'a GpuTensor,
        /// [D·L, B, H]
        c_0: &'a GpuTensor,
    },
    /// The final state of the previous forward with the same batch size
    /// (zeros if there was none): Keras' `stateful` streaming, where chunk
    /// k+1 continues chunk k without the state leaving the GPU.
    Carry,
}

/// The results of a forward pass, in GPU memory. They are the engine's own
/// buffers for this shape: the next forward overwrites them, so read back
/// (`to_host`) or copy what must outlive it.
#[derive(Debug)]
pub struct GpuLstmOutput<'a> {
    /// [T, B, D·H_out], or [B, T, D·H_out] with `batch_first` (H_out = P
    /// with a hidden projection, else H).
    pub output: &'a GpuTensor,
    /// [D·L, B, H_out]
    pub h_n: &'a GpuTensor,
    /// [D·L, B, H]
    pub c_n: &'a GpuTensor,
}

/// GPU memory the engine has allocated, in bytes, summed from the sizes of
/// the buffers themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuMemory {
    /// The weights the kernels read: `W_ih`, `W_hh`, `b_ih`, `b_hh` (and
    /// `W_hr`) of every layer and direction, in the engine's precision.
    pub weights: u64,
    /// The f32 master weights kept beside f16 working weights for training
    /// (0 in f32, or when not training).
    pub master_weights: u64,
    /// The activations the last training forward saved for the backward
    /// pass: per layer the gates [T, B, D, H, 4] and h_prev [T, B, D·H_out]
    /// in the engine's precision, and c [T, B, D, H] in f32, plus m
    /// [T, B, D·H] in f32 with a hidden projection (0 before a training forward).
    pub saved_activations: u64,
}

/// An LSTM whose weights and state live on the GPU.
pub struct GpuLstm {
    ctx: GpuContext,
    config: LstmConfig,
    precision: Precision,
    gemms: LstmGemms,
    step: StepKernel,
    /// How the forward step kernel splits its work, when set; otherwise the
    /// tuner chooses per batch-rows class.
    step_config: Option<StepConfig>,
    back: BackwardStepKernel,
    permute: PermuteKernel,
    /// The bias gradient's column sum.
    column_sum: ColumnSumKernel,
    /// The f32 column sum that adds the slices of a split-K product (the
    /// bias's own with f32 storage).
    split_sum: ColumnSumKernel,
    /// The wavefront forward of a unidirectional stack without projection
    /// (two layers or more): its kernel and the packed copy of every layer's
    /// weights it reads, refreshed at each such forward.
    wave: Option<(WavefrontKernel, wgpu::Buffer)>,
    /// h_t = m_t · W_hrᵀ and its backward, with a hidden projection (`proj_size` > 0).
    hidden_proj: Option<(HiddenProjKernel, HiddenProjBackwardKernel)>,
    /// With input dropout: the input mask's kernel.
    mask: Option<MaskKernel>,
    /// For a GRU: clears the padded slots' gradients.
    zero_slot: Option<ZeroSlotKernel>,
    /// For a layer-normalised LSTM: its norm and cell kernels.
    layer_norm: Option<LayerNormKernels>,
    /// The weights the kernels read, in `precision`.
    layers: Vec<GpuLayer>,
    /// f32 master weights, which the optimizer updates when training in f16
    /// (`layers` is then their f16 copy).
    master: Option<Vec<GpuLayer>>,
    /// Parameter gradients in the same layout, made on the first backward.
    grads: Option<Vec<GpuLayer>>,
    workspaces: Vec<Workspace>,
    states: Vec<State>,
    /// (T, B) of the last training forward, which `backward` differentiates.
    last_train: Option<(usize, usize)>,
    /// Timestamp queries, once profiling is enabled.
    profiler: Option<Profiler>,
    kernel_times: Option<KernelTimes>,
}
impl GpuLstm {
    /// Uploads `weights` (PyTorch layout) and builds the kernels, in f32.
    pub fn new(ctx: &GpuContext, weights: &LstmWeights<f32>) -> Result<Self> {
        Self::with_precision(ctx, weights, Precision::F32)
    }

    /// Uploads `weights` (PyTorch layout), converted to `precision`, and
    /// builds the kernels for it. [`Precision::F16`] needs the adapter
    /// feature `SHADER_F16` ([`LstmError::MissingFeature`] otherwise); see
    /// [`crate::gpu::Precision`] for what is then stored in f16. Inputs,
    /// outputs, states and gradients at the API stay f32 either way.
    pub fn with_precision(
        ctx: &GpuContext,
        weights: &LstmWeights<f32>,
        precision: Precision,
    ) -> Result<Self> {
        ctx.check_precision(precision)?;
        let config = weights.config.clone();
        config.validate()?;
        check_variants(&config, precision)?;
        let layers = upload_layers(
            ctx,
            &config,
            |l, d| weights.layer(l, d).clone(),
            "",
            precision,
        )?;
        // The packed weights must fit one binding; a stack too large for it
        // runs layer by layer.
        let bytes =
            (config.num_layers * wavefront_block(config.hidden_size)) as u64 * precision.bytes();
        let limits = ctx.limits();
        let binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let wave = if wavefront_fits(&config) && bytes <= binding {
            Some((
                WavefrontKernel::new(precision),
                ctx.create_buffer(
                    "wavefront weights",
                    bytes,
                    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                )?,
            ))
        } else {
            None
        };
        let column_sum = ColumnSumKernel::new(ctx, precision);
        let split_sum = match precision {
            Precision::F32 => column_sum.clone(),
            Precision::F16 => ColumnSumKernel::new(ctx, Precision::F32),
        };
        let engine = GpuLstm {
            wave,
            gemms: LstmGemms::new(precision),
            step: StepKernel::new(precision),
            step_config: None,
            back: BackwardStepKernel::new(precision),
            permute: PermuteKernel::new(ctx),
            column_sum,
            split_sum,
            mask: (config.input_dropout > 0.0).then(|| MaskKernel::new(ctx)),
            zero_slot: (config.cell == crate::config::Cell::Gru).then(|| ZeroSlotKernel::new(ctx)),
            layer_norm: config.layer_norm.then(|| LayerNormKernels::new(ctx)),
            hidden_proj: (config.proj_size > 0).then(|| {
                (
                    HiddenProjKernel::new(precision),
                    HiddenProjBackwardKernel::new(ctx, precision),
                )
            }),
            ctx: ctx.clone(),
            config,
            precision,
            layers,
            master: None,
            grads: None,
            workspaces: Vec::new(),
            states: Vec::new(),
            last_train: None,
            profiler: None,
            kernel_times: None,
        };
        ctx.check()?;
        Ok(engine)
    }

    /// The architecture.
    pub fn config(&self) -> &LstmConfig {
        &self.config
    }

    /// The GPU context the weights live on.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// How weights and activations are stored.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// How the step kernels split their work when set with
    /// [`set_step_config`](Self::set_step_config); `None` when the autotuner
    /// chooses for each batch size ([`GpuContext::tuning`] lists its choices).
    pub fn step_config(&self) -> Option<StepConfig> {
        self.step_config
    }

    /// The GPU memory of the weights and of the last training forward's
    /// saved activations, from the allocated buffers.
    pub fn memory(&self) -> GpuMemory {
        let sum = |layers: &[GpuLayer]| layers.iter().map(GpuLayer::allocated_bytes).sum();
        let saved = self
            .last_train
            .and_then(|(t, b)| {
                self.workspaces
                    .iter()
                    .find(|w| (w.seq_len, w.batch) == (t, b))
            })
            .and_then(|w| w.bptt.as_ref())
            .map_or(0, |tr| tr.saved_bytes());
        GpuMemory {
            weights: sum(&self.layers),
            master_weights: self.master.as_deref().map_or(0, sum),
            saved_activations: saved,
        }
    }

    /// Reads the weights back, converted to f32 in PyTorch's layout: the
    /// master weights when there are any, else the working weights.
    pub fn weights(&self) -> Result<LstmWeights<f32>> {
        crate::runtime::block_on("GpuLstm::weights", self.weights_async())
    }

    /// [`weights`](Self::weights), awaiting the GPU (what a browser needs).
    pub async fn weights_async(&self) -> Result<LstmWeights<f32>> {
        let layers = self.master.as_deref().unwrap_or(&self.layers);
        download_layers_async(&self.ctx, &self.config, layers).await
    }

    /// Keeps f32 master weights `weights` beside the f16 working weights, for
    /// an optimizer to update (no-op in f32, where the working weights are
    /// the master weights).
    pub(super) fn keep_master_weights(&mut self, weights: &LstmWeights<f32>) -> Result<()> {
        if self.precision == Precision::F32 || self.master.is_some() {
            return Ok(());
        }
        let master = upload_layers(
            &self.ctx,
            &self.config,
            |l, d| weights.layer(l, d).clone(),
            "master ",
            Precision::F32,
        )?;
        self.master = Some(master);
        Ok(())
    }

    /// Times every later pass with GPU timestamp queries (see
    /// [`kernel_times`](Self::kernel_times)). Returns false, and changes
    /// nothing, when the adapter lacks `TIMESTAMP_QUERY`.
    pub fn enable_profiling(&mut self) -> Result<bool> {
        if self.profiler.is_none() {
            // Forward and backward: two timed passes per layer each.
            self.profiler = Profiler::new(&self.ctx, 4 * self.config.num_layers as u32)?;
        }
        Ok(self.profiler.is_some())
    }

    /// GPU time of the last pass (or training step), per phase, when profiling.
    pub fn kernel_times(&self) -> Option<KernelTimes> {
        self.kernel_times
    }

    /// Replaces the weights (PyTorch layout) with ones of the same architecture.
    pub fn set_weights(&mut self, weights: &LstmWeights<f32>) -> Result<()> {
        let mut want = self.config.clone();
        want.batch_first = weights.config.batch_first;
        want.dropout = weights.config.dropout;
        if weights.config != want
            || weights.layers.len() != self.config.num_layers * self.config.num_directions()
        {
            return Err(LstmError::InconsistentLayers {
                reason: format!(
                    "the new weights are for {:?}, the engine for {:?}",
                    weights.config, self.config
                ),
            });
        }
        write_layers(
            &self.ctx,
            &self.config,
            |l, d| weights.layer(l, d).clone(),
            &self.layers,
        );
        if let Some(master) = &self.master {
            write_layers(
                &self.ctx,
                &self.config,
                |l, d| weights.layer(l, d).clone(),
                master,
            );
        }
        Ok(())
    }

    /// Writes optimizer-state-shaped data into parameter-shaped GPU layers.
    pub(super) fn write_like_params(&self, data: &LstmWeights<f32>, dst: &[GpuLayer]) {
        write_layers(
            &self.ctx,
            &self.config,
            |l, d| data.layer(l, d).clone(),
            dst,
        );
    }

    /// Runs the forward pass on a GPU tensor: `input` is [T, B, I] (or
    /// [B, T, I] with `batch_first`), `lengths` as in
    /// `pack_padded_sequence`. One submit; nothing is read back.
    pub fn forward(
        &mut self,
        input: &GpuTensor,
        state: InitialState<'_>,
        lengths: Option<&[usize]>,
    ) -> Result<GpuLstmOutput<'_>> {
        let idx = self.pass(Source::Gpu(input, state), lengths, None, false)?;
        Ok(self.outputs(idx))
    }

    /// Runs the forward pass on host tensors and reads the results back, in
    /// one submit: the GPU counterpart of [`crate::reference::forward`]. A
    /// unidirectional sequence whose [T, B, ...] buffers would exceed the
    /// device's binding size runs in chunks of steps that fit (one submit
    /// each), carrying the state, with the same result.
    pub fn forward_host(&mut self, x: &LstmInput<'_, f32>) -> Result<LstmOutput<f32>> {
        crate::runtime::block_on("GpuLstm::forward_host", self.forward_host_async(x))
    }

    /// [`forward_host`](Self::forward_host), awaiting the read-back (what a
    /// browser needs).
    pub async fn forward_host_async(&mut self, x: &LstmInput<'_, f32>) -> Result<LstmOutput<f32>> {
        let dims = x.validate(&self.config)?;
        if let Some(chunk) = self.time_chunk(dims.0, dims.1) {
            return self.forward_host_chunked_async(x, dims, chunk).await;
        }
        let idx = self.pass(Source::Host(x), x.lengths, None, true)?;
        self.read_outputs_async(idx).await
    }

    /// Training-mode forward on a GPU tensor: applies inter-layer dropout with
    /// the mask of `dropout_seed` (the same mask as the CPU path) and saves
    /// what [`backward`](Self::backward) needs, on the GPU.
    pub fn forward_train(
        &mut self,
        input: &GpuTensor,
        state: InitialState<'_>,
        lengths: Option<&[usize]>,
        dropout_seed: u64,
    ) -> Result<GpuLstmOutput<'_>> {
        let idx = self.pass(
            Source::Gpu(input, state),
            lengths,
            Some(dropout_seed),
            false,
        )?;
        Ok(self.outputs(idx))
    }

    /// [`forward_train`](Self::forward_train) on host tensors, with read-back:
    /// the GPU counterpart of [`crate::reference::forward_train`].
    pub fn forward_train_host(
        &mut self,
        x: &LstmInput<'_, f32>,
        dropout_seed: u64,
    ) -> Result<LstmOutput<f32>> {
        crate::runtime::block_on(
            "GpuLstm::forward_train_host",
            self.forward_train_host_async(x, dropout_seed),
        )
    }

    /// [`forward_train_host`](Self::forward_train_host), awaiting the
    /// read-back.
    pub async fn forward_train_host_async(
        &mut self,
        x: &LstmInput<'_, f32>,
        dropout_seed: u64,
    ) -> Result<LstmOutput<f32>> {
        let idx = self.pass(Source::Host(x), x.lengths, Some(dropout_seed), true)?;
        let mut out = self.read_outputs_async(idx).await?;
        if x.cell_states {
            out.cell_states = Some(self.read_train_cells_async(idx, x.lengths).await?);
        }
        Ok(out)
    }

    /// The last layer's per-step cell states of the training forward in
    /// workspace `idx`, from what it saved for the backward pass, in the
    /// output's layout with padded steps zeroed.
    async fn read_train_cells_async(
        &mut self,
        idx: usize,
        lengths: Option<&[usize]>,
    ) -> Result<Tensor<f32>> {
        let layers = self.config.num_layers;
        let ws = &self.workspaces[idx];
        let dh = self.config.num_directions() * self.config.hidden_size;
        let (t, b) = (ws.seq_len, ws.batch);
        let bytes = 4 * (t * b * dh) as u64;
        let staging = self.ctx.create_buffer(
            "cell states read-back",
            bytes,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut enc = self.encoder("cell states read-back");
        let tr = ws.bptt.as_ref().expect("a training workspace");
        let (buffer, offset) = tr.last_cells(layers, bytes);
        enc.copy_buffer_to_buffer(buffer, offset, &staging, 0, bytes);
        self.submit(enc)?;
        let mut cells = crate::gpu::tensor::map_and_read_async(&self.ctx, &staging, &[&[t, b, dh]])
            .await?
            .pop()
            .expect("one tensor");
        if let Some(lengths) = lengths {
            let data = cells.data_mut();
            for s in 0..t {
                for (r, _) in lengths.iter().enumerate().filter(|&(_, &n)| s >= n) {
                    data[(s * b + r) * dh..(s * b + r + 1) * dh].fill(0.0);
                }
            }
        }
        Ok(if self.config.batch_first {
            cells.swap_first_two_axes()
        } else {
            cells
        })
    }

    /// Backpropagates through the last training forward. `d_output` has the
    /// output's shape; `d_h_n` is [D·L, B, H_out] and `d_c_n` [D·L, B, H] (zeros when
    /// `None`). Overwrites the gradients that [`gradients`](Self::gradients)
    /// reads. One submit.
    pub fn backward(
        &mut self,
        d_output: &GpuTensor,
        d_h_n: Option<&GpuTensor>,
        d_c_n: Option<&GpuTensor>,
    ) -> Result<()> {
        let idx = self.train_workspace()?;
        self.check_output_grads(
            idx,
            d_output.shape(),
            d_h_n.map(GpuTensor::shape),
            d_c_n.map(GpuTensor::shape),
        )?;
        let mut enc = self.encoder("lstm backward");
        let ws = &self.workspaces[idx];
        let tr = ws.bptt.as_ref().expect("training workspace");
        let dst = tr.batch_first.as_ref().map_or(&tr.dy, |(d, _)| d);
        enc.copy_buffer_to_buffer(&d_output.buffer, 0, &dst.buffer, 0, d_output.byte_len());
        for (src, at, slab) in [
            (d_h_n, tr.at.dh, tr.d_h0.byte_len()),
            (d_c_n, tr.at.dc, tr.d_c0.byte_len()),
        ] {
            match src {
                Some(s) => enc.copy_buffer_to_buffer(&s.buffer, 0, &tr.carries, at, slab),
                None => enc.clear_buffer(&tr.carries, at, Some(slab)),
            }
        }
        self.encode_backward(&mut enc, idx);
        self.submit(enc)
    }

    /// [`backward`](Self::backward) from host tensors, reading every gradient
    /// back in PyTorch's layout: the GPU counterpart of [`crate::reference::backward`].
    pub fn backward_host(&mut self, grads: &OutputGrads<'_, f32>) -> Result<Gradients<f32>> {
        crate::runtime::block_on("GpuLstm::backward_host", self.backward_host_async(grads))
    }

    /// [`backward_host`](Self::backward_host), awaiting the read-back.
    pub async fn backward_host_async(
        &mut self,
        grads: &OutputGrads<'_, f32>,
    ) -> Result<Gradients<f32>> {
        let idx = self.train_workspace()?;
        self.check_output_grads(
            idx,
            grads.d_output.shape(),
            grads.d_h_n.map(Tensor::shape),
            grads.d_c_n.map(Tensor::shape),
        )?;
        let queue = self.ctx.queue();
        let mut enc = self.encoder("lstm backward");
        let ws = &self.workspaces[idx];
        let tr = ws.bptt.as_ref().expect("training workspace");
        let dst = tr.batch_first.as_ref().map_or(&tr.dy, |(d, _)| d);
        queue.write_buffer(&dst.buffer, 0, bytemuck::cast_slice(grads.d_output.data()));
        for (src, at, slab) in [
            (grads.d_h_n, tr.at.dh, tr.d_h0.byte_len()),
            (grads.d_c_n, tr.at.dc, tr.d_c0.byte_len()),
        ] {
            match src.filter(|s| !s.data().is_empty()) {
                Some(s) => queue.write_buffer(&tr.carries, at, bytemuck::cast_slice(s.data())),
                None => enc.clear_buffer(&tr.carries, at, Some(slab)),
            }
        }
        self.encode_backward(&mut enc, idx);
        self.submit(enc)?;
        self.gradients_async().await
    }

    /// The gradients of the last backward: parameters in PyTorch's layout,
    /// and `input`, `h_0`, `c_0`.
    pub fn gradients(&self) -> Result<Gradients<f32>> {
        crate::runtime::block_on("GpuLstm::gradients", self.gradients_async())
    }

    /// [`gradients`](Self::gradients), awaiting the read-back.
    pub async fn gradients_async(&self) -> Result<Gradients<f32>> {
        let idx = self.train_workspace()?;
        let grads = self
            .grads
            .as_ref()
            .expect("a backward pass made the gradients");
        let weights = download_layers_async(&self.ctx, &self.config, grads).await?;
        let tr = self.workspaces[idx]
            .bptt
            .as_ref()
            .expect("training workspace");
        let d_input = tr.batch_first.as_ref().map_or(&tr.d_input, |(_, d)| d);
        let mut host = read_back_async(&self.ctx, &[d_input, &tr.d_h0, &tr.d_c0]).await?;
        let d_c_0 = self.cell_state(host.pop().expect("three tensors"))?;
        let d_h_0 = host.pop().expect("three tensors");
        Ok(Gradients {
            weights,
            d_input: host.pop().expect("three tensors"),
            d_h_0,
            d_c_0,
        })
    }

    /// The parameters an optimizer updates (f32: the master weights in f16
    /// training) and, after the first training pass, their gradients.
    pub(super) fn param_layers(&self) -> &[GpuLayer] {
        self.master.as_deref().unwrap_or(&self.layers)
    }

    /// The weights the kernels read, when they are an f16 copy of
    /// [`param_layers`](Self::param_layers).
    pub(super) fn working_copy(&self) -> Option<&[GpuLayer]> {
        self.master.as_ref().map(|_| &self.layers[..])
    }

    pub(super) fn grad_layers(&self) -> Option<&[GpuLayer]> {
        self.grads.as_deref()
    }
}

/// The variants of DESIGN.md §9 that the GPU kernels do not run are an
/// [`LstmError::Unsupported`] here rather than a silently different model.
fn check_variants(config: &LstmConfig, precision: Precision) -> Result<()> {
    let missing = [
        (
            config.recurrent_dropout > 0.0 && config.proj_size > 0,
            "recurrent_dropout with a projection (proj_size > 0) on the GPU engine; \
             it runs on the CPU engine and the reference",
        ),
        (
            config.layer_norm && precision == Precision::F16,
            "the layer-normalised LSTM (layer_norm) in f16 on the GPU engine; \
             it runs in f32 on every engine",
        ),
    ];
    match missing.iter().find(|(on, _)| *on) {
        Some((_, what)) => Err(LstmError::Unsupported(what.to_string())),
        None => Ok(()),
    }
}
