//! Tensors in safetensors files: reading the inputs a PyTorch script saved
//! (`safetensors.torch.save_file`), and writing results it can read back.
//!
//! ```
//! use wgpu_lstm::{Tensor, TensorFile, save_tensors};
//!
//! let dir = std::env::temp_dir().join(format!("wgpu-lstm-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("x.safetensors");
//! let x = Tensor::new(vec![2, 3], vec![0.5f32, 1.0, 1.5, 2.0, 2.5, 3.0])?;
//! save_tensors(&path, &[("input", &x)], None)?;
//!
//! let file = TensorFile::open(&path)?;
//! assert_eq!(file.names(), ["input"]);
//! assert_eq!(file.shape("input"), Some(vec![2, 3]));
//! let back: Tensor<f64> = file.float("input")?;
//! assert_eq!(back.data()[5], 3.0);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use safetensors::{Dtype, SafeTensors};

use crate::error::{LstmError, Result};
use crate::io;
use crate::real::Real;
use crate::tensor::Tensor;

/// A safetensors file read whole into memory and checked once: the header's
/// length and JSON, and that every tensor's data lies inside the file where
/// its shape and dtype say. A malformed or hostile file is a typed error
/// ([`LstmError::InvalidFile`]), never a panic.
#[derive(Clone)]
pub struct TensorFile {
    path: Option<PathBuf>,
    bytes: Vec<u8>,
    names: Vec<String>,
}

impl std::fmt::Debug for TensorFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorFile")
            .field("path", &self.path)
            .field("tensors", &self.names())
            .finish()
    }
}

impl TensorFile {
    /// Reads and checks the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        Self::checked(io::read_file(path)?, Some(path.to_path_buf()))
    }

    /// Checks a file already in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::checked(bytes, None)
    }

    fn checked(bytes: Vec<u8>, path: Option<PathBuf>) -> Result<Self> {
        let mut names: Vec<String> = io::parse(&bytes, path.as_deref())?
            .names()
            .into_iter()
            .map(str::to_string)
            .collect();
        names.sort_unstable();
        Ok(TensorFile { path, bytes, names })
    }

    /// The parsed file, for readers that take one, such as
    /// [`LstmWeights::from_safetensors`](crate::LstmWeights::from_safetensors).
    pub fn safetensors(&self) -> SafeTensors<'_> {
        // The bytes never change after the check in `open`/`from_bytes`.
        SafeTensors::deserialize(&self.bytes).expect("checked when the file was read")
    }

    /// The path the file was read from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The names of its tensors, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.names.iter().map(String::as_str).collect()
    }

    /// Whether the file holds a tensor called `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.safetensors().tensor(name).is_ok()
    }

    /// The dtype of tensor `name`, or `None` when there is no such tensor.
    pub fn dtype(&self, name: &str) -> Option<Dtype> {
        self.safetensors().tensor(name).ok().map(|v| v.dtype())
    }

    /// The shape of tensor `name`, or `None` when there is no such tensor.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.safetensors()
            .tensor(name)
            .ok()
            .map(|v| v.shape().to_vec())
    }

    /// The file's string metadata (`__metadata__`), empty when it has none.
    pub fn metadata(&self) -> HashMap<String, String> {
        SafeTensors::read_metadata(&self.bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().clone())
            .unwrap_or_default()
    }

    /// Tensor `name` converted to `T` from F32, F64, F16 or BF16; a missing
    /// tensor or another dtype is a typed error.
    pub fn float<T: Real>(&self, name: &str) -> Result<Tensor<T>> {
        io::read_float(&self.safetensors(), name)
    }

    /// Tensor `name` as `i64` values, from I64, I32, U32 or U8 (for example
    /// sequence lengths or class targets); a missing tensor or a float dtype
    /// is a typed error.
    pub fn integers(&self, name: &str) -> Result<Vec<i64>> {
        let st = self.safetensors();
        let view = st.tensor(name).map_err(|_| LstmError::MissingTensor {
            name: name.to_string(),
            hint: String::new(),
        })?;
        io::view_to_i64(name, &view)
    }
}

/// Writes named tensors to `path` as F32 (for `f32`) or F64 (for `f64`),
/// with optional string metadata, in a file `safetensors.torch.load_file`
/// reads. The file is written through a temporary file in the same folder
/// and a rename, so an existing file is replaced whole or not at all.
pub fn save_tensors<T: Real>(
    path: impl AsRef<Path>,
    tensors: &[(&str, &Tensor<T>)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let named: Vec<(String, Vec<usize>, &[T])> = tensors
        .iter()
        .map(|(n, t)| (n.to_string(), t.shape().to_vec(), t.data()))
        .collect();
    io::write_atomic(path.as_ref(), &io::serialize(&named, metadata)?)
}
