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

/// [`check`] with the step kernels in `step` (their default when `None`);
/// returns the dispatches of the training forward and of the backward.
fn check_in(name: &str, c: Case, step: Option<StepConfig>) -> Option<(u64, u64)> {
    let ctx = gpu_or_skip(name)?;
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
    let c0 = ctx.counters();
    let gpu_out = gpu.forward_train_host(&x, DROPOUT_SEED).unwrap();
    let c1 = ctx.counters();
    assert_close(
        &format!("{name}/output"),
        gpu_out.output.data(),
        want_out.output.data(),
        1e-5,
        0.0,
    );
    let got = gpu.backward_host(&grads).unwrap();
    let c2 = ctx.counters();
    assert_grads_close(name, &got, &want, true, 1e-4);
    Some(((c1 - c0).dispatches, (c2 - c1).dispatches))
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
    for (layers, bidir, batch_first) in [
        (1, false, false),
        (2, true, true),
        (3, true, false),
        (3, false, false),
        (2, false, true),
    ] {
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
        assert_eq!(bwd.submits, 1);
        if layers > 1 && !bidir {
            // A unidirectional stack trains in a wavefront: layer 0's input
            // projection and T + L - 1 steps forward; T + L steps backward,
            // then dW_ih, dW_hh and db per layer and layer 0's dX.
            assert_eq!(fwd.dispatches, (1 + t + layers - 1 + permutes) as u64);
            assert_eq!(
                bwd.dispatches,
                (t + layers + 3 * layers + 1 + permutes) as u64
            );
        } else {
            assert_eq!(fwd.dispatches, (layers * (1 + t) + permutes) as u64);
            // steps + finish, dW_ih, dW_hh per direction, db, dX
            let per_layer = (t + 1) + 1 + d + 1 + 1;
            assert_eq!(bwd.dispatches, (layers * per_layer + permutes) as u64);
            assert!(bwd.dispatches <= (layers * d * (t + 8) + permutes) as u64);
        }
        for c in [fwd, bwd] {
            assert_eq!((c.pipelines, c.bind_groups, c.buffers), (0, 0, 0), "{c:?}");
        }
    }
}

/// A unidirectional stack whose saved activations of every layer together
/// exceed one binding (the gates of 2 layers, [2, T, B, H, 4] in f32, just
/// over 128 MiB) while each layer's fit trains layer by layer instead of in
/// a wavefront, and still matches the reference.
#[test]
fn a_stack_whose_saved_activations_exceed_one_binding_trains_layer_by_layer() {
    let name = "a_stack_whose_saved_activations_exceed_one_binding_trains_layer_by_layer";
    let Some(ctx) = gpu_or_skip(name) else { return };
    let limits = ctx.limits();
    let limit = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    let (layers, t, b, h) = (2, 1030, 256, 16);
    let packed = (layers * t * b * h * 16) as u64;
    if packed <= limit {
        eprintln!("skipped {name}: this device binds {limit} bytes, more than the {packed} packed");
        return;
    }
    let c = Case::new(LstmConfig::new(3, h).num_layers(layers), t, b);
    // A configuration set, so that no tuning runs inside the counted calls.
    let step = Some(StepConfig::default_for(h));
    let (fwd, bwd) = check_in(name, c, step).expect("a GPU");
    // Layer by layer: a GEMM and T steps per layer forward; T + 1 steps,
    // dW_ih, dW_hh, db and dX per layer backward, the first three (which
    // reduce over all T·B rows) in dispatches of at most 16384 rows. A
    // weight gradient whose K the tuner splits into parallel slices adds
    // one column sum of its slices.
    let chunks = (t * b).div_ceil(16384);
    assert_eq!(fwd, (layers * (1 + t)) as u64);
    let base = (layers * (t + 1 + 3 * chunks + 1)) as u64;
    let splittable = (2 * layers * chunks) as u64;
    assert!(
        (base..=base + splittable).contains(&bwd),
        "{bwd} dispatches, {base} unsplit"
    );
}

/// A wavefront stack over more rows (T·B) than one weight-gradient dispatch
/// reduces: its dW_ih, dW_hh and db run in blocks of 16384 rows, each added
/// to the last, and match the reference.
#[test]
fn long_weight_gradient_reductions_run_in_blocks() {
    let (layers, t, b) = (2, 300, 64);
    let cfg = LstmConfig::new(3, 8).num_layers(layers).dropout(0.2);
    let lengths = Some((0..b).map(|k| t - k % 7).collect());
    let c = Case {
        lengths,
        ..Case::new(cfg, t, b)
    };
    let step = Some(StepConfig::default_for(8));
    let Some((fwd, bwd)) = check_in("long_weight_gradient_reductions_run_in_blocks", c, step)
    else {
        return;
    };
    let chunks = (t * b).div_ceil(16384);
    assert_eq!(chunks, 2);
    assert_eq!(fwd, (1 + t + layers - 1) as u64);
    // Plus one column sum per weight gradient whose K the tuner splits.
    let base = (t + layers + 3 * layers * chunks + 1) as u64;
    let splittable = (2 * layers * chunks) as u64;
    assert!(
        (base..=base + splittable).contains(&bwd),
        "{bwd} dispatches, {base} unsplit"
    );
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
            // A unidirectional stack: the forward and backward wavefronts.
            (40, 3, 5, 6, 3, false, 0),
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
            "a_stack_whose_saved_activations_exceed_one_binding_trains_layer_by_layer",
        ],
    );
}
