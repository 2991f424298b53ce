//! f16 storage on the GPU (`Precision::F16`) against the f32 GPU path, which
//! is itself held to the CPU reference by `gpu_forward` and `gpu_backward`.
//!
//! Tolerances, and why:
//! - forward outputs (output, h_n, c_n): max |f16 − f32| ≤ 2e-2. f16 keeps 11
//!   significant bits (relative rounding 4.9e-4); weights, the input
//!   projection and the saved gates are rounded once each, products
//!   accumulate in f32, and the recurrence is contractive for these weights,
//!   so the error stays near 1e-3 even at T = 100.
//! - gradients: |f16 − f32| ≤ 5e-2 · max|f32| per tensor, since the gate
//!   gradients dG are themselves stored in f16 and feed every weight gradient.

mod common;

use common::case::Case;
use common::gpu::gpu_or_skip;
use common::{assert_close, assert_close_to_max, assert_grads_close, root};
use wgpu_lstm::gpu::{GpuContext, GpuLstm, GpuTrainer, LossScale, Precision, check_precision};
use wgpu_lstm::model::{Batch, HeadKind, Inputs, LossKind, Model, Targets, TrainConfig};
use wgpu_lstm::reference::Gradients;
use wgpu_lstm::reference::OptimizerKind;
use wgpu_lstm::weights::SafetensorsPrefix;
use wgpu_lstm::{InitOptions, LstmConfig, LstmError, LstmWeights};

const FORWARD_ATOL: f64 = 2e-2;
const GRAD_TOL: f64 = 5e-2;

/// A context whose adapter has `SHADER_F16`, or `None` (after saying why).
/// Without the feature, f16 must be refused with the typed error.
fn f16_gpu(test: &str) -> Option<GpuContext> {
    let ctx = gpu_or_skip(test)?;
    if ctx.features().contains(wgpu::Features::SHADER_F16) {
        return Some(ctx);
    }
    let w = LstmWeights::<f32>::init(&LstmConfig::new(2, 3), 1, InitOptions::default()).unwrap();
    let Err(err) = GpuLstm::with_precision(&ctx, &w, Precision::F16) else {
        panic!("{test}: f16 accepted without SHADER_F16");
    };
    assert!(
        matches!(err, LstmError::MissingFeature { .. }),
        "{test}: {err}"
    );
    eprintln!("skipped {test}: the adapter lacks SHADER_F16 (and says so)");
    None
}

/// The forward pass of `c` in f16 and in f32 on the GPU: output, h_n, c_n
/// within FORWARD_ATOL.
fn check_forward(ctx: &GpuContext, name: &str, c: &Case, w: &LstmWeights<f32>) {
    let data = c.data::<f32>(3);
    let x = c.input(&data);
    let want = GpuLstm::new(ctx, w).unwrap().forward_host(&x).unwrap();
    let mut gpu = GpuLstm::with_precision(ctx, w, Precision::F16).unwrap();
    assert_eq!(gpu.precision(), Precision::F16);
    let got = gpu.forward_host(&x).unwrap();
    for (k, g, e) in [
        ("output", &got.output, &want.output),
        ("h_n", &got.h_n, &want.h_n),
        ("c_n", &got.c_n, &want.c_n),
    ] {
        assert_eq!(g.shape(), e.shape(), "{name}/{k}");
        assert_close(
            &format!("{name}/{k}"),
            g.data(),
            e.data(),
            FORWARD_ATOL,
            0.0,
        );
        let max = g
            .data()
            .iter()
            .zip(e.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{name}/{k}: max |f16 - f32| = {max:.2e}");
    }
}

#[test]
fn forward_matches_f32_over_a_grid() {
    let Some(ctx) = f16_gpu("forward_matches_f32_over_a_grid") else {
        return;
    };
    let mut n = 0;
    for layers in 1..=2 {
        for bidirectional in [false, true] {
            for (b, t, i, h) in [
                (1, 1, 1, 1),
                (3, 17, 5, 7),
                (8, 100, 33, 64),
                (5, 40, 16, 100),
                // H = 18: W_hh loaded as vec2<f16> (64 and 100: vec4, 7: scalar).
                (2, 9, 3, 18),
            ] {
                let cfg = LstmConfig::new(i, h)
                    .num_layers(layers)
                    .bidirectional(bidirectional)
                    .batch_first(n % 3 == 2);
                let mut c = Case::new(cfg, t, b);
                c.with_state = n % 2 == 1;
                if b > 1 {
                    c.lengths = Some((0..b).map(|k| 1 + (k * 7 + n) % t).collect());
                }
                let w = LstmWeights::<f32>::init(&c.config, 17 + n as u64, InitOptions::default())
                    .unwrap();
                let name =
                    format!("case {n}: L={layers} bidir={bidirectional} B={b} T={t} I={i} H={h}");
                check_forward(&ctx, &name, &c, &w);
                n += 1;
            }
        }
    }
}

#[test]
fn saturating_inputs_stay_finite_and_close() {
    let Some(ctx) = f16_gpu("saturating_inputs_stay_finite_and_close") else {
        return;
    };
    // Inputs of order 1e6 give gate pre-activations beyond f16's range
    // (65504): the input projection stores them as ±inf, which the
    // saturation-safe activations must still map to exactly 0 or ±1, as the
    // f32 path does with the finite values. (Inputs of order 1e3 are not
    // held to FORWARD_ATOL: there f16's spacing is 0.5, so a gate whose
    // pre-activation nearly cancels can move by that much.)
    let mut c = Case::new(LstmConfig::new(4, 9), 12, 3);
    c.scale = 1e6;
    let w = LstmWeights::<f32>::init(&c.config, 5, InitOptions::default()).unwrap();
    let data = c.data::<f32>(3);
    let mut gpu = GpuLstm::with_precision(&ctx, &w, Precision::F16).unwrap();
    let out = gpu.forward_host(&c.input(&data)).unwrap();
    for t in [&out.output, &out.h_n, &out.c_n] {
        assert!(t.data().iter().all(|v| v.is_finite()), "non-finite");
    }
    check_forward(&ctx, "saturating", &c, &w);
}

/// max |got - want| / max |want|.
fn relative_to_max(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    err / scale.max(f32::MIN_POSITIVE)
}

fn compare_grads(name: &str, got: &Gradients<f32>, want: &Gradients<f32>) {
    assert_grads_close(name, got, want, true, GRAD_TOL);
    for ((n, _, g), (_, _, w)) in got
        .weights
        .named_params()
        .iter()
        .zip(want.weights.named_params().iter())
    {
        eprintln!("{name}/{n}: {:.2e} of max", relative_to_max(g, w));
    }
}

#[test]
fn gradients_match_f32_over_a_grid() {
    let Some(ctx) = f16_gpu("gradients_match_f32_over_a_grid") else {
        return;
    };
    let mut n = 0;
    for layers in 1..=2 {
        for bidirectional in [false, true] {
            for (b, t, i, h) in [(1, 3, 2, 5), (4, 30, 7, 33), (6, 100, 16, 64)] {
                let dropout = if layers == 2 && n % 2 == 0 { 0.25 } else { 0.0 };
                let cfg = LstmConfig::new(i, h)
                    .num_layers(layers)
                    .bidirectional(bidirectional)
                    .bias(n % 4 != 3)
                    .dropout(dropout);
                let mut c = Case::new(cfg, t, b);
                c.with_state = true;
                if b > 1 {
                    c.lengths = Some((0..b).map(|k| 1 + (k * 5 + n) % t).collect());
                }
                let w = LstmWeights::<f32>::init(&c.config, 31 + n as u64, InitOptions::default())
                    .unwrap();
                let data = c.data::<f32>(1);
                let x = c.input(&data);
                let grads = data.grads();
                let mut f32_gpu = GpuLstm::new(&ctx, &w).unwrap();
                f32_gpu.forward_train_host(&x, 7).unwrap();
                let want = f32_gpu.backward_host(&grads).unwrap();
                let mut f16_gpu = GpuLstm::with_precision(&ctx, &w, Precision::F16).unwrap();
                f16_gpu.forward_train_host(&x, 7).unwrap();
                let got = f16_gpu.backward_host(&grads).unwrap();
                let name = format!(
                    "case {n}: L={layers} bidir={bidirectional} B={b} T={t} I={i} H={h} p={dropout}"
                );
                compare_grads(&name, &got, &want);
                n += 1;
            }
        }
    }
}

#[test]
fn f16_needs_shader_f16_and_says_so() {
    // The check itself, for an adapter without the feature.
    let err =
        check_precision(Precision::F16, wgpu::Features::empty(), "no-f16 adapter").unwrap_err();
    assert!(
        matches!(
            err,
            LstmError::MissingFeature {
                feature: "SHADER_F16",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("no-f16 adapter"), "{err}");
    // The real device: f16 works exactly when the device has the feature
    // (the context requests it whenever the adapter offers it).
    let Some(ctx) = gpu_or_skip("f16_needs_shader_f16_and_says_so") else {
        return;
    };
    let w = LstmWeights::<f32>::init(&LstmConfig::new(2, 3), 1, InitOptions::default()).unwrap();
    let made = GpuLstm::with_precision(&ctx, &w, Precision::F16);
    assert_eq!(
        made.is_ok(),
        ctx.features().contains(wgpu::Features::SHADER_F16)
    );
}

#[test]
fn half_and_bfloat16_state_dicts_run_in_f16() {
    let Some(ctx) = f16_gpu("half_and_bfloat16_state_dicts_run_in_f16") else {
        return;
    };
    let dir = root().join("tests/fixtures/state_dicts");
    for file in ["lstm_f16", "lstm_bf16"] {
        let path = dir.join(format!("{file}.safetensors"));
        let w = LstmWeights::<f32>::load_safetensors(&path, SafetensorsPrefix::Auto).unwrap();
        let c = Case::new(w.config.clone(), 9, 3);
        check_forward(&ctx, file, &c, &w);
        // The f16 file's weights are f16 values: the engine stores them exactly.
        if file == "lstm_f16" {
            let gpu = GpuLstm::with_precision(&ctx, &w, Precision::F16).unwrap();
            assert_eq!(gpu.weights().unwrap(), w, "{file}: stored exactly");
        }
    }
}

#[test]
fn weights_and_saved_activations_take_about_half_the_memory() {
    let Some(ctx) = f16_gpu("weights_and_saved_activations_take_about_half_the_memory") else {
        return;
    };
    let cfg = LstmConfig::new(32, 64).num_layers(2).bidirectional(true);
    let c = Case::new(cfg, 50, 8);
    let w = LstmWeights::<f32>::init(&c.config, 3, InitOptions::default()).unwrap();
    let data = c.data::<f32>(1);
    let x = c.input(&data);
    let mut memory = Vec::new();
    for precision in [Precision::F32, Precision::F16] {
        let mut gpu = GpuLstm::with_precision(&ctx, &w, precision).unwrap();
        assert_eq!(gpu.memory().saved_activations, 0, "nothing saved yet");
        gpu.forward_train_host(&x, 0).unwrap();
        let m = gpu.memory();
        assert_eq!(m.master_weights, 0, "an engine alone keeps no master copy");
        memory.push(m);
    }
    let (f32m, f16m) = (memory[0], memory[1]);
    // Weights: every element 2 bytes instead of 4 (up to buffer rounding).
    let weights = f16m.weights as f64 / f32m.weights as f64;
    assert!((0.49..=0.51).contains(&weights), "weights ratio {weights}");
    let total = (f16m.weights + f16m.saved_activations) as f64
        / (f32m.weights + f32m.saved_activations) as f64;
    assert!(
        (0.45..=0.6).contains(&total),
        "weights + saved activations: f16 {f16m:?} / f32 {f32m:?} = {total}"
    );
    eprintln!("f32 {f32m:?}\nf16 {f16m:?}\nratio {total:.3}");
}

/// A many-to-one regression batch with a fixed seed.
fn regression_batch(t: usize, b: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let x = common::random_tensor::<f32>(&[t, b, 3], seed, 1.0).into_data();
    let y = common::random_tensor::<f32>(&[b, 1], seed + 1, 1.0).into_data();
    (x, y)
}

fn batch<'a>(x: &'a [f32], y: &'a [f32], t: usize, b: usize) -> Batch<'a> {
    Batch {
        seq_len: t,
        batch: b,
        inputs: Inputs::Features(x),
        targets: Targets::Values(y),
        lengths: None,
    }
}

fn model() -> Model<f32> {
    let lstm = LstmConfig::new(3, 16).num_layers(2);
    Model::<f32>::new(None, &lstm, 1, HeadKind::LastStep, 4).unwrap()
}

/// The parameter change of one SGD step, f16 (with its loss scale divided out
/// again) against f32: each tensor within GRAD_TOL of the largest f32 change.
#[test]
fn an_f16_training_step_updates_f32_master_weights_like_f32() {
    let Some(ctx) = f16_gpu("an_f16_training_step_updates_f32_master_weights_like_f32") else {
        return;
    };
    let (t, b) = (20, 8);
    let (x, y) = regression_batch(t, b, 11);
    let m0 = model();
    let cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::sgd(0.5));
    let mut f32_trainer = GpuTrainer::new(&ctx, &m0, cfg.clone()).unwrap();
    let mut f16_trainer = GpuTrainer::with_precision(&ctx, &m0, cfg, Precision::F16).unwrap();
    assert_eq!(f16_trainer.loss_scale().unwrap(), 65536.0);
    let l32 = f32_trainer.step_with_loss(&batch(&x, &y, t, b)).unwrap();
    let l16 = f16_trainer.step_with_loss(&batch(&x, &y, t, b)).unwrap();
    assert!((l16 - l32).abs() <= 2e-2 * l32.abs(), "loss {l16} vs {l32}");
    assert_eq!(f16_trainer.skipped_steps().unwrap(), 0);
    let (p0, p32, p16) = (
        m0.named_params(),
        f32_trainer.model().unwrap(),
        f16_trainer.model().unwrap(),
    );
    let mut off_the_f16_grid = 0;
    for (((name, _, before), (_, _, a)), (_, _, h)) in p0
        .iter()
        .zip(p32.named_params().iter())
        .zip(p16.named_params().iter())
    {
        let d32: Vec<f32> = a.iter().zip(before.iter()).map(|(a, b)| a - b).collect();
        let d16: Vec<f32> = h.iter().zip(before.iter()).map(|(h, b)| h - b).collect();
        assert_close_to_max(&format!("update of {name}"), &d16, &d32, GRAD_TOL);
        off_the_f16_grid += h
            .iter()
            .filter(|v| half::f16::from_f32(**v).to_f32() != **v)
            .count();
    }
    // The updated LSTM weights are read back from the f32 master copy.
    assert!(off_the_f16_grid > 0, "master weights were rounded to f16");
    let mem = f16_trainer.memory();
    assert_eq!(mem.master_weights, 2 * mem.weights);
}

#[test]
fn overflowing_steps_are_skipped_and_the_scale_backs_off() {
    let Some(ctx) = f16_gpu("overflowing_steps_are_skipped_and_the_scale_backs_off") else {
        return;
    };
    let (t, b) = (10, 4);
    let (x, y) = regression_batch(t, b, 21);
    let m0 = model();
    let cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(1e-2));
    let mut trainer = GpuTrainer::with_precision(&ctx, &m0, cfg, Precision::F16).unwrap();
    // 2^40 overflows f16 (max 65504) in every gate gradient.
    let init = 2f32.powi(40);
    trainer
        .set_loss_scale(LossScale::Dynamic {
            init,
            growth_interval: 1000,
        })
        .unwrap();
    trainer.step(&batch(&x, &y, t, b)).unwrap();
    assert_eq!(trainer.skipped_steps().unwrap(), 1);
    assert_eq!(trainer.loss_scale().unwrap(), init / 2.0);
    assert_eq!(
        trainer.model().unwrap(),
        m0,
        "a skipped step changes nothing"
    );
    let mut steps = 1;
    while trainer.skipped_steps().unwrap() == steps {
        trainer.step(&batch(&x, &y, t, b)).unwrap();
        steps += 1;
        assert!(steps < 40, "the scale never came back into range");
    }
    let scale = trainer.loss_scale().unwrap();
    assert_eq!(scale, init / 2f32.powi(steps as i32 - 1));
    assert_ne!(trainer.model().unwrap(), m0, "a clean step updates");
    trainer.loss().unwrap();
    // A new scale restarts the scaling but keeps the count of skipped steps.
    let skipped = trainer.skipped_steps().unwrap();
    trainer.set_loss_scale(LossScale::Static(8.0)).unwrap();
    assert_eq!(trainer.skipped_steps().unwrap(), skipped);
    assert_eq!(trainer.loss_scale().unwrap(), 8.0);
}

#[test]
fn a_dynamic_scale_grows_after_clean_steps_and_a_static_one_stays() {
    let Some(ctx) = f16_gpu("a_dynamic_scale_grows_after_clean_steps_and_a_static_one_stays")
    else {
        return;
    };
    let (t, b) = (6, 2);
    let (x, y) = regression_batch(t, b, 31);
    let cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::sgd(1e-2));
    let mut trainer =
        GpuTrainer::with_precision(&ctx, &model(), cfg.clone(), Precision::F16).unwrap();
    trainer
        .set_loss_scale(LossScale::Dynamic {
            init: 4.0,
            growth_interval: 2,
        })
        .unwrap();
    for _ in 0..5 {
        trainer.step(&batch(&x, &y, t, b)).unwrap();
    }
    assert_eq!(
        trainer.loss_scale().unwrap(),
        16.0,
        "doubled after steps 2 and 4"
    );
    trainer.set_loss_scale(LossScale::Static(128.0)).unwrap();
    for _ in 0..3 {
        trainer.step(&batch(&x, &y, t, b)).unwrap();
    }
    assert_eq!(trainer.loss_scale().unwrap(), 128.0);
    assert_eq!(trainer.skipped_steps().unwrap(), 0);
    // f32 training has no loss scale to set.
    let mut f32_trainer = GpuTrainer::new(&ctx, &model(), cfg).unwrap();
    assert!(matches!(
        f32_trainer.set_loss_scale(LossScale::Static(2.0)),
        Err(LstmError::InvalidConfig { .. })
    ));
    assert_eq!(f32_trainer.loss_scale().unwrap(), 1.0);
}

/// Tokens through an embedding, a per-step cross-entropy head with ignored
/// targets, Adam and clipping: the f16 losses follow the f32 ones, each step
/// is one submit, and repeated steps allocate nothing.
#[test]
fn f16_training_with_embedding_follows_f32_in_one_submit() {
    let Some(ctx) = f16_gpu("f16_training_with_embedding_follows_f32_in_one_submit") else {
        return;
    };
    let (t, b, vocab) = (12, 3, 10);
    let lstm = LstmConfig::new(4, 24).num_layers(2).bidirectional(true);
    let m0 = Model::<f32>::new(Some((vocab, 4)), &lstm, vocab, HeadKind::PerStep, 9).unwrap();
    let mut cfg = TrainConfig::new(
        LossKind::CrossEntropy {
            ignore_index: Some(0),
        },
        OptimizerKind::adam(1e-3),
    );
    cfg.clip_grad_norm = Some(0.5);
    let tokens: Vec<usize> = (0..t * b).map(|k| (k * 7 + 3) % vocab).collect();
    let classes: Vec<i64> = (0..t * b).map(|k| ((k * 5 + 1) % vocab) as i64).collect();
    let batch = Batch {
        seq_len: t,
        batch: b,
        inputs: Inputs::Tokens(&tokens),
        targets: Targets::Classes(&classes),
        lengths: None,
    };
    let mut f32_trainer = GpuTrainer::new(&ctx, &m0, cfg.clone()).unwrap();
    let mut f16_trainer = GpuTrainer::with_precision(&ctx, &m0, cfg, Precision::F16).unwrap();
    for step in 0..5 {
        let l32 = f32_trainer.step_with_loss(&batch).unwrap();
        let before = ctx.counters();
        f16_trainer.step(&batch).unwrap();
        let work = ctx.counters() - before;
        let l16 = f16_trainer.loss().unwrap();
        assert!(
            (l16 - l32).abs() <= 2e-2 * l32.abs(),
            "step {step}: loss {l16} vs {l32}"
        );
        assert_eq!(work.submits, 1, "step {step}");
        if step > 0 {
            assert_eq!(
                (work.pipelines, work.bind_groups, work.buffers),
                (0, 0, 0),
                "step {step}: {work:?}"
            );
        }
    }
    assert_eq!(f16_trainer.skipped_steps().unwrap(), 0);
}

/// The variants and the GRU in f16 storage follow f32 on the GPU (which is
/// held to the reference and PyTorch by `gpu_variants` and `gpu_gru`):
/// forward within FORWARD_ATOL, every gradient within GRAD_TOL.
#[test]
fn variants_and_the_gru_in_f16_follow_f32() {
    use wgpu_lstm::reference::OutputGrads;
    use wgpu_lstm::{Activation, LstmInput};
    let Some(ctx) = f16_gpu("variants_and_the_gru_in_f16_follow_f32") else {
        return;
    };
    let configs = [
        LstmConfig::new(5, 24)
            .num_layers(2)
            .bidirectional(true)
            .activation(Activation::Relu)
            .input_dropout(0.2)
            .recurrent_dropout(0.3),
        LstmConfig::new(5, 24).num_layers(2).recurrent_dropout(0.25),
        LstmConfig::gru(5, 24).num_layers(2),
        LstmConfig::gru(5, 24).num_layers(2).bidirectional(true),
    ];
    for (n, cfg) in configs.into_iter().enumerate() {
        let name = format!("case {n}: {cfg:?}");
        let (t, b) = (12, 4);
        let w = LstmWeights::<f32>::init(&cfg, 5 + n as u64, InitOptions::default()).unwrap();
        let input = common::random_tensor::<f32>(&[t, b, 5], 2, 1.0);
        let lengths = [12, 5, 9, 1];
        let x = LstmInput::new(&input).with_lengths(&lengths);
        let mut f32_gpu = GpuLstm::new(&ctx, &w).unwrap();
        let mut f16_gpu = GpuLstm::with_precision(&ctx, &w, Precision::F16).unwrap();
        let (want, got) = (
            f32_gpu.forward_host(&x).unwrap(),
            f16_gpu.forward_host(&x).unwrap(),
        );
        assert_close(
            &format!("{name}/eval"),
            got.output.data(),
            want.output.data(),
            FORWARD_ATOL,
            0.0,
        );
        let want_out = f32_gpu.forward_train_host(&x, 9).unwrap();
        let got_out = f16_gpu.forward_train_host(&x, 9).unwrap();
        assert_close(
            &format!("{name}/train"),
            got_out.output.data(),
            want_out.output.data(),
            FORWARD_ATOL,
            0.0,
        );
        let d_output = common::random_tensor::<f32>(want_out.output.shape(), 3, 1.0);
        let grads = OutputGrads {
            d_output: &d_output,
            d_h_n: None,
            d_c_n: None,
        };
        let want = f32_gpu.backward_host(&grads).unwrap();
        let got = f16_gpu.backward_host(&grads).unwrap();
        assert_grads_close(&name, &got, &want, false, GRAD_TOL);
    }
}
