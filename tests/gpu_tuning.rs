//! The autotuner on a real adapter: it measures and checks every step
//! configuration on first use of a shape class, caches the choice on disk,
//! reads it back, and follows `WGPU_LSTM_TUNE`. Each case runs in a child
//! process of this test binary, with its own environment and cache file.

mod common;

use std::path::{Path, PathBuf};

use common::assert_close;
use common::case::Case;
use common::gpu::gpu_or_skip;
use wgpu_lstm::gpu::{GemmTile, GpuContext, GpuLstm, StepConfig, TuneMode, TuneReport, TuneSource};
use wgpu_lstm::reference;
use wgpu_lstm::{InitOptions, LstmConfig, LstmWeights};

/// Set in the child processes, where the `child_*` tests do their work.
const CHILD: &str = "WGPU_LSTM_TUNING_CHILD";

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// A fresh cache path in a fresh directory.
fn cache_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wgpu-lstm-tuning-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("tuning.tsv")
}

/// Starts `test` in a child process with `env` and the cache at `cache`.
fn spawn(test: &str, cache: &Path, env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture"])
        .env(CHILD, "1")
        .env("WGPU_LSTM_TUNE_CACHE", cache)
        .env_remove("WGPU_LSTM_TUNE")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Waits for a child and asserts that its test passed; returns its stderr.
fn passed(test: &str, child: std::process::Child) -> String {
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains(&format!("test {test} ... ok")),
        "{test} failed in its child:\n{stdout}\n{stderr}"
    );
    stderr.into_owned()
}

fn run(test: &str, cache: &Path, env: &[(&str, &str)]) -> String {
    passed(test, spawn(test, cache, env))
}

/// The shape every case tunes for: H = 24, batch 3 (rows class 4).
fn case() -> Case {
    Case::new(LstmConfig::new(4, 24), 5, 3)
}

const CLASS: &str = "f32 H=24 H_out=24 rows=4";

/// One forward on a new context, checked against the reference; returns
/// the context for its tuning reports.
fn forward_on_new_context() -> GpuContext {
    let ctx = gpu_or_skip("tuning child").expect("a GPU in the child");
    let c = case();
    let w = LstmWeights::<f32>::init(&c.config, 3, InitOptions::default()).unwrap();
    let data = c.data::<f32>(1);
    let want = reference::forward(&w.cast::<f64>(), &c.input(&data.cast::<f64>())).unwrap();
    let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
    assert_eq!(gpu.step_config(), None);
    let got = gpu.forward_host(&c.input(&data)).unwrap();
    assert_close("output", got.output.data(), want.output.data(), 1e-5, 0.0);
    ctx
}

/// The step kernels' reports among `all`.
fn steps(all: &[TuneReport]) -> Vec<TuneReport> {
    all.iter()
        .filter(|r| r.family == "lstm step")
        .cloned()
        .collect()
}

fn names() -> Vec<String> {
    StepConfig::CANDIDATES
        .iter()
        .map(|c| format!("{}x{}", c.lanes, c.units))
        .collect()
}

#[test]
fn child_measures_then_reads_the_cache() {
    if !in_child() {
        return;
    }
    let first = forward_on_new_context();
    assert_eq!(first.tune_mode(), TuneMode::On);
    let all = first.tuning();
    // The input projection's GEMM was tuned too, every tile checked and timed.
    let gemm: Vec<_> = all.iter().filter(|r| r.family == "gemm").collect();
    assert!(!gemm.is_empty(), "{all:?}");
    let shared = std::env::var(CHILD).as_deref() == Ok("shared");
    for g in &gemm {
        // Alone, measured here; sharing the cache, perhaps read from the
        // other process's measurement.
        if !(shared && g.source == TuneSource::Cache) {
            assert_eq!(g.source, TuneSource::Measured);
            assert!(g.excluded.is_empty(), "{g:?}");
            assert_eq!(g.times_ms.len(), GemmTile::CANDIDATES.len(), "{g:?}");
        }
    }
    let r = steps(&all);
    assert_eq!(r.len(), 1, "{all:?}");
    let r = &r[0];
    if shared && r.source == TuneSource::Cache {
        return;
    }
    assert_eq!((r.family.as_str(), r.class.as_str()), ("lstm step", CLASS));
    assert_eq!(r.source, TuneSource::Measured);
    // Every candidate checked out and was timed; the fastest was chosen.
    assert!(r.excluded.is_empty(), "{:?}", r.excluded);
    let timed: Vec<String> = r.times_ms.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(timed, names());
    let fastest = r
        .times_ms
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert_eq!(r.chosen, fastest.0);
    assert!(r.work.submits > 0 && r.work.dispatches > 0, "{:?}", r.work);

    // A second context on the same adapter reads the choice from disk.
    let second = forward_on_new_context();
    let all2 = second.tuning();
    assert!(
        all2.iter().all(|r| r.source == TuneSource::Cache),
        "{all2:?}"
    );
    let r2 = steps(&all2);
    assert_eq!(r2.len(), 1);
    assert_eq!(r2[0].source, TuneSource::Cache);
    assert!(r2[0].times_ms.is_empty());
    // Its own choice, unless another process sharing the cache measured
    // (and wrote) after it did.
    if std::env::var(CHILD).as_deref() == Ok("shared") {
        assert!(names().contains(&r2[0].chosen), "{:?}", r2[0]);
    } else {
        assert_eq!(r2[0].chosen, r.chosen);
    }
}

#[test]
fn child_uses_the_defaults() {
    if !in_child() {
        return;
    }
    let ctx = forward_on_new_context();
    assert_eq!(ctx.tune_mode(), TuneMode::Off);
    let all = ctx.tuning();
    assert!(
        all.iter().all(|r| r.source == TuneSource::Default),
        "{all:?}"
    );
    let r = steps(&all);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].source, TuneSource::Default);
    let d = StepConfig::default_for(24);
    assert_eq!(r[0].chosen, format!("{}x{}", d.lanes, d.units));
}

#[test]
fn child_measures_again() {
    if !in_child() {
        return;
    }
    let ctx = forward_on_new_context();
    assert_eq!(ctx.tune_mode(), TuneMode::Force);
    let r = steps(&ctx.tuning());
    assert_eq!(r[0].source, TuneSource::Measured);
    assert_eq!(r[0].times_ms.len(), names().len());
}

/// The step kernels' lines of the cache file (after checking its header).
fn cache_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("# wgpu-lstm tuning cache 1"), "{text}");
    lines
        .filter(|l| l.contains("\tlstm step\t"))
        .map(str::to_string)
        .collect()
}

/// Only the cache file is in its directory: no temporary file is left.
fn only_the_cache(path: &Path) {
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![path.file_name().unwrap().to_owned()]);
}

#[test]
fn a_choice_is_measured_once_then_read_from_the_cache() {
    if in_child() || gpu_or_skip("a_choice_is_measured_once").is_none() {
        return;
    }
    let cache = cache_path("measure");
    run("child_measures_then_reads_the_cache", &cache, &[]);
    let lines = cache_lines(&cache);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("\tlstm step\t{CLASS}\t")),
        "{lines:?}"
    );
    only_the_cache(&cache);
}

#[test]
fn tune_off_uses_the_defaults_and_writes_no_cache() {
    if in_child() || gpu_or_skip("tune_off").is_none() {
        return;
    }
    let cache = cache_path("off");
    run(
        "child_uses_the_defaults",
        &cache,
        &[("WGPU_LSTM_TUNE", "off")],
    );
    assert!(!cache.exists());
}

#[test]
fn tune_force_measures_again_and_rewrites_the_cache() {
    if in_child() || gpu_or_skip("tune_force").is_none() {
        return;
    }
    let cache = cache_path("force");
    run("child_measures_then_reads_the_cache", &cache, &[]);
    let before = cache_lines(&cache);
    run(
        "child_measures_again",
        &cache,
        &[("WGPU_LSTM_TUNE", "force")],
    );
    let after = cache_lines(&cache);
    assert_eq!(after.len(), 1);
    assert_eq!(before[0].rsplit('\t').nth(1), after[0].rsplit('\t').nth(1));
    only_the_cache(&cache);
}

#[test]
fn a_corrupt_or_foreign_cache_is_ignored_with_a_warning() {
    if in_child() || gpu_or_skip("a_corrupt_cache").is_none() {
        return;
    }
    let cache = cache_path("corrupt");
    for bad in [
        "not a cache at all\n".to_string(),
        // A choice from another version, which must not be used.
        "# wgpu-lstm tuning cache 1\n0.0.0-other\tany adapter\tlstm step\tclass\t8x16\n"
            .to_string(),
    ] {
        std::fs::write(&cache, bad).unwrap();
        let stderr = run("child_measures_then_reads_the_cache", &cache, &[]);
        assert!(stderr.contains("ignoring the tuning cache"), "{stderr}");
        let lines = cache_lines(&cache);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(!lines[0].starts_with("0.0.0-other"));
        only_the_cache(&cache);
    }
}

#[test]
fn two_processes_tuning_at_once_leave_a_whole_cache() {
    if in_child() || gpu_or_skip("two_processes").is_none() {
        return;
    }
    let cache = cache_path("concurrent");
    let test = "child_measures_then_reads_the_cache";
    let shared = [(CHILD, "shared")];
    let children = [spawn(test, &cache, &shared), spawn(test, &cache, &shared)];
    for child in children {
        passed(test, child);
    }
    assert_eq!(cache_lines(&cache).len(), 1);
    only_the_cache(&cache);
}

#[test]
fn child_refuses_the_mode() {
    if !in_child() {
        return;
    }
    let Err(e) = GpuContext::new() else {
        panic!("WGPU_LSTM_TUNE=sometimes was accepted")
    };
    assert!(e.to_string().contains("WGPU_LSTM_TUNE"), "{e}");
}

#[test]
fn an_invalid_tune_mode_is_a_typed_error() {
    if in_child() || gpu_or_skip("an_invalid_tune_mode").is_none() {
        return;
    }
    let cache = cache_path("invalid");
    run(
        "child_refuses_the_mode",
        &cache,
        &[("WGPU_LSTM_TUNE", "sometimes")],
    );
    assert!(!cache.exists());
}

/// The split-K counts in effect, when the child must find them: every
/// weight gradient's choice read from the cache as this count.
const SPLITS: &str = "WGPU_LSTM_TUNING_SPLITS";

/// A training pass whose weight gradients reduce over T·B = 200 rows (long
/// enough to split), checked against the reference.
#[test]
fn child_trains_with_the_tuned_splits() {
    if !in_child() {
        return;
    }
    let ctx = gpu_or_skip("tuning child").expect("a GPU in the child");
    let c = Case::new(LstmConfig::new(4, 24).num_layers(2), 40, 5);
    let w = LstmWeights::<f32>::init(&c.config, 3, InitOptions::default()).unwrap();
    let data = c.data::<f32>(1);
    let (w64, data64) = (w.cast::<f64>(), data.cast::<f64>());
    let (want_out, cache) = reference::forward_train(&w64, &c.input(&data64), 7).unwrap();
    let want = reference::backward(&w64, &cache, &data64.grads()).unwrap();
    let mut gpu = GpuLstm::new(&ctx, &w).unwrap();
    let out = gpu.forward_train_host(&c.input(&data), 7).unwrap();
    assert_close(
        "output",
        out.output.data(),
        want_out.output.data(),
        1e-5,
        0.0,
    );
    let got = gpu.backward_host(&data.grads()).unwrap();
    common::assert_grads_close("split", &got, &want, true, 1e-4);
    let splits: Vec<TuneReport> = ctx
        .tuning()
        .into_iter()
        .filter(|r| r.family == "gemm split-k")
        .collect();
    // dW_ih of each layer and dW_hh (the bias is a column sum).
    assert!(!splits.is_empty(), "{:?}", ctx.tuning());
    if let Ok(n) = std::env::var(SPLITS) {
        for r in &splits {
            assert_eq!(
                (r.source, r.chosen.as_str()),
                (TuneSource::Cache, n.as_str())
            );
        }
    }
}

/// Whatever split count the tuner or the cache gives the weight gradients,
/// training matches the reference: measured first, then with every split
/// choice in the cache rewritten to 4 parallel slices.
#[test]
fn weight_gradients_split_as_the_cache_says_match_the_reference() {
    if in_child() || gpu_or_skip("weight_gradients_split").is_none() {
        return;
    }
    let cache = cache_path("splits");
    let test = "child_trains_with_the_tuned_splits";
    run(test, &cache, &[]);
    let text = std::fs::read_to_string(&cache).unwrap();
    let mut rewritten = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| match l.contains("\tgemm split-k\t") {
            true => {
                rewritten += 1;
                let (key, _) = l.rsplit_once('\t').unwrap();
                format!("{key}\t4")
            }
            false => l.to_string(),
        })
        .collect();
    assert!(rewritten > 0, "{text}");
    std::fs::write(&cache, lines.join("\n") + "\n").unwrap();
    run(test, &cache, &[(SPLITS, "4")]);
    only_the_cache(&cache);
}
