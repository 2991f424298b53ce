//! The CPU engine: the LSTM and GRU contract run fast in f32, held to
//! [`crate::reference`] and to PyTorch.
//!
//! - Weights are packed into panels for the SIMD step kernels (`fused.rs`
//!   forward, `fused_backward.rs` backward), in AVX-512, AVX2+FMA or portable
//!   variants chosen at run time; the input projection runs on the same
//!   register tiles (`input_projection.rs`).
//! - Threads of a rayon pool split each step's panels or take groups of batch
//!   rows ([`CpuEngine::with_threads`] sets how many).
//! - Large buffers are reused between calls from a per-thread pool
//!   (`scratch.rs`).
//!
//! - A GRU (`gru.rs`) runs its products as threaded GEMMs (the input
//!   projection for the whole sequence, then one per step) with a vector
//!   elementwise step (`gru_cell.rs`) between them.
//!
//! A projection LSTM (`proj_size` > 0) has no fused kernel: the engine runs
//! it with the reference's plain loops, in f32.

mod backward;
mod forward;
mod fused;
mod fused_backward;
#[cfg(test)]
mod fused_tests;
mod gru;
mod gru_cell;
mod input_projection;
pub(crate) mod scratch;
mod simd;
mod threads;
mod vmath;

pub(crate) use forward::recycle_cache;
pub use scratch::{release_scratch, scratch_bytes};

use std::sync::Arc;

use crate::error::{LstmError, Result};
use crate::input::LstmInput;
use crate::reference::{self, ForwardCache, Gradients, LstmOutput, OutputGrads, ParamGradients};
use crate::weights::LstmWeights;

/// The CPU engine: f32 forward and backward passes with SIMD step kernels on
/// a pool of threads. Cheap to clone (a clone shares the pool).
#[derive(Clone, Default)]
pub struct CpuEngine {
    /// A pool of its own when a thread count was set; rayon's global pool
    /// (one thread per core) otherwise.
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl std::fmt::Debug for CpuEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CpuEngine {{ threads: {} }}", self.threads())
    }
}

impl CpuEngine {
    /// The engine on rayon's global pool: one thread per core, or
    /// `RAYON_NUM_THREADS`.
    pub fn new() -> Self {
        CpuEngine::default()
    }

    /// The engine on a pool of its own with `threads` threads (at least 1).
    pub fn with_threads(threads: usize) -> Result<Self> {
        if threads == 0 {
            return Err(LstmError::value("threads", "must be at least 1"));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|k| format!("wgpu-lstm-cpu-{k}"))
            .build()
            .map_err(|e| LstmError::value("threads", format!("no thread pool: {e}")))?;
        Ok(CpuEngine {
            pool: Some(Arc::new(pool)),
        })
    }

    /// The threads that share the work.
    pub fn threads(&self) -> usize {
        match &self.pool {
            Some(pool) => pool.current_num_threads(),
            None => rayon::current_num_threads(),
        }
    }

    /// Runs `work` on this engine's threads.
    fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(work),
            None => work(),
        }
    }

    /// Inference: PyTorch's `lstm.eval()(input, (h_0, c_0))`. Dropout is off.
    pub fn forward(
        &self,
        weights: &LstmWeights<f32>,
        x: &LstmInput<'_, f32>,
    ) -> Result<LstmOutput<f32>> {
        if weights.config.proj_size > 0 || weights.config.layer_norm {
            return reference::forward(weights, x);
        }
        self.install(|| forward::forward(weights, x))
    }

    /// Training-mode forward: inter-layer dropout with the mask drawn from
    /// `dropout_seed` (see [`crate::dropout`]), and the activations the
    /// backward pass needs. Give the cache back with
    /// [`recycle`](Self::recycle) when done, so the next call reuses its
    /// buffers.
    pub fn forward_train(
        &self,
        weights: &LstmWeights<f32>,
        x: &LstmInput<'_, f32>,
        dropout_seed: u64,
    ) -> Result<(LstmOutput<f32>, ForwardCache<f32>)> {
        if weights.config.proj_size > 0 || weights.config.layer_norm {
            return reference::forward_train(weights, x, dropout_seed);
        }
        self.install(|| forward::forward_train(weights, x, dropout_seed))
    }

    /// Backpropagates through the forward pass that produced `cache`.
    pub fn backward(
        &self,
        weights: &LstmWeights<f32>,
        cache: &ForwardCache<f32>,
        grads: &OutputGrads<'_, f32>,
    ) -> Result<Gradients<f32>> {
        if weights.config.proj_size > 0 || weights.config.layer_norm {
            return reference::backward(weights, cache, grads);
        }
        self.install(|| backward::backward(weights, cache, grads))
    }

    /// [`backward`](Self::backward) without the input's gradient, as PyTorch
    /// computes it when the input does not require grad.
    pub fn backward_params(
        &self,
        weights: &LstmWeights<f32>,
        cache: &ForwardCache<f32>,
        grads: &OutputGrads<'_, f32>,
    ) -> Result<ParamGradients<f32>> {
        if weights.config.proj_size > 0 || weights.config.layer_norm {
            return reference::backward_params(weights, cache, grads);
        }
        self.install(|| backward::backward_params(weights, cache, grads))
    }

    /// Gives a training forward's buffers back for reuse by later calls.
    pub fn recycle(&self, cache: ForwardCache<f32>) {
        self.install(|| recycle_cache(cache));
    }

    /// Gives a large buffer back for reuse by later calls.
    pub(crate) fn recycle_buffer(&self, buffer: Vec<f32>) {
        self.install(|| scratch::recycle(buffer));
    }
}
