//! The PyTorch `nn.LSTM` fixtures (`tools/make_fixtures.py` documents every
//! tensor): listing the cases and loading one for a forward pass.

use std::path::PathBuf;

use safetensors::SafeTensors;
use wgpu_lstm::TensorFile;
use wgpu_lstm::reference::Gradients;
use wgpu_lstm::weights::SafetensorsPrefix;
use wgpu_lstm::{LstmInput, LstmWeights, Real, Tensor};

/// Every case as (name, file bytes), sorted by name.
pub fn cases() -> Vec<(String, Vec<u8>)> {
    cases_in("tests/fixtures")
}

/// The projection-LSTM (`proj_size` > 0) cases, in `tests/fixtures/proj`.
pub fn proj_cases() -> Vec<(String, Vec<u8>)> {
    cases_in("tests/fixtures/proj")
}

pub fn cases_in(folder: &str) -> Vec<(String, Vec<u8>)> {
    let dir = super::root().join(folder);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// One case, in float type `T`.
pub struct Case<T: Real> {
    pub st_bytes: Vec<u8>,
    pub weights: LstmWeights<T>,
    pub input: Tensor<T>,
    pub state: Option<(Tensor<T>, Tensor<T>)>,
    pub lengths: Option<Vec<usize>>,
}

impl<T: Real> Case<T> {
    pub fn load(bytes: &[u8]) -> Self {
        let file = TensorFile::from_bytes(bytes.to_vec()).unwrap();
        let st = file.safetensors();
        let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
        let mut weights =
            LstmWeights::<T>::from_safetensors(&st, SafetensorsPrefix::Exact("lstm.")).unwrap();
        weights.config.batch_first = meta.metadata().as_ref().unwrap()["batch_first"] == "true";
        let get = |k: &str| file.float::<T>(k).unwrap();
        Case {
            st_bytes: bytes.to_vec(),
            input: get("input"),
            state: file.contains("h_0").then(|| (get("h_0"), get("c_0"))),
            lengths: file.contains("lengths").then(|| {
                file.integers("lengths")
                    .unwrap()
                    .iter()
                    .map(|&l| l as usize)
                    .collect()
            }),
            weights,
        }
    }

    /// The forward pass's input, initial state and lengths.
    pub fn x(&self) -> LstmInput<'_, T> {
        let mut x = LstmInput::new(&self.input);
        if let Some((h, c)) = &self.state {
            x = x.with_state(h, c);
        }
        if let Some(l) = &self.lengths {
            x = x.with_lengths(l);
        }
        x
    }

    /// The upstream gradients of the fixture's loss: d_output, d_h_n, d_c_n.
    pub fn upstream(&self) -> (Tensor<T>, Tensor<T>, Tensor<T>) {
        (
            self.tensor("d_output"),
            self.tensor("d_h_n"),
            self.tensor("d_c_n"),
        )
    }

    /// Every gradient of `got` beside the fixture's key for it: `grad.input`,
    /// `grad.h_0` and `grad.c_0` when the case gives a state, and
    /// `grad.lstm.{name}` for each parameter.
    pub fn gradient_keys(&self, got: &Gradients<T>) -> Vec<(String, Vec<T>)> {
        let mut checks = vec![("grad.input".to_string(), got.d_input.data().to_vec())];
        if self.state.is_some() {
            checks.push(("grad.h_0".into(), got.d_h_0.data().to_vec()));
            checks.push(("grad.c_0".into(), got.d_c_0.data().to_vec()));
        }
        for (p, _, g) in got.weights.named_params() {
            checks.push((format!("grad.lstm.{p}"), g.to_vec()));
        }
        checks
    }

    /// Any tensor of the file, e.g. `output` or `grad.lstm.weight_hh_l0`.
    pub fn tensor<U: Real>(&self, key: &str) -> Tensor<U> {
        TensorFile::from_bytes(self.st_bytes.clone())
            .unwrap()
            .float(key)
            .unwrap()
    }
}

/// One GRU fixture (`tools/make_variant_fixtures.py`: `gru/` and
/// `gru_variants/`), in float type `T`: the weights under `gru.` with the
/// metadata's `batch_first` and, where the file has them, its dropouts and
/// seed; the input, `h_0` and lengths.
pub struct GruFixture<T: Real> {
    pub file: TensorFile,
    pub weights: LstmWeights<T>,
    pub input: Tensor<T>,
    pub h_0: Option<Tensor<T>>,
    pub lengths: Option<Vec<usize>>,
    /// The dropout seed (0 where the file has none).
    pub seed: u64,
}

impl<T: Real> GruFixture<T> {
    pub fn load(bytes: &[u8]) -> Self {
        let file = TensorFile::from_bytes(bytes.to_vec()).unwrap();
        let meta = file.metadata();
        let mut weights =
            LstmWeights::<T>::from_tensor_file(&file, SafetensorsPrefix::Exact("gru.")).unwrap();
        let cfg = &mut weights.config;
        cfg.batch_first = meta["batch_first"] == "true";
        let p = |k: &str| meta.get(k).map_or(0.0, |v| v.parse().unwrap());
        cfg.dropout = p("dropout");
        cfg.input_dropout = p("input_dropout");
        cfg.recurrent_dropout = p("recurrent_dropout");
        let seed = meta.get("dropout_seed").map_or(0, |v| v.parse().unwrap());
        let get = |k: &str| file.float::<T>(k).unwrap();
        GruFixture {
            input: get("input"),
            h_0: file.contains("h_0").then(|| get("h_0")),
            lengths: file.contains("lengths").then(|| {
                file.integers("lengths")
                    .unwrap()
                    .iter()
                    .map(|&l| l as usize)
                    .collect()
            }),
            weights,
            seed,
            file,
        }
    }

    /// The forward pass's input, `h_0` and lengths.
    pub fn x(&self) -> LstmInput<'_, T> {
        let mut x = LstmInput::new(&self.input);
        if let Some(h) = &self.h_0 {
            x = x.with_h_0(h);
        }
        if let Some(l) = &self.lengths {
            x = x.with_lengths(l);
        }
        x
    }

    /// Any tensor of the file, e.g. `output` or `grad.gru.weight_hh_l0`.
    pub fn tensor<U: Real>(&self, key: &str) -> Tensor<U> {
        self.file.float(key).unwrap()
    }
}
