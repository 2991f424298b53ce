//! The analytic backward pass against central finite differences, in f64,
//! for the LSTM and the GRU.
//!
//! The loss is a fixed random linear function of everything the forward pass
//! returns: L = Σ output⊙A + Σ h_n⊙B + Σ c_n⊙C (a GRU's c_n is empty). Every
//! parameter element and every input, h_0 and c_0 element is perturbed by ±ε
//! and the change in L compared with the backward pass's gradient.

mod common;

use common::{assert_close_to_max, random_tensor};
use wgpu_lstm::reference::{self, OutputGrads};
use wgpu_lstm::{Cell, InitOptions, LstmConfig, LstmInput, LstmWeights, Tensor};

const EPS: f64 = 1e-6;
const TOL: f64 = 1e-6;
const DROPOUT_SEED: u64 = 77;

struct Case {
    config: LstmConfig,
    seq_len: usize,
    batch: usize,
    lengths: Option<Vec<usize>>,
    with_state: bool,
}

fn loss(
    w: &LstmWeights<f64>,
    x: &LstmInput<'_, f64>,
    coef: &(Tensor<f64>, Tensor<f64>, Tensor<f64>),
) -> f64 {
    // forward_train, so dropout (when configured) applies with a fixed mask.
    let (out, _) = reference::forward_train(w, x, DROPOUT_SEED).unwrap();
    let dot = |a: &Tensor<f64>, b: &Tensor<f64>| -> f64 {
        a.data().iter().zip(b.data()).map(|(x, y)| x * y).sum()
    };
    dot(&out.output, &coef.0) + dot(&out.h_n, &coef.1) + dot(&out.c_n, &coef.2)
}

/// Central difference of `loss` w.r.t. every element that `get` exposes.
fn numeric(mut perturb: impl FnMut(usize, f64) -> f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (perturb(i, EPS) - perturb(i, -EPS)) / (2.0 * EPS))
        .collect()
}

fn check(case: Case) {
    let cfg = &case.config;
    let (t, b) = (case.seq_len, case.batch);
    let w = LstmWeights::<f64>::init(cfg, 5, InitOptions::default()).unwrap();
    let in_shape = if cfg.batch_first {
        [b, t, cfg.input_size]
    } else {
        [t, b, cfg.input_size]
    };
    let input = random_tensor::<f64>(&in_shape, 11, 1.0);
    let states = cfg.num_layers * cfg.num_directions();
    let (h_shape, c_shape) = (
        [states, b, cfg.hidden_out()],
        [states, b, cfg.cell_state_size()],
    );
    let h0 = random_tensor::<f64>(&h_shape, 12, 0.5);
    let c0 = random_tensor::<f64>(&c_shape, 13, 0.5);
    let out_shape = if cfg.batch_first {
        [b, t, cfg.output_size()]
    } else {
        [t, b, cfg.output_size()]
    };
    let coef = (
        random_tensor::<f64>(&out_shape, 21, 1.0),
        random_tensor::<f64>(&h_shape, 22, 1.0),
        random_tensor::<f64>(&c_shape, 23, 1.0),
    );

    let x = make_input(&case, &input, &h0, &c0);
    let (_, cache) = reference::forward_train(&w, &x, DROPOUT_SEED).unwrap();
    let grads = reference::backward(
        &w,
        &cache,
        &OutputGrads {
            d_output: &coef.0,
            d_h_n: Some(&coef.1),
            d_c_n: Some(&coef.2),
        },
    )
    .unwrap();
    same_without_input(&w, &cache, &coef);

    // Every parameter.
    for (name, _, analytic) in grads.weights.named_params() {
        let n = analytic.len();
        let fd = numeric(
            |i, delta| {
                let mut wp = w.clone();
                let (l, d, kind) = locate(&name);
                let p = wp.layer_mut(l, d).get_mut(kind).unwrap();
                p[i] += delta;
                loss(&wp, &x, &coef)
            },
            n,
        );
        assert_close_to_max(&name, analytic, &fd, TOL);
    }

    // The input, and the initial state when given: perturb one tensor at a time.
    let perturbed = |which: usize, i: usize, delta: f64| {
        let mut t = [input.clone(), h0.clone(), c0.clone()];
        t[which].data_mut()[i] += delta;
        loss(&w, &make_input(&case, &t[0], &t[1], &t[2]), &coef)
    };
    let mut checks = vec![(0, "d_input", grads.d_input.data())];
    if case.with_state {
        checks.push((1, "d_h_0", grads.d_h_0.data()));
        checks.push((2, "d_c_0", grads.d_c_0.data()));
    }
    for (which, name, analytic) in checks {
        let fd = numeric(|i, delta| perturbed(which, i, delta), analytic.len());
        assert_close_to_max(name, analytic, &fd, TOL);
    }
}

/// `backward_params` skips only the input's gradient: every other gradient is
/// exactly `backward`'s.
fn same_without_input<T: wgpu_lstm::Real + std::fmt::Debug>(
    w: &LstmWeights<T>,
    cache: &reference::ForwardCache<T>,
    coef: &(Tensor<T>, Tensor<T>, Tensor<T>),
) {
    let upstream = OutputGrads {
        d_output: &coef.0,
        d_h_n: Some(&coef.1),
        d_c_n: Some(&coef.2),
    };
    let full = reference::backward(w, cache, &upstream).unwrap();
    let params = reference::backward_params(w, cache, &upstream).unwrap();
    for ((name, _, a), (_, _, b)) in full
        .weights
        .named_params()
        .into_iter()
        .zip(params.weights.named_params())
    {
        assert!(a == b, "{name} differs without the input gradient");
    }
    assert!(full.d_h_0.data() == params.d_h_0.data());
    assert!(full.d_c_0.data() == params.d_c_0.data());
}

/// The same in f32, which runs the fused kernels, at sizes that use threads.
#[test]
fn param_gradients_without_input_f32() {
    let cfg = LstmConfig::new(24, 40).num_layers(2).bidirectional(true);
    let (t, b) = (9, 13);
    let w = LstmWeights::<f32>::init(&cfg, 5, InitOptions::default()).unwrap();
    let input = random_tensor::<f32>(&[t, b, 24], 11, 1.0);
    let lengths: Vec<usize> = (0..b).map(|k| 1 + (k * 5) % t).collect();
    let x = LstmInput::new(&input).with_lengths(&lengths);
    let (_, cache) = reference::forward_train(&w, &x, DROPOUT_SEED).unwrap();
    let state_shape = [4, b, 40];
    let coef = (
        random_tensor::<f32>(&[t, b, 80], 21, 1.0),
        random_tensor::<f32>(&state_shape, 22, 1.0),
        random_tensor::<f32>(&state_shape, 23, 1.0),
    );
    same_without_input(&w, &cache, &coef);
}

fn make_input<'a>(
    case: &'a Case,
    input: &'a Tensor<f64>,
    h0: &'a Tensor<f64>,
    c0: &'a Tensor<f64>,
) -> LstmInput<'a, f64> {
    let mut x = LstmInput::new(input);
    if case.with_state {
        x = match case.config.cell {
            Cell::Lstm => x.with_state(h0, c0),
            Cell::Gru => x.with_h_0(h0),
        };
    }
    if let Some(l) = &case.lengths {
        x = x.with_lengths(l);
    }
    x
}

/// (layer, direction, kind) from a PyTorch parameter name.
fn locate(name: &str) -> (usize, usize, wgpu_lstm::ParamKind) {
    let (rest, dir) = match name.strip_suffix("_reverse") {
        Some(r) => (r, 1),
        None => (name, 0),
    };
    let (stem, layer) = rest.rsplit_once("_l").unwrap();
    let kind = wgpu_lstm::ParamKind::ALL
        .into_iter()
        .find(|k| k.stem() == stem)
        .unwrap();
    (layer.parse().unwrap(), dir, kind)
}

#[test]
fn single_layer() {
    check(Case {
        config: LstmConfig::new(3, 4),
        seq_len: 4,
        batch: 2,
        lengths: None,
        with_state: true,
    });
}

#[test]
fn two_layers_bidirectional() {
    check(Case {
        config: LstmConfig::new(3, 4).num_layers(2).bidirectional(true),
        seq_len: 4,
        batch: 2,
        lengths: None,
        with_state: true,
    });
}

#[test]
fn variable_lengths_bidirectional_two_layers() {
    check(Case {
        config: LstmConfig::new(2, 3).num_layers(2).bidirectional(true),
        seq_len: 5,
        batch: 3,
        lengths: Some(vec![2, 5, 3]),
        with_state: true,
    });
}

#[test]
fn projection_single_layer() {
    check(Case {
        config: LstmConfig::new(3, 5).proj_size(2),
        seq_len: 4,
        batch: 2,
        lengths: None,
        with_state: true,
    });
}

#[test]
fn projection_two_layers_bidirectional_with_lengths() {
    check(Case {
        config: LstmConfig::new(2, 4)
            .num_layers(2)
            .bidirectional(true)
            .proj_size(3),
        seq_len: 5,
        batch: 3,
        lengths: Some(vec![2, 5, 3]),
        with_state: true,
    });
}

#[test]
fn batch_first_without_bias() {
    check(Case {
        config: LstmConfig::new(3, 5).bias(false).batch_first(true),
        seq_len: 3,
        batch: 2,
        lengths: Some(vec![3, 1]),
        with_state: false,
    });
}

#[test]
fn dropout_between_layers() {
    check(Case {
        config: LstmConfig::new(3, 4)
            .num_layers(3)
            .bidirectional(true)
            .dropout(0.4),
        seq_len: 3,
        batch: 2,
        lengths: Some(vec![3, 2]),
        with_state: false,
    });
}

#[test]
fn relu_activation_bidirectional_with_lengths() {
    check(Case {
        config: LstmConfig::new(3, 5)
            .num_layers(2)
            .bidirectional(true)
            .activation(wgpu_lstm::Activation::Relu),
        seq_len: 4,
        batch: 3,
        lengths: Some(vec![4, 2, 3]),
        with_state: true,
    });
}

#[test]
fn input_and_recurrent_dropout_two_layers_bidirectional() {
    check(Case {
        config: LstmConfig::new(3, 5)
            .num_layers(2)
            .bidirectional(true)
            .dropout(0.3)
            .input_dropout(0.25)
            .recurrent_dropout(0.4),
        seq_len: 4,
        batch: 3,
        lengths: Some(vec![3, 4, 1]),
        with_state: true,
    });
}

#[test]
fn recurrent_dropout_with_projection_and_relu() {
    check(Case {
        config: LstmConfig::new(3, 5)
            .proj_size(3)
            .recurrent_dropout(0.3)
            .input_dropout(0.2)
            .activation(wgpu_lstm::Activation::Relu),
        seq_len: 4,
        batch: 2,
        lengths: None,
        with_state: true,
    });
}

#[test]
fn gru_single_layer() {
    check(Case {
        config: LstmConfig::gru(3, 4),
        seq_len: 4,
        batch: 2,
        lengths: None,
        with_state: true,
    });
}

#[test]
fn gru_two_layers_bidirectional_with_lengths_and_state() {
    check(Case {
        config: LstmConfig::gru(2, 3).num_layers(2).bidirectional(true),
        seq_len: 5,
        batch: 3,
        lengths: Some(vec![2, 5, 3]),
        with_state: true,
    });
}

#[test]
fn gru_batch_first_without_bias() {
    check(Case {
        config: LstmConfig::gru(3, 5).bias(false).batch_first(true),
        seq_len: 3,
        batch: 2,
        lengths: Some(vec![3, 1]),
        with_state: true,
    });
}

#[test]
fn gru_dropout_between_layers() {
    check(Case {
        config: LstmConfig::gru(3, 4)
            .num_layers(3)
            .bidirectional(true)
            .dropout(0.4),
        seq_len: 3,
        batch: 2,
        lengths: Some(vec![3, 2]),
        with_state: false,
    });
}

#[test]
fn layer_norm_single_layer() {
    check(Case {
        config: LstmConfig::new(3, 5).layer_norm(true),
        seq_len: 4,
        batch: 2,
        lengths: None,
        with_state: true,
    });
}

#[test]
fn layer_norm_bidirectional_two_layers_with_dropouts_and_lengths() {
    check(Case {
        config: LstmConfig::new(3, 4)
            .num_layers(2)
            .bidirectional(true)
            .layer_norm(true)
            .dropout(0.3)
            .input_dropout(0.2)
            .recurrent_dropout(0.3)
            .activation(wgpu_lstm::Activation::Relu),
        seq_len: 4,
        batch: 3,
        lengths: Some(vec![4, 1, 3]),
        with_state: true,
    });
}

#[test]
fn gru_with_input_and_recurrent_dropout() {
    check(Case {
        config: LstmConfig::gru(3, 4)
            .num_layers(2)
            .bidirectional(true)
            .dropout(0.25)
            .input_dropout(0.3)
            .recurrent_dropout(0.35),
        seq_len: 4,
        batch: 3,
        lengths: Some(vec![2, 4, 3]),
        with_state: true,
    });
}
