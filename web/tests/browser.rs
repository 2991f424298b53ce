//! The PyTorch fixtures on the browser's WebGPU, in headless Chromium
//! (`wasm-bindgen-test`; `web/test.sh` runs them): every `nn.LSTM`, projection
//! and `nn.GRU` fixture's forward pass and gradients, PyTorch optimizer
//! fixtures through the `Trainer`, and the blocking calls' typed error.
//!
//! Tolerances are the native tests' (`tests/pytorch_fixtures.rs`,
//! `tests/gpu_backward.rs`, `tests/gpu_gru.rs`): outputs within 1e-5
//! absolute, gradients within 1e-4 of each tensor's largest magnitude, and
//! training losses and parameters within 1e-5. A missing adapter fails.
#![cfg(target_arch = "wasm32")]

#[path = "../../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::collections::HashMap;

use common::lstm_fixtures::{Case, GruFixture};
use common::training::optimizer_case;
use common::{adding_batch, assert_close, assert_close_to_max};
use wasm_bindgen_test::*;
use wgpu_lstm::gpu::{GpuContext, GpuLstm, GpuTrainer};
use wgpu_lstm::model::{Batch, HeadKind, Inputs, LossKind, Model, Targets, TrainConfig};
use wgpu_lstm::reference::OutputGrads;
use wgpu_lstm::{Device, Lstm, LstmError, Tensor, TensorFile};

wasm_bindgen_test_configure!(run_in_browser);

/// (name, bytes) of fixture files in `tests/fixtures/{dir}`.
macro_rules! fixtures {
    ($dir:literal: $($name:literal),+ $(,)?) => {
        [$(($name, include_bytes!(concat!("../../tests/fixtures/", $dir, $name, ".safetensors")) as &[u8])),+]
    };
}

const LSTM: [(&str, &[u8]); 17] = fixtures!("": "batch_first", "batch_first_bidirectional_state",
    "batch_of_one", "bidirectional", "bidirectional_two_layers", "given_state",
    "lengths_batch_first_bidirectional", "lengths_bidirectional_two_layers", "lengths_unsorted",
    "long_sequence", "no_bias", "odd_sizes", "saturating", "single_layer", "single_time_step",
    "three_layers_odd_sizes", "two_layers");

const PROJ: [(&str, &[u8]); 4] = fixtures!("proj/": "proj_batch_first_no_bias",
    "proj_bidirectional_two_layers_lengths", "proj_single_layer", "proj_two_layers_state");

const GRU: [(&str, &[u8]); 5] = fixtures!("gru/": "gru_batch_first_no_bias",
    "gru_bidirectional_two_layers_lengths", "gru_odd_sizes", "gru_single_layer",
    "gru_two_layers_state");

const TRAINING: [(&str, &[u8]); 5] = fixtures!("training/": "adam", "sgd_momentum",
    "adamw_clipped", "sgd_nesterov_cosine", "adam_clip_value");

/// The largest errors seen: outputs (absolute) and gradients (relative to
/// each tensor's largest magnitude), for the log.
#[derive(Default)]
struct Worst {
    output: f64,
    gradient: f64,
}

impl Worst {
    fn output(&mut self, got: &[f32], want: &[f64]) {
        for (g, w) in got.iter().zip(want) {
            self.output = self.output.max((*g as f64 - w).abs());
        }
    }

    fn gradient(&mut self, got: &[f32], want: &[f64]) {
        let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs()));
        let scale = scale.max(f64::MIN_POSITIVE);
        for (g, w) in got.iter().zip(want) {
            self.gradient = self.gradient.max((*g as f64 - w).abs() / scale);
        }
    }

    fn log(&self, what: &str) {
        wasm_bindgen_test::console_log!(
            "{what}: largest output error {:.1e}; largest gradient error {:.1e} of the \
             tensor's largest magnitude",
            self.output,
            self.gradient
        );
    }
}

/// The browser's WebGPU adapter; its absence fails the test.
async fn gpu() -> GpuContext {
    match GpuContext::new_async().await {
        Ok(ctx) => ctx,
        Err(e) => {
            panic!("no WebGPU adapter in this browser ({e}); Chromium needs --enable-unsafe-webgpu")
        }
    }
}

/// Each `nn.LSTM` fixture's forward pass (inference and training) and every
/// gradient against PyTorch's; logs the largest errors as `label`.
async fn check_lstm_fixtures(fixtures: &[(&str, &[u8])], label: &str) {
    let ctx = gpu().await;
    let mut worst = Worst::default();
    for &(name, bytes) in fixtures {
        check_lstm_fixture(&ctx, name, bytes, &mut worst).await;
    }
    worst.log(label);
}

/// One `nn.LSTM` fixture (see [`check_lstm_fixtures`]).
async fn check_lstm_fixture(ctx: &GpuContext, name: &str, bytes: &[u8], worst: &mut Worst) {
    let case = Case::<f32>::load(bytes);
    let mut gpu = GpuLstm::new(ctx, &case.weights).unwrap();
    let x = case.x();
    let eval = gpu.forward_host_async(&x).await.unwrap();
    let train = gpu.forward_train_host_async(&x, 0).await.unwrap();
    for (mode, out) in [("eval", &eval), ("train", &train)] {
        for (key, got) in [
            ("output", &out.output),
            ("h_n", &out.h_n),
            ("c_n", &out.c_n),
        ] {
            let want: Tensor<f64> = case.tensor(key);
            assert_eq!(got.shape(), want.shape(), "{name}/{mode}/{key}");
            assert_close(
                &format!("{name}/{mode}/{key}"),
                got.data(),
                want.data(),
                1e-5,
                0.0,
            );
            worst.output(got.data(), want.data());
        }
    }
    let (dy, dh, dc) = case.upstream();
    let got = gpu
        .backward_host_async(&OutputGrads {
            d_output: &dy,
            d_h_n: Some(&dh),
            d_c_n: Some(&dc),
        })
        .await
        .unwrap();
    for (key, g) in case.gradient_keys(&got) {
        let want: Tensor<f64> = case.tensor(&key);
        assert_close_to_max(&format!("{name}/{key}"), &g, want.data(), 1e-4);
        worst.gradient(&g, want.data());
    }
}

#[wasm_bindgen_test]
async fn lstm_fixtures_forward_and_gradients_match_pytorch() {
    check_lstm_fixtures(&LSTM, "nn.LSTM fixtures").await;
}

#[wasm_bindgen_test]
async fn projection_fixtures_forward_and_gradients_match_pytorch() {
    check_lstm_fixtures(&PROJ, "projection fixtures").await;
}

#[wasm_bindgen_test]
async fn gru_fixtures_forward_and_gradients_match_pytorch() {
    let ctx = gpu().await;
    let mut worst = Worst::default();
    for (name, bytes) in GRU {
        let case = GruFixture::<f32>::load(bytes);
        let mut gpu = GpuLstm::new(&ctx, &case.weights).unwrap();
        let x = case.x();
        let eval = gpu.forward_host_async(&x).await.unwrap();
        let train = gpu.forward_train_host_async(&x, 0).await.unwrap();
        for (mode, out) in [("eval", &eval), ("train", &train)] {
            for (key, got) in [("output", &out.output), ("h_n", &out.h_n)] {
                let want: Tensor<f64> = case.tensor(key);
                assert_close(
                    &format!("{name}/{mode}/{key}"),
                    got.data(),
                    want.data(),
                    1e-5,
                    0.0,
                );
                worst.output(got.data(), want.data());
            }
            let h = out.h_n.shape();
            assert_eq!(
                out.c_n.shape(),
                [h[0], h[1], 0],
                "{name}: a GRU has no cell state"
            );
        }
        let (d_output, d_h_n) = (case.tensor::<f32>("d_output"), case.tensor::<f32>("d_h_n"));
        let grads = gpu
            .backward_host_async(&OutputGrads {
                d_output: &d_output,
                d_h_n: Some(&d_h_n),
                d_c_n: None,
            })
            .await
            .unwrap();
        let mut checks = vec![("grad.input".to_string(), grads.d_input.data().to_vec())];
        if case.h_0.is_some() {
            checks.push(("grad.h_0".into(), grads.d_h_0.data().to_vec()));
        }
        for (p, _, g) in grads.weights.named_params() {
            checks.push((format!("grad.gru.{p}"), g.to_vec()));
        }
        for (key, got) in checks {
            let want: Tensor<f64> = case.tensor(&key);
            assert_close_to_max(&format!("{name}/{key}"), &got, want.data(), 1e-4);
            worst.gradient(&got, want.data());
        }
    }
    worst.log("nn.GRU fixtures");
}

/// The public API (`Device`, `Lstm`) in its async forms: a fixture's
/// forward pass, a stateful pass in two chunks, and the weights read back.
#[wasm_bindgen_test]
async fn the_lstm_api_runs_a_fixture_on_webgpu() {
    let device = Device::gpu_async().await.expect("a WebGPU adapter");
    assert!(device.is_gpu());
    let (name, bytes) = LSTM[13]; // single_layer
    let case = Case::<f32>::load(bytes);
    let mut lstm = Lstm::new(&device, &case.weights).unwrap();
    let out = lstm.forward_async(&case.x()).await.unwrap();
    let want: Tensor<f64> = case.tensor("output");
    assert_close(name, out.output.data(), want.data(), 1e-5, 0.0);
    // Read back, the weights are the ones uploaded, exactly.
    let back = lstm.weights_async().await.unwrap();
    for ((n, _, got), (_, _, sent)) in back.named_params().iter().zip(case.weights.named_params()) {
        assert_eq!(*got, sent, "{name}: weight {n}");
    }
    // Streaming the sequence in two chunks gives the whole pass's output.
    let t = case.input.shape()[0];
    let split = t / 2;
    let row = case.input.data().len() / t;
    let data = case.input.data();
    let mut streamed = Vec::new();
    for (a, b) in [(0, split), (split, t)] {
        let part = Tensor::new(
            [b - a, case.input.shape()[1], case.input.shape()[2]],
            data[a * row..b * row].to_vec(),
        )
        .unwrap();
        let o = lstm
            .forward_stateful_async(&wgpu_lstm::LstmInput::new(&part))
            .await
            .unwrap();
        streamed.extend_from_slice(o.output.data());
    }
    assert_close(
        &format!("{name}/streamed"),
        &streamed,
        want.data(),
        1e-5,
        0.0,
    );
}

/// In a browser a blocking read-back cannot wait: it is a typed error that
/// names the `_async` form, and nothing is lost (the async call then works).
#[wasm_bindgen_test]
async fn blocking_read_backs_are_a_typed_error_in_the_browser() {
    let device = Device::gpu_async().await.expect("a WebGPU adapter");
    let case = Case::<f32>::load(LSTM[13].1);
    let mut lstm = Lstm::new(&device, &case.weights).unwrap();
    match lstm.forward(&case.x()) {
        Err(LstmError::WouldBlock { call }) => assert_eq!(call, "Lstm::forward"),
        other => panic!(
            "expected WouldBlock, got {:?}",
            other.map(|o| o.output.shape().to_vec())
        ),
    }
    let err = lstm.forward(&case.x()).unwrap_err().to_string();
    assert!(err.contains("Lstm::forward_async"), "{err}");
    let out = lstm.forward_async(&case.x()).await.unwrap();
    let want: Tensor<f64> = case.tensor("output");
    assert_close(
        "after WouldBlock",
        out.output.data(),
        want.data(),
        1e-5,
        0.0,
    );
    // The CPU engine needs no wait: its blocking form works in the browser.
    let mut cpu = Lstm::new(&Device::cpu(), &case.weights).unwrap();
    let out = cpu.forward(&case.x()).unwrap();
    assert_close("cpu engine", out.output.data(), want.data(), 1e-5, 0.0);
}

fn metadata(bytes: &[u8]) -> HashMap<String, String> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    meta.metadata().clone().unwrap_or_default()
}

/// PyTorch's optimizers, step by step: an LSTM, a per-step head and MSE for
/// a few steps (`tools/make_train_fixtures.py`), as
/// `tests/gpu_training.rs` checks natively.
#[wasm_bindgen_test]
async fn pytorch_optimizer_fixtures_are_matched_on_webgpu() {
    let ctx = gpu().await;
    let mut worst = Worst::default();
    for (name, bytes) in TRAINING {
        let meta = metadata(bytes);
        let file = TensorFile::from_bytes(bytes.to_vec()).unwrap();
        let get = |k: &str| file.float::<f32>(k).unwrap();
        let (model, cfg) = optimizer_case(&file, &meta);
        let mut gpu = GpuTrainer::new(&ctx, &model, cfg).unwrap();
        let (input, target) = (get("input"), get("target"));
        let (t, b) = (input.shape()[0], input.shape()[1]);
        for (step, &want) in get("loss").data().iter().enumerate() {
            let batch = Batch {
                seq_len: t,
                batch: b,
                inputs: Inputs::Features(input.data()),
                targets: Targets::Values(target.data()),
                lengths: None,
            };
            gpu.step(&batch).unwrap();
            let got = gpu.loss_async().await.unwrap();
            assert!(
                (got - want).abs() <= 1e-5,
                "{name}: step {step}: loss {got}, PyTorch {want}"
            );
            worst.output(&[got], &[want as f64]);
        }
        let trained = gpu.model_async().await.unwrap();
        for (n, _, v) in trained.named_params() {
            let want = file.float::<f64>(&format!("final.{n}")).unwrap();
            assert_close(&format!("{name}/{n}"), v, want.data(), 1e-5, 0.0);
            worst.gradient = worst.gradient.max(
                v.iter()
                    .zip(want.data())
                    .fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs())),
            );
        }
    }
    wasm_bindgen_test::console_log!(
        "optimizer fixtures: largest loss error {:.1e}; largest parameter error {:.1e}",
        worst.output,
        worst.gradient
    );
}

/// A training loop in the browser, through the public `Trainer` and its
/// async read-backs, learns the adding problem (T = 20): on 500 held-out
/// sequences its MSE ends far below the mean predictor's, the targets'
/// variance (1/6 in expectation; computed on the held-out set here).
#[wasm_bindgen_test]
async fn a_trainer_learns_the_adding_problem_on_webgpu() {
    use rand::SeedableRng;
    let device = Device::gpu_async().await.expect("a WebGPU adapter");
    let (t, b) = (20, 32);
    let cfg = wgpu_lstm::LstmConfig::new(2, 32);
    let model = Model::<f32>::new(None, &cfg, 1, HeadKind::LastStep, 1).unwrap();
    let mut config = TrainConfig::new(LossKind::Mse, wgpu_lstm::OptimizerKind::adam(0.01));
    config.clip_grad_norm = Some(1.0);
    let mut trainer = wgpu_lstm::Trainer::new(&device, model, config).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (tx, ty) = adding_batch(&mut rand_chacha::ChaCha8Rng::seed_from_u64(99), t, 500);
    let test = Batch {
        seq_len: t,
        batch: 500,
        inputs: Inputs::Features(&tx),
        targets: Targets::Values(&ty),
        lengths: None,
    };
    let mean = ty.iter().map(|&v| v as f64).sum::<f64>() / ty.len() as f64;
    let baseline = ty.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / ty.len() as f64;
    let before = trainer.evaluate_async(&test).await.unwrap();
    for _ in 0..400 {
        let (x, y) = adding_batch(&mut rng, t, b);
        trainer
            .step(&Batch {
                seq_len: t,
                batch: b,
                inputs: Inputs::Features(&x),
                targets: Targets::Values(&y),
                lengths: None,
            })
            .unwrap();
    }
    let loss = trainer.loss_async().await.unwrap();
    let after = trainer.evaluate_async(&test).await.unwrap();
    web_sys_log(&format!(
        "adding problem: held-out MSE {before:.4} before, {after:.4} after 400 steps \
         (last batch {loss:.4}); mean predictor {baseline:.4}"
    ));
    assert!(
        after < 0.25 * baseline,
        "held-out MSE {after} after 400 steps; the mean predictor's is {baseline}"
    );
}

/// A line in the test runner's output.
fn web_sys_log(line: &str) {
    wasm_bindgen_test::console_log!("{line}");
}

/// f16 where the adapter has `shader-f16`: there a fixture's forward pass in
/// f16 stays within the native f16 tolerance of PyTorch (2e-2, as
/// `tests/gpu_f16.rs`); an adapter without it (Chromium's SwiftShader) gets
/// the typed error naming the feature, and f32 runs on it as before.
#[wasm_bindgen_test]
async fn f16_runs_where_the_adapter_has_shader_f16_and_is_refused_elsewhere() {
    let device = Device::gpu_async().await.expect("a WebGPU adapter");
    let has_f16 = device
        .gpu_context()
        .expect("a GPU device")
        .features()
        .contains(wgpu::Features::SHADER_F16);
    let case = Case::<f32>::load(LSTM[13].1);
    let want: Tensor<f64> = case.tensor("output");
    match device.clone().with_precision(wgpu_lstm::Precision::F16) {
        Ok(half) => {
            assert!(has_f16, "f16 accepted without shader-f16");
            let mut lstm = Lstm::new(&half, &case.weights).unwrap();
            let out = lstm.forward_async(&case.x()).await.unwrap();
            assert_close("f16", out.output.data(), want.data(), 2e-2, 0.0);
        }
        Err(LstmError::MissingFeature { feature, .. }) => {
            assert!(!has_f16, "f16 refused although the adapter has shader-f16");
            assert_eq!(feature, "SHADER_F16");
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
    wasm_bindgen_test::console_log!("adapter has shader-f16: {has_f16}");
}

/// `Device::auto_async` leaves a software adapter for the CPU engine, as
/// natively: SwiftShader says it is a fallback adapter, which wgpu reports
/// as `DeviceType::Cpu`. A hardware adapter is taken.
#[wasm_bindgen_test]
async fn auto_leaves_a_software_adapter_for_the_cpu_engine() {
    let ctx = gpu().await;
    let software = ctx.adapter_info().device_type == wgpu::DeviceType::Cpu;
    let auto = Device::auto_async().await;
    assert_eq!(
        auto.is_gpu(),
        !software,
        "adapter {:?}: auto chose {}",
        ctx.adapter_info(),
        auto.name()
    );
    wasm_bindgen_test::console_log!("software adapter: {software}; auto chose {}", auto.name());
}
