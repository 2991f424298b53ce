//! Optimizers, gradient clipping and learning-rate schedules with PyTorch's
//! update rules and defaults, operation for operation.
//!
//! Hyper-parameters are `f64`; derived scalars (bias corrections, step
//! sizes) are computed in `f64` as PyTorch computes them in Python floats,
//! then used in `T`.

use crate::error::{LstmError, Result};
use crate::real::Real;

pub use super::schedule::LrSchedule;

/// Which optimizer, with its hyper-parameters. `lr` here is the base
/// learning rate (the schedule's starting point); [`Optimizer::step`] takes
/// the current one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerKind {
    /// `torch.optim.SGD`. Per element, with g the gradient and p the parameter:
    /// ```text
    /// g ← g + weight_decay·p                       (when weight_decay ≠ 0)
    /// if momentum ≠ 0:
    ///     buf ← g                                  (first step)
    ///     buf ← momentum·buf + (1 − dampening)·g   (later steps)
    ///     g ← nesterov ? g + momentum·buf : buf
    /// p ← p − lr·g
    /// ```
    Sgd {
        /// Base learning rate, > 0.
        lr: f64,
        /// Momentum factor, ≥ 0; 0 (the default) keeps no buffer.
        momentum: f64,
        /// Dampening of the momentum buffer's update; default 0.
        dampening: f64,
        /// L2 penalty added to the gradient, ≥ 0; default 0.
        weight_decay: f64,
        /// Nesterov momentum (needs momentum > 0 and dampening 0); default off.
        nesterov: bool,
    },
    /// `torch.optim.Adam` (amsgrad off). With t the step count from 1:
    /// ```text
    /// g ← g + weight_decay·p                       (when weight_decay ≠ 0)
    /// m ← β1·m + (1 − β1)·g
    /// v ← β2·v + (1 − β2)·g²
    /// p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps)
    /// ```
    /// (PyTorch's exact arrangement of the bias corrections.)
    Adam {
        /// Base learning rate, > 0.
        lr: f64,
        /// (β1, β2), each in [0, 1): decay of m and v; default (0.9, 0.999).
        betas: (f64, f64),
        /// Added to the denominator, > 0; default 1e-8.
        eps: f64,
        /// L2 penalty added to the gradient, ≥ 0; default 0.
        weight_decay: f64,
    },
    /// `torch.optim.AdamW`: decoupled weight decay, then Adam without it:
    /// ```text
    /// p ← p·(1 − lr·weight_decay)
    /// (the Adam update above with weight_decay = 0)
    /// ```
    AdamW {
        /// Base learning rate, > 0.
        lr: f64,
        /// (β1, β2), each in [0, 1): decay of m and v; default (0.9, 0.999).
        betas: (f64, f64),
        /// Added to the denominator, > 0; default 1e-8.
        eps: f64,
        /// Decoupled weight decay, ≥ 0; default 1e-2.
        weight_decay: f64,
    },
}

impl OptimizerKind {
    /// SGD with PyTorch's defaults: momentum 0, dampening 0, weight decay 0,
    /// no Nesterov.
    pub fn sgd(lr: f64) -> Self {
        OptimizerKind::Sgd {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }

    /// Adam with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.
    pub fn adam(lr: f64) -> Self {
        OptimizerKind::Adam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }

    /// AdamW with PyTorch's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 1e-2.
    pub fn adamw(lr: f64) -> Self {
        OptimizerKind::AdamW {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
        }
    }

    /// Sets SGD's momentum.
    ///
    /// # Panics
    /// On Adam and AdamW, whose momentum is `betas.0`. (Other fields: set them on
    /// the variant directly.)
    pub fn with_momentum(mut self, m: f64) -> Self {
        match &mut self {
            OptimizerKind::Sgd { momentum, .. } => *momentum = m,
            _ => panic!("with_momentum applies to SGD; Adam's momentum is betas.0"),
        }
        self
    }

    /// Turns SGD's Nesterov momentum on or off.
    ///
    /// # Panics
    /// On Adam and AdamW.
    pub fn with_nesterov(mut self, on: bool) -> Self {
        match &mut self {
            OptimizerKind::Sgd { nesterov, .. } => *nesterov = on,
            _ => panic!("with_nesterov applies to SGD only"),
        }
        self
    }

    /// Sets the weight decay (L2 for SGD and Adam, decoupled for AdamW).
    pub fn with_weight_decay(mut self, wd: f64) -> Self {
        match &mut self {
            OptimizerKind::Sgd { weight_decay, .. }
            | OptimizerKind::Adam { weight_decay, .. }
            | OptimizerKind::AdamW { weight_decay, .. } => *weight_decay = wd,
        }
        self
    }

    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match *self {
            OptimizerKind::Sgd { lr, .. }
            | OptimizerKind::Adam { lr, .. }
            | OptimizerKind::AdamW { lr, .. } => lr,
        }
    }

    /// Adam's and AdamW's (betas, eps, weight_decay, decoupled); `None` for SGD.
    fn adam_hyper(&self) -> Option<((f64, f64), f64, f64, bool)> {
        match *self {
            OptimizerKind::Sgd { .. } => None,
            OptimizerKind::Adam {
                betas,
                eps,
                weight_decay,
                ..
            } => Some((betas, eps, weight_decay, false)),
            OptimizerKind::AdamW {
                betas,
                eps,
                weight_decay,
                ..
            } => Some((betas, eps, weight_decay, true)),
        }
    }

    /// The names of the state tensors kept per parameter, as in PyTorch's
    /// `optimizer.state_dict()["state"][i]`.
    pub fn state_names(&self) -> &'static [&'static str] {
        match *self {
            OptimizerKind::Sgd { momentum: 0.0, .. } => &[],
            OptimizerKind::Sgd { .. } => &["momentum_buffer"],
            OptimizerKind::Adam { .. } | OptimizerKind::AdamW { .. } => &["exp_avg", "exp_avg_sq"],
        }
    }

    /// Checks every hyper-parameter; returns [`LstmError::InvalidConfig`]
    /// naming the first bad field: `lr` not finite and > 0; `momentum`,
    /// `weight_decay` not finite and ≥ 0; `dampening` not finite; `nesterov`
    /// without momentum > 0 and dampening 0 (PyTorch's rule); `betas` outside
    /// [0, 1); `eps` not finite and > 0.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |field: &'static str, reason: String| Err(LstmError::InvalidConfig { field, reason });
        let lr = self.lr();
        if !(lr.is_finite() && lr > 0.0) {
            return bad("lr", format!("must be finite and > 0, got {lr}"));
        }
        let non_negative = |field: &'static str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                bad(field, format!("must be finite and >= 0, got {v}"))
            }
        };
        match *self {
            OptimizerKind::Sgd {
                momentum,
                dampening,
                weight_decay,
                nesterov,
                ..
            } => {
                non_negative("momentum", momentum)?;
                non_negative("weight_decay", weight_decay)?;
                if !dampening.is_finite() {
                    return bad("dampening", format!("must be finite, got {dampening}"));
                }
                if nesterov && (momentum <= 0.0 || dampening != 0.0) {
                    return bad(
                        "nesterov",
                        format!(
                            "needs momentum > 0 and dampening 0, got momentum {momentum}, \
                             dampening {dampening}"
                        ),
                    );
                }
            }
            OptimizerKind::Adam { .. } | OptimizerKind::AdamW { .. } => {
                let (betas, eps, weight_decay, _) = self.adam_hyper().expect("Adam or AdamW");
                for (i, b) in [betas.0, betas.1].into_iter().enumerate() {
                    if !(0.0..1.0).contains(&b) {
                        return bad("betas", format!("betas.{i} must be in [0, 1), got {b}"));
                    }
                }
                if !(eps.is_finite() && eps > 0.0) {
                    return bad("eps", format!("must be finite and > 0, got {eps}"));
                }
                non_negative("weight_decay", weight_decay)?;
            }
        }
        Ok(())
    }
}

/// An optimizer over a fixed list of parameter tensors (flat slices, given
/// to every [`step`](Self::step) in the same order).
#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer<T = f32> {
    /// The update rule and its hyper-parameters.
    pub kind: OptimizerKind,
    /// Completed steps (PyTorch's `state["step"]`); Adam's t is `step` after
    /// the increment, counting from 1.
    pub step: u64,
    /// Indexed `[param · S + slot]` with the S slots of
    /// [`OptimizerKind::state_names`]: the momentum buffer (SGD with
    /// momentum), or m then v (Adam, AdamW); each as long as its parameter.
    pub state: Vec<Vec<T>>,
    /// Length of each parameter.
    pub param_sizes: Vec<usize>,
}

impl<T: Real> Optimizer<T> {
    /// A fresh optimizer (zero state, step 0) for parameters of these lengths.
    pub fn new(kind: OptimizerKind, param_sizes: &[usize]) -> Result<Self> {
        kind.validate()?;
        let slots = kind.state_names().len();
        let state = param_sizes
            .iter()
            .flat_map(|&n| std::iter::repeat_n(n, slots))
            .map(|n| vec![T::zero(); n])
            .collect();
        Ok(Optimizer {
            kind,
            step: 0,
            state,
            param_sizes: param_sizes.to_vec(),
        })
    }

    fn check_lists(&self, name: &str, lens: impl ExactSizeIterator<Item = usize>) -> Result<()> {
        if lens.len() != self.param_sizes.len() {
            return Err(LstmError::shape(
                name,
                &[self.param_sizes.len()],
                &[lens.len()],
            ));
        }
        for (i, (got, &want)) in lens.zip(&self.param_sizes).enumerate() {
            if got != want {
                return Err(LstmError::shape(format!("{name}[{i}]"), &[want], &[got]));
            }
        }
        Ok(())
    }

    /// One update of every parameter from its gradient at learning rate `lr`
    /// (the schedule's value; see [`LrSchedule::lr`]), then `step += 1`.
    ///
    /// Errors, before anything changes: `lr` negative or not finite
    /// ([`LstmError::InvalidValue`]); `params` or `grads` not the lengths
    /// given to [`new`](Self::new) ([`LstmError::ShapeMismatch`]).
    pub fn step(&mut self, params: &mut [&mut [T]], grads: &[&[T]], lr: f64) -> Result<()> {
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(LstmError::value(
                "lr",
                format!("must be finite and >= 0, got {lr}"),
            ));
        }
        self.check_lists("params", params.iter().map(|p| p.len()))?;
        self.check_lists("grads", grads.iter().map(|g| g.len()))?;
        let slots = self.kind.state_names().len();
        if self.state.len() != slots * self.param_sizes.len() {
            let reason = "does not fit `kind` (was it changed after `Optimizer::new`?)";
            return Err(LstmError::value("state", reason));
        }
        self.step += 1;
        let t = self.step;
        let c = T::from_f64;
        if let OptimizerKind::Sgd {
            momentum,
            dampening,
            weight_decay,
            nesterov,
            ..
        } = self.kind
        {
            for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
                // The momentum buffer; the state is empty when momentum = 0.
                let mut buf = self.state.get_mut(i);
                for j in 0..p.len() {
                    let mut d = g[j];
                    if weight_decay != 0.0 {
                        d = d + c(weight_decay) * p[j];
                    }
                    if let Some(buf) = buf.as_deref_mut() {
                        let b = if t == 1 {
                            d
                        } else {
                            c(momentum) * buf[j] + c(1.0 - dampening) * d
                        };
                        buf[j] = b;
                        d = if nesterov { d + c(momentum) * b } else { b };
                    }
                    p[j] = p[j] - c(lr) * d;
                }
            }
            return Ok(());
        }
        let ((b1, b2), eps, weight_decay, decoupled) =
            self.kind.adam_hyper().expect("Adam or AdamW");
        let step_size = lr / (1.0 - b1.powf(t as f64));
        let bc2_sqrt = (1.0 - b2.powf(t as f64)).sqrt();
        for (i, (p, g)) in params.iter_mut().zip(grads).enumerate() {
            let [m, v] = &mut self.state[2 * i..2 * i + 2] else {
                unreachable!("Adam keeps two state tensors per parameter")
            };
            for j in 0..p.len() {
                if decoupled {
                    p[j] = p[j] * c(1.0 - lr * weight_decay);
                }
                let mut d = g[j];
                if !decoupled && weight_decay != 0.0 {
                    d = d + c(weight_decay) * p[j];
                }
                m[j] = c(b1) * m[j] + c(1.0 - b1) * d;
                v[j] = c(b2) * v[j] + c(1.0 - b2) * d * d;
                let denom = v[j].sqrt() / c(bc2_sqrt) + c(eps);
                p[j] = p[j] - c(step_size) * (m[j] / denom);
            }
        }
        Ok(())
    }

    /// The state as named tensors, `"{param}.{name}"` with the names of
    /// [`OptimizerKind::state_names`] (e.g. `"3.exp_avg"`), in order; save
    /// them with [`step`](Self::step) for an exact restart.
    pub fn state_tensors(&self) -> Vec<(String, Vec<T>)> {
        let names = self.kind.state_names();
        self.state
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let (i, slot) = (k / names.len(), k % names.len());
                (format!("{i}.{}", names[slot]), s.clone())
            })
            .collect()
    }

    /// Restores what [`state_tensors`](Self::state_tensors) returned, and the
    /// step count, in any order. Every tensor must be present once, with its
    /// parameter's length; nothing changes on error
    /// ([`LstmError::MissingTensor`], [`LstmError::ShapeMismatch`],
    /// [`LstmError::InvalidValue`] for unknown or repeated names).
    pub fn load_state_tensors(&mut self, step: u64, tensors: Vec<(String, Vec<T>)>) -> Result<()> {
        let names = self.kind.state_names();
        let expected: Vec<String> = self.state_tensors().into_iter().map(|(n, _)| n).collect();
        let mut slots: Vec<Option<Vec<T>>> = vec![None; expected.len()];
        for (name, data) in tensors {
            let Some(k) = expected.iter().position(|e| *e == name) else {
                return Err(LstmError::value(
                    name,
                    format!(
                        "is not a state tensor of this optimizer, which keeps {:?} for each \
                         of its {} parameters (named \"<index>.<name>\")",
                        names,
                        self.param_sizes.len()
                    ),
                ));
            };
            let want = self.param_sizes[k / names.len()];
            if data.len() != want {
                return Err(LstmError::shape(name, &[want], &[data.len()]));
            }
            if slots[k].replace(data).is_some() {
                return Err(LstmError::value(name, "is given twice"));
            }
        }
        let mut state = Vec::with_capacity(slots.len());
        for (slot, name) in slots.into_iter().zip(expected) {
            state.push(slot.ok_or_else(|| LstmError::MissingTensor {
                name,
                hint: " (optimizer state)".into(),
            })?);
        }
        self.state = state;
        self.step = step;
        Ok(())
    }
}

/// `torch.nn.utils.clip_grad_value_`: clamps every element of every
/// gradient to [−clip, clip].
pub fn clip_grad_value<T: Real>(grads: &mut [&mut [T]], clip: f64) {
    let (lo, hi) = (T::from_f64(-clip), T::from_f64(clip));
    grads
        .iter_mut()
        .flat_map(|g| g.iter_mut())
        .for_each(|x| *x = x.max(lo).min(hi));
}

/// `torch.nn.utils.clip_grad_norm_` (2-norm): total = √(Σ g²) over every
/// element of every gradient (accumulated in f64); coef = max_norm /
/// (total + 1e-6); when coef < 1 every gradient is scaled by coef. Returns
/// the total norm before clipping.
pub fn clip_grad_norm<T: Real>(grads: &mut [&mut [T]], max_norm: f64) -> f64 {
    let total = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&x| x.as_f64() * x.as_f64())
        .sum::<f64>()
        .sqrt();
    let coef = max_norm / (total + 1e-6);
    if coef < 1.0 {
        let coef = T::from_f64(coef);
        grads
            .iter_mut()
            .flat_map(|g| g.iter_mut())
            .for_each(|x| *x = *x * coef);
    }
    total
}
