//! `GpuTrainer`: a whole training step on the GPU in one submit.
//!
//! embedding lookup → LSTM forward (training) → head GEMM → fused loss and
//! its gradient → head gradient GEMMs → LSTM backward → embedding gradient →
//! global gradient norm and clipping → optimizer update. The loss stays on
//! the GPU until [`GpuTrainer::loss`] reads it.
//!
//! In f16 ([`GpuTrainer::with_precision`]) the LSTM's forward and backward
//! run on an f16 working copy of its weights, while the optimizer updates f32
//! master weights with f32 gradients and f32 state, and then narrows them
//! into the working copy (one `cast` dispatch per LSTM tensor). The loss
//! gradient is multiplied by a loss scale ([`LossScale`]) so that small gate
//! gradients survive f16, and divided out again before clipping and update.

mod space;

use space::{Dispatch, GEMM, StepSpace};

use crate::error::{LstmError, Result};
use crate::gpu::kernels::{GemmKernel, Kernel, TrainKernelSet, TrainScalars};
use crate::gpu::params::{download_layers, upload_layers};
use crate::gpu::tensor::{TENSOR_USAGE, map_and_read};
use crate::gpu::workspace::GpuLayer;
use crate::gpu::{GpuContext, GpuLstm, GpuMemory, GpuTensor, LossScale, Precision};
use crate::model::{Batch, HeadKind, Inputs, Model, ModelShape, Targets, TrainConfig};
use crate::reference::{Embedding, Linear, OptimizerKind};
use crate::weights::LayerWeights;

/// (name, shape, values) of a host tensor.
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

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
    lstm: GpuLstm,
    config: TrainConfig,
    /// The architecture (embedding, LSTM, head) the buffers were made for.
    shape: ModelShape,
    /// Embedding (optional) and head parameters.
    own: Vec<Param>,
    /// LSTM optimizer state, in the LSTM's GPU layout (m, v).
    lstm_state: [Vec<GpuLayer>; 2],
    kernels: TrainKernelSet,
    gemm: GemmKernel,
    scalars: wgpu::Buffer,
    scalars_staging: wgpu::Buffer,
    spaces: Vec<StepSpace>,
    step: u64,
    /// The loss scaling of f16 training; `None` in f32.
    loss_scale: Option<LossScale>,
}

/// `TrainScalars::scaling` for a loss scale: 0 off, 1 static, 2 dynamic.
fn scaling_mode(scale: Option<LossScale>) -> u32 {
    match scale {
        None => 0,
        Some(LossScale::Static(_)) => 1,
        Some(LossScale::Dynamic { .. }) => 2,
    }
}

/// The `format` metadata of training checkpoints.
const CHECKPOINT_FORMAT: &str = "wgpu-lstm-trainer-1";

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
        if model.lstm.config.batch_first {
            return Err(LstmError::InvalidConfig {
                field: "batch_first",
                reason: "training works on time-major data".into(),
            });
        }
        let mut lstm = GpuLstm::with_precision(ctx, &model.lstm, precision)?;
        lstm.keep_master_weights(&model.lstm)?;
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
        own.push(param("head.weight", &model.head.weight)?);
        own.push(param("head.bias", &model.head.bias)?);
        let cfg = lstm.config().clone();
        let zeros = |l: usize, _d: usize| LayerWeights {
            weight_ih: vec![0.0; 4 * cfg.hidden_size * cfg.layer_input_size(l)],
            weight_hh: vec![0.0; 4 * cfg.hidden_size * cfg.hidden_out()],
            bias_ih: None,
            bias_hh: None,
            weight_hr: None,
        };
        let lstm_state = [
            upload_layers(ctx, &cfg, zeros, "adam m ", Precision::F32)?,
            upload_layers(ctx, &cfg, zeros, "adam v ", Precision::F32)?,
        ];
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
            gemm: GemmKernel::new(ctx),
            ctx: ctx.clone(),
            lstm,
            config,
            shape: model.shape(),
            own,
            lstm_state,
            scalars,
            scalars_staging,
            spaces: Vec::new(),
            step: 0,
            loss_scale: None,
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
        if self.lstm.precision() == Precision::F32 {
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
        self.lstm.precision()
    }

    /// The current loss scale (1 in f32 training). One small read-back.
    pub fn loss_scale(&self) -> Result<f32> {
        Ok(self.scalars()?.grad_scale)
    }

    /// Steps whose scaled gradients were not finite and which therefore
    /// changed nothing (always 0 in f32). One small read-back.
    pub fn skipped_steps(&self) -> Result<u64> {
        Ok(self.scalars()?.skipped as u64)
    }

    /// The LSTM's GPU memory: weights (working copy and f32 master) and the
    /// activations saved by the last step (see [`GpuMemory`]).
    pub fn memory(&self) -> GpuMemory {
        self.lstm.memory()
    }

    /// Times the LSTM's kernels in every later step (see
    /// [`GpuLstm::enable_profiling`]); false without `TIMESTAMP_QUERY`.
    pub fn enable_profiling(&mut self) -> Result<bool> {
        self.lstm.enable_profiling()
    }

    /// GPU time of the LSTM's phases in the last step, when profiling.
    pub fn kernel_times(&self) -> Option<crate::gpu::KernelTimes> {
        self.lstm.kernel_times()
    }

    /// Completed optimizer steps.
    pub fn step_count(&self) -> u64 {
        self.step
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    /// The training configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// One training step, one submit. Nothing is read back; see
    /// [`loss`](Self::loss) and [`step_with_loss`](Self::step_with_loss).
    pub fn step(&mut self, batch: &Batch<'_>) -> Result<()> {
        self.validate(batch)?;
        let idx = self.space(batch.seq_len, batch.batch)?;
        self.write_inputs(idx, batch);
        let mut enc = self
            .ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("training step"),
            });
        self.encode_step(&mut enc, idx, batch)?;
        self.lstm.encode_resolve(&mut enc);
        self.ctx.submit_and_wait(enc)?;
        self.lstm.collect_times()?;
        self.step += 1;
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
        let s = self.scalars()?;
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
        Ok(self.scalars()?.grad_norm)
    }

    fn scalars(&self) -> Result<TrainScalars> {
        let mut enc = self
            .ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read scalars"),
            });
        let size = std::mem::size_of::<TrainScalars>() as u64;
        enc.copy_buffer_to_buffer(&self.scalars, 0, &self.scalars_staging, 0, size);
        self.ctx.submit_and_wait(enc)?;
        let t = map_and_read(&self.ctx, &self.scalars_staging, &[&[TrainScalars::WORDS]])?;
        Ok(*bytemuck::from_bytes::<TrainScalars>(bytemuck::cast_slice(
            t[0].data(),
        )))
    }

    /// Reads the model back to the host (PyTorch layout).
    pub fn model(&self) -> Result<Model<f32>> {
        let (embedding, head) = self.host_head_and_embedding()?;
        Ok(Model {
            embedding,
            lstm: self.lstm.weights()?,
            head,
            head_kind: self.shape.head_kind,
        })
    }

    /// The optimizer's state as named tensors in PyTorch's layout:
    /// `"optim.m.{param}"` and `"optim.v.{param}"` (SGD keeps its momentum
    /// buffer in `m`).
    pub fn optimizer_state(&self) -> Result<Vec<NamedTensor>> {
        let cfg = self.lstm.config();
        let mut out = Vec::new();
        let names = self.own_names();
        for (which, slot) in ["m", "v"].iter().enumerate() {
            for (p, (name, shape)) in self.own.iter().zip(&names) {
                let buf = if which == 0 { &p.m } else { &p.v };
                let t = GpuTensor::from_buffer(buf.clone(), vec![p.len]).to_host(&self.ctx)?;
                out.push((format!("optim.{slot}.{name}"), shape.clone(), t.into_data()));
            }
            let w = download_layers(&self.ctx, cfg, &self.lstm_state[which])?;
            for (n, s, v) in w.named_params() {
                out.push((format!("optim.{slot}.lstm.{n}"), s, v.to_vec()));
            }
        }
        Ok(out)
    }

    /// Evaluation mode: the model's outputs for `batch` (its targets are
    /// ignored), with no dropout and no saved activations. The LSTM runs on
    /// the GPU; the embedding lookup and the small head run on the host.
    /// Returns [rows, O]: rows = T·B for a per-step head, B for a last-step one.
    pub fn predict(&mut self, batch: &Batch<'_>) -> Result<Vec<f32>> {
        self.validate(batch)?;
        let (t, b) = (batch.seq_len, batch.batch);
        let model = self.host_head_and_embedding()?;
        let cfg = self.lstm.config().clone();
        let x = match batch.inputs {
            Inputs::Features(f) => f.to_vec(),
            Inputs::Tokens(ids) => model.0.as_ref().expect("validated").forward(ids)?,
        };
        let x = crate::tensor::Tensor::new([t, b, cfg.input_size], x)?;
        let mut input = crate::input::LstmInput::new(&x);
        if let Some(l) = batch.lengths {
            input = input.with_lengths(l);
        }
        let out = self.lstm.forward_host(&input)?;
        let f = cfg.output_size();
        let head_in = match self.shape.head_kind {
            HeadKind::PerStep => out.output.into_data(),
            HeadKind::LastStep => {
                crate::reference::last_valid_step(out.output.data(), t, b, f, batch.lengths)
            }
        };
        Ok(model.1.forward(&head_in, head_in.len() / f))
    }

    /// Evaluation mode: the loss on `batch` (see [`predict`](Self::predict)).
    pub fn evaluate(&mut self, batch: &Batch<'_>) -> Result<f64> {
        let out = self.predict(batch)?;
        crate::model::loss_of(&self.shape, self.config.loss, batch, &out).map(|(l, _)| l as f64)
    }

    /// The embedding and head parameters, read back.
    fn host_head_and_embedding(&self) -> Result<(Option<Embedding<f32>>, Linear<f32>)> {
        let read = |p: &Param| -> Result<Vec<f32>> {
            Ok(GpuTensor::from_buffer(p.value.clone(), vec![p.len])
                .to_host(&self.ctx)?
                .into_data())
        };
        let mut own = self.own.iter();
        let embedding = match self.shape.embedding {
            Some((num, dim)) => Some(Embedding {
                num_embeddings: num,
                embedding_dim: dim,
                weight: read(own.next().expect("embedding"))?,
            }),
            None => None,
        };
        let (hw, hb) = (
            own.next().expect("head weight"),
            own.next().expect("head bias"),
        );
        let head = Linear {
            in_features: self.lstm.config().output_size(),
            out_features: self.shape.outputs,
            weight: read(hw)?,
            bias: read(hb)?,
        };
        Ok((embedding, head))
    }

    /// Saves the model and the optimizer state as safetensors: parameters
    /// under the names a PyTorch module with attributes `embedding`, `lstm`
    /// (an `nn.LSTM`) and `head` (an `nn.Linear`) has, optimizer state under
    /// `optim.m.*` and `optim.v.*`, and the step count in the metadata. The
    /// file is written through a temporary file and a rename, so an existing
    /// checkpoint is never left half-written.
    pub fn save_checkpoint(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let model = self.model()?;
        let state = self.optimizer_state()?;
        let mut named: Vec<(String, Vec<usize>, &[f32])> = model.named_params();
        named.extend(state.iter().map(|(n, s, v)| (n.clone(), s.clone(), &v[..])));
        let meta = std::collections::HashMap::from([
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            ("step".to_string(), self.step.to_string()),
        ]);
        crate::io::write_atomic(path.as_ref(), &crate::io::serialize(&named, Some(meta))?)
    }

    /// Restores a checkpoint written by [`save_checkpoint`](Self::save_checkpoint)
    /// for a model of the same architecture; training then continues exactly
    /// as it would have. A checkpoint for another model is a typed error, and
    /// nothing changes.
    pub fn load_checkpoint(&mut self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = crate::io::read_file(path)?;
        let st = crate::io::parse(&bytes, Some(path))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
            LstmError::InvalidFile {
                path: Some(path.to_path_buf()),
                reason: e.to_string(),
            }
        })?;
        let meta = meta.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
            return Err(LstmError::InvalidFile {
                path: Some(path.to_path_buf()),
                reason: format!(
                    "not a wgpu-lstm training checkpoint (metadata format should be {CHECKPOINT_FORMAT:?})"
                ),
            });
        }
        let step: u64 = meta
            .get("step")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| LstmError::InvalidFile {
                path: Some(path.to_path_buf()),
                reason: "metadata lacks a step count".into(),
            })?;
        // Read and check everything before writing anything.
        let cfg = self.lstm.config().clone();
        let lstm_of = |prefix: &str| -> Result<crate::weights::LstmWeights<f32>> {
            let mut w = crate::weights::LstmWeights::<f32>::from_safetensors(
                &st,
                crate::weights::SafetensorsPrefix::Exact(prefix),
            )?;
            w.config.batch_first = cfg.batch_first;
            w.config.dropout = cfg.dropout;
            if w.config != cfg {
                return Err(LstmError::InconsistentLayers {
                    reason: format!(
                        "the checkpoint's LSTM is {:?}, this model's {:?}",
                        w.config, cfg
                    ),
                });
            }
            Ok(w)
        };
        let lstm = lstm_of("lstm.")?;
        let lstm_m = lstm_of("optim.m.lstm.")?;
        let lstm_v = lstm_of("optim.v.lstm.")?;
        let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let t = crate::io::read_float::<f32>(&st, name)?;
            if t.shape() != shape {
                return Err(LstmError::shape(name, shape, t.shape()));
            }
            Ok(t.into_data())
        };
        let mut own = Vec::new();
        for (name, shape) in self.own_names() {
            own.push([
                read(&name, &shape)?,
                read(&format!("optim.m.{name}"), &shape)?,
                read(&format!("optim.v.{name}"), &shape)?,
            ]);
        }
        let q = self.ctx.queue();
        for (p, [value, m, v]) in self.own.iter().zip(&own) {
            q.write_buffer(&p.value, 0, bytemuck::cast_slice(value));
            q.write_buffer(&p.m, 0, bytemuck::cast_slice(m));
            q.write_buffer(&p.v, 0, bytemuck::cast_slice(v));
        }
        self.lstm.set_weights(&lstm)?;
        self.lstm.write_like_params(&lstm_m, &self.lstm_state[0]);
        self.lstm.write_like_params(&lstm_v, &self.lstm_state[1]);
        self.step = step;
        self.ctx.check()
    }

    fn own_names(&self) -> Vec<(String, Vec<usize>)> {
        let mut names = Vec::new();
        if let Some((v, d)) = self.shape.embedding {
            names.push(("embedding.weight".to_string(), vec![v, d]));
        }
        let f = self.lstm.config().output_size();
        names.push(("head.weight".into(), vec![self.shape.outputs, f]));
        names.push(("head.bias".into(), vec![self.shape.outputs]));
        names
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

    /// Writes the batch and this step's scalars (before the submit).
    fn write_inputs(&self, idx: usize, batch: &Batch<'_>) {
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

    fn encode_step(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        idx: usize,
        batch: &Batch<'_>,
    ) -> Result<()> {
        let ctx = self.ctx.clone();
        self.run_list(enc, idx, |s| &s.before);
        let seed = self.config.dropout_seed.wrapping_add(self.step);
        let lstm_in = self.spaces[idx].lstm_in.clone();
        let w = self
            .lstm
            .encode_train_forward(enc, &lstm_in, batch.lengths, seed)?;
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
        if sp.after.is_empty() {
            // The LSTM's gradient buffers exist now: bind the update kernels.
            let after = self.bind_after(idx)?;
            self.spaces[idx].after = after;
        }
        self.run_list(enc, idx, |s| &s.after);
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
        let kernels = self.kernel_table();
        for (k, bg, groups) in items {
            if *k == GEMM {
                self.gemm
                    .encode(&self.ctx, &mut pass, bg, (groups.0, groups.1));
            } else {
                kernels[*k].encode(&self.ctx, &mut pass, bg, *groups);
            }
        }
    }

    fn kernel_table(&self) -> [&Kernel; 11] {
        let k = &self.kernels;
        [
            &k.mse,
            &k.cross_entropy,
            &k.loss_finish,
            &k.sum_squares,
            &k.clip,
            &k.update,
            &k.last_step,
            &k.last_step_backward,
            &k.embed,
            &k.embed_backward,
            &k.cast,
        ]
    }
}
