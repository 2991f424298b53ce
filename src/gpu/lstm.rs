//! `GpuLstm`: `nn.LSTM` as WGSL kernels, forward and backward.
//!
//! Per layer, one GEMM projects the whole sequence through `W_ih` for both
//! directions at once, then one fused step dispatch per time step runs both
//! directions' recurrences. With a projection (`proj_size` > 0) a second
//! dispatch per step computes h_t = m_t · W_hrᵀ, so a step is two dispatches
//! forward and two backward. A pass is one command buffer and one submit;
//! buffers, bind groups and per-step parameters for a given (T, B) are made
//! on the first call and reused.

use crate::config::LstmConfig;
use crate::error::{LstmError, Result};
use crate::gpu::kernels::{
    BackwardStepKernel, LstmGemms, PermuteKernel, ProjBackwardKernel, ProjKernel, StepKernel,
};
use crate::gpu::params::{download_layers, upload_layers, write_layers};
use crate::gpu::profiler::{KernelTimes, Phase, Profiler};
use crate::gpu::tensor::{map_and_read, read_back};
use crate::gpu::train::{TrainKernels, TrainSpace};
use crate::gpu::workspace::{GpuLayer, Kernels, Workspace, step_entry};
use crate::gpu::{GpuContext, GpuTensor, Precision};
use crate::input::{LstmInput, check_shapes};
use crate::reference::{Gradients, LstmOutput, OutputGrads};
use crate::tensor::Tensor;
use crate::weights::{LayerWeights, LstmWeights};

/// Where a forward pass starts from.
#[derive(Clone, Copy, Debug)]
pub enum InitialState<'a> {
    /// h_0 = c_0 = 0.
    Zeros,
    /// Given states: h_0 [D·L, B, H_out], c_0 [D·L, B, H].
    Given {
        h_0: &'a GpuTensor,
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
    /// with a projection, else H).
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
    /// [T, B, D·H] in f32 with a projection (0 before a training forward).
    pub saved_activations: u64,
}

/// The final states per batch size, where [`InitialState::Carry`] reads.
struct State {
    batch: usize,
    h_n: GpuTensor,
    c_n: GpuTensor,
}

/// How many shapes keep their workspace before the oldest is dropped.
const MAX_WORKSPACES: usize = 4;

/// An LSTM whose weights and state live on the GPU.
pub struct GpuLstm {
    ctx: GpuContext,
    config: LstmConfig,
    precision: Precision,
    gemms: LstmGemms,
    step: StepKernel,
    back: BackwardStepKernel,
    permute: PermuteKernel,
    /// h_t = m_t · W_hrᵀ and its backward, with a projection (`proj_size` > 0).
    proj: Option<(ProjKernel, ProjBackwardKernel)>,
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

/// Where the input comes from.
#[derive(Clone, Copy)]
enum Source<'a> {
    Gpu(&'a GpuTensor, InitialState<'a>),
    Host(&'a LstmInput<'a, f32>),
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
        let layers = upload_layers(
            ctx,
            &config,
            |l, d| weights.layer(l, d).clone(),
            "",
            precision,
        )?;
        let engine = GpuLstm {
            gemms: LstmGemms::new(ctx, precision),
            step: StepKernel::new(ctx, precision),
            back: BackwardStepKernel::new(ctx, precision),
            permute: PermuteKernel::new(ctx),
            proj: (config.proj_size > 0).then(|| {
                (
                    ProjKernel::new(ctx, precision),
                    ProjBackwardKernel::new(ctx, precision),
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

    pub fn config(&self) -> &LstmConfig {
        &self.config
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// How weights and activations are stored.
    pub fn precision(&self) -> Precision {
        self.precision
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
            .and_then(|w| w.train.as_ref())
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
        let layers = self.master.as_deref().unwrap_or(&self.layers);
        download_layers(&self.ctx, &self.config, layers)
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

    /// Encodes the copy of this submit's timestamps (profiling only).
    pub(super) fn encode_resolve(&self, enc: &mut wgpu::CommandEncoder) {
        if let Some(p) = &self.profiler {
            p.resolve(enc);
        }
    }

    /// After a submit: reads its timestamps (profiling only).
    pub(super) fn collect_times(&mut self) -> Result<()> {
        if let Some(p) = &self.profiler {
            self.kernel_times = Some(p.read(&self.ctx)?);
        }
        Ok(())
    }

    /// Submits `enc` with its timestamps, and reads them back.
    fn submit(&mut self, mut enc: wgpu::CommandEncoder) -> Result<()> {
        self.encode_resolve(&mut enc);
        self.ctx.submit_and_wait(enc)?;
        self.collect_times()
    }

    /// A compute pass, timed towards `phase` when profiling.
    fn begin_pass<'e>(
        &self,
        enc: &'e mut wgpu::CommandEncoder,
        label: &str,
        phase: Option<Phase>,
    ) -> wgpu::ComputePass<'e> {
        let timestamp_writes =
            phase.and_then(|ph| self.profiler.as_ref().and_then(|p| p.writes(ph)));
        enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes,
        })
        .forget_lifetime()
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
    /// one submit: the GPU counterpart of [`crate::reference::forward`].
    pub fn forward_host(&mut self, x: &LstmInput<'_, f32>) -> Result<LstmOutput<f32>> {
        let idx = self.pass(Source::Host(x), x.lengths, None, true)?;
        self.read_outputs(idx)
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
        let idx = self.pass(Source::Host(x), x.lengths, Some(dropout_seed), true)?;
        self.read_outputs(idx)
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
        let tr = ws.train.as_ref().expect("training workspace");
        let dst = tr.batch_first.as_ref().map_or(&tr.dy, |(d, _)| d);
        enc.copy_buffer_to_buffer(&d_output.buffer, 0, &dst.buffer, 0, d_output.byte_len());
        for (src, dst, slab) in [
            (d_h_n, &tr.dh_carry, tr.d_h0.byte_len()),
            (d_c_n, &tr.dc_carry, tr.d_c0.byte_len()),
        ] {
            match src {
                Some(s) => enc.copy_buffer_to_buffer(&s.buffer, 0, dst, 0, slab),
                None => enc.clear_buffer(dst, 0, Some(slab)),
            }
        }
        self.encode_backward(&mut enc, idx);
        self.submit(enc)
    }

    /// [`backward`](Self::backward) from host tensors, reading every gradient
    /// back in PyTorch's layout: the GPU counterpart of [`crate::reference::backward`].
    pub fn backward_host(&mut self, grads: &OutputGrads<'_, f32>) -> Result<Gradients<f32>> {
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
        let tr = ws.train.as_ref().expect("training workspace");
        let dst = tr.batch_first.as_ref().map_or(&tr.dy, |(d, _)| d);
        queue.write_buffer(&dst.buffer, 0, bytemuck::cast_slice(grads.d_output.data()));
        for (src, dst, slab) in [
            (grads.d_h_n, &tr.dh_carry, tr.d_h0.byte_len()),
            (grads.d_c_n, &tr.dc_carry, tr.d_c0.byte_len()),
        ] {
            match src {
                Some(s) => queue.write_buffer(dst, 0, bytemuck::cast_slice(s.data())),
                None => enc.clear_buffer(dst, 0, Some(slab)),
            }
        }
        self.encode_backward(&mut enc, idx);
        self.submit(enc)?;
        self.gradients()
    }

    /// The gradients of the last backward: parameters in PyTorch's layout,
    /// and `input`, `h_0`, `c_0`.
    pub fn gradients(&self) -> Result<Gradients<f32>> {
        let idx = self.train_workspace()?;
        let grads = self
            .grads
            .as_ref()
            .expect("a backward pass made the gradients");
        let weights = download_layers(&self.ctx, &self.config, grads)?;
        let tr = self.workspaces[idx]
            .train
            .as_ref()
            .expect("training workspace");
        let d_input = tr.batch_first.as_ref().map_or(&tr.d_input, |(_, d)| d);
        let mut host = read_back(&self.ctx, &[d_input, &tr.d_h0, &tr.d_c0])?;
        let d_c_0 = host.pop().expect("three tensors");
        let d_h_0 = host.pop().expect("three tensors");
        Ok(Gradients {
            weights,
            d_input: host.pop().expect("three tensors"),
            d_h_0,
            d_c_0,
        })
    }

    /// Prepares (T, B) for training and encodes a training forward from
    /// `input` (zero initial state) into `enc`; returns the workspace index.
    pub(super) fn encode_train_forward(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        input: &GpuTensor,
        lengths: Option<&[usize]>,
        seed: u64,
    ) -> Result<usize> {
        let (t, b) = check_shapes(&self.config, input.shape(), None, None, lengths)?;
        let idx = self.prepare(t, b, true)?;
        let tr = self.workspaces[idx]
            .train
            .as_mut()
            .expect("prepared for training");
        tr.set_seed(&self.ctx, &self.config, &self.layers, t, b, seed);
        self.last_train = Some((t, b));
        self.encode_forward(
            enc,
            idx,
            Source::Gpu(input, InitialState::Zeros),
            lengths,
            true,
        );
        Ok(idx)
    }

    /// Encodes the backward pass of workspace `idx` from `d_output` (no
    /// gradient on h_n, c_n).
    pub(super) fn encode_train_backward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        idx: usize,
        d_output: &GpuTensor,
    ) {
        let tr = self.workspaces[idx]
            .train
            .as_ref()
            .expect("training workspace");
        enc.copy_buffer_to_buffer(&d_output.buffer, 0, &tr.dy.buffer, 0, d_output.byte_len());
        enc.clear_buffer(&tr.dh_carry, 0, Some(tr.d_h0.byte_len()));
        enc.clear_buffer(&tr.dc_carry, 0, Some(tr.d_c0.byte_len()));
        self.encode_backward(enc, idx);
    }

    /// The time-major output and input gradient of workspace `idx`.
    pub(super) fn output_of(&self, idx: usize) -> &GpuTensor {
        self.workspaces[idx].output()
    }

    pub(super) fn d_input_of(&self, idx: usize) -> &GpuTensor {
        &self.workspaces[idx]
            .train
            .as_ref()
            .expect("training workspace")
            .d_input
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

    fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }

    fn train_workspace(&self) -> Result<usize> {
        let (t, b) = self.last_train.ok_or_else(|| {
            LstmError::value("backward", "needs a training forward first (forward_train)")
        })?;
        Ok(self
            .workspaces
            .iter()
            .position(|w| (w.seq_len, w.batch) == (t, b) && w.train.is_some())
            .expect("the last training workspace is kept"))
    }

    fn check_output_grads(
        &self,
        idx: usize,
        d_output: &[usize],
        d_h_n: Option<&[usize]>,
        d_c_n: Option<&[usize]>,
    ) -> Result<()> {
        let ws = &self.workspaces[idx];
        let want = ws.output().shape();
        if d_output != want {
            return Err(LstmError::shape("d_output", want, d_output));
        }
        let state = self.state(ws.batch);
        for (name, s, want) in [
            ("d_h_n", d_h_n, state.h_n.shape()),
            ("d_c_n", d_c_n, state.c_n.shape()),
        ] {
            if let Some(s) = s.filter(|s| *s != want) {
                return Err(LstmError::shape(name, want, s));
            }
        }
        Ok(())
    }

    /// Validates, prepares the workspace and runs one forward pass (one
    /// submit); returns the workspace index.
    fn pass(
        &mut self,
        source: Source<'_>,
        lengths: Option<&[usize]>,
        dropout_seed: Option<u64>,
        read_back: bool,
    ) -> Result<usize> {
        let (t, b) = match source {
            Source::Host(x) => x.validate(&self.config)?,
            Source::Gpu(input, state) => {
                let (h0, c0) = match state {
                    InitialState::Given { h_0, c_0 } => (Some(h_0.shape()), Some(c_0.shape())),
                    _ => (None, None),
                };
                check_shapes(&self.config, input.shape(), h0, c0, lengths)?
            }
        };
        let idx = self.prepare(t, b, dropout_seed.is_some())?;
        if let Some(seed) = dropout_seed {
            let ws = &mut self.workspaces[idx];
            let tr = ws.train.as_mut().expect("prepared for training");
            tr.set_seed(&self.ctx, &self.config, &self.layers, t, b, seed);
            self.last_train = Some((t, b));
        }
        let mut enc = self.encoder("lstm forward");
        self.encode_forward(&mut enc, idx, source, lengths, dropout_seed.is_some());
        if read_back {
            let ws = &self.workspaces[idx];
            let state = self.state(b);
            let mut at = 0;
            for src in [ws.output(), &state.h_n, &state.c_n] {
                enc.copy_buffer_to_buffer(&src.buffer, 0, &ws.staging, at, src.byte_len());
                at += src.byte_len();
            }
        }
        self.submit(enc)?;
        Ok(idx)
    }

    fn read_outputs(&self, idx: usize) -> Result<LstmOutput<f32>> {
        let out = self.outputs(idx);
        let shapes = [out.output.shape(), out.h_n.shape(), out.c_n.shape()];
        let mut host = map_and_read(&self.ctx, &self.workspaces[idx].staging, &shapes)?;
        let c_n = host.pop().expect("three tensors");
        let h_n = host.pop().expect("three tensors");
        let output = host.pop().expect("three tensors");
        Ok(LstmOutput { output, h_n, c_n })
    }

    /// The workspace for (T, B), made on first use, with its training
    /// buffers when `training`.
    fn prepare(&mut self, seq_len: usize, batch: usize, training: bool) -> Result<usize> {
        if !self.states.iter().any(|s| s.batch == batch) {
            let cfg = &self.config;
            let slots = cfg.num_layers * cfg.num_directions();
            self.states.push(State {
                batch,
                h_n: GpuTensor::empty(&self.ctx, "h_n", &[slots, batch, cfg.hidden_out()])?,
                c_n: GpuTensor::empty(&self.ctx, "c_n", &[slots, batch, cfg.hidden_size])?,
            });
        }
        let idx = match self
            .workspaces
            .iter()
            .position(|w| (w.seq_len, w.batch) == (seq_len, batch))
        {
            Some(i) => i,
            None => {
                if self.workspaces.len() == MAX_WORKSPACES {
                    // Keep the workspace `backward` still needs.
                    let keep = self.last_train;
                    let victim = (0..self.workspaces.len())
                        .find(|&i| {
                            Some((self.workspaces[i].seq_len, self.workspaces[i].batch)) != keep
                        })
                        .expect("at most one workspace is kept");
                    self.workspaces.remove(victim);
                }
                let kernels = Kernels {
                    gemms: &self.gemms,
                    step: &self.step,
                    permute: &self.permute,
                    proj: self.proj.as_ref().map(|(k, _)| k),
                };
                let ws = Workspace::build(
                    &self.ctx,
                    &self.config,
                    &self.layers,
                    kernels,
                    seq_len,
                    batch,
                )?;
                self.workspaces.push(ws);
                self.workspaces.len() - 1
            }
        };
        if training && self.workspaces[idx].train.is_none() {
            if self.grads.is_none() {
                let zeros = |l: usize, _d: usize| {
                    let input = self.config.layer_input_size(l);
                    let four_h = 4 * self.config.hidden_size;
                    LayerWeights {
                        weight_ih: vec![0.0; four_h * input],
                        weight_hh: vec![0.0; four_h * self.config.hidden_out()],
                        bias_ih: None,
                        bias_hh: None,
                        weight_hr: None,
                    }
                };
                self.grads = Some(upload_layers(
                    &self.ctx,
                    &self.config,
                    zeros,
                    "grad ",
                    Precision::F32,
                )?);
            }
            let kernels = TrainKernels {
                gemms: &self.gemms,
                step: &self.step,
                back: &self.back,
                permute: &self.permute,
                proj: self.proj.as_ref(),
            };
            let grads = self.grads.as_ref().expect("made above");
            let space = TrainSpace::build(
                &self.ctx,
                &self.config,
                &self.layers,
                grads,
                &self.workspaces[idx],
                kernels,
            )?;
            self.workspaces[idx].train = Some(space);
        }
        Ok(idx)
    }

    fn outputs(&self, idx: usize) -> GpuLstmOutput<'_> {
        let ws = &self.workspaces[idx];
        let state = self.state(ws.batch);
        GpuLstmOutput {
            output: ws.output(),
            h_n: &state.h_n,
            c_n: &state.c_n,
        }
    }

    fn state(&self, batch: usize) -> &State {
        self.states
            .iter()
            .find(|s| s.batch == batch)
            .expect("prepare() made the state")
    }

    /// Encodes one forward pass into `enc`.
    fn encode_forward(
        &self,
        enc: &mut wgpu::CommandEncoder,
        idx: usize,
        source: Source<'_>,
        lengths: Option<&[usize]>,
        training: bool,
    ) {
        let ctx = &self.ctx;
        let cfg = &self.config;
        let ws = &self.workspaces[idx];
        let state = self.state(ws.batch);
        let (t, b, layers) = (ws.seq_len, ws.batch, cfg.num_layers);
        let (h_slab, c_slab) = (state.h_n.byte_len(), state.c_n.byte_len());
        let queue = ctx.queue();

        // The input, into the time-major (or batch-first staging) buffer.
        let input_dst = ws.batch_first.as_ref().map_or(&ws.input, |(i, _)| i);
        match source {
            Source::Gpu(x, _) => {
                enc.copy_buffer_to_buffer(&x.buffer, 0, &input_dst.buffer, 0, x.byte_len())
            }
            Source::Host(x) => {
                queue.write_buffer(&input_dst.buffer, 0, bytemuck::cast_slice(x.input.data()))
            }
        }
        // The initial state: h into parity 0 of the double buffer, c in place.
        match source {
            Source::Host(x) => {
                for (dst, given, slab) in
                    [(&ws.h_state, x.h_0, h_slab), (&ws.c_state, x.c_0, c_slab)]
                {
                    match given {
                        Some(v) => queue.write_buffer(dst, 0, bytemuck::cast_slice(v.data())),
                        None => enc.clear_buffer(dst, 0, Some(slab)),
                    }
                }
            }
            Source::Gpu(_, InitialState::Given { h_0, c_0 }) => {
                enc.copy_buffer_to_buffer(&h_0.buffer, 0, &ws.h_state, 0, h_slab);
                enc.copy_buffer_to_buffer(&c_0.buffer, 0, &ws.c_state, 0, c_slab);
            }
            Source::Gpu(_, InitialState::Carry) => {
                enc.copy_buffer_to_buffer(&state.h_n.buffer, 0, &ws.h_state, 0, h_slab);
                enc.copy_buffer_to_buffer(&state.c_n.buffer, 0, &ws.c_state, 0, c_slab);
            }
            Source::Gpu(_, InitialState::Zeros) => {
                enc.clear_buffer(&ws.h_state, 0, Some(h_slab));
                enc.clear_buffer(&ws.c_state, 0, Some(c_slab));
            }
        }
        let train = ws.train.as_ref().filter(|_| training);
        if let Some(tr) = train {
            enc.copy_buffer_to_buffer(&ws.c_state, 0, &tr.c0, 0, c_slab);
        }
        let lens: Vec<u32> = match lengths {
            Some(l) => l.iter().map(|&v| v as u32).collect(),
            None => vec![t as u32; b],
        };
        queue.write_buffer(&ws.lengths, 0, bytemuck::cast_slice(&lens));

        // One pass for each layer's projection and one for its steps, so
        // that profiling can time them apart; all in the same submit.
        if let Some([(bg, groups), _]) = &ws.permutes {
            let mut pass = self.begin_pass(enc, "batch-first input", None);
            self.permute.encode(ctx, &mut pass, bg, *groups);
        }
        for l in 0..layers {
            {
                let (gemm_bg, groups) = &ws.gemm[l];
                let mut pass = self.begin_pass(enc, "input projection", Some(Phase::Projection));
                self.gemms.forward.encode(ctx, &mut pass, gemm_bg, *groups);
            }
            // With a projection each step is two dispatches: the cell, then
            // h_t = m_t · W_hrᵀ.
            let mut pass = self.begin_pass(enc, "lstm steps", Some(Phase::Steps));
            for s in 0..t {
                let (offset, step_bg, proj_bg) = match train {
                    Some(tr) => (tr.step_offset(cfg, t, l, s), &tr.steps[l], tr.projs.get(l)),
                    None => (
                        ws.layout.offset(step_entry(layers, t, l, s)),
                        &ws.steps[l],
                        ws.projs.get(l),
                    ),
                };
                self.step.encode(
                    ctx,
                    &mut pass,
                    train.is_some(),
                    step_bg,
                    offset,
                    ws.step_groups,
                );
                if let (Some((proj, _)), Some(bg)) = (&self.proj, proj_bg) {
                    proj.encode(ctx, &mut pass, bg, offset, ws.proj_groups);
                }
            }
        }
        if let Some([_, (bg, groups)]) = &ws.permutes {
            let mut pass = self.begin_pass(enc, "batch-first output", None);
            self.permute.encode(ctx, &mut pass, bg, *groups);
        }
        // h_T sits in the parity T % 2 half of the double buffer.
        enc.copy_buffer_to_buffer(
            &ws.h_state,
            (t % 2) as u64 * h_slab,
            &state.h_n.buffer,
            0,
            h_slab,
        );
        enc.copy_buffer_to_buffer(&ws.c_state, 0, &state.c_n.buffer, 0, c_slab);
    }

    /// Encodes backpropagation through the saved forward of workspace `idx`;
    /// the caller has put d_output and the carried d_h_n, d_c_n in place.
    fn encode_backward(&self, enc: &mut wgpu::CommandEncoder, idx: usize) {
        let ctx = &self.ctx;
        let cfg = &self.config;
        let ws = &self.workspaces[idx];
        let tr = ws.train.as_ref().expect("training workspace");
        let t = ws.seq_len;
        if let Some([(bg, groups), _]) = &tr.permutes {
            let mut pass = self.begin_pass(enc, "batch-first d_output", None);
            self.permute.encode(ctx, &mut pass, bg, *groups);
        }
        for l in (0..cfg.num_layers).rev() {
            {
                let mut pass =
                    self.begin_pass(enc, "lstm backward steps", Some(Phase::BackwardSteps));
                // With a projection each step is two dispatches: the P-wide
                // dh_t, then the cell through dm_t = dh_t · W_hr.
                for s in 0..=t {
                    let offset = tr.back_offset(cfg, t, l, s);
                    if let (Some((_, proj_back)), Some(bg)) = (&self.proj, tr.proj_back.get(l)) {
                        proj_back.encode(ctx, &mut pass, bg, offset, ws.proj_groups);
                    }
                    self.back
                        .encode(ctx, &mut pass, &tr.back[l], offset, ws.step_groups);
                }
            }
            let mut pass = self.begin_pass(enc, "weight gradients", Some(Phase::BackwardGemms));
            for (kernel, bg, groups) in &tr.gemms[l] {
                kernel.encode(ctx, &mut pass, bg, *groups);
            }
        }
        if let Some([_, (bg, groups)]) = &tr.permutes {
            let mut pass = self.begin_pass(enc, "batch-first d_input", None);
            self.permute.encode(ctx, &mut pass, bg, *groups);
        }
        // b_ih and b_hh enter the gates as one sum: their gradients are equal.
        if cfg.bias {
            let grads = self.grads.as_ref().expect("training made the gradients");
            for g in grads {
                enc.copy_buffer_to_buffer(&g.b_ih, 0, &g.b_hh, 0, g.b_ih.size().min(g.b_hh.size()));
            }
        }
    }
}
