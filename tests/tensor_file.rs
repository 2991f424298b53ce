//! `TensorFile` and `save_tensors`: round trips, dtype conversion against
//! values computed independently, metadata, atomic replacement, and typed
//! errors for missing tensors, wrong dtypes and malformed files.

use std::collections::HashMap;

use safetensors::serialize;
use safetensors::tensor::TensorView;
use wgpu_lstm::tensor_file::Dtype;
use wgpu_lstm::{LstmError, Tensor, TensorFile, save_tensors};

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wgpu-lstm-tf-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// (name, dtype, shape, little-endian bytes) → a safetensors buffer.
fn raw_file(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.to_string(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    serialize(views, None).unwrap()
}

#[test]
fn f32_and_f64_round_trip_exactly_with_metadata() {
    let dir = TempDir::new("round");
    let path = dir.0.join("t.safetensors");
    let a = Tensor::new(vec![2, 2], vec![1.5f32, -0.25, 3.0e-8, 7.0]).unwrap();
    let b = Tensor::new(vec![3], vec![0.1f32, 0.2, 0.3]).unwrap();
    let meta = HashMap::from([("note".to_string(), "from a test".to_string())]);
    save_tensors(&path, &[("b", &b), ("a", &a)], Some(meta.clone())).unwrap();
    let file = TensorFile::open(&path).unwrap();
    assert_eq!(file.names(), ["a", "b"], "sorted names");
    assert_eq!(file.path(), Some(path.as_path()));
    assert_eq!(file.metadata(), meta);
    assert_eq!(file.dtype("a"), Some(Dtype::F32));
    assert_eq!(file.shape("b"), Some(vec![3]));
    assert!(file.contains("a") && !file.contains("c"));
    assert_eq!(file.float::<f32>("a").unwrap(), a);
    // f32 → f64 is exact.
    let wide = file.float::<f64>("b").unwrap();
    let want: Vec<f64> = b.data().iter().map(|&x| x as f64).collect();
    assert_eq!(wide.data(), &want[..]);

    let d = Tensor::new(vec![2], vec![0.1f64, 1.0 / 3.0]).unwrap();
    save_tensors(&path, &[("d", &d)], None).unwrap();
    let file = TensorFile::open(&path).unwrap();
    assert_eq!(file.dtype("d"), Some(Dtype::F64), "f64 is stored as F64");
    assert_eq!(file.float::<f64>("d").unwrap(), d);
    assert!(file.metadata().is_empty());
}

#[test]
fn saving_replaces_a_file_whole_and_leaves_no_temporary() {
    let dir = TempDir::new("atomic");
    let path = dir.0.join("out.safetensors");
    let one = Tensor::new(vec![1], vec![1.0f32]).unwrap();
    let two = Tensor::new(vec![2], vec![2.0f32, 3.0]).unwrap();
    save_tensors(&path, &[("x", &one)], None).unwrap();
    save_tensors(&path, &[("y", &two)], None).unwrap();
    let file = TensorFile::open(&path).unwrap();
    assert_eq!(file.names(), ["y"]);
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
}

#[test]
fn half_bfloat_and_integer_dtypes_are_converted() {
    // 1.5, -2 and 0.099975586 (the f16 nearest 0.1) in IEEE half, written by
    // hand; 1.5 and -2 in bfloat16; integers in four widths.
    let f16: Vec<u8> = [0x3E00u16, 0xC000, 0x2E66]
        .iter()
        .flat_map(|h| h.to_le_bytes())
        .collect();
    let bf16: Vec<u8> = [0x3FC0u16, 0xC000]
        .iter()
        .flat_map(|h| h.to_le_bytes())
        .collect();
    let i64s: Vec<u8> = [5i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
    let i32s: Vec<u8> = [7i32, 3].iter().flat_map(|v| v.to_le_bytes()).collect();
    let u32s: Vec<u8> = [u32::MAX].iter().flat_map(|v| v.to_le_bytes()).collect();
    let bytes = raw_file(&[
        ("h", Dtype::F16, vec![3], f16),
        ("bf", Dtype::BF16, vec![2], bf16),
        ("l64", Dtype::I64, vec![2], i64s),
        ("l32", Dtype::I32, vec![2], i32s),
        ("u32", Dtype::U32, vec![1], u32s),
        ("u8", Dtype::U8, vec![3], vec![0, 1, 255]),
    ]);
    let file = TensorFile::from_bytes(bytes).unwrap();
    assert_eq!(file.path(), None);
    assert_eq!(
        file.float::<f64>("h").unwrap().data(),
        &[1.5, -2.0, 0.0999755859375]
    );
    assert_eq!(file.float::<f32>("bf").unwrap().data(), &[1.5, -2.0]);
    assert_eq!(file.integers("l64").unwrap(), [5, -1]);
    assert_eq!(file.integers("l32").unwrap(), [7, 3]);
    assert_eq!(file.integers("u32").unwrap(), [u32::MAX as i64]);
    assert_eq!(file.integers("u8").unwrap(), [0, 1, 255]);

    // Floats are not integers, and integers are not floats.
    assert!(matches!(
        file.integers("h"),
        Err(LstmError::UnsupportedDtype { .. })
    ));
    assert!(matches!(
        file.float::<f32>("l64"),
        Err(LstmError::UnsupportedDtype { .. })
    ));
}

#[test]
fn a_missing_tensor_is_a_typed_error() {
    let t = Tensor::new(vec![1], vec![0.0f32]).unwrap();
    let dir = TempDir::new("missing");
    let path = dir.0.join("t.safetensors");
    save_tensors(&path, &[("x", &t)], None).unwrap();
    let file = TensorFile::open(&path).unwrap();
    assert_eq!(file.dtype("nope"), None);
    assert_eq!(file.shape("nope"), None);
    for err in [
        file.float::<f32>("nope").unwrap_err(),
        file.integers("nope").unwrap_err(),
    ] {
        assert!(
            matches!(&err, LstmError::MissingTensor { name, .. } if name == "nope"),
            "{err:?}"
        );
    }
}

#[test]
fn malformed_files_and_missing_paths_are_typed_errors() {
    for (what, bytes) in [
        ("empty", b"".to_vec()),
        (
            "a zip archive",
            b"PK\x03\x04\x14\x00\x00\x00\x08\x00 zip".to_vec(),
        ),
        ("header length past the end", {
            let mut b = 10_000u64.to_le_bytes().to_vec();
            b.extend_from_slice(b"{}");
            b
        }),
    ] {
        let err = TensorFile::from_bytes(bytes).unwrap_err();
        assert!(
            matches!(err, LstmError::InvalidFile { path: None, .. }),
            "{what}: {err:?}"
        );
    }
    let dir = TempDir::new("bad");
    let bad = dir.0.join("bad.safetensors");
    std::fs::write(&bad, b"not a tensor file").unwrap();
    match TensorFile::open(&bad) {
        Err(LstmError::InvalidFile { path, .. }) => {
            assert_eq!(path.as_deref(), Some(bad.as_path()))
        }
        other => panic!("expected InvalidFile naming the path, got {other:?}"),
    }
    let absent = dir.0.join("absent.safetensors");
    assert!(matches!(
        TensorFile::open(&absent),
        Err(LstmError::Io { action: "read", .. })
    ));
}
