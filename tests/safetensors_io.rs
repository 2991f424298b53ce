//! Loading and saving weights as safetensors: round trips, prefixes, dtype
//! conversion, and one test per kind of bad file, each asserting its variant.

mod common;

use std::collections::HashMap;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, serialize};
use wgpu_lstm::weights::{SafetensorsPrefix, detect_prefix};
use wgpu_lstm::{InitOptions, LstmConfig, LstmError, LstmWeights};

fn two_layer_bidir() -> LstmWeights<f32> {
    let cfg = LstmConfig::new(3, 4).num_layers(2).bidirectional(true);
    LstmWeights::init(&cfg, 7, InitOptions::default()).unwrap()
}

/// (name, dtype, shape, raw bytes) → a safetensors file.
fn file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    serialize(views, None).unwrap()
}

/// The weights' tensors as F32 entries, renamed by `rename` (None drops one).
fn entries(
    w: &LstmWeights<f32>,
    rename: impl Fn(&str) -> Option<String>,
) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    w.named_params()
        .into_iter()
        .filter_map(|(n, s, v)| {
            rename(&n).map(|n| (n, Dtype::F32, s, bytemuck::cast_slice(v).to_vec()))
        })
        .collect()
}

fn as_refs(e: &[(String, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> {
    e.iter()
        .map(|(n, d, s, b)| (n.as_str(), *d, s.clone(), b.clone()))
        .collect()
}

fn load(bytes: &[u8]) -> Result<LstmWeights<f32>, LstmError> {
    LstmWeights::from_safetensors_bytes(bytes, SafetensorsPrefix::Auto)
}

#[test]
fn round_trip_with_and_without_prefix() {
    let w = two_layer_bidir();
    for prefix in ["", "lstm.", "encoder.rnn."] {
        let bytes = w.to_safetensors_bytes(prefix).unwrap();
        assert_eq!(load(&bytes).unwrap(), w, "auto-detected prefix {prefix:?}");
        let exact = LstmWeights::from_safetensors_bytes(&bytes, SafetensorsPrefix::Exact(prefix));
        assert_eq!(exact.unwrap(), w);
    }
}

#[test]
fn save_to_file_replaces_atomically_and_reloads() {
    let dir = std::env::temp_dir().join(format!("wgpu-lstm-io-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.safetensors");
    let w = two_layer_bidir();
    w.save_safetensors(&path, "lstm.").unwrap();
    w.save_safetensors(&path, "lstm.").unwrap();
    let back = LstmWeights::<f32>::load_safetensors(&path, SafetensorsPrefix::Auto).unwrap();
    assert_eq!(back, w);
    // No temporary file is left beside it.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn architecture_is_inferred_from_names_and_shapes() {
    let cfg = LstmConfig::new(5, 6).num_layers(3).bias(false);
    let w = LstmWeights::<f32>::init(&cfg, 1, InitOptions::default()).unwrap();
    let back = load(&w.to_safetensors_bytes("").unwrap()).unwrap();
    assert_eq!(back.config, cfg);
}

#[test]
fn an_exact_prefix_ignores_other_modules() {
    let w = two_layer_bidir();
    let mut e = entries(&w, |n| Some(format!("lstm.{n}")));
    e.push(("fc.weight".into(), Dtype::F32, vec![2], vec![0; 8]));
    let bytes = file(&as_refs(&e));
    let got = LstmWeights::<f32>::from_safetensors_bytes(&bytes, SafetensorsPrefix::Exact("lstm."));
    assert_eq!(got.unwrap(), w);
    // Auto-detection needs one prefix for every key, so `fc.weight` is unexpected.
    assert!(
        matches!(load(&bytes), Err(LstmError::UnexpectedTensor { name }) if name == "fc.weight")
    );
    assert_eq!(detect_prefix(["a.weight_ih_l0", "a.x"]), Some("a.".into()));
    assert_eq!(detect_prefix(["a.weight_ih_l0", "b.x"]), None);
}

#[test]
fn half_bfloat_and_double_are_converted() {
    let w = two_layer_bidir();
    type Encode = fn(f32) -> Vec<u8>;
    let convert: [(Dtype, Encode); 3] = [
        (Dtype::F16, |v| {
            half::f16::from_f32(v).to_le_bytes().to_vec()
        }),
        (Dtype::BF16, |v| {
            half::bf16::from_f32(v).to_le_bytes().to_vec()
        }),
        (Dtype::F64, |v| (v as f64).to_le_bytes().to_vec()),
    ];
    for (dtype, conv) in convert {
        let e: Vec<_> = w
            .named_params()
            .into_iter()
            .map(|(n, s, v)| (n, dtype, s, v.iter().flat_map(|&x| conv(x)).collect()))
            .collect();
        let back = load(&file(&as_refs(&e))).unwrap();
        let tol = match dtype {
            Dtype::F16 => 1e-3,
            Dtype::BF16 => 4e-3,
            _ => 0.0,
        };
        for ((_, _, a), (_, _, b)) in back.named_params().iter().zip(w.named_params().iter()) {
            for (x, y) in a.iter().zip(b.iter()) {
                assert!((x - y).abs() <= tol, "{dtype:?}: {x} vs {y}");
            }
        }
    }
}

#[test]
fn missing_tensor() {
    let w = two_layer_bidir();
    let e = entries(&w, |n| (n != "weight_hh_l1_reverse").then(|| n.to_string()));
    let err = load(&file(&as_refs(&e))).unwrap_err();
    assert!(
        matches!(&err, LstmError::MissingTensor { name, .. } if name == "weight_hh_l1_reverse"),
        "{err}"
    );
    // A bias missing in one layer while others have them.
    let e = entries(&w, |n| (n != "bias_ih_l1").then(|| n.to_string()));
    let err = load(&file(&as_refs(&e))).unwrap_err();
    assert!(
        matches!(&err, LstmError::MissingTensor { name, .. } if name == "bias_ih_l1"),
        "{err}"
    );
}

#[test]
fn unexpected_tensor() {
    let w = two_layer_bidir();
    let mut e = entries(&w, |n| Some(n.to_string()));
    e.push((
        "weight_ih_l0_backward".into(),
        Dtype::F32,
        vec![1],
        vec![0; 4],
    ));
    let err = load(&file(&as_refs(&e))).unwrap_err();
    assert!(
        matches!(&err, LstmError::UnexpectedTensor { name } if name == "weight_ih_l0_backward"),
        "{err}"
    );
}

#[test]
fn wrong_shape() {
    let w = two_layer_bidir();
    let mut e = entries(&w, |n| Some(n.to_string()));
    let bias = e.iter_mut().find(|t| t.0 == "bias_hh_l0").unwrap();
    bias.2 = vec![4, 4];
    let err = load(&file(&as_refs(&e))).unwrap_err();
    assert!(
        matches!(&err, LstmError::ShapeMismatch { name, expected, got }
        if name == "bias_hh_l0" && expected == &[16] && got == &[4, 4]),
        "{err}"
    );
}

#[test]
fn inconsistent_layers() {
    // Layer 1 built for hidden size 2 while layer 0 has 4.
    let w = two_layer_bidir();
    let other = LstmWeights::<f32>::init(
        &LstmConfig::new(8, 2).num_layers(2).bidirectional(true),
        1,
        InitOptions::default(),
    )
    .unwrap();
    let mut e = entries(&w, |n| (!n.contains("_l1")).then(|| n.to_string()));
    e.extend(entries(&other, |n| {
        n.contains("_l1").then(|| n.to_string())
    }));
    let err = load(&file(&as_refs(&e))).unwrap_err();
    assert!(matches!(err, LstmError::InconsistentLayers { .. }), "{err}");
    // weight_hh_l0 that is neither an LSTM's [4H, H] nor a GRU's [3H, H].
    let e = vec![
        ("weight_ih_l0", Dtype::F32, vec![10, 3], vec![0u8; 120]),
        ("weight_hh_l0", Dtype::F32, vec![10, 4], vec![0u8; 160]),
    ];
    assert!(matches!(
        load(&file(&e)),
        Err(LstmError::InconsistentLayers { .. })
    ));
}

#[test]
fn integer_dtype_is_rejected() {
    let w = two_layer_bidir();
    let mut e = entries(&w, |n| Some(n.to_string()));
    let t = e.iter_mut().find(|t| t.0 == "weight_ih_l0").unwrap();
    t.1 = Dtype::I32;
    let err = load(&file(&as_refs(&e))).unwrap_err();
    assert!(
        matches!(&err, LstmError::UnsupportedDtype { name, .. } if name == "weight_ih_l0"),
        "{err}"
    );
}

#[test]
fn non_finite_weights_are_rejected() {
    let w = two_layer_bidir();
    let mut e = entries(&w, |n| Some(n.to_string()));
    let t = e.iter_mut().find(|t| t.0 == "weight_hh_l0").unwrap();
    t.3[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    let err = load(&file(&as_refs(&e))).unwrap_err();
    assert!(
        matches!(&err, LstmError::InvalidValue { name, .. } if name == "weight_hh_l0"),
        "{err}"
    );
}

#[test]
fn projection_lstms_round_trip_with_proj_size_inferred() {
    let cfg = LstmConfig::new(3, 5)
        .num_layers(2)
        .bidirectional(true)
        .proj_size(2);
    let w = LstmWeights::<f32>::init(&cfg, 7, InitOptions::default()).unwrap();
    let bytes = w.to_safetensors_bytes("lstm.").unwrap();
    let back = load(&bytes).unwrap();
    assert_eq!(back.config.proj_size, 2);
    assert_eq!(back, w);
    // Without one layer's projection, the file is incomplete.
    let e = entries(&w, |n| (n != "weight_hr_l1_reverse").then(|| n.to_string()));
    let err = load(&file(&as_refs(&e))).unwrap_err();
    assert!(
        matches!(&err, LstmError::MissingTensor { name, hint } if name == "weight_hr_l1_reverse" && hint.contains("projections")),
        "{err}"
    );
}

#[test]
fn a_projection_that_does_not_fit_the_recurrent_weights_is_an_error() {
    // weight_hh is [4H, H] (no projection) but a weight_hr says P = 2.
    let w = two_layer_bidir();
    let mut e = entries(&w, |n| Some(n.to_string()));
    e.push(("weight_hr_l0".into(), Dtype::F32, vec![2, 4], vec![0; 32]));
    let err = load(&file(&as_refs(&e))).unwrap_err();
    assert!(
        matches!(
            &err,
            LstmError::ShapeMismatch { .. } | LstmError::InconsistentLayers { .. }
        ),
        "{err}"
    );
    // P ≥ H is not a projection.
    let mut e = entries(&w, |n| Some(n.to_string()));
    e.push(("weight_hr_l0".into(), Dtype::F32, vec![4, 4], vec![0; 64]));
    let err = load(&file(&as_refs(&e))).unwrap_err();
    assert!(
        matches!(&err, LstmError::InconsistentLayers { .. }),
        "{err}"
    );
}

fn assert_invalid_file(bytes: &[u8], what: &str) {
    match load(bytes) {
        Err(LstmError::InvalidFile { .. }) => {}
        other => panic!("{what}: expected InvalidFile, got {other:?}"),
    }
}

#[test]
fn not_a_safetensors_file() {
    assert_invalid_file(b"", "empty file");
    assert_invalid_file(b"PK\x03\x04", "shorter than the header length");
    assert_invalid_file(
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00 a zip archive",
        "zip (torch.save)",
    );
    assert_invalid_file(b"\x80\x02}q\x00(X\x06\x00\x00\x00weightq\x01", "a pickle");
    assert_invalid_file(
        b"{\"weight_ih_l0\": [1, 2, 3]} plain JSON",
        "JSON without length",
    );
}

#[test]
fn truncated_file() {
    let bytes = two_layer_bidir().to_safetensors_bytes("").unwrap();
    for cut in [bytes.len() - 1, bytes.len() / 2, 20, 8] {
        assert_invalid_file(&bytes[..cut], &format!("truncated to {cut} bytes"));
    }
}

fn raw(header: &str, data_len: usize, declared_len: Option<u64>) -> Vec<u8> {
    let mut out = declared_len
        .unwrap_or(header.len() as u64)
        .to_le_bytes()
        .to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend(std::iter::repeat_n(0u8, data_len));
    out
}

#[test]
fn hostile_headers() {
    let ok = r#"{"weight_ih_l0":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    assert_invalid_file(&raw(ok, 8, Some(10_000)), "header length past end of file");
    assert_invalid_file(&raw(ok, 8, Some(u64::MAX)), "header length u64::MAX");
    let overlap = r#"{"weight_ih_l0":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                      "weight_hh_l0":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    assert_invalid_file(&raw(overlap, 12, None), "overlapping offsets");
    let past_end = r#"{"weight_ih_l0":{"dtype":"F32","shape":[2],"data_offsets":[0,800]}}"#;
    assert_invalid_file(&raw(past_end, 8, None), "offsets past the data");
    let huge =
        r#"{"weight_ih_l0":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,8]}}"#;
    assert_invalid_file(&raw(huge, 8, None), "shape product overflows");
    let reversed = r#"{"weight_ih_l0":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#;
    assert_invalid_file(&raw(reversed, 8, None), "end before start");
}

#[test]
fn every_single_byte_corruption_is_an_error_or_a_valid_load_never_a_panic() {
    let bytes = LstmWeights::<f32>::init(&LstmConfig::new(1, 1), 1, InitOptions::default())
        .unwrap()
        .to_safetensors_bytes("")
        .unwrap();
    let mut outcomes = HashMap::new();
    for i in 0..bytes.len() {
        for v in [0x00, 0xff, b'"', b'9', b'{'] {
            let mut b = bytes.clone();
            b[i] = v;
            let kind = match load(&b) {
                Ok(_) => "ok",
                Err(LstmError::InvalidFile { .. }) => "invalid file",
                Err(_) => "other typed error",
            };
            *outcomes.entry(kind).or_insert(0) += 1;
        }
    }
    assert!(outcomes["invalid file"] > 0, "{outcomes:?}");
}

fn state_dict(name: &str) -> std::path::PathBuf {
    common::root()
        .join("tests/fixtures/state_dicts")
        .join(format!("{name}.safetensors"))
}

#[test]
fn a_torch_saved_state_dict_loads_unchanged_and_saves_back_identically() {
    // save_file(nn.LSTM(6, 10, num_layers=2, bidirectional=True).state_dict(), path)
    let path = state_dict("lstm_f32");
    let w = LstmWeights::<f32>::load_safetensors(&path, SafetensorsPrefix::Auto).unwrap();
    let expected = LstmConfig::new(6, 10).num_layers(2).bidirectional(true);
    assert_eq!(w.config, expected);
    // Saving again gives the same tensors, bit for bit, under the same names.
    let torch_bytes = std::fs::read(&path).unwrap();
    let ours = w.to_safetensors_bytes("").unwrap();
    let (a, b) = (
        safetensors::SafeTensors::deserialize(&torch_bytes).unwrap(),
        safetensors::SafeTensors::deserialize(&ours).unwrap(),
    );
    let mut names = a.names();
    names.sort();
    let mut our_names = b.names();
    our_names.sort();
    assert_eq!(names, our_names);
    for n in names {
        let (x, y) = (a.tensor(n).unwrap(), b.tensor(n).unwrap());
        assert_eq!(
            (x.dtype(), x.shape(), x.data()),
            (y.dtype(), y.shape(), y.data()),
            "{n}"
        );
    }
}

#[test]
fn torch_half_and_bfloat16_state_dicts_load_as_their_rounded_values() {
    let f32w =
        LstmWeights::<f32>::load_safetensors(state_dict("lstm_f32"), SafetensorsPrefix::Auto)
            .unwrap();
    type Round = fn(f32) -> f32;
    let round: [(&str, Round); 2] = [
        ("lstm_f16", |v| half::f16::from_f32(v).to_f32()),
        ("lstm_bf16", |v| half::bf16::from_f32(v).to_f32()),
    ];
    for (file, round) in round {
        let w = LstmWeights::<f32>::load_safetensors(state_dict(file), SafetensorsPrefix::Auto)
            .unwrap();
        assert_eq!(w.config, f32w.config);
        for ((n, _, got), (_, _, full)) in w.named_params().iter().zip(f32w.named_params().iter()) {
            let want: Vec<f32> = full.iter().map(|&v| round(v)).collect();
            assert_eq!(*got, &want[..], "{file}: {n}");
        }
    }
}

#[test]
fn the_lstm_of_a_larger_model_loads_by_its_module_prefix() {
    // A model with the LSTM at `encoder.rnn` and a `head = nn.Linear(20, 3)`.
    let path = state_dict("model_with_head");
    let lstm =
        LstmWeights::<f32>::load_safetensors(&path, SafetensorsPrefix::Exact("encoder.rnn."))
            .unwrap();
    let alone =
        LstmWeights::<f32>::load_safetensors(state_dict("lstm_f32"), SafetensorsPrefix::Auto)
            .unwrap();
    assert_eq!(lstm, alone);
    let err = LstmWeights::<f32>::load_safetensors(&path, SafetensorsPrefix::Auto).unwrap_err();
    assert!(
        matches!(&err, LstmError::UnexpectedTensor { name } if name.starts_with("head.")),
        "{err}"
    );
}
