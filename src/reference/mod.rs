//! The reference: the specification every engine is held to.
//!
//! PyTorch's `nn.LSTM` and `nn.GRU` forward and backward through time, and
//! the training pieces around them, in plain loops that a reader checks by
//! eye against DESIGN.md §1 and §9: generic over [`Real`] (f32, and f64 for finite differences),
//! single-threaded, with no buffer pool and no dispatch by type. Its matrix
//! products go through the `gemm` crate. It is tested against PyTorch's
//! float64 fixtures and finite differences; the CPU engine
//! ([`crate::cpu`]) and the GPU engine ([`crate::gpu`]) are tested against
//! it. It never calls an engine.
//!
//! - [`forward`], [`forward_train`], [`backward`], [`backward_params`]: the
//!   LSTM or GRU (by `config.cell`; the GRU's cell is in `gru.rs`), with
//!   [`LstmOutput`], [`ForwardCache`], [`OutputGrads`] and [`Gradients`] in
//!   PyTorch's layouts.
//! - [`layers`]: [`Linear`] (`nn.Linear`), [`Embedding`] (`nn.Embedding`),
//!   [`last_valid_step`] for many-to-one heads.
//! - [`loss`]: [`mse`] (`nn.MSELoss`), [`mse_masked`] (MSE over the valid
//!   steps of padded sequences), [`bce_with_logits_masked`]
//!   (`nn.BCEWithLogitsLoss`, likewise masked), [`cross_entropy`]
//!   (`nn.CrossEntropyLoss`).
//! - [`optim`]: [`Optimizer`] (`torch.optim.SGD`, `Adam`, `AdamW`),
//!   [`clip_grad_norm`] (`clip_grad_norm_`), [`clip_grad_value`]
//!   (`clip_grad_value_`).
//! - [`schedule`]: [`LrSchedule`] (`StepLR`, `CosineAnnealingLR`), also
//!   re-exported from [`optim`].
//! - [`ReferenceTrainer`]: one training step of a [`Model`](crate::Model)
//!   with all of the above: [`forward_train`] → [`Linear::forward`] → loss →
//!   [`Linear::backward`] → [`backward`] → optional [`clip_grad_norm`] →
//!   [`Optimizer::step`] at [`LrSchedule::lr`].
//!
//! Everything works on row-major flat slices; shapes are given in the doc
//! comments.

mod backward;
mod forward;
mod gru;
mod layer_norm;
pub mod layers;
pub mod loss;
pub mod optim;
pub mod schedule;
mod trainer;

pub use backward::{Gradients, OutputGrads, ParamGradients, backward, backward_params};
pub(crate) use backward::{Seen, add_input_grad, recurrent_weight_grad};
pub(crate) use forward::cell_states_of;
pub use forward::{
    DirectionCache, ForwardCache, LayerCache, LayerNormCache, LstmOutput, forward, forward_train,
};
pub use layer_norm::LN_EPS;
pub use layers::{Embedding, Linear, LinearGrads, last_valid_step, last_valid_step_backward};
pub use loss::{bce_with_logits_masked, cross_entropy, mse, mse_masked};
pub use optim::{LrSchedule, Optimizer, OptimizerKind, clip_grad_norm, clip_grad_value};
pub use trainer::ReferenceTrainer;
pub(crate) use trainer::{LstmPasses, TrainState};

use crate::real::Real;
use crate::weights::{LayerNormWeights, LayerWeights, LstmWeights};

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
            layer_norm,
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
        if let Some(ln) = layer_norm {
            let LayerNormWeights {
                ih_weight,
                ih_bias,
                hh_weight,
                hh_bias,
                cell_weight,
                cell_bias,
            } = ln;
            out.extend(
                [
                    ih_weight,
                    ih_bias,
                    hh_weight,
                    hh_bias,
                    cell_weight,
                    cell_bias,
                ]
                .map(|v| &mut v[..]),
            );
        }
    }
    out
}
