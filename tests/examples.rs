//! The examples end well after training: a plot into a folder that does not
//! exist yet is written (the folder made), and one that cannot be written is
//! a warning, not a failed run.

use std::path::PathBuf;
use std::process::Command;

/// An example's binary, which `cargo test` builds beside the test executables.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let built = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified());
    let bin_time = built(&bin).unwrap_or_else(|_| {
        panic!(
            "{} is missing: `cargo test` builds the examples",
            bin.display()
        )
    });
    // `cargo test --test examples` alone does not rebuild them.
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    for f in [format!("{name}.rs"), "support/plot.rs".into()] {
        assert!(
            built(&src.join(&f)).unwrap() <= bin_time,
            "{} is older than examples/{f}: run `cargo build --release --examples` (or the whole `cargo test`)",
            bin.display()
        );
    }
    bin
}

/// A few steps of the adding problem on the CPU engine, plotting to `plot`.
fn adding(plot: &std::path::Path) -> std::process::Output {
    Command::new(example("adding"))
        .args(["--device", "cpu", "--steps", "3", "--seq-len", "8"])
        .args(["--batch", "4", "--hidden", "4", "--eval-every", "1"])
        .arg("--plot")
        .arg(plot)
        .output()
        .unwrap()
}

#[test]
fn a_plot_into_a_missing_folder_makes_the_folder() {
    let dir = std::env::temp_dir().join(format!("wgpu-lstm-plot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let plot = dir.join("new").join("folder").join("adding.svg");
    let out = adding(&plot);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("<svg"), "an SVG chart");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_plot_that_cannot_be_written_does_not_fail_the_run() {
    let dir = std::env::temp_dir().join(format!("wgpu-lstm-noplot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A folder whose name is taken by a file cannot be made.
    let file = dir.join("taken");
    std::fs::write(&file, "not a folder").unwrap();
    let out = adding(&file.join("adding.svg"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the loss curve was not written"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("test MSE"),
        "the results are printed"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The sentiment example reads its data, trains an epoch and reports its
/// held-out accuracy beside the majority class's.
#[test]
fn the_sentiment_example_reports_accuracy_against_the_majority_class() {
    let plot = std::env::temp_dir().join(format!("wgpu-lstm-sentiment-{}.svg", std::process::id()));
    let out = Command::new(example("sentiment"))
        .args(["--device", "cpu", "--epochs", "1"])
        .arg("--plot")
        .arg(&plot)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3000 sentences"), "{stdout}");
    assert!(
        stdout.contains("held-out accuracy") && stdout.contains("majority class"),
        "{stdout}"
    );
    let _ = std::fs::remove_file(&plot);
}

/// The articles' models (text generation, tagging, forecasting) run end to
/// end on the CPU engine at a few steps, and print their metric beside the
/// baseline.
#[test]
fn the_article_examples_run() {
    let dir = std::env::temp_dir().join(format!("wgpu-lstm-articles-{}", std::process::id()));
    for (name, args, printed) in [
        (
            "textgen",
            &["--steps", "2", "--batch", "4", "--sample", "5"][..],
            "for always guessing",
        ),
        (
            "tagging",
            &["--epochs", "1", "--batch", "512"][..],
            "for each word's most frequent training tag",
        ),
        (
            "weather",
            &["--steps", "2", "--batch", "8"][..],
            "for the naive forecast",
        ),
    ] {
        let out = Command::new(example(name))
            .args(["--device", "cpu"])
            .args(args)
            .arg("--plot")
            .arg(dir.join(format!("{name}.svg")))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(printed), "{name}: {stdout}");
        assert!(dir.join(format!("{name}.svg")).exists(), "{name}: its plot");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
