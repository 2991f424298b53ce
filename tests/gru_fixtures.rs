//! The reference and the CPU engine against PyTorch's `nn.GRU`, from the
//! float64 fixtures of `tools/make_variant_fixtures.py` (its docstring
//! documents every tensor: parameters under `gru.`, `input`, `h_0` and
//! `lengths` where the case has them, `output`, `h_n`, the loss's
//! coefficients `d_output` and `d_h_n`, and the gradients `grad.*`).
//!
//! Tolerances are those of `pytorch_fixtures.rs`: outputs within 1e-5
//! absolute in f32, gradients within 1e-4 of each tensor's largest
//! magnitude; the f64 reference agrees to 1e-9, which shows the math itself
//! is PyTorch's and the f32 bounds only cover rounding. Measured: the f64
//! reference within 2.2e-16 on outputs and 5.1e-16 (of the maximum) on
//! gradients; in f32, outputs within 1.7e-7 and gradients within 3.7e-7, for
//! the reference and the CPU engine alike; the float32 checkpoint's run
//! within 1e-7.

mod common;

use common::lstm_fixtures::cases_in;
use common::{assert_close, assert_close_to_max, root};
use wgpu_lstm::cpu::CpuEngine;
use wgpu_lstm::reference::{self, ForwardCache, Gradients, LstmOutput, OutputGrads};
use wgpu_lstm::weights::SafetensorsPrefix;
use wgpu_lstm::{
    Cell, Device, Lstm, LstmConfig, LstmInput, LstmWeights, Real, Result, Tensor, TensorFile,
};

/// One fixture, in float type `T`.
struct GruCase<T: Real> {
    file: TensorFile,
    weights: LstmWeights<T>,
    input: Tensor<T>,
    h_0: Option<Tensor<T>>,
    lengths: Option<Vec<usize>>,
}

impl<T: Real> GruCase<T> {
    fn load(name: &str, bytes: &[u8]) -> Self {
        let file = TensorFile::from_bytes(bytes.to_vec()).unwrap();
        let meta = file.metadata();
        let mut weights =
            LstmWeights::<T>::from_tensor_file(&file, SafetensorsPrefix::Exact("gru.")).unwrap();
        // The architecture comes from the shapes; the metadata says what
        // PyTorch was given.
        let cfg = &weights.config;
        let flag = |k: &str| meta[k] == "true";
        assert_eq!(cfg.cell, Cell::Gru, "{name}");
        assert_eq!(cfg.input_size.to_string(), meta["input_size"], "{name}");
        assert_eq!(cfg.hidden_size.to_string(), meta["hidden_size"], "{name}");
        assert_eq!(cfg.num_layers.to_string(), meta["num_layers"], "{name}");
        assert_eq!(cfg.bias, flag("bias"), "{name}");
        assert_eq!(cfg.bidirectional, flag("bidirectional"), "{name}");
        weights.config.batch_first = flag("batch_first");
        let get = |k: &str| file.float::<T>(k).unwrap();
        GruCase {
            weights,
            input: get("input"),
            h_0: file.contains("h_0").then(|| get("h_0")),
            lengths: file.contains("lengths").then(|| {
                file.integers("lengths")
                    .unwrap()
                    .iter()
                    .map(|&l| l as usize)
                    .collect()
            }),
            file,
        }
    }

    fn x(&self) -> LstmInput<'_, T> {
        let mut x = LstmInput::new(&self.input);
        if let Some(h) = &self.h_0 {
            x = x.with_h_0(h);
        }
        if let Some(l) = &self.lengths {
            x = x.with_lengths(l);
        }
        x
    }

    fn tensor<U: Real>(&self, key: &str) -> Tensor<U> {
        self.file.float(key).unwrap()
    }
}

fn gru_cases() -> Vec<(String, Vec<u8>)> {
    let cases: Vec<_> = cases_in("tests/fixtures/gru")
        .into_iter()
        .filter(|(n, _)| !n.starts_with("gru_state_dict"))
        .collect();
    assert!(
        cases.len() >= 5,
        "found {} GRU fixtures; run tools/make_variant_fixtures.py",
        cases.len()
    );
    cases
}

/// The passes a fixture checks: the reference's, or the CPU engine's.
trait Passes<T> {
    fn forward(&self, w: &LstmWeights<T>, x: &LstmInput<'_, T>) -> Result<LstmOutput<T>>;
    fn forward_train(
        &self,
        w: &LstmWeights<T>,
        x: &LstmInput<'_, T>,
    ) -> Result<(LstmOutput<T>, ForwardCache<T>)>;
    fn backward(
        &self,
        w: &LstmWeights<T>,
        c: &ForwardCache<T>,
        g: &OutputGrads<'_, T>,
    ) -> Result<Gradients<T>>;
}

struct Reference;

impl<T: Real> Passes<T> for Reference {
    fn forward(&self, w: &LstmWeights<T>, x: &LstmInput<'_, T>) -> Result<LstmOutput<T>> {
        reference::forward(w, x)
    }
    fn forward_train(
        &self,
        w: &LstmWeights<T>,
        x: &LstmInput<'_, T>,
    ) -> Result<(LstmOutput<T>, ForwardCache<T>)> {
        reference::forward_train(w, x, 0)
    }
    fn backward(
        &self,
        w: &LstmWeights<T>,
        c: &ForwardCache<T>,
        g: &OutputGrads<'_, T>,
    ) -> Result<Gradients<T>> {
        reference::backward(w, c, g)
    }
}

impl Passes<f32> for CpuEngine {
    fn forward(&self, w: &LstmWeights<f32>, x: &LstmInput<'_, f32>) -> Result<LstmOutput<f32>> {
        CpuEngine::forward(self, w, x)
    }
    fn forward_train(
        &self,
        w: &LstmWeights<f32>,
        x: &LstmInput<'_, f32>,
    ) -> Result<(LstmOutput<f32>, ForwardCache<f32>)> {
        CpuEngine::forward_train(self, w, x, 0)
    }
    fn backward(
        &self,
        w: &LstmWeights<f32>,
        c: &ForwardCache<f32>,
        g: &OutputGrads<'_, f32>,
    ) -> Result<Gradients<f32>> {
        CpuEngine::backward(self, w, c, g)
    }
}

fn check<T: Real>(passes: &impl Passes<T>, out_atol: f64, grad_tol: f64) {
    for (name, bytes) in gru_cases() {
        let case = GruCase::<T>::load(&name, &bytes);
        let (w, x) = (&case.weights, case.x());
        let (out, cache) = passes.forward_train(w, &x).unwrap();
        // Inference gives the training pass's outputs (no dropout here).
        assert_eq!(passes.forward(w, &x).unwrap(), out, "{name}: inference");
        for (key, got) in [("output", &out.output), ("h_n", &out.h_n)] {
            let want: Tensor<f64> = case.tensor(key);
            assert_eq!(got.shape(), want.shape(), "{name}/{key}");
            assert_close(
                &format!("{name}/{key}"),
                got.data(),
                want.data(),
                out_atol,
                0.0,
            );
        }
        // A GRU has no cell state: c_n is [D·L, B, 0].
        let h_shape = out.h_n.shape();
        assert_eq!(out.c_n.shape(), [h_shape[0], h_shape[1], 0], "{name}/c_n");

        let (d_output, d_h_n) = (case.tensor::<T>("d_output"), case.tensor::<T>("d_h_n"));
        let grads = passes
            .backward(
                w,
                &cache,
                &OutputGrads {
                    d_output: &d_output,
                    d_h_n: Some(&d_h_n),
                    d_c_n: None,
                },
            )
            .unwrap();
        assert_eq!(grads.d_c_0.shape(), out.c_n.shape(), "{name}/d_c_0");
        let mut checks = vec![("grad.input".to_string(), grads.d_input.data())];
        if case.h_0.is_some() {
            checks.push(("grad.h_0".into(), grads.d_h_0.data()));
        }
        for (p, _, g) in grads.weights.named_params() {
            checks.push((format!("grad.gru.{p}"), g));
        }
        for (key, got) in checks {
            let want: Tensor<f64> = case.tensor(&key);
            assert_close_to_max(&format!("{name}/{key}"), got, want.data(), grad_tol);
        }
    }
}

#[test]
fn f64_reference_matches_pytorch_to_rounding() {
    check::<f64>(&Reference, 1e-9, 1e-9);
}

#[test]
fn f32_reference_matches_pytorch() {
    check::<f32>(&Reference, 1e-5, 1e-4);
}

#[test]
fn cpu_engine_matches_pytorch() {
    check::<f32>(&CpuEngine::new(), 1e-5, 1e-4);
}

fn state_dict_path() -> std::path::PathBuf {
    root().join("tests/fixtures/gru/gru_state_dict.safetensors")
}

/// A `state_dict` saved by PyTorch (bare names, float32, no metadata) loads
/// as the GRU it is.
#[test]
fn a_pytorch_gru_state_dict_loads_as_a_gru() {
    let w =
        LstmWeights::<f32>::load_safetensors(state_dict_path(), SafetensorsPrefix::Auto).unwrap();
    let want = LstmConfig::gru(5, 8).num_layers(2).bidirectional(true);
    assert_eq!(w.config, want);
    // Every tensor of the file, under its name and shape.
    let file = TensorFile::open(state_dict_path()).unwrap();
    let mut names = Vec::new();
    for (n, shape, _) in w.named_params() {
        assert_eq!(file.shape(&n), Some(shape), "{n}");
        names.push(n);
    }
    names.sort();
    assert_eq!(names, file.names());
}

/// The checkpoint run from its float32 input matches PyTorch's float64 run
/// of the same float32 values, through the reference and the CPU engine
/// (directly, and as [`Lstm`] on the CPU device).
#[test]
fn the_state_dict_runs_as_pytorch_ran_it() {
    let w =
        LstmWeights::<f32>::load_safetensors(state_dict_path(), SafetensorsPrefix::Auto).unwrap();
    let run =
        TensorFile::open(root().join("tests/fixtures/gru/gru_state_dict_run.safetensors")).unwrap();
    let input = run.float::<f32>("input").unwrap();
    let x = LstmInput::new(&input);
    let (want_out, want_h) = (
        run.float::<f64>("output").unwrap(),
        run.float::<f64>("h_n").unwrap(),
    );
    let mut lstm = Lstm::new(&Device::cpu(), &w).unwrap();
    for (name, got) in [
        ("reference", reference::forward(&w, &x).unwrap()),
        ("cpu engine", CpuEngine::new().forward(&w, &x).unwrap()),
        ("Lstm on the cpu", lstm.forward(&x).unwrap()),
    ] {
        assert_eq!(got.output.shape(), want_out.shape(), "{name}");
        assert_close(name, got.output.data(), want_out.data(), 1e-5, 0.0);
        assert_close(name, got.h_n.data(), want_h.data(), 1e-5, 0.0);
    }
}
