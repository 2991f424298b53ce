//! The GPU forward pass against the reference, run in f64 on the same
//! (f32-valued) weights and inputs.

mod common;

use common::assert_close;
use common::case::Case;
use common::gpu::gpu_or_skip;
use wgpu_lstm::gpu::{GpuLstm, StepConfig};
use wgpu_lstm::reference;
use wgpu_lstm::{InitOptions, LstmConfig, LstmWeights};

/// Runs `case` on the CPU and the GPU and compares output, h_n and c_n.
fn check(name: &str, c: Case, atol: f64) {
    // One submit, or none when skipped without an adapter.
    assert!(check_in(name, c, atol, None) <= 1, "{name}: one submit");
}

/// [`check`] with the step kernel in `step` (its default when `None`);
/// returns the submits of the GPU call (0 when skipped).
fn check_in(name: &str, c: Case, atol: f64, step: Option<StepConfig>) -> u64 {
    let Some(ctx) = gpu_or_skip(name) else {
        return 0;
    };
    let w = LstmWeights::<f32>::init(&c.config, 17, InitOptions::default()).unwrap();
    // Seeds 3 (input), 4 (h_0), 5 (c_0).
    let data = c.data::<f32>(3);
    let x = c.input(&data);
    let data64 = data.cast::<f64>();
    let want = reference::forward(&w.cast::<f64>(), &c.input(&data64)).unwrap();
    let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
    if let Some(step) = step {
        gpu.set_step_config(step).unwrap();
    }
    let before = ctx.counters();
    let got = gpu.forward_host(&x).unwrap();
    let submits = (ctx.counters() - before).submits;
    for (k, g, e) in [
        ("output", &got.output, &want.output),
        ("h_n", &got.h_n, &want.h_n),
        ("c_n", &got.c_n, &want.c_n),
    ] {
        assert_eq!(g.shape(), e.shape(), "{name}/{k}");
        assert!(
            g.data().iter().all(|v| v.is_finite()),
            "{name}/{k}: non-finite"
        );
        assert_close(&format!("{name}/{k}"), g.data(), e.data(), atol, 0.0);
    }
    submits
}

#[test]
fn single_layer_matches_cpu() {
    check("single_layer", Case::new(LstmConfig::new(5, 8), 6, 3), 1e-5);
}

#[test]
fn grid_matches_cpu() {
    let mut n = 0;
    for layers in 1..=3 {
        for bidirectional in [false, true] {
            for (h, i) in [(1, 1), (7, 3), (33, 5), (100, 7)] {
                for bias in [true, false] {
                    let cfg = LstmConfig::new(i, h)
                        .num_layers(layers)
                        .bidirectional(bidirectional)
                        .bias(bias)
                        .batch_first(n % 2 == 1);
                    let mut c = Case::new(cfg, 1 + (n % 5), 1 + (n % 4));
                    c.with_state = n % 3 == 0;
                    if c.batch > 1 {
                        c.lengths =
                            Some((0..c.batch).map(|k| 1 + (k * 7 + n) % c.seq_len).collect());
                    }
                    check(
                        &format!(
                            "grid case {n}: L={layers} bidir={bidirectional} H={h} I={i} bias={bias}"
                        ),
                        c,
                        1e-5,
                    );
                    n += 1;
                }
            }
        }
    }
}

/// Every step-kernel configuration against the reference: widths below,
/// at and above each lane count, batches that fill one and several row
/// blocks (up to 16 rows a workgroup), both directions, two layers,
/// lengths and a hidden projection.
#[test]
fn every_step_config_matches_the_reference() {
    for step in StepConfig::CANDIDATES {
        for (n, (h, i, batch, layers, bidir, proj)) in [
            (1, 2, 1, 1, false, 0),
            (7, 3, 3, 2, true, 0),
            (33, 5, 17, 1, false, 0),
            (64, 4, 2, 1, true, 0),
            (100, 7, 33, 2, false, 0),
            (130, 3, 5, 1, false, 0),
            (20, 4, 6, 2, true, 9),
        ]
        .into_iter()
        .enumerate()
        {
            let cfg = LstmConfig::new(i, h)
                .num_layers(layers)
                .bidirectional(bidir)
                .proj_size(proj);
            let mut c = Case::new(cfg, 1 + n % 4, batch);
            c.with_state = n % 2 == 0;
            if batch > 1 {
                c.lengths = Some((0..batch).map(|k| 1 + (k * 5 + n) % c.seq_len).collect());
            }
            check_in(
                &format!("{step:?} H={h} I={i} B={batch} L={layers} bidir={bidir} P={proj}"),
                c,
                1e-5,
                Some(step),
            );
        }
    }
}

#[test]
fn an_invalid_step_config_is_an_error_and_changes_nothing() {
    let Some(ctx) = gpu_or_skip("an_invalid_step_config_is_an_error_and_changes_nothing") else {
        return;
    };
    let w = LstmWeights::<f32>::init(&LstmConfig::new(3, 8), 1, InitOptions::default()).unwrap();
    let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
    let before = gpu.step_config();
    for bad in [
        StepConfig { lanes: 3, units: 4 },
        StepConfig {
            lanes: 128,
            units: 1,
        },
        StepConfig {
            lanes: 32,
            units: 0,
        },
        StepConfig {
            lanes: 64,
            units: 64,
        },
        // Units must be a power of two (the backward tile's slices follow).
        StepConfig {
            lanes: 32,
            units: 3,
        },
    ] {
        assert!(
            matches!(
                gpu.set_step_config(bad),
                Err(wgpu_lstm::LstmError::InvalidValue { .. })
            ),
            "{bad:?}"
        );
        assert_eq!(gpu.step_config(), before);
    }
}

/// The device's limits follow `WGPU_LSTM_LIMITS`: WebGPU's defaults with
/// `webgpu`, the adapter's own (at least as large) otherwise.
#[test]
fn device_limits_follow_wgpu_lstm_limits() {
    let Some(ctx) = gpu_or_skip("device_limits_follow_wgpu_lstm_limits") else {
        return;
    };
    let l = ctx.limits();
    if std::env::var("WGPU_LSTM_LIMITS").as_deref() == Ok("webgpu") {
        assert_eq!(l.max_storage_buffers_per_shader_stage, 8);
        assert_eq!(l.max_compute_workgroup_storage_size, 16 << 10);
        assert_eq!(l.max_compute_invocations_per_workgroup, 256);
        assert_eq!(l.max_storage_buffer_binding_size, 128 << 20);
        assert_eq!(l.max_buffer_size, 256 << 20);
    } else {
        assert!(l.max_storage_buffers_per_shader_stage >= 8);
        assert!(l.max_compute_workgroup_storage_size >= 16 << 10);
    }
}

/// The forward grids again on a device with exactly WebGPU's limits.
#[test]
fn forward_grids_run_under_webgpu_limits() {
    common::gpu::rerun_under_webgpu_limits(
        "forward_grids_run_under_webgpu_limits",
        &[
            "grid_matches_cpu",
            "every_step_config_matches_the_reference",
            "device_limits_follow_wgpu_lstm_limits",
            "a_sequence_longer_than_one_binding_runs_in_chunks",
            "cell_states_of_a_sequence_split_over_time_match_the_reference",
            "a_stack_too_large_for_one_packed_binding_runs_layer_by_layer",
        ],
    );
}

/// A unidirectional sequence whose input projection [T·B, 4H] exceeds the
/// device's binding size (128 MiB on lavapipe and under WebGPU's limits)
/// runs in chunks of steps, carrying the state, and matches the reference:
/// batch-first, lengths that end before, at and after chunk boundaries, and
/// a given initial state.
#[test]
fn a_sequence_longer_than_one_binding_runs_in_chunks() {
    let name = "a_sequence_longer_than_one_binding_runs_in_chunks";
    let Some(ctx) = gpu_or_skip(name) else { return };
    let limits = ctx.limits();
    let limit = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    let (b, h, i) = (64, 128, 4);
    let per_step = (b * 4 * h * 4) as u64;
    if limit > 256 << 20 {
        eprintln!("skipped {name}: this device binds {limit} bytes; the test sizes for 128 MiB");
        return;
    }
    let t = (limit / per_step) as usize + 60;
    let cfg = LstmConfig::new(i, h).batch_first(true);
    let mut c = Case::new(cfg, t, b);
    c.with_state = true;
    c.lengths = Some(
        (0..b)
            .map(|k| [t, 1, t - 30, 700, t / 2][k % 5].max(1))
            .collect(),
    );
    let submits = check_in(name, c, 1e-5, None);
    assert!(submits >= 2, "the pass was not split ({submits} submit)");
}

/// The per-step cell states of a forward split over time are every chunk's,
/// in place: against the reference, batch-first with lengths.
#[test]
fn cell_states_of_a_sequence_split_over_time_match_the_reference() {
    let name = "cell_states_of_a_sequence_split_over_time_match_the_reference";
    let Some(ctx) = gpu_or_skip(name) else { return };
    let limits = ctx.limits();
    let limit = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    let (b, h, i) = (64, 128, 4);
    let per_step = (b * 4 * h * 4) as u64;
    if limit > 256 << 20 {
        eprintln!("skipped {name}: this device binds {limit} bytes; the test sizes for 128 MiB");
        return;
    }
    let t = (limit / per_step) as usize + 20;
    let c = Case {
        lengths: Some((0..b).map(|k| [t, 3, t - 10, t / 2][k % 4]).collect()),
        ..Case::new(LstmConfig::new(i, h).batch_first(true), t, b)
    };
    let w = LstmWeights::<f32>::init(&c.config, 17, InitOptions::default()).unwrap();
    let data = c.data::<f32>(3);
    let want = reference::forward(&w, &c.input(&data).with_cell_states()).unwrap();
    let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
    let before = ctx.counters();
    let got = gpu
        .forward_host(&c.input(&data).with_cell_states())
        .unwrap();
    assert!(
        (ctx.counters() - before).submits >= 2,
        "the pass was not split"
    );
    let (g, e) = (got.cell_states.unwrap(), want.cell_states.unwrap());
    assert_eq!(g.shape(), e.shape());
    assert_close(name, g.data(), e.data(), 1e-5, 0.0);
}

/// A unidirectional stack whose layers' weights together exceed one binding
/// (4 layers of H = 1024 in f32 is just over 128 MiB) runs layer by layer
/// instead of as a wavefront, and still matches the reference.
#[test]
fn a_stack_too_large_for_one_packed_binding_runs_layer_by_layer() {
    let name = "a_stack_too_large_for_one_packed_binding_runs_layer_by_layer";
    let Some(ctx) = gpu_or_skip(name) else { return };
    let limits = ctx.limits();
    let limit = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    let (layers, h) = (4, 1024);
    let packed = (layers * (8 * h * h + 8 * h) * 4) as u64;
    if packed <= limit {
        eprintln!("skipped {name}: this device binds {limit} bytes, more than the {packed} packed");
        return;
    }
    let c = Case::new(LstmConfig::new(3, h).num_layers(layers), 2, 1);
    check(name, c, 1e-5);
}
