//! Projection LSTMs (`proj_size` > 0) on the GPU: PyTorch fixtures forward
//! and backward, the CPU reference on random configurations, the dispatch
//! counts, and a training step against the CPU trainer.

mod common;

use common::case::Case;
use common::gpu::gpu_or_skip;
use common::lstm_fixtures::{Case as Fixture, proj_cases};
use common::{assert_close, assert_close_to_max, assert_grads_close, random_tensor};
use wgpu_lstm::gpu::{GpuLstm, GpuTensor, InitialState};
use wgpu_lstm::reference::{self, OutputGrads};
use wgpu_lstm::{InitOptions, LstmConfig, LstmWeights, Real, Tensor};

/// max |got - want| and max |want|, for reporting how close a match was.
fn errors<A: Real, B: Real>(got: &[A], want: &[B]) -> (f64, f64) {
    got.iter().zip(want).fold((0.0, 0.0), |(e, m), (&g, &w)| {
        let (g, w) = (g.as_f64(), w.as_f64());
        (f64::max(e, (g - w).abs()), f64::max(m, w.abs()))
    })
}

#[test]
fn pytorch_projection_fixtures_forward_match() {
    let Some(ctx) = gpu_or_skip("pytorch_projection_fixtures_forward_match") else {
        return;
    };
    let cases = proj_cases();
    assert!(cases.len() >= 4, "only {} projection fixtures", cases.len());
    let mut worst = 0.0f64;
    for (name, bytes) in cases {
        let case = Fixture::<f32>::load(&bytes);
        assert!(case.weights.config.proj_size > 0, "{name}");
        let got = GpuLstm::new(&ctx, &case.weights)
            .unwrap()
            .forward_host(&case.x())
            .unwrap();
        for (k, g) in [
            ("output", &got.output),
            ("h_n", &got.h_n),
            ("c_n", &got.c_n),
        ] {
            let want: Tensor<f64> = case.tensor(k);
            assert_eq!(g.shape(), want.shape(), "{name}/{k}");
            assert_close(&format!("{name}/{k}"), g.data(), want.data(), 1e-5, 0.0);
            worst = worst.max(errors(g.data(), want.data()).0);
        }
    }
    eprintln!("projection fixtures, forward: worst abs error {worst:e}");
}

#[test]
fn pytorch_projection_fixtures_gradients_match() {
    let Some(ctx) = gpu_or_skip("pytorch_projection_fixtures_gradients_match") else {
        return;
    };
    let mut worst = 0.0f64;
    for (name, bytes) in proj_cases() {
        let case = Fixture::<f32>::load(&bytes);
        let mut gpu = GpuLstm::new(&ctx, &case.weights).unwrap();
        gpu.forward_train_host(&case.x(), 0).unwrap();
        let (dy, dh, dc) = case.upstream();
        let got = gpu
            .backward_host(&OutputGrads {
                d_output: &dy,
                d_h_n: Some(&dh),
                d_c_n: Some(&dc),
            })
            .unwrap();
        let checks = case.gradient_keys(&got);
        assert!(
            checks
                .iter()
                .any(|(k, _)| k.starts_with("grad.lstm.weight_hr")),
            "{name}: no weight_hr gradient"
        );
        for (key, g) in checks {
            let want: Tensor<f64> = case.tensor(&key);
            assert_close_to_max(&format!("{name}/{key}"), &g, want.data(), 1e-4);
            let (e, m) = errors(&g, want.data());
            worst = worst.max(e / m.max(f64::MIN_POSITIVE));
        }
    }
    eprintln!("projection fixtures, gradients: worst error / max |grad| {worst:e}");
}

const DROPOUT_SEED: u64 = 5;

/// GPU forward and backward of `c` against the reference, run in f64 on the
/// same (f32-valued) weights and inputs.
fn against_cpu(name: &str, c: Case) {
    let Some(ctx) = gpu_or_skip(name) else { return };
    let w = LstmWeights::<f32>::init(&c.config, 17, InitOptions::default()).unwrap();
    let data = c.data::<f32>(3);
    let x = c.input(&data);
    let (w64, data64) = (w.cast::<f64>(), data.cast::<f64>());
    let x64 = c.input(&data64);
    let want_infer = reference::forward(&w64, &x64).unwrap();
    let (want_out, cache) = reference::forward_train(&w64, &x64, DROPOUT_SEED).unwrap();
    let want = reference::backward(&w64, &cache, &data64.grads()).unwrap();

    let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
    let got_infer = gpu.forward_host(&x).unwrap();
    let got_out = gpu.forward_train_host(&x, DROPOUT_SEED).unwrap();
    for (what, g, w) in [
        ("output", &got_infer.output, &want_infer.output),
        ("h_n", &got_infer.h_n, &want_infer.h_n),
        ("c_n", &got_infer.c_n, &want_infer.c_n),
        ("train output", &got_out.output, &want_out.output),
        ("train h_n", &got_out.h_n, &want_out.h_n),
        ("train c_n", &got_out.c_n, &want_out.c_n),
    ] {
        assert_eq!(g.shape(), w.shape(), "{name}/{what}");
        assert_close(&format!("{name}/{what}"), g.data(), w.data(), 1e-5, 1e-5);
    }
    let got = gpu.backward_host(&data.grads()).unwrap();
    assert_grads_close(name, &got, &want, c.with_state, 1e-4);
}

#[test]
fn batch_of_one_matches_cpu() {
    against_cpu(
        "batch_of_one",
        Case {
            with_state: true,
            ..Case::new(LstmConfig::new(4, 9).proj_size(3), 6, 1)
        },
    );
}

#[test]
fn bidirectional_two_layers_with_lengths_match_cpu() {
    let cfg = LstmConfig::new(5, 12)
        .proj_size(7)
        .num_layers(2)
        .bidirectional(true);
    against_cpu(
        "bidirectional_two_layers_with_lengths",
        Case {
            lengths: Some(vec![7, 3, 5, 1, 6]),
            with_state: true,
            ..Case::new(cfg, 7, 5)
        },
    );
}

#[test]
fn wide_projection_over_one_workgroup_matches_cpu() {
    // H = 90 and P = 70 both span two 64-unit workgroups.
    let cfg = LstmConfig::new(3, 90).proj_size(70).bidirectional(true);
    against_cpu(
        "wide_projection_over_one_workgroup",
        Case {
            lengths: Some(vec![4, 2, 4, 3, 1]),
            ..Case::new(cfg, 4, 5)
        },
    );
}

#[test]
fn batch_first_no_bias_dropout_matches_cpu() {
    let cfg = LstmConfig::new(3, 8)
        .proj_size(2)
        .num_layers(3)
        .bias(false)
        .batch_first(true)
        .dropout(0.4);
    against_cpu(
        "batch_first_no_bias_dropout",
        Case {
            with_state: true,
            ..Case::new(cfg, 5, 5)
        },
    );
}

#[test]
fn weights_round_trip_and_state_carries() {
    let Some(ctx) = gpu_or_skip("weights_round_trip_and_state_carries") else {
        return;
    };
    let cfg = LstmConfig::new(3, 10)
        .proj_size(4)
        .num_layers(2)
        .bidirectional(true);
    let w = LstmWeights::<f32>::init(&cfg, 2, InitOptions::default()).unwrap();
    let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
    assert_eq!(gpu.weights().unwrap(), w);
    let w2 = LstmWeights::<f32>::init(&cfg, 3, InitOptions::default()).unwrap();
    gpu.set_weights(&w2).unwrap();
    assert_eq!(gpu.weights().unwrap(), w2);

    // Two chunks carried on the GPU equal one pass over both (streaming is
    // forward-only, so one direction).
    let cfg = LstmConfig::new(3, 10).proj_size(4).num_layers(2);
    let w2 = LstmWeights::<f32>::init(&cfg, 3, InitOptions::default()).unwrap();
    let mut gpu = GpuLstm::new(&ctx, &w2).unwrap();
    let input = random_tensor::<f32>(&[8, 2, 3], 4, 1.0);
    let want = reference::forward(&w2, &wgpu_lstm::LstmInput::new(&input)).unwrap();
    let half = |k: usize| {
        let n = 4 * 2 * 3;
        Tensor::new([4, 2, 3], input.data()[k * n..(k + 1) * n].to_vec()).unwrap()
    };
    let x0 = GpuTensor::upload(&ctx, "x0", &half(0)).unwrap();
    let x1 = GpuTensor::upload(&ctx, "x1", &half(1)).unwrap();
    gpu.forward(&x0, InitialState::Zeros, None).unwrap();
    let out = gpu.forward(&x1, InitialState::Carry, None).unwrap();
    let h_n = out.h_n.to_host(&ctx).unwrap();
    let c_n = out.c_n.to_host(&ctx).unwrap();
    assert_eq!(h_n.shape(), &[2, 2, 4]);
    assert_close("carried h_n", h_n.data(), want.h_n.data(), 1e-5, 1e-5);
    assert_close("carried c_n", c_n.data(), want.c_n.data(), 1e-5, 1e-5);
}

#[test]
fn two_dispatches_per_step_with_a_projection() {
    let Some(ctx) = gpu_or_skip("two_dispatches_per_step_with_a_projection") else {
        return;
    };
    for (layers, bidir, batch_first) in [(1, false, false), (2, true, true), (3, true, false)] {
        let cfg = LstmConfig::new(3, 9)
            .proj_size(5)
            .num_layers(layers)
            .bidirectional(bidir)
            .batch_first(batch_first)
            .dropout(0.2);
        let (t, b) = (7, 2);
        let d = cfg.num_directions();
        let shape = if batch_first { [b, t, 3] } else { [t, b, 3] };
        let out_shape = if batch_first {
            [b, t, d * 5]
        } else {
            [t, b, d * 5]
        };
        let w = LstmWeights::<f32>::init(&cfg, 1, InitOptions::default()).unwrap();
        let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
        let x = GpuTensor::upload(&ctx, "x", &random_tensor(&shape, 1, 1.0)).unwrap();
        let dy = GpuTensor::upload(&ctx, "dy", &random_tensor(&out_shape, 2, 1.0)).unwrap();
        let permutes = if batch_first { 2 } else { 0 };

        // Inference: one GEMM, then a step and a projection per time step.
        gpu.forward(&x, InitialState::Zeros, None).unwrap();
        let before = ctx.counters();
        gpu.forward(&x, InitialState::Zeros, None).unwrap();
        let infer = ctx.counters() - before;
        assert_eq!(infer.submits, 1);
        assert_eq!(infer.dispatches, (layers * (1 + 2 * t) + permutes) as u64);

        let mut step = |seed| {
            let c0 = ctx.counters();
            gpu.forward_train(&x, InitialState::Zeros, None, seed)
                .unwrap();
            let c1 = ctx.counters();
            gpu.backward(&dy, None, None).unwrap();
            (c1 - c0, ctx.counters() - c1)
        };
        let _ = step(1);
        let (fwd, bwd) = step(2);
        assert_eq!(fwd.submits, 1);
        assert_eq!(fwd.dispatches, (layers * (1 + 2 * t) + permutes) as u64);
        assert_eq!(bwd.submits, 1);
        // Per layer: (dh_t, cell) for T steps and the finish, dW_ih, dW_hh
        // and dW_hr per direction, db, dX.
        let per_layer = 2 * (t + 1) + 1 + 2 * d + 1 + 1;
        assert_eq!(bwd.dispatches, (layers * per_layer + permutes) as u64);
        for c in [infer, fwd, bwd] {
            assert_eq!((c.pipelines, c.bind_groups, c.buffers), (0, 0, 0), "{c:?}");
        }
    }
}

mod training {
    use super::common::assert_close;
    use super::common::gpu::gpu_or_skip;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use wgpu_lstm::LstmConfig;
    use wgpu_lstm::gpu::GpuTrainer;
    use wgpu_lstm::model::{Batch, HeadKind, Inputs, LossKind, Model, Targets, TrainConfig};
    use wgpu_lstm::reference::{OptimizerKind, ReferenceTrainer};

    /// `steps` training steps of the CPU and GPU trainers on the same seeded
    /// batches: losses within 1e-4 relative each step, then every parameter
    /// (weight_hr included) within 1e-4 + 1e-3·|value|.
    fn compare(name: &str, lstm: LstmConfig, head: HeadKind, config: TrainConfig, steps: usize) {
        let Some(ctx) = gpu_or_skip(name) else { return };
        let (t, b, outputs) = (5, 4, 3);
        let model = Model::<f32>::new(None, &lstm, outputs, head, 8).unwrap();
        let mut cpu = ReferenceTrainer::new(model.clone(), config.clone()).unwrap();
        let mut gpu = GpuTrainer::new(&ctx, &model, config).unwrap();
        let rows = if head == HeadKind::PerStep { t * b } else { b };
        let mut worst = 0.0f64;
        for step in 0..steps {
            let mut rng = ChaCha8Rng::seed_from_u64(300 + step as u64);
            let inputs: Vec<f32> = (0..t * b * lstm.input_size)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let values: Vec<f32> = (0..rows * outputs)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let lengths: Vec<usize> = (0..b).map(|k| t - (k + step) % t).collect();
            let batch = Batch {
                seq_len: t,
                batch: b,
                inputs: Inputs::Features(&inputs),
                targets: Targets::Values(&values),
                lengths: Some(&lengths),
            };
            let want = cpu.step(&batch).unwrap();
            let got = gpu.step_with_loss(&batch).unwrap() as f64;
            worst = worst.max((got - want).abs() / want.abs().max(1.0));
            assert!(
                (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{name}: step {step}: GPU loss {got}, CPU loss {want}"
            );
        }
        let (gm, cm) = (gpu.model().unwrap(), cpu.model());
        let (gp, cp) = (gm.named_params(), cm.named_params());
        assert_eq!(gp.len(), cp.len());
        assert!(gp.iter().any(|(n, _, _)| n.contains("weight_hr")), "{name}");
        for ((n, _, g), (_, _, c)) in gp.iter().zip(cp.iter()) {
            assert_close(&format!("{name}/{n}"), g, c, 1e-4, 1e-3);
        }
        eprintln!("{name}: worst relative loss difference {worst:e}");
    }

    #[test]
    fn sgd_steps_on_a_projection_model_match_the_cpu_trainer() {
        compare(
            "proj_sgd",
            LstmConfig::new(3, 8)
                .proj_size(5)
                .num_layers(2)
                .bidirectional(true),
            HeadKind::PerStep,
            TrainConfig::new(LossKind::Mse, OptimizerKind::sgd(0.5)),
            10,
        );
    }

    /// Adam's state for W_hr survives a checkpoint: resuming gives the same
    /// losses, bit for bit.
    #[test]
    fn resuming_a_projection_model_from_a_checkpoint_is_bit_identical() {
        let name = "resuming_a_projection_model_from_a_checkpoint_is_bit_identical";
        let Some(ctx) = gpu_or_skip(name) else { return };
        let lstm = LstmConfig::new(3, 6).proj_size(4).bidirectional(true);
        let model = Model::<f32>::new(None, &lstm, 2, HeadKind::PerStep, 3).unwrap();
        let cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(0.02));
        let (t, b) = (4, 2);
        let step = |tr: &mut GpuTrainer, s: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(s);
            let x: Vec<f32> = (0..t * b * 3)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let y: Vec<f32> = (0..t * b * 2)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            let batch = Batch {
                seq_len: t,
                batch: b,
                inputs: Inputs::Features(&x),
                targets: Targets::Values(&y),
                lengths: None,
            };
            tr.step_with_loss(&batch).unwrap().to_bits()
        };
        let dir = std::env::temp_dir().join(format!("wgpu-lstm-proj-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ckpt.safetensors");
        let mut straight = GpuTrainer::new(&ctx, &model, cfg.clone()).unwrap();
        let mut losses = Vec::new();
        for s in 0..6 {
            if s == 3 {
                straight.save_checkpoint(&path).unwrap();
            }
            losses.push(step(&mut straight, s));
        }
        let other = Model::<f32>::new(None, &lstm, 2, HeadKind::PerStep, 77).unwrap();
        let mut resumed = GpuTrainer::new(&ctx, &other, cfg).unwrap();
        resumed.load_checkpoint(&path).unwrap();
        let again: Vec<u32> = (3..6).map(|s| step(&mut resumed, s)).collect();
        assert_eq!(&losses[3..], &again[..]);
        let (a, b) = (straight.model().unwrap(), resumed.model().unwrap());
        for ((n, _, x), (_, _, y)) in a.named_params().iter().zip(b.named_params().iter()) {
            assert_eq!(x, y, "{n}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clipped_adam_with_dropout_on_a_projection_model_matches_the_cpu_trainer() {
        let mut cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(0.01));
        cfg.clip_grad_norm = Some(0.3);
        cfg.dropout_seed = 21;
        compare(
            "proj_adam_clipped_dropout",
            LstmConfig::new(4, 7)
                .proj_size(3)
                .num_layers(2)
                .dropout(0.3),
            HeadKind::LastStep,
            cfg,
            15,
        );
    }
}

/// f16 storage (`Precision::F16`) with a projection, against the f32 GPU
/// path, at the tolerances of tests/gpu_f16.rs and for the same reasons:
/// forward within 2e-2 absolute, gradients within 5e-2 of each tensor's max.
mod f16 {
    use super::common::case::Case;
    use super::common::gpu::gpu_or_skip;
    use super::common::{assert_close, assert_close_to_max};
    use super::errors;
    use wgpu_lstm::gpu::{GpuContext, GpuLstm, GpuTrainer, Precision};
    use wgpu_lstm::model::{Batch, HeadKind, Inputs, LossKind, Model, Targets, TrainConfig};
    use wgpu_lstm::reference::OptimizerKind;
    use wgpu_lstm::{InitOptions, LstmConfig, LstmWeights};

    const FORWARD_ATOL: f64 = 2e-2;
    const GRAD_TOL: f64 = 5e-2;

    fn f16_gpu(test: &str) -> Option<GpuContext> {
        let ctx = gpu_or_skip(test)?;
        if ctx.features().contains(wgpu::Features::SHADER_F16) {
            Some(ctx)
        } else {
            eprintln!("skipped {test}: the adapter lacks SHADER_F16");
            None
        }
    }

    #[test]
    fn f16_projection_forward_and_gradients_follow_f32() {
        let Some(ctx) = f16_gpu("f16_projection_forward_and_gradients_follow_f32") else {
            return;
        };
        for (n, (layers, bidir, t, b, h, p)) in [
            (1, false, 5, 1, 9, 4),
            (2, true, 30, 4, 33, 16),
            (2, false, 20, 3, 70, 65),
        ]
        .into_iter()
        .enumerate()
        {
            let cfg = LstmConfig::new(6, h)
                .proj_size(p)
                .num_layers(layers)
                .bidirectional(bidir)
                .dropout(if layers > 1 { 0.2 } else { 0.0 });
            let mut c = Case::new(cfg, t, b);
            c.with_state = true;
            if b > 1 {
                c.lengths = Some((0..b).map(|k| t - (2 * k) % t).collect());
            }
            let w =
                LstmWeights::<f32>::init(&c.config, 40 + n as u64, InitOptions::default()).unwrap();
            let data = c.data::<f32>(1);
            let x = c.input(&data);
            let mut f32_gpu = GpuLstm::new(&ctx, &w).unwrap();
            let mut f16_gpu = GpuLstm::with_precision(&ctx, &w, Precision::F16).unwrap();
            let name = format!("case {n}: L={layers} bidir={bidir} T={t} B={b} H={h} P={p}");

            let (want, got) = (
                f32_gpu.forward_host(&x).unwrap(),
                f16_gpu.forward_host(&x).unwrap(),
            );
            for (k, g, e) in [
                ("output", &got.output, &want.output),
                ("h_n", &got.h_n, &want.h_n),
                ("c_n", &got.c_n, &want.c_n),
            ] {
                assert_close(
                    &format!("{name}/{k}"),
                    g.data(),
                    e.data(),
                    FORWARD_ATOL,
                    0.0,
                );
                eprintln!(
                    "{name}/{k}: max |f16 - f32| = {:.2e}",
                    errors(g.data(), e.data()).0
                );
            }

            f32_gpu.forward_train_host(&x, 7).unwrap();
            let want = f32_gpu.backward_host(&data.grads()).unwrap();
            f16_gpu.forward_train_host(&x, 7).unwrap();
            let got = f16_gpu.backward_host(&data.grads()).unwrap();
            super::assert_grads_close(&name, &got, &want, true, GRAD_TOL);
        }
    }

    /// One SGD step in f16 (f32 master weights, W_hr among them) changes
    /// every parameter like the f32 step, within GRAD_TOL of the largest
    /// f32 change per tensor.
    #[test]
    fn an_f16_training_step_on_a_projection_model_follows_f32() {
        let Some(ctx) = f16_gpu("an_f16_training_step_on_a_projection_model_follows_f32") else {
            return;
        };
        let (t, b) = (12, 6);
        let x = super::common::random_tensor::<f32>(&[t, b, 3], 5, 1.0).into_data();
        let y = super::common::random_tensor::<f32>(&[b, 1], 6, 1.0).into_data();
        let batch = Batch {
            seq_len: t,
            batch: b,
            inputs: Inputs::Features(&x),
            targets: Targets::Values(&y),
            lengths: None,
        };
        let lstm = LstmConfig::new(3, 16).proj_size(6).num_layers(2);
        let m0 = Model::<f32>::new(None, &lstm, 1, HeadKind::LastStep, 4).unwrap();
        let cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::sgd(0.5));
        let mut f32_trainer = GpuTrainer::new(&ctx, &m0, cfg.clone()).unwrap();
        let mut f16_trainer = GpuTrainer::with_precision(&ctx, &m0, cfg, Precision::F16).unwrap();
        let l32 = f32_trainer.step_with_loss(&batch).unwrap();
        let l16 = f16_trainer.step_with_loss(&batch).unwrap();
        assert!((l16 - l32).abs() <= 2e-2 * l32.abs(), "loss {l16} vs {l32}");
        assert_eq!(f16_trainer.skipped_steps().unwrap(), 0);
        let (p0, p32, p16) = (
            m0.named_params(),
            f32_trainer.model().unwrap(),
            f16_trainer.model().unwrap(),
        );
        let mut saw_hr = false;
        for (((name, _, before), (_, _, a)), (_, _, h)) in p0
            .iter()
            .zip(p32.named_params().iter())
            .zip(p16.named_params().iter())
        {
            saw_hr |= name.contains("weight_hr");
            let d32: Vec<f32> = a.iter().zip(before.iter()).map(|(a, b)| a - b).collect();
            let d16: Vec<f32> = h.iter().zip(before.iter()).map(|(h, b)| h - b).collect();
            assert!(d32.iter().any(|v| *v != 0.0), "{name} did not change");
            assert_close_to_max(&format!("update of {name}"), &d16, &d32, GRAD_TOL);
        }
        assert!(saw_hr);
    }
}

/// h states are P wide and c states H wide: swapping them is a typed error,
/// in the forward pass and in the backward one.
#[test]
fn states_of_the_wrong_width_get_typed_errors() {
    use wgpu_lstm::LstmError;
    let Some(ctx) = gpu_or_skip("states_of_the_wrong_width_get_typed_errors") else {
        return;
    };
    let cfg = LstmConfig::new(4, 6).proj_size(2);
    let w = LstmWeights::<f32>::init(&cfg, 1, InitOptions::default()).unwrap();
    let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
    let x = GpuTensor::upload(&ctx, "x", &random_tensor(&[3, 2, 4], 1, 1.0)).unwrap();
    let (h, c) = (
        GpuTensor::upload(&ctx, "h", &random_tensor(&[1, 2, 2], 2, 1.0)).unwrap(),
        GpuTensor::upload(&ctx, "c", &random_tensor(&[1, 2, 6], 3, 1.0)).unwrap(),
    );
    let swapped = InitialState::Given { h_0: &c, c_0: &h };
    let err = gpu.forward(&x, swapped, None).unwrap_err();
    assert!(
        matches!(&err, LstmError::ShapeMismatch { name, .. } if name == "h_0"),
        "{err}"
    );
    let right = InitialState::Given { h_0: &h, c_0: &c };
    gpu.forward_train(&x, right, None, 0).unwrap();
    let dy = GpuTensor::upload(&ctx, "dy", &random_tensor(&[3, 2, 2], 4, 1.0)).unwrap();
    let err = gpu.backward(&dy, Some(&c), None).unwrap_err();
    assert!(
        matches!(&err, LstmError::ShapeMismatch { name, .. } if name == "d_h_n"),
        "{err}"
    );
    let err = gpu.backward(&dy, None, Some(&h)).unwrap_err();
    assert!(
        matches!(&err, LstmError::ShapeMismatch { name, .. } if name == "d_c_n"),
        "{err}"
    );
    gpu.backward(&dy, Some(&h), Some(&c)).unwrap();
}

/// The projection cases again on a device with exactly WebGPU's limits.
#[test]
fn projection_runs_under_webgpu_limits() {
    common::gpu::rerun_under_webgpu_limits(
        "projection_runs_under_webgpu_limits",
        &[
            "pytorch_projection_fixtures_gradients_match",
            "bidirectional_two_layers_with_lengths_match_cpu",
        ],
    );
}
