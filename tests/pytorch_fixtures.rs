//! The CPU reference against PyTorch's `nn.LSTM`, from float64 fixtures made
//! by `tools/make_fixtures.py` (which documents every tensor in the files).
//!
//! Tolerances: outputs within 1e-5 absolute in f32 (DESIGN §4, T ≤ 100);
//! gradients within 1e-4 of each tensor's largest magnitude in f32. The f64
//! reference must agree to 1e-9, which shows the math itself is exact and
//! the f32 tolerances only cover rounding.

mod common;

use std::path::PathBuf;

use common::{assert_close, assert_close_to_max};
use safetensors::SafeTensors;
use wgpu_lstm::cpu::{self, OutputGrads};
use wgpu_lstm::io::{read_float, view_to_i64};
use wgpu_lstm::weights::SafetensorsPrefix;
use wgpu_lstm::{LstmInput, LstmWeights, Real, Tensor};

fn fixture_paths() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    paths
}

fn check_fixture<T: Real>(path: &PathBuf, out_atol: f64, grad_tol: f64) {
    let name = path.file_stem().unwrap().to_string_lossy().to_string();
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();

    let mut w = LstmWeights::<T>::from_safetensors(&st, SafetensorsPrefix::Exact("lstm.")).unwrap();
    // Architecture inferred from names and shapes must match what PyTorch was built with.
    let cfg = &w.config;
    assert_eq!(cfg.input_size.to_string(), meta["input_size"], "{name}");
    assert_eq!(cfg.hidden_size.to_string(), meta["hidden_size"], "{name}");
    assert_eq!(cfg.num_layers.to_string(), meta["num_layers"], "{name}");
    assert_eq!(cfg.bias.to_string(), meta["bias"], "{name}");
    assert_eq!(
        cfg.bidirectional.to_string(),
        meta["bidirectional"],
        "{name}"
    );
    w.config.batch_first = meta["batch_first"] == "true";

    let get = |key: &str| read_float::<T>(&st, key).unwrap();
    let opt = |key: &str| st.tensor(key).is_ok().then(|| get(key));
    let input = get("input");
    let (h_0, c_0) = (opt("h_0"), opt("c_0"));
    let lengths: Option<Vec<usize>> = st.tensor("lengths").ok().map(|v| {
        view_to_i64("lengths", &v)
            .unwrap()
            .into_iter()
            .map(|l| l as usize)
            .collect()
    });
    let mut x = LstmInput::new(&input);
    if let (Some(h), Some(c)) = (&h_0, &c_0) {
        x = x.with_state(h, c);
    }
    if let Some(l) = &lengths {
        x = x.with_lengths(l);
    }

    // Forward, in evaluation and in training mode (no dropout: identical).
    let eval = cpu::forward(&w, &x).unwrap();
    let (out, cache) = cpu::forward_train(&w, &x, 0).unwrap();
    assert_eq!(
        eval, out,
        "{name}: training and evaluation differ without dropout"
    );
    for (key, got) in [
        ("output", &out.output),
        ("h_n", &out.h_n),
        ("c_n", &out.c_n),
    ] {
        let want: Tensor<f64> = read_float(&st, key).unwrap();
        assert_eq!(got.shape(), want.shape(), "{name}/{key}");
        assert_close(
            &format!("{name}/{key}"),
            got.data(),
            want.data(),
            out_atol,
            0.0,
        );
    }

    // Backward of L = Σ output⊙d_output + Σ h_n⊙d_h_n + Σ c_n⊙d_c_n.
    let (d_output, d_h_n, d_c_n) = (get("d_output"), get("d_h_n"), get("d_c_n"));
    let grads = cpu::backward(
        &w,
        &cache,
        &OutputGrads {
            d_output: &d_output,
            d_h_n: Some(&d_h_n),
            d_c_n: Some(&d_c_n),
        },
    )
    .unwrap();
    let mut checked = vec![("grad.input".to_string(), grads.d_input.data().to_vec())];
    if h_0.is_some() {
        checked.push(("grad.h_0".into(), grads.d_h_0.data().to_vec()));
        checked.push(("grad.c_0".into(), grads.d_c_0.data().to_vec()));
    }
    for (pname, _, g) in grads.weights.named_params() {
        checked.push((format!("grad.lstm.{pname}"), g.to_vec()));
    }
    for (key, got) in checked {
        let want: Tensor<f64> = read_float(&st, &key).unwrap();
        assert_close_to_max(&format!("{name}/{key}"), &got, want.data(), grad_tol);
    }
}

#[test]
fn at_least_twelve_fixtures_are_present() {
    let n = fixture_paths().len();
    assert!(n >= 12, "found {n} fixtures; run tools/make_fixtures.py");
}

#[test]
fn f32_reference_matches_pytorch() {
    for path in fixture_paths() {
        check_fixture::<f32>(&path, 1e-5, 1e-4);
    }
}

#[test]
fn f64_reference_matches_pytorch_to_rounding() {
    for path in fixture_paths() {
        check_fixture::<f64>(&path, 1e-9, 1e-9);
    }
}
