//! Typed errors for everything a caller can get wrong.
//!
//! Every message says what was expected, what was given and, where it
//! helps, what to do next. Internal invariants use assertions instead.

use std::path::PathBuf;

/// The crate's result type.
pub type Result<T, E = LstmError> = std::result::Result<T, E>;

/// Everything that can go wrong at the library's boundary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LstmError {
    /// A configuration value is out of range (zero sizes, dropout outside [0, 1), ...).
    #[error("invalid configuration: `{field}` {reason}")]
    InvalidConfig {
        /// The offending field, by its PyTorch or builder name (`hidden_size`, `dropout`, ...).
        field: &'static str,
        /// What is wrong, with the value given (e.g. "must be in [0, 1), got 1.5").
        reason: String,
    },

    /// A tensor handed to the library has the wrong shape.
    #[error("tensor `{name}` has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor, by argument or parameter name (`input`, `h_0`, `weight_ih_l0`, ...).
        name: String,
        /// The shape the configuration calls for.
        expected: Vec<usize>,
        /// The shape given; for a flat slice, its length alone.
        got: Vec<usize>,
    },

    /// A value in a tensor or argument is not allowed (a length of 0, NaN, ...).
    #[error("invalid value in `{name}`: {reason}")]
    InvalidValue {
        /// The tensor or argument that holds the value.
        name: String,
        /// What is wrong, usually with the flat index and the value.
        reason: String,
    },

    /// A weights file lacks a tensor the architecture needs.
    #[error("missing tensor `{name}`{hint}")]
    MissingTensor {
        /// The `state_dict` name looked for, e.g. `weight_hh_l1_reverse`.
        name: String,
        /// Appended to the message as given (empty, or starting with a space):
        /// what the missing name suggests about the file's architecture.
        hint: String,
    },

    /// A weights file holds a tensor that no `nn.LSTM` or `nn.GRU` parameter
    /// explains.
    #[error(
        "unexpected tensor `{name}`: not an nn.LSTM or nn.GRU parameter (expected names \
         such as `weight_ih_l0`, `bias_hh_l1_reverse`, optionally behind a prefix like `lstm.`)"
    )]
    UnexpectedTensor {
        /// The tensor's name in the file, prefix included.
        name: String,
    },

    /// The tensors of a weights file disagree about the architecture.
    #[error("inconsistent layers: {reason}")]
    InconsistentLayers {
        /// Which tensors disagree, and how.
        reason: String,
    },

    /// A tensor's dtype cannot be converted to floating point.
    #[error("tensor `{name}` has dtype {dtype}; expected F32 (F16, BF16 and F64 are converted)")]
    UnsupportedDtype {
        /// The tensor's name in the file.
        name: String,
        /// The safetensors dtype found (e.g. `I64`), possibly with what was expected.
        dtype: String,
    },

    /// The bytes are not a valid safetensors file (truncated, hostile or another format).
    #[error("not a valid safetensors file{}: {reason}", path_suffix(.path))]
    InvalidFile {
        /// The file, or `None` when the bytes came from memory.
        path: Option<PathBuf>,
        /// What the parser rejected.
        reason: String,
    },

    /// The file holds a feature this version does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// No GPU adapter could be found.
    #[error(
        "no GPU adapter found{detail}. Install a GPU driver with Vulkan, Metal or DX12 support; \
         on Linux without a GPU, `apt-get install mesa-vulkan-drivers libvulkan1` provides the \
         software driver lavapipe"
    )]
    NoAdapter {
        /// Appended to the message as given (empty, or starting with a space):
        /// the `WGPU_ADAPTER_NAME` filter and the adapters seen, or wgpu's error.
        detail: String,
    },

    /// The adapter refused to create a device.
    #[error("GPU device request failed on `{adapter}`: {reason}")]
    DeviceRequest {
        /// The adapter's name, as wgpu reports it.
        adapter: String,
        /// wgpu's error message.
        reason: String,
    },

    /// The adapter lacks a wgpu feature that the requested mode needs.
    #[error(
        "{needed_for} needs the adapter feature `{feature}`, which `{adapter}` lacks; \
         use the default f32 precision, or choose another adapter with WGPU_ADAPTER_NAME \
         (`wgpu-lstm info` lists each adapter's features)"
    )]
    MissingFeature {
        /// The `wgpu::Features` flag, e.g. `SHADER_F16`.
        feature: &'static str,
        /// The adapter's name, as wgpu reports it.
        adapter: String,
        /// The mode that needs the feature, e.g. "f16 precision".
        needed_for: &'static str,
    },

    /// The device was lost (driver reset, GPU removed, out of memory, ...).
    #[error("GPU device lost: {0}")]
    DeviceLost(String),

    /// wgpu reported a validation, out-of-memory or internal error.
    #[error("GPU error: {0}")]
    Gpu(String),

    /// A buffer or dispatch would exceed a limit of the device.
    #[error(
        "{what} needs {requested} but the device's `{limit}` is {available}; \
         use a smaller batch, sequence or hidden size"
    )]
    DeviceLimit {
        /// The buffer or dispatch that does not fit, e.g. "buffer `gates`".
        what: String,
        /// The `wgpu::Limits` field exceeded, e.g. `max_buffer_size`.
        limit: &'static str,
        /// What `what` needs, in the limit's unit (bytes, workgroups, ...).
        requested: u64,
        /// The device's value of `limit`.
        available: u64,
    },

    /// The training loss became NaN or infinite; the parameters were not
    /// updated with it.
    #[error(
        "the loss became {loss} at step {step}; training stopped before that update \
         (lower the learning rate or clip gradients)"
    )]
    NonFiniteLoss {
        /// The failing step, counted from 0 (the optimizer steps completed before it).
        step: u64,
        /// The loss computed (NaN or ±inf).
        loss: f64,
    },

    /// Reading or writing a file failed.
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        /// The operation that failed, as a verb phrase ("read", "write", ...).
        action: &'static str,
        /// The file or folder operated on.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A blocking call needed to wait for the GPU where the host may not
    /// block (a browser's main thread): use the call's `_async` form.
    #[error(
        "`{call}` would have to wait for the GPU, which a browser does not allow; \
         await `{call}_async` instead"
    )]
    WouldBlock {
        /// The blocking call, such as `Lstm::forward`.
        call: &'static str,
    },
}

fn path_suffix(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!(" (`{}`)", p.display()),
        None => String::new(),
    }
}

impl LstmError {
    pub(crate) fn shape(name: impl Into<String>, expected: &[usize], got: &[usize]) -> Self {
        LstmError::ShapeMismatch {
            name: name.into(),
            expected: expected.to_vec(),
            got: got.to_vec(),
        }
    }

    pub(crate) fn value(name: impl Into<String>, reason: impl Into<String>) -> Self {
        LstmError::InvalidValue {
            name: name.into(),
            reason: reason.into(),
        }
    }
}
