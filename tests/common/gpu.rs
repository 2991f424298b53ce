//! Getting a GPU in tests: with `CI=true` or `WGPU_LSTM_REQUIRE_GPU=1` a
//! missing adapter fails the test; elsewhere the test prints that it skipped.

use wgpu_lstm::gpu::GpuContext;

pub fn gpu_required() -> bool {
    let on = |v: &str| std::env::var(v).is_ok_and(|s| !s.is_empty() && s != "0" && s != "false");
    on("CI") || on("WGPU_LSTM_REQUIRE_GPU")
}

/// A context, or `None` (after saying so) when no adapter exists and none is required.
pub fn gpu_or_skip(test: &str) -> Option<GpuContext> {
    match GpuContext::new() {
        Ok(ctx) => Some(ctx),
        Err(e) if !gpu_required() => {
            eprintln!("skipped {test}: no GPU adapter ({e})");
            None
        }
        Err(e) => panic!("{test}: a GPU adapter is required (CI / WGPU_LSTM_REQUIRE_GPU): {e}"),
    }
}
