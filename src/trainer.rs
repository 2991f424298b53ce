//! [`Trainer`]: training of a [`Model`] on any [`Device`], with the same
//! calls, results and checkpoints everywhere.

use std::path::Path;

use crate::checkpoint::{self, Checkpoint};
use crate::cpu::CpuEngine;
use crate::device::Device;
use crate::error::{LstmError, Result};
use crate::gpu::GpuTrainer;
use crate::input::LstmInput;
use crate::model::{Batch, Model, TrainConfig};
use crate::reference::{
    ForwardCache, Gradients, LstmOutput, LstmPasses, OutputGrads, ParamGradients, TrainState,
};
use crate::weights::LstmWeights;

/// Trains a [`Model`] on a device: each [`step`](Self::step) runs forward
/// (with dropout), loss, backward through time, clipping and the optimizer
/// update.
///
/// On a GPU the whole step is one submit and nothing is read back until asked
/// for ([`loss`](Self::loss), [`model`](Self::model)). On the CPU the LSTM
/// runs in the CPU engine and the rest in the reference's code. Checkpoints
/// have one format: a run saved on one device resumes on the other.
pub struct Trainer {
    engine: Engine,
}

enum Engine {
    Cpu {
        engine: CpuEngine,
        state: Box<TrainState<f32>>,
        /// The first step whose loss was NaN or infinite, and that loss:
        /// from then on steps change nothing, as on the GPU.
        bad: Option<(u64, f64)>,
        /// Steps called after `bad`, which changed nothing.
        skipped: u64,
    },
    Gpu(Box<GpuTrainer>),
}

impl LstmPasses<f32> for CpuEngine {
    fn forward(&self, w: &LstmWeights<f32>, x: &LstmInput<'_, f32>) -> Result<LstmOutput<f32>> {
        CpuEngine::forward(self, w, x)
    }
    fn forward_train(
        &self,
        w: &LstmWeights<f32>,
        x: &LstmInput<'_, f32>,
        seed: u64,
    ) -> Result<(LstmOutput<f32>, ForwardCache<f32>)> {
        CpuEngine::forward_train(self, w, x, seed)
    }
    fn backward(
        &self,
        w: &LstmWeights<f32>,
        cache: &ForwardCache<f32>,
        grads: &OutputGrads<'_, f32>,
    ) -> Result<Gradients<f32>> {
        CpuEngine::backward(self, w, cache, grads)
    }
    fn backward_params(
        &self,
        w: &LstmWeights<f32>,
        cache: &ForwardCache<f32>,
        grads: &OutputGrads<'_, f32>,
    ) -> Result<ParamGradients<f32>> {
        CpuEngine::backward_params(self, w, cache, grads)
    }
    fn recycle(&self, cache: ForwardCache<f32>) {
        CpuEngine::recycle(self, cache)
    }
    fn recycle_buffer(&self, buffer: Vec<f32>) {
        CpuEngine::recycle_buffer(self, buffer)
    }
}

impl Trainer {
    /// Prepares training of `model` with `config` on `device` (in the
    /// device's precision on a GPU). Training works on time-major batches,
    /// so no recurrent layer may be `batch_first`; layers that do not chain
    /// are an [`LstmError::InconsistentLayers`] (see [`Model::validate`]).
    pub fn new(device: &Device, model: Model<f32>, config: TrainConfig) -> Result<Trainer> {
        let engine = match (device.gpu_context(), device.cpu_engine()) {
            (Some(ctx), _) => Engine::Gpu(Box::new(GpuTrainer::with_precision(
                ctx,
                &model,
                config,
                device.precision(),
            )?)),
            (None, Some(engine)) => {
                if model.lstm.config.batch_first {
                    return Err(LstmError::InvalidConfig {
                        field: "batch_first",
                        reason: "training works on time-major data".into(),
                    });
                }
                Engine::Cpu {
                    engine: engine.clone(),
                    state: Box::new(TrainState::new(model, config)?),
                    bad: None,
                    skipped: 0,
                }
            }
            (None, None) => unreachable!("a device is the CPU engine or a GPU"),
        };
        Ok(Trainer { engine })
    }

    /// One training step. A batch that does not fit the model is a typed
    /// error and changes nothing. The loss is not read back: see
    /// [`loss`](Self::loss). A loss that is NaN or infinite stops training:
    /// that step and every later one change nothing, and `loss` reports it.
    pub fn step(&mut self, batch: &Batch<'_>) -> Result<()> {
        match &mut self.engine {
            Engine::Gpu(gpu) => gpu.step(batch),
            Engine::Cpu {
                engine,
                state,
                bad,
                skipped,
            } => {
                if bad.is_some() {
                    batch.validate(&state.model.shape(), state.config.loss)?;
                    *skipped += 1;
                    return Ok(());
                }
                match state.step(engine, batch) {
                    Err(LstmError::NonFiniteLoss { step, loss }) => {
                        *bad = Some((step, loss));
                        *skipped += 1;
                        Ok(())
                    }
                    other => other.map(|_| ()),
                }
            }
        }
    }

    /// [`step`](Self::step), then that step's [`loss`](Self::loss).
    pub fn step_with_loss(&mut self, batch: &Batch<'_>) -> Result<f32> {
        // Not a blocking wrapper of the async form: in a browser that would
        // take the step and then fail on the loss's read-back, and awaiting
        // the async form as the error says would take it again.
        self.step(batch)?;
        self.loss()
    }

    /// [`step_with_loss`](Self::step_with_loss), awaiting the loss's
    /// read-back instead of blocking.
    pub async fn step_with_loss_async(&mut self, batch: &Batch<'_>) -> Result<f32> {
        self.step(batch)?;
        self.loss_async().await
    }

    /// The last step's loss, before its update (on a GPU, one small
    /// read-back). [`LstmError::NonFiniteLoss`] names the first step whose
    /// loss was NaN or infinite; [`LstmError::InvalidValue`] before any step.
    pub fn loss(&self) -> Result<f32> {
        crate::runtime::block_on("Trainer::loss", self.loss_async())
    }

    /// [`loss`](Self::loss), awaiting the GPU's read-back instead of
    /// blocking: the form a browser needs (natively it is the same call).
    pub async fn loss_async(&self) -> Result<f32> {
        if self.step_count() == 0 {
            return Err(LstmError::value(
                "loss",
                "is not known before the first step",
            ));
        }
        match &self.engine {
            Engine::Gpu(gpu) => gpu.loss_async().await,
            Engine::Cpu {
                bad: Some((step, loss)),
                ..
            } => Err(LstmError::NonFiniteLoss {
                step: *step,
                loss: *loss,
            }),
            Engine::Cpu { state, .. } => Ok(state.last_loss.unwrap_or(f64::NAN) as f32),
        }
    }

    /// Evaluation mode: the model's outputs for `batch` (its targets are
    /// ignored), with no dropout and nothing saved for training. Returns
    /// [rows, O]: rows = T·B for a per-step head, B for a last-step one.
    pub fn predict(&mut self, batch: &Batch<'_>) -> Result<Vec<f32>> {
        crate::runtime::block_on("Trainer::predict", self.predict_async(batch))
    }

    /// [`predict`](Self::predict), awaiting the GPU's read-backs instead of
    /// blocking.
    pub async fn predict_async(&mut self, batch: &Batch<'_>) -> Result<Vec<f32>> {
        match &mut self.engine {
            Engine::Gpu(gpu) => gpu.predict_async(batch).await,
            Engine::Cpu { engine, state, .. } => state.predict(engine, batch),
        }
    }

    /// Evaluation mode: the loss on `batch` (see [`predict`](Self::predict)).
    pub fn evaluate(&mut self, batch: &Batch<'_>) -> Result<f64> {
        crate::runtime::block_on("Trainer::evaluate", self.evaluate_async(batch))
    }

    /// [`evaluate`](Self::evaluate), awaiting the GPU's read-backs instead
    /// of blocking.
    pub async fn evaluate_async(&mut self, batch: &Batch<'_>) -> Result<f64> {
        match &mut self.engine {
            Engine::Gpu(gpu) => gpu.evaluate_async(batch).await,
            Engine::Cpu { engine, state, .. } => state.evaluate(engine, batch),
        }
    }

    /// Evaluation mode: how many of the model's predictions for `batch` are
    /// right (see [`crate::model::accuracy`]; per token with a per-step
    /// head). Classification losses only.
    pub fn accuracy(&mut self, batch: &Batch<'_>) -> Result<crate::model::Accuracy> {
        crate::runtime::block_on("Trainer::accuracy", self.accuracy_async(batch))
    }

    /// [`accuracy`](Self::accuracy), awaiting the GPU's read-backs instead
    /// of blocking.
    pub async fn accuracy_async(&mut self, batch: &Batch<'_>) -> Result<crate::model::Accuracy> {
        let out = self.predict_async(batch).await?; // validates the batch
        crate::model::count_right(&self.model_shape(), self.config().loss, batch, &out)
    }

    /// The model as trained so far (read back from a GPU), in PyTorch's
    /// layout.
    pub fn model(&self) -> Result<Model<f32>> {
        crate::runtime::block_on("Trainer::model", self.model_async())
    }

    /// [`model`](Self::model), awaiting the GPU's read-back instead of
    /// blocking.
    pub async fn model_async(&self) -> Result<Model<f32>> {
        match &self.engine {
            Engine::Gpu(gpu) => gpu.model_async().await,
            Engine::Cpu { state, .. } => Ok(state.model.clone()),
        }
    }

    /// Completed training steps (batches), counting those that a non-finite
    /// loss made change nothing. With gradient accumulation over N batches
    /// the optimizer has updated step_count / N times.
    pub fn step_count(&self) -> u64 {
        match &self.engine {
            Engine::Gpu(gpu) => gpu.step_count(),
            Engine::Cpu { state, skipped, .. } => state.batches() + skipped,
        }
    }

    /// Stateful training ([`TrainConfig::stateful`]): forgets the carried
    /// state, so that the next forward pass starts from zeros (Keras'
    /// `reset_states`). Loading a checkpoint does this too.
    pub fn reset_states(&mut self) {
        match &mut self.engine {
            Engine::Gpu(gpu) => gpu.reset_states(),
            Engine::Cpu { state, .. } => state.reset_states(),
        }
    }

    /// The model's architecture.
    fn model_shape(&self) -> crate::model::ModelShape {
        match &self.engine {
            Engine::Gpu(gpu) => gpu.shape().clone(),
            Engine::Cpu { state, .. } => state.model.shape(),
        }
    }

    /// The training configuration.
    pub fn config(&self) -> &TrainConfig {
        match &self.engine {
            Engine::Gpu(gpu) => gpu.config(),
            Engine::Cpu { state, .. } => &state.config,
        }
    }

    /// The GPU trainer, for what only a GPU has (loss scaling in f16,
    /// kernel times, memory); `None` on the CPU.
    pub fn gpu_mut(&mut self) -> Option<&mut GpuTrainer> {
        match &mut self.engine {
            Engine::Gpu(gpu) => Some(gpu),
            Engine::Cpu { .. } => None,
        }
    }

    /// Saves the model and the optimizer state (see the checkpoint format in
    /// the README), through a temporary file and a rename.
    pub fn save_checkpoint(&self, path: impl AsRef<Path>) -> Result<()> {
        match &self.engine {
            Engine::Gpu(gpu) => gpu.save_checkpoint(path),
            Engine::Cpu { state, .. } => {
                let (m, v) = moments(state);
                let ckpt = Checkpoint {
                    model: state.model.clone(),
                    m,
                    v,
                    step: state.optimizer.step,
                };
                checkpoint::save(path.as_ref(), &ckpt)
            }
        }
    }

    /// Restores a checkpoint written by [`save_checkpoint`](Self::save_checkpoint)
    /// on any device, for a model of the same architecture; training then
    /// continues as it would have. A checkpoint for another model, or a file
    /// that is not one, is a typed error, and nothing changes.
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<()> {
        match &mut self.engine {
            Engine::Gpu(gpu) => gpu.load_checkpoint(path),
            Engine::Cpu {
                state,
                bad,
                skipped,
                ..
            } => {
                let ckpt = checkpoint::load(path.as_ref(), &state.model)?;
                let slots = state.config.optimizer.state_names().len();
                let mut opt = state.optimizer.clone();
                opt.state = ckpt
                    .m
                    .into_iter()
                    .zip(ckpt.v)
                    .flat_map(|(m, v)| [m, v].into_iter().take(slots))
                    .collect();
                opt.step = ckpt.step;
                state.model = ckpt.model;
                state.optimizer = opt;
                state.reset_states();
                state.drop_pending();
                state.last_loss = None;
                (*bad, *skipped) = (None, 0);
                Ok(())
            }
        }
    }
}

/// The optimizer state as the checkpoint's `m` and `v` lists: SGD's momentum
/// buffer in `m`, Adam's moments in `m` and `v`, zeros where there is none.
fn moments(state: &TrainState<f32>) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let slots = state.config.optimizer.state_names().len();
    let sizes = &state.optimizer.param_sizes;
    let slot = |k: usize| -> Vec<Vec<f32>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| match k < slots {
                true => state.optimizer.state[i * slots + k].clone(),
                false => vec![0.0; n],
            })
            .collect()
    };
    (slot(0), slot(1))
}
