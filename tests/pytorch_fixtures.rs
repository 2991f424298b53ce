//! The reference and the CPU engine against PyTorch's `nn.LSTM`, from
//! float64 fixtures made by `tools/make_fixtures.py` (which documents every
//! tensor in the files). (The GPU engine's fixture tests are in
//! `gpu_engine.rs` and `gpu_backward.rs`.)
//!
//! Projection LSTMs (`proj_size` > 0) have their own cases in
//! `tests/fixtures/proj`, held to the same tolerances.
//!
//! Tolerances: outputs within 1e-5 absolute in f32 (DESIGN §4, T ≤ 100);
//! gradients within 1e-4 of each tensor's largest magnitude in f32. The f64
//! reference must agree to 1e-9, which shows the math itself is exact and
//! the f32 tolerances only cover rounding.

mod common;

use common::lstm_fixtures::{Case, cases, proj_cases};
use common::{assert_close, assert_close_to_max};
use safetensors::SafeTensors;
use wgpu_lstm::cpu::CpuEngine;
use wgpu_lstm::reference::{self, ForwardCache, Gradients, LstmOutput, OutputGrads};
use wgpu_lstm::{LstmInput, LstmWeights, Real, Result, Tensor};

/// The passes a fixture checks: the reference's, or an engine's.
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

fn check_fixture<T: Real>(
    passes: &impl Passes<T>,
    name: &str,
    bytes: &[u8],
    out_atol: f64,
    grad_tol: f64,
) {
    let case = Case::<T>::load(bytes);
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    // Architecture inferred from names and shapes must match what PyTorch was built with.
    let cfg = &case.weights.config;
    assert_eq!(cfg.input_size.to_string(), meta["input_size"], "{name}");
    assert_eq!(cfg.hidden_size.to_string(), meta["hidden_size"], "{name}");
    assert_eq!(cfg.num_layers.to_string(), meta["num_layers"], "{name}");
    assert_eq!(cfg.bias.to_string(), meta["bias"], "{name}");
    assert_eq!(
        cfg.bidirectional.to_string(),
        meta["bidirectional"],
        "{name}"
    );
    let proj = meta.get("proj_size").map_or("0", String::as_str);
    assert_eq!(cfg.proj_size.to_string(), proj, "{name}");

    // Forward, in evaluation and in training mode (no dropout: identical).
    let w = &case.weights;
    let x = case.x();
    let eval = passes.forward(w, &x).unwrap();
    let (out, cache) = passes.forward_train(w, &x).unwrap();
    assert_eq!(
        eval, out,
        "{name}: training and evaluation differ without dropout"
    );
    for (key, got) in [
        ("output", &out.output),
        ("h_n", &out.h_n),
        ("c_n", &out.c_n),
    ] {
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

    // Backward of L = Σ output⊙d_output + Σ h_n⊙d_h_n + Σ c_n⊙d_c_n.
    let (d_output, d_h_n, d_c_n) = case.upstream();
    let grads = passes
        .backward(
            w,
            &cache,
            &OutputGrads {
                d_output: &d_output,
                d_h_n: Some(&d_h_n),
                d_c_n: Some(&d_c_n),
            },
        )
        .unwrap();
    let checked = case.gradient_keys(&grads);
    for (key, got) in checked {
        let want: Tensor<f64> = case.tensor(&key);
        assert_close_to_max(&format!("{name}/{key}"), &got, want.data(), grad_tol);
    }
}

#[test]
fn at_least_twelve_fixtures_are_present() {
    let n = cases().len();
    assert!(n >= 12, "found {n} fixtures; run tools/make_fixtures.py");
}

#[test]
fn f32_reference_matches_pytorch() {
    for (name, bytes) in cases() {
        check_fixture::<f32>(&Reference, &name, &bytes, 1e-5, 1e-4);
    }
}

#[test]
fn f64_reference_matches_pytorch_to_rounding() {
    for (name, bytes) in cases() {
        check_fixture::<f64>(&Reference, &name, &bytes, 1e-9, 1e-9);
    }
}

#[test]
fn cpu_engine_matches_pytorch() {
    for (name, bytes) in cases() {
        check_fixture(&CpuEngine::new(), &name, &bytes, 1e-5, 1e-4);
    }
}

#[test]
fn projection_lstms_match_pytorch() {
    let cases = proj_cases();
    assert!(
        cases.len() >= 4,
        "found {} projection fixtures",
        cases.len()
    );
    for (name, bytes) in cases {
        check_fixture::<f32>(&Reference, &name, &bytes, 1e-5, 1e-4);
        check_fixture::<f64>(&Reference, &name, &bytes, 1e-9, 1e-9);
        check_fixture(&CpuEngine::new(), &name, &bytes, 1e-5, 1e-4);
    }
}
