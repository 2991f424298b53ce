//! `GpuTrainer`: a whole training step on the GPU in one submit.
//!
//! embedding lookup → each recurrent module's forward (training) → head GEMM → fused loss and
//! its gradient → head gradient GEMMs → each module's backward, from the
//! last, each input gradient feeding the module before → embedding gradient →
//! global gradient norm and clipping → optimizer update. The loss stays on
//! the GPU until [`GpuTrainer::loss`] reads it.
//!
//! In f16 ([`GpuTrainer::with_precision`]) the LSTM's forward and backward
//! run on an f16 working copy of its weights, while the optimizer updates f32
//! master weights with f32 gradients and f32 state, and then narrows them
//! into the working copy (one `cast` dispatch per LSTM tensor). The loss
//! gradient is multiplied by a loss scale ([`LossScale`]) so that small gate
//! gradients survive f16, and divided out again before clipping and update.

mod checkpoint;
mod encode;
mod optimizer;
mod space;

use space::StepSpace;

use crate::error::{LstmError, Result};
use crate::gpu::kernels::{GemmKernel, GemmLayout, TrainKernelSet, TrainScalars};
use crate::gpu::params::upload_layers;
use crate::gpu::tensor::{TENSOR_USAGE, map_and_read_async};
use crate::gpu::workspace::GpuLayer;
use crate::gpu::{GpuContext, GpuLstm, GpuMemory, GpuTensor, LossScale, Precision};
use crate::model::{Batch, HeadKind, Inputs, Model, ModelShape, TrainConfig};
use crate::weights::LayerWeights;

/// A parameter tensor with its gradient and optimizer state.
pub(super) struct Param {
    pub value: wgpu::Buffer,
    pub grad: wgpu::Buffer,
    pub m: wgpu::Buffer,
    pub v: wgpu::Buffer,
    pub len: usize,
}

/// Trains a [`Model`] on the GPU.
pub struct GpuTrainer {
    ctx: GpuContext,
    /// The recurrent modules in order (`Model::recurrent`): module k reads
    /// the output of module k − 1 on the GPU.
    lstms: Vec<GpuLstm>,
    config: TrainConfig,
    /// The architecture (embedding, LSTM, head) the buffers were made for.
    shape: ModelShape,
    /// Embedding (optional), hidden layer (optional) and head parameters.
    own: Vec<Param>,
    /// Each module's optimizer state, in its GPU layout (m, v).
    lstm_state: Vec<[Vec<GpuLayer>; 2]>,
    kernels: TrainKernelSet,
    /// The head's products: [NT, TN, NN] (see [`GemmLayout`]).
    gemm: [GemmKernel; 3],
    scalars: wgpu::Buffer,
    scalars_staging: wgpu::Buffer,
    spaces: Vec<StepSpace>,
    step: u64,
    /// The loss scaling of f16 training; `None` in f32.
    loss_scale: Option<LossScale>,
    /// Stateful training: each module's final (h_n, c_n) of the last
    /// forward pass, kept on the GPU, while `carrying` (else the next pass
    /// starts from zeros).
    carry: Vec<(GpuTensor, GpuTensor)>,
    carrying: bool,
    /// Gradient accumulation: one f32 accumulator per optimizer tensor
    /// (made with the gradients), and the batches added since the last update.
    accumulators: Vec<wgpu::Buffer>,
    pending: u64,
}

/// `TrainScalars::scaling` for a loss scale: 0 off, 1 static, 2 dynamic.
fn scaling_mode(scale: Option<LossScale>) -> u32 {
    match scale {
        None => 0,
        Some(LossScale::Static(_)) => 1,
        Some(LossScale::Dynamic { .. }) => 2,
    }
}
impl GpuTrainer {
    /// Uploads `model` and prepares training with `config`, in f32.
    pub fn new(ctx: &GpuContext, model: &Model<f32>, config: TrainConfig) -> Result<Self> {
        Self::with_precision(ctx, model, config, Precision::F32)
    }

    /// Uploads `model` and prepares training with `config` in `precision`.
    ///
    /// With [`Precision::F16`] (adapters with `SHADER_F16`, else
    /// [`LstmError::MissingFeature`]): the LSTM's forward and backward read
    /// an f16 copy of its weights and store their activations and gate
    /// gradients in f16 (see [`Precision`]); the LSTM's f32 master weights,
    /// every parameter gradient, the optimizer state, the embedding and the
    /// head stay f32. The default dynamic [`LossScale`] applies; see
    /// [`set_loss_scale`](Self::set_loss_scale).
    pub fn with_precision(
        ctx: &GpuContext,
        model: &Model<f32>,
        config: TrainConfig,
        precision: Precision,
    ) -> Result<Self> {
        config.validate()?;
        model.validate()?;
        let mut lstms = Vec::new();
        let mut lstm_state = Vec::new();
        for weights in model.recurrent() {
            let mut lstm = GpuLstm::with_precision(ctx, weights, precision)?;
            lstm.keep_master_weights(weights)?;
            let cfg = lstm.config().clone();
            let zeros = |l: usize, _d: usize| LayerWeights {
                weight_ih: vec![0.0; cfg.gates() * cfg.hidden_size * cfg.layer_input_size(l)],
                weight_hh: vec![0.0; cfg.gates() * cfg.hidden_size * cfg.hidden_out()],
                bias_ih: None,
                bias_hh: None,
                weight_hr: None,
                layer_norm: None,
            };
            lstm_state.push([
                upload_layers(ctx, &cfg, zeros, "adam m ", Precision::F32)?,
                upload_layers(ctx, &cfg, zeros, "adam v ", Precision::F32)?,
            ]);
            lstms.push(lstm);
        }
        let param = |name: &str, data: &[f32]| -> Result<Param> {
            let bytes = 4 * data.len() as u64;
            let make =
                |what: &str| ctx.create_buffer(&format!("{name} {what}"), bytes, TENSOR_USAGE);
            let p = Param {
                value: make("value")?,
                grad: make("grad")?,
                m: make("m")?,
                v: make("v")?,
                len: data.len(),
            };
            ctx.queue()
                .write_buffer(&p.value, 0, bytemuck::cast_slice(data));
            for b in [&p.m, &p.v, &p.grad] {
                ctx.queue()
                    .write_buffer(b, 0, bytemuck::cast_slice(&vec![0f32; data.len()]));
            }
            Ok(p)
        };
        let mut own = Vec::new();
        if let Some(e) = &model.embedding {
            own.push(param("embedding.weight", &e.weight)?);
        }
        if let Some(d) = &model.hidden {
            own.push(param("hidden.weight", &d.linear.weight)?);
            own.push(param("hidden.bias", &d.linear.bias)?);
        }
        own.push(param("head.weight", &model.head.weight)?);
        own.push(param("head.bias", &model.head.bias)?);
        let scalars = ctx.create_buffer(
            "training scalars",
            std::mem::size_of::<TrainScalars>() as u64,
            TENSOR_USAGE,
        )?;
        let scalars_staging = ctx.create_buffer(
            "training scalars read-back",
            std::mem::size_of::<TrainScalars>() as u64,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut trainer = GpuTrainer {
            kernels: TrainKernelSet::new(ctx, precision),
            gemm: [GemmLayout::NT, GemmLayout::TN, GemmLayout::NN].map(|l| GemmKernel::new(ctx, l)),
            ctx: ctx.clone(),
            lstms,
            config,
            shape: model.shape(),
            own,
            lstm_state,
            scalars,
            scalars_staging,
            spaces: Vec::new(),
            step: 0,
            loss_scale: None,
            carry: Vec::new(),
            carrying: false,
            accumulators: Vec::new(),
            pending: 0,
        };
        trainer.write_scale_state(match precision {
            Precision::F32 => None,
            Precision::F16 => Some(LossScale::default()),
        });
        ctx.check()?;
        Ok(trainer)
    }

    /// Sets the loss scaling of f16 training (the default is
    /// `LossScale::default()`, GradScaler's) and restarts it from its
    /// initial scale; the count of skipped steps carries on. f32 training has
    /// no loss scaling: there it is an error.
    pub fn set_loss_scale(&mut self, scale: LossScale) -> Result<()> {
        if self.precision() == Precision::F32 {
            return Err(LstmError::InvalidConfig {
                field: "loss_scale",
                reason: "applies to f16 training only; f32 gradients need no scaling".into(),
            });
        }
        scale.validate()?;
        // Only the GPU-owned scale and its growth counter change.
        let s = TrainScalars {
            grad_scale: scale.initial(),
            growth_count: 0,
            ..Default::default()
        };
        let at = std::mem::offset_of!(TrainScalars, grad_scale);
        let end = std::mem::offset_of!(TrainScalars, skipped);
        self.ctx
            .queue()
            .write_buffer(&self.scalars, at as u64, &bytemuck::bytes_of(&s)[at..end]);
        self.set_scale_kind(Some(scale));
        self.ctx.check()
    }

    /// Resets the training scalars, with the loss-scale state of `scale`
    /// (`None`: no scaling, a scale of 1).
    fn write_scale_state(&mut self, scale: Option<LossScale>) {
        let s = TrainScalars {
            scaling: scaling_mode(scale),
            grad_scale: scale.map_or(1.0, |s| s.initial()),
            ..Default::default()
        };
        self.ctx
            .queue()
            .write_buffer(&self.scalars, 0, bytemuck::bytes_of(&s));
        self.set_scale_kind(scale);
    }

    /// Records the loss scaling the next steps use (the host writes its mode
    /// with every step's scalars).
    fn set_scale_kind(&mut self, scale: Option<LossScale>) {
        self.loss_scale = scale;
        // The clip kernel reads the growth interval from the optimizer
        // uniforms, which are rebound on the next step.
        for sp in &mut self.spaces {
            sp.after.clear();
        }
    }

    /// How the LSTM stores weights and activations.
    pub fn precision(&self) -> Precision {
        self.lstms[0].precision()
    }

    /// The current loss scale (1 in f32 training). One small read-back.
    pub fn loss_scale(&self) -> Result<f32> {
        crate::runtime::block_on("GpuTrainer::loss_scale", self.loss_scale_async())
    }

    /// [`loss_scale`](Self::loss_scale), awaiting the read-back.
    pub async fn loss_scale_async(&self) -> Result<f32> {
        Ok(self.scalars_async().await?.grad_scale)
    }

    /// Steps whose scaled gradients were not finite and which therefore
    /// changed nothing (always 0 in f32). One small read-back.
    pub fn skipped_steps(&self) -> Result<u64> {
        crate::runtime::block_on("GpuTrainer::skipped_steps", self.skipped_steps_async())
    }

    /// [`skipped_steps`](Self::skipped_steps), awaiting the read-back.
    pub async fn skipped_steps_async(&self) -> Result<u64> {
        Ok(self.scalars_async().await?.skipped as u64)
    }

    /// The recurrent modules' GPU memory, summed: weights (working copy and
    /// f32 master) and the activations saved by the last step (see
    /// [`GpuMemory`]).
    pub fn memory(&self) -> GpuMemory {
        self.lstms.iter().fold(GpuMemory::default(), |sum, l| {
            let m = l.memory();
            GpuMemory {
                weights: sum.weights + m.weights,
                master_weights: sum.master_weights + m.master_weights,
                saved_activations: sum.saved_activations + m.saved_activations,
            }
        })
    }

    /// Times the first recurrent module's kernels in every later step (see
    /// [`GpuLstm::enable_profiling`]); false without `TIMESTAMP_QUERY`.
    pub fn enable_profiling(&mut self) -> Result<bool> {
        self.lstms[0].enable_profiling()
    }

    /// GPU time of the first recurrent module's phases in the last step,
    /// when profiling.
    pub fn kernel_times(&self) -> Option<crate::gpu::KernelTimes> {
        self.lstms[0].kernel_times()
    }

    /// Runs the LSTM's step kernels in `config` from the next step on (see
    /// [`GpuLstm::set_step_config`]); the per-shape buffers are rebuilt, the
    /// model and optimizer state are kept. An invalid configuration is an
    /// error and changes nothing.
    pub fn set_step_config(&mut self, config: crate::gpu::StepConfig) -> Result<()> {
        if self.lstms.iter().any(|l| Some(config) != l.step_config()) {
            // The check depends on the device alone: the first module's
            // refusal comes before any change.
            for l in &mut self.lstms {
                l.set_step_config(config)?;
            }
            self.spaces.clear();
        }
        Ok(())
    }

    /// The first recurrent module on the GPU.
    pub fn lstm(&self) -> &GpuLstm {
        &self.lstms[0]
    }

    /// Every recurrent module on the GPU, in order.
    pub fn modules(&self) -> &[GpuLstm] {
        &self.lstms
    }

    /// Completed training steps (batches). With gradient accumulation over
    /// N batches the optimizer has updated step_count / N times.
    pub fn step_count(&self) -> u64 {
        self.batches()
    }

    /// The GPU context the model lives on.
    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The model's architecture.
    pub fn shape(&self) -> &crate::model::ModelShape {
        &self.shape
    }

    /// The training configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// One training step, one submit, and no wait for the GPU: the call
    /// returns once the step is encoded and submitted. Nothing is read back; see
    /// [`loss`](Self::loss) and [`step_with_loss`](Self::step_with_loss).
    pub fn step(&mut self, batch: &Batch<'_>) -> Result<()> {
        self.validate(batch)?;
        self.prepare_carry(batch.batch)?;
        let idx = self.space(batch.seq_len, batch.batch)?;
        self.write_inputs(idx, batch);
        let mut enc = self
            .ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("training step"),
            });
        self.encode_step(&mut enc, idx, batch)?;
        self.lstms[0].encode_resolve(&mut enc);
        // No wait: the host goes on to encode the next step while the GPU
        // runs this one (profiling alone reads its timestamps back).
        self.ctx.submit(enc)?;
        self.lstms[0].collect_times()?;
        if self.updates_now() {
            self.step += 1;
            self.pending = 0;
        } else {
            self.pending += 1;
        }
        Ok(())
    }

    /// [`step`](Self::step), then the loss of that step.
    pub fn step_with_loss(&mut self, batch: &Batch<'_>) -> Result<f32> {
        self.step(batch)?;
        self.loss()
    }

    /// The last step's loss (one small read-back). A loss that became NaN
    /// or infinite at any step is an error naming that step: the GPU stops
    /// updating the parameters from then on.
    pub fn loss(&self) -> Result<f32> {
        crate::runtime::block_on("GpuTrainer::loss", self.loss_async())
    }

    /// [`loss`](Self::loss), awaiting the read-back (what a browser needs).
    pub async fn loss_async(&self) -> Result<f32> {
        let s = self.scalars_async().await?;
        if s.bad_step != 0 {
            return Err(LstmError::NonFiniteLoss {
                step: (s.bad_step - 1) as u64,
                loss: s.loss as f64,
            });
        }
        Ok(s.loss)
    }

    /// The global gradient norm of the last step, before clipping.
    pub fn grad_norm(&self) -> Result<f32> {
        crate::runtime::block_on("GpuTrainer::grad_norm", self.grad_norm_async())
    }

    /// [`grad_norm`](Self::grad_norm), awaiting the read-back.
    pub async fn grad_norm_async(&self) -> Result<f32> {
        Ok(self.scalars_async().await?.grad_norm)
    }

    async fn scalars_async(&self) -> Result<TrainScalars> {
        let mut enc = self
            .ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read scalars"),
            });
        let size = std::mem::size_of::<TrainScalars>() as u64;
        enc.copy_buffer_to_buffer(&self.scalars, 0, &self.scalars_staging, 0, size);
        self.ctx.submit(enc)?;
        let t =
            map_and_read_async(&self.ctx, &self.scalars_staging, &[&[TrainScalars::WORDS]]).await?;
        Ok(*bytemuck::from_bytes::<TrainScalars>(bytemuck::cast_slice(
            t[0].data(),
        )))
    }

    /// Evaluation mode: the model's outputs for `batch` (its targets are
    /// ignored), with no dropout and no saved activations. The recurrent
    /// modules run on the GPU; the embedding lookup and the small head run
    /// on the host. Returns [rows, O]: rows = T·B for a per-step head, B for
    /// a last-step one.
    pub fn predict(&mut self, batch: &Batch<'_>) -> Result<Vec<f32>> {
        crate::runtime::block_on("GpuTrainer::predict", self.predict_async(batch))
    }

    /// [`predict`](Self::predict), awaiting the read-backs (what a browser
    /// needs).
    pub async fn predict_async(&mut self, batch: &Batch<'_>) -> Result<Vec<f32>> {
        self.validate(batch)?;
        let (t, b) = (batch.seq_len, batch.batch);
        let model = self.host_head_and_embedding_async().await?;
        let first = self.lstms[0].config().clone();
        let x = match batch.inputs {
            Inputs::Features(f) => f.to_vec(),
            Inputs::Tokens(ids) => model.0.as_ref().expect("validated").forward(ids)?,
        };
        let mut x = crate::tensor::Tensor::new([t, b, first.input_size], x)?;
        // Stateful: from the carried states, read back, and back to them after.
        self.prepare_carry(b)?;
        let stateful = self.config.stateful;
        for k in 0..self.lstms.len() {
            let mut input = crate::input::LstmInput::new(&x);
            if let Some(l) = batch.lengths {
                input = input.with_lengths(l);
            }
            let carried = match self.carry.get(k) {
                Some((h, c)) if stateful && self.carrying => Some((
                    h.to_host_async(&self.ctx).await?,
                    c.to_host_async(&self.ctx).await?,
                )),
                _ => None,
            };
            if let Some((h, c)) = &carried {
                input = input.with_carried(self.lstms[k].config().cell, h, c);
            }
            let out = self.lstms[k].forward_host_async(&input).await?;
            if let (true, Some((h, c))) = (stateful, self.carry.get(k)) {
                let q = self.ctx.queue();
                q.write_buffer(&h.buffer, 0, bytemuck::cast_slice(out.h_n.data()));
                if !out.c_n.data().is_empty() {
                    q.write_buffer(&c.buffer, 0, bytemuck::cast_slice(out.c_n.data()));
                }
            }
            x = out.output;
        }
        self.carrying = stateful;
        let f = self.shape.features();
        let head_in = match self.shape.head_kind {
            HeadKind::PerStep => x.into_data(),
            HeadKind::LastStep => {
                crate::reference::last_valid_step(x.data(), t, b, f, batch.lengths)
            }
        };
        let rows = head_in.len() / f;
        let head_in = match &model.1 {
            Some(d) => d.forward(&head_in, rows),
            None => head_in,
        };
        Ok(model.2.forward(&head_in, rows))
    }

    /// Stateful training: checks that `batch` sequences continue the carried
    /// states, and makes the buffers that keep them.
    fn prepare_carry(&mut self, batch: usize) -> Result<()> {
        if !self.config.stateful {
            return Ok(());
        }
        if let Some((h, _)) = self.carry.first().filter(|_| self.carrying)
            && h.shape()[1] != batch
        {
            return Err(LstmError::value(
                "batch",
                format!(
                    "stateful training carries the state of {} sequences, this batch has \
                     {batch}; call reset_states() to start over",
                    h.shape()[1]
                ),
            ));
        }
        if self
            .carry
            .first()
            .is_none_or(|(h, _)| h.shape()[1] != batch)
        {
            self.carry = self
                .lstms
                .iter()
                .map(|l| {
                    let cfg = l.config();
                    let slots = cfg.num_layers * cfg.num_directions();
                    Ok((
                        GpuTensor::empty(
                            &self.ctx,
                            "carried h",
                            &[slots, batch, cfg.hidden_out()],
                        )?,
                        GpuTensor::empty(&self.ctx, "carried c", &[slots, batch, cfg.hidden_size])?,
                    ))
                })
                .collect::<Result<_>>()?;
        }
        Ok(())
    }

    /// Whether the batch being trained on ends its gradient accumulation,
    /// so that the optimizer updates (every batch without accumulation).
    pub(super) fn updates_now(&self) -> bool {
        self.pending + 1 >= self.config.grad_accumulation as u64
    }

    /// Batches trained on so far.
    pub(super) fn batches(&self) -> u64 {
        self.step * self.config.grad_accumulation as u64 + self.pending
    }

    /// Stateful training: forgets the carried state, so that the next
    /// forward pass starts from zeros (Keras' `reset_states`).
    pub fn reset_states(&mut self) {
        self.carrying = false;
    }

    /// Evaluation mode: the loss on `batch` (see [`predict`](Self::predict)).
    pub fn evaluate(&mut self, batch: &Batch<'_>) -> Result<f64> {
        crate::runtime::block_on("GpuTrainer::evaluate", self.evaluate_async(batch))
    }

    /// [`evaluate`](Self::evaluate), awaiting the read-backs.
    pub async fn evaluate_async(&mut self, batch: &Batch<'_>) -> Result<f64> {
        let out = self.predict_async(batch).await?;
        crate::model::loss_of(&self.shape, self.config.loss, batch, &out).map(|(l, _)| l as f64)
    }

    fn validate(&self, batch: &Batch<'_>) -> Result<()> {
        batch.validate(&self.shape, self.config.loss)
    }

    fn rows(&self, t: usize, b: usize) -> usize {
        match self.shape.head_kind {
            HeadKind::PerStep => t * b,
            HeadKind::LastStep => b,
        }
    }
}
