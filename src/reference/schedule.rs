//! Learning-rate schedules: PyTorch's `StepLR` and `CosineAnnealingLR` as
//! closed-form functions of the number of completed optimizer steps. (Kept
//! apart from [`optim`](super::optim), which re-exports [`LrSchedule`].)

use crate::error::{LstmError, Result};

/// A learning-rate schedule as a function of completed optimizer steps,
/// in PyTorch's closed forms (schedulers stepped once per optimizer step).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum LrSchedule {
    /// The base learning rate throughout.
    #[default]
    Constant,
    /// `StepLR`: base · gamma^⌊step / step_size⌋.
    Step {
        /// Steps between decays, ≥ 1.
        step_size: u64,
        /// Multiplicative decay per `step_size` steps, ≥ 0 (PyTorch's default 0.1).
        gamma: f64,
    },
    /// `CosineAnnealingLR`:
    /// eta_min + (base − eta_min)·(1 + cos(π·step/t_max))/2, also for
    /// step > t_max, where it rises again with period 2·t_max (PyTorch's
    /// `_get_closed_form_lr`, which its recursive form follows).
    Cosine {
        /// Steps from the base rate down to `eta_min` (half a period), ≥ 1.
        t_max: u64,
        /// Lowest learning rate, ≥ 0 (PyTorch's default 0).
        eta_min: f64,
    },
}

impl LrSchedule {
    /// The learning rate for the step after `step` completed ones. NaN for
    /// `step_size` or `t_max` 0, which [`validate`](Self::validate) rejects
    /// and [`Optimizer::step`](super::Optimizer::step) refuses.
    pub fn lr(&self, base_lr: f64, step: u64) -> f64 {
        match *self {
            LrSchedule::Constant => base_lr,
            LrSchedule::Step { step_size, gamma } => match step.checked_div(step_size) {
                Some(k) => base_lr * gamma.powf(k as f64),
                None => f64::NAN,
            },
            LrSchedule::Cosine { t_max, eta_min } => {
                if t_max == 0 {
                    return f64::NAN;
                }
                let cos = (std::f64::consts::PI * step as f64 / t_max as f64).cos();
                eta_min + (base_lr - eta_min) * (1.0 + cos) / 2.0
            }
        }
    }

    /// [`LstmError::InvalidConfig`] for `step_size` or `t_max` 0, `gamma`
    /// or `eta_min` negative or not finite.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason| Err(LstmError::InvalidConfig { field, reason });
        match *self {
            LrSchedule::Constant => Ok(()),
            LrSchedule::Step { step_size: 0, .. } => bad("step_size", "must be >= 1, got 0".into()),
            LrSchedule::Cosine { t_max: 0, .. } => bad("t_max", "must be >= 1, got 0".into()),
            LrSchedule::Step { gamma: v, .. } | LrSchedule::Cosine { eta_min: v, .. }
                if !(v.is_finite() && v >= 0.0) =>
            {
                let field = if matches!(self, LrSchedule::Step { .. }) {
                    "gamma"
                } else {
                    "eta_min"
                };
                bad(field, format!("must be finite and >= 0, got {v}"))
            }
            _ => Ok(()),
        }
    }
}
