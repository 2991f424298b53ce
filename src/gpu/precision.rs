//! The storage precision of the GPU engine, and the loss scaling that
//! training in f16 uses.
//!
//! With [`Precision::F16`] the engine stores in f16:
//! - the working copy of every LSTM weight (`W_ih`, `W_hh`, `b_ih`, `b_hh`,
//!   and `W_hr` with a hidden projection),
//! - the input projection `G = X·W_ihᵀ + b_ih + b_hh` of each layer,
//! - the activations saved for the backward pass: the gates i, f, g, o and
//!   the h entering each step,
//! - the gate gradients dG of the backward pass.
//!
//! Everything else stays f32: every product accumulates in f32 (the GEMM's
//! and the step kernels' registers and workgroup tiles are f32), the cell
//! state c and its saved copies, the hidden state carried between steps, the
//! layers' outputs, with a hidden projection the saved m_t = o ⊙ tanh(c_t) and the
//! gradient dh_t, the input and every tensor at the API boundary, the
//! parameter gradients, and, when training, the master weights and the
//! optimizer state (see [`crate::gpu::GpuTrainer::with_precision`]).

use crate::error::{LstmError, Result};

/// How the GPU engine stores weights and activations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Weights and activations in f16 with f32 accumulation; needs the
    /// adapter feature `SHADER_F16`.
    F16,
}

impl Precision {
    /// Bytes of one stored element.
    pub fn bytes(self) -> u64 {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }

    /// The WGSL scalar type.
    pub(crate) fn wgsl(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.wgsl())
    }
}

impl std::str::FromStr for Precision {
    type Err = LstmError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Precision::F32),
            "f16" => Ok(Precision::F16),
            other => Err(LstmError::value(
                "precision",
                format!("{other:?} is not a precision; use f32 or f16"),
            )),
        }
    }
}

/// Checks that a device with `features` can run `precision`: f16 needs
/// `SHADER_F16`. `adapter` names the device in the error.
pub fn check_precision(
    precision: Precision,
    features: wgpu::Features,
    adapter: &str,
) -> Result<()> {
    if precision == Precision::F16 && !features.contains(wgpu::Features::SHADER_F16) {
        return Err(LstmError::MissingFeature {
            feature: "SHADER_F16",
            adapter: adapter.to_string(),
            needed_for: "f16 precision",
        });
    }
    Ok(())
}

/// Loss scaling for f16 training, as `torch.cuda.amp.GradScaler` does it.
///
/// The loss gradient is multiplied by the scale before backpropagation, so
/// that small gate gradients stay representable in f16; the optimizer divides
/// the parameter gradients by it again (before clipping). When any gradient
/// is infinite or NaN, the step changes no parameter and no optimizer state.
/// With [`Dynamic`](LossScale::Dynamic), such a step also halves the scale,
/// and every `growth_interval` steps in a row without one double it. The
/// scale lives on the GPU and is updated there, so no step waits on a read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LossScale {
    /// A fixed scale; steps with non-finite gradients are still skipped.
    Static(f32),
    /// GradScaler's rule, with growth factor 2 and backoff factor 0.5.
    Dynamic {
        /// The starting scale.
        init: f32,
        /// Clean steps in a row after which the scale doubles.
        growth_interval: u32,
    },
}

impl Default for LossScale {
    /// GradScaler's defaults: start at 2^16, grow after 2000 clean steps.
    fn default() -> Self {
        LossScale::Dynamic {
            init: 65536.0,
            growth_interval: 2000,
        }
    }
}

impl LossScale {
    pub(crate) fn validate(&self) -> Result<()> {
        let (init, interval) = match *self {
            LossScale::Static(s) => (s, 1),
            LossScale::Dynamic {
                init,
                growth_interval,
            } => (init, growth_interval),
        };
        if !(init.is_finite() && init > 0.0) {
            return Err(LstmError::InvalidConfig {
                field: "loss_scale",
                reason: format!("must be a finite positive scale, got {init}"),
            });
        }
        if interval == 0 {
            return Err(LstmError::InvalidConfig {
                field: "loss_scale",
                reason: "growth_interval must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// The scale training starts with.
    pub fn initial(&self) -> f32 {
        match *self {
            LossScale::Static(s) => s,
            LossScale::Dynamic { init, .. } => init,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_without_shader_f16_is_a_typed_error() {
        let err =
            check_precision(Precision::F16, wgpu::Features::empty(), "some adapter").unwrap_err();
        assert!(matches!(
            err,
            LstmError::MissingFeature {
                feature: "SHADER_F16",
                ..
            }
        ));
        assert!(err.to_string().contains("SHADER_F16"), "{err}");
        assert!(err.to_string().contains("some adapter"), "{err}");
        check_precision(Precision::F16, wgpu::Features::SHADER_F16, "x").unwrap();
        check_precision(Precision::F32, wgpu::Features::empty(), "x").unwrap();
    }

    #[test]
    fn precision_parses_and_loss_scale_validates() {
        assert_eq!("f16".parse::<Precision>().unwrap(), Precision::F16);
        assert_eq!("f32".parse::<Precision>().unwrap(), Precision::F32);
        assert!("bf16".parse::<Precision>().is_err());
        LossScale::default().validate().unwrap();
        assert!(LossScale::Static(0.0).validate().is_err());
        assert!(LossScale::Static(f32::INFINITY).validate().is_err());
        assert!(
            LossScale::Dynamic {
                init: 8.0,
                growth_interval: 0
            }
            .validate()
            .is_err()
        );
    }
}
