//! wgpu-lstm for JavaScript: the library on the browser's WebGPU (or the CPU
//! engine, in WebAssembly), through wasm-bindgen.
//!
//! Build with `web/build.sh` (`wasm-bindgen --target web`, no bundler); the
//! README's "In the browser" section lists the API. Every call that reads a
//! result back from the GPU returns a `Promise`: a browser's main thread may
//! not block, so these use the library's `_async` forms. Errors are thrown
//! (or rejected) as JavaScript `Error`s carrying the library's messages.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Float32Array, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use wgpu_lstm as wl;
use wl::model::{Batch, HeadKind, Inputs, LossKind, TrainConfig};
use wl::weights::SafetensorsPrefix;
use wl::{Cell, LstmConfig, LstmInput, OptimizerKind, Tensor, TensorFile};

/// A JavaScript `Error` with `message`.
fn js_error(message: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&message.to_string()).into()
}

/// The library's error as a JavaScript `Error`.
fn lib_error(e: wl::LstmError) -> JsValue {
    js_error(e)
}

/// A shape given from JavaScript as an array of non-negative integers.
fn shape3(shape: &[u32], what: &str) -> Result<[usize; 3], JsValue> {
    match shape {
        &[a, b, c] => Ok([a as usize, b as usize, c as usize]),
        _ => Err(js_error(format!(
            "{what}: the shape must be [T, B, I] (three numbers), got {shape:?}"
        ))),
    }
}

/// A call on an object that is still busy with an earlier, un-awaited one.
fn busy(what: &str) -> JsValue {
    js_error(format!(
        "{what} is still running an earlier call; await it before the next"
    ))
}

/// An object that JavaScript holds, lent to one call at a time. A call takes
/// it when it is made, synchronously, and an async call gives it back when
/// its promise settles: calls on one object run in the order they were
/// made, and a call made while an earlier one is still running gets a
/// "still running" error instead of interleaving with it.
struct Shared<T>(Rc<RefCell<Option<T>>>);

impl<T> Shared<T> {
    fn new(value: T) -> Self {
        Shared(Rc::new(RefCell::new(Some(value))))
    }

    /// The object, until the lease is dropped; `what` names it in the error.
    fn lease(&self, what: &str) -> Result<Lease<T>, JsValue> {
        let value = self.0.borrow_mut().take().ok_or_else(|| busy(what))?;
        Ok(Lease {
            slot: self.0.clone(),
            value: Some(value),
        })
    }
}

/// A [`Shared`] object taken for one call; dropping it gives it back.
struct Lease<T> {
    slot: Rc<RefCell<Option<T>>>,
    value: Option<T>,
}

impl<T> std::ops::Deref for Lease<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value.as_ref().expect("held until dropped")
    }
}

impl<T> std::ops::DerefMut for Lease<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value.as_mut().expect("held until dropped")
    }
}

impl<T> Drop for Lease<T> {
    fn drop(&mut self) {
        *self.slot.borrow_mut() = self.value.take();
    }
}

fn shape_array(shape: &[usize]) -> Array {
    shape.iter().map(|&d| JsValue::from(d as u32)).collect()
}

/// The version of the library.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Where models run: the browser's WebGPU adapter, or the CPU engine (one
/// thread, in WebAssembly).
#[wasm_bindgen]
pub struct Device {
    inner: wl::Device,
    /// What the browser says of its adapter (WebGPU's `GPUAdapterInfo`).
    label: Option<String>,
}

/// Reads `obj[key]` as a string, if it is one.
fn js_string(obj: &JsValue, key: &str) -> Option<String> {
    js_sys::Reflect::get(obj, &key.into())
        .ok()?
        .as_string()
        .filter(|s| !s.is_empty())
}

/// The browser's own words for its WebGPU adapter, from `GPUAdapterInfo`:
/// its description, else vendor and architecture (`google swiftshader`), and
/// whether it is a fallback (software) adapter. wgpu reports only the
/// description, which headless Chromium leaves empty.
async fn adapter_label() -> Option<String> {
    let navigator = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let gpu = js_sys::Reflect::get(&navigator, &"gpu".into()).ok()?;
    let request = js_sys::Reflect::get(&gpu, &"requestAdapter".into()).ok()?;
    // The options wgpu asked with (`GpuContext::new`): the same adapter.
    let options = js_sys::Object::new();
    js_sys::Reflect::set(
        &options,
        &"powerPreference".into(),
        &"high-performance".into(),
    )
    .ok()?;
    let promise = js_sys::Function::from(request).call1(&gpu, &options).ok()?;
    let adapter = wasm_bindgen_futures::JsFuture::from(Promise::from(promise))
        .await
        .ok()?;
    let info = js_sys::Reflect::get(&adapter, &"info".into()).ok()?;
    let name = js_string(&info, "description").or_else(|| {
        let parts: Vec<String> = ["vendor", "architecture", "device"]
            .iter()
            .filter_map(|k| js_string(&info, k))
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    })?;
    let fallback = js_sys::Reflect::get(&info, &"isFallbackAdapter".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Some(format!(
        "{name} (WebGPU{})",
        if fallback { ", fallback adapter" } else { "" }
    ))
}

#[wasm_bindgen]
impl Device {
    /// `"gpu"`: the browser's WebGPU adapter (an error when it has none);
    /// `"cpu"`: the CPU engine; `"auto"`: a hardware GPU, else the CPU
    /// engine (a software adapter such as SwiftShader is not taken).
    /// `precision` is `"f32"` (the default) or `"f16"`: f16 storage on a GPU
    /// whose adapter has `shader-f16` (an error elsewhere).
    pub async fn create(kind: String, precision: Option<String>) -> Result<Device, JsValue> {
        let inner = match kind.as_str() {
            "gpu" => wl::Device::gpu_async().await.map_err(lib_error)?,
            "cpu" => wl::Device::cpu(),
            "auto" => wl::Device::auto_async().await,
            other => {
                return Err(js_error(format!(
                    "device {other:?}: use \"gpu\", \"cpu\" or \"auto\""
                )));
            }
        };
        let inner = match precision.as_deref() {
            None | Some("f32") => inner,
            Some("f16") => inner
                .with_precision(wl::Precision::F16)
                .map_err(lib_error)?,
            Some(other) => {
                return Err(js_error(format!(
                    "precision {other:?}: use \"f32\" or \"f16\""
                )));
            }
        };
        let label = match inner.is_gpu() {
            true => adapter_label().await,
            false => None,
        };
        Ok(Device { inner, label })
    }

    /// The adapter's name and backend (as the browser describes it), or the
    /// CPU engine.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        match &self.label {
            Some(label) => label.clone(),
            None => self.inner.name(),
        }
    }

    /// Whether work runs on a GPU adapter.
    #[wasm_bindgen(getter, js_name = isGpu)]
    pub fn is_gpu(&self) -> bool {
        self.inner.is_gpu()
    }
}

/// `nn.LSTM(...)` or `nn.GRU(...)`, as PyTorch prints the module.
fn describe_config(c: &LstmConfig) -> String {
    let module = match c.cell {
        Cell::Gru => "GRU",
        _ => "LSTM",
    };
    let py = |b: bool| if b { "True" } else { "False" };
    let mut s = format!(
        "nn.{module}(input_size={}, hidden_size={}, num_layers={}, bias={}, bidirectional={}",
        c.input_size,
        c.hidden_size,
        c.num_layers,
        py(c.bias),
        py(c.bidirectional)
    );
    if c.proj_size > 0 {
        s.push_str(&format!(", proj_size={}", c.proj_size));
    }
    s.push(')');
    s
}

/// The result of a forward pass: `output`, `h_n` and `c_n` with their
/// shapes (a GRU's `c_n` is empty).
#[wasm_bindgen]
pub struct LstmResult {
    inner: wl::LstmOutput<f32>,
}

#[wasm_bindgen]
impl LstmResult {
    /// [T, B, D·H_out] (or [B, T, D·H_out] batch-first).
    #[wasm_bindgen(getter)]
    pub fn output(&self) -> Float32Array {
        Float32Array::from(self.inner.output.data())
    }

    #[wasm_bindgen(getter, js_name = outputShape)]
    pub fn output_shape(&self) -> Array {
        shape_array(self.inner.output.shape())
    }

    /// [D·L, B, H_out].
    #[wasm_bindgen(getter, js_name = hN)]
    pub fn h_n(&self) -> Float32Array {
        Float32Array::from(self.inner.h_n.data())
    }

    #[wasm_bindgen(getter, js_name = hNShape)]
    pub fn h_n_shape(&self) -> Array {
        shape_array(self.inner.h_n.shape())
    }

    /// [D·L, B, H] (empty for a GRU).
    #[wasm_bindgen(getter, js_name = cN)]
    pub fn c_n(&self) -> Float32Array {
        Float32Array::from(self.inner.c_n.data())
    }

    #[wasm_bindgen(getter, js_name = cNShape)]
    pub fn c_n_shape(&self) -> Array {
        shape_array(self.inner.c_n.shape())
    }
}

/// An `nn.LSTM` or `nn.GRU` in evaluation mode on a device.
#[wasm_bindgen]
pub struct Lstm {
    inner: Shared<wl::Lstm>,
    config: LstmConfig,
}

/// The tensors an input file (the command-line tool's IN) may hold.
const IN_NAMES: [&str; 4] = ["input", "h_0", "c_0", "lengths"];

#[wasm_bindgen]
impl Lstm {
    /// A PyTorch `state_dict` of an `nn.LSTM` or `nn.GRU` saved with
    /// safetensors, from its bytes; the prefix every key shares (such as
    /// `lstm.`) is found by itself.
    #[wasm_bindgen(js_name = fromSafetensors)]
    pub fn from_safetensors(device: &Device, bytes: &[u8]) -> Result<Lstm, JsValue> {
        let weights =
            wl::LstmWeights::<f32>::from_safetensors_bytes(bytes, SafetensorsPrefix::Auto)
                .map_err(lib_error)?;
        let config = weights.config.clone();
        let inner = wl::Lstm::new(&device.inner, &weights).map_err(lib_error)?;
        Ok(Lstm {
            inner: Shared::new(inner),
            config,
        })
    }

    /// The module as PyTorch prints it.
    #[wasm_bindgen(getter)]
    pub fn describe(&self) -> String {
        describe_config(&self.config)
    }

    #[wasm_bindgen(getter, js_name = inputSize)]
    pub fn input_size(&self) -> u32 {
        self.config.input_size as u32
    }

    #[wasm_bindgen(getter, js_name = hiddenSize)]
    pub fn hidden_size(&self) -> u32 {
        self.config.hidden_size as u32
    }

    /// `lstm(input)` from zeros: `x` is [T, B, I] (time-major). Resolves to
    /// an [`LstmResult`].
    pub fn forward(&self, x: Float32Array, shape: Vec<u32>) -> Result<Promise, JsValue> {
        let shape = shape3(&shape, "forward")?;
        let input = Tensor::new(shape, x.to_vec()).map_err(lib_error)?;
        let mut lstm = self.inner.lease("Lstm")?;
        Ok(future_to_promise(async move {
            let out = lstm
                .forward_async(&LstmInput::new(&input))
                .await
                .map_err(lib_error)?;
            Ok(LstmResult { inner: out }.into())
        }))
    }

    /// The forward pass of an input file, as the command-line tool's IN: a
    /// safetensors file holding `input` ([T, B, I]), optionally `h_0` and
    /// `c_0` ([D·L, B, H]; for a GRU `h_0` alone) and `lengths` ([B]).
    /// Resolves to an [`LstmResult`].
    #[wasm_bindgen(js_name = forwardFile)]
    pub fn forward_file(&self, bytes: &[u8]) -> Result<Promise, JsValue> {
        let file = TensorFile::from_bytes(bytes.to_vec()).map_err(lib_error)?;
        if let Some(name) = file.names().into_iter().find(|n| !IN_NAMES.contains(n)) {
            return Err(js_error(format!(
                "unexpected tensor `{name}` in the input file; it may hold only \
                 `input`, `h_0`, `c_0` and `lengths`"
            )));
        }
        let float = |name: &str| -> Result<Option<Tensor<f32>>, JsValue> {
            match file.contains(name) {
                true => file.float::<f32>(name).map(Some).map_err(lib_error),
                false => Ok(None),
            }
        };
        let input =
            float("input")?.ok_or_else(|| js_error("missing tensor `input` in the input file"))?;
        let (h_0, c_0) = (float("h_0")?, float("c_0")?);
        let lengths = match file.contains("lengths") {
            true => Some(
                file.integers("lengths")
                    .map_err(lib_error)?
                    .into_iter()
                    .map(|l| {
                        usize::try_from(l)
                            .map_err(|_| js_error(format!("lengths: {l} is negative")))
                    })
                    .collect::<Result<Vec<usize>, JsValue>>()?,
            ),
            false => None,
        };
        let mut lstm = self.inner.lease("Lstm")?;
        Ok(future_to_promise(async move {
            let mut x = LstmInput::new(&input);
            x.h_0 = h_0.as_ref();
            x.c_0 = c_0.as_ref();
            x.lengths = lengths.as_deref();
            let out = lstm.forward_async(&x).await.map_err(lib_error)?;
            Ok(LstmResult { inner: out }.into())
        }))
    }

    /// Streaming (Keras' `stateful=True`): starts from the state the last
    /// call left. Resolves to an [`LstmResult`].
    #[wasm_bindgen(js_name = forwardStateful)]
    pub fn forward_stateful(&self, x: Float32Array, shape: Vec<u32>) -> Result<Promise, JsValue> {
        let shape = shape3(&shape, "forwardStateful")?;
        let input = Tensor::new(shape, x.to_vec()).map_err(lib_error)?;
        let mut lstm = self.inner.lease("Lstm")?;
        Ok(future_to_promise(async move {
            let out = lstm
                .forward_stateful_async(&LstmInput::new(&input))
                .await
                .map_err(lib_error)?;
            Ok(LstmResult { inner: out }.into())
        }))
    }

    /// Forgets the carried state.
    #[wasm_bindgen(js_name = resetState)]
    pub fn reset_state(&self) -> Result<(), JsValue> {
        self.inner.lease("Lstm")?.reset_state();
        Ok(())
    }
}

/// A model: an optional embedding, recurrent layers, an optional hidden
/// dense layer and a linear head (the library's `Model`).
#[wasm_bindgen]
pub struct Model {
    inner: wl::Model<f32>,
}

fn head_kind(head: &str) -> Result<HeadKind, JsValue> {
    match head {
        "last" => Ok(HeadKind::LastStep),
        "per_step" => Ok(HeadKind::PerStep),
        other => Err(js_error(format!(
            "head {other:?}: use \"last\" or \"per_step\""
        ))),
    }
}

#[wasm_bindgen]
impl Model {
    /// A model file (as `Model::save_safetensors` writes, or a PyTorch
    /// `state_dict` of the README's `Stack` module with its metadata).
    #[wasm_bindgen(js_name = fromSafetensors)]
    pub fn from_safetensors(bytes: &[u8]) -> Result<Model, JsValue> {
        let inner = wl::Model::<f32>::from_safetensors_bytes(bytes).map_err(lib_error)?;
        Ok(Model { inner })
    }

    /// A freshly initialised `nn.LSTM(input_size, hidden_size)` feeding an
    /// `nn.Linear(hidden_size, outputs)` head that reads the last step
    /// (`"last"`) or every step (`"per_step"`), from `seed`.
    pub fn lstm(
        input_size: u32,
        hidden_size: u32,
        outputs: u32,
        head: &str,
        seed: f64,
    ) -> Result<Model, JsValue> {
        let cfg = LstmConfig::new(input_size as usize, hidden_size as usize);
        let inner =
            wl::Model::<f32>::new(None, &cfg, outputs as usize, head_kind(head)?, seed as u64)
                .map_err(lib_error)?;
        Ok(Model { inner })
    }

    /// The model file's bytes.
    #[wasm_bindgen(js_name = toSafetensors)]
    pub fn to_safetensors(&self) -> Result<Uint8Array, JsValue> {
        let bytes = self.inner.to_safetensors_bytes().map_err(lib_error)?;
        Ok(Uint8Array::from(bytes.as_slice()))
    }

    /// The layers, one per line.
    #[wasm_bindgen(getter)]
    pub fn describe(&self) -> String {
        let m = &self.inner;
        let mut lines = Vec::new();
        if let Some(e) = &m.embedding {
            lines.push(format!(
                "nn.Embedding({}, {})",
                e.num_embeddings, e.embedding_dim
            ));
        }
        lines.push(describe_config(&m.lstm.config));
        for s in &m.stack {
            lines.push(describe_config(&s.config));
        }
        if let Some(d) = &m.hidden {
            lines.push(format!(
                "nn.Linear({}, {}) + {:?}",
                d.linear.in_features, d.linear.out_features, d.activation
            ));
        }
        lines.push(format!(
            "nn.Linear({}, {}) on {}",
            m.head.in_features,
            m.head.out_features,
            match m.head_kind {
                HeadKind::LastStep => "the last step",
                HeadKind::PerStep => "every step",
            }
        ));
        lines.join("\n")
    }

    /// The vocabulary of the embedding (0 without one).
    #[wasm_bindgen(getter, js_name = vocabSize)]
    pub fn vocab_size(&self) -> u32 {
        self.inner
            .embedding
            .as_ref()
            .map_or(0, |e| e.num_embeddings as u32)
    }
}

/// Trains a [`Model`] on a device: `step` encodes a whole training step
/// (forward, loss, backward, optimizer) without reading anything back;
/// `loss`, `predict` and `model` read back and return `Promise`s.
#[wasm_bindgen]
pub struct Trainer {
    inner: Shared<wl::Trainer>,
    input_size: usize,
    /// The head's outputs and which steps it reads.
    head: (usize, HeadKind),
}

#[wasm_bindgen]
impl Trainer {
    /// `loss`: `"mse"`, `"bce"` (`BCEWithLogitsLoss`) or `"cross_entropy"`;
    /// `optimizer`: `"adam"` or `"sgd"`, at learning rate `lr`. The model
    /// is copied.
    #[wasm_bindgen(constructor)]
    pub fn new(
        device: &Device,
        model: &Model,
        loss: &str,
        optimizer: &str,
        lr: f64,
    ) -> Result<Trainer, JsValue> {
        let loss = match loss {
            "mse" => LossKind::Mse,
            "bce" => LossKind::BceWithLogits,
            "cross_entropy" => LossKind::CrossEntropy { ignore_index: None },
            other => {
                return Err(js_error(format!(
                    "loss {other:?}: use \"mse\", \"bce\" or \"cross_entropy\""
                )));
            }
        };
        let optimizer = match optimizer {
            "adam" => OptimizerKind::adam(lr),
            "sgd" => OptimizerKind::sgd(lr),
            other => {
                return Err(js_error(format!(
                    "optimizer {other:?}: use \"adam\" or \"sgd\""
                )));
            }
        };
        let m = &model.inner;
        if m.embedding.is_some() {
            return Err(js_error(
                "Trainer: this model has an embedding, and the JavaScript Trainer takes \
                 features ([T, B, I] floats); train token models from Rust",
            ));
        }
        let inner = wl::Trainer::new(
            &device.inner,
            model.inner.clone(),
            TrainConfig::new(loss, optimizer),
        )
        .map_err(lib_error)?;
        Ok(Trainer {
            inner: Shared::new(inner),
            input_size: m.lstm.config.input_size,
            head: (m.head.out_features, m.head_kind),
        })
    }

    /// One training step on features `x` ([T, B, I], time-major) and
    /// `targets` ([B, O] for a last-step head, [T, B, O] per step; class ids
    /// for cross-entropy). Reads nothing back.
    pub fn step(&self, x: &[f32], shape: Vec<u32>, targets: &[f32]) -> Result<(), JsValue> {
        let [t, b, _] = shape3(&shape, "step")?;
        let mut trainer = self.inner.lease("Trainer")?;
        let classes: Vec<i64>;
        let loss = trainer.config().loss;
        let targets = match loss {
            LossKind::CrossEntropy { .. } => {
                classes = targets.iter().map(|&c| c as i64).collect();
                wl::model::Targets::Classes(&classes)
            }
            _ => wl::model::Targets::Values(targets),
        };
        let batch = Batch {
            seq_len: t,
            batch: b,
            inputs: Inputs::Features(x),
            targets,
            lengths: None,
        };
        trainer.step(&batch).map_err(lib_error)
    }

    /// The last step's loss. Resolves to a number.
    pub fn loss(&self) -> Result<Promise, JsValue> {
        let trainer = self.inner.lease("Trainer")?;
        Ok(future_to_promise(async move {
            let loss = trainer.loss_async().await.map_err(lib_error)?;
            Ok(JsValue::from(loss))
        }))
    }

    /// Evaluation mode: the model's outputs for `x` ([T, B, I]), as a
    /// `Float32Array` of [B, O] (last-step head) or [T·B, O] (per step).
    pub fn predict(&self, x: Float32Array, shape: Vec<u32>) -> Result<Promise, JsValue> {
        let [t, b, _] = shape3(&shape, "predict")?;
        let x = x.to_vec();
        let mut trainer = self.inner.lease("Trainer")?;
        // Evaluation mode ignores the targets, but the batch is checked as
        // a whole: placeholders of the right shape.
        let (outputs, kind) = self.head;
        let rows = match kind {
            HeadKind::LastStep => b,
            HeadKind::PerStep => t * b,
        };
        Ok(future_to_promise(async move {
            let (values, classes) = (vec![0.0f32; rows * outputs], vec![0i64; rows]);
            let targets = match trainer.config().loss {
                LossKind::CrossEntropy { .. } => wl::model::Targets::Classes(&classes),
                _ => wl::model::Targets::Values(&values),
            };
            let batch = Batch {
                seq_len: t,
                batch: b,
                inputs: Inputs::Features(&x),
                targets,
                lengths: None,
            };
            let out = trainer.predict_async(&batch).await.map_err(lib_error)?;
            Ok(Float32Array::from(out.as_slice()).into())
        }))
    }

    /// The model as trained so far. Resolves to a [`Model`].
    pub fn model(&self) -> Result<Promise, JsValue> {
        let trainer = self.inner.lease("Trainer")?;
        Ok(future_to_promise(async move {
            let model = trainer.model_async().await.map_err(lib_error)?;
            Ok(Model { inner: model }.into())
        }))
    }

    /// Training steps taken.
    #[wasm_bindgen(getter, js_name = stepCount)]
    pub fn step_count(&self) -> Result<f64, JsValue> {
        let trainer = self.inner.lease("Trainer")?;
        Ok(trainer.step_count() as f64)
    }

    /// The number of features per step the model reads (I).
    #[wasm_bindgen(getter, js_name = inputSize)]
    pub fn input_size(&self) -> u32 {
        self.input_size as u32
    }
}

/// Generates from a model with an embedding, one token at a time, carrying
/// the recurrent state on the device: the embedding lookup and the head run
/// on the host, the recurrent layers on the device.
#[wasm_bindgen]
pub struct Generator {
    inner: Shared<GeneratorState>,
}

struct GeneratorState {
    model: wl::Model<f32>,
    layers: Vec<wl::Lstm>,
}

#[wasm_bindgen]
impl Generator {
    /// A generator for `model`, which must have an embedding.
    pub fn create(device: &Device, model: &Model) -> Result<Generator, JsValue> {
        let m = model.inner.clone();
        if m.embedding.is_none() {
            return Err(js_error(
                "Generator: the model has no embedding; it generates from token ids",
            ));
        }
        let layers = std::iter::once(&m.lstm)
            .chain(&m.stack)
            .map(|w| wl::Lstm::new(&device.inner, w))
            .collect::<wl::Result<Vec<_>>>()
            .map_err(lib_error)?;
        Ok(Generator {
            inner: Shared::new(GeneratorState { model: m, layers }),
        })
    }

    /// Feeds `token` and resolves to the next token's logits
    /// (`Float32Array` of the vocabulary's size).
    pub fn feed(&self, token: u32) -> Result<Promise, JsValue> {
        let mut state = self.inner.lease("Generator")?;
        Ok(future_to_promise(async move {
            let GeneratorState { model, layers } = &mut *state;
            let emb = model.embedding.as_ref().expect("checked in create");
            let mut x = Tensor::new(
                [1, 1, emb.embedding_dim],
                emb.forward(&[token as usize]).map_err(lib_error)?,
            )
            .map_err(lib_error)?;
            for layer in layers.iter_mut() {
                x = layer
                    .forward_stateful_async(&LstmInput::new(&x))
                    .await
                    .map_err(lib_error)?
                    .output;
            }
            let mut h = x.into_data();
            if let Some(d) = &model.hidden {
                h = d.forward(&h, 1);
            }
            let logits = model.head.forward(&h, 1);
            Ok(Float32Array::from(logits.as_slice()).into())
        }))
    }

    /// Forgets the carried state.
    pub fn reset(&self) -> Result<(), JsValue> {
        let mut state = self.inner.lease("Generator")?;
        for layer in &mut state.layers {
            layer.reset_state();
        }
        Ok(())
    }
}

/// `performance.now()`, in milliseconds.
fn now_ms() -> f64 {
    let global = js_sys::global();
    let performance = js_sys::Reflect::get(&global, &"performance".into()).ok();
    performance
        .and_then(|p| {
            let now = js_sys::Reflect::get(&p, &"now".into()).ok()?;
            js_sys::Function::from(now).call0(&p).ok()?.as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
}

/// Times what `lstm-bench` times natively, at one shape, on `device`:
/// `"forward"` is `nn.LSTM(I, H)`'s forward pass over [T, B, I] (on a GPU
/// with the input already uploaded and nothing read back), `"train"` one
/// training step of that LSTM with a per-step `Linear(H, 1)` head, MSE and
/// SGD. Each timed call ends when the device has finished it. Resolves to
/// `{ medianMs, minMs, iters }`.
#[wasm_bindgen(js_name = benchmarkLstm)]
pub fn benchmark_lstm(
    device: &Device,
    mode: String,
    shape: Vec<u32>,
    warmup: u32,
    iters: u32,
) -> Result<Promise, JsValue> {
    let [b, t, i, h] = match shape.as_slice() {
        &[b, t, i, h] => [b, t, i, h].map(|d| d as usize),
        _ => return Err(js_error("benchmarkLstm: the shape is [B, T, I, H]")),
    };
    if iters == 0 {
        return Err(js_error("benchmarkLstm: iters must be at least 1"));
    }
    let device = device.inner.clone();
    Ok(future_to_promise(async move {
        let cfg = LstmConfig::new(i, h);
        let weights =
            wl::LstmWeights::<f32>::init(&cfg, 1, wl::InitOptions::default()).map_err(lib_error)?;
        // Inputs in [-1, 1), from a fixed pattern (the values do not matter
        // to the time).
        let x: Vec<f32> = (0..t * b * i)
            .map(|k| ((k * 7919 % 2000) as f32) / 1000.0 - 1.0)
            .collect();
        let input = Tensor::new([t, b, i], x.clone()).map_err(lib_error)?;
        let sync = |device: &wl::Device| {
            let ctx = device.gpu_context().cloned();
            async move {
                match ctx {
                    Some(ctx) => ctx.synchronize_async().await,
                    None => Ok(()),
                }
            }
        };
        let mut times = Vec::new();
        match mode.as_str() {
            "forward" => {
                let mut lstm = wl::Lstm::new(&device, &weights).map_err(lib_error)?;
                match lstm.gpu_mut() {
                    Some(gpu) => {
                        let ctx = gpu.context().clone();
                        let gx = wl::gpu::GpuTensor::upload(&ctx, "bench input", &input)
                            .map_err(lib_error)?;
                        for k in 0..warmup + iters {
                            let start = now_ms();
                            gpu.forward(&gx, wl::gpu::InitialState::Zeros, None)
                                .map_err(lib_error)?;
                            ctx.synchronize_async().await.map_err(lib_error)?;
                            if k >= warmup {
                                times.push(now_ms() - start);
                            }
                        }
                    }
                    None => {
                        for k in 0..warmup + iters {
                            let start = now_ms();
                            lstm.forward_async(&LstmInput::new(&input))
                                .await
                                .map_err(lib_error)?;
                            if k >= warmup {
                                times.push(now_ms() - start);
                            }
                        }
                    }
                }
            }
            "train" => {
                let mut model = wl::Model::<f32>::new(None, &cfg, 1, HeadKind::PerStep, 1)
                    .map_err(lib_error)?;
                model.lstm = weights;
                let config = TrainConfig::new(LossKind::Mse, OptimizerKind::sgd(1e-4));
                let mut trainer = wl::Trainer::new(&device, model, config).map_err(lib_error)?;
                let targets = vec![0.0f32; t * b];
                let batch = Batch {
                    seq_len: t,
                    batch: b,
                    inputs: Inputs::Features(&x),
                    targets: wl::model::Targets::Values(&targets),
                    lengths: None,
                };
                for k in 0..warmup + iters {
                    let start = now_ms();
                    trainer.step(&batch).map_err(lib_error)?;
                    sync(&device).await.map_err(lib_error)?;
                    if k >= warmup {
                        times.push(now_ms() - start);
                    }
                }
            }
            other => {
                return Err(js_error(format!(
                    "benchmarkLstm: mode {other:?}: use \"forward\" or \"train\""
                )));
            }
        }
        times.sort_by(f64::total_cmp);
        let result = js_sys::Object::new();
        let set = |k: &str, v: f64| js_sys::Reflect::set(&result, &k.into(), &v.into());
        set("medianMs", times[times.len() / 2])?;
        set("minMs", times[0])?;
        set("iters", times.len() as f64)?;
        Ok(result.into())
    }))
}
