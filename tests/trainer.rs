//! The one API on every device: `Trainer` and `Lstm` on `Device::cpu()` and
//! on the GPU, each held to the reference (`wgpu_lstm::reference`) and to
//! PyTorch, and checkpoints that move between devices.

mod common;

use common::gpu::gpu_or_skip;
use common::{assert_close, random_tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgpu_lstm::reference::{self, ReferenceTrainer};
use wgpu_lstm::{
    Accuracy, Batch, Device, HeadKind, Inputs, LossKind, Lstm, LstmConfig, LstmError, LstmInput,
    LstmWeights, Model, OptimizerKind, Targets, Tensor, TrainConfig, Trainer,
};

/// The CPU engine, and the GPU when there is one (required in CI).
fn devices(test: &str) -> Vec<Device> {
    let mut out = vec![Device::cpu()];
    out.extend(gpu_or_skip(test).map(Device::from_context));
    out
}

/// Step `step`'s data for a model with 3 input features and 2 outputs at
/// the last valid step: inputs [T, B, 3], targets [B, 2], lengths.
struct Data {
    inputs: Vec<f32>,
    targets: Vec<f32>,
    lengths: Vec<usize>,
}

/// Losses and parameters after training agree within this across devices and
/// with the reference. Measured on lavapipe and the CPU engine (AVX2): at
/// most 1.8e-6 (losses) and 1.1e-6 (parameters) after ten steps.
const TOL: f64 = 5e-6;

const T: usize = 7;
const B: usize = 4;

fn data(step: usize) -> Data {
    let mut rng = ChaCha8Rng::seed_from_u64(500 + step as u64);
    Data {
        inputs: (0..T * B * 3)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect(),
        targets: (0..B * 2).map(|_| rng.random_range(-1.0..1.0)).collect(),
        lengths: (0..B).map(|k| T - (k + step) % 4).collect(),
    }
}

fn batch(d: &Data) -> Batch<'_> {
    Batch {
        seq_len: T,
        batch: B,
        inputs: Inputs::Features(&d.inputs),
        targets: Targets::Values(&d.targets),
        lengths: Some(&d.lengths),
    }
}

/// Two layers, lengths, a last-step head, Adam with clipping.
fn setup() -> (Model<f32>, TrainConfig) {
    let lstm = LstmConfig::new(3, 6).num_layers(2);
    let model = Model::<f32>::new(None, &lstm, 2, HeadKind::LastStep, 11).unwrap();
    let mut config = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(0.02));
    config.clip_grad_norm = Some(0.5);
    (model, config)
}

/// The same training function for every device: `steps` steps from step
/// `from`, returning each step's loss.
fn train(trainer: &mut Trainer, from: usize, steps: usize) -> Vec<f32> {
    (from..from + steps)
        .map(|s| trainer.step_with_loss(&batch(&data(s))).unwrap())
        .collect()
}

fn assert_models_close(name: &str, got: &Model<f32>, want: &Model<f32>, atol: f64) {
    let mut worst = 0.0f32;
    for ((n, _, g), (_, _, w)) in got.named_params().iter().zip(want.named_params().iter()) {
        worst = g
            .iter()
            .zip(*w)
            .fold(worst, |m, (a, b)| m.max((a - b).abs()));
        assert_close(&format!("{name}/{n}"), g, w, atol, 0.0);
    }
    eprintln!("{name}: largest parameter difference {worst:e}");
}

/// Ten Adam steps give the reference's loss curve and parameters on every
/// device, so the CPU engine and the GPU give the same curve.
#[test]
fn the_same_training_function_gives_the_reference_curve_on_every_device() {
    let (model, config) = setup();
    let mut spec = ReferenceTrainer::new(model.clone(), config.clone()).unwrap();
    let want: Vec<f64> = (0..10)
        .map(|s| spec.step(&batch(&data(s))).unwrap())
        .collect();
    for device in devices("the_same_training_function_gives_the_reference_curve_on_every_device") {
        let mut trainer = Trainer::new(&device, model.clone(), config.clone()).unwrap();
        let got = train(&mut trainer, 0, 10);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (*g as f64 - w).abs())
            .fold(0.0, f64::max);
        eprintln!("{device:?}: largest loss difference from the reference {worst:e}");
        for (s, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= TOL,
                "{device:?}: step {s}: loss {g}, reference {w}"
            );
        }
        assert_eq!(trainer.step_count(), 10);
        assert_models_close(
            &format!("{device:?}"),
            &trainer.model().unwrap(),
            spec.model(),
            TOL,
        );
        // Evaluation mode too.
        let d = data(99);
        assert_close(
            &format!("{device:?}/predict"),
            &trainer.predict(&batch(&d)).unwrap(),
            &spec.predict(&batch(&d)).unwrap(),
            TOL,
            0.0,
        );
    }
}

/// Five steps on one device, a checkpoint, five more on the other: the same
/// losses and parameters as ten steps on the first, both ways.
#[test]
fn a_checkpoint_moves_between_cpu_and_gpu() {
    let Some(ctx) = gpu_or_skip("a_checkpoint_moves_between_cpu_and_gpu") else {
        return;
    };
    let (cpu, gpu) = (Device::cpu(), Device::from_context(ctx));
    let (model, config) = setup();
    let dir = std::env::temp_dir().join(format!("wgpu-lstm-move-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (first, second) in [(&gpu, &cpu), (&cpu, &gpu)] {
        let mut straight = Trainer::new(first, model.clone(), config.clone()).unwrap();
        let losses = train(&mut straight, 0, 10);

        let mut a = Trainer::new(first, model.clone(), config.clone()).unwrap();
        train(&mut a, 0, 5);
        let path = dir.join("ckpt.safetensors");
        a.save_checkpoint(&path).unwrap();
        // A different initialisation, overwritten by the checkpoint.
        let other = Model::<f32>::new(None, &model.lstm.config, 2, HeadKind::LastStep, 77).unwrap();
        let mut b = Trainer::new(second, other, config.clone()).unwrap();
        b.load_checkpoint(&path).unwrap();
        assert_eq!(b.step_count(), 5);
        let resumed = train(&mut b, 5, 5);
        let name = format!("{first:?} then {second:?}");
        let worst = resumed
            .iter()
            .zip(&losses[5..])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        eprintln!("{name}: largest loss difference {worst:e}");
        assert_close(&name, &resumed, &losses[5..], TOL, 0.0);
        assert_models_close(&name, &b.model().unwrap(), &straight.model().unwrap(), TOL);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The CPU engine's trainer against PyTorch (the GPU's is in
/// `gpu_training.rs`): an LSTM, a per-step head and MSE, a few optimizer
/// steps, from `tools/make_train_fixtures.py`.
#[test]
fn the_cpu_trainer_matches_the_pytorch_training_fixtures() {
    use common::training::{fixture, optimizer_case};

    for name in [
        "adam",
        "sgd_momentum",
        "adamw_clipped",
        "sgd_nesterov_cosine",
        "adam_clip_value",
    ] {
        let (bytes, meta) = fixture(name);
        let file = wgpu_lstm::TensorFile::from_bytes(bytes.clone()).unwrap();
        let get = |k: &str| file.float::<f32>(k).unwrap();
        let (model, cfg) = optimizer_case(&file, &meta);
        let mut trainer = Trainer::new(&Device::cpu(), model, cfg).unwrap();
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
            let got = trainer.step_with_loss(&batch).unwrap();
            assert!(
                (got - want).abs() <= 1e-5,
                "{name}: step {step}: loss {got}, PyTorch {want}"
            );
        }
        for (n, _, v) in trainer.model().unwrap().named_params() {
            let want = file.float::<f64>(&format!("final.{n}")).unwrap();
            assert_close(&format!("{name}/{n}"), v, want.data(), 1e-5, 0.0);
        }
    }
}

/// A loss that becomes infinite stops training on every device, and `loss`
/// names the same first bad step; before any step there is no loss.
#[test]
fn a_diverging_loss_is_reported_alike_on_every_device() {
    let lstm = LstmConfig::new(3, 4);
    let model = Model::<f32>::new(None, &lstm, 2, HeadKind::LastStep, 1).unwrap();
    // A learning rate this large overflows the parameters within a few steps.
    let cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::sgd(1e30));
    let mut steps = Vec::new();
    for device in devices("a_diverging_loss_is_reported_alike_on_every_device") {
        let mut trainer = Trainer::new(&device, model.clone(), cfg.clone()).unwrap();
        assert!(matches!(
            trainer.loss(),
            Err(LstmError::InvalidValue { .. })
        ));
        let bad = (0..50).find_map(|s| match trainer.step_with_loss(&batch(&data(s))) {
            Err(LstmError::NonFiniteLoss { step, .. }) => Some(step),
            Err(e) => panic!("{device:?}: {e}"),
            Ok(_) => None,
        });
        let bad = bad.unwrap_or_else(|| panic!("{device:?}: the loss stayed finite"));
        // Later steps change nothing, and the first bad step stays named.
        let frozen = trainer.model().unwrap();
        trainer.step(&batch(&data(60))).unwrap();
        assert_eq!(trainer.model().unwrap(), frozen, "{device:?}");
        assert!(
            matches!(trainer.loss(), Err(LstmError::NonFiniteLoss { step, .. }) if step == bad)
        );
        steps.push(bad);
    }
    assert!(steps.windows(2).all(|w| w[0] == w[1]), "{steps:?}");
}

/// `Lstm` gives the reference's results on every device, in one call and
/// streamed in chunks with `forward_stateful`.
#[test]
fn lstm_matches_the_reference_on_every_device_and_streams() {
    let config = LstmConfig::new(5, 9).num_layers(2).bidirectional(true);
    let weights = LstmWeights::<f32>::init(&config, 3, Default::default()).unwrap();
    let input: Tensor<f32> = random_tensor(&[12, 3, 5], 4, 1.0);
    let lengths = [12, 7, 3];
    let x = LstmInput::new(&input).with_lengths(&lengths);
    let want = reference::forward(&weights, &x).unwrap();
    // Unidirectional, for streaming: chunks of 5 + 7 steps.
    let uni = LstmWeights::<f32>::init(&LstmConfig::new(5, 9).num_layers(2), 3, Default::default())
        .unwrap();
    let whole = reference::forward(&uni, &LstmInput::new(&input)).unwrap();
    let (a, b) = input.data().split_at(5 * 3 * 5);
    let chunks = [
        Tensor::new([5, 3, 5], a.to_vec()).unwrap(),
        Tensor::new([7, 3, 5], b.to_vec()).unwrap(),
    ];
    for device in devices("lstm_matches_the_reference_on_every_device_and_streams") {
        let name = format!("{device:?}");
        let mut lstm = Lstm::new(&device, &weights).unwrap();
        assert_eq!(lstm.gpu_mut().is_some(), device.is_gpu());
        let got = lstm.forward(&x).unwrap();
        for (k, g, w) in [
            ("output", &got.output, &want.output),
            ("h_n", &got.h_n, &want.h_n),
            ("c_n", &got.c_n, &want.c_n),
        ] {
            assert_eq!(g.shape(), w.shape(), "{name}/{k}");
            assert_close(&format!("{name}/{k}"), g.data(), w.data(), 1e-5, 0.0);
        }

        let mut stream = Lstm::new(&device, &uni).unwrap();
        let first = stream
            .forward_stateful(&LstmInput::new(&chunks[0]))
            .unwrap();
        let second = stream
            .forward_stateful(&LstmInput::new(&chunks[1]))
            .unwrap();
        let mut streamed = first.output.data().to_vec();
        streamed.extend_from_slice(second.output.data());
        assert_close(
            &format!("{name}/streamed"),
            &streamed,
            whole.output.data(),
            1e-5,
            0.0,
        );
        assert_close(
            &format!("{name}/streamed h_n"),
            second.h_n.data(),
            whole.h_n.data(),
            1e-5,
            0.0,
        );
        // A state of its own, or another batch size, is refused; the carried
        // state survives the refusal, and reset_state starts anew.
        let h = Tensor::new([2, 3, 9], vec![0.0; 54]).unwrap();
        let with_state = LstmInput::new(&chunks[0]).with_state(&h, &h);
        assert!(stream.forward_stateful(&with_state).is_err());
        let two = Tensor::new([2, 2, 5], vec![0.5; 20]).unwrap();
        assert!(matches!(
            stream.forward_stateful(&LstmInput::new(&two)),
            Err(LstmError::InvalidValue { .. })
        ));
        stream.reset_state();
        let again = stream
            .forward_stateful(&LstmInput::new(&chunks[0]))
            .unwrap();
        assert_close(
            &format!("{name}/reset"),
            again.output.data(),
            first.output.data(),
            0.0,
            0.0,
        );
    }
}

/// A model built with Keras' `unit_forget_bias` starts with a forget-gate
/// bias (b_ih + b_hh) of 1 for every unit.
#[test]
fn models_take_init_options() {
    let lstm = LstmConfig::new(3, 4);
    let init = wgpu_lstm::InitOptions {
        unit_forget_bias: true,
    };
    let model = Model::<f32>::with_init(None, &lstm, 1, HeadKind::PerStep, 5, init).unwrap();
    let layer = model.lstm.layer(0, 0);
    let (b_ih, b_hh) = (
        layer.bias_ih.as_ref().unwrap(),
        layer.bias_hh.as_ref().unwrap(),
    );
    for j in 4..8 {
        assert!((b_ih[j] + b_hh[j] - 1.0).abs() < 1e-6, "unit {j}");
    }
}

/// Accuracy on every device, from a head whose weight is zero: every
/// prediction is then the bias's, so the right count is known from the
/// targets alone. Padded rows and `ignore_index` targets are not counted;
/// MSE has no accuracy.
#[test]
fn accuracy_counts_what_the_targets_say() {
    let (t, b) = (3, 4);
    let lengths = [3, 1, 2, 3];
    let x: Vec<f32> = (0..t * b * 2).map(|k| (k % 5) as f32 / 5.0).collect();
    let head = |model: &mut Model<f32>, bias: &[f32]| {
        model.head.weight.iter_mut().for_each(|w| *w = 0.0);
        model.head.bias.copy_from_slice(bias);
    };
    for device in devices("accuracy_counts_what_the_targets_say") {
        // Per-token cross-entropy, 3 classes, predicting class 2 everywhere.
        let mut model =
            Model::<f32>::new(None, &LstmConfig::new(2, 5), 3, HeadKind::PerStep, 1).unwrap();
        head(&mut model, &[0.1, -0.3, 0.7]);
        let classes: Vec<i64> = vec![2, 0, 2, 1, 1, -100, 2, 2, 2, 2, 0, -100];
        let config = TrainConfig::new(
            LossKind::CrossEntropy {
                ignore_index: Some(-100),
            },
            OptimizerKind::sgd(0.1),
        );
        let mut trainer = Trainer::new(&device, model, config).unwrap();
        let batch = Batch {
            seq_len: t,
            batch: b,
            inputs: Inputs::Features(&x),
            targets: Targets::Classes(&classes),
            lengths: Some(&lengths),
        };
        // Rows r = t·B + b count when t < lengths[b] and the target is not
        // ignored: at t = 0 all four (2 right), at t = 1 b = 0, 2, 3 (2
        // right), at t = 2 b = 0 (right; b = 3 is ignored).
        let mut want = Accuracy::default();
        for (r, &c) in classes.iter().enumerate() {
            let (step, seq) = (r / b, r % b);
            if step < lengths[seq] && c != -100 {
                want.total += 1;
                want.correct += usize::from(c == 2);
            }
        }
        assert_eq!((want.correct, want.total), (5, 8), "the hand count");
        assert_eq!(trainer.accuracy(&batch).unwrap(), want, "{device:?}");

        // Binary cross-entropy at the last step, one output, predicting 1.
        let mut model =
            Model::<f32>::new(None, &LstmConfig::new(2, 5), 1, HeadKind::LastStep, 2).unwrap();
        head(&mut model, &[0.4]);
        let y = [1.0, 0.0, 1.0, 0.25];
        let config = TrainConfig::new(LossKind::BceWithLogits, OptimizerKind::sgd(0.1));
        let mut trainer = Trainer::new(&device, model, config).unwrap();
        let batch = Batch {
            targets: Targets::Values(&y),
            ..batch
        };
        let acc = trainer.accuracy(&batch).unwrap();
        assert_eq!((acc.correct, acc.total), (2, 4), "{device:?}");
        assert_eq!(acc.fraction(), 0.5);

        // MSE has none.
        let model =
            Model::<f32>::new(None, &LstmConfig::new(2, 5), 1, HeadKind::LastStep, 2).unwrap();
        let config = TrainConfig::new(LossKind::Mse, OptimizerKind::sgd(0.1));
        let mut trainer = Trainer::new(&device, model, config).unwrap();
        assert!(matches!(
            trainer.accuracy(&batch),
            Err(LstmError::InvalidValue { .. })
        ));
    }
}

#[test]
fn a_clip_value_that_is_not_positive_and_finite_is_refused() {
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let mut cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::sgd(0.1));
        cfg.clip_grad_value = Some(bad);
        match cfg.validate() {
            Err(LstmError::InvalidConfig { field, .. }) => assert_eq!(field, "clip_grad_value"),
            other => panic!("clip_grad_value = {bad}: {other:?}"),
        }
        let model =
            Model::<f32>::new(None, &LstmConfig::new(2, 3), 1, HeadKind::LastStep, 1).unwrap();
        assert!(Trainer::new(&Device::cpu(), model, cfg).is_err());
    }
}

/// One batch's data: features, tokens, target values, target classes.
type BatchData = (Vec<f32>, Vec<usize>, Vec<f32>, Vec<i64>);

/// Gradient accumulation over two batches of the same size is one update
/// with the mean of their gradients: the same as one step on the two
/// batches side by side (each loss is a mean over as many elements, so the
/// mean of the two means is the mean over both). On every device and in the
/// f64 reference, with an embedding and without, clipping the mean.
#[test]
fn accumulating_two_batches_is_one_step_on_both() {
    let (t, b) = (4, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    // Two rounds of two batches each: features, tokens, values, classes.
    let rounds: Vec<[BatchData; 2]> = (0..2)
        .map(|_| {
            [0, 1].map(|_| {
                (
                    (0..t * b * 3)
                        .map(|_| rng.random_range(-1.0..1.0))
                        .collect(),
                    (0..t * b).map(|_| rng.random_range(0..7)).collect(),
                    (0..t * b * 2)
                        .map(|_| rng.random_range(-1.0..1.0))
                        .collect(),
                    (0..b).map(|_| rng.random_range(0..2)).collect(),
                )
            })
        })
        .collect();
    // Batch j of a round side by side with the other, time-major: at each
    // step the first batch's rows, then the second's.
    let side_by_side = |a: &[f32], c: &[f32], width: usize| -> Vec<f32> {
        (0..t)
            .flat_map(|s| {
                let rows = |x: &[f32]| x[s * b * width..(s + 1) * b * width].to_vec();
                [rows(a), rows(c)].concat()
            })
            .collect()
    };
    for tokens in [false, true] {
        let model = if tokens {
            Model::<f32>::new(
                Some((7, 3)),
                &LstmConfig::new(3, 5),
                2,
                HeadKind::LastStep,
                3,
            )
        } else {
            Model::<f32>::new(None, &LstmConfig::new(3, 5), 2, HeadKind::PerStep, 3)
        }
        .unwrap();
        let loss = if tokens {
            LossKind::CrossEntropy { ignore_index: None }
        } else {
            LossKind::Mse
        };
        let mut config = TrainConfig::new(loss, OptimizerKind::adam(0.05));
        config.clip_grad_norm = Some(0.5);
        fn batch_of(d: &BatchData, t: usize, width: usize, tokens: bool) -> Batch<'_> {
            Batch {
                seq_len: t,
                batch: width,
                inputs: if tokens {
                    Inputs::Tokens(&d.1)
                } else {
                    Inputs::Features(&d.0)
                },
                targets: if tokens {
                    Targets::Classes(&d.3)
                } else {
                    Targets::Values(&d.2)
                },
                lengths: None,
            }
        }
        let batch = |d, width| batch_of(d, t, width, tokens);
        let joined: Vec<BatchData> = rounds
            .iter()
            .map(|[a, c]| {
                let ids: Vec<f32> = a.1.iter().map(|&v| v as f32).collect();
                let ids2: Vec<f32> = c.1.iter().map(|&v| v as f32).collect();
                (
                    side_by_side(&a.0, &c.0, 3),
                    side_by_side(&ids, &ids2, 1)
                        .into_iter()
                        .map(|v| v as usize)
                        .collect(),
                    side_by_side(&a.2, &c.2, 2),
                    [a.3.clone(), c.3.clone()].concat(),
                )
            })
            .collect();
        let mut accumulated = config.clone();
        accumulated.grad_accumulation = 2;

        // The f64 reference: to rounding.
        let mut acc64 = ReferenceTrainer::new(model.cast::<f64>(), accumulated.clone()).unwrap();
        let mut one64 = ReferenceTrainer::new(model.cast::<f64>(), config.clone()).unwrap();
        for (round, j) in rounds.iter().zip(&joined) {
            acc64.step(&batch(&round[0], b)).unwrap();
            acc64.step(&batch(&round[1], b)).unwrap();
            one64.step(&batch(j, 2 * b)).unwrap();
        }
        for ((n, _, p), (_, _, q)) in acc64
            .model()
            .named_params()
            .into_iter()
            .zip(one64.model().named_params())
        {
            assert_close(&format!("f64 {n}"), p, q, 1e-12, 0.0);
        }

        for device in devices("accumulating_two_batches_is_one_step_on_both") {
            let mut acc = Trainer::new(&device, model.clone(), accumulated.clone()).unwrap();
            let mut one = Trainer::new(&device, model.clone(), config.clone()).unwrap();
            // The first batch of a round updates nothing.
            acc.step(&batch(&rounds[0][0], b)).unwrap();
            assert_eq!(acc.model().unwrap(), model, "{device:?}: no update yet");
            acc.step(&batch(&rounds[0][1], b)).unwrap();
            acc.step(&batch(&rounds[1][0], b)).unwrap();
            acc.step(&batch(&rounds[1][1], b)).unwrap();
            assert_eq!(acc.step_count(), 4, "batches");
            for j in &joined {
                one.step(&batch(j, 2 * b)).unwrap();
            }
            let (a, o) = (acc.model().unwrap(), one.model().unwrap());
            for ((n, _, p), (_, _, q)) in a.named_params().into_iter().zip(o.named_params()) {
                assert_close(&format!("{device:?} {n}"), p, q, 1e-5, 1e-5);
            }
        }
    }
    let mut bad = TrainConfig::new(LossKind::Mse, OptimizerKind::sgd(0.1));
    bad.grad_accumulation = 0;
    assert!(matches!(
        bad.validate(),
        Err(LstmError::InvalidConfig {
            field: "grad_accumulation",
            ..
        })
    ));
}
