//! A trainable model (optional embedding → a stack of recurrent modules →
//! linear head), and what a training step reads: the [`Batch`] and the
//! [`TrainConfig`].
//!
//! Parameters are named as a PyTorch module with attributes `embedding` (an
//! `nn.Embedding`), `lstm` (the first `nn.LSTM` or `nn.GRU`), `stack` (an
//! `nn.ModuleList` of the further ones), `hidden` (an `nn.Linear`, with a
//! hidden layer) and `head` (an `nn.Linear`) would name them
//! (`embedding.weight`, `lstm.weight_ih_l0`, ..., `stack.0.weight_ih_l0`, ...,
//! `hidden.weight`, `hidden.bias`, `head.weight`, `head.bias`), in that order.

use crate::config::{Activation, LstmConfig};
use crate::error::{LstmError, Result};
use crate::real::Real;
use crate::reference::{
    Embedding, Linear, LinearGrads, LrSchedule, OptimizerKind, bce_with_logits_masked,
    cross_entropy, lstm_params_mut, mse_masked,
};
use crate::weights::{InitOptions, LstmWeights};

/// Where the linear head reads the LSTM's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadKind {
    /// At every time step (sequence to sequence): targets [T, B, O] or [T·B] classes.
    PerStep,
    /// At each sequence's last valid step (many to one): targets [B, O] or \[B\] classes.
    LastStep,
}

/// The training loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LossKind {
    /// `nn.MSELoss()`: the mean over every valid element.
    Mse,
    /// `nn.BCEWithLogitsLoss()` on the head's logits with targets in \[0, 1\]:
    /// the mean over every valid element of the binary cross-entropy of
    /// σ(logit) (Keras' `Dense(1, activation='sigmoid')` with
    /// `binary_crossentropy`, computed stably from the logit).
    BceWithLogits,
    /// `nn.CrossEntropyLoss(ignore_index=...)` on logits with class indices:
    /// the mean over valid targets that are not ignored.
    CrossEntropy {
        /// `ignore_index`: target class that adds nothing to the loss or its
        /// mean; `None` means none is ignored (PyTorch's default is -100).
        ignore_index: Option<i64>,
    },
}

/// Embedding (optional) → recurrent modules → linear head.
///
/// The recurrent modules are `lstm`, then each of `stack` in order, each
/// reading the whole output sequence of the one before (Keras'
/// `return_sequences=True` between layers). Each is a whole `nn.LSTM` or
/// `nn.GRU` with its own sizes, cell, activation, directions and dropouts;
/// its [`LstmConfig::input_dropout`] is the dropout between it and what it
/// reads (Keras' `dropout=`). Build one with [`Model::builder`].
#[derive(Clone, Debug, PartialEq)]
pub struct Model<T = f32> {
    /// `nn.Embedding` from token ids to LSTM inputs; `None` when the model
    /// reads features.
    pub embedding: Option<Embedding<T>>,
    /// The first recurrent module (an `nn.LSTM` or `nn.GRU`);
    /// `config.batch_first` is false.
    pub lstm: LstmWeights<T>,
    /// The recurrent modules after `lstm`, in order (empty for one module):
    /// module k reads the output of module k − 1, so its `input_size` is
    /// that module's [`LstmConfig::output_size`].
    pub stack: Vec<LstmWeights<T>>,
    /// An optional hidden dense layer between the last recurrent module and
    /// the head (Keras' `Dense(units, activation=...)`), at the rows the head
    /// reads.
    pub hidden: Option<Dense<T>>,
    /// `nn.Linear(F, O)` on the last recurrent module's output (F its
    /// [`LstmConfig::output_size`]), or on the hidden layer's.
    pub head: Linear<T>,
    /// Which time steps the head reads.
    pub head_kind: HeadKind,
}

impl Model {
    /// A builder for a model of several recurrent modules of their own
    /// sizes (see [`ModelBuilder`]); its `build::<T>` makes a `Model<T>`.
    pub fn builder() -> ModelBuilder {
        ModelBuilder::default()
    }
}

/// A dense layer: `nn.Linear` then an activation (Keras' `Dense(units,
/// activation='relu')` or `'tanh'`).
#[derive(Clone, Debug, PartialEq)]
pub struct Dense<T = f32> {
    /// The affine map.
    pub linear: Linear<T>,
    /// Applied to each output.
    pub activation: Activation,
}

impl<T: Real> Dense<T> {
    /// a [rows, out] = act(x · Wᵀ + b).
    pub fn forward(&self, x: &[T], rows: usize) -> Vec<T> {
        let mut a = self.linear.forward(x, rows);
        a.iter_mut().for_each(|v| *v = self.activation.apply(*v));
        a
    }

    /// The gradients at input `x` and output `a` ([`forward`](Self::forward)'s)
    /// for the upstream gradient `da`.
    pub fn backward(&self, x: &[T], a: &[T], rows: usize, da: &[T]) -> LinearGrads<T> {
        let dz: Vec<T> = a
            .iter()
            .zip(da)
            .map(|(&a, &d)| d * self.activation.derivative_from_output(a))
            .collect();
        self.linear.backward(x, rows, &dz)
    }
}

/// The seed of recurrent module `k`'s dropout masks in a batch whose seed
/// is `seed`: `seed` itself for the first, so that a one-module model draws
/// what an `Lstm` does.
pub(crate) fn module_seed(seed: u64, k: usize) -> u64 {
    seed.wrapping_add((k as u64) << 40)
}

/// The name prefix of recurrent module `k` (`lstm.`, `stack.0.`, ...).
pub fn module_prefix(k: usize) -> String {
    match k {
        0 => "lstm.".to_string(),
        k => format!("stack.{}.", k - 1),
    }
}

/// Checks that recurrent modules chain: each reads what the one before
/// writes, on time-major data.
pub(crate) fn check_chain<'a>(
    configs: impl IntoIterator<Item = &'a LstmConfig>,
    embedding: Option<usize>,
) -> Result<()> {
    let mut feeds: Option<(String, usize)> = embedding.map(|d| ("the embedding".into(), d));
    for (k, cfg) in configs.into_iter().enumerate() {
        let name = module_prefix(k);
        let name = name.trim_end_matches('.');
        cfg.validate()?;
        if cfg.batch_first {
            return Err(LstmError::InvalidConfig {
                field: "batch_first",
                reason: format!(
                    "`{name}`: training works on time-major [T, B, ...] data; set batch_first = false"
                ),
            });
        }
        if let Some((what, size)) = &feeds
            && *size != cfg.input_size
        {
            return Err(LstmError::InconsistentLayers {
                reason: format!(
                    "`{name}` has input_size {}, but {what} before it gives {size} features",
                    cfg.input_size
                ),
            });
        }
        feeds = Some((format!("`{name}`"), cfg.output_size()));
    }
    Ok(())
}

impl<T: Real> Model<T> {
    /// A freshly initialised model. `embedding` is (vocabulary, dimension);
    /// its dimension must be the LSTM's `input_size`. Training works on
    /// time-major data, so `lstm.batch_first` must be false.
    pub fn new(
        embedding: Option<(usize, usize)>,
        lstm: &LstmConfig,
        outputs: usize,
        head_kind: HeadKind,
        seed: u64,
    ) -> Result<Self> {
        Self::with_init(
            embedding,
            lstm,
            outputs,
            head_kind,
            seed,
            InitOptions::default(),
        )
    }

    /// [`new`](Self::new) with initialisation options for the LSTM, such as
    /// Keras' `unit_forget_bias`.
    pub fn with_init(
        embedding: Option<(usize, usize)>,
        lstm: &LstmConfig,
        outputs: usize,
        head_kind: HeadKind,
        seed: u64,
        init: InitOptions,
    ) -> Result<Self> {
        if lstm.batch_first {
            return Err(LstmError::InvalidConfig {
                field: "batch_first",
                reason: "training works on time-major [T, B, ...] data; set batch_first = false"
                    .into(),
            });
        }
        if let Some((vocab, dim)) = embedding
            && (vocab == 0 || dim != lstm.input_size)
        {
            return Err(LstmError::InvalidConfig {
                field: "embedding",
                reason: format!(
                    "needs at least one row and dimension = input_size {}, got ({vocab}, {dim})",
                    lstm.input_size
                ),
            });
        }
        if outputs == 0 {
            return Err(LstmError::InvalidConfig {
                field: "outputs",
                reason: "must be at least 1".into(),
            });
        }
        let lstm = LstmWeights::init(lstm, seed, init)?;
        Ok(Model {
            embedding: embedding.map(|(v, d)| Embedding::init(v, d, seed.wrapping_add(1))),
            head: Linear::init(lstm.config.output_size(), outputs, seed.wrapping_add(2)),
            lstm,
            stack: Vec::new(),
            hidden: None,
            head_kind,
        })
    }

    /// The recurrent modules in order: `lstm`, then `stack`.
    pub fn recurrent(&self) -> impl Iterator<Item = &LstmWeights<T>> {
        std::iter::once(&self.lstm).chain(&self.stack)
    }

    /// The recurrent module the head reads.
    pub fn last_recurrent(&self) -> &LstmWeights<T> {
        self.stack.last().unwrap_or(&self.lstm)
    }

    /// F: the features the last recurrent module gives (what the head, or
    /// the hidden layer, reads).
    pub fn features(&self) -> usize {
        self.last_recurrent().config.output_size()
    }

    /// The head's input: `hidden`'s outputs, without a hidden layer F.
    pub fn head_inputs(&self) -> usize {
        self.hidden
            .as_ref()
            .map_or(self.features(), |d| d.linear.out_features)
    }

    /// The head's logits [rows, O] for the last recurrent module's output at
    /// the rows the head reads, `x` [rows, F], and the hidden layer's
    /// output, if any.
    pub(crate) fn head_forward(&self, x: &[T], rows: usize) -> (Vec<T>, Option<Vec<T>>) {
        match &self.hidden {
            Some(d) => {
                let a = d.forward(x, rows);
                (self.head.forward(&a, rows), Some(a))
            }
            None => (self.head.forward(x, rows), None),
        }
    }

    /// Checks that the parts fit together: the modules chain (a typed
    /// [`LstmError::InconsistentLayers`] where they do not), the embedding
    /// feeds the first, and the head reads the last.
    pub fn validate(&self) -> Result<()> {
        check_chain(
            self.recurrent().map(|w| &w.config),
            self.embedding.as_ref().map(|e| e.embedding_dim),
        )?;
        // Every dense part has at least one row and column, and its values.
        let mut dense: Vec<(&str, &Linear<T>)> = Vec::new();
        if let Some(d) = &self.hidden {
            dense.push(("hidden", &d.linear));
        }
        dense.push(("head", &self.head));
        for (name, l) in dense {
            if l.in_features == 0
                || l.out_features == 0
                || l.weight.len() != l.in_features * l.out_features
                || l.bias.len() != l.out_features
            {
                return Err(LstmError::InvalidConfig {
                    field: if name == "head" { "head" } else { "hidden" },
                    reason: format!(
                        "`{name}` needs at least one input and output and a [out, in] weight \
                         and [out] bias, got in = {}, out = {}, {} weights, {} biases",
                        l.in_features,
                        l.out_features,
                        l.weight.len(),
                        l.bias.len()
                    ),
                });
            }
        }
        if let Some(e) = &self.embedding
            && (e.num_embeddings == 0
                || e.embedding_dim == 0
                || e.weight.len() != e.num_embeddings * e.embedding_dim)
        {
            return Err(LstmError::InvalidConfig {
                field: "embedding",
                reason: format!(
                    "needs at least one row and column and [rows, dim] weights, got ({}, {}) \
                     with {} values",
                    e.num_embeddings,
                    e.embedding_dim,
                    e.weight.len()
                ),
            });
        }
        if let Some(d) = &self.hidden
            && d.linear.in_features != self.features()
        {
            return Err(LstmError::InconsistentLayers {
                reason: format!(
                    "the hidden layer reads {} features, but the last recurrent module gives {}",
                    d.linear.in_features,
                    self.features()
                ),
            });
        }
        if self.head.in_features != self.head_inputs() {
            return Err(LstmError::InconsistentLayers {
                reason: format!(
                    "the head reads {} features, but the layer before it gives {}",
                    self.head.in_features,
                    self.head_inputs()
                ),
            });
        }
        Ok(())
    }

    /// The architecture, without the parameters.
    pub fn shape(&self) -> ModelShape {
        ModelShape {
            embedding: self
                .embedding
                .as_ref()
                .map(|e| (e.num_embeddings, e.embedding_dim)),
            lstm: self.lstm.config.clone(),
            stack: self.stack.iter().map(|w| w.config.clone()).collect(),
            hidden: self
                .hidden
                .as_ref()
                .map(|d| (d.linear.out_features, d.activation)),
            outputs: self.head.out_features,
            head_kind: self.head_kind,
        }
    }

    /// Every parameter as (name, shape, values), in the model's order.
    pub fn named_params<'a>(&'a self) -> Vec<(String, Vec<usize>, &'a [T])> {
        let mut out = Vec::new();
        if let Some(e) = &self.embedding {
            out.push((
                "embedding.weight".into(),
                vec![e.num_embeddings, e.embedding_dim],
                &e.weight[..],
            ));
        }
        for (k, w) in self.recurrent().enumerate() {
            let prefix = module_prefix(k);
            for (n, s, v) in w.named_params() {
                out.push((format!("{prefix}{n}"), s, v));
            }
        }
        // An `nn.Linear`'s two tensors under `name`.
        let mut linear = |name: &str, l: &'a Linear<T>| {
            out.push((
                format!("{name}.weight"),
                vec![l.out_features, l.in_features],
                &l.weight[..],
            ));
            out.push((format!("{name}.bias"), vec![l.out_features], &l.bias[..]));
        };
        if let Some(d) = &self.hidden {
            linear("hidden", &d.linear);
        }
        linear("head", &self.head);
        out
    }

    /// The same parameters, mutable, in the same order.
    pub fn params_mut(&mut self) -> Vec<&mut [T]> {
        let mut out: Vec<&mut [T]> = Vec::new();
        if let Some(e) = &mut self.embedding {
            out.push(&mut e.weight);
        }
        out.extend(lstm_params_mut(&mut self.lstm));
        for w in &mut self.stack {
            out.extend(lstm_params_mut(w));
        }
        if let Some(d) = &mut self.hidden {
            out.push(&mut d.linear.weight);
            out.push(&mut d.linear.bias);
        }
        out.push(&mut self.head.weight);
        out.push(&mut self.head.bias);
        out
    }

    /// Converts every parameter to another float type.
    pub fn cast<U: Real>(&self) -> Model<U> {
        let conv = |v: &[T]| {
            v.iter()
                .map(|&x| U::from_f64(x.as_f64()))
                .collect::<Vec<U>>()
        };
        Model {
            embedding: self.embedding.as_ref().map(|e| Embedding {
                num_embeddings: e.num_embeddings,
                embedding_dim: e.embedding_dim,
                weight: conv(&e.weight),
            }),
            lstm: self.lstm.cast(),
            stack: self.stack.iter().map(LstmWeights::cast).collect(),
            hidden: self.hidden.as_ref().map(|d| Dense {
                linear: cast_linear(&d.linear),
                activation: d.activation,
            }),
            head: cast_linear(&self.head),
            head_kind: self.head_kind,
        }
    }
}

/// `l` with its parameters converted to another float type.
fn cast_linear<T: Real, U: Real>(l: &Linear<T>) -> Linear<U> {
    let conv = |v: &[T]| v.iter().map(|&x| U::from_f64(x.as_f64())).collect();
    Linear {
        in_features: l.in_features,
        out_features: l.out_features,
        weight: conv(&l.weight),
        bias: conv(&l.bias),
    }
}

/// A model's architecture without its parameters: what batches are checked
/// against and what the loss needs to know.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelShape {
    /// (vocabulary, dimension) of the embedding, if any.
    pub embedding: Option<(usize, usize)>,
    /// The first recurrent module's architecture.
    pub lstm: LstmConfig,
    /// The architectures of the recurrent modules after the first.
    pub stack: Vec<LstmConfig>,
    /// The hidden dense layer's units and activation, if any.
    pub hidden: Option<(usize, Activation)>,
    /// O: the head's outputs.
    pub outputs: usize,
    /// Which time steps the head reads.
    pub head_kind: HeadKind,
}

impl ModelShape {
    /// The recurrent modules' architectures in order.
    pub fn recurrent(&self) -> impl Iterator<Item = &LstmConfig> {
        std::iter::once(&self.lstm).chain(&self.stack)
    }

    /// F: the features the last recurrent module gives.
    pub fn features(&self) -> usize {
        self.stack.last().unwrap_or(&self.lstm).output_size()
    }

    /// The head's input: the hidden layer's units, without one F.
    pub fn head_inputs(&self) -> usize {
        self.hidden.map_or(self.features(), |(u, _)| u)
    }
}

/// Builds a [`Model`] layer by layer, as Keras' `Sequential` does:
///
/// ```
/// use wgpu_lstm::{HeadKind, LstmConfig, Model};
/// // Embedding(5000, 128) → Bidirectional(LSTM(128)) → Bidirectional(LSTM(64))
/// // → a per-step Dense(9)
/// let model: Model = Model::builder()
///     .embedding(5000, 128)
///     .layer(LstmConfig::new(128, 128).bidirectional(true))
///     .layer(LstmConfig::new(256, 64).bidirectional(true))
///     .head(9, HeadKind::PerStep)
///     .build(0)?;
/// assert_eq!(model.stack.len(), 1);
/// assert_eq!(model.head.in_features, 128);
/// # Ok::<(), wgpu_lstm::LstmError>(())
/// ```
///
/// Each [`layer`](Self::layer) is a whole `nn.LSTM` or `nn.GRU` (any
/// [`LstmConfig`]: its own hidden size, cell, activation, directions,
/// `input_dropout` and `recurrent_dropout`). Its `input_size` must be what
/// the layer before gives: the embedding's dimension, the features, or the
/// previous layer's [`LstmConfig::output_size`] (D·H). Layers that do not
/// chain are a typed [`LstmError::InconsistentLayers`].
#[derive(Clone, Debug, Default)]
pub struct ModelBuilder {
    embedding: Option<(usize, usize)>,
    layers: Vec<LstmConfig>,
    hidden: Option<(usize, Activation)>,
    head: Option<(usize, HeadKind)>,
    init: InitOptions,
}

impl ModelBuilder {
    /// An `nn.Embedding(vocabulary, dimension)` before the first layer: the
    /// model then reads token ids.
    pub fn embedding(mut self, vocabulary: usize, dimension: usize) -> Self {
        self.embedding = Some((vocabulary, dimension));
        self
    }

    /// Adds a recurrent layer (an `nn.LSTM`, or an `nn.GRU` with
    /// [`LstmConfig::gru`]), reading the whole output sequence of the one
    /// before.
    pub fn layer(mut self, config: LstmConfig) -> Self {
        self.layers.push(config);
        self
    }

    /// A hidden dense layer of `units` before the head (Keras'
    /// `Dense(units, activation=...)`), at the rows the head reads.
    pub fn hidden(mut self, units: usize, activation: Activation) -> Self {
        self.hidden = Some((units, activation));
        self
    }

    /// The `nn.Linear` head: `outputs` values per row, read at every step or
    /// at each sequence's last valid step.
    pub fn head(mut self, outputs: usize, kind: HeadKind) -> Self {
        self.head = Some((outputs, kind));
        self
    }

    /// Initialisation options for every recurrent layer (such as Keras'
    /// `unit_forget_bias`).
    pub fn init(mut self, init: InitOptions) -> Self {
        self.init = init;
        self
    }

    /// The model, freshly initialised from `seed` (the first layer, the
    /// embedding and the head as [`Model::new`] draws them). Every mistake
    /// is a typed error.
    pub fn build<T: Real>(self, seed: u64) -> Result<Model<T>> {
        let Some((first, rest)) = self.layers.split_first() else {
            return Err(LstmError::InvalidConfig {
                field: "layers",
                reason: "a model needs at least one recurrent layer".into(),
            });
        };
        let Some((outputs, head_kind)) = self.head else {
            return Err(LstmError::InvalidConfig {
                field: "head",
                reason: "a model needs a head: call .head(outputs, kind)".into(),
            });
        };
        check_chain(&self.layers, self.embedding.map(|(_, d)| d))?;
        let mut model =
            Model::<T>::with_init(self.embedding, first, outputs, head_kind, seed, self.init)?;
        model.stack = rest
            .iter()
            .enumerate()
            .map(|(k, cfg)| LstmWeights::init(cfg, seed.wrapping_add(3 + k as u64), self.init))
            .collect::<Result<_>>()?;
        if let Some((units, activation)) = self.hidden {
            if units == 0 {
                return Err(LstmError::InvalidConfig {
                    field: "hidden",
                    reason: "a hidden layer needs at least one unit".into(),
                });
            }
            model.hidden = Some(Dense {
                linear: Linear::init(
                    model.features(),
                    units,
                    seed.wrapping_add(3 + rest.len() as u64),
                ),
                activation,
            });
        }
        if !rest.is_empty() || self.hidden.is_some() {
            model.head = Linear::init(model.head_inputs(), outputs, seed.wrapping_add(2));
        }
        Ok(model)
    }
}

/// How to train: loss, optimizer, clipping, schedule and dropout seed.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// The loss minimised.
    pub loss: LossKind,
    /// The optimizer and its hyper-parameters; its `lr` is the base rate.
    pub optimizer: OptimizerKind,
    /// Clip the global gradient norm to this (`clip_grad_norm_`); `None` = off.
    pub clip_grad_norm: Option<f64>,
    /// Clip every gradient element to [−v, v] (`clip_grad_value_`, Keras'
    /// `clipvalue`), after `clip_grad_norm` when both are set (Keras'
    /// order); `None` = off.
    pub clip_grad_value: Option<f64>,
    /// Learning rate per step, from the optimizer's base `lr`.
    pub schedule: LrSchedule,
    /// Batch k (counted from 0 over the whole run) draws its dropout mask
    /// from seed `dropout_seed + k`; in a stack, recurrent layer j ≥ 1 from
    /// that seed plus j·2⁴⁰.
    pub dropout_seed: u64,
    /// Gradient accumulation: the optimizer updates once every this many
    /// training steps (batches), with the mean of their gradients (what
    /// dividing each batch's loss by N and calling `backward` N times gives
    /// in PyTorch); clipping applies to that mean. 1 (the default) updates
    /// at every batch. The learning-rate schedule, Adam's bias correction and
    /// [`LstmError::NonFiniteLoss`]'s step count optimizer updates; the
    /// dropout mask of each batch is its own.
    pub grad_accumulation: usize,
    /// Keras' `stateful=True`, which is truncated back-propagation through
    /// time: every forward pass of the trainer (training steps and
    /// evaluation alike, as in Keras) starts from the final (h, c) of the
    /// previous one, detached (no gradient crosses the boundary), and the
    /// batch size must stay the same. The first pass, and the first after
    /// `reset_states()`, starts from zeros. Checkpoints do not hold the state.
    pub stateful: bool,
}

impl TrainConfig {
    /// `loss` and `optimizer` with no clipping, a constant learning rate and
    /// dropout seed 0.
    pub fn new(loss: LossKind, optimizer: OptimizerKind) -> Self {
        TrainConfig {
            loss,
            optimizer,
            clip_grad_norm: None,
            clip_grad_value: None,
            schedule: LrSchedule::Constant,
            dropout_seed: 0,
            grad_accumulation: 1,
            stateful: false,
        }
    }

    /// Checks the optimizer, the schedule, `clip_grad_norm` and
    /// `clip_grad_value` (> 0 and finite); returns the first
    /// [`LstmError::InvalidConfig`] found.
    pub fn validate(&self) -> Result<()> {
        self.optimizer.validate()?;
        self.schedule.validate()?;
        if self.grad_accumulation == 0 {
            return Err(LstmError::InvalidConfig {
                field: "grad_accumulation",
                reason: "must be at least 1 (1 = an update at every batch)".into(),
            });
        }
        for (field, clip) in [
            ("clip_grad_norm", self.clip_grad_norm),
            ("clip_grad_value", self.clip_grad_value),
        ] {
            if let Some(c) = clip.filter(|c| !(c.is_finite() && *c > 0.0)) {
                return Err(LstmError::InvalidConfig {
                    field,
                    reason: format!("must be > 0 and finite, got {c}"),
                });
            }
        }
        Ok(())
    }
}

/// What the model reads: features [T, B, I] (time-major), or token ids [T·B].
#[derive(Clone, Copy, Debug)]
pub enum Inputs<'a> {
    /// [T, B, I]: features, for a model without an embedding.
    Features(&'a [f32]),
    /// [T·B] (time-major): token ids in 0..vocabulary, for a model with an embedding.
    Tokens(&'a [usize]),
}

/// What the loss compares against: values for MSE and binary cross-entropy,
/// class ids for cross-entropy.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// For [`LossKind::Mse`] and [`LossKind::BceWithLogits`] (then in
    /// \[0, 1\]): [T, B, O] with a per-step head, [B, O] with a last-step head.
    Values(&'a [f32]),
    /// For [`LossKind::CrossEntropy`]: class ids in 0..O (or `ignore_index`),
    /// [T·B] with a per-step head, \[B\] with a last-step head.
    Classes(&'a [i64]),
}

/// One training batch, time-major.
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    /// T: time steps (of the longest sequence when `lengths` is given).
    pub seq_len: usize,
    /// B: sequences.
    pub batch: usize,
    /// What the model reads.
    pub inputs: Inputs<'a>,
    /// What the loss compares the head's output against.
    pub targets: Targets<'a>,
    /// \[B\]: valid steps per sequence; `None` = all T.
    pub lengths: Option<&'a [usize]>,
}

impl Batch<'_> {
    /// Checks the batch against the model and loss: every mistake a typed error.
    pub fn validate(&self, model: &ModelShape, loss: LossKind) -> Result<()> {
        let (t, b) = (self.seq_len, self.batch);
        let cfg = &model.lstm;
        if t == 0 || b == 0 {
            return Err(LstmError::value(
                "batch",
                format!("needs T ≥ 1 and B ≥ 1, got T = {t}, B = {b}"),
            ));
        }
        match (self.inputs, &model.embedding) {
            (Inputs::Features(x), None) => {
                if x.len() != t * b * cfg.input_size {
                    return Err(LstmError::shape(
                        "input",
                        &[t, b, cfg.input_size],
                        &[x.len()],
                    ));
                }
                if let Some(i) = x.iter().position(|v| !v.is_finite()) {
                    return Err(LstmError::value(
                        "input",
                        format!("non-finite value at flat index {i}"),
                    ));
                }
            }
            (Inputs::Tokens(ids), &Some((vocab, _))) => {
                if ids.len() != t * b {
                    return Err(LstmError::shape("tokens", &[t, b], &[ids.len()]));
                }
                if let Some((i, &v)) = ids.iter().enumerate().find(|(_, v)| **v >= vocab) {
                    return Err(LstmError::value(
                        "tokens",
                        format!("tokens[{i}] = {v} is outside the vocabulary of {vocab}"),
                    ));
                }
            }
            (Inputs::Features(_), Some(_)) => {
                return Err(LstmError::value(
                    "inputs",
                    "the model has an embedding: give token ids",
                ));
            }
            (Inputs::Tokens(_), None) => {
                return Err(LstmError::value(
                    "inputs",
                    "the model has no embedding: give features",
                ));
            }
        }
        crate::input::check_shapes(cfg, &[t, b, cfg.input_size], None, None, self.lengths)?;
        let rows = match model.head_kind {
            HeadKind::PerStep => t * b,
            HeadKind::LastStep => b,
        };
        let outputs = model.outputs;
        match (self.targets, loss) {
            (Targets::Values(v), LossKind::Mse | LossKind::BceWithLogits) => {
                if v.len() != rows * outputs {
                    let want: Vec<usize> = match model.head_kind {
                        HeadKind::PerStep => vec![t, b, outputs],
                        HeadKind::LastStep => vec![b, outputs],
                    };
                    return Err(LstmError::shape("targets", &want, &[v.len()]));
                }
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    return Err(LstmError::value(
                        "targets",
                        format!("non-finite value at flat index {i}"),
                    ));
                }
                if loss == LossKind::BceWithLogits
                    && let Some(i) = v.iter().position(|x| !(0.0..=1.0).contains(x))
                {
                    return Err(LstmError::value(
                        "targets",
                        format!(
                            "targets[{i}] = {} is outside [0, 1], which binary cross-entropy needs",
                            v[i]
                        ),
                    ));
                }
            }
            (Targets::Classes(c), LossKind::CrossEntropy { ignore_index }) => {
                if c.len() != rows {
                    return Err(LstmError::shape("targets", &[rows], &[c.len()]));
                }
                let bad = c
                    .iter()
                    .enumerate()
                    .find(|(_, k)| Some(**k) != ignore_index && !(0..outputs as i64).contains(*k));
                if let Some((i, k)) = bad {
                    return Err(LstmError::value(
                        "targets",
                        format!("class index targets[{i}] = {k} is outside 0..{outputs}"),
                    ));
                }
            }
            (Targets::Values(_), _) => {
                return Err(LstmError::value(
                    "targets",
                    "cross-entropy needs class indices",
                ));
            }
            (Targets::Classes(_), _) => {
                return Err(LstmError::value(
                    "targets",
                    "MSE and binary cross-entropy need target values",
                ));
            }
        }
        Ok(())
    }

    /// Head rows that count in the loss: (t, b) with t < lengths[b] for a
    /// per-step head; every row for a last-step head.
    pub(crate) fn row_valid(&self, kind: HeadKind, row: usize) -> bool {
        match (kind, self.lengths) {
            (HeadKind::PerStep, Some(l)) => row / self.batch < l[row % self.batch],
            _ => true,
        }
    }

    /// What the loss's mean divides by.
    pub(crate) fn loss_count(&self, kind: HeadKind, loss: LossKind, outputs: usize) -> usize {
        let rows = if kind == HeadKind::PerStep {
            self.seq_len * self.batch
        } else {
            self.batch
        };
        (0..rows)
            .filter(|&r| self.row_valid(kind, r))
            .map(|r| match (loss, self.targets) {
                (LossKind::CrossEntropy { ignore_index }, Targets::Classes(c)) => {
                    usize::from(Some(c[r]) != ignore_index)
                }
                _ => outputs,
            })
            .sum()
    }
}

/// The loss of the head's output `out` ([rows, O]) on `batch`, and its
/// gradient with respect to `out`.
pub(crate) fn loss_of<T: Real>(
    model: &ModelShape,
    loss: LossKind,
    batch: &Batch<'_>,
    out: &[T],
) -> Result<(T, Vec<T>)> {
    let kind = model.head_kind;
    let outputs = model.outputs;
    let rows = out.len() / outputs;
    let lengths = if kind == HeadKind::PerStep {
        batch.lengths
    } else {
        None
    };
    match (loss, batch.targets) {
        (LossKind::Mse | LossKind::BceWithLogits, Targets::Values(v)) => {
            let target: Vec<T> = v.iter().map(|&x| T::from_f64(x as f64)).collect();
            let (t, b) = if kind == HeadKind::PerStep {
                (batch.seq_len, batch.batch)
            } else {
                (1, batch.batch)
            };
            match loss {
                LossKind::Mse => mse_masked(out, &target, t, b, outputs, lengths),
                _ => bce_with_logits_masked(out, &target, t, b, outputs, lengths),
            }
        }
        (LossKind::CrossEntropy { ignore_index }, Targets::Classes(c)) => {
            // Padded rows count as ignored.
            const PADDING: i64 = i64::MIN;
            let ignore = ignore_index.unwrap_or(PADDING);
            let targets: Vec<i64> = (0..rows)
                .map(|r| {
                    if batch.row_valid(kind, r) {
                        c[r]
                    } else {
                        ignore
                    }
                })
                .collect();
            let uses_ignore = ignore_index.is_some() || targets.contains(&PADDING);
            cross_entropy(out, outputs, &targets, uses_ignore.then_some(ignore))
        }
        _ => Err(LstmError::value(
            "targets",
            "do not fit the loss (MSE and binary cross-entropy need values, cross-entropy classes)",
        )),
    }
}

/// How many predictions were right, out of how many counted: what
/// [`Trainer::accuracy`](crate::Trainer::accuracy) returns for one batch.
/// Add the counts of several batches for a data set's accuracy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Accuracy {
    /// Predictions that matched their target.
    pub correct: usize,
    /// Predictions counted: valid rows (and, for cross-entropy, targets that
    /// are not `ignore_index`); for binary cross-entropy every valid output.
    pub total: usize,
}

impl Accuracy {
    /// correct / total; NaN when nothing was counted.
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            f64::NAN
        } else {
            self.correct as f64 / self.total as f64
        }
    }
}

impl std::ops::Add for Accuracy {
    type Output = Accuracy;
    fn add(self, other: Accuracy) -> Accuracy {
        Accuracy {
            correct: self.correct + other.correct,
            total: self.total + other.total,
        }
    }
}

impl std::ops::AddAssign for Accuracy {
    fn add_assign(&mut self, other: Accuracy) {
        *self = *self + other;
    }
}

/// The accuracy of the head's output `out` ([rows, O]) on `batch`:
/// - cross-entropy: a row is right when its largest logit (the first, on a
///   tie, as `torch.argmax`) is its target class; padded rows and
///   `ignore_index` targets are not counted. With a per-step head this is
///   per-token accuracy.
/// - binary cross-entropy: an output is right when σ(logit) > 0.5 exactly
///   when its target is > 0.5 (Keras' `binary_accuracy` at threshold 0.5);
///   padded rows are not counted.
/// - MSE has no accuracy: [`LstmError::InvalidValue`] `loss`.
pub fn accuracy(
    model: &ModelShape,
    loss: LossKind,
    batch: &Batch<'_>,
    out: &[f32],
) -> Result<Accuracy> {
    batch.validate(model, loss)?;
    count_right(model, loss, batch, out)
}

/// [`accuracy`] on a batch already validated against `model` and `loss`.
pub(crate) fn count_right(
    model: &ModelShape,
    loss: LossKind,
    batch: &Batch<'_>,
    out: &[f32],
) -> Result<Accuracy> {
    let outputs = model.outputs;
    let kind = model.head_kind;
    let mut acc = Accuracy::default();
    match (loss, batch.targets) {
        (LossKind::CrossEntropy { ignore_index }, Targets::Classes(c)) => {
            for (r, row) in out.chunks_exact(outputs).enumerate() {
                if !batch.row_valid(kind, r) || Some(c[r]) == ignore_index {
                    continue;
                }
                let best = row
                    .iter()
                    .enumerate()
                    .fold(0, |best, (j, &v)| if v > row[best] { j } else { best });
                acc.total += 1;
                acc.correct += usize::from(best as i64 == c[r]);
            }
        }
        (LossKind::BceWithLogits, Targets::Values(y)) => {
            for (r, row) in out.chunks_exact(outputs).enumerate() {
                if !batch.row_valid(kind, r) {
                    continue;
                }
                for (j, &z) in row.iter().enumerate() {
                    acc.total += 1;
                    acc.correct += usize::from((z > 0.0) == (y[r * outputs + j] > 0.5));
                }
            }
        }
        _ => {
            return Err(LstmError::value(
                "loss",
                "accuracy needs a classification loss (cross-entropy or binary cross-entropy)",
            ));
        }
    }
    Ok(acc)
}
