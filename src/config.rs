//! `LstmConfig`: the constructor arguments of PyTorch's `nn.LSTM` (or, with
//! [`Cell::Gru`], `nn.GRU`), with their defaults.

use crate::error::{LstmError, Result};
use crate::real::Real;

/// The architecture of a (possibly stacked, possibly bidirectional) LSTM or
/// GRU.
///
/// Field names and defaults are those of `torch.nn.LSTM`, and of
/// `torch.nn.GRU` with `cell = Cell::Gru` ([`LstmConfig::gru`]):
///
/// | field | default |
/// |---|---|
/// | `cell` | [`Cell::Lstm`] |
/// | `input_size` | required |
/// | `hidden_size` | required |
/// | `num_layers` | 1 |
/// | `bias` | true |
/// | `batch_first` | false |
/// | `dropout` | 0.0 |
/// | `bidirectional` | false |
/// | `proj_size` | 0 (an LSTM's only; a GRU's must be 0) |
///
/// Beyond `nn.LSTM`, the variants of DESIGN.md §9, with Keras' meanings
/// (all off by default, so a default config is exactly `nn.LSTM`):
///
/// | field | default | Keras |
/// |---|---|---|
/// | `input_dropout` | 0.0 | `LSTM(dropout=)` |
/// | `recurrent_dropout` | 0.0 | `LSTM(recurrent_dropout=)` |
/// | `activation` | [`Activation::Tanh`] | `LSTM(activation=)` |
///
/// A GRU takes none of them yet: its `activation` must be tanh (as
/// `nn.GRU`'s), and the reference and the CPU engine refuse its input and
/// recurrent dropout with [`LstmError::Unsupported`].
///
/// Both variational dropouts draw one mask per sequence (batch row),
/// layer and direction, the same at every step
/// ([`crate::dropout::VariationalMask`]), and apply in training only.
///
/// As in PyTorch, `dropout` applies to the output of every layer except the
/// last, and only in training mode. With `num_layers = 1` it therefore has no
/// effect; this is allowed (PyTorch only warns), but it is almost always a
/// mistake in the caller's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmConfig {
    /// The recurrent cell: an LSTM (the default) or a GRU.
    pub cell: Cell,
    /// I: features per time step of the input.
    pub input_size: usize,
    /// H: units in each layer's hidden state (and an LSTM's cell state).
    pub hidden_size: usize,
    /// L: stacked layers; layer k > 0 reads layer k-1's output.
    pub num_layers: usize,
    /// Whether the `bias_ih` and `bias_hh` parameters exist.
    pub bias: bool,
    /// Input and output are [B, T, *] instead of [T, B, *]. States are always [D·L, B, H].
    pub batch_first: bool,
    /// Inter-layer dropout probability, in [0, 1).
    pub dropout: f64,
    /// Run a second, time-reversed direction in every layer (D = 2).
    pub bidirectional: bool,
    /// P: with P > 0, a projection LSTM (LSTMP): h_t = W_hr · (o ⊙ tanh(c_t)),
    /// so h has P units and c has H. 0 (the default) means no projection.
    pub proj_size: usize,
    /// Input dropout (Keras' `dropout`), in [0, 1): in training, every
    /// layer·direction multiplies x_t by one mask per sequence and input
    /// feature, the same at every step, before the input product.
    pub input_dropout: f64,
    /// Recurrent dropout (Keras' `recurrent_dropout`; Gal & Ghahramani
    /// 2016), in [0, 1): in training, h_{t-1} is multiplied by one mask per
    /// sequence and hidden unit, the same at every step and shared by the
    /// four gates, where it enters the recurrent product W_hh·h_{t-1}.
    pub recurrent_dropout: f64,
    /// The cell activation: of the candidate g and of c in h = o ⊙ act(c).
    pub activation: Activation,
    /// A layer-normalised LSTM (Ba, Kiros & Hinton 2016, as `haste`'s
    /// `LayerNormLSTM`): layer norms, with gain and bias, on W_ih·x_t and on
    /// W_hh·h_{t-1} over each row's 4H gate pre-activations, and on c_t before
    /// the output activation; the state carried to the next step is c_t itself.
    /// Their parameters are [`crate::weights::LayerNormWeights`].
    pub layer_norm: bool,
}

/// The recurrent cell of every layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Cell {
    /// `nn.LSTM`: gates i, f, g, o (4H rows of `W_ih`, `W_hh` and the
    /// biases), a cell state c beside h (DESIGN.md §1).
    #[default]
    Lstm,
    /// `nn.GRU`: gates r, z, n (3H rows), no cell state:
    /// n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),
    /// h' = (1 − z) ⊙ n + z ⊙ h (DESIGN.md §9).
    Gru,
}

impl Cell {
    /// The name in checkpoints' metadata and on the command line: `lstm`
    /// or `gru`.
    pub fn name(self) -> &'static str {
        match self {
            Cell::Lstm => "lstm",
            Cell::Gru => "gru",
        }
    }

    /// Parses [`name`](Self::name).
    pub fn from_name(name: &str) -> Result<Cell> {
        match name {
            "lstm" => Ok(Cell::Lstm),
            "gru" => Ok(Cell::Gru),
            other => Err(LstmError::InvalidConfig {
                field: "cell",
                reason: format!("must be `lstm` or `gru`, got `{other}`"),
            }),
        }
    }

    /// G: gate blocks of H rows in `W_ih`, `W_hh` and the biases (4 for an
    /// LSTM, 3 for a GRU).
    pub fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The LSTM's cell activation (Keras' `activation`): applied to the
/// candidate gate g and to the cell state in h = o ⊙ act(c). The gates i, f
/// and o are always sigmoids.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    /// tanh, as `nn.LSTM` (the default).
    #[default]
    Tanh,
    /// max(0, x), as Keras' `activation='relu'`. Its derivative at 0 is
    /// taken as 0.
    Relu,
}

impl Activation {
    /// The name in checkpoints and on the command line: `tanh` or `relu`.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Tanh => "tanh",
            Activation::Relu => "relu",
        }
    }

    /// act(v).
    #[inline]
    pub fn apply<T: Real>(self, v: T) -> T {
        match self {
            Activation::Tanh => v.tanh_act(),
            Activation::Relu => {
                if v > T::zero() {
                    v
                } else {
                    T::zero()
                }
            }
        }
    }

    /// act'(v), from y = act(v): 1 - y² for tanh, and for relu 1 where
    /// y > 0 (so v > 0), else 0.
    #[inline]
    pub fn derivative_from_output<T: Real>(self, y: T) -> T {
        match self {
            Activation::Tanh => T::one() - y * y,
            Activation::Relu => {
                if y > T::zero() {
                    T::one()
                } else {
                    T::zero()
                }
            }
        }
    }

    /// Parses [`name`](Self::name).
    pub fn from_name(name: &str) -> Result<Activation> {
        match name {
            "tanh" => Ok(Activation::Tanh),
            "relu" => Ok(Activation::Relu),
            other => Err(LstmError::InvalidConfig {
                field: "activation",
                reason: format!("must be `tanh` or `relu`, got `{other}`"),
            }),
        }
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl LstmConfig {
    /// A single-layer, unidirectional LSTM with PyTorch's defaults.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        LstmConfig {
            cell: Cell::Lstm,
            input_size,
            hidden_size,
            num_layers: 1,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
            proj_size: 0,
            input_dropout: 0.0,
            recurrent_dropout: 0.0,
            activation: Activation::Tanh,
            layer_norm: false,
        }
    }

    /// A single-layer, unidirectional GRU with `nn.GRU`'s defaults.
    pub fn gru(input_size: usize, hidden_size: usize) -> Self {
        LstmConfig::new(input_size, hidden_size).cell(Cell::Gru)
    }

    /// Sets the recurrent cell.
    pub fn cell(mut self, cell: Cell) -> Self {
        self.cell = cell;
        self
    }

    /// G: gate blocks of H rows in the weights, 4 for an LSTM and 3 for a
    /// GRU; `W_ih` is [G·H, in].
    pub fn gates(&self) -> usize {
        self.cell.gates()
    }

    /// Units of the cell state c (`c_0`, `c_n`): H for an LSTM, 0 for a GRU,
    /// which has none (its `c_n` is an empty [D·L, B, 0] tensor).
    pub fn cell_state_size(&self) -> usize {
        match self.cell {
            Cell::Lstm => self.hidden_size,
            Cell::Gru => 0,
        }
    }

    /// Sets the input dropout probability (Keras' `dropout`), in [0, 1).
    pub fn input_dropout(mut self, p: f64) -> Self {
        self.input_dropout = p;
        self
    }

    /// Sets the recurrent dropout probability (Keras' `recurrent_dropout`),
    /// in [0, 1).
    pub fn recurrent_dropout(mut self, p: f64) -> Self {
        self.recurrent_dropout = p;
        self
    }

    /// Sets the cell activation.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// Sets `layer_norm`: a layer-normalised LSTM.
    pub fn layer_norm(mut self, layer_norm: bool) -> Self {
        self.layer_norm = layer_norm;
        self
    }

    /// Whether training draws variational (per-sequence) masks: input or
    /// recurrent dropout is on.
    pub fn variational(&self) -> bool {
        self.input_dropout > 0.0 || self.recurrent_dropout > 0.0
    }

    /// Sets `num_layers` (L).
    pub fn num_layers(mut self, num_layers: usize) -> Self {
        self.num_layers = num_layers;
        self
    }

    /// Sets `bias`.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Sets `batch_first`.
    pub fn batch_first(mut self, batch_first: bool) -> Self {
        self.batch_first = batch_first;
        self
    }

    /// Sets the inter-layer `dropout` probability, in [0, 1).
    pub fn dropout(mut self, dropout: f64) -> Self {
        self.dropout = dropout;
        self
    }

    /// Sets `bidirectional`.
    pub fn bidirectional(mut self, bidirectional: bool) -> Self {
        self.bidirectional = bidirectional;
        self
    }

    /// Sets `proj_size` (P); 0 for no projection, else < `hidden_size`.
    pub fn proj_size(mut self, proj_size: usize) -> Self {
        self.proj_size = proj_size;
        self
    }

    /// H_out: units of h (and of each direction's output), P when
    /// `proj_size` > 0, else H.
    pub fn hidden_out(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }

    /// D: 2 when bidirectional, else 1.
    pub fn num_directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }

    /// Size of a layer's output per time step: D·H_out.
    pub fn output_size(&self) -> usize {
        self.num_directions() * self.hidden_out()
    }

    /// Input features of layer `layer`: I for layer 0, D·H_out after.
    pub fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input_size
        } else {
            self.output_size()
        }
    }

    /// Checks every field; returns the first problem found.
    pub fn validate(&self) -> Result<()> {
        let positive = |field: &'static str, v: usize| {
            if v == 0 {
                Err(LstmError::InvalidConfig {
                    field,
                    reason: "must be at least 1, got 0".into(),
                })
            } else {
                Ok(())
            }
        };
        positive("input_size", self.input_size)?;
        positive("hidden_size", self.hidden_size)?;
        positive("num_layers", self.num_layers)?;
        for (field, p) in [
            ("dropout", self.dropout),
            ("input_dropout", self.input_dropout),
            ("recurrent_dropout", self.recurrent_dropout),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(LstmError::InvalidConfig {
                    field,
                    reason: format!("must be in [0, 1), got {p}"),
                });
            }
        }
        if self.cell == Cell::Gru {
            if self.proj_size > 0 {
                return Err(LstmError::InvalidConfig {
                    field: "proj_size",
                    reason: format!(
                        "must be 0 for a GRU (nn.GRU has no projection), got {}",
                        self.proj_size
                    ),
                });
            }
            if self.activation != Activation::Tanh {
                return Err(LstmError::InvalidConfig {
                    field: "activation",
                    reason: format!(
                        "must be tanh for a GRU (nn.GRU has no activation choice), got {}",
                        self.activation
                    ),
                });
            }
        }
        if self.layer_norm && (self.cell == Cell::Gru || self.proj_size > 0) {
            return Err(LstmError::InvalidConfig {
                field: "layer_norm",
                reason: "is an LSTM's without a projection (proj_size = 0), not a GRU's".into(),
            });
        }
        if self.proj_size >= self.hidden_size {
            return Err(LstmError::InvalidConfig {
                field: "proj_size",
                reason: format!(
                    "must be smaller than hidden_size ({}), got {}",
                    self.hidden_size, self.proj_size
                ),
            });
        }
        // Gate rows are G·H; keep every index inside u32 for the GPU path.
        let gates = self.gates();
        let largest = gates * self.hidden_size.max(1) * self.input_size.max(self.output_size());
        if largest > u32::MAX as usize {
            return Err(LstmError::InvalidConfig {
                field: "hidden_size",
                reason: format!(
                    "a weight matrix of {gates}·H × max(I, D·H) = {largest} elements exceeds 2^32"
                ),
            });
        }
        Ok(())
    }
}
