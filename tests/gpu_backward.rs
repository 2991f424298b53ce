//! GPU backpropagation through time against the reference (run in f64 on
//! the same f32-valued weights and inputs) and PyTorch.

mod common;

use common::case::Case;
use common::gpu::gpu_or_skip;
use common::lstm_fixtures::{self, Case as Fixture};
use common::{assert_close, assert_close_to_max, assert_grads_close, random_tensor};
use wgpu_lstm::gpu::{GpuLstm, StepConfig};
use wgpu_lstm::reference::{self, OutputGrads};
use wgpu_lstm::{InitOptions, LstmConfig, LstmWeights, Tensor};

const DROPOUT_SEED: u64 = 99;

fn check(name: &str, c: Case) {
    check_in(name, c, None);
}

/// [`check`] with the step kernels in `step` (their default when `None`).
fn check_in(name: &str, c: Case, step: Option<StepConfig>) {
    let Some(ctx) = gpu_or_skip(name) else { return };
    let w = LstmWeights::<f32>::init(&c.config, 31, InitOptions::default()).unwrap();
    // Seeds 1 (input), 2, 3 (h_0, c_0), 4, 5, 6 (d_output, d_h_n, d_c_n).
    let data = c.data::<f32>(1);
    let x = c.input(&data);
    let grads = data.grads();
    let (w64, data64) = (w.cast::<f64>(), data.cast::<f64>());
    let (want_out, cache) =
        reference::forward_train(&w64, &c.input(&data64), DROPOUT_SEED).unwrap();
    let want = reference::backward(&w64, &cache, &data64.grads()).unwrap();

    let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
    if let Some(step) = step {
        gpu.set_step_config(step).unwrap();
    }
    let gpu_out = gpu.forward_train_host(&x, DROPOUT_SEED).unwrap();
    assert_close(
        &format!("{name}/output"),
        gpu_out.output.data(),
        want_out.output.data(),
        1e-5,
        0.0,
    );
    let got = gpu.backward_host(&grads).unwrap();
    assert_grads_close(name, &got, &want, true, 1e-4);
}

#[test]
fn single_layer() {
    check(
        "single_layer",
        Case {
            with_state: true,
            ..Case::new(LstmConfig::new(5, 8), 6, 3)
        },
    );
}

#[test]
fn grid() {
    let mut n = 0;
    for layers in 1..=3 {
        for bidirectional in [false, true] {
            for (h, i) in [(1, 1), (7, 3), (33, 5), (70, 2)] {
                let dropout = if n % 3 == 1 { 0.3 } else { 0.0 };
                let cfg = LstmConfig::new(i, h)
                    .num_layers(layers)
                    .bidirectional(bidirectional)
                    .bias(n % 4 != 3)
                    .batch_first(n % 2 == 1)
                    .dropout(dropout);
                let (t, b) = (1 + n % 5, 1 + n % 4);
                let lengths = (b > 1).then(|| (0..b).map(|k| 1 + (k * 5 + n) % t).collect());
                check(
                    &format!(
                        "case {n}: L={layers} bidir={bidirectional} H={h} I={i} T={t} B={b} p={dropout}"
                    ),
                    Case {
                        lengths,
                        with_state: n % 2 == 0,
                        ..Case::new(cfg, t, b)
                    },
                );
                n += 1;
            }
        }
    }
}

#[test]
fn pytorch_fixture_gradients_match() {
    let Some(ctx) = gpu_or_skip("pytorch_fixture_gradients_match") else {
        return;
    };
    let cases = lstm_fixtures::cases();
    assert!(cases.len() >= 12);
    for (name, bytes) in cases {
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
        for (key, g) in case.gradient_keys(&got) {
            let want: Tensor<f64> = case.tensor(&key);
            assert_close_to_max(&format!("{name}/{key}"), &g, want.data(), 1e-4);
        }
    }
}

#[test]
fn one_submit_bounded_dispatches_and_no_allocation_after_the_first_step() {
    let Some(ctx) =
        gpu_or_skip("one_submit_bounded_dispatches_and_no_allocation_after_the_first_step")
    else {
        return;
    };
    for (layers, bidir, batch_first) in [(1, false, false), (2, true, true), (3, true, false)] {
        let cfg = LstmConfig::new(3, 9)
            .num_layers(layers)
            .bidirectional(bidir)
            .batch_first(batch_first)
            .dropout(0.2);
        let (t, b) = (7, 2);
        let d = cfg.num_directions();
        let shape = if batch_first { [b, t, 3] } else { [t, b, 3] };
        let out_shape = if batch_first {
            [b, t, d * 9]
        } else {
            [t, b, d * 9]
        };
        let w = LstmWeights::<f32>::init(&cfg, 1, InitOptions::default()).unwrap();
        let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
        let x =
            wgpu_lstm::gpu::GpuTensor::upload(&ctx, "x", &random_tensor(&shape, 1, 1.0)).unwrap();
        let dy = wgpu_lstm::gpu::GpuTensor::upload(&ctx, "dy", &random_tensor(&out_shape, 2, 1.0))
            .unwrap();
        let mut step = |seed| {
            let c0 = ctx.counters();
            gpu.forward_train(&x, wgpu_lstm::gpu::InitialState::Zeros, None, seed)
                .unwrap();
            let c1 = ctx.counters();
            gpu.backward(&dy, None, None).unwrap();
            (c1 - c0, ctx.counters() - c1)
        };
        let (_, _) = step(1);
        let (fwd, bwd) = step(2);
        let permutes = if batch_first { 2 } else { 0 };
        assert_eq!(fwd.submits, 1);
        assert_eq!(fwd.dispatches, (layers * (1 + t) + permutes) as u64);
        assert_eq!(bwd.submits, 1);
        let per_layer = (t + 1) + 1 + d + 1 + 1; // steps + finish, dW_ih, dW_hh per direction, db, dX
        assert_eq!(bwd.dispatches, (layers * per_layer + permutes) as u64);
        assert!(bwd.dispatches <= (layers * d * (t + 8) + permutes) as u64);
        for c in [fwd, bwd] {
            assert_eq!((c.pipelines, c.bind_groups, c.buffers), (0, 0, 0), "{c:?}");
        }
    }
}

/// Every step-kernel configuration (forward and backward tiles) against the
/// reference: units below and above one workgroup's 32 columns, batches of
/// one and several row blocks, both directions, dropout, lengths and a
/// hidden projection.
#[test]
fn every_step_config_matches_the_reference() {
    for step in StepConfig::CANDIDATES {
        for (n, (h, i, t, b, layers, bidir, proj)) in [
            (1, 2, 3, 1, 1, false, 0),
            (7, 3, 4, 3, 2, true, 0),
            (33, 5, 3, 17, 1, false, 0),
            (70, 2, 2, 5, 2, true, 0),
            (20, 4, 3, 6, 2, true, 9),
        ]
        .into_iter()
        .enumerate()
        {
            let cfg = LstmConfig::new(i, h)
                .num_layers(layers)
                .bidirectional(bidir)
                .proj_size(proj)
                .dropout(if layers > 1 { 0.25 } else { 0.0 });
            let lengths = (b > 1).then(|| (0..b).map(|k| 1 + (k * 3 + n) % t).collect());
            check_in(
                &format!("{step:?} H={h} I={i} T={t} B={b} L={layers} bidir={bidir} P={proj}"),
                Case {
                    lengths,
                    with_state: n % 2 == 0,
                    ..Case::new(cfg, t, b)
                },
                Some(step),
            );
        }
    }
}

/// The backward grids again on a device with exactly WebGPU's limits.
#[test]
fn backward_grids_run_under_webgpu_limits() {
    common::gpu::rerun_under_webgpu_limits(
        "backward_grids_run_under_webgpu_limits",
        &[
            "grid",
            "pytorch_fixture_gradients_match",
            "every_step_config_matches_the_reference",
        ],
    );
}
