//! Models of several recurrent modules of their own sizes (`Model::stack`,
//! `Model::builder`): against PyTorch float64 fixtures of the equivalent
//! module (`tools/make_train_fixtures.py`, `stack_features` and
//! `stack_tokens`), finite differences in f64, and the f64 reference on
//! every device; their files under the PyTorch module's names; and the typed
//! errors of stacks that do not fit.

mod common;

use std::collections::HashMap;

use common::assert_close;
use common::assert_close_to_max;
use common::gpu::gpu_or_skip;
use common::training::fixture;
use wgpu_lstm::reference::ReferenceTrainer;
use wgpu_lstm::{
    Activation, Batch, Cell, Device, HeadKind, Inputs, LossKind, LstmConfig, LstmError, Model,
    OptimizerKind, Real, Targets, TensorFile, TrainConfig, Trainer,
};

/// The CPU engine, and the GPU when there is one (required in CI).
fn devices(test: &str) -> Vec<Device> {
    let mut out = vec![Device::cpu()];
    out.extend(gpu_or_skip(test).map(Device::from_context));
    out
}

/// One of the two stack fixtures: its batch, and the initial model that
/// PyTorch saved as a model file.
struct Fixture {
    kind: &'static str,
    file: TensorFile,
    meta: HashMap<String, String>,
    features: Vec<f32>,
    tokens: Vec<usize>,
    values: Vec<f32>,
    classes: Vec<i64>,
    lengths: Vec<usize>,
    seq_len: usize,
}

impl Fixture {
    fn load(kind: &'static str) -> Self {
        let (bytes, meta) = fixture(&format!("stack_{kind}"));
        let file = TensorFile::from_bytes(bytes).unwrap();
        let seq_len = file.shape("input").unwrap()[0];
        let (mut features, mut tokens) = (Vec::new(), Vec::new());
        match kind {
            "features" => features = file.float::<f32>("input").unwrap().into_data(),
            _ => {
                tokens = file
                    .integers("input")
                    .unwrap()
                    .iter()
                    .map(|&v| v as usize)
                    .collect()
            }
        }
        let (mut values, mut classes) = (Vec::new(), Vec::new());
        match kind {
            "features" => values = file.float::<f32>("target").unwrap().into_data(),
            _ => classes = file.integers("target").unwrap(),
        }
        let lengths = file
            .integers("lengths")
            .unwrap()
            .iter()
            .map(|&v| v as usize)
            .collect();
        Fixture {
            kind,
            file,
            meta,
            features,
            tokens,
            values,
            classes,
            lengths,
            seq_len,
        }
    }

    fn model_path(&self) -> std::path::PathBuf {
        common::root().join(format!(
            "tests/fixtures/training/stack_{}_model.safetensors",
            self.kind
        ))
    }

    /// The initial model, from the file PyTorch's `state_dict` was saved in.
    fn model<T: Real>(&self) -> Model<T> {
        Model::load_safetensors(self.model_path()).unwrap()
    }

    fn loss(&self) -> LossKind {
        match self.kind {
            "features" => LossKind::Mse,
            _ => LossKind::CrossEntropy {
                ignore_index: Some(-100),
            },
        }
    }

    fn config(&self, optimizer: OptimizerKind) -> TrainConfig {
        TrainConfig::new(self.loss(), optimizer)
    }

    fn batch(&self) -> Batch<'_> {
        Batch {
            seq_len: self.seq_len,
            batch: self.lengths.len(),
            inputs: match self.kind {
                "features" => Inputs::Features(&self.features),
                _ => Inputs::Tokens(&self.tokens),
            },
            targets: match self.kind {
                "features" => Targets::Values(&self.values),
                _ => Targets::Classes(&self.classes),
            },
            lengths: Some(&self.lengths),
        }
    }

    fn f64s(&self, key: &str) -> Vec<f64> {
        self.file.float::<f64>(key).unwrap().into_data()
    }
}

const KINDS: [&str; 2] = ["features", "tokens"];

/// The learning rate of the SGD step that reveals gradients: large, so that
/// in f32 the rounding of `param − lr·grad` (about 6e-8·|param|) is small
/// beside lr·grad even for the smallest gradients.
const PROBE_LR: f64 = 1000.0;

/// Every parameter's gradient as one step of SGD(lr = `PROBE_LR`) reveals
/// it: (before − after) / lr.
fn sgd_gradients<T: Real>(before: &Model<T>, after: &Model<T>) -> Vec<(String, Vec<f64>)> {
    before
        .named_params()
        .into_iter()
        .zip(after.named_params())
        .map(|((name, _, b), (_, _, a))| {
            let g = b
                .iter()
                .zip(a)
                .map(|(&b, &a)| (b.as_f64() - a.as_f64()) / PROBE_LR)
                .collect();
            (name, g)
        })
        .collect()
}

#[test]
fn pytorch_module_files_load_with_their_names_and_shapes() {
    for kind in KINDS {
        let fx = Fixture::load(kind);
        let model: Model<f64> = fx.model();
        // The architecture, from the names, shapes and metadata alone.
        match kind {
            "features" => {
                assert!(model.embedding.is_none());
                assert!(model.lstm.config.bidirectional);
                assert_eq!(
                    (model.lstm.config.input_size, model.lstm.config.hidden_size),
                    (3, 5)
                );
                assert_eq!(model.stack.len(), 1);
                assert_eq!(model.stack[0].config.input_size, 10);
                let hidden = model.hidden.as_ref().expect("a hidden layer");
                assert_eq!(hidden.activation, Activation::Tanh);
                assert_eq!(hidden.linear.out_features, 3);
                assert_eq!(model.head_kind, HeadKind::LastStep);
            }
            _ => {
                assert_eq!(model.embedding.as_ref().unwrap().num_embeddings, 11);
                assert_eq!(model.lstm.config.cell, Cell::Gru);
                assert_eq!(model.stack[0].config.cell, Cell::Lstm);
                assert_eq!(model.stack[0].config.num_layers, 2);
                assert!(model.hidden.is_none());
                assert_eq!(model.head_kind, HeadKind::PerStep);
            }
        }
        // Every name and shape is PyTorch's, in the module's order.
        let bytes = std::fs::read(fx.model_path()).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut file_names: Vec<String> = st.names().into_iter().map(String::from).collect();
        let mut ours: Vec<(String, Vec<usize>)> = model
            .named_params()
            .into_iter()
            .map(|(n, s, _)| (n, s))
            .collect();
        for (name, shape) in &ours {
            assert_eq!(&st.tensor(name).unwrap().shape(), shape, "{kind}: {name}");
        }
        file_names.sort();
        ours.sort();
        let names: Vec<String> = ours.into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, file_names, "{kind}");

        // A saved model reads back as itself.
        let dir = tempfile_dir(&format!("roundtrip_{kind}"));
        let path = dir.join("model.safetensors");
        model.save_safetensors(&path).unwrap();
        assert_eq!(Model::<f64>::load_safetensors(&path).unwrap(), model);
    }
}

/// A fresh folder under the test target's temporary directory.
fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("model_stack_{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The f64 reference against PyTorch: the output, every gradient, and three
/// Adam steps, to float64's rounding (the fixture's features are values f32
/// holds exactly, as a batch reads f32).
#[test]
fn the_reference_matches_pytorch_on_stacks() {
    for kind in KINDS {
        let fx = Fixture::load(kind);
        let model: Model<f64> = fx.model();
        let mut sgd =
            ReferenceTrainer::new(model.clone(), fx.config(OptimizerKind::sgd(PROBE_LR))).unwrap();
        assert_close(
            &format!("{kind}/output"),
            &sgd.predict(&fx.batch()).unwrap(),
            &fx.f64s("output"),
            1e-12,
            0.0,
        );
        sgd.step(&fx.batch()).unwrap();
        for (name, g) in sgd_gradients(&model, sgd.model()) {
            let want = fx.f64s(&format!("grad.{name}"));
            assert_close_to_max(&format!("{kind}/grad.{name}"), &g, &want, 1e-9);
        }
        let mut adam = ReferenceTrainer::new(model, fx.config(OptimizerKind::adam(0.01))).unwrap();
        for (k, want) in fx.f64s("loss").into_iter().enumerate() {
            let got = adam.step(&fx.batch()).unwrap();
            assert!(
                (got - want).abs() <= 1e-12 * want.abs(),
                "{kind} step {k}: {got} vs {want}"
            );
        }
        for (name, _, values) in adam.model().named_params() {
            let want = fx.f64s(&format!("final.{name}"));
            assert_close(&format!("{kind}/final.{name}"), values, &want, 1e-12, 0.0);
        }
    }
}

/// Every device's trainer against PyTorch: the output, the first step's
/// gradients (within 1e-4 of each tensor's largest), three Adam steps' losses
/// and parameters. The trained model's file is left in the test target's
/// temporary folder, for `make_train_fixtures.py --check-saved`.
#[test]
fn every_device_trains_stacks_as_pytorch() {
    for device in devices("every_device_trains_stacks_as_pytorch") {
        for kind in KINDS {
            let fx = Fixture::load(kind);
            let name = format!("{device:?}/{kind}");
            let model: Model<f32> = fx.model();
            let mut sgd = Trainer::new(
                &device,
                model.clone(),
                fx.config(OptimizerKind::sgd(PROBE_LR)),
            )
            .unwrap();
            assert_close(
                &format!("{name}/output"),
                &sgd.predict(&fx.batch()).unwrap(),
                &fx.f64s("output"),
                1e-5,
                0.0,
            );
            sgd.step(&fx.batch()).unwrap();
            for (p, g) in sgd_gradients(&model, &sgd.model().unwrap()) {
                let want = fx.f64s(&format!("grad.{p}"));
                assert_close_to_max(&format!("{name}/grad.{p}"), &g, &want, 1e-4);
            }
            let mut adam =
                Trainer::new(&device, model, fx.config(OptimizerKind::adam(0.01))).unwrap();
            for (k, want) in fx.f64s("loss").into_iter().enumerate() {
                let got = adam.step_with_loss(&fx.batch()).unwrap() as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * want.abs(),
                    "{name} step {k}: {got} vs {want}"
                );
            }
            let trained = adam.model().unwrap();
            for (p, _, values) in trained.named_params() {
                let want = fx.f64s(&format!("final.{p}"));
                assert_close(&format!("{name}/final.{p}"), values, &want, 1e-5, 1e-5);
            }
            let path = tempfile_dir("trained").join(format!("stack_{kind}.safetensors"));
            trained.save_safetensors(&path).unwrap();
            assert_eq!(fx.meta["head_kind"], trained.head_kind.name());
        }
    }
}

/// The f64 reference's gradients of a stack (embedding, GRU, two-layer
/// LSTM, per-step head; and a bidirectional LSTM into an LSTM, a hidden tanh
/// layer and a last-step head) against central differences of its loss.
#[test]
fn stack_gradients_match_finite_differences() {
    for kind in KINDS {
        let fx = Fixture::load(kind);
        let model: Model<f64> = fx.model();
        let loss_of = |m: &Model<f64>| {
            ReferenceTrainer::new(m.clone(), fx.config(OptimizerKind::sgd(PROBE_LR)))
                .unwrap()
                .evaluate(&fx.batch())
                .unwrap()
        };
        let mut sgd =
            ReferenceTrainer::new(model.clone(), fx.config(OptimizerKind::sgd(PROBE_LR))).unwrap();
        sgd.step(&fx.batch()).unwrap();
        let grads = sgd_gradients(&model, sgd.model());
        let eps = 1e-6;
        let mut worst = 0.0f64;
        for (p, (name, g)) in grads.iter().enumerate() {
            for (i, &gi) in g.iter().enumerate() {
                let mut plus = model.clone();
                plus.params_mut()[p][i] += eps;
                let mut minus = model.clone();
                minus.params_mut()[p][i] -= eps;
                let fd = (loss_of(&plus) - loss_of(&minus)) / (2.0 * eps);
                let err = (fd - gi).abs();
                worst = worst.max(err);
                assert!(err < 1e-6, "{kind}/{name}[{i}]: {gi} vs {fd}");
            }
        }
        eprintln!("{kind}: largest |analytic − finite difference| {worst:e}");
    }
}

/// A stack with dropout between modules and recurrent dropout, of LSTMs and
/// a GRU in both directions, and a hidden relu layer before a per-step head, on every device against the f64 reference with
/// the same masks: every gradient within 1e-4 of its largest, for two
/// dropout seeds.
#[test]
fn stacks_with_dropout_train_as_the_reference_on_every_device() {
    let model: Model<f32> = Model::builder()
        .embedding(13, 6)
        .layer(
            LstmConfig::new(6, 7)
                .bidirectional(true)
                .input_dropout(0.2)
                .recurrent_dropout(0.3),
        )
        .layer(LstmConfig::gru(14, 5).input_dropout(0.25))
        .layer(LstmConfig::new(5, 9).num_layers(2).dropout(0.1))
        .hidden(6, Activation::Relu)
        .head(4, HeadKind::PerStep)
        .build(7)
        .unwrap();
    let (t, b) = (5, 3);
    let tokens: Vec<usize> = (0..t * b).map(|i| (i * 7 + 3) % 13).collect();
    let classes: Vec<i64> = (0..t * b).map(|i| ((i * 5 + 1) % 4) as i64).collect();
    let lengths = [5, 3, 4];
    let batch = Batch {
        seq_len: t,
        batch: b,
        inputs: Inputs::Tokens(&tokens),
        targets: Targets::Classes(&classes),
        lengths: Some(&lengths),
    };
    let mut want = Vec::new();
    let configs: Vec<TrainConfig> = [11, 12]
        .into_iter()
        .map(|seed| {
            let mut cfg = TrainConfig::new(
                LossKind::CrossEntropy { ignore_index: None },
                OptimizerKind::sgd(PROBE_LR),
            );
            cfg.dropout_seed = seed;
            cfg
        })
        .collect();
    for cfg in &configs {
        let mut reference = ReferenceTrainer::new(model.cast::<f64>(), cfg.clone()).unwrap();
        reference.step(&batch).unwrap();
        want.push(sgd_gradients(&model.cast::<f64>(), reference.model()));
    }
    // The two seeds' masks differ, and so do their gradients.
    let (w0, w1) = (&want[0][0].1, &want[1][0].1);
    assert!(
        w0.iter()
            .zip(w1)
            .any(|(a, b)| (a - b).abs() > 1e-3 * a.abs().max(1e-6))
    );
    for device in devices("stacks_with_dropout_train_as_the_reference_on_every_device") {
        for (cfg, want) in configs.iter().zip(&want) {
            let mut trainer = Trainer::new(&device, model.clone(), cfg.clone()).unwrap();
            trainer.step(&batch).unwrap();
            let got = sgd_gradients(&model, &trainer.model().unwrap());
            for ((name, g), (_, w)) in got.iter().zip(want) {
                let seed = cfg.dropout_seed;
                assert_close_to_max(&format!("{device:?} seed {seed}/{name}"), g, w, 1e-4);
            }
        }
    }
}

/// Stateful training carries every module's state: predicting chunk by
/// chunk equals one pass over the whole sequence.
#[test]
fn a_stateful_stack_forward_equals_one_long_forward() {
    let model: Model<f32> = Model::builder()
        .layer(LstmConfig::new(3, 6))
        .layer(LstmConfig::gru(6, 4).num_layers(2))
        .layer(LstmConfig::new(4, 5))
        .head(2, HeadKind::PerStep)
        .build(3)
        .unwrap();
    let (chunks, tc, b) = (3, 4, 2);
    let x: Vec<f32> = (0..chunks * tc * b * 3)
        .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
        .collect();
    let y = vec![0.0f32; chunks * tc * b * 2];
    let batch = |k: usize, n: usize| Batch {
        seq_len: n * tc,
        batch: b,
        inputs: Inputs::Features(&x[k * tc * b * 3..(k + n) * tc * b * 3]),
        targets: Targets::Values(&y[k * tc * b * 2..(k + n) * tc * b * 2]),
        lengths: None,
    };
    let mut cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(0.01));
    let mut reference = ReferenceTrainer::new(model.cast::<f64>(), cfg.clone()).unwrap();
    let whole = reference.predict(&batch(0, chunks)).unwrap();
    cfg.stateful = true;
    for device in devices("a_stateful_stack_forward_equals_one_long_forward") {
        let mut trainer = Trainer::new(&device, model.clone(), cfg.clone()).unwrap();
        let mut got = Vec::new();
        for k in 0..chunks {
            got.extend(trainer.predict(&batch(k, 1)).unwrap());
        }
        assert_close(&format!("{device:?}"), &got, &whole, 1e-5, 0.0);
    }
}

/// On a GPU the whole step of a stack is one submit, with no host wait.
#[test]
fn a_stack_step_is_one_submit_on_the_gpu() {
    let Some(ctx) = gpu_or_skip("a_stack_step_is_one_submit_on_the_gpu") else {
        return;
    };
    let fx = Fixture::load("tokens");
    let device = Device::from_context(ctx.clone());
    let mut trainer =
        Trainer::new(&device, fx.model(), fx.config(OptimizerKind::adam(0.01))).unwrap();
    trainer.step(&fx.batch()).unwrap();
    let before = ctx.counters();
    trainer.step(&fx.batch()).unwrap();
    let c = ctx.counters() - before;
    assert_eq!((c.submits, c.host_waits), (1, 0), "{c:?}");
}

#[test]
fn layers_that_do_not_chain_are_a_typed_error() {
    let err = Model::builder()
        .layer(LstmConfig::new(3, 8).bidirectional(true))
        .layer(LstmConfig::new(8, 4))
        .head(1, HeadKind::LastStep)
        .build::<f32>(0)
        .unwrap_err();
    assert!(
        matches!(&err, LstmError::InconsistentLayers { reason } if reason.contains("16")),
        "{err}"
    );
    let err = Model::builder()
        .embedding(10, 4)
        .layer(LstmConfig::new(5, 8))
        .head(1, HeadKind::LastStep)
        .build::<f32>(0)
        .unwrap_err();
    assert!(matches!(err, LstmError::InconsistentLayers { .. }), "{err}");
    for builder in [
        Model::builder().head(1, HeadKind::LastStep),
        Model::builder().layer(LstmConfig::new(3, 4)),
    ] {
        let err = builder.build::<f32>(0).unwrap_err();
        assert!(matches!(err, LstmError::InvalidConfig { .. }), "{err}");
    }
    // A model edited into one that does not chain is refused by the trainers.
    let mut model: Model<f32> = Model::builder()
        .layer(LstmConfig::new(3, 4))
        .layer(LstmConfig::new(4, 5))
        .head(2, HeadKind::LastStep)
        .build(0)
        .unwrap();
    model.stack[0] =
        wgpu_lstm::LstmWeights::init(&LstmConfig::new(6, 5), 0, wgpu_lstm::InitOptions::default())
            .unwrap();
    let cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(0.01));
    for device in devices("layers_that_do_not_chain_are_a_typed_error") {
        let err = Trainer::new(&device, model.clone(), cfg.clone())
            .err()
            .expect("refused");
        assert!(
            matches!(err, LstmError::InconsistentLayers { .. }),
            "{device:?}: {err}"
        );
    }
}

/// A checkpoint of another stack, and model files that are not whole, are
/// typed errors, and the trainer keeps its model.
#[test]
fn a_checkpoint_or_file_of_another_stack_is_refused() {
    let dir = tempfile_dir("other");
    let two: Model<f32> = Model::builder()
        .layer(LstmConfig::new(3, 4))
        .layer(LstmConfig::new(4, 5))
        .head(2, HeadKind::LastStep)
        .build(0)
        .unwrap();
    let three: Model<f32> = Model::builder()
        .layer(LstmConfig::new(3, 4))
        .layer(LstmConfig::new(4, 5))
        .layer(LstmConfig::new(5, 5))
        .head(2, HeadKind::LastStep)
        .build(1)
        .unwrap();
    let cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(0.01));
    for device in devices("a_checkpoint_or_file_of_another_stack_is_refused") {
        let deeper = Trainer::new(&device, three.clone(), cfg.clone()).unwrap();
        let path = dir.join("three.ckpt");
        deeper.save_checkpoint(&path).unwrap();
        let mut trainer = Trainer::new(&device, two.clone(), cfg.clone()).unwrap();
        let err = trainer.load_checkpoint(&path).unwrap_err();
        assert!(matches!(err, LstmError::InvalidFile { .. }), "{err}");
        // And the other way: a shallower stack lacks a module.
        let path = dir.join("two.ckpt");
        trainer.save_checkpoint(&path).unwrap();
        let mut deeper = Trainer::new(&device, three.clone(), cfg.clone()).unwrap();
        assert!(deeper.load_checkpoint(&path).is_err());
        assert_eq!(trainer.model().unwrap(), two);
        assert_eq!(deeper.model().unwrap(), three);
    }
    // A model file without its head's kind, or with a stray tensor.
    let bytes = two.to_safetensors_bytes().unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut named: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        st.tensors().into_iter().collect();
    let no_meta = safetensors::serialize(named.clone(), None).unwrap();
    let err = Model::<f32>::from_safetensors_bytes(&no_meta).unwrap_err();
    assert!(
        matches!(&err, LstmError::InvalidFile { reason, .. } if reason.contains("head_kind")),
        "{err}"
    );
    let extra = named[0].1.clone();
    named.push(("decoder.weight".into(), extra));
    let meta = HashMap::from([("head_kind".to_string(), "last_step".to_string())]);
    let stray = safetensors::serialize(named, Some(meta)).unwrap();
    let err = Model::<f32>::from_safetensors_bytes(&stray).unwrap_err();
    assert!(
        matches!(&err, LstmError::UnexpectedTensor { name } if name == "decoder.weight"),
        "{err}"
    );
}

/// Model files that are not whole or not sane, and checkpoints of a model
/// with another activation in one layer, are typed errors.
#[test]
fn files_missing_a_part_or_of_another_activation_are_refused() {
    let three: Model<f32> = Model::builder()
        .layer(LstmConfig::new(3, 4))
        .layer(LstmConfig::new(4, 4))
        .layer(LstmConfig::new(4, 4))
        .hidden(3, Activation::Tanh)
        .head(2, HeadKind::LastStep)
        .build(2)
        .unwrap();
    let bytes = three.to_safetensors_bytes().unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone();
    let without = |drop: &dyn Fn(&str) -> bool| {
        let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> =
            st.tensors().into_iter().filter(|(n, _)| !drop(n)).collect();
        safetensors::serialize(kept, meta.clone()).unwrap()
    };
    // The last layer gone: the sizes still chain, the count says otherwise.
    let err =
        Model::<f32>::from_safetensors_bytes(&without(&|n| n.starts_with("stack.1."))).unwrap_err();
    assert!(
        matches!(&err, LstmError::InvalidFile { reason, .. } if reason.contains("recurrent_layers")),
        "{err}"
    );
    // One tensor of a layer gone.
    let err = Model::<f32>::from_safetensors_bytes(&without(&|n| n == "stack.0.weight_hh_l0"))
        .unwrap_err();
    assert!(matches!(err, LstmError::MissingTensor { .. }), "{err}");
    // A head with no outputs.
    let mut empty = three.clone();
    empty.head = wgpu_lstm::reference::Linear {
        in_features: 3,
        out_features: 0,
        weight: Vec::new(),
        bias: Vec::new(),
    };
    let err =
        Model::<f32>::from_safetensors_bytes(&empty.to_safetensors_bytes().unwrap()).unwrap_err();
    assert!(
        matches!(err, LstmError::InvalidConfig { field: "head", .. }),
        "{err}"
    );
    // Checkpoints: the same shapes with relu in one layer, or in the hidden one.
    let dir = tempfile_dir("activation");
    let cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(0.01));
    let mut relu = three.clone();
    relu.stack[0].config.activation = Activation::Relu;
    let mut relu_hidden = three.clone();
    relu_hidden.hidden.as_mut().unwrap().activation = Activation::Relu;
    for device in devices("files_missing_a_part_or_of_another_activation_are_refused") {
        for (k, other) in [&relu, &relu_hidden].into_iter().enumerate() {
            let path = dir.join(format!("other{k}.ckpt"));
            Trainer::new(&device, other.clone(), cfg.clone())
                .unwrap()
                .save_checkpoint(&path)
                .unwrap();
            let mut trainer = Trainer::new(&device, three.clone(), cfg.clone()).unwrap();
            let err = trainer.load_checkpoint(&path).unwrap_err();
            assert!(
                matches!(&err, LstmError::InvalidFile { reason, .. } if reason.contains("activation")),
                "{device:?}: {err}"
            );
            assert_eq!(trainer.model().unwrap(), three);
        }
    }
}

/// A stack with a hidden layer trained statefully, saved on one device and
/// resumed on the other, against the f64 reference trained straight through
/// (stateful carries are not in a checkpoint, so the resumed run starts its
/// state again, as the reference does after `reset_states`).
#[test]
fn a_stateful_stack_trains_and_resumes_as_the_reference() {
    let model: Model<f32> = Model::builder()
        .layer(LstmConfig::new(3, 6).bidirectional(true))
        .layer(LstmConfig::gru(12, 5))
        .hidden(4, Activation::Tanh)
        .head(2, HeadKind::PerStep)
        .build(5)
        .unwrap();
    let (tc, b) = (4, 3);
    let x: Vec<f32> = (0..4 * tc * b * 3)
        .map(|i| ((i * 29 % 97) as f32 / 48.0) - 1.0)
        .collect();
    let y: Vec<f32> = (0..4 * tc * b * 2)
        .map(|i| ((i * 13 % 31) as f32 / 15.0) - 1.0)
        .collect();
    let chunk = |k: usize| Batch {
        seq_len: tc,
        batch: b,
        inputs: Inputs::Features(&x[k * tc * b * 3..(k + 1) * tc * b * 3]),
        targets: Targets::Values(&y[k * tc * b * 2..(k + 1) * tc * b * 2]),
        lengths: None,
    };
    let mut cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(0.01));
    cfg.stateful = true;
    let mut reference = ReferenceTrainer::new(model.cast::<f64>(), cfg.clone()).unwrap();
    let mut want = Vec::new();
    for k in 0..4 {
        if k == 2 {
            reference.reset_states();
        }
        want.push(reference.step(&chunk(k)).unwrap());
    }
    let dir = tempfile_dir("resume");
    let all = devices("a_stateful_stack_trains_and_resumes_as_the_reference");
    for (i, first) in all.iter().enumerate() {
        let second = &all[(i + 1) % all.len()];
        let mut a = Trainer::new(first, model.clone(), cfg.clone()).unwrap();
        let mut got = Vec::new();
        for k in 0..2 {
            got.push(a.step_with_loss(&chunk(k)).unwrap() as f64);
        }
        let path = dir.join(format!("resume{i}.ckpt"));
        a.save_checkpoint(&path).unwrap();
        let mut b2 = Trainer::new(second, model.clone(), cfg.clone()).unwrap();
        b2.load_checkpoint(&path).unwrap();
        for k in 2..4 {
            got.push(b2.step_with_loss(&chunk(k)).unwrap() as f64);
        }
        let name = format!("{first:?} then {second:?}");
        assert_close(&format!("{name}/losses"), &got, &want, 0.0, 1e-5);
        for ((p, _, g), (_, _, w)) in b2
            .model()
            .unwrap()
            .named_params()
            .iter()
            .zip(reference.model().named_params())
        {
            assert_close(&format!("{name}/{p}"), g, w, 1e-5, 1e-5);
        }
    }
}
