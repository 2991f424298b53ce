//! [`GpuTrainer`]'s model and optimizer state on the host: reading them
//! back, and saving and restoring training checkpoints in the format of
//! [`crate::checkpoint`].

use super::{GpuTrainer, Param};
use crate::checkpoint::{self, Checkpoint};
use crate::error::Result;
use crate::gpu::GpuTensor;
use crate::gpu::params::download_layers;
use crate::model::{Dense, Model};
use crate::reference::{Embedding, Linear};

/// The parameters the trainer keeps outside the recurrent modules (the
/// embedding's weight, the hidden layer's weight and bias, then the head's),
/// in the order of its `own` list.
pub(super) fn own_params_mut(model: &mut Model<f32>) -> Vec<&mut [f32]> {
    let mut out: Vec<&mut [f32]> = Vec::new();
    if let Some(e) = &mut model.embedding {
        out.push(&mut e.weight);
    }
    if let Some(d) = &mut model.hidden {
        out.push(&mut d.linear.weight);
        out.push(&mut d.linear.bias);
    }
    out.push(&mut model.head.weight);
    out.push(&mut model.head.bias);
    out
}

impl GpuTrainer {
    /// Reads the model back to the host (PyTorch layout).
    pub fn model(&self) -> Result<Model<f32>> {
        crate::runtime::block_on("GpuTrainer::model", self.model_async())
    }

    /// [`model`](Self::model), awaiting the read-back (what a browser needs).
    pub async fn model_async(&self) -> Result<Model<f32>> {
        let (embedding, hidden, head) = self.host_head_and_embedding_async().await?;
        let mut modules = Vec::with_capacity(self.lstms.len());
        for l in &self.lstms {
            modules.push(l.weights_async().await?);
        }
        let stack = modules.split_off(1);
        Ok(Model {
            embedding,
            lstm: modules.pop().expect("a first module"),
            stack,
            hidden,
            head,
            head_kind: self.shape.head_kind,
        })
    }

    /// The optimizer's state shaped like the model: for each parameter,
    /// Adam's first moment (`which` = 0) or second moment (1), or SGD's
    /// momentum buffer (0), as the checkpoint stores them.
    fn moments_model(&self, model: &Model<f32>, which: usize) -> Result<Model<f32>> {
        let mut out = model.clone();
        let own = self
            .own
            .iter()
            .map(|p| {
                let buf = if which == 0 { &p.m } else { &p.v };
                Ok(GpuTensor::from_buffer(buf.clone(), vec![p.len])
                    .to_host(&self.ctx)?
                    .into_data())
            })
            .collect::<Result<Vec<_>>>()?;
        let mut modules = self
            .lstms
            .iter()
            .zip(&self.lstm_state)
            .map(|(l, state)| download_layers(&self.ctx, l.config(), &state[which]));
        out.lstm = modules.next().expect("a first module")?;
        for (dst, src) in out.stack.iter_mut().zip(modules) {
            *dst = src?;
        }
        for (dst, src) in own_params_mut(&mut out).into_iter().zip(own) {
            dst.copy_from_slice(&src);
        }
        Ok(out)
    }

    /// The embedding, hidden layer and head parameters, read back.
    #[allow(clippy::type_complexity)]
    pub(super) async fn host_head_and_embedding_async(
        &self,
    ) -> Result<(Option<Embedding<f32>>, Option<Dense<f32>>, Linear<f32>)> {
        // One read-back per parameter (each fits the device's buffer limit).
        let mut host = Vec::with_capacity(self.own.len());
        for p in &self.own {
            let t = GpuTensor::from_buffer(p.value.clone(), vec![p.len]);
            host.push(t.to_host_async(&self.ctx).await?.into_data());
        }
        let mut host = host.into_iter();
        let mut read = |_: &Param| -> Result<Vec<f32>> {
            Ok(host
                .next()
                .expect("one per parameter, in the order of `own`"))
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
        let hidden = match self.shape.hidden {
            Some((units, activation)) => Some(Dense {
                linear: Linear {
                    in_features: self.shape.features(),
                    out_features: units,
                    weight: read(own.next().expect("hidden weight"))?,
                    bias: read(own.next().expect("hidden bias"))?,
                },
                activation,
            }),
            None => None,
        };
        let (hw, hb) = (
            own.next().expect("head weight"),
            own.next().expect("head bias"),
        );
        let head = Linear {
            in_features: self.shape.head_inputs(),
            out_features: self.shape.outputs,
            weight: read(hw)?,
            bias: read(hb)?,
        };
        Ok((embedding, hidden, head))
    }

    /// Saves the model and the optimizer state in the one checkpoint format
    /// of every device (see [`crate::Trainer::save_checkpoint`]), through a
    /// temporary file and a rename.
    pub fn save_checkpoint(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        let model = self.model()?;
        let [m, v] = [0, 1].map(|which| self.moments_model(&model, which));
        let list = |m: Model<f32>| -> Vec<Vec<f32>> {
            m.named_params()
                .into_iter()
                .map(|(_, _, v)| v.to_vec())
                .collect()
        };
        let ckpt = Checkpoint {
            m: list(m?),
            v: list(v?),
            model,
            step: self.step,
        };
        checkpoint::save(path.as_ref(), &ckpt)
    }

    /// Restores a checkpoint written on any device for a model of the same
    /// architecture; training then continues exactly as it would have. A
    /// checkpoint for another model is a typed error, and nothing changes.
    pub fn load_checkpoint(&mut self, path: impl AsRef<std::path::Path>) -> Result<()> {
        // Read and check everything before writing anything.
        let ckpt = checkpoint::load(path.as_ref(), &self.model()?)?;
        let shaped = |values: &[Vec<f32>]| {
            let mut out = ckpt.model.clone();
            for (dst, src) in out.params_mut().into_iter().zip(values) {
                dst.copy_from_slice(src);
            }
            out
        };
        let (mut m, mut v) = (shaped(&ckpt.m), shaped(&ckpt.v));
        let mut model = ckpt.model;
        let q = self.ctx.queue();
        let own = own_params_mut(&mut model)
            .into_iter()
            .zip(own_params_mut(&mut m))
            .zip(own_params_mut(&mut v));
        for (p, ((value, m), v)) in self.own.iter().zip(own) {
            q.write_buffer(&p.value, 0, bytemuck::cast_slice(value));
            q.write_buffer(&p.m, 0, bytemuck::cast_slice(m));
            q.write_buffer(&p.v, 0, bytemuck::cast_slice(v));
        }
        let modules = model.recurrent().zip(m.recurrent()).zip(v.recurrent());
        for ((lstm, state), ((w, m), v)) in self.lstms.iter_mut().zip(&self.lstm_state).zip(modules)
        {
            lstm.set_weights(w)?;
            lstm.write_like_params(m, &state[0]);
            lstm.write_like_params(v, &state[1]);
        }
        self.step = ckpt.step;
        self.carrying = false;
        // Gradients accumulated since the last update are not in a checkpoint.
        self.pending = 0;
        for acc in &self.accumulators {
            let zeros = vec![0u8; acc.size() as usize];
            self.ctx.queue().write_buffer(acc, 0, &zeros);
        }
        self.ctx.check()
    }
}
