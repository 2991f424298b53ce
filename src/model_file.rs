//! A [`Model`] as one safetensors file, under the names of the equivalent
//! PyTorch module (see [`crate::model`]): `embedding.weight`, `lstm.*`,
//! `stack.{k}.*`, `hidden.weight`, `hidden.bias`, `head.weight`, `head.bias`.
//!
//! What a `state_dict` does not hold travels in the file's string metadata:
//! - `head_kind`: `per_step` or `last_step`;
//! - `hidden_activation` (`tanh` or `relu`) with a hidden dense layer;
//! - `recurrent_layers`: how many recurrent modules there are (`lstm` and
//!   each `stack.k`), so that a file missing its last one is refused (files
//!   without it, such as a PyTorch `state_dict`, take the modules present);
//! - the first module's `cell` and `activation` as in an LSTM weights file
//!   (written only where they differ from `nn.LSTM`'s), and module k ≥ 1's
//!   under `stack.{k-1}.cell` and `stack.{k-1}.activation`.
//!
//! Dropout rates are training settings, not parameters: a loaded model has
//! none (set them on each module's `config` to train on).

use std::collections::HashMap;
use std::path::Path;

use crate::config::Activation;
use crate::error::{LstmError, Result};
use crate::model::{Dense, HeadKind, Model, module_prefix};
use crate::real::Real;
use crate::reference::{Embedding, Linear};
use crate::weights::{LstmWeights, SafetensorsPrefix, config_metadata};

impl HeadKind {
    /// The name in a model file's metadata: `per_step` or `last_step`.
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::PerStep => "per_step",
            HeadKind::LastStep => "last_step",
        }
    }
}

impl<T: Real> Model<T> {
    /// What a model file's metadata holds beside the parameters (see the
    /// module notes); checkpoints hold it too.
    pub(crate) fn metadata(&self) -> HashMap<String, String> {
        let mut meta = HashMap::from([
            ("head_kind".to_string(), self.head_kind.name().to_string()),
            (
                "recurrent_layers".to_string(),
                (1 + self.stack.len()).to_string(),
            ),
        ]);
        if let Some(d) = &self.hidden {
            meta.insert("hidden_activation".into(), d.activation.name().into());
        }
        for (k, w) in self.recurrent().enumerate() {
            let prefix = if k == 0 {
                String::new()
            } else {
                module_prefix(k)
            };
            for (key, value) in config_metadata(&w.config).unwrap_or_default() {
                meta.insert(format!("{prefix}{key}"), value);
            }
        }
        meta
    }

    /// The model as safetensors bytes (see [`save_safetensors`](Self::save_safetensors)).
    pub fn to_safetensors_bytes(&self) -> Result<Vec<u8>> {
        crate::io::serialize(&self.named_params(), Some(self.metadata()))
    }

    /// Saves every parameter as one safetensors file, written whole or not
    /// at all, under the names of the PyTorch module that the README
    /// describes: PyTorch loads it with
    /// `module.load_state_dict(safetensors.torch.load_file(path))`.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::write_atomic(path.as_ref(), &self.to_safetensors_bytes()?)
    }

    /// Loads a model saved by [`save_safetensors`](Self::save_safetensors),
    /// or a PyTorch `state_dict` of the equivalent module saved with
    /// `safetensors.torch.save_file(sd, path, metadata={"head_kind": "last_step"})`.
    /// The architecture comes from the names and shapes; a file whose parts
    /// do not fit together, that misses a part, or that holds a tensor no
    /// part names, is a typed error.
    pub fn load_safetensors(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::read(&crate::io::read_file(path)?, Some(path))
    }

    /// Like [`load_safetensors`](Self::load_safetensors), from bytes in memory.
    pub fn from_safetensors_bytes(bytes: &[u8]) -> Result<Self> {
        Self::read(bytes, None)
    }

    fn read(bytes: &[u8], path: Option<&Path>) -> Result<Self> {
        let st = crate::io::parse(bytes, path)?;
        let meta = crate::io::metadata(bytes, path)?;
        let invalid = |reason: String| LstmError::InvalidFile {
            path: path.map(Path::to_path_buf),
            reason,
        };
        let head_kind = match meta.get("head_kind").map(String::as_str) {
            Some("per_step") => HeadKind::PerStep,
            Some("last_step") => HeadKind::LastStep,
            Some(other) => {
                return Err(invalid(format!(
                    "metadata `head_kind` is {other:?}; expected \"per_step\" or \"last_step\""
                )));
            }
            None => {
                return Err(invalid(
                    "metadata lacks `head_kind` (\"per_step\" or \"last_step\"), which a \
                     state_dict does not hold; give it when saving"
                        .into(),
                ));
            }
        };
        let names = st.names();
        let embedding = match names.contains(&"embedding.weight") {
            true => {
                let t = crate::io::read_float::<T>(&st, "embedding.weight")?;
                let &[num, dim] = t.shape() else {
                    return Err(LstmError::shape("embedding.weight", &[0, 0], t.shape()));
                };
                Some(Embedding {
                    num_embeddings: num,
                    embedding_dim: dim,
                    weight: t.into_data(),
                })
            }
            false => None,
        };
        // The modules: `lstm.`, then `stack.0.`, ... while they exist.
        let mut modules = Vec::new();
        loop {
            let prefix = module_prefix(modules.len());
            if !modules.is_empty() && !names.iter().any(|n| n.starts_with(&prefix)) {
                break;
            }
            let meta_k: HashMap<String, String> = match modules.len() {
                0 => meta.clone(),
                _ => meta
                    .iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix(&prefix)?.to_string(), v.clone())))
                    .collect(),
            };
            modules.push(LstmWeights::<T>::read(
                &st,
                &meta_k,
                SafetensorsPrefix::Exact(&prefix),
                path,
            )?);
        }
        let linear = |name: &str| -> Result<Linear<T>> {
            let [w, b] =
                ["weight", "bias"].map(|p| crate::io::read_float::<T>(&st, &format!("{name}.{p}")));
            let (w, b) = (w?, b?);
            let &[out_features, in_features] = w.shape() else {
                return Err(LstmError::shape(
                    format!("{name}.weight"),
                    &[0, 0],
                    w.shape(),
                ));
            };
            if b.shape() != [out_features] {
                return Err(LstmError::shape(
                    format!("{name}.bias"),
                    &[out_features],
                    b.shape(),
                ));
            }
            Ok(Linear {
                in_features,
                out_features,
                weight: w.into_data(),
                bias: b.into_data(),
            })
        };
        let hidden = match names.contains(&"hidden.weight") {
            true => {
                let activation = meta.get("hidden_activation").ok_or_else(|| {
                    invalid("metadata lacks `hidden_activation` (\"tanh\" or \"relu\")".into())
                })?;
                let activation =
                    Activation::from_name(activation).map_err(|e| invalid(e.to_string()))?;
                Some(Dense {
                    linear: linear("hidden")?,
                    activation,
                })
            }
            false => None,
        };
        if let Some(n) = meta.get("recurrent_layers")
            && n.parse::<usize>().ok() != Some(modules.len())
        {
            return Err(invalid(format!(
                "metadata `recurrent_layers` is {n:?}, but the file holds {} recurrent modules",
                modules.len()
            )));
        }
        let stack = modules.split_off(1);
        let model = Model {
            embedding,
            lstm: modules.pop().expect("the first module"),
            stack,
            hidden,
            head: linear("head")?,
            head_kind,
        };
        // Every tensor belongs to a part.
        let known: std::collections::HashSet<String> = model
            .named_params()
            .into_iter()
            .map(|(n, _, _)| n)
            .collect();
        if let Some(extra) = names.iter().find(|n| !known.contains(**n)) {
            return Err(LstmError::UnexpectedTensor {
                name: extra.to_string(),
            });
        }
        model.validate()?;
        Ok(model)
    }
}
