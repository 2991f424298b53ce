//! The GRU (`Cell::Gru`) through the API: its configuration's rules, its
//! states (no cell state), its files (the cell inferred from shapes, the
//! metadata `cell` and `activation`), the CPU engine against the f64
//! reference at sizes that use its threads and vector tails, and training on
//! the CPU device. (`gru_fixtures.rs` holds it to PyTorch; `gradcheck.rs` to
//! finite differences.)

mod common;

use std::collections::HashMap;

use common::{assert_close, assert_close_to_max, random_tensor};
use safetensors::tensor::TensorView;
use wgpu_lstm::cpu::CpuEngine;
use wgpu_lstm::reference::{self, OutputGrads, ReferenceTrainer};
use wgpu_lstm::weights::SafetensorsPrefix;
use wgpu_lstm::{
    Activation, Batch, Cell, Device, HeadKind, InitOptions, Inputs, LossKind, Lstm, LstmConfig,
    LstmError, LstmInput, LstmWeights, Model, OptimizerKind, Targets, Tensor, TrainConfig, Trainer,
};

fn weights(cfg: &LstmConfig) -> LstmWeights<f32> {
    LstmWeights::init(cfg, 3, InitOptions::default()).unwrap()
}

#[test]
fn cell_names_and_gate_counts() {
    for cell in [Cell::Lstm, Cell::Gru] {
        assert_eq!(Cell::from_name(cell.name()).unwrap(), cell);
        assert_eq!(cell.to_string(), cell.name());
    }
    assert_eq!(Cell::default(), Cell::Lstm);
    assert!(matches!(
        Cell::from_name("rnn"),
        Err(LstmError::InvalidConfig { field: "cell", .. })
    ));
    let (lstm, gru) = (LstmConfig::new(3, 5), LstmConfig::gru(3, 5));
    assert_eq!((lstm.gates(), gru.gates()), (4, 3));
    assert_eq!((lstm.cell_state_size(), gru.cell_state_size()), (5, 0));
    assert_eq!(gru, LstmConfig::new(3, 5).cell(Cell::Gru));
    // 3H rows in every gate parameter.
    let w = weights(&gru.clone().num_layers(2).bidirectional(true));
    for (name, shape, _) in w.named_params() {
        assert_eq!(shape[0], 15, "{name}");
    }
}

#[test]
fn a_gru_has_no_projection_and_no_activation_choice() {
    let err = LstmConfig::gru(3, 5).proj_size(2).validate().unwrap_err();
    assert!(
        matches!(
            err,
            LstmError::InvalidConfig {
                field: "proj_size",
                ..
            }
        ),
        "{err}"
    );
    let err = LstmConfig::gru(3, 5)
        .activation(Activation::Relu)
        .validate()
        .unwrap_err();
    assert!(
        matches!(
            err,
            LstmError::InvalidConfig {
                field: "activation",
                ..
            }
        ),
        "{err}"
    );
    let options = InitOptions {
        unit_forget_bias: true,
    };
    let err = LstmWeights::<f32>::init(&LstmConfig::gru(3, 5), 1, options).unwrap_err();
    assert!(matches!(err, LstmError::InvalidConfig { .. }), "{err}");
}

/// Input and recurrent dropout are not defined for the GRU yet: the
/// reference and the CPU engine say so, in inference and in training.
/// Input and recurrent dropout on a GRU (Keras' GRU `dropout` and
/// `recurrent_dropout`) apply in training only: evaluation equals the model
/// without them, and a training pass with them differs from it (their
/// values are held to PyTorch in `variant_fixtures.rs`).
#[test]
fn variational_dropout_on_a_gru_applies_in_training_only() {
    let input = random_tensor::<f32>(&[4, 2, 3], 1, 1.0);
    let x = LstmInput::new(&input);
    for cfg in [
        LstmConfig::gru(3, 5).input_dropout(0.4),
        LstmConfig::gru(3, 5).recurrent_dropout(0.4),
    ] {
        let w = weights(&cfg);
        let mut plain = w.clone();
        plain.config = plain.config.input_dropout(0.0).recurrent_dropout(0.0);
        let engine = CpuEngine::new();
        let want = reference::forward(&plain, &x).unwrap();
        assert_eq!(reference::forward(&w, &x).unwrap(), want, "{cfg:?}");
        assert_eq!(
            engine.forward(&w, &x).unwrap(),
            engine.forward(&plain, &x).unwrap()
        );
        let (train, _) = reference::forward_train(&w, &x, 1).unwrap();
        assert_ne!(
            train.output, want.output,
            "{cfg:?}: the dropout applies in training"
        );
        let (cpu_train, _) = engine.forward_train(&w, &x, 1).unwrap();
        assert_eq!(cpu_train.output.shape(), train.output.shape());
    }
}

#[test]
fn a_gru_has_no_cell_state() {
    let cfg = LstmConfig::gru(3, 5).num_layers(2);
    let w = weights(&cfg);
    let input = random_tensor::<f32>(&[4, 2, 3], 1, 1.0);
    let h_0 = random_tensor::<f32>(&[2, 2, 5], 2, 0.5);
    let c_0 = random_tensor::<f32>(&[2, 2, 5], 3, 0.5);
    let engine = CpuEngine::new();
    // c_0 is an error, with or without h_0, on every path.
    for x in [
        LstmInput::new(&input).with_state(&h_0, &c_0),
        LstmInput {
            c_0: Some(&c_0),
            ..LstmInput::new(&input)
        },
    ] {
        for err in [
            reference::forward(&w, &x).unwrap_err(),
            engine.forward(&w, &x).unwrap_err(),
            x.validate(&cfg).unwrap_err(),
        ] {
            assert!(
                matches!(&err, LstmError::InvalidValue { name, reason }
                    if name == "c_0" && reason.contains("GRU has no cell state")),
                "{err}"
            );
        }
    }
    // h_0 alone is the GRU's state; c_n and d_c_0 are [D·L, B, 0].
    let x = LstmInput::new(&input).with_h_0(&h_0);
    let (out, cache) = engine.forward_train(&w, &x, 0).unwrap();
    assert_eq!(out.c_n.shape(), [2, 2, 0]);
    let d_output = random_tensor::<f32>(out.output.shape(), 4, 1.0);
    let empty = Tensor::<f32>::zeros([2, 2, 0]);
    for d_c_n in [None, Some(&empty)] {
        let g = engine
            .backward(
                &w,
                &cache,
                &OutputGrads {
                    d_output: &d_output,
                    d_h_n: None,
                    d_c_n,
                },
            )
            .unwrap();
        assert_eq!(g.d_c_0.shape(), [2, 2, 0]);
        assert_eq!(g.d_h_0.shape(), [2, 2, 5]);
    }
    // A d_c_n of an LSTM's shape is a shape error.
    let wrong = Tensor::<f32>::zeros([2, 2, 5]);
    let err = reference::backward(
        &w,
        &cache,
        &OutputGrads {
            d_output: &d_output,
            d_h_n: None,
            d_c_n: Some(&wrong),
        },
    )
    .unwrap_err();
    assert!(matches!(err, LstmError::ShapeMismatch { .. }), "{err}");
}

/// Streaming carries h alone: two halves equal one call.
#[test]
fn forward_stateful_carries_the_hidden_state() {
    let w = weights(&LstmConfig::gru(3, 5));
    let input = random_tensor::<f32>(&[6, 2, 3], 1, 1.0);
    let whole = CpuEngine::new()
        .forward(&w, &LstmInput::new(&input))
        .unwrap();
    // Steps 0..3 and 3..6 of [6, 2, 3].
    let half = |k: usize| {
        let d = input.data()[k * 18..(k + 1) * 18].to_vec();
        Tensor::new([3, 2, 3], d).unwrap()
    };
    let mut lstm = Lstm::new(&Device::cpu(), &w).unwrap();
    lstm.forward_stateful(&LstmInput::new(&half(0))).unwrap();
    let second = lstm.forward_stateful(&LstmInput::new(&half(1))).unwrap();
    assert_eq!(second.h_n, whole.h_n);
    assert_eq!(second.output.data(), &whole.output.data()[3 * 2 * 5..]);
}

fn load(bytes: &[u8]) -> Result<LstmWeights<f32>, LstmError> {
    LstmWeights::from_safetensors_bytes(bytes, SafetensorsPrefix::Auto)
}

/// Named tensors as a safetensors file with `metadata`.
fn file_bytes(named: &[(String, Vec<usize>, &[f32])], metadata: &[(&str, &str)]) -> Vec<u8> {
    let views: Vec<(String, TensorView)> = named
        .iter()
        .map(|(n, s, v)| {
            let view = TensorView::new(safetensors::Dtype::F32, s.clone(), bytemuck::cast_slice(v));
            (n.clone(), view.unwrap())
        })
        .collect();
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    safetensors::serialize(views, (!meta.is_empty()).then_some(meta)).unwrap()
}

/// The weights' tensors under their own names, with `metadata`.
fn with_metadata(w: &LstmWeights<f32>, metadata: &[(&str, &str)]) -> Vec<u8> {
    file_bytes(&w.named_params(), metadata)
}

#[test]
fn a_gru_file_without_metadata_is_inferred() {
    let cfg = LstmConfig::gru(4, 6)
        .num_layers(3)
        .bidirectional(true)
        .bias(false);
    let w = weights(&cfg);
    let back = load(&with_metadata(&w, &[])).unwrap();
    assert_eq!(back.config, cfg);
    assert_eq!(back, w);
}

#[test]
fn save_and_load_keep_the_cell_and_the_activation() {
    let gru = weights(&LstmConfig::gru(3, 5).num_layers(2).bidirectional(true));
    let relu = weights(&LstmConfig::new(3, 5).activation(Activation::Relu));
    let plain = weights(&LstmConfig::new(3, 5));
    for (w, meta) in [
        (&gru, Some(("cell", "gru"))),
        (&relu, Some(("activation", "relu"))),
        (&plain, None),
    ] {
        let bytes = w.to_safetensors_bytes("rnn.").unwrap();
        let file = wgpu_lstm::TensorFile::from_bytes(bytes.clone()).unwrap();
        // Metadata only where nn.LSTM's defaults do not hold.
        let want: HashMap<String, String> = meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(file.metadata(), want);
        assert_eq!(&load(&bytes).unwrap(), w);
        assert_eq!(
            &LstmWeights::from_tensor_file(&file, SafetensorsPrefix::Exact("rnn.")).unwrap(),
            w
        );
    }
    // Through a file on disk as well.
    let path = std::env::temp_dir().join(format!("wgpu-lstm-gru-{}.st", std::process::id()));
    relu.save_safetensors(&path, "").unwrap();
    let back = LstmWeights::<f32>::load_safetensors(&path, SafetensorsPrefix::Auto).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(back.config.activation, Activation::Relu);
}

#[test]
fn metadata_that_contradicts_the_shapes_is_an_error() {
    let lstm = weights(&LstmConfig::new(3, 5));
    let err = load(&with_metadata(&lstm, &[("cell", "gru")])).unwrap_err();
    match &err {
        LstmError::InconsistentLayers { reason } => {
            assert!(
                reason.contains("`cell` = `gru`") && reason.contains("[20, 5]"),
                "{err}"
            )
        }
        e => panic!("expected InconsistentLayers, got {e}"),
    }
    let gru = weights(&LstmConfig::gru(3, 5));
    let err = load(&with_metadata(&gru, &[("cell", "lstm")])).unwrap_err();
    assert!(matches!(err, LstmError::InconsistentLayers { .. }), "{err}");
    // A GRU with relu is not a GRU; unknown names are a bad file.
    let err = load(&with_metadata(&gru, &[("activation", "relu")])).unwrap_err();
    assert!(
        matches!(
            err,
            LstmError::InvalidConfig {
                field: "activation",
                ..
            }
        ),
        "{err}"
    );
    for meta in [("cell", "rnn"), ("activation", "gelu")] {
        let err = load(&with_metadata(&gru, &[meta])).unwrap_err();
        assert!(matches!(err, LstmError::InvalidFile { .. }), "{err}");
    }
}

/// A GRU layer whose shapes disagree with layer 0's names the GRU.
#[test]
fn inconsistent_gru_layers_are_explained() {
    let w = weights(&LstmConfig::gru(3, 4).num_layers(2));
    let other = weights(&LstmConfig::gru(4, 2).num_layers(2));
    let mut named: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for (src, layer) in [(&w, "_l0"), (&other, "_l1")] {
        for (n, s, v) in src.named_params() {
            if n.ends_with(layer) {
                named.push((n, s, v.to_vec()));
            }
        }
    }
    let refs: Vec<(String, Vec<usize>, &[f32])> = named
        .iter()
        .map(|(n, s, v)| (n.clone(), s.clone(), &v[..]))
        .collect();
    let bytes = file_bytes(&refs, &[]);
    let err = load(&bytes).unwrap_err();
    match &err {
        LstmError::InconsistentLayers { reason } => assert!(reason.contains("GRU"), "{err}"),
        e => panic!("expected InconsistentLayers, got {e}"),
    }
}

/// The CPU engine against the f64 reference at sizes that use its threads,
/// partial vectors and padded rows: two layers, bidirectional, lengths, a
/// given state and inter-layer dropout. Bounds as for the fixtures (1e-5
/// on outputs, 1e-4 of each tensor's largest magnitude on gradients);
/// measured (AVX-512): outputs within 1.4e-7, gradients within 4.2e-7.
#[test]
fn cpu_engine_matches_the_reference_at_larger_sizes() {
    let engine = CpuEngine::new();
    for (hidden, batch) in [(70, 9), (150, 9)] {
        let cfg = LstmConfig::gru(11, hidden)
            .num_layers(2)
            .bidirectional(true)
            .dropout(0.2);
        let w = LstmWeights::<f64>::init(&cfg, 7, InitOptions::default()).unwrap();
        let t = 12;
        let input = random_tensor::<f64>(&[t, batch, 11], 3, 1.0);
        let h_0 = random_tensor::<f64>(&[4, batch, hidden], 8, 0.5);
        let lengths: Vec<usize> = (0..batch).map(|b| t - (b * 5) % t).collect();
        let x = LstmInput::new(&input).with_h_0(&h_0).with_lengths(&lengths);
        let (want, cache) = reference::forward_train(&w, &x, 42).unwrap();
        let d_output = random_tensor::<f64>(want.output.shape(), 4, 1.0);
        let d_h_n = random_tensor::<f64>(want.h_n.shape(), 5, 1.0);
        let upstream = OutputGrads {
            d_output: &d_output,
            d_h_n: Some(&d_h_n),
            d_c_n: None,
        };
        let want_g = reference::backward(&w, &cache, &upstream).unwrap();

        let (w32, input32, h_032) = (w.cast::<f32>(), input.cast::<f32>(), h_0.cast::<f32>());
        let x32 = LstmInput::new(&input32)
            .with_h_0(&h_032)
            .with_lengths(&lengths);
        let (got, cache32) = engine.forward_train(&w32, &x32, 42).unwrap();
        let name = format!("H={hidden} B={batch}");
        assert_close(&name, got.output.data(), want.output.data(), 1e-5, 0.0);
        assert_close(&name, got.h_n.data(), want.h_n.data(), 1e-5, 0.0);
        let (d32, h32) = (d_output.cast::<f32>(), d_h_n.cast::<f32>());
        let got_g = engine
            .backward(
                &w32,
                &cache32,
                &OutputGrads {
                    d_output: &d32,
                    d_h_n: Some(&h32),
                    d_c_n: None,
                },
            )
            .unwrap();
        for (what, g, r) in [
            ("d_input", &got_g.d_input, &want_g.d_input),
            ("d_h_0", &got_g.d_h_0, &want_g.d_h_0),
        ] {
            assert_close_to_max(&format!("{name}/{what}"), g.data(), r.data(), 1e-4);
        }
        for ((n, _, g), (_, _, r)) in got_g
            .weights
            .named_params()
            .into_iter()
            .zip(want_g.weights.named_params())
        {
            assert_close_to_max(&format!("{name}/{n}"), g, r, 1e-4);
        }
        // Without the input's gradient, the rest is the same.
        let params = engine
            .backward_params(
                &w32,
                &cache32,
                &OutputGrads {
                    d_output: &d32,
                    d_h_n: Some(&h32),
                    d_c_n: None,
                },
            )
            .unwrap();
        assert_eq!(params.weights, got_g.weights, "{name}");
        assert_eq!(params.d_h_0, got_g.d_h_0, "{name}");
    }
}

/// A GRU model trains on the CPU device as the reference trains it (losses
/// within 5e-7 over ten steps; measured 3e-8), and its checkpoint's
/// recurrent layer loads as a GRU.
#[test]
fn a_gru_model_trains_on_the_cpu_device() {
    let (t, b) = (6, 3);
    let cfg = LstmConfig::gru(3, 8).num_layers(2);
    let model = Model::<f32>::new(None, &cfg, 2, HeadKind::LastStep, 5).unwrap();
    let config = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(0.02));
    let inputs = random_tensor::<f32>(&[t, b, 3], 1, 1.0).into_data();
    let targets = random_tensor::<f32>(&[b, 2], 2, 1.0).into_data();
    let lengths = [6, 4, 5];
    let batch = Batch {
        seq_len: t,
        batch: b,
        inputs: Inputs::Features(&inputs),
        targets: Targets::Values(&targets),
        lengths: Some(&lengths),
    };
    let mut trainer = Trainer::new(&Device::cpu(), model.clone(), config.clone()).unwrap();
    let mut spec = ReferenceTrainer::new(model, config).unwrap();
    let mut losses = Vec::new();
    for _ in 0..10 {
        let got = trainer.step_with_loss(&batch).unwrap();
        let want = spec.step(&batch).unwrap();
        assert!((got as f64 - want).abs() <= 5e-7, "{got} vs {want}");
        losses.push(got);
    }
    assert!(losses[9] < losses[0] * 0.8, "{losses:?}");
    let path = std::env::temp_dir().join(format!("wgpu-lstm-gru-ckpt-{}.st", std::process::id()));
    trainer.save_checkpoint(&path).unwrap();
    let lstm = LstmWeights::<f32>::load_safetensors(&path, SafetensorsPrefix::Exact("lstm."));
    std::fs::remove_file(&path).unwrap();
    let lstm = lstm.unwrap();
    assert_eq!(lstm.config, cfg);
    assert_eq!(lstm, trainer.model().unwrap().lstm);
}
