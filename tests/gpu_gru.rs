//! The GRU on the GPU engine: its three gates in the LSTM kernels' four
//! slots (`src/gpu/lstm/gru.rs`), for inference and training, against
//! PyTorch's float64 `nn.GRU` fixtures (`tools/make_variant_fixtures.py`)
//! and the f64 reference. Tolerances as elsewhere: outputs within 1e-5,
//! gradients within 1e-4 of each tensor's largest magnitude.

mod common;

use common::case::Case;
use common::gpu::{gpu_or_skip, rerun_under_webgpu_limits};
use common::lstm_fixtures::{GruFixture, cases_in};
use common::{assert_close, assert_close_to_max};
use wgpu_lstm::gpu::GpuLstm;
use wgpu_lstm::reference::{self, OutputGrads};
use wgpu_lstm::{InitOptions, LstmConfig, LstmInput, LstmWeights};

#[test]
fn gpu_matches_pytorch_gru_fixtures() {
    let Some(ctx) = gpu_or_skip("gpu_matches_pytorch_gru_fixtures") else {
        return;
    };
    let cases: Vec<_> = cases_in("tests/fixtures/gru")
        .into_iter()
        .filter(|(n, _)| !n.starts_with("gru_state_dict"))
        .collect();
    assert!(cases.len() >= 5, "found {} GRU fixtures", cases.len());
    for (name, bytes) in cases {
        let case = GruFixture::<f32>::load(&bytes);
        let (w, x, h_0) = (&case.weights, case.x(), &case.h_0);
        let get = |k: &str| case.tensor::<f32>(k);
        let want = |k: &str| case.tensor::<f64>(k);
        let mut gpu = GpuLstm::new(&ctx, w).unwrap();
        // Inference, then training (no dropout: the same numbers).
        let eval = gpu.forward_host(&x).unwrap();
        let out = gpu.forward_train_host(&x, 0).unwrap();
        for (mode, o) in [("eval", &eval), ("train", &out)] {
            assert_close(
                &format!("{name}/{mode}/output"),
                o.output.data(),
                want("output").data(),
                1e-5,
                0.0,
            );
            assert_close(
                &format!("{name}/{mode}/h_n"),
                o.h_n.data(),
                want("h_n").data(),
                1e-5,
                0.0,
            );
            assert_eq!(
                o.c_n.shape(),
                [o.h_n.shape()[0], o.h_n.shape()[1], 0],
                "no cell state"
            );
        }
        let (d_output, d_h_n) = (get("d_output"), get("d_h_n"));
        let grads = gpu
            .backward_host(&OutputGrads {
                d_output: &d_output,
                d_h_n: Some(&d_h_n),
                d_c_n: None,
            })
            .unwrap();
        assert_close_to_max(
            &format!("{name}/grad.input"),
            grads.d_input.data(),
            want("grad.input").data(),
            1e-4,
        );
        if h_0.is_some() {
            assert_close_to_max(
                &format!("{name}/grad.h_0"),
                grads.d_h_0.data(),
                want("grad.h_0").data(),
                1e-4,
            );
        }
        for (p, _, g) in grads.weights.named_params() {
            let key = format!("grad.gru.{p}");
            assert_close_to_max(&format!("{name}/{key}"), g, want(&key).data(), 1e-4);
        }
    }
}

/// Training on the GPU against the f64 reference: one to three layers
/// (a unidirectional stack trains as a wavefront), both directions, odd
/// sizes, lengths, batch-first, no bias, inter-layer dropout.
#[test]
fn gpu_gru_training_matches_the_reference() {
    let Some(ctx) = gpu_or_skip("gpu_gru_training_matches_the_reference") else {
        return;
    };
    let mut n = 0;
    for layers in 1..=3 {
        for bidirectional in [false, true] {
            for (h, i) in [(1, 2), (7, 3), (12, 5), (33, 4)] {
                let cfg = LstmConfig::gru(i, h)
                    .num_layers(layers)
                    .bidirectional(bidirectional)
                    .bias(n % 4 != 3)
                    .batch_first(n % 3 == 1)
                    .dropout(if n % 2 == 0 { 0.25 } else { 0.0 });
                let (t, b) = (2 + n % 5, 1 + n % 4);
                let c = Case {
                    lengths: (b > 1).then(|| (0..b).map(|k| 1 + (k * 5 + n) % t).collect()),
                    ..Case::new(cfg, t, b)
                };
                let name = format!("case {n}: {:?} T={t} B={b}", c.config);
                let w = LstmWeights::<f32>::init(&c.config, 31, InitOptions::default()).unwrap();
                let data = c.data::<f32>(1);
                let mut x = LstmInput::new(&data.input);
                let data64 = data.cast::<f64>();
                let mut x64 = LstmInput::new(&data64.input);
                if n % 2 == 0 {
                    x = x.with_h_0(&data.h_0);
                    x64 = x64.with_h_0(&data64.h_0);
                }
                if let Some(l) = &c.lengths {
                    x = x.with_lengths(l);
                    x64 = x64.with_lengths(l);
                }
                let w64 = w.cast::<f64>();
                let (want, cache) = reference::forward_train(&w64, &x64, 900 + n as u64).unwrap();
                let grads64 = OutputGrads {
                    d_output: &data64.d_output,
                    d_h_n: Some(&data64.d_h_n),
                    d_c_n: None,
                };
                let want_g = reference::backward(&w64, &cache, &grads64).unwrap();
                let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
                let got = gpu.forward_train_host(&x, 900 + n as u64).unwrap();
                assert_close(&name, got.output.data(), want.output.data(), 1e-5, 0.0);
                assert_close(&name, got.h_n.data(), want.h_n.data(), 1e-5, 0.0);
                let got_g = gpu
                    .backward_host(&OutputGrads {
                        d_output: &data.d_output,
                        d_h_n: Some(&data.d_h_n),
                        d_c_n: None,
                    })
                    .unwrap();
                assert_close_to_max(
                    &format!("{name}/d_input"),
                    got_g.d_input.data(),
                    want_g.d_input.data(),
                    1e-4,
                );
                if n % 2 == 0 {
                    assert_close_to_max(
                        &format!("{name}/d_h_0"),
                        got_g.d_h_0.data(),
                        want_g.d_h_0.data(),
                        1e-4,
                    );
                }
                for ((p, _, g), (_, _, r)) in got_g
                    .weights
                    .named_params()
                    .into_iter()
                    .zip(want_g.weights.named_params())
                {
                    assert_close_to_max(&format!("{name}/{p}"), g, r, 1e-4);
                }
                n += 1;
            }
        }
    }
}

/// A GRU model trains on the GPU as on the CPU: the same losses and
/// parameters after a few Adam steps (the padded slots stay out of it).
#[test]
fn a_gru_model_trains_on_the_gpu_as_on_the_cpu() {
    if gpu_or_skip("a_gru_model_trains_on_the_gpu_as_on_the_cpu").is_none() {
        return;
    }
    common::training::gpu_trains_as_the_cpu(&LstmConfig::gru(3, 10).num_layers(2));
}

#[test]
fn gru_runs_under_webgpu_limits() {
    rerun_under_webgpu_limits(
        "gru_runs_under_webgpu_limits",
        &["gpu_matches_pytorch_gru_fixtures"],
    );
}

/// A GRU costs the LSTM's dispatches: one per step, forward and backward
/// (a unidirectional stack's wavefront included), plus four small ones per
/// layer after the weight gradients, which clear its padded slots.
#[test]
fn a_gru_costs_the_lstms_dispatches() {
    let Some(ctx) = gpu_or_skip("a_gru_costs_the_lstms_dispatches") else {
        return;
    };
    let (t, b) = (5, 3);
    for (layers, bidirectional) in [(2, false), (2, true)] {
        let counts = |cfg: LstmConfig| {
            let w = LstmWeights::<f32>::init(&cfg, 2, InitOptions::default()).unwrap();
            let input = common::random_tensor::<f32>(&[t, b, 4], 3, 1.0);
            let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
            let c0 = ctx.counters();
            let out = gpu.forward_train_host(&LstmInput::new(&input), 1).unwrap();
            let c1 = ctx.counters();
            gpu.backward_host(&OutputGrads {
                d_output: &out.output,
                d_h_n: None,
                d_c_n: None,
            })
            .unwrap();
            let c2 = ctx.counters();
            ((c1 - c0).dispatches, (c2 - c1).dispatches)
        };
        let lstm = counts(
            LstmConfig::new(4, 8)
                .num_layers(layers)
                .bidirectional(bidirectional),
        );
        let gru = counts(
            LstmConfig::gru(4, 8)
                .num_layers(layers)
                .bidirectional(bidirectional),
        );
        assert_eq!(gru.0, lstm.0, "forward, bidirectional={bidirectional}");
        assert_eq!(
            gru.1,
            lstm.1 + 4 * layers as u64,
            "backward, bidirectional={bidirectional}"
        );
    }
}

/// A GRU with input and recurrent dropout trains on the GPU as PyTorch's
/// float64 fixtures of a hand-written module say (the same hashed masks).
#[test]
fn gpu_gru_with_variational_dropout_matches_pytorch() {
    let Some(ctx) = gpu_or_skip("gpu_gru_with_variational_dropout_matches_pytorch") else {
        return;
    };
    let cases = cases_in("tests/fixtures/gru_variants");
    assert!(
        cases.len() >= 2,
        "found {} GRU variant fixtures",
        cases.len()
    );
    for (name, bytes) in cases {
        let case = GruFixture::<f32>::load(&bytes);
        let (w, x, h_0, seed) = (&case.weights, case.x(), &case.h_0, case.seed);
        let get = |k: &str| case.tensor::<f32>(k);
        let want = |k: &str| case.tensor::<f64>(k);
        let mut gpu = GpuLstm::new(&ctx, w).unwrap();
        let out = gpu.forward_train_host(&x, seed).unwrap();
        assert_close(
            &format!("{name}/output"),
            out.output.data(),
            want("output").data(),
            1e-5,
            0.0,
        );
        assert_close(
            &format!("{name}/h_n"),
            out.h_n.data(),
            want("h_n").data(),
            1e-5,
            0.0,
        );
        let (d_output, d_h_n) = (get("d_output"), get("d_h_n"));
        let g = gpu
            .backward_host(&OutputGrads {
                d_output: &d_output,
                d_h_n: Some(&d_h_n),
                d_c_n: None,
            })
            .unwrap();
        assert_close_to_max(
            &format!("{name}/grad.input"),
            g.d_input.data(),
            want("grad.input").data(),
            1e-4,
        );
        if h_0.is_some() {
            assert_close_to_max(
                &format!("{name}/grad.h_0"),
                g.d_h_0.data(),
                want("grad.h_0").data(),
                1e-4,
            );
        }
        for (p, _, v) in g.weights.named_params() {
            let key = format!("grad.gru.{p}");
            assert_close_to_max(&format!("{name}/{key}"), v, want(&key).data(), 1e-4);
        }
    }
}
