//! The GPU training step against the CPU trainer: the same model, data and
//! configuration must give the same loss curve (and parameters).

mod common;

use common::assert_close;
use common::gpu::gpu_or_skip;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use wgpu_lstm::gpu::{GpuTrainer, StepConfig};
use wgpu_lstm::model::{Batch, HeadKind, Inputs, LossKind, Model, Targets, TrainConfig};
use wgpu_lstm::reference::ReferenceTrainer;
use wgpu_lstm::reference::{LrSchedule, OptimizerKind};
use wgpu_lstm::{LstmConfig, LstmError};

struct Data {
    inputs: Vec<f32>,
    tokens: Vec<usize>,
    values: Vec<f32>,
    classes: Vec<i64>,
    /// Binary cross-entropy targets: 0, 1 and a soft 0.25.
    probabilities: Vec<f32>,
    lengths: Option<Vec<usize>>,
}

#[allow(clippy::too_many_arguments)]
fn data(
    step: usize,
    t: usize,
    b: usize,
    features: usize,
    outputs: usize,
    rows: usize,
    vocab: usize,
    lengths: bool,
) -> Data {
    let mut rng = ChaCha8Rng::seed_from_u64(1000 + step as u64);
    Data {
        inputs: (0..t * b * features)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect(),
        tokens: (0..t * b)
            .map(|_| rng.random_range(0..vocab.max(1)))
            .collect(),
        values: (0..rows * outputs)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect(),
        probabilities: (0..rows * outputs)
            .map(|k| if k % 3 == 2 { 0.25 } else { (k % 2) as f32 })
            .collect(),
        classes: (0..rows)
            .map(|_| rng.random_range(0..outputs as i64))
            .collect(),
        lengths: lengths.then(|| {
            (0..b)
                .map(|k| if k == 0 { t } else { 1 + (k + step) % t })
                .collect()
        }),
    }
}

fn batch<'a>(d: &'a Data, t: usize, b: usize, tokens: bool, loss: LossKind) -> Batch<'a> {
    Batch {
        seq_len: t,
        batch: b,
        inputs: if tokens {
            Inputs::Tokens(&d.tokens)
        } else {
            Inputs::Features(&d.inputs)
        },
        targets: match loss {
            LossKind::Mse => Targets::Values(&d.values),
            LossKind::BceWithLogits => Targets::Values(&d.probabilities),
            LossKind::CrossEntropy { .. } => Targets::Classes(&d.classes),
        },
        lengths: d.lengths.as_deref(),
    }
}

#[allow(clippy::too_many_arguments)]
fn compare(
    name: &str,
    embedding: Option<(usize, usize)>,
    lstm: LstmConfig,
    outputs: usize,
    head: HeadKind,
    config: TrainConfig,
    steps: usize,
    lengths: bool,
) {
    compare_in(
        name,
        embedding,
        lstm,
        outputs,
        head,
        config,
        steps,
        lengths,
        None,
        (6, 3),
    );
}

/// [`compare`] with the step kernels in `step` (their default when `None`),
/// on batches of `shape` = (T, B).
#[allow(clippy::too_many_arguments)]
fn compare_in(
    name: &str,
    embedding: Option<(usize, usize)>,
    lstm: LstmConfig,
    outputs: usize,
    head: HeadKind,
    config: TrainConfig,
    steps: usize,
    lengths: bool,
    step_config: Option<StepConfig>,
    shape: (usize, usize),
) {
    let Some(ctx) = gpu_or_skip(name) else { return };
    let (t, b) = shape;
    let model = Model::<f32>::new(embedding, &lstm, outputs, head, 5).unwrap();
    let mut cpu = ReferenceTrainer::new(model.clone(), config.clone()).unwrap();
    let mut gpu = GpuTrainer::new(&ctx, &model, config.clone()).unwrap();
    if let Some(c) = step_config {
        gpu.set_step_config(c).unwrap();
    }
    let rows = if head == HeadKind::PerStep { t * b } else { b };
    let vocab = embedding.map_or(0, |e| e.0);
    for step in 0..steps {
        let d = data(step, t, b, lstm.input_size, outputs, rows, vocab, lengths);
        let bt = batch(&d, t, b, embedding.is_some(), config.loss);
        let want = cpu.step(&bt).unwrap();
        let got = gpu.step_with_loss(&bt).unwrap() as f64;
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
            "{name}: step {step}: GPU loss {got}, CPU loss {want}"
        );
    }
    // Evaluation mode (no dropout) agrees too, on a fresh batch.
    let d = data(steps, t, b, lstm.input_size, outputs, rows, vocab, lengths);
    let bt = batch(&d, t, b, embedding.is_some(), config.loss);
    let (ge, ce) = (gpu.evaluate(&bt).unwrap(), cpu.evaluate(&bt).unwrap());
    assert!(
        (ge - ce).abs() <= 1e-4 * ce.abs().max(1.0),
        "{name}: evaluate {ge} vs {ce}"
    );
    assert_close(
        &format!("{name}/predict"),
        &gpu.predict(&bt).unwrap(),
        &cpu.predict(&bt).unwrap(),
        1e-4,
        1e-3,
    );
    let (gm, cm) = (gpu.model().unwrap(), cpu.model());
    for ((n, _, g), (_, _, c)) in gm.named_params().iter().zip(cm.named_params().iter()) {
        assert_close(&format!("{name}/{n}"), g, c, 1e-4, 1e-3);
    }
}

#[test]
fn binary_cross_entropy_per_step_and_last_step_match_cpu() {
    for (name, head, lengths) in [
        ("bce_per_step", HeadKind::PerStep, true),
        ("bce_last_step", HeadKind::LastStep, false),
    ] {
        compare(
            name,
            None,
            LstmConfig::new(4, 6),
            2,
            head,
            TrainConfig::new(LossKind::BceWithLogits, OptimizerKind::adam(0.01)),
            6,
            lengths,
        );
    }
}

#[test]
fn per_step_mse_adam_matches_cpu() {
    compare(
        "per_step_mse_adam",
        None,
        LstmConfig::new(4, 7),
        2,
        HeadKind::PerStep,
        TrainConfig::new(LossKind::Mse, OptimizerKind::adam(0.01)),
        30,
        false,
    );
}

#[test]
fn embedding_cross_entropy_ignore_index_sgd_momentum_clipped_with_lengths_matches_cpu() {
    let mut cfg = TrainConfig::new(
        LossKind::CrossEntropy {
            ignore_index: Some(3),
        },
        OptimizerKind::sgd(0.5)
            .with_momentum(0.9)
            .with_weight_decay(1e-3),
    );
    cfg.clip_grad_norm = Some(0.5);
    compare(
        "embedding_ce_sgd",
        Some((11, 5)),
        LstmConfig::new(5, 9).num_layers(2),
        11,
        HeadKind::PerStep,
        cfg,
        30,
        true,
    );
}

#[test]
fn last_step_mse_adamw_cosine_dropout_bidirectional_matches_cpu() {
    let mut cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::adamw(0.02));
    cfg.schedule = LrSchedule::Cosine {
        t_max: 20,
        eta_min: 0.001,
    };
    cfg.dropout_seed = 77;
    compare(
        "last_step_adamw",
        None,
        LstmConfig::new(3, 6)
            .num_layers(2)
            .bidirectional(true)
            .dropout(0.25),
        1,
        HeadKind::LastStep,
        cfg,
        25,
        true,
    );
}

#[test]
fn one_submit_per_step_and_no_allocation_after_the_first() {
    let Some(ctx) = gpu_or_skip("one_submit_per_step_and_no_allocation_after_the_first") else {
        return;
    };
    let lstm = LstmConfig::new(4, 8).num_layers(2);
    let model = Model::<f32>::new(Some((10, 4)), &lstm, 10, HeadKind::PerStep, 1).unwrap();
    let mut cfg = TrainConfig::new(
        LossKind::CrossEntropy {
            ignore_index: Some(0),
        },
        OptimizerKind::adam(1e-3),
    );
    cfg.clip_grad_norm = Some(1.0);
    let mut gpu = GpuTrainer::new(&ctx, &model, cfg.clone()).unwrap();
    let (t, b) = (9, 2);
    let d = data(0, t, b, 4, 10, t * b, 10, false);
    let bt = batch(&d, t, b, true, cfg.loss);
    gpu.step(&bt).unwrap();
    let before = ctx.counters();
    gpu.step(&bt).unwrap();
    let c = ctx.counters() - before;
    assert_eq!(c.submits, 1);
    // The step returns without waiting for the GPU.
    assert_eq!(c.host_waits, 0, "{c:?}");
    assert_eq!((c.pipelines, c.bind_groups, c.buffers), (0, 0, 0), "{c:?}");
    // LSTM forward L·(T+1), backward L·(T + 5 + D) with bias, plus O(1) for
    // embedding, head, loss, norms, clipping and updates.
    let lstm_dispatches = 2 * (t + 1) + 2 * (t + 1 + 1 + 1 + 1 + 1);
    assert!(c.dispatches as usize <= lstm_dispatches + 40, "{c:?}");
    assert!(c.dispatches as usize >= lstm_dispatches, "{c:?}");
    // Steps queue up without waits; reading the loss waits once, for them.
    let before = ctx.counters();
    for _ in 0..3 {
        gpu.step(&bt).unwrap();
    }
    let queued = ctx.counters() - before;
    assert_eq!((queued.submits, queued.host_waits), (3, 0), "{queued:?}");
    let before = ctx.counters();
    assert!(gpu.loss().unwrap().is_finite());
    let read = ctx.counters() - before;
    assert_eq!((read.submits, read.host_waits), (1, 1), "{read:?}");
    // A loop that never reads runs at most 8 submits ahead of the GPU: past
    // that, a step waits for the oldest.
    let before = ctx.counters();
    for _ in 0..20 {
        gpu.step(&bt).unwrap();
    }
    let ahead = ctx.counters() - before;
    assert!(ahead.host_waits <= 20 - 8, "{ahead:?}");
    assert!(gpu.loss().unwrap().is_finite());
}

#[test]
fn bad_batches_and_settings_get_typed_errors() {
    let lstm = LstmConfig::new(3, 4);
    let model = Model::<f32>::new(None, &lstm, 2, HeadKind::PerStep, 1).unwrap();
    let d = data(0, 2, 2, 3, 2, 4, 0, false);
    let good = batch(&d, 2, 2, false, LossKind::Mse);
    let mut cpu = ReferenceTrainer::new(
        model.clone(),
        TrainConfig::new(LossKind::Mse, OptimizerKind::adam(0.01)),
    )
    .unwrap();
    let short = Batch {
        targets: Targets::Values(&d.values[..3]),
        ..good
    };
    assert!(
        matches!(cpu.step(&short), Err(LstmError::ShapeMismatch { name, .. }) if name == "targets")
    );
    for lr in [0.0, -1.0, f64::NAN] {
        let err = ReferenceTrainer::new(
            model.clone(),
            TrainConfig::new(LossKind::Mse, OptimizerKind::adam(lr)),
        )
        .err();
        assert!(
            matches!(err, Some(LstmError::InvalidConfig { field: "lr", .. })),
            "lr {lr}: {err:?}"
        );
    }
    let ce = LossKind::CrossEntropy { ignore_index: None };
    let mut cpu_ce =
        ReferenceTrainer::new(model.clone(), TrainConfig::new(ce, OptimizerKind::sgd(0.1)))
            .unwrap();
    let classes = [0i64, 1, 2, 1];
    let out_of_range = Batch {
        targets: Targets::Classes(&classes),
        ..good
    };
    assert!(
        matches!(cpu_ce.step(&out_of_range), Err(LstmError::InvalidValue { name, .. }) if name == "targets")
    );
    if let Some(ctx) = gpu_or_skip("bad_batches_and_settings_get_typed_errors") {
        let mut gpu =
            GpuTrainer::new(&ctx, &model, TrainConfig::new(ce, OptimizerKind::sgd(0.1))).unwrap();
        assert!(
            matches!(gpu.step(&out_of_range), Err(LstmError::InvalidValue { name, .. }) if name == "targets")
        );
    }
}

#[test]
fn a_diverging_loss_stops_with_the_step_named() {
    let lstm = LstmConfig::new(3, 4);
    let model = Model::<f32>::new(None, &lstm, 1, HeadKind::LastStep, 1).unwrap();
    // A learning rate this large overflows the parameters within a few steps.
    let cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::sgd(1e30));
    let run = |step: &mut dyn FnMut(&Batch<'_>) -> Result<f32, LstmError>| -> LstmError {
        for s in 0..50 {
            let d = data(s, 4, 2, 3, 1, 2, 0, false);
            if let Err(e) = step(&batch(&d, 4, 2, false, LossKind::Mse)) {
                return e;
            }
        }
        panic!("the loss stayed finite");
    };
    let mut cpu = ReferenceTrainer::new(model.clone(), cfg.clone()).unwrap();
    let cpu_err = run(&mut |b| cpu.step(b).map(|l| l as f32));
    let LstmError::NonFiniteLoss { step: cpu_step, .. } = cpu_err else {
        panic!("{cpu_err}")
    };
    if let Some(ctx) = gpu_or_skip("a_diverging_loss_stops_with_the_step_named") {
        let mut gpu = GpuTrainer::new(&ctx, &model, cfg).unwrap();
        let gpu_err = run(&mut |b| gpu.step_with_loss(b));
        let LstmError::NonFiniteLoss { step, .. } = gpu_err else {
            panic!("{gpu_err}")
        };
        assert_eq!(step, cpu_step);
    }
}

#[test]
fn resuming_from_a_checkpoint_is_bit_identical() {
    let Some(ctx) = gpu_or_skip("resuming_from_a_checkpoint_is_bit_identical") else {
        return;
    };
    let lstm = LstmConfig::new(4, 6).num_layers(2).dropout(0.2);
    let model = Model::<f32>::new(Some((9, 4)), &lstm, 9, HeadKind::PerStep, 3).unwrap();
    let mut cfg = TrainConfig::new(
        LossKind::CrossEntropy { ignore_index: None },
        OptimizerKind::adam(0.01),
    );
    cfg.schedule = LrSchedule::Step {
        step_size: 3,
        gamma: 0.5,
    };
    cfg.clip_grad_norm = Some(1.0);
    let (t, b) = (5, 2);
    let step = |tr: &mut GpuTrainer, s: usize| {
        let d = data(s, t, b, 4, 9, t * b, 9, false);
        tr.step_with_loss(&batch(&d, t, b, true, cfg.loss))
            .unwrap()
            .to_bits()
    };
    let dir = std::env::temp_dir().join(format!("wgpu-lstm-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ckpt.safetensors");

    let mut straight = GpuTrainer::new(&ctx, &model, cfg.clone()).unwrap();
    let mut resumed_losses = Vec::new();
    let mut losses = Vec::new();
    for s in 0..8 {
        if s == 4 {
            straight.save_checkpoint(&path).unwrap();
        }
        losses.push(step(&mut straight, s));
    }
    // A fresh trainer from a different initialisation, restored at step 4.
    let other = Model::<f32>::new(Some((9, 4)), &lstm, 9, HeadKind::PerStep, 99).unwrap();
    let mut resumed = GpuTrainer::new(&ctx, &other, cfg.clone()).unwrap();
    resumed.load_checkpoint(&path).unwrap();
    assert_eq!(resumed.step_count(), 4);
    for s in 4..8 {
        resumed_losses.push(step(&mut resumed, s));
    }
    assert_eq!(&losses[4..], &resumed_losses[..]);
    let bits = |m: &Model<f32>| {
        m.named_params()
            .iter()
            .flat_map(|(_, _, v)| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        bits(&straight.model().unwrap()),
        bits(&resumed.model().unwrap())
    );

    // The LSTM inside loads as a PyTorch state_dict under `lstm.`.
    let lstm_back = wgpu_lstm::LstmWeights::<f32>::load_safetensors(
        &path,
        wgpu_lstm::weights::SafetensorsPrefix::Exact("lstm."),
    )
    .unwrap();
    assert_eq!(lstm_back.config.hidden_size, 6);

    // A checkpoint for another architecture is refused.
    let small = Model::<f32>::new(
        Some((9, 4)),
        &LstmConfig::new(4, 5).num_layers(2),
        9,
        HeadKind::PerStep,
        3,
    )
    .unwrap();
    let mut mismatched = GpuTrainer::new(&ctx, &small, cfg).unwrap();
    let err = mismatched.load_checkpoint(&path).unwrap_err();
    assert!(
        matches!(
            err,
            LstmError::InconsistentLayers { .. } | LstmError::ShapeMismatch { .. }
        ),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The GPU training loop against PyTorch: an LSTM, a per-step linear head and
/// MSE, a few full optimizer steps (fixtures from tools/make_train_fixtures.py).
#[test]
fn pytorch_optimizer_fixtures_are_matched_on_the_gpu() {
    use common::training::{fixture, optimizer_case};

    let Some(ctx) = gpu_or_skip("pytorch_optimizer_fixtures_are_matched_on_the_gpu") else {
        return;
    };
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
        let mut gpu = GpuTrainer::new(&ctx, &model, cfg).unwrap();
        let (input, target) = (get("input"), get("target"));
        let (t, b) = (input.shape()[0], input.shape()[1]);
        let losses = get("loss");
        for (step, &want) in losses.data().iter().enumerate() {
            let batch = Batch {
                seq_len: t,
                batch: b,
                inputs: Inputs::Features(input.data()),
                targets: Targets::Values(target.data()),
                lengths: None,
            };
            let got = gpu.step_with_loss(&batch).unwrap();
            assert!(
                (got - want).abs() <= 1e-5,
                "{name}: step {step}: loss {got}, PyTorch {want}"
            );
        }
        let trained = gpu.model().unwrap();
        for (n, _, v) in trained.named_params() {
            let want = file.float::<f64>(&format!("final.{n}")).unwrap();
            assert_close(&format!("{name}/{n}"), v, want.data(), 1e-5, 0.0);
        }
    }
}

#[test]
fn batches_of_changing_length_keep_matching_the_cpu() {
    // Variable T from batch to batch: buffers per shape are made, reused and
    // dropped without changing the results.
    let Some(ctx) = gpu_or_skip("batches_of_changing_length_keep_matching_the_cpu") else {
        return;
    };
    let lstm = LstmConfig::new(3, 5);
    let model = Model::<f32>::new(None, &lstm, 1, HeadKind::LastStep, 2).unwrap();
    let cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(0.01));
    let mut cpu = ReferenceTrainer::new(model.clone(), cfg.clone()).unwrap();
    let mut gpu = GpuTrainer::new(&ctx, &model, cfg.clone()).unwrap();
    for step in 0..14 {
        let t = 2 + step % 7;
        let d = data(step, t, 2, 3, 1, 2, 0, false);
        let b = batch(&d, t, 2, false, LossKind::Mse);
        let want = cpu.step(&b).unwrap();
        let got = gpu.step_with_loss(&b).unwrap() as f64;
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
            "step {step} (T = {t}): {got} vs {want}"
        );
    }
}

/// Training in every step-kernel configuration: two layers, an embedding,
/// cross-entropy, clipping and lengths, against the reference trainer.
#[test]
fn training_in_every_step_config_matches_cpu() {
    for step in StepConfig::CANDIDATES {
        let mut cfg = TrainConfig::new(
            LossKind::CrossEntropy {
                ignore_index: Some(3),
            },
            OptimizerKind::adam(0.01),
        );
        cfg.clip_grad_norm = Some(0.5);
        compare_in(
            &format!("{step:?}"),
            Some((11, 5)),
            LstmConfig::new(5, 9).num_layers(2).dropout(0.2),
            11,
            HeadKind::PerStep,
            cfg,
            10,
            true,
            Some(step),
            (6, 3),
        );
    }
}

/// A per-step head over more rows (T·B = 60,000) than one GEMM dispatch
/// reduces: the head's dW and db (and the LSTM's weight gradients) run in
/// blocks of 16384 rows, and two SGD steps still match the reference.
#[test]
fn a_per_step_head_over_many_rows_matches_cpu() {
    compare_in(
        "a_per_step_head_over_many_rows",
        None,
        LstmConfig::new(2, 4),
        1,
        HeadKind::PerStep,
        TrainConfig::new(LossKind::Mse, OptimizerKind::sgd(0.5)),
        2,
        false,
        None,
        (600, 100),
    );
}

/// The training cases again on a device with exactly WebGPU's limits.
#[test]
fn training_runs_under_webgpu_limits() {
    common::gpu::rerun_under_webgpu_limits(
        "training_runs_under_webgpu_limits",
        &[
            "per_step_mse_adam_matches_cpu",
            "embedding_cross_entropy_ignore_index_sgd_momentum_clipped_with_lengths_matches_cpu",
            "last_step_mse_adamw_cosine_dropout_bidirectional_matches_cpu",
            "batches_of_changing_length_keep_matching_the_cpu",
        ],
    );
}

/// Stateful training with gradient accumulation keeps the step one submit
/// with no host wait, and allocates nothing after the first update: the
/// carried state and the sums stay on the GPU.
#[test]
fn stateful_accumulating_steps_are_one_submit_each() {
    let Some(ctx) = gpu_or_skip("stateful_accumulating_steps_are_one_submit_each") else {
        return;
    };
    let lstm = LstmConfig::new(4, 8).num_layers(2);
    let model = Model::<f32>::new(Some((10, 4)), &lstm, 10, HeadKind::PerStep, 1).unwrap();
    let mut cfg = TrainConfig::new(
        LossKind::CrossEntropy { ignore_index: None },
        OptimizerKind::adam(1e-3),
    );
    cfg.stateful = true;
    cfg.grad_accumulation = 2;
    let mut gpu = GpuTrainer::new(&ctx, &model, cfg.clone()).unwrap();
    let (t, b) = (9, 2);
    let d = data(0, t, b, 4, 10, t * b, 10, false);
    let bt = batch(&d, t, b, true, cfg.loss);
    gpu.step(&bt).unwrap();
    gpu.step(&bt).unwrap();
    for k in 0..4 {
        let before = ctx.counters();
        gpu.step(&bt).unwrap();
        let c = ctx.counters() - before;
        assert_eq!((c.submits, c.host_waits), (1, 0), "batch {k}: {c:?}");
        assert_eq!((c.pipelines, c.bind_groups, c.buffers), (0, 0, 0), "{c:?}");
    }
    assert_eq!(gpu.step_count(), 6);
    assert!(gpu.loss().unwrap().is_finite());
}
