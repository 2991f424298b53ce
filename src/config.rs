//! `LstmConfig`: the constructor arguments of PyTorch's `nn.LSTM`, with its defaults.

use crate::error::{LstmError, Result};

/// The architecture of a (possibly stacked, possibly bidirectional) LSTM.
///
/// Field names and defaults are those of `torch.nn.LSTM`:
///
/// | field | default |
/// |---|---|
/// | `input_size` | required |
/// | `hidden_size` | required |
/// | `num_layers` | 1 |
/// | `bias` | true |
/// | `batch_first` | false |
/// | `dropout` | 0.0 |
/// | `bidirectional` | false |
/// | `proj_size` | 0 |
///
/// As in PyTorch, `dropout` applies to the output of every layer except the
/// last, and only in training mode. With `num_layers = 1` it therefore has no
/// effect; this is allowed (PyTorch only warns), but it is almost always a
/// mistake in the caller's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmConfig {
    /// I: features per time step of the input.
    pub input_size: usize,
    /// H: units in each layer's hidden and cell state.
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
}

impl LstmConfig {
    /// A single-layer, unidirectional LSTM with PyTorch's defaults.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        LstmConfig {
            input_size,
            hidden_size,
            num_layers: 1,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
            proj_size: 0,
        }
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
        if !(self.dropout >= 0.0 && self.dropout < 1.0) {
            return Err(LstmError::InvalidConfig {
                field: "dropout",
                reason: format!("must be in [0, 1), got {}", self.dropout),
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
        // Gate rows are 4H; keep every index inside u32 for the GPU path.
        let largest = 4 * self.hidden_size.max(1) * self.input_size.max(self.output_size());
        if largest > u32::MAX as usize {
            return Err(LstmError::InvalidConfig {
                field: "hidden_size",
                reason: format!(
                    "a weight matrix of 4·H × max(I, D·H) = {largest} elements exceeds 2^32"
                ),
            });
        }
        Ok(())
    }
}
