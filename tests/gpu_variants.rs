//! The LSTM variants of DESIGN.md §9 on the GPU engine: the cell activation
//! (inference and training), and the variational input and recurrent
//! dropouts (training), against PyTorch's float64 fixtures of hand-written
//! modules (`tools/make_variant_fixtures.py`) and the f64 reference, with
//! the dispatch counts each variant costs.
//!
//! Tolerances as elsewhere: outputs within 1e-5, gradients within 1e-4 of
//! each tensor's largest magnitude.

mod common;

use common::case::Case;
use common::gpu::{gpu_or_skip, rerun_under_webgpu_limits, train_against_reference};
use common::lstm_fixtures::{Case as Fixture, cases_in};
use common::{assert_close, assert_close_to_max};
use safetensors::SafeTensors;
use wgpu_lstm::gpu::GpuLstm;
use wgpu_lstm::reference::{self, OutputGrads};
use wgpu_lstm::{Activation, InitOptions, LstmConfig, LstmError, LstmWeights, Tensor};

/// The fixture's case with its variant settings applied, and its seed.
fn load(bytes: &[u8]) -> (Fixture<f32>, u64) {
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    let mut case = Fixture::<f32>::load(bytes);
    let cfg = &mut case.weights.config;
    cfg.activation = Activation::from_name(&meta["activation"]).unwrap();
    cfg.dropout = meta["dropout"].parse().unwrap();
    cfg.input_dropout = meta["input_dropout"].parse().unwrap();
    cfg.recurrent_dropout = meta["recurrent_dropout"].parse().unwrap();
    (case, meta["dropout_seed"].parse().unwrap())
}

#[test]
fn gpu_matches_the_variant_fixtures() {
    let Some(ctx) = gpu_or_skip("gpu_matches_the_variant_fixtures") else {
        return;
    };
    let cases = cases_in("tests/fixtures/variants");
    assert!(cases.len() >= 5, "found {} variant fixtures", cases.len());
    for (name, bytes) in cases {
        let (case, seed) = load(&bytes);
        let mut gpu = GpuLstm::new(&ctx, &case.weights).unwrap();
        let x = case.x().with_cell_states();
        let out = gpu.forward_train_host(&x, seed).unwrap();
        let cells = out
            .cell_states
            .as_ref()
            .expect("cell states were asked for");
        for (key, got) in [
            ("output", &out.output),
            ("h_n", &out.h_n),
            ("c_n", &out.c_n),
            ("c_all", cells),
        ] {
            let want: Tensor<f64> = case.tensor(key);
            assert_eq!(got.shape(), want.shape(), "{name}/{key}");
            assert_close(&format!("{name}/{key}"), got.data(), want.data(), 1e-5, 0.0);
        }
        let (d_output, d_h_n, d_c_n) = case.upstream();
        let grads = gpu
            .backward_host(&OutputGrads {
                d_output: &d_output,
                d_h_n: Some(&d_h_n),
                d_c_n: Some(&d_c_n),
            })
            .unwrap();
        for (key, got) in case.gradient_keys(&grads) {
            let want: Tensor<f64> = case.tensor(&key);
            assert_close_to_max(&format!("{name}/{key}"), &got, want.data(), 1e-4);
        }
        // Inference ignores the dropouts: the fixture's model without them.
        let mut plain = case.weights.clone();
        plain.config = plain
            .config
            .dropout(0.0)
            .input_dropout(0.0)
            .recurrent_dropout(0.0);
        let f64_case = Fixture::<f64>::load(&bytes);
        let want =
            reference::forward(&plain.cast::<f64>(), &f64_case.x().with_cell_states()).unwrap();
        let got = gpu.forward_host(&x).unwrap();
        assert_close(
            &format!("{name}/eval"),
            got.output.data(),
            want.output.data(),
            1e-5,
            0.0,
        );
        assert_close(
            &format!("{name}/eval cell states"),
            got.cell_states.as_ref().unwrap().data(),
            want.cell_states.as_ref().unwrap().data(),
            1e-5,
            0.0,
        );
    }
}

/// Training on the GPU against the f64 reference over shapes that reach
/// every path: one to three layers, both directions, H not a multiple of
/// 4 (scalar weight loads) and of 4, lengths, batch-first, no bias.
/// Returns the dispatches of the last case's forward and backward.
fn check(name: &str, c: &Case, seed: u64) -> Option<(u64, u64)> {
    let ctx = gpu_or_skip(name)?;
    let w = LstmWeights::<f32>::init(&c.config, 31, InitOptions::default()).unwrap();
    Some(train_against_reference(&ctx, name, c, &w, seed))
}

#[test]
fn gpu_training_with_every_variant_matches_the_reference() {
    let mut n = 0;
    for layers in 1..=3 {
        for bidirectional in [false, true] {
            for (h, i) in [(1, 2), (7, 3), (12, 5), (33, 4)] {
                let cfg = LstmConfig::new(i, h)
                    .num_layers(layers)
                    .bidirectional(bidirectional)
                    .bias(n % 4 != 3)
                    .batch_first(n % 3 == 1)
                    .dropout(if n % 2 == 0 { 0.25 } else { 0.0 })
                    .input_dropout([0.0, 0.2, 0.35][n % 3])
                    .recurrent_dropout([0.3, 0.0, 0.15, 0.4][n % 4])
                    .activation(if n % 2 == 1 {
                        Activation::Relu
                    } else {
                        Activation::Tanh
                    });
                let (t, b) = (2 + n % 5, 1 + n % 4);
                let lengths = (b > 1).then(|| (0..b).map(|k| 1 + (k * 5 + n) % t).collect());
                let case = Case {
                    lengths,
                    with_state: n % 2 == 0,
                    ..Case::new(cfg, t, b)
                };
                let name = format!("case {n}: {:?} T={t} B={b}", case.config);
                if check(&name, &case, 1000 + n as u64).is_none() {
                    return;
                }
                n += 1;
            }
        }
    }
}

/// Relu inference, including a unidirectional stack's wavefront, with and
/// without the per-step cell states.
#[test]
fn relu_inference_matches_the_reference() {
    let Some(ctx) = gpu_or_skip("relu_inference_matches_the_reference") else {
        return;
    };
    for (layers, bidirectional, h) in [(1, false, 8), (3, false, 16), (2, true, 9)] {
        let cfg = LstmConfig::new(4, h)
            .num_layers(layers)
            .bidirectional(bidirectional)
            .activation(Activation::Relu);
        let c = Case {
            lengths: Some(vec![6, 3, 5]),
            ..Case::new(cfg, 6, 3)
        };
        let w = LstmWeights::<f32>::init(&c.config, 3, InitOptions::default()).unwrap();
        let data = c.data::<f32>(7);
        let data64 = data.cast::<f64>();
        let want =
            reference::forward(&w.cast::<f64>(), &c.input(&data64).with_cell_states()).unwrap();
        let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
        // Without the cell states, then with them (a workspace of its own).
        let plain = gpu.forward_host(&c.input(&data)).unwrap();
        assert!(plain.cell_states.is_none());
        let got = gpu
            .forward_host(&c.input(&data).with_cell_states())
            .unwrap();
        assert_eq!(
            plain.output, got.output,
            "the cell states change nothing else"
        );
        let name = format!("L={layers} bidirectional={bidirectional}");
        assert_close(
            &format!("{name}/cell states"),
            got.cell_states.as_ref().unwrap().data(),
            want.cell_states.as_ref().unwrap().data(),
            1e-5,
            0.0,
        );
        assert_close(&name, got.output.data(), want.output.data(), 1e-5, 0.0);
        assert_close(&name, got.h_n.data(), want.h_n.data(), 1e-5, 0.0);
        assert_close(&name, got.c_n.data(), want.c_n.data(), 1e-5, 0.0);
    }
}

/// What each variant costs in dispatches. The activation and recurrent
/// dropout cost none: they are fused into the step kernels. Input dropout
/// costs one masking dispatch per layer in the forward pass (on a copy of
/// the layer's input) and one per dX product in the backward pass. Training
/// with either dropout runs layer by layer, so a unidirectional stack gives
/// up its wavefront (T + L − 1 forward dispatches) for L·(T + 1).
#[test]
fn variants_cost_the_documented_dispatches() {
    let (t, b) = (5, 3);
    let count = |cfg: LstmConfig| {
        let case = Case {
            with_state: true,
            ..Case::new(cfg, t, b)
        };
        check("dispatch count", &case, 5)
    };
    for bidirectional in [true, false] {
        let base = LstmConfig::new(4, 8)
            .num_layers(2)
            .bidirectional(bidirectional);
        let Some(plain) = count(base.clone()) else {
            return;
        };
        let relu = count(base.clone().activation(Activation::Relu)).unwrap();
        assert_eq!(relu, plain, "relu costs no dispatch");
        let recurrent = count(base.clone().recurrent_dropout(0.3)).unwrap();
        let input = count(base.clone().input_dropout(0.3)).unwrap();
        if bidirectional {
            assert_eq!(recurrent, plain, "recurrent dropout costs no dispatch");
        } else {
            // Layer by layer instead of the wavefront: 2 projections and 2T
            // steps against 1 projection and T + 1 wavefront steps.
            assert_eq!(
                recurrent.0,
                plain.0 + t as u64,
                "bidirectional={bidirectional}"
            );
        }
        // One mask per layer forward; backward, one per dX product: layer
        // 1's and layer 0's (the input gradient is asked for).
        assert_eq!(input.0, recurrent.0 + 2, "bidirectional={bidirectional}");
        assert_eq!(input.1, recurrent.1 + 2, "bidirectional={bidirectional}");
    }
}

#[test]
fn recurrent_dropout_with_a_projection_is_refused_on_the_gpu() {
    let Some(ctx) = gpu_or_skip("recurrent_dropout_with_a_projection_is_refused_on_the_gpu") else {
        return;
    };
    let cfg = LstmConfig::new(3, 6).proj_size(2).recurrent_dropout(0.2);
    let w = LstmWeights::<f32>::init(&cfg, 1, InitOptions::default()).unwrap();
    match GpuLstm::new(&ctx, &w) {
        Err(LstmError::Unsupported(why)) => assert!(why.contains("recurrent_dropout"), "{why}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("accepted recurrent dropout with a projection"),
    }
}

#[test]
fn variants_run_under_webgpu_limits() {
    rerun_under_webgpu_limits(
        "variants_run_under_webgpu_limits",
        &[
            "gpu_matches_the_variant_fixtures",
            "relu_inference_matches_the_reference",
        ],
    );
}
