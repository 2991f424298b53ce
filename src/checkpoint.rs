//! The one training-checkpoint format, written and read by the
//! [`Trainer`](crate::Trainer) on every device, so that a run saved on one
//! device resumes on another.
//!
//! A safetensors file with:
//! - every parameter under the names a PyTorch module with attributes
//!   `embedding`, `lstm` (an `nn.LSTM`) and `head` (an `nn.Linear`) has
//!   ([`Model::named_params`]), in PyTorch's layout;
//! - the optimizer's state under `optim.m.{name}` and `optim.v.{name}` for
//!   every parameter: Adam's first and second moments, or SGD's momentum
//!   buffer in `m` (zeros where the optimizer keeps nothing);
//! - the metadata `format` = [`FORMAT`] and `step`, the optimizer steps done,
//!   and the recurrent layer's `cell` and `activation` where a weights file
//!   has them (`weights/io.rs`).

use std::collections::HashMap;
use std::path::Path;

use crate::error::{LstmError, Result};
use crate::model::Model;

/// The `format` metadata of training checkpoints.
pub(crate) const FORMAT: &str = "wgpu-lstm-trainer-1";

/// A model, its optimizer state as two model-shaped lists (one tensor per
/// parameter, in [`Model::named_params`] order), and the step count.
pub(crate) struct Checkpoint {
    pub model: Model<f32>,
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    pub step: u64,
}

/// Writes `ckpt` through a temporary file and a rename, so an existing
/// checkpoint is never left half-written.
pub(crate) fn save(path: &Path, ckpt: &Checkpoint) -> Result<()> {
    let mut named: Vec<(String, Vec<usize>, &[f32])> = ckpt.model.named_params();
    let shapes: Vec<(String, Vec<usize>)> = named
        .iter()
        .map(|(n, s, _)| (n.clone(), s.clone()))
        .collect();
    for (slot, state) in [("m", &ckpt.m), ("v", &ckpt.v)] {
        for ((name, shape), values) in shapes.iter().zip(state) {
            named.push((format!("optim.{slot}.{name}"), shape.clone(), &values[..]));
        }
    }
    let mut meta = HashMap::from([
        ("format".to_string(), FORMAT.to_string()),
        ("step".to_string(), ckpt.step.to_string()),
    ]);
    // What a model file's metadata holds (the head's kind, the number of
    // recurrent modules, their cells and activations, the hidden layer's
    // activation), so that the tensors load as what they are.
    meta.extend(ckpt.model.metadata());
    crate::io::write_atomic(path, &crate::io::serialize(&named, Some(meta))?)
}

/// Reads a checkpoint for a model shaped like `like` (whose values are not
/// used). Everything is read and checked before anything is returned: a file
/// that is not a checkpoint, or one for another architecture, is a typed error.
pub(crate) fn load(path: &Path, like: &Model<f32>) -> Result<Checkpoint> {
    let bytes = crate::io::read_file(path)?;
    let st = crate::io::parse(&bytes, Some(path))?;
    let invalid = |reason: String| LstmError::InvalidFile {
        path: Some(path.to_path_buf()),
        reason,
    };
    let (_, meta) =
        safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| invalid(e.to_string()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(invalid(format!(
            "not a wgpu-lstm training checkpoint (metadata format should be {FORMAT:?})"
        )));
    }
    // The architecture beyond names and shapes: a cell or an activation of
    // another model is another architecture. (Checkpoints written before the
    // model metadata lack these keys, and are read as they were.)
    let ours = like.metadata();
    for (key, want) in &ours {
        let got = meta.get(key);
        let absent_default = got.is_none()
            && matches!(
                key.as_str(),
                "head_kind" | "recurrent_layers" | "hidden_activation"
            );
        if got != Some(want) && !absent_default {
            return Err(invalid(format!(
                "metadata `{key}` is {got:?}, but this model's is {want:?}: the checkpoint is \
                 for another architecture"
            )));
        }
    }
    for key in meta.keys() {
        let is_model_key = key.ends_with("cell") || key.ends_with("activation");
        if is_model_key && !ours.contains_key(key) {
            return Err(invalid(format!(
                "metadata `{key}` = {:?} describes a layer this model does not have: the \
                 checkpoint is for another architecture",
                meta[key]
            )));
        }
    }
    let step: u64 = meta
        .get("step")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("metadata lacks a step count".into()))?;
    let read = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let t = crate::io::read_float::<f32>(&st, name)?;
        if t.shape() != shape {
            return Err(LstmError::shape(name, shape, t.shape()));
        }
        Ok(t.into_data())
    };
    // A tensor no parameter names belongs to another architecture (such as
    // a deeper stack).
    let known: std::collections::HashSet<String> = like
        .named_params()
        .into_iter()
        .flat_map(|(n, _, _)| [format!("optim.m.{n}"), format!("optim.v.{n}"), n])
        .collect();
    if let Some(extra) = st.names().into_iter().find(|n| !known.contains(*n)) {
        return Err(invalid(format!(
            "holds `{extra}`, which this model does not have: the checkpoint is for another \
             architecture"
        )));
    }
    let (mut values, mut m, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for (name, shape, _) in like.named_params() {
        values.push(read(&name, &shape)?);
        m.push(read(&format!("optim.m.{name}"), &shape)?);
        v.push(read(&format!("optim.v.{name}"), &shape)?);
    }
    let mut model = like.clone();
    for (param, value) in model.params_mut().into_iter().zip(values) {
        param.copy_from_slice(&value);
    }
    Ok(Checkpoint { model, m, v, step })
}
