//! `wgpu-lstm doctor`: passes on a working adapter, and fails with a clear
//! line when a PyTorch fixture disagrees with the engine.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::SafeTensors;

const BIN: &str = env!("CARGO_BIN_EXE_wgpu-lstm");

/// A fresh folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-lstm-doctor-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `wgpu-lstm doctor` with `args`, tuning into a cache of its own.
fn doctor(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("doctor")
        .args(args)
        .env("WGPU_LSTM_TUNE_CACHE", dir.join("tuning.tsv"))
        .output()
        .unwrap()
}

#[test]
fn doctor_passes_on_this_adapter() {
    if common::gpu::gpu_or_skip("doctor_passes_on_this_adapter").is_none() {
        return;
    }
    let dir = temp_dir("pass");
    let out = doctor(&dir, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "PASS f32 single_layer",
        "PASS f32 lengths_bidirectional_two_layers",
        "PASS f32 proj_single_layer",
        "tuner (On)",
        "lstm step f32",
        ", 0 failed on",
    ] {
        assert!(stdout.contains(line), "missing {line:?}:\n{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Adds 1 to the first element of the F64 tensor `name` in a safetensors file.
fn tamper(bytes: &mut [u8], name: &str) {
    let (header, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let info = meta.info(name).unwrap();
    let at = 8 + header + info.data_offsets.0;
    let v = f64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    bytes[at..at + 8].copy_from_slice(&(v + 1.0).to_le_bytes());
}

#[test]
fn doctor_fails_with_a_clear_line_on_a_tampered_fixture() {
    if common::gpu::gpu_or_skip("doctor_fails_on_a_tampered_fixture").is_none() {
        return;
    }
    let dir = temp_dir("tampered");
    let fixtures = dir.join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    let root = common::root().join("tests/fixtures");
    for name in ["single_layer", "two_layers"] {
        let mut bytes = std::fs::read(root.join(format!("{name}.safetensors"))).unwrap();
        if name == "two_layers" {
            // PyTorch's output, as if the engine had computed something else.
            tamper(&mut bytes, "output");
        }
        std::fs::write(fixtures.join(format!("{name}.safetensors")), bytes).unwrap();
    }
    let out = doctor(&dir, &["--fixtures", fixtures.to_str().unwrap()]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("PASS f32 single_layer"), "{stdout}");
    let fail = stdout
        .lines()
        .find(|l| l.contains("FAIL f32 two_layers"))
        .unwrap_or_else(|| panic!("no FAIL line:\n{stdout}"));
    assert!(fail.contains("forward 1.0e0 at output[0]"), "{fail}");
    assert!(
        // f32 fails, and f16 too where the adapter has it: never "0 failed".
        stdout.contains(", 1 failed on") || stdout.contains(", 2 failed on"),
        "{stdout}"
    );
    assert!(
        stderr.starts_with("error: doctor: a check failed"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn doctor_without_fixtures_in_the_folder_is_an_error() {
    let dir = temp_dir("empty");
    let out = doctor(&dir, &["--fixtures", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no .safetensors fixtures"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
