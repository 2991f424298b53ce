//! Safetensors plumbing shared by the weights loader, the tests and the CLI:
//! parse a buffer without ever panicking, convert float dtypes, and write
//! files atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::error::{LstmError, Result};
use crate::real::Real;
use crate::tensor::Tensor;

/// Reads a whole file, naming it in the error.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| LstmError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })
}

/// Parses a safetensors buffer. The safetensors crate checks the header
/// length against the buffer, the JSON, that the data offsets are contiguous
/// and non-overlapping, and that each tensor's byte size matches its shape.
pub fn parse<'a>(bytes: &'a [u8], path: Option<&Path>) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| LstmError::InvalidFile {
        path: path.map(Path::to_path_buf),
        reason: e.to_string(),
    })
}

/// The string metadata (`__metadata__`) of a safetensors buffer; empty when
/// it has none.
pub fn metadata(bytes: &[u8], path: Option<&Path>) -> Result<HashMap<String, String>> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| LstmError::InvalidFile {
        path: path.map(Path::to_path_buf),
        reason: e.to_string(),
    })?;
    Ok(meta.metadata().clone().unwrap_or_default())
}

/// Converts a float tensor (F32, F16, BF16 or F64) to `T`.
pub fn view_to_tensor<T: Real>(name: &str, view: &TensorView<'_>) -> Result<Tensor<T>> {
    fn decode<const N: usize, T: Real>(bytes: &[u8], f: impl Fn([u8; N]) -> f64) -> Vec<T> {
        bytes
            .chunks_exact(N)
            .map(|c| T::from_f64(f(c.try_into().expect("chunks_exact yields N bytes"))))
            .collect()
    }
    let bytes = view.data();
    let data: Vec<T> = match view.dtype() {
        Dtype::F32 => decode(bytes, |b| f32::from_le_bytes(b) as f64),
        Dtype::F64 => decode(bytes, f64::from_le_bytes),
        Dtype::F16 => decode(bytes, |b| half::f16::from_le_bytes(b).to_f64()),
        Dtype::BF16 => decode(bytes, |b| half::bf16::from_le_bytes(b).to_f64()),
        other => {
            return Err(LstmError::UnsupportedDtype {
                name: name.to_string(),
                dtype: format!("{other:?}"),
            });
        }
    };
    Tensor::new(view.shape().to_vec(), data)
}

/// Converts an integer tensor (I64, I32, U32 or U8) to `i64`.
pub fn view_to_i64(name: &str, view: &TensorView<'_>) -> Result<Vec<i64>> {
    let bytes = view.data();
    Ok(match view.dtype() {
        Dtype::I64 => bytes
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        Dtype::I32 => bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
            .collect(),
        Dtype::U32 => bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
            .collect(),
        Dtype::U8 => bytes.iter().map(|&b| b as i64).collect(),
        other => {
            return Err(LstmError::UnsupportedDtype {
                name: name.to_string(),
                dtype: format!("{other:?} (expected an integer dtype: I64 or I32)"),
            });
        }
    })
}

/// Reads tensor `name` as floats, or fails with [`LstmError::MissingTensor`].
pub fn read_float<T: Real>(st: &SafeTensors<'_>, name: &str) -> Result<Tensor<T>> {
    let view = st.tensor(name).map_err(|_| LstmError::MissingTensor {
        name: name.to_string(),
        hint: String::new(),
    })?;
    view_to_tensor(name, &view)
}

/// Serialises named tensors as little-endian F32 (for `f32`) or F64 (for `f64`).
pub fn serialize<T: Real>(
    tensors: &[(String, Vec<usize>, &[T])],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let dtype = if std::mem::size_of::<T>() == 8 {
        Dtype::F64
    } else {
        Dtype::F32
    };
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(dtype, shape.clone(), bytemuck::cast_slice(data))
                .map(|v| (name.clone(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| LstmError::value("tensor", e.to_string()))?;
    safetensors::serialize(views, metadata).map_err(|e| LstmError::value("tensor", e.to_string()))
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a
/// rename, so an existing file is replaced whole or not at all.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io_err = |action, path: PathBuf| {
        move |source| LstmError::Io {
            action,
            path,
            source,
        }
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| LstmError::value("path", format!("`{}` names no file", path.display())))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, bytes).map_err(io_err("write", tmp.clone()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err("replace", path.to_path_buf())(e)
    })
}
