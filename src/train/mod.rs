//! The CPU reference for training: the layers, losses and optimizers around
//! the LSTM, written plainly. Like [`crate::cpu`], this is a specification:
//! the GPU kernels are tested against it, and it is tested against PyTorch
//! (`tests/train_cpu.rs`, fixtures from `tools/make_train_fixtures.py`).
//!
//! Everything is generic over [`Real`] and works on row-major flat slices;
//! shapes are given in the doc comments.
//!
//! - [`layers`]: [`Linear`] (`nn.Linear`), [`Embedding`] (`nn.Embedding`),
//!   [`last_valid_step`] for many-to-one heads.
//! - [`loss`]: [`mse`] (`nn.MSELoss`), [`mse_masked`] (MSE over the valid
//!   steps of padded sequences), [`cross_entropy`] (`nn.CrossEntropyLoss`).
//! - [`optim`]: [`Optimizer`] (`torch.optim.SGD`, `Adam`, `AdamW`),
//!   [`clip_grad_norm`] (`clip_grad_norm_`).
//! - [`schedule`]: [`LrSchedule`] (`StepLR`, `CosineAnnealingLR`), also
//!   re-exported from [`optim`].
//!
//! One training step with an LSTM and a per-step linear head:
//! `cpu::forward_train` → [`Linear::forward`] → loss → [`Linear::backward`]
//! → `cpu::backward` (with the head's input gradient as `d_output`) →
//! optional [`clip_grad_norm`] → [`Optimizer::step`] at [`LrSchedule::lr`].

pub mod layers;
pub mod loss;
pub mod optim;
pub mod schedule;

pub use layers::{Embedding, Linear, LinearGrads, last_valid_step, last_valid_step_backward};
pub use loss::{cross_entropy, mse, mse_masked};
pub use optim::{LrSchedule, Optimizer, OptimizerKind, clip_grad_norm};

use crate::real::Real;
use crate::weights::{LayerWeights, LstmWeights};

/// Every LSTM parameter as a mutable slice, in `state_dict` order (the order
/// of [`LstmWeights::named_params`] and of PyTorch's `lstm.parameters()`),
/// ready for [`Optimizer::step`] and [`clip_grad_norm`].
pub fn lstm_params_mut<T: Real>(weights: &mut LstmWeights<T>) -> Vec<&mut [T]> {
    let mut out: Vec<&mut [T]> = Vec::new();
    for layer in weights.layers.iter_mut() {
        // Destructure so the fields are borrowed independently.
        let LayerWeights {
            weight_ih,
            weight_hh,
            bias_ih,
            bias_hh,
            weight_hr,
        } = layer;
        out.push(weight_ih);
        out.push(weight_hh);
        if let Some(b) = bias_ih {
            out.push(b);
        }
        if let Some(b) = bias_hh {
            out.push(b);
        }
        if let Some(w) = weight_hr {
            out.push(w);
        }
    }
    out
}
