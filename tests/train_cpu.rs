//! The CPU training reference (`wgpu_lstm::train`): gradients against finite
//! differences, typed errors, and whole training loops against PyTorch from
//! the float64 fixtures of `tools/make_train_fixtures.py` (which documents
//! every tensor in `tests/fixtures/training/`).
//!
//! Tolerances: finite differences within 1e-6 of each tensor's largest
//! magnitude (f64, central differences with h = 1e-6). Training loops match
//! PyTorch's losses and final parameters within 1e-9 in f64 (the math is the
//! same) and 1e-5 in f32 (rounding only).

mod common;

use common::training::{clip_value_from_meta, fixture, setup_from_meta};
use common::{assert_close, assert_close_to_max, random_tensor};
use wgpu_lstm::TensorFile;
use wgpu_lstm::reference::ReferenceTrainer;
use wgpu_lstm::reference::{self, OutputGrads};
use wgpu_lstm::reference::{
    Embedding, Linear, LinearGrads, LrSchedule, Optimizer, OptimizerKind, bce_with_logits_masked,
    clip_grad_norm, clip_grad_value, cross_entropy, last_valid_step, last_valid_step_backward,
    lstm_params_mut, mse, mse_masked,
};
use wgpu_lstm::weights::SafetensorsPrefix;
use wgpu_lstm::{LstmError, LstmInput, LstmWeights, Real, Tensor};

const FD_TOL: f64 = 1e-6;

fn rand_vec(n: usize, seed: u64) -> Vec<f64> {
    random_tensor::<f64>(&[n], seed, 1.0).into_data()
}

/// Central finite differences of `f` at `x`, h = 1e-6.
fn numeric_grad(x: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + h;
            let up = f(&x);
            x[i] = orig - h;
            let down = f(&x);
            x[i] = orig;
            (up - down) / (2.0 * h)
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

// ---------------------------------------------------------------------------
// 1. Finite differences (f64)
// ---------------------------------------------------------------------------

#[test]
fn linear_gradients_match_finite_differences() {
    let (rows, n_in, n_out) = (5, 4, 3);
    let lin = Linear::<f64>::init(n_in, n_out, 7);
    let x = rand_vec(rows * n_in, 1);
    let c = rand_vec(rows * n_out, 2); // loss = Σ y ⊙ c, so dy = c
    let g = lin.backward(&x, rows, &c);
    let loss = |l: &Linear<f64>, x: &[f64]| dot(&l.forward(x, rows), &c);

    let num_w = numeric_grad(&lin.weight, |w| {
        let l = Linear {
            weight: w.to_vec(),
            ..lin.clone()
        };
        loss(&l, &x)
    });
    let num_b = numeric_grad(&lin.bias, |b| {
        let l = Linear {
            bias: b.to_vec(),
            ..lin.clone()
        };
        loss(&l, &x)
    });
    let num_x = numeric_grad(&x, |x| loss(&lin, x));
    assert_close_to_max("linear.weight", &g.weight, &num_w, FD_TOL);
    assert_close_to_max("linear.bias", &g.bias, &num_b, FD_TOL);
    assert_close_to_max("linear.input", &g.input, &num_x, FD_TOL);

    // The forward pass itself, element by element.
    let y = lin.forward(&x, rows);
    for r in 0..rows {
        for o in 0..n_out {
            let want = lin.bias[o]
                + (0..n_in)
                    .map(|i| x[r * n_in + i] * lin.weight[o * n_in + i])
                    .sum::<f64>();
            assert!((y[r * n_out + o] - want).abs() < 1e-14);
        }
    }
}

#[test]
fn linear_init_is_pytorch_bound_and_deterministic() {
    let lin = Linear::<f64>::init(16, 3, 42);
    assert_eq!((lin.weight.len(), lin.bias.len()), (48, 3));
    assert!(lin.weight.iter().chain(&lin.bias).all(|v| v.abs() < 0.25));
    assert_eq!(lin, Linear::<f64>::init(16, 3, 42));
    assert_ne!(lin.weight, Linear::<f64>::init(16, 3, 43).weight);
    // Weight first, then bias, from one stream: the bias continues the draw.
    let longer = Linear::<f64>::init(16, 4, 42);
    assert_eq!(&longer.weight[..48], &lin.weight[..]);
}

#[test]
fn embedding_gradient_matches_finite_differences() {
    let emb = Embedding::<f64>::init(5, 3, 11);
    let tokens = [2, 0, 2, 4, 1, 2]; // repeated ids accumulate; id 3 is unused
    let c = rand_vec(tokens.len() * 3, 3);
    let dw = emb.backward(&tokens, &c);
    let num = numeric_grad(&emb.weight, |w| {
        let e = Embedding {
            weight: w.to_vec(),
            ..emb.clone()
        };
        dot(&e.forward(&tokens).unwrap(), &c)
    });
    assert_close_to_max("embedding.weight", &dw, &num, FD_TOL);
    assert!(dw[9..12].iter().all(|&v| v == 0.0), "unused row 3");
    let y = emb.forward(&tokens).unwrap();
    assert_eq!(&y[3..6], &emb.weight[0..3]);
}

#[test]
fn embedding_init_is_standard_normal() {
    let emb = Embedding::<f64>::init(1000, 20, 5);
    let n = emb.weight.len() as f64;
    let mean = emb.weight.iter().sum::<f64>() / n;
    let var = emb.weight.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    assert!(mean.abs() < 0.03, "mean {mean}");
    assert!((var - 1.0).abs() < 0.05, "variance {var}");
    assert_eq!(emb, Embedding::<f64>::init(1000, 20, 5));
}

#[test]
fn mse_gradient_matches_finite_differences() {
    let (pred, target) = (rand_vec(12, 4), rand_vec(12, 5));
    let (loss, grad) = mse(&pred, &target).unwrap();
    let want = pred
        .iter()
        .zip(&target)
        .map(|(p, t)| (p - t).powi(2))
        .sum::<f64>()
        / 12.0;
    assert!((loss - want).abs() < 1e-15);
    let num = numeric_grad(&pred, |p| mse(p, &target).unwrap().0);
    assert_close_to_max("mse", &grad, &num, FD_TOL);
}

#[test]
fn mse_masked_gradient_matches_finite_differences() {
    let (t, b, f) = (4, 3, 2);
    let lengths = [3, 1, 4];
    let (pred, target) = (rand_vec(t * b * f, 6), rand_vec(t * b * f, 7));
    let (loss, grad) = mse_masked(&pred, &target, t, b, f, Some(&lengths)).unwrap();
    let num = numeric_grad(&pred, |p| {
        mse_masked(p, &target, t, b, f, Some(&lengths)).unwrap().0
    });
    assert_close_to_max("mse_masked", &grad, &num, FD_TOL);

    // The mean over exactly the valid elements; zero gradient at padding.
    let (mut sum, mut count) = (0.0, 0);
    for step in 0..t {
        for (seq, &len) in lengths.iter().enumerate() {
            for k in 0..f {
                let i = (step * b + seq) * f + k;
                if step < len {
                    sum += (pred[i] - target[i]).powi(2);
                    count += 1;
                } else {
                    assert_eq!(grad[i], 0.0, "padded position {i}");
                }
            }
        }
    }
    assert!((loss - sum / count as f64).abs() < 1e-15);

    // Without lengths it is plain MSE, bit for bit.
    let plain = mse(&pred, &target).unwrap();
    assert_eq!(mse_masked(&pred, &target, t, b, f, None).unwrap(), plain);
    let full = [t; 3];
    assert_eq!(
        mse_masked(&pred, &target, t, b, f, Some(&full)).unwrap(),
        plain
    );
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let classes = 4;
    let targets = [1, -100, 3, 0, 2];
    let logits = rand_vec(targets.len() * classes, 8)
        .iter()
        .map(|v| 3.0 * v)
        .collect::<Vec<_>>();
    let (loss, grad) = cross_entropy(&logits, classes, &targets, Some(-100)).unwrap();
    let num = numeric_grad(&logits, |z| {
        cross_entropy(z, classes, &targets, Some(-100)).unwrap().0
    });
    assert_close_to_max("cross_entropy", &grad, &num, FD_TOL);
    assert!(grad[4..8].iter().all(|&g| g == 0.0), "ignored row");

    // The definition, row by row, over the 4 counted rows.
    let mut want = 0.0;
    for (i, &c) in targets.iter().enumerate().filter(|(_, c)| **c >= 0) {
        let z = &logits[i * classes..(i + 1) * classes];
        want += z.iter().map(|v| v.exp()).sum::<f64>().ln() - z[c as usize];
    }
    assert!((loss - want / 4.0).abs() < 1e-14);

    // Every target ignored: 0 and zero gradients (PyTorch gives NaN).
    let (l, g) = cross_entropy(&logits[..8], classes, &[-100, -100], Some(-100)).unwrap();
    assert_eq!(l, 0.0);
    assert!(g.iter().all(|&v| v == 0.0));

    // Huge logits stay finite thanks to the max subtraction.
    let huge = [1000.0, -1000.0, 999.0, 0.0f32];
    let (l, g) = cross_entropy(&huge, 4, &[2], None).unwrap();
    assert!((l as f64 - (1.0 + (1.0f64 + (-1.0f64).exp()).ln())).abs() < 1e-5);
    assert!(g.iter().all(|v| v.is_finite()));
}

#[test]
fn last_valid_step_backward_matches_finite_differences() {
    let (t, b, f) = (4, 3, 2);
    let y = rand_vec(t * b * f, 9);
    let c = rand_vec(b * f, 10);
    for lengths in [Some(&[2usize, 4, 1][..]), None] {
        let last = last_valid_step(&y, t, b, f, lengths);
        let lens = lengths.map_or(vec![t; b], <[usize]>::to_vec);
        for seq in 0..b {
            let at = ((lens[seq] - 1) * b + seq) * f;
            assert_eq!(&last[seq * f..(seq + 1) * f], &y[at..at + f]);
        }
        let dy = last_valid_step_backward(&c, t, b, f, lengths);
        let num = numeric_grad(&y, |y| dot(&last_valid_step(y, t, b, f, lengths), &c));
        assert_close_to_max("last_valid_step", &dy, &num, FD_TOL);
    }
}

#[test]
fn clip_grad_norm_scales_only_above_the_limit() {
    let (mut a, mut b) = (vec![3.0f64, 0.0], vec![4.0f64]);
    let total = clip_grad_norm(&mut [&mut a[..], &mut b[..]], 10.0);
    assert_eq!(total, 5.0);
    assert_eq!((a.clone(), b.clone()), (vec![3.0, 0.0], vec![4.0]));
    let total = clip_grad_norm(&mut [&mut a[..], &mut b[..]], 1.0);
    assert_eq!(total, 5.0);
    let coef = 1.0 / (5.0 + 1e-6);
    assert_eq!((a, b), (vec![3.0 * coef, 0.0], vec![4.0 * coef]));
}

// ---------------------------------------------------------------------------
// 2. Typed errors
// ---------------------------------------------------------------------------

fn invalid_value(err: LstmError) -> (String, String) {
    match err {
        LstmError::InvalidValue { name, reason } => (name, reason),
        other => panic!("expected InvalidValue, got {other:?}"),
    }
}

fn invalid_config_field(err: LstmError) -> &'static str {
    match err {
        LstmError::InvalidConfig { field, .. } => field,
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn class_out_of_range_is_a_typed_error() {
    let logits = vec![0.0f64; 12];
    let (name, reason) = invalid_value(cross_entropy(&logits, 4, &[0, 4, 1], None).unwrap_err());
    assert_eq!(name, "targets");
    assert!(reason.contains("targets[1] = 4"), "{reason}");
    // A negative id that is not the ignore index.
    let (_, reason) =
        invalid_value(cross_entropy(&logits, 4, &[0, 1, -1], Some(-100)).unwrap_err());
    assert!(reason.contains("targets[2] = -1"), "{reason}");
    // Logits that are not [N, classes].
    let err = cross_entropy(&logits, 4, &[0, 1], None).unwrap_err();
    assert!(matches!(err, LstmError::ShapeMismatch { name, .. } if name == "logits"));
}

#[test]
fn mismatched_target_is_a_typed_error() {
    let err = mse(&[1.0f64, 2.0, 3.0], &[1.0, 2.0]).unwrap_err();
    assert!(
        matches!(&err, LstmError::ShapeMismatch { name, expected, got }
            if name == "target" && expected == &[3] && got == &[2]),
        "{err:?}"
    );
    let pred = vec![0.0f64; 2 * 3 * 2];
    let err = mse_masked(&pred, &pred[1..], 2, 3, 2, None).unwrap_err();
    assert!(matches!(err, LstmError::ShapeMismatch { name, .. } if name == "target"));
    let err = mse_masked(&pred, &pred, 2, 3, 2, Some(&[1, 3, 2])).unwrap_err();
    assert_eq!(invalid_value(err).0, "lengths");
}

#[test]
fn token_out_of_range_is_a_typed_error() {
    let emb = Embedding::<f32>::init(5, 2, 0);
    let (name, reason) = invalid_value(emb.forward(&[0, 9, 4]).unwrap_err());
    assert_eq!(name, "tokens");
    assert!(reason.contains("tokens[1] = 9"), "{reason}");
}

#[test]
fn bad_hyper_parameters_are_typed_errors() {
    for lr in [0.0, -0.1, f64::NAN, f64::INFINITY] {
        for kind in [
            OptimizerKind::sgd(lr),
            OptimizerKind::adam(lr),
            OptimizerKind::adamw(lr),
        ] {
            assert_eq!(invalid_config_field(kind.validate().unwrap_err()), "lr");
            let err = Optimizer::<f32>::new(kind, &[3]).unwrap_err();
            assert_eq!(invalid_config_field(err), "lr");
        }
    }
    let cases = [
        (OptimizerKind::sgd(0.1).with_momentum(-0.5), "momentum"),
        (
            OptimizerKind::sgd(0.1).with_weight_decay(-1.0),
            "weight_decay",
        ),
        (OptimizerKind::sgd(0.1).with_nesterov(true), "nesterov"),
        (
            OptimizerKind::adam(0.1).with_weight_decay(f64::NAN),
            "weight_decay",
        ),
        (
            OptimizerKind::Adam {
                lr: 0.1,
                betas: (0.9, 1.0),
                eps: 1e-8,
                weight_decay: 0.0,
            },
            "betas",
        ),
        (
            OptimizerKind::AdamW {
                lr: 0.1,
                betas: (0.9, 0.999),
                eps: 0.0,
                weight_decay: 0.0,
            },
            "eps",
        ),
    ];
    for (kind, field) in cases {
        assert_eq!(invalid_config_field(kind.validate().unwrap_err()), field);
    }
    let schedule = LrSchedule::Cosine {
        t_max: 0,
        eta_min: 0.0,
    };
    assert_eq!(
        invalid_config_field(schedule.validate().unwrap_err()),
        "t_max"
    );
}

#[test]
fn bad_step_arguments_are_typed_errors_and_change_nothing() {
    let mut opt = Optimizer::<f64>::new(OptimizerKind::adam(0.1), &[2, 3]).unwrap();
    let (mut a, mut b) = (vec![1.0; 2], vec![1.0; 3]);
    let (ga, gb) = (vec![0.5; 2], vec![0.5; 3]);
    let err = opt
        .step(&mut [&mut a[..], &mut b[..]], &[&ga[..], &gb[..2]], 0.1)
        .unwrap_err();
    assert!(matches!(err, LstmError::ShapeMismatch { name, .. } if name == "grads[1]"));
    let err = opt
        .step(&mut [&mut a[..]], &[&ga[..], &gb[..]], 0.1)
        .unwrap_err();
    assert!(matches!(err, LstmError::ShapeMismatch { name, .. } if name == "params"));
    for lr in [f64::NAN, -1.0] {
        let err = opt
            .step(&mut [&mut a[..], &mut b[..]], &[&ga[..], &gb[..]], lr)
            .unwrap_err();
        assert_eq!(invalid_value(err).0, "lr");
    }
    assert_eq!((opt.step, a, b), (0, vec![1.0; 2], vec![1.0; 3]));
    assert!(opt.state.iter().all(|s| s.iter().all(|&v| v == 0.0)));
}

// ---------------------------------------------------------------------------
// Optimizer state: an exact restart
// ---------------------------------------------------------------------------

/// `steps` optimizer steps on the quadratic ½‖p − 1‖² (gradient p − 1).
fn quadratic_steps(opt: &mut Optimizer<f64>, params: &mut [Vec<f64>], steps: usize) {
    for _ in 0..steps {
        let grads: Vec<Vec<f64>> = params
            .iter()
            .map(|p| p.iter().map(|v| v - 1.0).collect())
            .collect();
        let grads: Vec<&[f64]> = grads.iter().map(Vec::as_slice).collect();
        let mut refs: Vec<&mut [f64]> = params.iter_mut().map(Vec::as_mut_slice).collect();
        opt.step(&mut refs, &grads, opt.kind.lr()).unwrap();
    }
}

#[test]
fn optimizer_state_round_trips_exactly() {
    for kind in [
        OptimizerKind::sgd(0.1).with_momentum(0.9),
        OptimizerKind::adam(0.05),
        OptimizerKind::adamw(0.05),
    ] {
        let start = vec![rand_vec(4, 20), rand_vec(3, 21)];
        let mut straight = Optimizer::new(kind, &[4, 3]).unwrap();
        let mut p_straight = start.clone();
        quadratic_steps(&mut straight, &mut p_straight, 5);

        let mut first = Optimizer::new(kind, &[4, 3]).unwrap();
        let mut p = start.clone();
        quadratic_steps(&mut first, &mut p, 2);
        let saved = first.state_tensors();
        let names: Vec<&str> = saved.iter().map(|(n, _)| n.as_str()).collect();
        match kind {
            OptimizerKind::Sgd { .. } => {
                assert_eq!(names, ["0.momentum_buffer", "1.momentum_buffer"])
            }
            _ => assert_eq!(
                names,
                ["0.exp_avg", "0.exp_avg_sq", "1.exp_avg", "1.exp_avg_sq"]
            ),
        }
        let mut resumed = Optimizer::new(kind, &[4, 3]).unwrap();
        let mut reversed = saved.clone();
        reversed.reverse(); // any order
        resumed.load_state_tensors(first.step, reversed).unwrap();
        quadratic_steps(&mut resumed, &mut p, 3);
        assert_eq!(p, p_straight, "{kind:?}");
        assert_eq!(resumed, straight, "{kind:?}");

        // Missing, unknown and mis-sized tensors are refused.
        let mut fresh = Optimizer::<f64>::new(kind, &[4, 3]).unwrap();
        let err = fresh
            .load_state_tensors(2, saved[1..].to_vec())
            .unwrap_err();
        assert!(matches!(err, LstmError::MissingTensor { .. }), "{err:?}");
        let mut extra = saved.clone();
        extra.push(("7.exp_avg".into(), vec![0.0; 4]));
        assert_eq!(
            invalid_value(fresh.load_state_tensors(2, extra).unwrap_err()).0,
            "7.exp_avg"
        );
        let mut short = saved.clone();
        short[0].1.pop();
        let err = fresh.load_state_tensors(2, short).unwrap_err();
        assert!(matches!(err, LstmError::ShapeMismatch { .. }), "{err:?}");
        assert_eq!(fresh.step, 0);
    }
}

// ---------------------------------------------------------------------------
// 3. Whole training loops against PyTorch
// ---------------------------------------------------------------------------

/// Runs the fixture's training loop on the CPU and compares every step's
/// loss, gradient norm and learning rate, the final parameters and the
/// optimizer state with PyTorch's.
fn check_training<T: Real>(name: &str, expected_kind: OptimizerKind, tol: f64) {
    let (bytes, meta) = fixture(name);
    let file = TensorFile::from_bytes(bytes.clone()).unwrap();
    let st = file.safetensors();
    let get = |key: &str| file.float::<T>(key).unwrap();
    let (kind, schedule, clip) = setup_from_meta(&meta);
    let clip_value = clip_value_from_meta(&meta);
    // The constructors' defaults are PyTorch's.
    assert_eq!(kind, expected_kind, "{name}: metadata vs constructor");
    let steps: usize = meta["steps"].parse().unwrap();

    let mut lstm =
        LstmWeights::<T>::from_safetensors(&st, SafetensorsPrefix::Exact("init.lstm.")).unwrap();
    let head_w = get("init.head.weight");
    let (n_out, n_in) = (head_w.shape()[0], head_w.shape()[1]);
    let mut head = Linear {
        in_features: n_in,
        out_features: n_out,
        weight: head_w.into_data(),
        bias: get("init.head.bias").into_data(),
    };
    let input = get("input");
    let target = get("target").into_data();
    let rows = input.shape()[0] * input.shape()[1];

    let mut sizes: Vec<usize> = lstm_params_mut(&mut lstm).iter().map(|p| p.len()).collect();
    sizes.extend([head.weight.len(), head.bias.len()]);
    let mut opt = Optimizer::<T>::new(kind, &sizes).unwrap();
    let (mut losses, mut norms, mut lrs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..steps {
        let (out, cache) = reference::forward_train(&lstm, &LstmInput::new(&input), 0).unwrap();
        let y = head.forward(out.output.data(), rows);
        let (loss, d_y) = mse(&y, &target).unwrap();
        let LinearGrads {
            weight: mut d_head_w,
            bias: mut d_head_b,
            input: d_hidden,
        } = head.backward(out.output.data(), rows, &d_y);
        let d_output = Tensor::new(out.output.shape().to_vec(), d_hidden).unwrap();
        let grads = reference::backward(
            &lstm,
            &cache,
            &OutputGrads {
                d_output: &d_output,
                d_h_n: None,
                d_c_n: None,
            },
        )
        .unwrap();
        let mut d_lstm = grads.weights;
        let mut g: Vec<&mut [T]> = lstm_params_mut(&mut d_lstm);
        g.extend([&mut d_head_w[..], &mut d_head_b[..]]);
        let norm = clip_grad_norm(&mut g, clip.unwrap_or(f64::INFINITY));
        if let Some(v) = clip_value {
            clip_grad_value(&mut g, v);
        }
        let lr = schedule.lr(kind.lr(), opt.step);
        let g: Vec<&[T]> = g.into_iter().map(|s| &*s).collect();
        let mut params = lstm_params_mut(&mut lstm);
        params.extend([&mut head.weight[..], &mut head.bias[..]]);
        opt.step(&mut params, &g, lr).unwrap();
        losses.push(loss);
        norms.push(T::from_f64(norm));
        lrs.push(lr);
    }
    assert_eq!(opt.step, steps as u64);

    let want = |key: &str| get(key).into_data();
    assert_close(&format!("{name}: loss"), &losses, &want("loss"), tol, tol);
    assert_close(
        &format!("{name}: grad_norm"),
        &norms,
        &want("grad_norm"),
        tol,
        tol,
    );
    let want_lr = file.float::<f64>("lr").unwrap().into_data();
    assert_close(&format!("{name}: lr"), &lrs, &want_lr, 1e-15, 1e-14);
    for (param, _, values) in lstm.named_params() {
        let key = format!("final.lstm.{param}");
        assert_close(&format!("{name}: {key}"), values, &want(&key), tol, tol);
    }
    assert_close(
        &format!("{name}: head.weight"),
        &head.weight,
        &want("final.head.weight"),
        tol,
        tol,
    );
    assert_close(
        &format!("{name}: head.bias"),
        &head.bias,
        &want("final.head.bias"),
        tol,
        tol,
    );
    // The state tensors are PyTorch's optimizer.state_dict()["state"].
    let state = opt.state_tensors();
    assert_eq!(state.len(), kind.state_names().len() * sizes.len());
    for (key, values) in state {
        let key = format!("final.optim.{key}");
        assert_close(&format!("{name}: {key}"), &values, &want(&key), tol, tol);
    }
}

fn training_cases() -> [(&'static str, OptimizerKind); 5] {
    [
        ("adam", OptimizerKind::adam(0.01)),
        (
            "sgd_momentum",
            OptimizerKind::sgd(0.1)
                .with_momentum(0.9)
                .with_weight_decay(1e-3),
        ),
        (
            "adamw_clipped",
            OptimizerKind::adamw(0.01).with_weight_decay(0.1),
        ),
        (
            "sgd_nesterov_cosine",
            OptimizerKind::sgd(0.2)
                .with_momentum(0.8)
                .with_nesterov(true),
        ),
        ("adam_clip_value", OptimizerKind::adam(0.01)),
    ]
}

#[test]
fn training_matches_pytorch_f64() {
    for (name, kind) in training_cases() {
        check_training::<f64>(name, kind, 1e-9);
    }
}

#[test]
fn training_matches_pytorch_f32() {
    for (name, kind) in training_cases() {
        check_training::<f32>(name, kind, 1e-5);
    }
}

#[test]
fn cross_entropy_matches_pytorch() {
    let (bytes, meta) = fixture("cross_entropy");
    let file = TensorFile::from_bytes(bytes).unwrap();
    let classes: usize = meta["classes"].parse().unwrap();
    let ignore: i64 = meta["ignore_index"].parse().unwrap();
    let targets = file.integers("targets").unwrap();
    assert!(targets.contains(&ignore), "the fixture ignores a row");
    let want_loss = file.float::<f64>("loss").unwrap().into_data();
    let want_grad = file.float::<f64>("grad").unwrap().into_data();

    let logits = file.float::<f64>("logits").unwrap().into_data();
    let (loss, grad) = cross_entropy(&logits, classes, &targets, Some(ignore)).unwrap();
    assert_close("cross_entropy f64 loss", &[loss], &want_loss, 1e-12, 1e-12);
    assert_close("cross_entropy f64 grad", &grad, &want_grad, 1e-12, 1e-12);

    let logits = file.float::<f32>("logits").unwrap().into_data();
    let (loss, grad) = cross_entropy(&logits, classes, &targets, Some(ignore)).unwrap();
    assert_close("cross_entropy f32 loss", &[loss], &want_loss, 1e-5, 1e-5);
    assert_close("cross_entropy f32 grad", &grad, &want_grad, 1e-6, 1e-5);
}

#[test]
fn bce_with_logits_matches_pytorch() {
    let (bytes, _) = fixture("bce_with_logits");
    let file = TensorFile::from_bytes(bytes).unwrap();
    let want_loss = file.float::<f64>("loss").unwrap().into_data();
    let want_grad = file.float::<f64>("grad").unwrap().into_data();
    let shape = file.float::<f64>("logits").unwrap().shape().to_vec();
    let (rows, cols) = (shape[0], shape[1]);
    let targets = file.float::<f64>("targets").unwrap().into_data();

    let logits = file.float::<f64>("logits").unwrap().into_data();
    assert!(logits.iter().any(|z| z.abs() > 30.0), "a saturated row");
    let (loss, grad) = bce_with_logits_masked(&logits, &targets, 1, rows, cols, None).unwrap();
    assert_close("bce f64 loss", &[loss], &want_loss, 1e-12, 1e-12);
    assert_close("bce f64 grad", &grad, &want_grad, 1e-12, 1e-12);

    let logits = file.float::<f32>("logits").unwrap().into_data();
    let targets = file.float::<f32>("targets").unwrap().into_data();
    let (loss, grad) = bce_with_logits_masked(&logits, &targets, 1, rows, cols, None).unwrap();
    assert_close("bce f32 loss", &[loss], &want_loss, 1e-5, 1e-5);
    assert_close("bce f32 grad", &grad, &want_grad, 1e-6, 1e-5);
}

/// Masked by lengths, against finite differences, and its definition: the
/// binary cross-entropy of σ(z) over the valid elements only.
#[test]
fn bce_with_logits_masked_gradient_matches_finite_differences() {
    let (t, b, f) = (3, 2, 2);
    let lengths = [3, 1];
    let logits: Vec<f64> = rand_vec(t * b * f, 21).iter().map(|v| 4.0 * v).collect();
    let targets: Vec<f64> = rand_vec(t * b * f, 22)
        .iter()
        .map(|v| (v + 1.0) / 2.0)
        .collect();
    let loss_at = |z: &[f64]| {
        bce_with_logits_masked(z, &targets, t, b, f, Some(&lengths))
            .unwrap()
            .0
    };
    let (loss, grad) = bce_with_logits_masked(&logits, &targets, t, b, f, Some(&lengths)).unwrap();
    assert_close_to_max("bce masked", &grad, &numeric_grad(&logits, loss_at), FD_TOL);
    let mut want = 0.0;
    let mut n = 0;
    for step in 0..t {
        for (row, &len) in lengths.iter().enumerate().filter(|&(_, &l)| step < l) {
            let _ = len;
            for k in 0..f {
                let i = (step * b + row) * f + k;
                let p = 1.0 / (1.0 + (-logits[i]).exp());
                want -= targets[i] * p.ln() + (1.0 - targets[i]) * (1.0 - p).ln();
                n += 1;
            }
        }
    }
    assert!(
        (loss - want / n as f64).abs() < 1e-12,
        "{loss} vs {}",
        want / n as f64
    );
    // Padded steps of sequence 1 (t = 1, 2) get no gradient.
    for step in 1..t {
        let at = (step * b + 1) * f;
        assert!(grad[at..at + f].iter().all(|&g| g == 0.0));
    }
    // A target outside [0, 1] is a typed error.
    let mut bad = targets.clone();
    bad[3] = 1.5;
    assert!(matches!(
        bce_with_logits_masked(&logits, &bad, t, b, f, None),
        Err(LstmError::InvalidValue { .. })
    ));
}

// ---------------------------------------------------------------------------
// 4. Learning-rate schedules against PyTorch
// ---------------------------------------------------------------------------

#[test]
fn lr_schedules_match_pytorch() {
    let (bytes, meta) = fixture("schedules");
    let file = TensorFile::from_bytes(bytes).unwrap();
    let num = |k: &str| meta[k].parse::<f64>().unwrap();
    let base = num("base_lr");
    let step_lr = LrSchedule::Step {
        step_size: meta["step_lr_step_size"].parse().unwrap(),
        gamma: num("step_lr_gamma"),
    };
    let cosine = LrSchedule::Cosine {
        t_max: meta["cosine_t_max"].parse().unwrap(),
        eta_min: num("cosine_eta_min"),
    };
    for (key, schedule) in [("step_lr", step_lr), ("cosine", cosine)] {
        schedule.validate().unwrap();
        let want = file.float::<f64>(key).unwrap().into_data();
        let got: Vec<f64> = (0..want.len() as u64)
            .map(|s| schedule.lr(base, s))
            .collect();
        assert_close(key, &got, &want, 1e-15, 1e-14);
    }
    // The fixture's cosine runs past T_max = 4 and rises again.
    assert!(cosine.lr(base, 6) > cosine.lr(base, 4));
    assert_eq!(LrSchedule::Constant.lr(0.3, 1000), 0.3);
}

/// A projection LSTM (`proj_size` > 0) with a last-step head, trained by the
/// CPU trainer: one SGD step with learning rate 1 moves every parameter by
/// minus its gradient, which must match central differences of the loss.
#[test]
fn projection_model_step_matches_finite_differences() {
    use wgpu_lstm::model::{Batch, HeadKind, Inputs, LossKind, Model, Targets, TrainConfig};
    let cfg = wgpu_lstm::LstmConfig::new(3, 5)
        .num_layers(2)
        .bidirectional(true)
        .proj_size(2);
    let (t, b) = (4, 3);
    let model = Model::<f64>::new(None, &cfg, 2, HeadKind::LastStep, 9).unwrap();
    let x: Vec<f32> = rand_vec(t * b * 3, 1).iter().map(|&v| v as f32).collect();
    let y: Vec<f32> = rand_vec(b * 2, 2).iter().map(|&v| v as f32).collect();
    let lengths = [4, 2, 3];
    let batch = Batch {
        seq_len: t,
        batch: b,
        inputs: Inputs::Features(&x),
        targets: Targets::Values(&y),
        lengths: Some(&lengths),
    };
    let config = TrainConfig::new(LossKind::Mse, OptimizerKind::sgd(1.0));
    let loss_at = |m: &Model<f64>| {
        ReferenceTrainer::new(m.clone(), config.clone())
            .unwrap()
            .evaluate(&batch)
            .unwrap()
    };
    let mut trainer = ReferenceTrainer::new(model.clone(), config.clone()).unwrap();
    let loss = trainer.step(&batch).unwrap();
    assert!((loss - loss_at(&model)).abs() < 1e-12);
    let before = model.clone();
    let names: Vec<String> = before
        .named_params()
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    assert!(
        names.iter().any(|n| n == "lstm.weight_hr_l1_reverse"),
        "{names:?}"
    );
    for (k, name) in names.iter().enumerate() {
        let n = before.named_params()[k].2.len();
        let fd = numeric_grad(&vec![0.0; n], |delta| {
            let mut m = before.clone();
            m.params_mut()[k]
                .iter_mut()
                .zip(delta)
                .for_each(|(p, d)| *p += d);
            loss_at(&m)
        });
        let step: Vec<f64> = before.named_params()[k]
            .2
            .iter()
            .zip(trainer.model().named_params()[k].2)
            .map(|(a, b)| a - b)
            .collect();
        assert_close_to_max(name, &step, &fd, FD_TOL);
    }
}
