//! Getting a GPU in tests: with `CI=true` or `WGPU_LSTM_REQUIRE_GPU=1` a
//! missing adapter fails the test; elsewhere the test prints that it skipped.

use std::io::Write;

use wgpu_lstm::gpu::{GpuContext, gpu_required_by_env};

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
