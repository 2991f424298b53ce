//! Getting a GPU in tests: with `CI=true` or `WGPU_LSTM_REQUIRE_GPU=1` a
//! missing adapter fails the test; elsewhere the test prints that it skipped.

use std::io::Write;

use wgpu_lstm::gpu::{GpuContext, GpuLstm, gpu_required_by_env};
use wgpu_lstm::{LstmWeights, reference};

use super::case::Case;
use super::{assert_close, assert_grads_close};

/// A context, or `None` (after saying so) when no adapter exists and none is required.
pub fn gpu_or_skip(test: &str) -> Option<GpuContext> {
    match GpuContext::new() {
        Ok(ctx) => Some(ctx),
        Err(e) if !gpu_required_by_env() => {
            // Written past the test harness's capture, so the skip is visible.
            let _ = writeln!(std::io::stderr(), "skipped {test}: no GPU adapter ({e})");
            None
        }
        Err(e) => panic!("{test}: a GPU adapter is required (CI / WGPU_LSTM_REQUIRE_GPU): {e}"),
    }
}

/// Runs the named tests of this test binary again, in a child process whose
/// GPU contexts get WebGPU's default limits (`WGPU_LSTM_LIMITS=webgpu`: 8
/// storage buffers per stage, 16 KiB of workgroup memory, 256 invocations,
/// 128 MiB per binding), and fails unless each passes there. In that child
/// it does nothing; without an adapter it skips like any GPU test.
#[allow(dead_code)]
pub fn rerun_under_webgpu_limits(test: &str, names: &[&str]) {
    if std::env::var("WGPU_LSTM_LIMITS").as_deref() == Ok("webgpu") {
        return;
    }
    if gpu_or_skip(test).is_none() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args(names)
        .args(["--exact", "--test-threads=2"])
        .env("WGPU_LSTM_LIMITS", "webgpu")
        .env("WGPU_LSTM_REQUIRE_GPU", "1")
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{test}: under WebGPU limits:\n{stdout}\n{stderr}"
    );
    for name in names {
        assert!(
            stdout.contains(&format!("test {name} ... ok")),
            "{test}: `{name}` did not pass under WebGPU limits:\n{stdout}"
        );
    }
}

/// Trains `c` with weights `w` on the GPU (training forward and backward,
/// dropout seed `seed`) against the f64 reference: outputs, h_n and c_n
/// within 1e-5, every gradient within 1e-4 of its largest magnitude.
/// Returns the dispatches of the forward and of the backward.
pub fn train_against_reference(
    ctx: &GpuContext,
    name: &str,
    c: &Case,
    w: &LstmWeights<f32>,
    seed: u64,
) -> (u64, u64) {
    let data = c.data::<f32>(1);
    let (w64, data64) = (w.cast::<f64>(), data.cast::<f64>());
    let (want_out, cache) = reference::forward_train(&w64, &c.input(&data64), seed).unwrap();
    let want = reference::backward(&w64, &cache, &data64.grads()).unwrap();
    let mut gpu = GpuLstm::new(ctx, w).unwrap();
    let c0 = ctx.counters();
    let out = gpu.forward_train_host(&c.input(&data), seed).unwrap();
    let c1 = ctx.counters();
    for (what, got, want) in [
        ("output", &out.output, &want_out.output),
        ("h_n", &out.h_n, &want_out.h_n),
        ("c_n", &out.c_n, &want_out.c_n),
    ] {
        assert_close(
            &format!("{name}/{what}"),
            got.data(),
            want.data(),
            1e-5,
            0.0,
        );
    }
    let got = gpu.backward_host(&data.grads()).unwrap();
    let c2 = ctx.counters();
    assert_grads_close(name, &got, &want, c.with_state, 1e-4);
    ((c1 - c0).dispatches, (c2 - c1).dispatches)
}
