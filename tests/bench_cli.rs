//! `lstm-bench --quick` runs end to end, and every GPU row carries its
//! correctness figure and its work counts (one submit per call).

mod common;

use std::process::Command;

/// Runs `lstm-bench --quick --json FILE` with `args`; returns the table's
/// lines of `columns` cells (one per shape, mode and precision) and the JSON.
fn run_quick(
    tag: &str,
    args: &[&str],
    columns: usize,
) -> (String, Vec<Vec<String>>, serde_json::Value) {
    let json = std::env::temp_dir().join(format!("lstm-bench-{tag}-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_lstm-bench"))
        .arg("--quick")
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines = stdout
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .filter(|c| c.len() == columns && (c[0] == "forward" || c[0] == "train"))
        .collect();
    let doc = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).unwrap();
    (stdout, lines, doc)
}

#[test]
fn quick_benchmark_reports_counts_and_differences() {
    let device =
        if common::gpu::gpu_or_skip("quick_benchmark_reports_counts_and_differences").is_some() {
            "both"
        } else {
            "cpu"
        };
    // The table: one line per shape and mode, CPU and GPU side by side, with
    // every column filled when both ran (a forward call has no backward phases).
    let (stdout, lines, doc) = run_quick("f32", &["--device", device], 23);
    assert_eq!(lines.len(), 4, "{stdout}");
    for c in &lines {
        let filled = if device == "cpu" { 8 } else { 23 };
        let expected_dashes = if device == "both" && c[0] == "forward" {
            2
        } else {
            0
        };
        let dashes = c[..filled].iter().filter(|x| *x == "-").count();
        // Kernel times need TIMESTAMP_QUERY: without it their 4 columns are "-".
        assert!(
            dashes == expected_dashes || (device == "both" && dashes == 4),
            "{stdout}"
        );
    }
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), if device == "both" { 8 } else { 4 });
    for r in rows.iter().filter(|r| r["device"] == "gpu") {
        assert_eq!(r["submits"], 1, "{r}");
        // Calls submit and return; the benchmark's own synchronize is the wait.
        assert_eq!(r["host_waits"], 0, "{r}");
        assert!(
            r["host_ms"].as_f64().unwrap() <= r["median_ms"].as_f64().unwrap() * 1.5,
            "{r}"
        );
        // At these batches one block of rows reads W_hh [4H, H] f32 once a step.
        let (h, b) = (
            r["hidden_size"].as_u64().unwrap(),
            r["batch"].as_u64().unwrap(),
        );
        assert!(b <= 8, "{r}");
        assert_eq!(r["w_hh_bytes_per_step"], 16 * h * h, "{r}");
        assert!(r["step_workgroups"].as_u64().unwrap() >= 1, "{r}");
        let t = r["seq_len"].as_u64().unwrap();
        let dispatches = r["dispatches"].as_u64().unwrap();
        match r["mode"].as_str().unwrap() {
            // One GEMM and one step per time step.
            "forward" => assert_eq!(dispatches, t + 1),
            // Plus backward (T + 1 steps, 4 GEMMs), head, loss, norms, updates.
            _ => assert!(dispatches > 2 * t && dispatches < 2 * t + 40, "{r}"),
        }
        assert!(r["max_abs_diff"].as_f64().unwrap() < 1e-4, "{r}");
    }
}

/// `lstm-bench --precision f16` puts an f16 line beside every f32 line, with
/// the GPU memory of weights and saved activations measured from the
/// allocated buffers: the f16 weights take half of f32's bytes.
#[test]
fn quick_benchmark_in_f16_reports_memory_beside_f32() {
    let name = "quick_benchmark_in_f16_reports_memory_beside_f32";
    let Some(ctx) = common::gpu::gpu_or_skip(name) else {
        return;
    };
    if !ctx.features().contains(wgpu::Features::SHADER_F16) {
        eprintln!("skipped {name}: the adapter lacks SHADER_F16");
        return;
    }
    let (stdout, lines, doc) = run_quick("f16", &["--device", "both", "--precision", "f16"], 26);
    assert_eq!(lines.len(), 8, "{stdout}");
    assert_eq!(
        lines.iter().filter(|c| c[23] == "f16").count(),
        4,
        "{stdout}"
    );
    let rows = doc["rows"].as_array().unwrap();
    let gpu = |precision: &str, mode: &str, b: u64| {
        rows.iter()
            .find(|r| {
                r["device"] == "gpu"
                    && r["precision"] == precision
                    && r["mode"] == mode
                    && r["batch"] == b
            })
            .unwrap_or_else(|| panic!("no {precision} {mode} row for B = {b}"))
    };
    for b in [1, 4] {
        let (f32_train, f16_train) = (gpu("f32", "train", b), gpu("f16", "train", b));
        let bytes = |r: &serde_json::Value, k: &str| r[k].as_u64().unwrap() as f64;
        let weights = bytes(f16_train, "weights_bytes") / bytes(f32_train, "weights_bytes");
        assert!((0.45..=0.55).contains(&weights), "weights ratio {weights}");
        assert!(
            bytes(f16_train, "saved_activation_bytes") < bytes(f32_train, "saved_activation_bytes")
        );
        assert_eq!(
            bytes(f16_train, "master_weights_bytes"),
            2.0 * bytes(f16_train, "weights_bytes")
        );
        for mode in ["forward", "train"] {
            let r = gpu("f16", mode, b);
            assert_eq!(r["submits"], 1, "{r}");
            // Against the CPU reference: the f16 tolerance of tests/gpu_f16.rs.
            assert!(r["max_abs_diff"].as_f64().unwrap() < 2e-2, "{r}");
        }
    }
}

/// `lstm-bench --gemm` times products in each layout the LSTM uses (here on
/// the CPU alone), and a bad layout is a clear error.
#[test]
fn gemm_benchmark_takes_a_layout_per_product() {
    let run = |sizes: &str| {
        Command::new(env!("CARGO_BIN_EXE_lstm-bench"))
            .args(["--device", "cpu", "--iters", "1", "--gemm", sizes])
            .output()
            .unwrap()
    };
    let out = run("8x4x16:TN;12:NN;8x4x16");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for row in [
        "8x4x16 TN  cpu gemm crate",
        "12x12x12 NN  cpu gemm crate",
        "8x4x16 NT  cpu gemm crate",
    ] {
        assert!(stdout.contains(row), "{row:?} in\n{stdout}");
    }
    let out = run("8x4x16:XT");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad GEMM layout"), "{stderr}");
}
