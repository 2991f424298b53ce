//! [`GpuTrainer`]'s model and optimizer state on the host: reading them
//! back, and saving and restoring training checkpoints.

use super::{GpuTrainer, NamedTensor, Param};
use crate::error::{LstmError, Result};
use crate::gpu::GpuTensor;
use crate::gpu::params::download_layers;
use crate::model::Model;
use crate::reference::{Embedding, Linear};

/// The `format` metadata of training checkpoints.
const CHECKPOINT_FORMAT: &str = "wgpu-lstm-trainer-1";

impl GpuTrainer {
    /// Reads the model back to the host (PyTorch layout).
    pub fn model(&self) -> Result<Model<f32>> {
        let (embedding, head) = self.host_head_and_embedding()?;
        Ok(Model {
            embedding,
            lstm: self.lstm.weights()?,
            head,
            head_kind: self.shape.head_kind,
        })
    }

    /// The optimizer's state as named tensors in PyTorch's layout:
    /// `"optim.m.{param}"` and `"optim.v.{param}"` (SGD keeps its momentum
    /// buffer in `m`).
    pub fn optimizer_state(&self) -> Result<Vec<NamedTensor>> {
        let cfg = self.lstm.config();
        let mut out = Vec::new();
        let names = self.own_names();
        for (which, slot) in ["m", "v"].iter().enumerate() {
            for (p, (name, shape)) in self.own.iter().zip(&names) {
                let buf = if which == 0 { &p.m } else { &p.v };
                let t = GpuTensor::from_buffer(buf.clone(), vec![p.len]).to_host(&self.ctx)?;
                out.push((format!("optim.{slot}.{name}"), shape.clone(), t.into_data()));
            }
            let w = download_layers(&self.ctx, cfg, &self.lstm_state[which])?;
            for (n, s, v) in w.named_params() {
                out.push((format!("optim.{slot}.lstm.{n}"), s, v.to_vec()));
            }
        }
        Ok(out)
    }

    /// The embedding and head parameters, read back.
    pub(super) fn host_head_and_embedding(&self) -> Result<(Option<Embedding<f32>>, Linear<f32>)> {
        let read = |p: &Param| -> Result<Vec<f32>> {
            Ok(GpuTensor::from_buffer(p.value.clone(), vec![p.len])
                .to_host(&self.ctx)?
                .into_data())
        };
        let mut own = self.own.iter();
        let embedding = match self.shape.embedding {
            Some((num, dim)) => Some(Embedding {
                num_embeddings: num,
                embedding_dim: dim,
                weight: read(own.next().expect("embedding"))?,
            }),
            None => None,
        };
        let (hw, hb) = (
            own.next().expect("head weight"),
            own.next().expect("head bias"),
        );
        let head = Linear {
            in_features: self.lstm.config().output_size(),
            out_features: self.shape.outputs,
            weight: read(hw)?,
            bias: read(hb)?,
        };
        Ok((embedding, head))
    }

    /// Saves the model and the optimizer state as safetensors: parameters
    /// under the names a PyTorch module with attributes `embedding`, `lstm`
    /// (an `nn.LSTM`) and `head` (an `nn.Linear`) has, optimizer state under
    /// `optim.m.*` and `optim.v.*`, and the step count in the metadata. The
    /// file is written through a temporary file and a rename, so an existing
    /// checkpoint is never left half-written.
    pub fn save_checkpoint(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let model = self.model()?;
        let state = self.optimizer_state()?;
        let mut named: Vec<(String, Vec<usize>, &[f32])> = model.named_params();
        named.extend(state.iter().map(|(n, s, v)| (n.clone(), s.clone(), &v[..])));
        let meta = std::collections::HashMap::from([
            ("format".to_string(), CHECKPOINT_FORMAT.to_string()),
            ("step".to_string(), self.step.to_string()),
        ]);
        crate::io::write_atomic(path.as_ref(), &crate::io::serialize(&named, Some(meta))?)
    }

    /// Restores a checkpoint written by [`save_checkpoint`](Self::save_checkpoint)
    /// for a model of the same architecture; training then continues exactly
    /// as it would have. A checkpoint for another model is a typed error, and
    /// nothing changes.
    pub fn load_checkpoint(&mut self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = crate::io::read_file(path)?;
        let st = crate::io::parse(&bytes, Some(path))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| {
            LstmError::InvalidFile {
                path: Some(path.to_path_buf()),
                reason: e.to_string(),
            }
        })?;
        let meta = meta.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
            return Err(LstmError::InvalidFile {
                path: Some(path.to_path_buf()),
                reason: format!(
                    "not a wgpu-lstm training checkpoint (metadata format should be {CHECKPOINT_FORMAT:?})"
                ),
            });
        }
        let step: u64 = meta
            .get("step")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| LstmError::InvalidFile {
                path: Some(path.to_path_buf()),
                reason: "metadata lacks a step count".into(),
            })?;
        // Read and check everything before writing anything.
        let cfg = self.lstm.config().clone();
        let lstm_of = |prefix: &str| -> Result<crate::weights::LstmWeights<f32>> {
            let mut w = crate::weights::LstmWeights::<f32>::from_safetensors(
                &st,
                crate::weights::SafetensorsPrefix::Exact(prefix),
            )?;
            w.config.batch_first = cfg.batch_first;
            w.config.dropout = cfg.dropout;
            if w.config != cfg {
                return Err(LstmError::InconsistentLayers {
                    reason: format!(
                        "the checkpoint's LSTM is {:?}, this model's {:?}",
                        w.config, cfg
                    ),
                });
            }
            Ok(w)
        };
        let lstm = lstm_of("lstm.")?;
        let lstm_m = lstm_of("optim.m.lstm.")?;
        let lstm_v = lstm_of("optim.v.lstm.")?;
        let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let t = crate::io::read_float::<f32>(&st, name)?;
            if t.shape() != shape {
                return Err(LstmError::shape(name, shape, t.shape()));
            }
            Ok(t.into_data())
        };
        let mut own = Vec::new();
        for (name, shape) in self.own_names() {
            own.push([
                read(&name, &shape)?,
                read(&format!("optim.m.{name}"), &shape)?,
                read(&format!("optim.v.{name}"), &shape)?,
            ]);
        }
        let q = self.ctx.queue();
        for (p, [value, m, v]) in self.own.iter().zip(&own) {
            q.write_buffer(&p.value, 0, bytemuck::cast_slice(value));
            q.write_buffer(&p.m, 0, bytemuck::cast_slice(m));
            q.write_buffer(&p.v, 0, bytemuck::cast_slice(v));
        }
        self.lstm.set_weights(&lstm)?;
        self.lstm.write_like_params(&lstm_m, &self.lstm_state[0]);
        self.lstm.write_like_params(&lstm_v, &self.lstm_state[1]);
        self.step = step;
        self.ctx.check()
    }

    pub(super) fn own_names(&self) -> Vec<(String, Vec<usize>)> {
        let mut names = Vec::new();
        if let Some((v, d)) = self.shape.embedding {
            names.push(("embedding.weight".to_string(), vec![v, d]));
        }
        let f = self.lstm.config().output_size();
        names.push(("head.weight".into(), vec![self.shape.outputs, f]));
        names.push(("head.bias".into(), vec![self.shape.outputs]));
        names
    }
}
