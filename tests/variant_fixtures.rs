//! The LSTM variants of DESIGN.md §9 (cell activation, input and recurrent
//! dropout, with inter-layer dropout beside them) against float64 PyTorch
//! modules written out by hand in `tools/make_variant_fixtures.py`, which
//! reimplements the dropout hash so that the masks are the ones every
//! engine draws. (The file documents every tensor.)
//!
//! Tolerances are those of `pytorch_fixtures.rs`: outputs within 1e-5 in
//! f32, gradients within 1e-4 of each tensor's largest magnitude; the f64
//! reference agrees to 1e-9.

mod common;

use std::collections::HashMap;

use common::lstm_fixtures::{Case, GruFixture, cases_in};
use common::{assert_close, assert_close_to_max};
use safetensors::SafeTensors;
use wgpu_lstm::cpu::CpuEngine;
use wgpu_lstm::dropout::{MaskKind, VariationalMask};
use wgpu_lstm::reference::{self, OutputGrads};
use wgpu_lstm::{Activation, LstmWeights, Real, Tensor, TensorFile};

fn metadata(bytes: &[u8]) -> HashMap<String, String> {
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    meta.metadata().clone().unwrap()
}

/// A case with the variant settings of its metadata applied to the config,
/// and its dropout seed.
fn load<T: Real>(bytes: &[u8]) -> (Case<T>, u64) {
    let meta = metadata(bytes);
    let mut case = Case::<T>::load(bytes);
    let cfg = &mut case.weights.config;
    cfg.activation = Activation::from_name(&meta["activation"]).unwrap();
    cfg.dropout = meta["dropout"].parse().unwrap();
    cfg.input_dropout = meta["input_dropout"].parse().unwrap();
    cfg.recurrent_dropout = meta["recurrent_dropout"].parse().unwrap();
    (case, meta["dropout_seed"].parse().unwrap())
}

fn variant_cases() -> Vec<(String, Vec<u8>)> {
    let cases = cases_in("tests/fixtures/variants");
    assert!(
        cases.len() >= 5,
        "found {} variant fixtures; run tools/make_variant_fixtures.py",
        cases.len()
    );
    cases
}

type TrainPass<'a, T> = dyn Fn(
        &LstmWeights<T>,
        &wgpu_lstm::LstmInput<'_, T>,
        u64,
    ) -> (reference::LstmOutput<T>, reference::ForwardCache<T>)
    + 'a;
type BackPass<'a, T> = dyn Fn(&LstmWeights<T>, &reference::ForwardCache<T>, &OutputGrads<'_, T>) -> reference::Gradients<T>
    + 'a;

fn check<T: Real>(
    name: &str,
    bytes: &[u8],
    train: &TrainPass<'_, T>,
    back: &BackPass<'_, T>,
    out_atol: f64,
    grad_tol: f64,
) {
    let (case, seed) = load::<T>(bytes);
    let w = &case.weights;
    let x = case.x().with_cell_states();
    let (out, cache) = train(w, &x, seed);
    // Per-step cell states: the last layer's c_t, 0 at padded steps.
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
        assert_close(
            &format!("{name}/{key}"),
            got.data(),
            want.data(),
            out_atol,
            0.0,
        );
    }
    let (d_output, d_h_n, d_c_n) = case.upstream();
    let grads = back(
        w,
        &cache,
        &OutputGrads {
            d_output: &d_output,
            d_h_n: Some(&d_h_n),
            d_c_n: Some(&d_c_n),
        },
    );
    for (key, got) in case.gradient_keys(&grads) {
        let want: Tensor<f64> = case.tensor(&key);
        assert_close_to_max(&format!("{name}/{key}"), &got, want.data(), grad_tol);
    }
}

#[test]
fn the_masks_are_the_ones_the_fixtures_used() {
    for (name, bytes) in variant_cases() {
        let (case, seed) = load::<f64>(&bytes);
        let file = TensorFile::from_bytes(bytes.clone()).unwrap();
        let cfg = &case.weights.config;
        let batch = case.lengths.as_ref().map_or_else(
            || {
                let s = case.input.shape();
                if cfg.batch_first { s[0] } else { s[1] }
            },
            Vec::len,
        );
        let mut checked = 0;
        for layer in 0..cfg.num_layers {
            for dir in 0..cfg.num_directions() {
                let suffix = if dir == 1 { "_reverse" } else { "" };
                for (kind, p, units, key) in [
                    (
                        MaskKind::Input,
                        cfg.input_dropout,
                        cfg.layer_input_size(layer),
                        "input",
                    ),
                    (
                        MaskKind::Recurrent,
                        cfg.recurrent_dropout,
                        cfg.hidden_size,
                        "recurrent",
                    ),
                ] {
                    // One input mask per layer, one recurrent mask per direction.
                    let key = match kind {
                        MaskKind::Input if dir == 1 => continue,
                        MaskKind::Input => format!("mask.{key}.l{layer}"),
                        MaskKind::Recurrent => format!("mask.{key}.l{layer}{suffix}"),
                    };
                    if p == 0.0 {
                        assert!(!file.contains(&key), "{name}: {key} with p = 0");
                        continue;
                    }
                    let want = file.float::<f64>(&key).unwrap();
                    let got = VariationalMask {
                        p,
                        seed,
                        kind,
                        layer,
                        direction: dir,
                    }
                    .mask::<f64>(batch, units);
                    assert_eq!(got, want.data(), "{name}/{key}");
                    checked += 1;
                }
            }
        }
        let expected = cfg.num_layers
            * (usize::from(cfg.input_dropout > 0.0)
                + cfg.num_directions() * usize::from(cfg.recurrent_dropout > 0.0));
        assert_eq!(checked, expected, "{name}");
    }
}

#[test]
fn f64_reference_matches_pytorch_to_rounding() {
    for (name, bytes) in variant_cases() {
        check::<f64>(
            &name,
            &bytes,
            &|w, x, seed| reference::forward_train(w, x, seed).unwrap(),
            &|w, c, g| reference::backward(w, c, g).unwrap(),
            1e-9,
            1e-9,
        );
    }
}

#[test]
fn f32_reference_matches_pytorch() {
    for (name, bytes) in variant_cases() {
        check::<f32>(
            &name,
            &bytes,
            &|w, x, seed| reference::forward_train(w, x, seed).unwrap(),
            &|w, c, g| reference::backward(w, c, g).unwrap(),
            1e-5,
            1e-4,
        );
    }
}

#[test]
fn cpu_engine_matches_pytorch() {
    let engine = CpuEngine::new();
    for (name, bytes) in variant_cases() {
        check::<f32>(
            &name,
            &bytes,
            &|w, x, seed| engine.forward_train(w, x, seed).unwrap(),
            &|w, c, g| engine.backward(w, c, g).unwrap(),
            1e-5,
            1e-4,
        );
    }
}

/// Evaluation ignores the variational dropouts: the inference pass of a
/// model with them equals the one without.
#[test]
fn evaluation_ignores_variational_dropout() {
    let engine = CpuEngine::new();
    for (name, bytes) in variant_cases() {
        let (case, _) = load::<f32>(&bytes);
        let mut plain = case.weights.clone();
        plain.config.input_dropout = 0.0;
        plain.config.recurrent_dropout = 0.0;
        plain.config.dropout = 0.0;
        let x = case.x().with_cell_states();
        let want = reference::forward(&plain, &x).unwrap();
        assert!(
            want.cell_states.is_some(),
            "{name}: cell states in evaluation"
        );
        assert_eq!(
            reference::forward(&case.weights, &x).unwrap(),
            want,
            "{name}"
        );
        assert_eq!(
            engine.forward(&case.weights, &x).unwrap(),
            engine.forward(&plain, &x).unwrap(),
            "{name}"
        );
    }
}

/// The CPU engine against the f64 reference at sizes that exercise its
/// partial panels, row tiles and threads: every variant on at once.
#[test]
fn cpu_engine_matches_the_reference_at_larger_sizes() {
    use common::random_tensor;
    use wgpu_lstm::{InitOptions, LstmConfig, LstmInput};
    let engine = CpuEngine::new();
    for (hidden, batch, act) in [(37, 9, Activation::Relu), (150, 5, Activation::Tanh)] {
        let cfg = LstmConfig::new(11, hidden)
            .num_layers(2)
            .bidirectional(true)
            .dropout(0.2)
            .input_dropout(0.25)
            .recurrent_dropout(0.3)
            .activation(act);
        let w = LstmWeights::<f64>::init(&cfg, 7, InitOptions::default()).unwrap();
        let t = 12;
        let input = random_tensor::<f64>(&[t, batch, 11], 3, 1.0);
        let lengths: Vec<usize> = (0..batch).map(|b| t - (b * 5) % t).collect();
        let x = LstmInput::new(&input).with_lengths(&lengths);
        let (want, cache) = reference::forward_train(&w, &x, 42).unwrap();
        let d_output = random_tensor::<f64>(want.output.shape(), 4, 1.0);
        let d_h_n = random_tensor::<f64>(want.h_n.shape(), 5, 1.0);
        let d_c_n = random_tensor::<f64>(want.c_n.shape(), 6, 1.0);
        let grads = |d: &Tensor<f64>, h: &Tensor<f64>, c: &Tensor<f64>| {
            (d.cast::<f32>(), h.cast::<f32>(), c.cast::<f32>())
        };
        let want_g = reference::backward(
            &w,
            &cache,
            &OutputGrads {
                d_output: &d_output,
                d_h_n: Some(&d_h_n),
                d_c_n: Some(&d_c_n),
            },
        )
        .unwrap();

        let (w32, input32) = (w.cast::<f32>(), input.cast::<f32>());
        let x32 = LstmInput::new(&input32).with_lengths(&lengths);
        let (got, cache32) = engine.forward_train(&w32, &x32, 42).unwrap();
        let name = format!("H={hidden} B={batch} {act}");
        assert_close(&name, got.output.data(), want.output.data(), 1e-5, 0.0);
        assert_close(&name, got.h_n.data(), want.h_n.data(), 1e-5, 0.0);
        assert_close(&name, got.c_n.data(), want.c_n.data(), 1e-5, 0.0);
        let (d, h, c) = grads(&d_output, &d_h_n, &d_c_n);
        let got_g = engine
            .backward(
                &w32,
                &cache32,
                &OutputGrads {
                    d_output: &d,
                    d_h_n: Some(&h),
                    d_c_n: Some(&c),
                },
            )
            .unwrap();
        assert_close_to_max(&name, got_g.d_input.data(), want_g.d_input.data(), 1e-4);
        assert_close_to_max(&name, got_g.d_h_0.data(), want_g.d_h_0.data(), 1e-4);
        for ((n, _, g), (_, _, r)) in got_g
            .weights
            .named_params()
            .into_iter()
            .zip(want_g.weights.named_params())
        {
            assert_close_to_max(&format!("{name}/{n}"), g, r, 1e-4);
        }
    }
}

/// A layer-normalised LSTM's file: the norms' gains and biases under their
/// names and shapes, read back as a layer-normalised LSTM; a missing norm
/// is a typed error, and the configuration refuses a GRU or a projection.
#[test]
fn layer_norm_parameters_save_and_load() {
    use wgpu_lstm::weights::SafetensorsPrefix;
    use wgpu_lstm::{InitOptions, LstmConfig, LstmError};
    let cfg = LstmConfig::new(3, 5)
        .num_layers(2)
        .bidirectional(true)
        .layer_norm(true);
    let w = LstmWeights::<f32>::init(&cfg, 4, InitOptions::default()).unwrap();
    let names: Vec<(String, Vec<usize>)> = w
        .named_params()
        .into_iter()
        .map(|(n, s, _)| (n, s))
        .collect();
    for (name, shape) in [
        ("ln_ih_weight_l0", vec![20]),
        ("ln_hh_bias_l1_reverse", vec![20]),
        ("ln_cell_weight_l1", vec![5]),
        ("ln_cell_bias_l0_reverse", vec![5]),
    ] {
        assert!(
            names.contains(&(name.to_string(), shape)),
            "{name} in {names:?}"
        );
    }
    // Gains start at 1, biases at 0.
    let ln = w.layer(1, 1).layer_norm.as_ref().unwrap();
    assert!(ln.hh_weight.iter().all(|&v| v == 1.0) && ln.cell_bias.iter().all(|&v| v == 0.0));
    let bytes = w.to_safetensors_bytes("lstm.").unwrap();
    let back =
        LstmWeights::<f32>::from_safetensors_bytes(&bytes, SafetensorsPrefix::Exact("lstm."))
            .unwrap();
    assert_eq!(back, w);
    assert!(back.config.layer_norm);

    // A file missing one norm's tensor.
    let kept: Vec<(String, Vec<usize>, &[f32])> = w
        .named_params()
        .into_iter()
        .filter(|(n, _, _)| n != "ln_cell_bias_l1")
        .collect();
    let file = wgpu_lstm::TensorFile::from_bytes(
        safetensors::serialize(
            kept.iter().map(|(n, s, v)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(
                        safetensors::Dtype::F32,
                        s.clone(),
                        bytemuck::cast_slice(v),
                    )
                    .unwrap(),
                )
            }),
            None,
        )
        .unwrap(),
    )
    .unwrap();
    match LstmWeights::<f32>::from_tensor_file(&file, SafetensorsPrefix::Auto) {
        Err(LstmError::MissingTensor { name, hint }) => {
            assert!(name.contains("ln_cell_bias_l1"), "{name}");
            assert!(hint.contains("layer-normalised"), "{hint}");
        }
        other => panic!("expected a missing tensor, got {other:?}"),
    }
    for bad in [
        LstmConfig::gru(3, 5).layer_norm(true),
        LstmConfig::new(3, 5).proj_size(2).layer_norm(true),
    ] {
        assert!(matches!(
            bad.validate(),
            Err(LstmError::InvalidConfig {
                field: "layer_norm",
                ..
            })
        ));
    }
}

/// The GRU with input and recurrent dropout (Keras' GRU `dropout` and
/// `recurrent_dropout`) against float64 fixtures of a hand-written
/// PyTorch module: the reference in f64 and f32, and the CPU engine.
#[test]
fn gru_with_variational_dropout_matches_pytorch() {
    fn run<T: Real>(name: &str, bytes: &[u8], engine: Option<&CpuEngine>, atol: f64, gtol: f64) {
        let case = GruFixture::<T>::load(bytes);
        let (w, x, seed) = (&case.weights, case.x(), case.seed);
        let (input, h_0, lengths) = (&case.input, &case.h_0, &case.lengths);
        let get = |k: &str| case.tensor::<T>(k);
        let want = |k: &str| case.tensor::<f64>(k);
        let (d_output, d_h_n) = (get("d_output"), get("d_h_n"));
        let grads = OutputGrads {
            d_output: &d_output,
            d_h_n: Some(&d_h_n),
            d_c_n: None,
        };
        let (out, g) = match engine {
            None => {
                let (out, cache) = reference::forward_train(w, &x, seed).unwrap();
                (out, reference::backward(w, &cache, &grads).unwrap())
            }
            Some(e) => {
                // The CPU engine is f32: this arm only runs with T = f32.
                let w32 = w.cast::<f32>();
                let (i32, h32) = (input.cast::<f32>(), h_0.as_ref().map(|h| h.cast::<f32>()));
                let mut x32 = wgpu_lstm::LstmInput::new(&i32);
                if let Some(h) = &h32 {
                    x32 = x32.with_h_0(h);
                }
                if let Some(l) = &lengths {
                    x32 = x32.with_lengths(l);
                }
                let (d32, dh32) = (d_output.cast::<f32>(), d_h_n.cast::<f32>());
                let (out, cache) = e.forward_train(&w32, &x32, seed).unwrap();
                let g = e
                    .backward(
                        &w32,
                        &cache,
                        &OutputGrads {
                            d_output: &d32,
                            d_h_n: Some(&dh32),
                            d_c_n: None,
                        },
                    )
                    .unwrap();
                let back = |t: &Tensor<f32>| t.cast::<T>();
                (
                    reference::LstmOutput {
                        output: back(&out.output),
                        h_n: back(&out.h_n),
                        c_n: back(&out.c_n),
                        cell_states: None,
                    },
                    reference::Gradients {
                        weights: g.weights.cast::<T>(),
                        d_input: back(&g.d_input),
                        d_h_0: back(&g.d_h_0),
                        d_c_0: back(&g.d_c_0),
                    },
                )
            }
        };
        assert_close(
            &format!("{name}/output"),
            out.output.data(),
            want("output").data(),
            atol,
            0.0,
        );
        assert_close(
            &format!("{name}/h_n"),
            out.h_n.data(),
            want("h_n").data(),
            atol,
            0.0,
        );
        assert_close_to_max(
            &format!("{name}/grad.input"),
            g.d_input.data(),
            want("grad.input").data(),
            gtol,
        );
        if h_0.is_some() {
            assert_close_to_max(
                &format!("{name}/grad.h_0"),
                g.d_h_0.data(),
                want("grad.h_0").data(),
                gtol,
            );
        }
        for (p, _, v) in g.weights.named_params() {
            let key = format!("grad.gru.{p}");
            assert_close_to_max(&format!("{name}/{key}"), v, want(&key).data(), gtol);
        }
    }
    let cases = cases_in("tests/fixtures/gru_variants");
    assert!(
        cases.len() >= 2,
        "found {} GRU variant fixtures",
        cases.len()
    );
    let engine = CpuEngine::new();
    for (name, bytes) in cases {
        run::<f64>(&name, &bytes, None, 1e-9, 1e-9);
        run::<f32>(&name, &bytes, None, 1e-5, 1e-4);
        run::<f32>(
            &format!("{name} (CPU engine)"),
            &bytes,
            Some(&engine),
            1e-5,
            1e-4,
        );
    }
}
