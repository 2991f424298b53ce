//! `LstmWeights`: the parameters of an `nn.LSTM` or `nn.GRU`, host side, in
//! PyTorch's layout and under PyTorch's `state_dict` names.
//!
//! For layer `k` and direction `d` (suffix `_reverse` for d = 1), with G = 4
//! gates for an LSTM and 3 for a GRU ([`LstmConfig::gates`]):
//!
//! | name | shape |
//! |---|---|
//! | `weight_ih_l{k}` | [G·H, I] for k = 0, [G·H, D·H_out] after |
//! | `weight_hh_l{k}` | [G·H, H_out] |
//! | `bias_ih_l{k}`, `bias_hh_l{k}` | \[G·H\] (absent when `bias = false`) |
//! | `weight_hr_l{k}` | [P, H] (an LSTM's, only when `proj_size` = P > 0) |
//! | `ln_ih_weight_l{k}`, `ln_ih_bias_l{k}` | \[4H\] (a layer-normalised LSTM's, `layer_norm`) |
//! | `ln_hh_weight_l{k}`, `ln_hh_bias_l{k}` | \[4H\] (likewise) |
//! | `ln_cell_weight_l{k}`, `ln_cell_bias_l{k}` | \[H\] (likewise) |
//!
//! H_out is P with a projection and H without.
//!
//! The G·H rows are blocks of H in PyTorch's gate order: **i, f, g, o**
//! (input, forget, cell candidate, output) for an LSTM, **r, z, n** (reset,
//! update, new) for a GRU. Every matrix is row-major.

mod io;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::{Cell, LstmConfig};
use crate::error::{LstmError, Result};
use crate::real::Real;

pub(crate) use io::config_metadata;
pub use io::{SafetensorsPrefix, detect_prefix};

/// One of the parameters of a layer·direction: four, or two without bias,
/// plus the projection with `proj_size` > 0. G·H below is 4H for an LSTM and
/// 3H for a GRU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// `weight_ih` [G·H, in]: input-to-gates weights.
    WeightIh,
    /// `weight_hh` [G·H, H_out]: hidden-to-gates weights.
    WeightHh,
    /// `bias_ih` \[G·H\]: input-side gate bias.
    BiasIh,
    /// `bias_hh` \[G·H\]: hidden-side gate bias.
    BiasHh,
    /// `weight_hr` [P, H]: the LSTMP projection of h.
    WeightHr,
    /// `ln_ih_weight` \[4H\]: the gain of the layer norm of W_ih·x.
    LnIhWeight,
    /// `ln_ih_bias` \[4H\]: its bias.
    LnIhBias,
    /// `ln_hh_weight` \[4H\]: the gain of the layer norm of W_hh·h.
    LnHhWeight,
    /// `ln_hh_bias` \[4H\]: its bias.
    LnHhBias,
    /// `ln_cell_weight` \[H\]: the gain of the layer norm of c_t.
    LnCellWeight,
    /// `ln_cell_bias` \[H\]: its bias.
    LnCellBias,
}

impl ParamKind {
    /// In PyTorch's `state_dict` order.
    pub const ALL: [ParamKind; 11] = [
        ParamKind::WeightIh,
        ParamKind::WeightHh,
        ParamKind::BiasIh,
        ParamKind::BiasHh,
        ParamKind::WeightHr,
        ParamKind::LnIhWeight,
        ParamKind::LnIhBias,
        ParamKind::LnHhWeight,
        ParamKind::LnHhBias,
        ParamKind::LnCellWeight,
        ParamKind::LnCellBias,
    ];

    /// PyTorch's name without the layer and direction suffix, e.g. `weight_ih`.
    pub fn stem(self) -> &'static str {
        match self {
            ParamKind::WeightIh => "weight_ih",
            ParamKind::WeightHh => "weight_hh",
            ParamKind::BiasIh => "bias_ih",
            ParamKind::BiasHh => "bias_hh",
            ParamKind::WeightHr => "weight_hr",
            ParamKind::LnIhWeight => "ln_ih_weight",
            ParamKind::LnIhBias => "ln_ih_bias",
            ParamKind::LnHhWeight => "ln_hh_weight",
            ParamKind::LnHhBias => "ln_hh_bias",
            ParamKind::LnCellWeight => "ln_cell_weight",
            ParamKind::LnCellBias => "ln_cell_bias",
        }
    }

    /// Whether this is one of a layer-normalised LSTM's gains and biases.
    pub fn is_layer_norm(self) -> bool {
        matches!(
            self,
            ParamKind::LnIhWeight
                | ParamKind::LnIhBias
                | ParamKind::LnHhWeight
                | ParamKind::LnHhBias
                | ParamKind::LnCellWeight
                | ParamKind::LnCellBias
        )
    }

    /// A layer norm's gain (initialised to 1; its biases to 0).
    pub fn is_gain(self) -> bool {
        matches!(
            self,
            ParamKind::LnIhWeight | ParamKind::LnHhWeight | ParamKind::LnCellWeight
        )
    }

    /// The parameter's shape in a model of `config`, for layer `layer`.
    pub fn shape(self, config: &LstmConfig, layer: usize) -> Vec<usize> {
        let rows = config.gates() * config.hidden_size;
        match self {
            ParamKind::WeightIh => vec![rows, config.layer_input_size(layer)],
            ParamKind::WeightHh => vec![rows, config.hidden_out()],
            ParamKind::WeightHr => vec![config.proj_size, config.hidden_size],
            ParamKind::LnCellWeight | ParamKind::LnCellBias => vec![config.hidden_size],
            _ => vec![rows],
        }
    }

    /// Whether this is `bias_ih` or `bias_hh` (absent when `bias = false`).
    pub fn is_bias(self) -> bool {
        matches!(self, ParamKind::BiasIh | ParamKind::BiasHh)
    }
}

/// The PyTorch name of a parameter, e.g. `weight_hh_l1_reverse`.
pub fn param_name(kind: ParamKind, layer: usize, direction: usize) -> String {
    let suffix = if direction == 1 { "_reverse" } else { "" };
    format!("{}_l{layer}{suffix}", kind.stem())
}

/// The parameters of one layer in one direction (G·H = 4H for an LSTM, 3H
/// for a GRU).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerWeights<T = f32> {
    /// [G·H, in], in = I for layer 0 and D·H_out after.
    pub weight_ih: Vec<T>,
    /// [G·H, H_out]
    pub weight_hh: Vec<T>,
    /// \[G·H\], or `None` when the model has no bias.
    pub bias_ih: Option<Vec<T>>,
    /// \[G·H\], or `None` when the model has no bias.
    pub bias_hh: Option<Vec<T>>,
    /// [P, H], or `None` without a projection (`proj_size` = 0).
    pub weight_hr: Option<Vec<T>>,
    /// A layer-normalised LSTM's gains and biases (`layer_norm`), else `None`.
    pub layer_norm: Option<LayerNormWeights<T>>,
}

/// The layer norms of a layer-normalised LSTM's layer·direction (Ba, Kiros
/// & Hinton 2016, in `haste`'s `LayerNormLSTM` formulation): one on
/// W_ih·x_t and one on W_hh·h_{t-1}, each over the 4H gate pre-activations
/// of a row, and one on c_t over its H units, each with a gain and a bias.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormWeights<T = f32> {
    /// \[4H\], initialised to 1.
    pub ih_weight: Vec<T>,
    /// \[4H\], initialised to 0.
    pub ih_bias: Vec<T>,
    /// \[4H\], initialised to 1.
    pub hh_weight: Vec<T>,
    /// \[4H\], initialised to 0.
    pub hh_bias: Vec<T>,
    /// \[H\], initialised to 1.
    pub cell_weight: Vec<T>,
    /// \[H\], initialised to 0.
    pub cell_bias: Vec<T>,
}

impl<T: Real> LayerWeights<T> {
    /// The parameter of `kind`; `None` when this LSTM lacks it.
    pub fn get(&self, kind: ParamKind) -> Option<&[T]> {
        match kind {
            ParamKind::WeightIh => Some(&self.weight_ih),
            ParamKind::WeightHh => Some(&self.weight_hh),
            ParamKind::BiasIh => self.bias_ih.as_deref(),
            ParamKind::BiasHh => self.bias_hh.as_deref(),
            ParamKind::WeightHr => self.weight_hr.as_deref(),
            _ => self.layer_norm.as_ref().map(|ln| match kind {
                ParamKind::LnIhWeight => &ln.ih_weight[..],
                ParamKind::LnIhBias => &ln.ih_bias[..],
                ParamKind::LnHhWeight => &ln.hh_weight[..],
                ParamKind::LnHhBias => &ln.hh_bias[..],
                ParamKind::LnCellWeight => &ln.cell_weight[..],
                _ => &ln.cell_bias[..],
            }),
        }
    }

    /// The parameter of `kind`, mutable; `None` when this LSTM lacks it.
    pub fn get_mut(&mut self, kind: ParamKind) -> Option<&mut Vec<T>> {
        match kind {
            ParamKind::WeightIh => Some(&mut self.weight_ih),
            ParamKind::WeightHh => Some(&mut self.weight_hh),
            ParamKind::BiasIh => self.bias_ih.as_mut(),
            ParamKind::BiasHh => self.bias_hh.as_mut(),
            ParamKind::WeightHr => self.weight_hr.as_mut(),
            _ => self.layer_norm.as_mut().map(|ln| match kind {
                ParamKind::LnIhWeight => &mut ln.ih_weight,
                ParamKind::LnIhBias => &mut ln.ih_bias,
                ParamKind::LnHhWeight => &mut ln.hh_weight,
                ParamKind::LnHhBias => &mut ln.hh_bias,
                ParamKind::LnCellWeight => &mut ln.cell_weight,
                _ => &mut ln.cell_bias,
            }),
        }
    }
}

/// Options for [`LstmWeights::init`].
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct InitOptions {
    /// Keras' `unit_forget_bias`: after the uniform draw, set the forget-gate
    /// block of `bias_ih` to 1 and of `bias_hh` to 0, so that the forget
    /// gate's total bias is 1. Needs `bias = true` and an LSTM (a GRU has no
    /// forget gate).
    pub unit_forget_bias: bool,
}

/// All parameters of an LSTM or a GRU, with the configuration they belong to.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmWeights<T = f32> {
    /// The architecture that fixes every parameter's shape.
    pub config: LstmConfig,
    /// Indexed by `layer * D + direction`.
    pub layers: Vec<LayerWeights<T>>,
}

impl<T: Real> LstmWeights<T> {
    /// All parameters set to zero (the shape of a gradient).
    pub fn zeros(config: &LstmConfig) -> Result<Self> {
        config.validate()?;
        let layers = (0..config.num_layers)
            .flat_map(|layer| (0..config.num_directions()).map(move |d| (layer, d)))
            .map(|(layer, _)| {
                let rows = config.gates() * config.hidden_size;
                let bias = config.bias.then(|| vec![T::zero(); rows]);
                let proj = config.proj_size;
                LayerWeights {
                    weight_ih: vec![T::zero(); rows * config.layer_input_size(layer)],
                    weight_hh: vec![T::zero(); rows * config.hidden_out()],
                    bias_ih: bias.clone(),
                    bias_hh: bias,
                    weight_hr: (proj > 0).then(|| vec![T::zero(); proj * config.hidden_size]),
                    layer_norm: config.layer_norm.then(|| {
                        let (g, h) = (vec![T::zero(); rows], vec![T::zero(); config.hidden_size]);
                        LayerNormWeights {
                            ih_weight: g.clone(),
                            ih_bias: g.clone(),
                            hh_weight: g.clone(),
                            hh_bias: g,
                            cell_weight: h.clone(),
                            cell_bias: h,
                        }
                    }),
                }
            })
            .collect();
        Ok(LstmWeights {
            config: config.clone(),
            layers,
        })
    }

    /// PyTorch's initialisation (of `nn.LSTM` and `nn.GRU` alike): every
    /// parameter drawn from U(-1/√H, 1/√H), in `state_dict` order, from a
    /// ChaCha8 stream seeded with `seed`. A layer norm's gains start at 1
    /// and its biases at 0, as `nn.LayerNorm`'s.
    pub fn init(config: &LstmConfig, seed: u64, options: InitOptions) -> Result<Self> {
        if options.unit_forget_bias && !config.bias {
            return Err(LstmError::InvalidConfig {
                field: "bias",
                reason: "unit_forget_bias needs bias = true".into(),
            });
        }
        if options.unit_forget_bias && config.cell == Cell::Gru {
            return Err(LstmError::InvalidConfig {
                field: "cell",
                reason: "unit_forget_bias sets an LSTM's forget-gate bias; a GRU has no \
                         forget gate"
                    .into(),
            });
        }
        let mut weights = Self::zeros(config)?;
        let bound = 1.0 / (config.hidden_size as f64).sqrt();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for layer in weights.layers.iter_mut() {
            for kind in ParamKind::ALL {
                if let Some(values) = layer.get_mut(kind) {
                    if kind.is_layer_norm() {
                        values.fill(if kind.is_gain() { T::one() } else { T::zero() });
                        continue;
                    }
                    for v in values.iter_mut() {
                        *v = T::from_f64(rng.random_range(-bound..bound));
                    }
                }
            }
        }
        if options.unit_forget_bias {
            let h = config.hidden_size;
            for layer in weights.layers.iter_mut() {
                if let (Some(b_ih), Some(b_hh)) = (&mut layer.bias_ih, &mut layer.bias_hh) {
                    b_ih[h..2 * h].fill(T::one());
                    b_hh[h..2 * h].fill(T::zero());
                }
            }
        }
        Ok(weights)
    }

    /// The weights of `layer` in `direction`.
    pub fn layer(&self, layer: usize, direction: usize) -> &LayerWeights<T> {
        &self.layers[layer * self.config.num_directions() + direction]
    }

    /// The weights of `layer` in `direction`, mutable.
    pub fn layer_mut(&mut self, layer: usize, direction: usize) -> &mut LayerWeights<T> {
        let d = self.config.num_directions();
        &mut self.layers[layer * d + direction]
    }

    /// Every parameter as (PyTorch name, shape, values), in `state_dict` order.
    pub fn named_params(&self) -> Vec<(String, Vec<usize>, &[T])> {
        let cfg = &self.config;
        let mut out = Vec::new();
        for layer in 0..cfg.num_layers {
            for dir in 0..cfg.num_directions() {
                let lw = self.layer(layer, dir);
                for kind in ParamKind::ALL {
                    if let Some(values) = lw.get(kind) {
                        out.push((param_name(kind, layer, dir), kind.shape(cfg, layer), values));
                    }
                }
            }
        }
        out
    }

    /// Every parameter's values, moved out in `state_dict` order (the order
    /// of [`named_params`](Self::named_params)).
    pub fn into_params(self) -> Vec<Vec<T>> {
        let mut out = Vec::new();
        for l in self.layers {
            out.push(l.weight_ih);
            out.push(l.weight_hh);
            out.extend(l.bias_ih);
            out.extend(l.bias_hh);
            out.extend(l.weight_hr);
            if let Some(ln) = l.layer_norm {
                out.extend([
                    ln.ih_weight,
                    ln.ih_bias,
                    ln.hh_weight,
                    ln.hh_bias,
                    ln.cell_weight,
                    ln.cell_bias,
                ]);
            }
        }
        out
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.named_params().iter().map(|(_, _, v)| v.len()).sum()
    }

    /// Converts every parameter to another float type.
    pub fn cast<U: Real>(&self) -> LstmWeights<U> {
        let conv = |v: &Vec<T>| v.iter().map(|&x| U::from_f64(x.as_f64())).collect();
        LstmWeights {
            config: self.config.clone(),
            layers: self
                .layers
                .iter()
                .map(|l| LayerWeights {
                    weight_ih: conv(&l.weight_ih),
                    weight_hh: conv(&l.weight_hh),
                    bias_ih: l.bias_ih.as_ref().map(conv),
                    bias_hh: l.bias_hh.as_ref().map(conv),
                    weight_hr: l.weight_hr.as_ref().map(conv),
                    layer_norm: l.layer_norm.as_ref().map(|ln| LayerNormWeights {
                        ih_weight: conv(&ln.ih_weight),
                        ih_bias: conv(&ln.ih_bias),
                        hh_weight: conv(&ln.hh_weight),
                        hh_bias: conv(&ln.hh_bias),
                        cell_weight: conv(&ln.cell_weight),
                        cell_bias: conv(&ln.cell_bias),
                    }),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn into_params_is_named_params_in_order() {
        let cfg = LstmConfig::new(3, 5)
            .num_layers(2)
            .bidirectional(true)
            .proj_size(2);
        let w = LstmWeights::<f64>::init(&cfg, 3, InitOptions::default()).unwrap();
        let named: Vec<Vec<f64>> = w
            .named_params()
            .iter()
            .map(|(_, _, v)| v.to_vec())
            .collect();
        assert_eq!(w.into_params(), named);
    }
}
