//! [`Lstm`]: inference with PyTorch's `nn.LSTM` semantics on any
//! [`Device`], host tensors in and out.

use crate::config::{Cell, LstmConfig};
use crate::cpu::CpuEngine;
use crate::device::Device;
use crate::error::{LstmError, Result};
use crate::gpu::GpuLstm;
use crate::input::LstmInput;
use crate::reference::LstmOutput;
use crate::tensor::Tensor;
use crate::weights::LstmWeights;

/// An LSTM ready to run on a device: `nn.LSTM` in evaluation mode.
///
/// On a GPU the weights are uploaded once and every call is one submit; the
/// GPU-resident API (GPU tensors in and out, state kept on the GPU) is
/// [`gpu_mut`](Self::gpu_mut).
pub struct Lstm {
    engine: Engine,
    /// (h_n, c_n) of the last [`forward_stateful`](Self::forward_stateful).
    carried: Option<(Tensor<f32>, Tensor<f32>)>,
}

enum Engine {
    Cpu {
        engine: CpuEngine,
        weights: LstmWeights<f32>,
    },
    Gpu(Box<GpuLstm>),
}

impl Lstm {
    /// Puts `weights` on `device` (validated first; a GPU device's precision
    /// applies).
    pub fn new(device: &Device, weights: &LstmWeights<f32>) -> Result<Lstm> {
        weights.config.validate()?;
        let engine = match (device.gpu_context(), device.cpu_engine()) {
            (Some(ctx), _) => Engine::Gpu(Box::new(GpuLstm::with_precision(
                ctx,
                weights,
                device.precision(),
            )?)),
            (None, Some(engine)) => Engine::Cpu {
                engine: engine.clone(),
                weights: weights.clone(),
            },
            (None, None) => unreachable!("a device is the CPU engine or a GPU"),
        };
        Ok(Lstm {
            engine,
            carried: None,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &LstmConfig {
        match &self.engine {
            Engine::Cpu { weights, .. } => &weights.config,
            Engine::Gpu(gpu) => gpu.config(),
        }
    }

    /// `lstm(input, (h_0, c_0))`: output [T, B, D·H_out] (or batch-first),
    /// h_n [D·L, B, H_out] and c_n [D·L, B, H], read back to the host (for
    /// a GRU, `gru(input, h_0)`, with an empty c_n [D·L, B, 0]).
    pub fn forward(&mut self, x: &LstmInput<'_, f32>) -> Result<LstmOutput<f32>> {
        crate::runtime::block_on("Lstm::forward", self.forward_async(x))
    }

    /// [`forward`](Self::forward), awaiting the GPU's read-back instead of
    /// blocking: the form a browser needs (natively it is the same call).
    pub async fn forward_async(&mut self, x: &LstmInput<'_, f32>) -> Result<LstmOutput<f32>> {
        match &mut self.engine {
            Engine::Cpu { engine, weights } => engine.forward(weights, x),
            Engine::Gpu(gpu) => gpu.forward_host_async(x).await,
        }
    }

    /// Streaming, as Keras' `stateful=True`: each call starts from the final
    /// state of the previous `forward_stateful` call (zeros at first and
    /// after [`reset_state`](Self::reset_state)), so a long sequence can be
    /// fed in chunks. `x` carries no initial state of its own, and its batch
    /// size must match the carried state's.
    pub fn forward_stateful(&mut self, x: &LstmInput<'_, f32>) -> Result<LstmOutput<f32>> {
        crate::runtime::block_on("Lstm::forward_stateful", self.forward_stateful_async(x))
    }

    /// [`forward_stateful`](Self::forward_stateful), awaiting the GPU's
    /// read-back instead of blocking.
    pub async fn forward_stateful_async(
        &mut self,
        x: &LstmInput<'_, f32>,
    ) -> Result<LstmOutput<f32>> {
        if x.h_0.is_some() || x.c_0.is_some() {
            return Err(LstmError::value(
                "h_0",
                "is carried from the previous call in forward_stateful; use forward to give a state",
            ));
        }
        // A copy: [D·L, B, H] is small, and an error keeps the carried state.
        let carried = self.carried.clone();
        let out = match &carried {
            Some((h, c)) => {
                let (_, b) = x.validate(self.config())?;
                let batch = h.shape()[1];
                if b != batch {
                    return Err(LstmError::value(
                        "input",
                        format!(
                            "has batch size {b}, the carried state {batch}; call reset_state to start anew"
                        ),
                    ));
                }
                // A GRU's carried c is empty: it takes h_0 alone.
                let gru = self.config().cell == Cell::Gru;
                self.forward_async(&LstmInput {
                    h_0: Some(h),
                    c_0: (!gru).then_some(c),
                    ..*x
                })
                .await?
            }
            None => self.forward_async(x).await?,
        };
        self.carried = Some((out.h_n.clone(), out.c_n.clone()));
        Ok(out)
    }

    /// Forgets the carried state: the next
    /// [`forward_stateful`](Self::forward_stateful) starts from zeros.
    pub fn reset_state(&mut self) {
        self.carried = None;
    }

    /// The weights, in PyTorch's layout (read back from a GPU).
    pub fn weights(&self) -> Result<LstmWeights<f32>> {
        crate::runtime::block_on("Lstm::weights", self.weights_async())
    }

    /// [`weights`](Self::weights), awaiting the GPU's read-back.
    pub async fn weights_async(&self) -> Result<LstmWeights<f32>> {
        match &self.engine {
            Engine::Cpu { weights, .. } => Ok(weights.clone()),
            Engine::Gpu(gpu) => gpu.weights_async().await,
        }
    }

    /// The GPU engine, for GPU-resident calls; `None` on the CPU.
    pub fn gpu_mut(&mut self) -> Option<&mut GpuLstm> {
        match &mut self.engine {
            Engine::Gpu(gpu) => Some(gpu),
            Engine::Cpu { .. } => None,
        }
    }
}
