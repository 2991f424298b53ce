//! The layer-normalised LSTM (`layer_norm(true)`) on the GPU engine, for
//! inference and training, against the f64 reference (itself checked
//! against PyTorch's float64 fixtures in `variant_fixtures.rs`, and the GPU
//! against those fixtures in `gpu_variants.rs`), with random gains and
//! biases so that every parameter's place matters, and the dispatches it
//! costs. Tolerances as elsewhere: outputs within 1e-5, gradients within
//! 1e-4 of each tensor's largest magnitude.

mod common;

use common::assert_close;
use common::case::Case;
use common::gpu::{gpu_or_skip, rerun_under_webgpu_limits, train_against_reference};
use wgpu_lstm::gpu::{GpuLstm, Precision};
use wgpu_lstm::reference;
use wgpu_lstm::{Activation, InitOptions, LstmConfig, LstmError, LstmWeights};

/// Weights for `cfg` whose layer-norm gains and biases are drawn around
/// (1, 0) rather than left at their initial values.
fn weights(cfg: &LstmConfig, seed: u64) -> LstmWeights<f32> {
    let mut w = LstmWeights::<f32>::init(cfg, seed, InitOptions::default()).unwrap();
    let mut k = seed as usize;
    let mut draw = |centre: f32| {
        k += 1;
        centre + ((k * 7919 % 97) as f32 / 97.0 - 0.5) * 0.6
    };
    for layer in &mut w.layers {
        let ln = layer.layer_norm.as_mut().expect("layer-norm weights");
        for v in [&mut ln.ih_weight, &mut ln.hh_weight, &mut ln.cell_weight] {
            v.iter_mut().for_each(|x| *x = draw(1.0));
        }
        for v in [&mut ln.ih_bias, &mut ln.hh_bias, &mut ln.cell_bias] {
            v.iter_mut().for_each(|x| *x = draw(0.0));
        }
    }
    w
}

/// Training over shapes that reach every path: one to three layers, both
/// directions, H of 3, 7 and 33 and one past the kernels' 128 invocations
/// per row (several units per invocation), lengths, batch-first, no bias,
/// the relu activation and every dropout. (Not H ≤ 2: the cell's norm over
/// one or two values is constant (0, or ±1 up to ε), so h barely depends on
/// c and what reaches h_0 is a residue of cancelling terms: ~3e-5 against
/// ~1 at H ≥ 3, which f32 cannot resolve to 1e-4 of itself. The f32
/// reference misses its own f64 by 8e-4 of that there.)
#[test]
fn gpu_layer_norm_training_matches_the_reference() {
    let Some(ctx) = gpu_or_skip("gpu_layer_norm_training_matches_the_reference") else {
        return;
    };
    let mut n = 0;
    for layers in 1..=3 {
        for bidirectional in [false, true] {
            for (h, i) in [(3, 2), (7, 3), (33, 4), (130, 5)] {
                let cfg = LstmConfig::new(i, h)
                    .num_layers(layers)
                    .bidirectional(bidirectional)
                    .layer_norm(true)
                    .bias(n % 4 != 3)
                    .batch_first(n % 3 == 1)
                    .dropout(if n % 2 == 0 { 0.25 } else { 0.0 })
                    .input_dropout([0.0, 0.2, 0.0][n % 3])
                    .recurrent_dropout([0.3, 0.0, 0.0, 0.15][n % 4])
                    .activation(if n % 5 == 2 {
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
                let w = weights(&case.config, 40 + n as u64);
                train_against_reference(&ctx, &name, &case, &w, 1000 + n as u64);
                n += 1;
            }
        }
    }
}

/// The edges of the step loop: one step, one sequence, both directions,
/// with a given initial state.
#[test]
fn gpu_layer_norm_at_t_1_and_b_1_matches_the_reference() {
    let Some(ctx) = gpu_or_skip("gpu_layer_norm_at_t_1_and_b_1_matches_the_reference") else {
        return;
    };
    for (t, b) in [(1, 1), (1, 3), (4, 1)] {
        let cfg = LstmConfig::new(3, 6)
            .num_layers(2)
            .bidirectional(true)
            .layer_norm(true);
        let case = Case {
            with_state: true,
            ..Case::new(cfg, t, b)
        };
        let w = weights(&case.config, 9);
        train_against_reference(&ctx, &format!("T={t} B={b}"), &case, &w, 3);
    }
}

/// Inference, with and without the per-step cell states, and the weights
/// read back as they were given.
#[test]
fn gpu_layer_norm_inference_matches_the_reference() {
    let Some(ctx) = gpu_or_skip("gpu_layer_norm_inference_matches_the_reference") else {
        return;
    };
    for (layers, bidirectional, h) in [(1, false, 8), (3, false, 16), (2, true, 9)] {
        let cfg = LstmConfig::new(4, h)
            .num_layers(layers)
            .bidirectional(bidirectional)
            .layer_norm(true);
        let c = Case {
            lengths: Some(vec![6, 3, 5]),
            with_state: true,
            ..Case::new(cfg, 6, 3)
        };
        let w = weights(&c.config, 3);
        let data = c.data::<f32>(7);
        let data64 = data.cast::<f64>();
        let want =
            reference::forward(&w.cast::<f64>(), &c.input(&data64).with_cell_states()).unwrap();
        let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
        assert_eq!(gpu.weights().unwrap(), w, "the weights read back");
        let plain = gpu.forward_host(&c.input(&data)).unwrap();
        let got = gpu
            .forward_host(&c.input(&data).with_cell_states())
            .unwrap();
        assert_eq!(
            plain.output, got.output,
            "the cell states change nothing else"
        );
        let name = format!("L={layers} bidirectional={bidirectional}");
        for (what, got, want) in [
            ("output", &got.output, &want.output),
            ("h_n", &got.h_n, &want.h_n),
            ("c_n", &got.c_n, &want.c_n),
            (
                "cell states",
                got.cell_states.as_ref().unwrap(),
                want.cell_states.as_ref().unwrap(),
            ),
        ] {
            assert_close(
                &format!("{name}/{what}"),
                got.data(),
                want.data(),
                1e-5,
                0.0,
            );
        }
    }
}

/// What the layer norm costs in dispatches, against the plain LSTM of the
/// same shape: per layer, one input-norm dispatch and a second dispatch per
/// step forward; backward, a second dispatch per step and two per layer
/// (the input norm's backward and the parameter gradients) in place of the
/// bias gradient's column sum. (Bidirectional, so that neither runs as a
/// wavefront.)
#[test]
fn layer_norm_costs_the_documented_dispatches() {
    let Some(ctx) = gpu_or_skip("layer_norm_costs_the_documented_dispatches") else {
        return;
    };
    let (t, b, layers) = (5u64, 3, 2u64);
    let base = LstmConfig::new(4, 8).num_layers(2).bidirectional(true);
    let case = |cfg: LstmConfig| Case {
        with_state: true,
        ..Case::new(cfg, t as usize, b)
    };
    let plain_cfg = base.clone();
    let plain_w = LstmWeights::<f32>::init(&plain_cfg, 2, InitOptions::default()).unwrap();
    let plain = train_against_reference(&ctx, "plain", &case(plain_cfg), &plain_w, 5);
    let ln_cfg = base.layer_norm(true);
    let ln = train_against_reference(
        &ctx,
        "layer norm",
        &case(ln_cfg.clone()),
        &weights(&ln_cfg, 2),
        5,
    );
    assert_eq!(ln.0, plain.0 + layers * (1 + t), "forward");
    assert_eq!(ln.1, plain.1 + layers * (t + 2 - 1), "backward");
}

#[test]
fn a_layer_norm_model_trains_on_the_gpu_as_on_the_cpu() {
    if gpu_or_skip("a_layer_norm_model_trains_on_the_gpu_as_on_the_cpu").is_none() {
        return;
    }
    let cfg = LstmConfig::new(3, 10).num_layers(2).layer_norm(true);
    let g = common::training::gpu_trains_as_the_cpu(&cfg);
    // The gains and biases moved: the optimizer updates them too.
    let ln = g.lstm.layer(0, 0).layer_norm.as_ref().unwrap();
    assert!(ln.cell_weight.iter().any(|&v| v != 1.0));
    assert!(ln.hh_bias.iter().any(|&v| v != 0.0));
}

#[test]
fn layer_norm_in_f16_is_refused_on_the_gpu() {
    let Some(ctx) = gpu_or_skip("layer_norm_in_f16_is_refused_on_the_gpu") else {
        return;
    };
    if ctx.check_precision(Precision::F16).is_err() {
        return; // no f16 on this adapter: nothing to refuse
    }
    let w = weights(&LstmConfig::new(3, 6).layer_norm(true), 1);
    match GpuLstm::with_precision(&ctx, &w, Precision::F16) {
        Err(LstmError::Unsupported(why)) => assert!(why.contains("layer_norm"), "{why}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("accepted a layer-normalised LSTM in f16"),
    }
}

#[test]
fn layer_norm_runs_under_webgpu_limits() {
    rerun_under_webgpu_limits(
        "layer_norm_runs_under_webgpu_limits",
        &[
            "gpu_layer_norm_training_matches_the_reference",
            "gpu_layer_norm_inference_matches_the_reference",
        ],
    );
}
