//! The GPU engine's contract beyond single forwards: PyTorch fixtures,
//! extreme inputs, determinism, streaming, weight round trips, the GPU-tensor
//! API, typed errors, and the structural promises (one submit per forward,
//! T + O(1) dispatches, nothing created on a repeated call).

mod common;

use common::gpu::gpu_or_skip;
use common::lstm_fixtures::{self, Case};
use common::{assert_close, random_tensor};
use wgpu_lstm::gpu::{GpuLstm, GpuTensor, InitialState};
use wgpu_lstm::reference;
use wgpu_lstm::{InitOptions, LstmConfig, LstmError, LstmInput, LstmWeights, Tensor};

fn weights(cfg: &LstmConfig) -> LstmWeights<f32> {
    LstmWeights::init(cfg, 23, InitOptions::default()).unwrap()
}

#[test]
fn every_pytorch_fixture_matches() {
    let Some(ctx) = gpu_or_skip("every_pytorch_fixture_matches") else {
        return;
    };
    let cases = lstm_fixtures::cases();
    assert!(cases.len() >= 12, "only {} fixtures", cases.len());
    for (name, bytes) in cases {
        let case = Case::<f32>::load(&bytes);
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
        }
    }
}

/// CPU and GPU outputs of one configuration and input.
fn both(
    cfg: &LstmConfig,
    input: &Tensor<f32>,
) -> (
    reference::LstmOutput<f32>,
    Option<reference::LstmOutput<f32>>,
) {
    let w = weights(cfg);
    let x = LstmInput::new(input);
    let want = reference::forward(&w, &x).unwrap();
    let got =
        gpu_or_skip("both").map(|ctx| GpuLstm::new(&ctx, &w).unwrap().forward_host(&x).unwrap());
    (want, got)
}

#[test]
fn saturating_inputs_stay_finite_and_match() {
    let cfg = LstmConfig::new(3, 9).num_layers(2).bidirectional(true);
    let mut input = random_tensor::<f32>(&[6, 2, 3], 8, 1.0);
    input
        .data_mut()
        .iter_mut()
        .for_each(|v| *v = v.signum() * 1e4);
    let (want, Some(got)) = both(&cfg, &input) else {
        return;
    };
    for (g, e) in [
        (&got.output, &want.output),
        (&got.h_n, &want.h_n),
        (&got.c_n, &want.c_n),
    ] {
        assert!(g.data().iter().all(|v| v.is_finite()));
        assert_close("saturating", g.data(), e.data(), 1e-5, 0.0);
    }
}

#[test]
fn long_sequence_stays_finite_and_matches() {
    let cfg = LstmConfig::new(2, 16);
    let input = random_tensor::<f32>(&[1000, 2, 2], 9, 1.0);
    let (want, Some(got)) = both(&cfg, &input) else {
        return;
    };
    assert!(got.output.data().iter().all(|v| v.is_finite()));
    assert_close(
        "T=1000 output",
        got.output.data(),
        want.output.data(),
        1e-4,
        0.0,
    );
    assert_close("T=1000 c_n", got.c_n.data(), want.c_n.data(), 1e-4, 0.0);
}

#[test]
fn two_runs_are_bitwise_identical() {
    let Some(ctx) = gpu_or_skip("two_runs_are_bitwise_identical") else {
        return;
    };
    let cfg = LstmConfig::new(5, 37).num_layers(2).bidirectional(true);
    let input = random_tensor::<f32>(&[7, 3, 5], 1, 1.0);
    let lengths = [7, 2, 5];
    let x = LstmInput::new(&input).with_lengths(&lengths);
    let mut gpu = GpuLstm::new(&ctx, &weights(&cfg)).unwrap();
    let a = gpu.forward_host(&x).unwrap();
    let b = gpu.forward_host(&x).unwrap();
    let c = GpuLstm::new(&ctx, &weights(&cfg))
        .unwrap()
        .forward_host(&x)
        .unwrap();
    let bits = |t: &Tensor<f32>| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for (x, y) in [
        (&a.output, &b.output),
        (&a.h_n, &b.h_n),
        (&a.c_n, &b.c_n),
        (&a.output, &c.output),
    ] {
        assert_eq!(bits(x), bits(y));
    }
}

#[test]
fn streaming_in_chunks_equals_one_shot() {
    let Some(ctx) = gpu_or_skip("streaming_in_chunks_equals_one_shot") else {
        return;
    };
    let cfg = LstmConfig::new(4, 11).num_layers(2);
    let (t, b, i) = (12, 3, 4);
    let input = random_tensor::<f32>(&[t, b, i], 2, 1.0);
    let mut gpu = GpuLstm::new(&ctx, &weights(&cfg)).unwrap();
    let whole = gpu.forward_host(&LstmInput::new(&input)).unwrap();

    // Chunks of 5, 5 and 2 steps; each continues from the last on the GPU.
    let mut outputs = Vec::new();
    let mut start = 0;
    for (k, len) in [5, 5, 2].into_iter().enumerate() {
        let chunk = Tensor::new(
            [len, b, i],
            input.data()[start * b * i..(start + len) * b * i].to_vec(),
        )
        .unwrap();
        let chunk = GpuTensor::upload(&ctx, "chunk", &chunk).unwrap();
        let state = if k == 0 {
            InitialState::Zeros
        } else {
            InitialState::Carry
        };
        let out = gpu.forward(&chunk, state, None).unwrap();
        outputs.extend(out.output.to_host(&ctx).unwrap().into_data());
        if start + len == t {
            let h_n = out.h_n.to_host(&ctx).unwrap();
            let c_n = out.c_n.to_host(&ctx).unwrap();
            assert_close("streamed h_n", h_n.data(), whole.h_n.data(), 1e-6, 0.0);
            assert_close("streamed c_n", c_n.data(), whole.c_n.data(), 1e-6, 0.0);
        }
        start += len;
    }
    assert_close("streamed output", &outputs, whole.output.data(), 1e-6, 0.0);
}

#[test]
fn gpu_tensor_api_with_given_state_matches_the_host_api() {
    let Some(ctx) = gpu_or_skip("gpu_tensor_api_with_given_state_matches_the_host_api") else {
        return;
    };
    let cfg = LstmConfig::new(3, 6).bidirectional(true).batch_first(true);
    let w = weights(&cfg);
    let input = random_tensor::<f32>(&[2, 5, 3], 3, 1.0);
    let (h0, c0) = (
        random_tensor::<f32>(&[2, 2, 6], 4, 0.5),
        random_tensor::<f32>(&[2, 2, 6], 5, 0.5),
    );
    let want = reference::forward(
        &w,
        &LstmInput::new(&input)
            .with_state(&h0, &c0)
            .with_lengths(&[3, 5]),
    )
    .unwrap();
    let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
    let (gi, gh, gc) = (
        GpuTensor::upload(&ctx, "x", &input).unwrap(),
        GpuTensor::upload(&ctx, "h0", &h0).unwrap(),
        GpuTensor::upload(&ctx, "c0", &c0).unwrap(),
    );
    let out = gpu
        .forward(
            &gi,
            InitialState::Given { h_0: &gh, c_0: &gc },
            Some(&[3, 5]),
        )
        .unwrap();
    let host = wgpu_lstm::gpu::read_back(&ctx, &[out.output, out.h_n, out.c_n]).unwrap();
    assert_eq!(host[0].shape(), [2, 5, 12]);
    assert_close("output", host[0].data(), want.output.data(), 1e-5, 0.0);
    assert_close("h_n", host[1].data(), want.h_n.data(), 1e-5, 0.0);
    assert_close("c_n", host[2].data(), want.c_n.data(), 1e-5, 0.0);
}

#[test]
fn weights_read_back_in_pytorch_layout() {
    let Some(ctx) = gpu_or_skip("weights_read_back_in_pytorch_layout") else {
        return;
    };
    for cfg in [
        LstmConfig::new(3, 5).num_layers(3).bidirectional(true),
        LstmConfig::new(7, 33).bias(false),
    ] {
        let w = weights(&cfg);
        assert_eq!(GpuLstm::new(&ctx, &w).unwrap().weights().unwrap(), w);
    }
}

#[test]
fn one_submit_bounded_dispatches_and_no_allocation_on_repeat() {
    let Some(ctx) = gpu_or_skip("one_submit_bounded_dispatches_and_no_allocation_on_repeat") else {
        return;
    };
    for (layers, bidir, batch_first) in [
        (1, false, false),
        (1, false, true),
        (3, true, true),
        (2, true, false),
        (3, false, false),
        (2, false, true),
    ] {
        let cfg = LstmConfig::new(4, 10)
            .num_layers(layers)
            .bidirectional(bidir)
            .batch_first(batch_first);
        let (t, b) = (9, 2);
        let shape = if batch_first { [b, t, 4] } else { [t, b, 4] };
        let input = random_tensor::<f32>(&shape, 6, 1.0);
        let mut gpu = GpuLstm::new(&ctx, &weights(&cfg)).unwrap();
        let x = GpuTensor::upload(&ctx, "x", &input).unwrap();
        let first = ctx.counters();
        gpu.forward(&x, InitialState::Zeros, None).unwrap();
        let second = ctx.counters();
        gpu.forward(&x, InitialState::Carry, None).unwrap();
        let third = ctx.counters();
        let (once, again) = (second - first, third - second);
        let d = cfg.num_directions() as u64;
        assert_eq!((once.submits, once.host_waits), (1, 0), "{once:?}");
        assert!(
            once.dispatches <= layers as u64 * d * (t as u64 + 3),
            "{once:?}"
        );
        let permutes = if batch_first { 2 } else { 0 };
        if bidir || layers == 1 {
            // Exactly one GEMM and T steps per layer (both directions share a
            // dispatch).
            assert_eq!(once.dispatches, layers as u64 * (1 + t as u64) + permutes);
        } else {
            // A unidirectional stack runs as a wavefront: layer 0's GEMM, then
            // T + L - 1 dispatches, each running layer l's step s - l.
            assert_eq!(
                once.dispatches,
                1 + (t + layers - 1) as u64 + permutes,
                "{once:?}"
            );
        }
        assert_eq!(again.submits, 1);
        assert_eq!(again.dispatches, once.dispatches);
        assert_eq!(
            (again.pipelines, again.bind_groups, again.buffers),
            (0, 0, 0),
            "{again:?}"
        );
        // The host path also reads back in the same single submit.
        let before = ctx.counters();
        gpu.forward_host(&LstmInput::new(&random_tensor::<f32>(&shape, 7, 1.0)))
            .unwrap();
        let host = ctx.counters() - before;
        assert_eq!(
            (host.submits, host.pipelines, host.bind_groups, host.buffers),
            (1, 0, 0, 0),
            "{host:?}"
        );
        // Reading back is the one wait.
        assert_eq!(host.host_waits, 1, "{host:?}");
    }
}

#[test]
fn bad_inputs_get_typed_errors() {
    let Some(ctx) = gpu_or_skip("bad_inputs_get_typed_errors") else {
        return;
    };
    let cfg = LstmConfig::new(4, 6).num_layers(2);
    let mut gpu = GpuLstm::new(&ctx, &weights(&cfg)).unwrap();
    let wrong = GpuTensor::upload(&ctx, "x", &random_tensor(&[3, 2, 5], 1, 1.0)).unwrap();
    let err = gpu.forward(&wrong, InitialState::Zeros, None).unwrap_err();
    assert!(
        matches!(&err, LstmError::ShapeMismatch { name, .. } if name == "input"),
        "{err}"
    );
    let x = GpuTensor::upload(&ctx, "x", &random_tensor(&[3, 2, 4], 1, 1.0)).unwrap();
    let bad_h = GpuTensor::upload(&ctx, "h", &Tensor::zeros([1, 2, 6])).unwrap();
    let err = gpu
        .forward(
            &x,
            InitialState::Given {
                h_0: &bad_h,
                c_0: &bad_h,
            },
            None,
        )
        .unwrap_err();
    assert!(
        matches!(&err, LstmError::ShapeMismatch { name, .. } if name == "h_0"),
        "{err}"
    );
    let err = gpu
        .forward(&x, InitialState::Zeros, Some(&[4, 1]))
        .unwrap_err();
    assert!(
        matches!(&err, LstmError::InvalidValue { name, .. } if name == "lengths"),
        "{err}"
    );
    let mut nan = random_tensor::<f32>(&[3, 2, 4], 1, 1.0);
    nan.data_mut()[0] = f32::NAN;
    let err = gpu.forward_host(&LstmInput::new(&nan)).unwrap_err();
    assert!(
        matches!(&err, LstmError::InvalidValue { name, .. } if name == "input"),
        "{err}"
    );
}

#[test]
fn a_sequence_over_the_device_limit_names_the_limit() {
    let Some(ctx) = gpu_or_skip("a_sequence_over_the_device_limit_names_the_limit") else {
        return;
    };
    // The gates buffer is [T·B, D·4H] floats: make it just exceed the
    // storage-binding limit while the input itself stays small.
    let limit = ctx.limits().max_storage_buffer_binding_size;
    let cfg = LstmConfig::new(1, 64).bidirectional(true);
    let row = 4 * 2 * 4 * 64u64; // bytes per gates row
    let t = (limit / row + 1) as usize;
    let mut gpu = GpuLstm::new(&ctx, &weights(&cfg)).unwrap();
    let x = GpuTensor::empty(&ctx, "long input", &[t, 1, 1]).unwrap();
    let err = gpu.forward(&x, InitialState::Zeros, None).unwrap_err();
    let message = err.to_string();
    match err {
        LstmError::DeviceLimit { limit, .. } => {
            assert!(limit == "max_storage_buffer_binding_size" || limit == "max_buffer_size");
            assert!(message.contains(limit), "{message}");
        }
        other => panic!("expected DeviceLimit, got {other}"),
    }
}
