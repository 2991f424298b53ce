//! `wgpu-lstm doctor`: the self-check to run first on a new machine.
//!
//! On each adapter (or the one `--adapter` names) it runs PyTorch float64
//! fixtures compiled into the binary through the GPU engine, with the
//! kernels the autotuner picks there: the training forward and every
//! gradient, for one and two layers, bidirectional, unsorted lengths, a given
//! initial state, a projection, and the variants (relu, input and recurrent
//! dropout, layer norm), in f32 and, where the adapter has `SHADER_F16`, in
//! f16 (the layer norm, which runs in f32 only, is then skipped). It prints pass or fail with the largest error against
//! PyTorch, the tuner's choices with their times, and the adapter's features
//! and limits. Anything failing makes the exit status 1.

use std::path::Path;

use wgpu_lstm::gpu::{GpuContext, GpuLstm};
use wgpu_lstm::reference::OutputGrads;
use wgpu_lstm::weights::SafetensorsPrefix;
use wgpu_lstm::{Activation, LstmInput, LstmWeights, Precision, Tensor, TensorFile};

use crate::{CliError, CliResult};

/// The fixtures compiled in: (name, safetensors bytes), from `tests/fixtures`
/// (`tools/make_fixtures.py` made them with PyTorch in float64).
const FIXTURES: &[(&str, &[u8])] = &[
    (
        "single_layer",
        include_bytes!("../../../tests/fixtures/single_layer.safetensors"),
    ),
    (
        "two_layers",
        include_bytes!("../../../tests/fixtures/two_layers.safetensors"),
    ),
    (
        "bidirectional",
        include_bytes!("../../../tests/fixtures/bidirectional.safetensors"),
    ),
    (
        "lengths_unsorted",
        include_bytes!("../../../tests/fixtures/lengths_unsorted.safetensors"),
    ),
    (
        "given_state",
        include_bytes!("../../../tests/fixtures/given_state.safetensors"),
    ),
    (
        "lengths_bidirectional_two_layers",
        include_bytes!("../../../tests/fixtures/lengths_bidirectional_two_layers.safetensors"),
    ),
    (
        "proj_single_layer",
        include_bytes!("../../../tests/fixtures/proj/proj_single_layer.safetensors"),
    ),
    // The variants of hand-written float64 modules (`tools/make_variant_fixtures.py`),
    // with the dropout masks of their seed.
    (
        "relu_bidirectional_two_layers_lengths",
        include_bytes!(
            "../../../tests/fixtures/variants/relu_bidirectional_two_layers_lengths.safetensors"
        ),
    ),
    (
        "input_recurrent_dropout_two_layers",
        include_bytes!(
            "../../../tests/fixtures/variants/input_recurrent_dropout_two_layers.safetensors"
        ),
    ),
    (
        "layer_norm_bidirectional_lengths_dropout",
        include_bytes!(
            "../../../tests/fixtures/variants/layer_norm_bidirectional_lengths_dropout.safetensors"
        ),
    ),
];

/// Tolerances against PyTorch: the forward's largest absolute error, and
/// each gradient's largest error over the tensor's largest magnitude. f32
/// holds the test suite's tolerances; f16 storage those of its f16 tests.
fn tolerances(p: Precision) -> (f64, f64) {
    match p {
        Precision::F32 => (1e-5, 1e-4),
        Precision::F16 => (2e-2, 5e-2),
    }
}

/// The largest absolute error of `got` against `want`, and where.
fn max_abs(got: &[f32], want: &[f64]) -> (f64, usize) {
    got.iter()
        .zip(want)
        .enumerate()
        .map(|(i, (g, w))| ((*g as f64 - w).abs(), i))
        .fold(
            (0.0, 0),
            |a, b| if b.0 > a.0 || b.0.is_nan() { b } else { a },
        )
}

/// What one fixture gave: the forward's largest absolute error and the
/// gradients' largest relative error, each with the tensor it was in.
struct Outcome {
    forward: (f64, String),
    gradients: (f64, String),
}

/// Runs one fixture; `None` when it does not apply at `precision`.
fn run_fixture(ctx: &GpuContext, bytes: &[u8], precision: Precision) -> CliResult<Option<Outcome>> {
    let file = TensorFile::from_bytes(bytes.to_vec())?;
    let mut weights = LstmWeights::<f32>::from_safetensors(
        &file.safetensors(),
        SafetensorsPrefix::Exact("lstm."),
    )?;
    let meta = file.metadata();
    weights.config.batch_first = meta.get("batch_first").map(String::as_str) == Some("true");
    // A variant fixture's settings, and the seed of its dropout masks.
    let num = |k: &str| {
        meta.get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    weights.config = weights
        .config
        .clone()
        .dropout(num("dropout"))
        .input_dropout(num("input_dropout"))
        .recurrent_dropout(num("recurrent_dropout"));
    if let Some(a) = meta.get("activation") {
        weights.config.activation = Activation::from_name(a)?;
    }
    let seed = num("dropout_seed") as u64;
    if weights.config.layer_norm && precision == Precision::F16 {
        return Ok(None);
    }
    let f32s = |k: &str| file.float::<f32>(k);
    let f64s = |k: &str| file.float::<f64>(k);
    let input = f32s("input")?;
    let state = match file.contains("h_0") {
        true => Some((f32s("h_0")?, f32s("c_0")?)),
        false => None,
    };
    let lengths: Option<Vec<usize>> = match file.contains("lengths") {
        true => Some(
            file.integers("lengths")?
                .iter()
                .map(|&l| l as usize)
                .collect(),
        ),
        false => None,
    };
    let mut x = LstmInput::new(&input);
    if let Some((h, c)) = &state {
        x = x.with_state(h, c);
    }
    if let Some(l) = &lengths {
        x = x.with_lengths(l);
    }
    let mut gpu = GpuLstm::with_precision(ctx, &weights, precision)?;
    let out = gpu.forward_train_host(&x, seed)?;
    let mut forward: (f64, String) = (0.0, String::new());
    for (k, got) in [
        ("output", &out.output),
        ("h_n", &out.h_n),
        ("c_n", &out.c_n),
    ] {
        let want = f64s(k)?;
        if got.shape() != want.shape() {
            return Err(CliError::Invalid(format!(
                "{k} has shape {:?}, the fixture {:?}",
                got.shape(),
                want.shape()
            )));
        }
        let (e, i) = max_abs(got.data(), want.data());
        if !forward.0.is_nan() && (e.is_nan() || e > forward.0) {
            forward = (e, format!("{k}[{i}]"));
        }
    }
    let (d_output, d_h_n, d_c_n): (Tensor<f32>, Tensor<f32>, Tensor<f32>) =
        (f32s("d_output")?, f32s("d_h_n")?, f32s("d_c_n")?);
    let grads = gpu.backward_host(&OutputGrads {
        d_output: &d_output,
        d_h_n: Some(&d_h_n),
        d_c_n: Some(&d_c_n),
    })?;
    let mut checks = vec![("grad.input".to_string(), grads.d_input.data().to_vec())];
    if state.is_some() {
        checks.push(("grad.h_0".into(), grads.d_h_0.data().to_vec()));
        checks.push(("grad.c_0".into(), grads.d_c_0.data().to_vec()));
    }
    for (p, _, g) in grads.weights.named_params() {
        checks.push((format!("grad.lstm.{p}"), g.to_vec()));
    }
    let mut gradients: (f64, String) = (0.0, String::new());
    for (k, got) in checks {
        let want = f64s(&k)?;
        let scale = want
            .data()
            .iter()
            .fold(0.0f64, |m, w| m.max(w.abs()))
            .max(1e-30);
        let (e, i) = max_abs(&got, want.data());
        let rel = e / scale;
        if !gradients.0.is_nan() && (rel.is_nan() || rel > gradients.0) {
            gradients = (rel, format!("{k}[{i}]"));
        }
    }
    Ok(Some(Outcome { forward, gradients }))
}

/// The fixtures to run: the compiled-in set, or every `.safetensors` file
/// in `dir`.
fn fixtures(dir: Option<&Path>) -> CliResult<Vec<(String, Vec<u8>)>> {
    let Some(dir) = dir else {
        return Ok(FIXTURES
            .iter()
            .map(|(n, b)| (n.to_string(), b.to_vec()))
            .collect());
    };
    let read = |e: std::io::Error| CliError::Invalid(format!("{}: {e}", dir.display()));
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(read)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(CliError::Invalid(format!(
            "{}: no .safetensors fixtures",
            dir.display()
        )));
    }
    paths
        .into_iter()
        .map(|p| {
            let name = p
                .file_stem()
                .map_or(String::new(), |s| s.to_string_lossy().into_owned());
            std::fs::read(&p).map(|b| (name, b)).map_err(read)
        })
        .collect()
}

/// Runs the self-check; `Ok(false)` when a check failed.
pub fn doctor(adapter: Option<&str>, dir: Option<&Path>) -> CliResult<bool> {
    let cases = fixtures(dir)?;
    let all = wgpu_lstm::gpu::adapters();
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|a| {
            adapter.is_none_or(|n| a.get_info().name.to_lowercase().contains(&n.to_lowercase()))
        })
        .collect();
    if chosen.is_empty() {
        return Err(wgpu_lstm::LstmError::NoAdapter {
            detail: adapter.map_or(String::new(), |n| format!(" whose name contains {n:?}")),
        }
        .into());
    }
    println!("wgpu-lstm doctor {}", env!("CARGO_PKG_VERSION"));
    let (mut passed, mut failed) = (0, 0);
    for (i, a) in chosen.iter().enumerate() {
        let info = a.get_info();
        println!(
            "adapter {i}: {} ({:?}, {:?}, driver {} {})",
            info.name, info.backend, info.device_type, info.driver, info.driver_info
        );
        let ctx = match GpuContext::from_adapter(a) {
            Ok(ctx) => ctx,
            Err(e) => {
                println!("  FAIL opening a device: {e}");
                failed += 1;
                continue;
            }
        };
        let features = ctx.features();
        let yes_no = |f| if features.contains(f) { "yes" } else { "no" };
        println!(
            "  features: SHADER_F16 {}, SUBGROUP {}, TIMESTAMP_QUERY {}",
            yes_no(wgpu::Features::SHADER_F16),
            yes_no(wgpu::Features::SUBGROUP),
            yes_no(wgpu::Features::TIMESTAMP_QUERY)
        );
        let l = ctx.limits();
        println!(
            "  limits: storage binding {} B, buffer {} B, workgroup memory {} B, {} invocations, \
             {} storage buffers per stage",
            l.max_storage_buffer_binding_size,
            l.max_buffer_size,
            l.max_compute_workgroup_storage_size,
            l.max_compute_invocations_per_workgroup,
            l.max_storage_buffers_per_shader_stage
        );
        let mut precisions = vec![Precision::F32];
        if features.contains(wgpu::Features::SHADER_F16) {
            precisions.push(Precision::F16);
        }
        for &p in &precisions {
            let (fwd_tol, grad_tol) = tolerances(p);
            for (name, bytes) in &cases {
                let label = format!("{p} {name}");
                match run_fixture(&ctx, bytes, p) {
                    Ok(None) => {
                        println!("  SKIP {label}: the layer-normalised LSTM runs in f32 only");
                    }
                    Ok(Some(o)) if o.forward.0 <= fwd_tol && o.gradients.0 <= grad_tol => {
                        passed += 1;
                        println!(
                            "  PASS {label}: forward {:.1e} (tolerance {fwd_tol:.0e}), \
                             gradients {:.1e} of their largest value (tolerance {grad_tol:.0e})",
                            o.forward.0, o.gradients.0
                        );
                    }
                    Ok(Some(o)) => {
                        failed += 1;
                        println!(
                            "  FAIL {label}: forward {:.1e} at {} (tolerance {fwd_tol:.0e}), \
                             gradients {:.1e} at {} (tolerance {grad_tol:.0e})",
                            o.forward.0, o.forward.1, o.gradients.0, o.gradients.1
                        );
                    }
                    Err(e) => {
                        failed += 1;
                        let msg = e.to_string().replace(['\n', '\r'], " ");
                        println!("  FAIL {label}: {msg}");
                    }
                }
            }
        }
        println!("  tuner ({:?}):", ctx.tune_mode());
        for r in ctx.tuning() {
            println!("    {r}");
        }
    }
    println!(
        "result: {passed} passed, {failed} failed on {} adapter{}",
        chosen.len(),
        if chosen.len() == 1 { "" } else { "s" }
    );
    Ok(failed == 0)
}
