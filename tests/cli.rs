//! The `wgpu-lstm` command-line tool: PyTorch checkpoints run end to end on
//! the CPU and the GPU, and one test per kind of bad input, each checking
//! the exit status and the one-line message.
//!
//! Every file a test needs is written at run time into its own temporary
//! folder, removed when the test ends.

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::assert_close;
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use wgpu_lstm::reference;
use wgpu_lstm::weights::SafetensorsPrefix;
use wgpu_lstm::{LstmInput, LstmWeights, Tensor};
use wgpu_lstm::{TensorFile, save_tensors};

const BIN: &str = env!("CARGO_BIN_EXE_wgpu-lstm");

// ---- Helpers ----

/// A folder of its own per test, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wgpu-lstm-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture(rel: &str) -> PathBuf {
    common::root().join("tests/fixtures").join(rel)
}

/// The committed `save_file(lstm.state_dict())` in f32: I = 6, H = 10,
/// 2 layers, bidirectional, bare key names.
fn state_dict_f32() -> PathBuf {
    fixture("state_dicts/lstm_f32.safetensors")
}

/// One tensor of any dtype, for files the library's `serialize` cannot
/// write (integers, mixed dtypes).
struct Raw {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn raw<T: bytemuck::Pod>(name: &str, dtype: Dtype, shape: &[usize], data: &[T]) -> Raw {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "{name}");
    Raw {
        name: name.to_string(),
        dtype,
        shape: shape.to_vec(),
        bytes: bytemuck::cast_slice(data).to_vec(),
    }
}

fn f32s(name: &str, shape: &[usize], data: &[f32]) -> Raw {
    raw(name, Dtype::F32, shape, data)
}

/// Seeded values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    common::random_tensor::<f32>(&[n], seed, 1.0).into_data()
}

fn write_raw(path: &Path, tensors: &[Raw]) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

/// What a run of the binary did.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn cli<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Run {
    cli_in(None, args)
}

fn cli_in<S: AsRef<OsStr>>(cwd: Option<&Path>, args: impl IntoIterator<Item = S>) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let out = cmd.output().expect("the wgpu-lstm binary runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `wgpu-lstm run` with the given files and extra flags.
fn run_cli(model: &Path, input: &Path, output: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = vec![
        "run".as_ref(),
        "--weights".as_ref(),
        model.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "--output".as_ref(),
        output.as_os_str(),
    ];
    args.extend(extra.iter().map(|s| OsStr::new(*s)));
    cli(args)
}

/// Stderr without the driver's own chatter (Mesa prints
/// `error: XDG_RUNTIME_DIR is invalid ...` when a GPU context starts).
fn own_stderr(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| !l.contains("XDG_RUNTIME_DIR") && !l.trim().is_empty())
        .collect()
}

fn assert_ok(run: &Run, what: &str) {
    assert_eq!(
        run.code,
        Some(0),
        "{what}: wgpu-lstm failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
}

/// Asserts exit status 1 and one `error: ` line on stderr holding every
/// needle; returns the line.
fn assert_error(run: &Run, needles: &[&str]) -> String {
    let lines = own_stderr(run);
    assert_eq!(
        run.code,
        Some(1),
        "expected exit status 1; stderr:\n{}",
        run.stderr
    );
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got:\n{}",
        run.stderr
    );
    let line = lines[0];
    assert!(line.starts_with("error: "), "not an error line: {line}");
    for needle in needles {
        assert!(
            line.contains(needle),
            "the error does not mention {needle:?}: {line}"
        );
    }
    line.to_string()
}

/// Runs an IN file against the f32 state_dict (I = 6, H = 10, D·L = 4) on
/// the CPU, and with `--device gpu` too: IN is checked before a GPU is
/// started, so both give the same message with or without an adapter.
fn assert_bad_input(test: &str, tensors: &[Raw], extra: &[&str], needles: &[&str]) {
    let dir = TempDir::new(test);
    let (input, output) = (dir.path("in.safetensors"), dir.path("out.safetensors"));
    write_raw(&input, tensors);
    let mut cpu_flags = vec!["--device", "cpu"];
    cpu_flags.extend_from_slice(extra);
    let cpu = assert_error(
        &run_cli(&state_dict_f32(), &input, &output, &cpu_flags),
        needles,
    );
    let mut gpu_flags = vec!["--device", "gpu"];
    gpu_flags.extend_from_slice(extra);
    let gpu = assert_error(
        &run_cli(&state_dict_f32(), &input, &output, &gpu_flags),
        needles,
    );
    assert_eq!(cpu, gpu, "the CPU and the GPU disagree");
    assert!(!output.exists(), "OUT was written despite the error");
}

/// A good `input` for the f32 state_dict: [T, B, 6].
fn input_raw(t: usize, b: usize) -> Raw {
    f32s("input", &[t, b, 6], &values(t * b * 6, 1))
}

// ---- Round trips of PyTorch fixtures ----

/// A PyTorch fixture split into the tool's files, and what PyTorch computed.
struct Case {
    model: PathBuf,
    input: PathBuf,
    batch_first: bool,
    /// output, h_n, c_n in float64.
    expected: Vec<(&'static str, Tensor<f64>)>,
}

/// Writes MODEL (the `lstm.*` tensors in F32, keeping the prefix) and IN
/// (input, h_0, c_0 in F32; lengths in `lengths_dtype`) from a fixture.
fn split_fixture(dir: &TempDir, name: &str, lengths_dtype: Dtype) -> Case {
    let file = TensorFile::open(fixture(&format!("{name}.safetensors"))).unwrap();
    let batch_first = file.metadata()["batch_first"] == "true";

    let params: Vec<(&str, Tensor<f32>)> = file
        .names()
        .into_iter()
        .filter(|n| n.starts_with("lstm."))
        .map(|n| (n, file.float::<f32>(n).unwrap()))
        .collect();
    let named: Vec<(&str, &Tensor<f32>)> = params.iter().map(|(n, t)| (*n, t)).collect();
    let model = dir.path(&format!("{name}.model.safetensors"));
    save_tensors(&model, &named, None).unwrap();

    let mut tensors = Vec::new();
    for key in ["input", "h_0", "c_0"] {
        if file.contains(key) {
            let t = file.float::<f32>(key).unwrap();
            tensors.push(f32s(key, t.shape(), t.data()));
        }
    }
    if file.contains("lengths") {
        let lengths = file.integers("lengths").unwrap();
        tensors.push(match lengths_dtype {
            Dtype::I32 => {
                let l: Vec<i32> = lengths.iter().map(|&v| v as i32).collect();
                raw("lengths", Dtype::I32, &[l.len()], &l)
            }
            _ => raw("lengths", Dtype::I64, &[lengths.len()], &lengths),
        });
    }
    let input = dir.path(&format!("{name}.in.safetensors"));
    write_raw(&input, &tensors);

    let expected = ["output", "h_n", "c_n"]
        .into_iter()
        .map(|k| (k, file.float::<f64>(k).unwrap()))
        .collect();
    Case {
        model,
        input,
        batch_first,
        expected,
    }
}

/// Reads OUT, checking it holds exactly output, h_n and c_n in F32.
fn read_out(path: &Path) -> HashMap<String, Tensor<f32>> {
    let file = TensorFile::open(path).unwrap();
    let names = file.names();
    assert_eq!(names, ["c_n", "h_n", "output"], "tensors in OUT");
    names
        .into_iter()
        .map(|n| {
            assert_eq!(file.dtype(n), Some(Dtype::F32), "{n} in OUT");
            (n.to_string(), file.float::<f32>(n).unwrap())
        })
        .collect()
}

fn check_against_pytorch(case: &Case, out: &Path, what: &str) {
    let got = read_out(out);
    for (key, want) in &case.expected {
        let g = &got[*key];
        assert_eq!(g.shape(), want.shape(), "{what}: shape of `{key}`");
        assert_close(&format!("{what}: {key}"), g.data(), want.data(), 1e-5, 0.0);
    }
}

/// Bidirectional with lengths and state, batch_first with and without
/// lengths, given state, no bias, three layers, unsorted lengths (as I32).
const ROUND_TRIP_FIXTURES: [&str; 8] = [
    "lengths_bidirectional_two_layers",
    "lengths_batch_first_bidirectional",
    "batch_first",
    "batch_first_bidirectional_state",
    "given_state",
    "no_bias",
    "three_layers_odd_sizes",
    "lengths_unsorted",
];

fn round_trip(test: &str, device: &str) {
    let dir = TempDir::new(test);
    for name in ROUND_TRIP_FIXTURES {
        let lengths_dtype = if name == "lengths_unsorted" {
            Dtype::I32
        } else {
            Dtype::I64
        };
        let case = split_fixture(&dir, name, lengths_dtype);
        let out = dir.path(&format!("{name}.out.safetensors"));
        let mut flags = vec!["--device", device];
        if case.batch_first {
            flags.push("--batch-first");
        }
        let run = run_cli(&case.model, &case.input, &out, &flags);
        assert_ok(&run, &format!("{name} on {device}"));
        check_against_pytorch(&case, &out, &format!("{name} on {device}"));
    }
}

#[test]
fn pytorch_fixtures_round_trip_on_cpu() {
    round_trip("round_trip_cpu", "cpu");
}

#[test]
fn pytorch_fixtures_round_trip_on_gpu() {
    let name = "pytorch_fixtures_round_trip_on_gpu";
    if common::gpu::gpu_or_skip(name).is_none() {
        return;
    }
    round_trip("round_trip_gpu", "gpu");
}

/// The real `save_file(lstm.state_dict())` (bare keys, prefix detected) runs
/// and gives what the library gives; the GPU agrees with the CPU.
#[test]
fn torch_saved_state_dict_runs_on_both_devices() {
    let dir = TempDir::new("state_dict");
    let (t, b) = (4, 3);
    let input_t = Tensor::new(vec![t, b, 6], values(t * b * 6, 7)).unwrap();
    let input = dir.path("in.safetensors");
    write_raw(&input, &[f32s("input", input_t.shape(), input_t.data())]);

    let weights =
        LstmWeights::<f32>::load_safetensors(state_dict_f32(), SafetensorsPrefix::Auto).unwrap();
    let want = reference::forward(&weights, &LstmInput::new(&input_t)).unwrap();

    let out = dir.path("out-cpu.safetensors");
    assert_ok(
        &run_cli(&state_dict_f32(), &input, &out, &["--device", "cpu"]),
        "cpu",
    );
    let got = read_out(&out);
    assert_eq!(got["output"].shape(), [t, b, 20]);
    assert_eq!(got["h_n"].shape(), [4, b, 10]);
    // The same code as the library's; only threading could reorder sums.
    assert_close(
        "cpu output",
        got["output"].data(),
        want.output.data(),
        1e-6,
        0.0,
    );
    assert_close("cpu h_n", got["h_n"].data(), want.h_n.data(), 1e-6, 0.0);
    assert_close("cpu c_n", got["c_n"].data(), want.c_n.data(), 1e-6, 0.0);

    if common::gpu::gpu_or_skip("torch_saved_state_dict_runs_on_both_devices (gpu part)").is_none()
    {
        return;
    }
    let out = dir.path("out-gpu.safetensors");
    // The default device is the GPU.
    assert_ok(
        &run_cli(&state_dict_f32(), &input, &out, &["--device", "gpu"]),
        "gpu",
    );
    let got = read_out(&out);
    assert_close(
        "gpu output",
        got["output"].data(),
        want.output.data(),
        1e-5,
        0.0,
    );
    assert_close("gpu h_n", got["h_n"].data(), want.h_n.data(), 1e-5, 0.0);
    assert_close("gpu c_n", got["c_n"].data(), want.c_n.data(), 1e-5, 0.0);
}

/// A projection LSTM (`proj_size` = 4) saved by PyTorch: the CLI infers
/// `proj_size` from `weight_hr` and reproduces PyTorch's own run, on the CPU
/// and on the GPU.
#[test]
fn pytorch_projection_checkpoint_matches_pytorch() {
    let dir = TempDir::new("proj");
    let io = TensorFile::open(fixture("state_dicts/lstm_proj_io.safetensors")).unwrap();
    let x = io.float::<f32>("input").unwrap();
    let input = dir.path("in.safetensors");
    write_raw(&input, &[f32s("input", x.shape(), x.data())]);
    let model = fixture("state_dicts/lstm_proj.safetensors");
    let check = |device: &str, flags: &[&str]| {
        let out = dir.path(&format!("out-{device}.safetensors"));
        assert_ok(&run_cli(&model, &input, &out, flags), device);
        let got = read_out(&out);
        for key in ["output", "h_n", "c_n"] {
            let want = io.float::<f32>(key).unwrap();
            assert_eq!(got[key].shape(), want.shape(), "{device} {key}");
            assert_close(
                &format!("{device} {key}"),
                got[key].data(),
                want.data(),
                1e-5,
                0.0,
            );
        }
        assert_eq!(got["output"].shape(), [7, 3, 8], "D·P = 8 output features");
    };
    check("cpu", &["--device", "cpu"]);
    if common::gpu::gpu_or_skip("pytorch_projection_checkpoint_matches_pytorch (gpu part)")
        .is_none()
    {
        return;
    }
    // The default device is the GPU.
    check("gpu", &["--device", "gpu"]);
}

/// A GRU saved by PyTorch (`gru_state_dict.safetensors`, nn.GRU(5, 8), two
/// layers, bidirectional): the CLI infers the cell from the shapes and
/// reproduces PyTorch's float64 run of it on the CPU, writing `output` and
/// `h_n` only, on the CPU and on the GPU; a `c_0` is an error.
#[test]
fn pytorch_gru_checkpoint_matches_pytorch() {
    let dir = TempDir::new("gru");
    let model = fixture("gru/gru_state_dict.safetensors");
    let run = TensorFile::open(fixture("gru/gru_state_dict_run.safetensors")).unwrap();
    let input_t = run.float::<f32>("input").unwrap();
    let input = dir.path("in.safetensors");
    write_raw(&input, &[f32s("input", input_t.shape(), input_t.data())]);
    let out = dir.path("out.safetensors");
    assert_ok(&run_cli(&model, &input, &out, &["--device", "cpu"]), "cpu");
    let file = TensorFile::open(&out).unwrap();
    assert_eq!(file.names(), ["h_n", "output"], "tensors in OUT");
    for key in ["output", "h_n"] {
        let (got, want) = (
            file.float::<f32>(key).unwrap(),
            run.float::<f64>(key).unwrap(),
        );
        assert_eq!(got.shape(), want.shape(), "{key}");
        assert_close(key, got.data(), want.data(), 1e-5, 0.0);
    }

    let with_c = dir.path("in-c.safetensors");
    let state = values(4 * 2 * 8, 3);
    write_raw(
        &with_c,
        &[
            f32s("input", input_t.shape(), input_t.data()),
            f32s("h_0", &[4, 2, 8], &state),
            f32s("c_0", &[4, 2, 8], &state),
        ],
    );
    let bad = dir.path("out-c.safetensors");
    assert_error(
        &run_cli(&model, &with_c, &bad, &["--device", "cpu"]),
        &["c_0", "GRU has no cell state"],
    );
    assert!(!bad.exists());

    if common::gpu::gpu_or_skip("pytorch_gru_checkpoint_matches_pytorch (gpu part)").is_none() {
        return;
    }
    // The GPU runs it too, within the same 1e-5.
    let gpu = dir.path("out-gpu.safetensors");
    assert_ok(&run_cli(&model, &input, &gpu, &["--device", "gpu"]), "gpu");
    let file = TensorFile::open(&gpu).unwrap();
    assert_eq!(file.names(), ["h_n", "output"], "tensors in OUT (gpu)");
    for key in ["output", "h_n"] {
        let (got, want) = (
            file.float::<f32>(key).unwrap(),
            run.float::<f64>(key).unwrap(),
        );
        assert_close(&format!("gpu {key}"), got.data(), want.data(), 1e-5, 0.0);
    }
}

#[test]
fn explicit_prefix_selects_the_lstm() {
    let dir = TempDir::new("prefix");
    let case = split_fixture(&dir, "bidirectional", Dtype::I64);
    let out = dir.path("out.safetensors");
    let run = run_cli(
        &case.model,
        &case.input,
        &out,
        &["--prefix", "lstm.", "--device", "cpu"],
    );
    assert_ok(&run, "--prefix lstm.");
    check_against_pytorch(&case, &out, "--prefix lstm.");

    // A state_dict with a head beside the LSTM: the prefix picks the LSTM out.
    let with_head = fixture("state_dicts/model_with_head.safetensors");
    let input = dir.path("in6.safetensors");
    write_raw(&input, &[input_raw(3, 2)]);
    let run = run_cli(
        &with_head,
        &input,
        &out,
        &["--prefix", "encoder.rnn.", "--device", "cpu"],
    );
    assert_ok(&run, "--prefix encoder.rnn.");
    assert_eq!(read_out(&out)["output"].shape(), [3, 2, 20]);
}

#[test]
fn wrong_prefix_is_a_clear_error() {
    let dir = TempDir::new("wrong_prefix");
    let case = split_fixture(&dir, "bidirectional", Dtype::I64);
    let out = dir.path("out.safetensors");
    let run = run_cli(
        &case.model,
        &case.input,
        &out,
        &["--prefix", "rnn.", "--device", "cpu"],
    );
    assert_error(
        &run,
        &[
            "--prefix `rnn.` matches no tensor",
            "lstm.",
            "bidirectional",
        ],
    );

    // Without --prefix, a head beside the LSTM is named and the prefix suggested.
    let with_head = fixture("state_dicts/model_with_head.safetensors");
    let input = dir.path("in6.safetensors");
    write_raw(&input, &[input_raw(3, 2)]);
    let run = run_cli(&with_head, &input, &out, &["--device", "cpu"]);
    assert_error(
        &run,
        &["unexpected tensor `head.", "--prefix 'encoder.rnn.'"],
    );
    assert!(!out.exists());
}

// ---- Bad input: one test per kind ----

#[test]
fn input_size_mismatch_names_input_and_shapes() {
    // The model takes I = 6.
    assert_bad_input(
        "input_size",
        &[f32s("input", &[5, 2, 4], &values(40, 2))],
        &[],
        &["tensor `input`", "[5, 2, 4]", "expected [5, 2, 6]"],
    );
    // With --batch-first, the expected shape is [B, T, I].
    assert_bad_input(
        "input_size_batch_first",
        &[f32s("input", &[2, 5, 4], &values(40, 2))],
        &["--batch-first"],
        &["tensor `input`", "[2, 5, 4]", "expected [2, 5, 6]"],
    );
    // Not rank 3.
    assert_bad_input(
        "input_rank",
        &[f32s("input", &[5, 6], &values(30, 2))],
        &[],
        &["`input`", "rank 3", "[5, 6]"],
    );
}

#[test]
fn h_0_with_wrong_shape() {
    // D·L = 4 for the 2-layer bidirectional model; B = 2, H = 10.
    assert_bad_input(
        "h_0_shape",
        &[
            input_raw(5, 2),
            f32s("h_0", &[2, 2, 10], &values(40, 3)),
            f32s("c_0", &[4, 2, 10], &values(80, 4)),
        ],
        &[],
        &["tensor `h_0`", "[2, 2, 10]", "expected [4, 2, 10]"],
    );
}

#[test]
fn lengths_of_zero() {
    assert_bad_input(
        "lengths_zero",
        &[
            input_raw(5, 2),
            raw("lengths", Dtype::I64, &[2], &[3i64, 0]),
        ],
        &[],
        &["`lengths`", "lengths[1] = 0", "1..=5"],
    );
}

#[test]
fn lengths_above_t() {
    assert_bad_input(
        "lengths_above_t",
        &[
            input_raw(5, 2),
            raw("lengths", Dtype::I32, &[2], &[6i32, 2]),
        ],
        &[],
        &["`lengths`", "lengths[0] = 6", "1..=5"],
    );
}

#[test]
fn lengths_of_wrong_count() {
    assert_bad_input(
        "lengths_count",
        &[
            input_raw(5, 2),
            raw("lengths", Dtype::I64, &[3], &[5i64, 5, 5]),
        ],
        &[],
        &["tensor `lengths`", "shape [3]", "expected [2]"],
    );
}

#[test]
fn negative_lengths() {
    assert_bad_input(
        "lengths_negative",
        &[
            input_raw(5, 2),
            raw("lengths", Dtype::I64, &[2], &[-1i64, 5]),
        ],
        &[],
        &["`lengths`", "lengths[0] = -1", "1..=5"],
    );
}

#[test]
fn wrong_dtypes() {
    let input64: Vec<f64> = values(60, 5).iter().map(|&v| v as f64).collect();
    assert_bad_input(
        "dtype_input_f64",
        &[raw("input", Dtype::F64, &[5, 2, 6], &input64)],
        &[],
        &["tensor `input`", "dtype F64", "expected F32"],
    );
    assert_bad_input(
        "dtype_input_i64",
        &[raw("input", Dtype::I64, &[5, 2, 6], &[1i64; 60])],
        &[],
        &["tensor `input`", "dtype I64", "expected F32"],
    );
    assert_bad_input(
        "dtype_c_0_f64",
        &[
            input_raw(5, 2),
            f32s("h_0", &[4, 2, 10], &values(80, 3)),
            raw("c_0", Dtype::F64, &[4, 2, 10], &[0.5f64; 80]),
        ],
        &[],
        &["tensor `c_0`", "dtype F64", "expected F32"],
    );
    assert_bad_input(
        "dtype_lengths_f32",
        &[input_raw(5, 2), f32s("lengths", &[2], &[5.0, 3.0])],
        &[],
        &["tensor `lengths`", "dtype F32", "expected I64 or I32"],
    );
}

#[test]
fn missing_input_tensor() {
    assert_bad_input(
        "missing_input",
        &[
            f32s("h_0", &[4, 2, 10], &values(80, 3)),
            f32s("c_0", &[4, 2, 10], &values(80, 4)),
        ],
        &[],
        &["missing tensor `input`", "in.safetensors"],
    );
}

#[test]
fn unexpected_tensor_in_input_file() {
    // A typo must not be ignored silently (here h_0 would default to zeros).
    assert_bad_input(
        "unexpected_tensor",
        &[input_raw(5, 2), f32s("h0", &[4, 2, 10], &values(80, 3))],
        &[],
        &[
            "unexpected tensor `h0` in",
            "`input`, `h_0`, `c_0` and `lengths`",
        ],
    );
    // Several: the first in name order is named, the rest counted.
    assert_bad_input(
        "unexpected_tensors",
        &[
            input_raw(5, 2),
            f32s("h0", &[4, 2, 10], &values(80, 3)),
            f32s("c0", &[4, 2, 10], &values(80, 3)),
        ],
        &[],
        &["unexpected tensor `c0` and 1 more in"],
    );
}

#[test]
fn files_that_are_not_safetensors() {
    let dir = TempDir::new("not_safetensors");
    let junk = dir.path("junk.safetensors");
    std::fs::write(&junk, "this is a text file, not safetensors\n").unwrap();
    let good_in = dir.path("in.safetensors");
    write_raw(&good_in, &[input_raw(3, 2)]);
    let out = dir.path("out.safetensors");

    // As the weights.
    let run = run_cli(&junk, &good_in, &out, &["--device", "cpu"]);
    assert_error(&run, &["not a valid safetensors file", "junk.safetensors"]);
    // As the input, on either device.
    for flags in [&["--device", "cpu"][..], &["--device", "gpu"]] {
        let run = run_cli(&state_dict_f32(), &junk, &out, flags);
        assert_error(&run, &["not a valid safetensors file", "junk.safetensors"]);
    }
    // An empty file and a missing one.
    let empty = dir.path("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    let run = run_cli(&state_dict_f32(), &empty, &out, &["--device", "cpu"]);
    assert_error(&run, &["not a valid safetensors file", "empty.safetensors"]);
    let missing = dir.path("missing.safetensors");
    let run = run_cli(&state_dict_f32(), &missing, &out, &["--device", "cpu"]);
    assert_error(&run, &["cannot read", "missing.safetensors"]);
    assert!(!out.exists());
}

#[test]
fn output_may_not_overwrite_an_input() {
    let dir = TempDir::new("overwrite");
    let model = dir.path("model.safetensors");
    std::fs::copy(state_dict_f32(), &model).unwrap();
    let input = dir.path("in.safetensors");
    write_raw(&input, &[input_raw(3, 2)]);
    let model_bytes = std::fs::read(&model).unwrap();
    let input_bytes = std::fs::read(&input).unwrap();
    let unchanged = || {
        assert_eq!(std::fs::read(&model).unwrap(), model_bytes, "MODEL changed");
        assert_eq!(std::fs::read(&input).unwrap(), input_bytes, "IN changed");
    };

    for flags in [&["--device", "cpu"][..], &["--device", "gpu"]] {
        // The very same path.
        let run = run_cli(&model, &input, &input, flags);
        assert_error(&run, &["--output", "same file as --input", "refusing"]);
        unchanged();
        let run = run_cli(&model, &input, &model, flags);
        assert_error(&run, &["--output", "same file as --weights", "refusing"]);
        unchanged();
    }
    // Spelled differently: relative to the working folder, through `sub/..`.
    std::fs::create_dir(dir.path("sub")).unwrap();
    let run = cli_in(
        Some(&dir.0),
        [
            OsStr::new("run"),
            "--weights".as_ref(),
            model.as_os_str(),
            "--input".as_ref(),
            input.as_os_str(),
            "--output".as_ref(),
            "sub/../in.safetensors".as_ref(),
            "--device".as_ref(),
            "cpu".as_ref(),
        ],
    );
    assert_error(&run, &["same file as --input", "refusing"]);
    let run = cli_in(
        Some(&dir.0),
        [
            "run",
            "--weights",
            "./model.safetensors",
            "--input",
            "in.safetensors",
            "--output",
            "model.safetensors",
        ],
    );
    assert_error(&run, &["same file as --weights", "refusing"]);
    unchanged();

    // A new file next to them is fine.
    let run = run_cli(
        &model,
        &input,
        &dir.path("out.safetensors"),
        &["--device", "cpu"],
    );
    assert_ok(&run, "a fresh OUT");
    unchanged();
}

/// A buffer over a device limit: I = 1 keeps IN small (T·B floats) while the
/// GEMM's gates buffer, [T·B, D·4H] = 2048·T·B floats for H = 256, D = 2,
/// passes the device's storage-binding (or buffer) size limit.
#[test]
fn size_over_a_device_limit_names_the_limit() {
    let name = "size_over_a_device_limit_names_the_limit";
    let Some(ctx) = common::gpu::gpu_or_skip(name) else {
        return;
    };
    let limits = ctx.limits();
    let limit = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    eprintln!(
        "{name}: adapter {:?}: max_storage_buffer_binding_size {}, max_buffer_size {}",
        ctx.adapter_info().name,
        limits.max_storage_buffer_binding_size,
        limits.max_buffer_size
    );
    let (h, dirs, b) = (256usize, 2usize, 64usize);
    let row_bytes = (dirs * 4 * h * 4) as u64;
    let rows = limit / row_bytes + 1;
    if rows * 4 > 64 << 20 {
        eprintln!("skipped {name}: the limit ({limit} bytes) needs an input over 64 MiB");
        return;
    }
    let t = (rows as usize).div_ceil(b);

    let dir = TempDir::new("device_limit");
    // A 1-layer bidirectional model, I = 1, H = 256 (about 2 MiB).
    let mut model = Vec::new();
    for suffix in ["", "_reverse"] {
        model.push(f32s(
            &format!("weight_ih_l0{suffix}"),
            &[4 * h, 1],
            &values(4 * h, 11),
        ));
        model.push(f32s(
            &format!("weight_hh_l0{suffix}"),
            &[4 * h, h],
            &vec![0.01; 4 * h * h],
        ));
        model.push(f32s(
            &format!("bias_ih_l0{suffix}"),
            &[4 * h],
            &vec![0.0; 4 * h],
        ));
        model.push(f32s(
            &format!("bias_hh_l0{suffix}"),
            &[4 * h],
            &vec![0.0; 4 * h],
        ));
    }
    let model_path = dir.path("model.safetensors");
    write_raw(&model_path, &model);
    let input = dir.path("in.safetensors");
    write_raw(&input, &[f32s("input", &[t, b, 1], &vec![0.5; t * b])]);
    let out = dir.path("out.safetensors");

    let run = run_cli(&model_path, &input, &out, &["--device", "gpu"]);
    let line = assert_error(&run, &["the device's `max_"]);
    assert!(
        line.contains("`max_storage_buffer_binding_size`") || line.contains("`max_buffer_size`"),
        "the error does not name a buffer-size limit: {line}"
    );
    assert!(!out.exists());
}

// ---- info, help and usage ----

/// `info --weights` describes a checkpoint as PyTorch would construct it:
/// a GRU and an LSTM told apart by their shapes.
#[test]
fn info_describes_a_checkpoint() {
    for (file, needles) in [
        (
            fixture("gru/gru_state_dict.safetensors"),
            [
                "nn.GRU(input_size=5, hidden_size=8, num_layers=2, bias=True, bidirectional=True)",
                "gru (3 gates)",
                "parameters:   1968",
            ],
        ),
        (
            state_dict_f32(),
            ["nn.LSTM(input_size=", "lstm (4 gates)", "parameters:"],
        ),
    ] {
        let run = cli([
            OsStr::new("info"),
            OsStr::new("--weights"),
            file.as_os_str(),
        ]);
        assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
        for needle in needles {
            assert!(run.stdout.contains(needle), "{needle:?} in\n{}", run.stdout);
        }
    }
}

#[test]
fn info_lists_the_adapter() {
    let name = "info_lists_the_adapter";
    let run = cli(["info"]);
    match common::gpu::gpu_or_skip(name) {
        Some(ctx) => {
            assert_ok(&run, "info");
            let adapter = &ctx.adapter_info().name;
            for needle in [
                adapter.as_str(),
                "backend",
                "device type",
                "driver",
                "SHADER_F16",
                "SUBGROUP",
                "TIMESTAMP_QUERY",
                "max_storage_buffer_binding_size",
                "max_buffer_size",
                "max_compute_workgroups_per_dimension",
                "max_compute_invocations_per_workgroup",
                "max_compute_workgroup_storage_size",
            ] {
                assert!(
                    run.stdout.contains(needle),
                    "`info` does not mention {needle:?}:\n{}",
                    run.stdout
                );
            }
            for feature in ["SHADER_F16", "SUBGROUP", "TIMESTAMP_QUERY"] {
                let line = run.stdout.lines().find(|l| l.contains(feature)).unwrap();
                assert!(
                    line.ends_with("yes") || line.ends_with("no"),
                    "not yes/no: {line}"
                );
            }
        }
        // Adapters may be listed even when none opens a device; with none
        // listed, `info` must say how to get one.
        None if run.code == Some(0) => {}
        None => {
            assert_error(&run, &["no GPU adapter found", "mesa-vulkan-drivers"]);
        }
    }
}

#[test]
fn help_mentions_commands_and_tensors() {
    let run = cli(["--help"]);
    assert_ok(&run, "--help");
    assert!(run.stdout.contains("run"), "{}", run.stdout);
    assert!(run.stdout.contains("info"), "{}", run.stdout);

    let run = cli(["run", "--help"]);
    assert_ok(&run, "run --help");
    for needle in [
        "save_file(lstm.state_dict(), \"model.safetensors\")",
        "input",
        "[T, B, I]",
        "h_0",
        "c_0",
        "[D·L, B, H]",
        "lengths",
        "output",
        "h_n",
        "c_n",
        "--batch-first",
        "--prefix",
        "--device",
    ] {
        assert!(
            run.stdout.contains(needle),
            "`run --help` does not mention {needle:?}:\n{}",
            run.stdout
        );
    }
}

#[test]
fn usage_errors_exit_with_2() {
    let run = cli(["run", "--weights", "model.safetensors"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--input"), "{}", run.stderr);
    let run = cli([
        "run",
        "--weights",
        "m",
        "--input",
        "i",
        "--output",
        "o",
        "--device",
        "tpu",
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let run = cli(["frobnicate"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
}

/// `--precision f16` runs a torch f16 state_dict on the GPU in f16; the
/// outputs stay within the f16 tolerance (2e-2) of the CPU reference on the
/// same (f16-valued) weights.
#[test]
fn precision_f16_runs_a_half_state_dict() {
    let name = "precision_f16_runs_a_half_state_dict";
    let Some(ctx) = common::gpu::gpu_or_skip(name) else {
        return;
    };
    let dir = TempDir::new("precision_f16");
    let (t, b) = (5, 2);
    let input_t = Tensor::new(vec![t, b, 6], values(t * b * 6, 9)).unwrap();
    let input = dir.path("in.safetensors");
    write_raw(&input, &[f32s("input", input_t.shape(), input_t.data())]);
    let model = fixture("state_dicts/lstm_f16.safetensors");
    let out = dir.path("out.safetensors");
    let run = run_cli(
        &model,
        &input,
        &out,
        &["--device", "gpu", "--precision", "f16"],
    );
    if !ctx.features().contains(wgpu::Features::SHADER_F16) {
        assert_error(&run, &["SHADER_F16"]);
        return;
    }
    assert_ok(&run, "gpu f16");
    let weights = LstmWeights::<f32>::load_safetensors(&model, SafetensorsPrefix::Auto).unwrap();
    let want = reference::forward(&weights, &LstmInput::new(&input_t)).unwrap();
    let got = read_out(&out);
    for (k, w) in [
        ("output", &want.output),
        ("h_n", &want.h_n),
        ("c_n", &want.c_n),
    ] {
        assert_close(k, got[k].data(), w.data(), 2e-2, 0.0);
    }
}

#[test]
fn precision_f16_on_the_cpu_is_refused() {
    let dir = TempDir::new("precision_f16_cpu");
    let input = dir.path("in.safetensors");
    write_raw(&input, &[input_raw(3, 2)]);
    let run = run_cli(
        &state_dict_f32(),
        &input,
        &dir.path("out.safetensors"),
        &["--device", "cpu", "--precision", "f16"],
    );
    assert_error(&run, &["--precision f16", "GPU only"]);
    let run = run_cli(
        &state_dict_f32(),
        &input,
        &dir.path("out.safetensors"),
        &["--precision", "f64"],
    );
    assert_eq!(run.code, Some(2), "clap rejects an unknown precision");
}
