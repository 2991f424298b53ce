//! Bad forward inputs get typed errors; edge shapes and extreme values work.

mod common;

use common::random_tensor;
use wgpu_lstm::reference::{self, OutputGrads};
use wgpu_lstm::{InitOptions, LstmConfig, LstmError, LstmInput, LstmWeights, Tensor};

fn weights(cfg: LstmConfig) -> LstmWeights<f32> {
    LstmWeights::init(&cfg, 3, InitOptions::default()).unwrap()
}

fn expect_shape(err: LstmError, tensor: &str) {
    assert!(
        matches!(&err, LstmError::ShapeMismatch { name, .. } if name == tensor),
        "expected a shape error for {tensor}, got {err}"
    );
}

fn expect_value(err: LstmError, tensor: &str) {
    assert!(
        matches!(&err, LstmError::InvalidValue { name, .. } if name == tensor),
        "expected an invalid value in {tensor}, got {err}"
    );
}

#[test]
fn input_feature_size_must_match() {
    let w = weights(LstmConfig::new(4, 5));
    let x = random_tensor::<f32>(&[3, 2, 6], 1, 1.0);
    let err = reference::forward(&w, &LstmInput::new(&x)).unwrap_err();
    expect_shape(err, "input");
    let rank2 = random_tensor::<f32>(&[3, 4], 1, 1.0);
    expect_value(
        reference::forward(&w, &LstmInput::new(&rank2)).unwrap_err(),
        "input",
    );
}

#[test]
fn initial_state_shape_must_match() {
    let w = weights(LstmConfig::new(4, 5).num_layers(2));
    let x = random_tensor::<f32>(&[3, 2, 4], 1, 1.0);
    let good = Tensor::zeros([2, 2, 5]);
    let bad = Tensor::zeros([1, 2, 5]);
    let err = reference::forward(&w, &LstmInput::new(&x).with_state(&bad, &good)).unwrap_err();
    expect_shape(err, "h_0");
    let err = reference::forward(&w, &LstmInput::new(&x).with_state(&good, &bad)).unwrap_err();
    expect_shape(err, "c_0");
}

#[test]
fn lengths_must_be_in_range_and_one_per_sequence() {
    let w = weights(LstmConfig::new(4, 5));
    let x = random_tensor::<f32>(&[3, 2, 4], 1, 1.0);
    for bad in [&[0usize, 3][..], &[3, 4]] {
        let err = reference::forward(&w, &LstmInput::new(&x).with_lengths(bad)).unwrap_err();
        expect_value(err, "lengths");
    }
    let err = reference::forward(&w, &LstmInput::new(&x).with_lengths(&[3])).unwrap_err();
    expect_shape(err, "lengths");
}

#[test]
fn nan_input_is_rejected() {
    let w = weights(LstmConfig::new(4, 5));
    let mut x = random_tensor::<f32>(&[3, 2, 4], 1, 1.0);
    x.data_mut()[5] = f32::NAN;
    expect_value(
        reference::forward(&w, &LstmInput::new(&x)).unwrap_err(),
        "input",
    );
    let x = random_tensor::<f32>(&[3, 2, 4], 1, 1.0);
    let mut h = Tensor::zeros([1, 2, 5]);
    h.data_mut()[0] = f32::INFINITY;
    let c = Tensor::zeros([1, 2, 5]);
    expect_value(
        reference::forward(&w, &LstmInput::new(&x).with_state(&h, &c)).unwrap_err(),
        "h_0",
    );
}

#[test]
fn upstream_gradient_shapes_must_match() {
    let w = weights(LstmConfig::new(4, 5));
    let x = random_tensor::<f32>(&[3, 2, 4], 1, 1.0);
    let (_, cache) = reference::forward_train(&w, &LstmInput::new(&x), 0).unwrap();
    let wrong = Tensor::zeros([3, 2, 4]);
    let err = reference::backward(
        &w,
        &cache,
        &OutputGrads {
            d_output: &wrong,
            d_h_n: None,
            d_c_n: None,
        },
    );
    expect_shape(err.unwrap_err(), "d_output");
    let d_out = Tensor::zeros([3, 2, 5]);
    let grads = OutputGrads {
        d_output: &d_out,
        d_h_n: Some(&wrong),
        d_c_n: None,
    };
    expect_shape(
        reference::backward(&w, &cache, &grads).unwrap_err(),
        "d_h_n",
    );
}

#[test]
fn saturating_inputs_stay_finite_and_saturate_correctly() {
    // Pre-activations of ±1e4 must give exact 0/1 gates and ±1 tanh, not NaN.
    let w = weights(LstmConfig::new(3, 4).num_layers(2).bidirectional(true));
    let mut x = random_tensor::<f32>(&[5, 2, 3], 9, 1.0);
    x.data_mut().iter_mut().for_each(|v| *v = v.signum() * 1e4);
    let (out, cache) = reference::forward_train(&w, &LstmInput::new(&x), 0).unwrap();
    for t in [&out.output, &out.h_n, &out.c_n] {
        assert!(t.data().iter().all(|v| v.is_finite()));
    }
    assert!(out.output.data().iter().all(|v| v.abs() <= 1.0));
    let d_out = random_tensor::<f32>(&[5, 2, 8], 2, 1.0);
    let g = reference::backward(
        &w,
        &cache,
        &OutputGrads {
            d_output: &d_out,
            d_h_n: None,
            d_c_n: None,
        },
    );
    let g = g.unwrap();
    for (name, _, v) in g.weights.named_params() {
        assert!(v.iter().all(|v| v.is_finite()), "{name}");
    }
}

#[test]
fn long_sequence_stays_finite_and_bounded() {
    let w = weights(LstmConfig::new(2, 3));
    let x = random_tensor::<f32>(&[2000, 1, 2], 4, 3.0);
    let out = reference::forward(&w, &LstmInput::new(&x)).unwrap();
    assert!(
        out.output
            .data()
            .iter()
            .all(|v| v.is_finite() && v.abs() <= 1.0)
    );
    // |c_t| grows at most by 1 per step (|i·g| ≤ 1, f ≤ 1).
    assert!(out.c_n.data().iter().all(|v| v.abs() <= 2000.0));
}

#[test]
fn padded_steps_output_zero_and_final_state_is_at_the_last_valid_step() {
    let w = weights(LstmConfig::new(3, 4).bidirectional(true));
    let x = random_tensor::<f32>(&[6, 2, 3], 5, 1.0);
    let out = reference::forward(&w, &LstmInput::new(&x).with_lengths(&[6, 2])).unwrap();
    // Sequence 1 alone, truncated to its 2 steps, must give the same states.
    let x1: Vec<f32> = (0..2)
        .flat_map(|t| x.data()[(t * 2 + 1) * 3..(t * 2 + 2) * 3].to_vec())
        .collect();
    let x1 = Tensor::new([2, 1, 3], x1).unwrap();
    let alone = reference::forward(&w, &LstmInput::new(&x1)).unwrap();
    for d in 0..2 {
        // Equal up to rounding: a batch of 1 may take another GEMM kernel.
        let (batched, single) = (
            &out.h_n.data()[(d * 2 + 1) * 4..(d * 2 + 2) * 4],
            &alone.h_n.data()[d * 4..(d + 1) * 4],
        );
        common::assert_close("h_n", batched, single, 1e-6, 0.0);
    }
    for t in 2..6 {
        assert!(
            out.output.data()[(t * 2 + 1) * 8..(t * 2 + 2) * 8]
                .iter()
                .all(|&v| v == 0.0)
        );
    }
}

#[test]
fn initial_states_come_in_pairs() {
    let w = weights(LstmConfig::new(4, 5));
    let x = random_tensor::<f32>(&[3, 2, 4], 1, 1.0);
    let h = Tensor::zeros([1, 2, 5]);
    let mut only_h = LstmInput::new(&x);
    only_h.h_0 = Some(&h);
    expect_value(reference::forward(&w, &only_h).unwrap_err(), "c_0");
    let mut only_c = LstmInput::new(&x);
    only_c.c_0 = Some(&h);
    expect_value(reference::forward(&w, &only_c).unwrap_err(), "h_0");
}

#[test]
fn batch_chunks_on_several_threads_equal_one_thread() {
    // The CPU path runs batch chunks of small problems in parallel; the result
    // must not depend on how many threads (and so chunks) there are.
    let cfg = LstmConfig::new(3, 6)
        .num_layers(2)
        .bidirectional(true)
        .dropout(0.3);
    let w = LstmWeights::<f64>::init(&cfg, 9, InitOptions::default()).unwrap();
    let x = random_tensor::<f64>(&[5, 5, 3], 1, 1.0);
    let lengths = [5, 2, 4, 1, 5];
    let dy = random_tensor::<f64>(&[5, 5, 12], 2, 1.0);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let input = LstmInput::new(&x).with_lengths(&lengths);
            let (out, cache) = reference::forward_train(&w, &input, 4).unwrap();
            let g = reference::backward(
                &w,
                &cache,
                &OutputGrads {
                    d_output: &dy,
                    d_h_n: None,
                    d_c_n: None,
                },
            )
            .unwrap();
            (out, g)
        })
    };
    let (one, g1) = run(1);
    for threads in [2, 3, 5] {
        let (many, g) = run(threads);
        common::assert_close("output", many.output.data(), one.output.data(), 1e-12, 0.0);
        common::assert_close("c_n", many.c_n.data(), one.c_n.data(), 1e-12, 0.0);
        common::assert_close_to_max("d_input", g.d_input.data(), g1.d_input.data(), 1e-12);
        common::assert_close_to_max("d_h_0", g.d_h_0.data(), g1.d_h_0.data(), 1e-12);
        for ((n, _, a), (_, _, b)) in g
            .weights
            .named_params()
            .iter()
            .zip(g1.weights.named_params().iter())
        {
            common::assert_close_to_max(n, a, b, 1e-12);
        }
    }
}
