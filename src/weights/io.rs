//! Loading and saving [`LstmWeights`] as safetensors under PyTorch's
//! `state_dict` names, inferring the architecture from names and shapes.
//!
//! What a `state_dict` does not hold travels in the file's string metadata,
//! written only where it differs from `nn.LSTM`, so that a plain LSTM's file
//! is exactly what PyTorch writes:
//! - `cell` = `gru` for a GRU. Shapes tell the cells apart too
//!   (`weight_hh_l0` is [4H, H] in an LSTM, [3H, H] in a GRU), so files
//!   without it load; a `cell` that disagrees with the shapes is an error.
//! - `activation` = `relu` for an LSTM with the ReLU cell activation
//!   ([`Activation`]); tanh when absent.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::SafeTensors;

use super::{LstmWeights, ParamKind, param_name};
use crate::config::{Activation, Cell, LstmConfig};
use crate::error::{LstmError, Result};
use crate::io;
use crate::real::Real;
use crate::tensor_file::TensorFile;

/// The metadata that carries what the parameter names and shapes do not:
/// `cell` for a GRU, `activation` when it is not tanh; `None` for a plain
/// LSTM.
pub(crate) fn config_metadata(config: &LstmConfig) -> Option<HashMap<String, String>> {
    let mut meta = HashMap::new();
    if config.cell != Cell::Lstm {
        meta.insert("cell".to_string(), config.cell.name().to_string());
    }
    if config.activation != Activation::Tanh {
        meta.insert(
            "activation".to_string(),
            config.activation.name().to_string(),
        );
    }
    (!meta.is_empty()).then_some(meta)
}

/// How parameter names are prefixed in a file (`lstm.weight_ih_l0`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SafetensorsPrefix<'a> {
    /// Detect the one prefix that every key shares, such as `lstm.` or
    /// `encoder.rnn.` (empty when the keys are bare parameter names).
    Auto,
    /// Exactly this prefix, such as `lstm.`: the LSTM is one module of a
    /// larger `state_dict`, and keys outside the prefix are ignored. With
    /// `""`, every key must be an LSTM parameter.
    Exact(&'a str),
}

/// The prefix every name shares in front of an `nn.LSTM` parameter name, if
/// there is one: the part before `weight_ih_l0` in whichever key ends so.
pub fn detect_prefix<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let names: Vec<&str> = names.into_iter().collect();
    let anchor = names
        .iter()
        .filter_map(|n| n.strip_suffix("weight_ih_l0"))
        .find(|p| p.is_empty() || p.ends_with('.'))?;
    names
        .iter()
        .all(|n| n.starts_with(anchor))
        .then(|| anchor.to_string())
}

/// A parsed parameter name: (kind, layer, direction).
fn parse_name(name: &str) -> Option<(ParamKind, usize, usize)> {
    let (rest, direction) = match name.strip_suffix("_reverse") {
        Some(r) => (r, 1),
        None => (name, 0),
    };
    let (stem, layer) = rest.rsplit_once("_l")?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) || layer.len() > 4 {
        return None;
    }
    let kind = ParamKind::ALL.into_iter().find(|k| k.stem() == stem)?;
    Some((kind, layer.parse().ok()?, direction))
}

impl<T: Real> LstmWeights<T> {
    /// Loads an `nn.LSTM` or `nn.GRU` `state_dict` saved with safetensors
    /// (for example with `safetensors.torch.save_file(lstm.state_dict(),
    /// path)`).
    ///
    /// The architecture is inferred: `num_layers` from the largest `_l{k}`,
    /// `bidirectional` from `_reverse` names, `bias` from `bias_*` names,
    /// the cell, `hidden_size` and `input_size` from `weight_hh_l0` ([4H, H]
    /// for an LSTM, [3H, H] for a GRU) and `weight_ih_l0`, and `proj_size`
    /// from `weight_hr_l0`. The metadata `cell` and `activation` are read
    /// when present (see the module notes). `batch_first` and `dropout` are
    /// not stored in a `state_dict`; they take PyTorch's defaults and may be
    /// set on `config` afterwards. F16, BF16 and F64 tensors are converted.
    pub fn load_safetensors(path: impl AsRef<Path>, prefix: SafetensorsPrefix) -> Result<Self> {
        let path = path.as_ref();
        let bytes = io::read_file(path)?;
        let st = io::parse(&bytes, Some(path))?;
        let meta = io::metadata(&bytes, Some(path))?;
        Self::read(&st, &meta, prefix, Some(path))
    }

    /// Like [`load_safetensors`](Self::load_safetensors), from bytes in memory.
    pub fn from_safetensors_bytes(bytes: &[u8], prefix: SafetensorsPrefix) -> Result<Self> {
        let st = io::parse(bytes, None)?;
        let meta = io::metadata(bytes, None)?;
        Self::read(&st, &meta, prefix, None)
    }

    /// Like [`load_safetensors`](Self::load_safetensors), from a file
    /// already read.
    pub fn from_tensor_file(file: &TensorFile, prefix: SafetensorsPrefix) -> Result<Self> {
        Self::read(&file.safetensors(), &file.metadata(), prefix, file.path())
    }

    /// Reads the parameters out of a parsed file, from the names and shapes
    /// alone: a parsed file does not expose its metadata, so an LSTM's
    /// `activation` stays tanh (the readers above honour it). Every key
    /// behind the prefix must be a parameter; anything else there is an
    /// error.
    pub fn from_safetensors(st: &SafeTensors<'_>, prefix: SafetensorsPrefix) -> Result<Self> {
        Self::read(st, &HashMap::new(), prefix, None)
    }

    /// The loader behind every reader: `meta` is the file's string metadata
    /// (empty when unknown), `path` names the file in errors.
    pub(crate) fn read(
        st: &SafeTensors<'_>,
        meta: &HashMap<String, String>,
        prefix: SafetensorsPrefix,
        path: Option<&Path>,
    ) -> Result<Self> {
        // A metadata value this version cannot parse is a bad file.
        let invalid = |key: &str, e: LstmError| {
            let reason = match e {
                LstmError::InvalidConfig { reason, .. } => reason,
                e => e.to_string(),
            };
            LstmError::InvalidFile {
                path: path.map(Path::to_path_buf),
                reason: format!("metadata `{key}` {reason}"),
            }
        };
        let meta_cell = match meta.get("cell") {
            Some(c) => Some(Cell::from_name(c).map_err(|e| invalid("cell", e))?),
            None => None,
        };
        let activation = match meta.get("activation") {
            Some(a) => Activation::from_name(a).map_err(|e| invalid("activation", e))?,
            None => Activation::Tanh,
        };
        let names = st.names();
        let explicit_prefix = matches!(prefix, SafetensorsPrefix::Exact(p) if !p.is_empty());
        let prefix = match prefix {
            SafetensorsPrefix::Exact(p) => p.to_string(),
            SafetensorsPrefix::Auto => detect_prefix(names.iter().copied()).ok_or_else(|| {
                match names.iter().find(|n| n.ends_with("weight_ih_l0")) {
                    // A key names the anchor, so some other key lacks its prefix.
                    Some(anchor) => {
                        let p = anchor.trim_end_matches("weight_ih_l0");
                        LstmError::UnexpectedTensor {
                            name: names
                                .iter()
                                .find(|n| !n.starts_with(p))
                                .map_or(String::new(), |n| n.to_string()),
                        }
                    }
                    None => LstmError::MissingTensor {
                        name: "weight_ih_l0".into(),
                        hint: format!(
                            " (no key ends with it; the file has {} tensors{})",
                            names.len(),
                            names
                                .first()
                                .map_or(String::new(), |n| format!(", e.g. `{n}`"))
                        ),
                    },
                }
            })?,
        };

        // Parse every key; collect by (kind, layer, direction).
        let mut found: BTreeMap<(usize, usize, &'static str), (ParamKind, String)> =
            BTreeMap::new();
        for full in &names {
            let bare = full.strip_prefix(prefix.as_str());
            if bare.is_none() && explicit_prefix {
                continue; // another module's tensor, e.g. `fc.weight` beside `lstm.`
            }
            let (kind, layer, dir) =
                bare.and_then(parse_name)
                    .ok_or_else(|| LstmError::UnexpectedTensor {
                        name: full.to_string(),
                    })?;
            found.insert((layer, dir, kind.stem()), (kind, full.to_string()));
        }
        let num_layers = found.keys().map(|k| k.0).max().unwrap_or(0) + 1;
        let bidirectional = found.keys().any(|k| k.1 == 1);
        let bias = found.values().any(|(k, _)| k.is_bias());
        let projected = found.values().any(|(k, _)| *k == ParamKind::WeightHr);
        let layer_norm = found.values().any(|(k, _)| k.is_layer_norm());

        let read = |kind: ParamKind, layer: usize, dir: usize| -> Result<(Vec<usize>, Vec<T>)> {
            let name = format!("{prefix}{}", param_name(kind, layer, dir));
            let t = io::read_float::<T>(st, &name)?;
            if let Some(i) = t.data().iter().position(|v| !v.is_finite()) {
                return Err(LstmError::value(
                    name,
                    format!("non-finite value at flat index {i}"),
                ));
            }
            Ok((t.shape().to_vec(), t.into_data()))
        };

        // Layer 0, forward direction, fixes the cell and the sizes: H and P
        // from `weight_hr_l0` ([P, H]) in a projection LSTM, else the cell
        // and H from `weight_hh_l0` ([4H, H] or [3H, H]).
        let (hh_shape, _) = read(ParamKind::WeightHh, 0, 0)?;
        let (ih_shape, _) = read(ParamKind::WeightIh, 0, 0)?;
        let (cell, hidden_size, proj_size) = if projected {
            let (hr_shape, _) = read(ParamKind::WeightHr, 0, 0)?;
            match hr_shape.as_slice() {
                [p, h] if *p > 0 && p < h => (Cell::Lstm, *h, *p),
                _ => {
                    return Err(LstmError::InconsistentLayers {
                        reason: format!(
                            "`{prefix}weight_hr_l0` has shape {hr_shape:?}; a projection's is \
                             [P, H] with 1 ≤ P < H"
                        ),
                    });
                }
            }
        } else {
            match hh_shape.as_slice() {
                [rows, h] if *h > 0 && *rows == 4 * h => (Cell::Lstm, *h, 0),
                [rows, h] if *h > 0 && *rows == 3 * h => (Cell::Gru, *h, 0),
                _ => {
                    return Err(LstmError::InconsistentLayers {
                        reason: format!(
                            "`{prefix}weight_hh_l0` has shape {hh_shape:?}; an LSTM's is [4H, H] \
                             and a GRU's [3H, H], with H ≥ 1"
                        ),
                    });
                }
            }
        };
        if let Some(said) = meta_cell.filter(|&c| c != cell) {
            let shapes = if projected {
                format!("the file has `{prefix}weight_hr_l0`, a projection LSTM's parameter")
            } else {
                let whose = match cell {
                    Cell::Lstm => "an LSTM's [4H, H]",
                    Cell::Gru => "a GRU's [3H, H]",
                };
                format!("`{prefix}weight_hh_l0` has shape {hh_shape:?}, {whose}")
            };
            return Err(LstmError::InconsistentLayers {
                reason: format!("the metadata says `cell` = `{said}`, but {shapes}"),
            });
        }
        let rows = cell.gates() * hidden_size;
        let input_size = match ih_shape.as_slice() {
            [_, i] if *i > 0 => *i,
            _ => {
                return Err(LstmError::shape(
                    format!("{prefix}weight_ih_l0"),
                    &[rows, 1],
                    &ih_shape,
                ));
            }
        };
        let config = LstmConfig {
            num_layers,
            bias,
            bidirectional,
            proj_size,
            activation,
            layer_norm,
            ..LstmConfig::new(input_size, hidden_size).cell(cell)
        };
        config.validate()?;

        let mut weights = LstmWeights::<T>::zeros(&config)?;
        for layer in 0..num_layers {
            for dir in 0..config.num_directions() {
                // Every parameter is read into the zeros of its shape.
                let mut lw = weights.layer(layer, dir).clone();
                for kind in ParamKind::ALL {
                    if (kind.is_bias() && !bias)
                        || (kind == ParamKind::WeightHr && !projected)
                        || (kind.is_layer_norm() && !layer_norm)
                    {
                        continue;
                    }
                    let name = format!("{prefix}{}", param_name(kind, layer, dir));
                    let expected = kind.shape(&config, layer);
                    let (shape, data) = read(kind, layer, dir).map_err(|e| match e {
                        LstmError::MissingTensor { name, .. } => LstmError::MissingTensor {
                            name,
                            hint: missing_hint(kind, layer, dir, bias, bidirectional, num_layers),
                        },
                        e => e,
                    })?;
                    if shape != expected {
                        return Err(shape_error(&name, kind, &expected, &shape, &config));
                    }
                    *lw.get_mut(kind).expect("the configuration has it") = data;
                }
                *weights.layer_mut(layer, dir) = lw;
            }
        }
        Ok(weights)
    }

    /// Serialises under PyTorch names behind `prefix` (e.g. `"lstm."` or
    /// `""`), in F32 for `f32` weights and F64 for `f64`, with the metadata
    /// `cell` and `activation` where they are not an LSTM's defaults (see
    /// the module notes).
    pub fn to_safetensors_bytes(&self, prefix: &str) -> Result<Vec<u8>> {
        let named: Vec<(String, Vec<usize>, &[T])> = self
            .named_params()
            .into_iter()
            .map(|(n, s, v)| (format!("{prefix}{n}"), s, v))
            .collect();
        io::serialize(&named, config_metadata(&self.config))
    }

    /// Saves as safetensors; PyTorch loads the file with
    /// `lstm.load_state_dict(safetensors.torch.load_file(path))` (or
    /// `gru.load_state_dict(...)`, with `prefix = ""`). The file is written
    /// whole or not at all.
    pub fn save_safetensors(&self, path: impl AsRef<Path>, prefix: &str) -> Result<()> {
        io::write_atomic(path.as_ref(), &self.to_safetensors_bytes(prefix)?)
    }
}

/// Why a tensor is missing, in terms of what the rest of the file implied.
fn missing_hint(
    kind: ParamKind,
    layer: usize,
    dir: usize,
    bias: bool,
    bidirectional: bool,
    num_layers: usize,
) -> String {
    let mut why = Vec::new();
    if kind.is_bias() && bias {
        why.push("other layers have biases");
    }
    if kind == ParamKind::WeightHr {
        why.push("other layers have projections (`weight_hr`)");
    }
    if kind.is_layer_norm() {
        why.push("other tensors are layer norms (`ln_*`), so the LSTM is layer-normalised");
    }
    if dir == 1 && bidirectional {
        why.push("other tensors are `_reverse`, so the LSTM is bidirectional");
    }
    if layer + 1 < num_layers {
        why.push("a deeper layer exists");
    }
    if why.is_empty() {
        String::new()
    } else {
        format!(" (needed because {})", why.join(" and "))
    }
}

/// A wrong shape is a plain [`LstmError::ShapeMismatch`], unless it is a
/// well-formed shape of the same cell for other sizes: then the layers
/// disagree.
fn shape_error(
    name: &str,
    kind: ParamKind,
    expected: &[usize],
    got: &[usize],
    config: &LstmConfig,
) -> LstmError {
    let g = config.gates();
    let cell_shaped = match (kind, got) {
        (ParamKind::WeightHh, [rows, h]) => *rows == g * h,
        (ParamKind::WeightIh, [rows, _]) => *rows % g == 0,
        (_, [rows]) => *rows % g == 0,
        _ => false,
    };
    if cell_shaped {
        let cell = match config.cell {
            Cell::Lstm => "an LSTM",
            Cell::Gru => "a GRU (gate rows 3H)",
        };
        LstmError::InconsistentLayers {
            reason: format!(
                "`{name}` has shape {got:?}, but layer 0 is {cell} with hidden_size {}, \
                 so it should be {expected:?}",
                config.hidden_size
            ),
        }
    } else {
        LstmError::shape(name, expected, got)
    }
}
