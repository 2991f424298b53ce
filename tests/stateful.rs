//! Stateful training (`TrainConfig::stateful`, Keras' `stateful=True`):
//! truncated back-propagation through time on every device, against a
//! PyTorch float64 fixture that detaches the state at each chunk boundary
//! (`tools/make_train_fixtures.py`, `stateful`), and a stateful forward
//! against one pass over the whole sequence.

mod common;

use std::collections::HashMap;

use common::assert_close;
use common::gpu::gpu_or_skip;
use common::training::fixture;
use wgpu_lstm::reference::{Linear, ReferenceTrainer};
use wgpu_lstm::weights::SafetensorsPrefix;
use wgpu_lstm::{
    Batch, Device, HeadKind, Inputs, LossKind, LstmError, LstmWeights, Model, OptimizerKind, Real,
    Targets, TensorFile, TrainConfig, Trainer,
};

/// The CPU engine, and the GPU when there is one (required in CI).
fn devices(test: &str) -> Vec<Device> {
    let mut out = vec![Device::cpu()];
    out.extend(gpu_or_skip(test).map(Device::from_context));
    out
}

struct Fixture {
    file: TensorFile,
    meta: HashMap<String, String>,
}

impl Fixture {
    fn load() -> Self {
        let (bytes, meta) = fixture("stateful");
        Fixture {
            file: TensorFile::from_bytes(bytes).unwrap(),
            meta,
        }
    }
    fn n(&self, key: &str) -> usize {
        self.meta[key].parse().unwrap()
    }
    fn f32s(&self, key: &str) -> Vec<f32> {
        self.file.float::<f32>(key).unwrap().into_data()
    }
    /// The initial model, in `T`.
    fn model<T: Real>(&self) -> Model<T> {
        let st = self.file.safetensors();
        let lstm = LstmWeights::<T>::from_safetensors(&st, SafetensorsPrefix::Exact("init.lstm."))
            .unwrap();
        let w = self.file.float::<T>("init.head.weight").unwrap();
        Model {
            embedding: None,
            lstm,
            stack: Vec::new(),
            hidden: None,
            head: Linear {
                in_features: w.shape()[1],
                out_features: w.shape()[0],
                weight: w.into_data(),
                bias: self.file.float::<T>("init.head.bias").unwrap().into_data(),
            },
            head_kind: HeadKind::PerStep,
        }
    }
    /// (B, I, O): batch, input and output widths.
    fn dims(&self) -> (usize, usize, usize) {
        let x = self.file.float::<f32>("input").unwrap();
        let y = self.file.float::<f32>("target").unwrap();
        (x.shape()[1], x.shape()[2], y.shape()[2])
    }
}

fn config() -> TrainConfig {
    let mut cfg = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(0.01));
    cfg.stateful = true;
    cfg
}

/// Chunk k of the fixture's sequence, time-major, as a batch.
fn chunk<'a>(
    x: &'a [f32],
    y: &'a [f32],
    k: usize,
    tc: usize,
    dims: (usize, usize, usize),
) -> Batch<'a> {
    let (b, i, o) = dims;
    Batch {
        seq_len: tc,
        batch: b,
        inputs: Inputs::Features(&x[k * tc * b * i..(k + 1) * tc * b * i]),
        targets: Targets::Values(&y[k * tc * b * o..(k + 1) * tc * b * o]),
        lengths: None,
    }
}

#[test]
fn stateful_training_matches_pytorch_truncated_bptt() {
    let fx = Fixture::load();
    let (chunks, tc, dims) = (fx.n("chunks"), fx.n("chunk_len"), fx.dims());
    let (x, y) = (fx.f32s("input"), fx.f32s("target"));
    let want_loss = fx.file.float::<f64>("loss").unwrap().into_data();
    let final_params = |m: &Model<f32>| {
        for (name, _, values) in m.named_params() {
            let key = format!("final.{name}");
            let want = fx.file.float::<f64>(&key).unwrap().into_data();
            assert_close(&key, values, &want, 1e-5, 1e-5);
        }
    };

    // The f64 reference: to the rounding of the inputs, which reach a
    // trainer as f32 (`Inputs::Features`); measured 2.4e-8 relative.
    let mut reference = ReferenceTrainer::new(fx.model::<f64>(), config()).unwrap();
    for (k, &want) in want_loss.iter().enumerate() {
        let got = reference.step(&chunk(&x, &y, k, tc, dims)).unwrap();
        assert!(
            (got - want).abs() < 1e-7 * want.abs(),
            "f64 chunk {k}: {got} vs {want}"
        );
    }

    for device in devices("stateful_training_matches_pytorch_truncated_bptt") {
        let mut trainer = Trainer::new(&device, fx.model::<f32>(), config()).unwrap();
        for (k, &want) in want_loss.iter().enumerate() {
            let got = trainer.step_with_loss(&chunk(&x, &y, k, tc, dims)).unwrap() as f64;
            assert!(
                (got - want).abs() <= 1e-5 * want.abs(),
                "{device:?} chunk {k}: {got} vs {want}"
            );
        }
        final_params(&trainer.model().unwrap());

        // Without the state the second chunk's loss is another: the carried
        // state is what the fixture measures.
        let mut cfg = config();
        cfg.stateful = false;
        let mut plain = Trainer::new(&device, fx.model::<f32>(), cfg).unwrap();
        plain.step(&chunk(&x, &y, 0, tc, dims)).unwrap();
        let other = plain.step_with_loss(&chunk(&x, &y, 1, tc, dims)).unwrap() as f64;
        assert!(
            (other - want_loss[1]).abs() > 1e-3 * want_loss[1].abs(),
            "{device:?}: {other} vs {}",
            want_loss[1]
        );
        assert_eq!(chunks, want_loss.len());
    }
}

/// Predicting chunk by chunk with the state carried equals one pass over
/// the whole sequence (PyTorch's, with the initial weights, and the same
/// device's own); after `reset_states` the first chunk comes out as at first.
#[test]
fn a_stateful_forward_equals_one_long_forward() {
    let fx = Fixture::load();
    let (chunks, tc, dims) = (fx.n("chunks"), fx.n("chunk_len"), fx.dims());
    let (x, y) = (fx.f32s("input"), fx.f32s("target"));
    let want = fx
        .file
        .float::<f64>("init_full_output")
        .unwrap()
        .into_data();
    for device in devices("a_stateful_forward_equals_one_long_forward") {
        let mut trainer = Trainer::new(&device, fx.model::<f32>(), config()).unwrap();
        let mut got = Vec::new();
        for k in 0..chunks {
            got.extend(trainer.predict(&chunk(&x, &y, k, tc, dims)).unwrap());
        }
        assert_close(&format!("{device:?} vs PyTorch"), &got, &want, 1e-5, 0.0);

        let mut cfg = config();
        cfg.stateful = false;
        let mut whole = Trainer::new(&device, fx.model::<f32>(), cfg).unwrap();
        let all = whole.predict(&chunk(&x, &y, 0, chunks * tc, dims)).unwrap();
        assert_close(&format!("{device:?} vs one pass"), &got, &all, 1e-5, 0.0);

        trainer.reset_states();
        let first = trainer.predict(&chunk(&x, &y, 0, tc, dims)).unwrap();
        assert_close(
            &format!("{device:?} after reset"),
            &first,
            &got[..first.len()],
            1e-6,
            0.0,
        );
    }
}

#[test]
fn a_stateful_batch_of_another_size_needs_a_reset() {
    let fx = Fixture::load();
    let (tc, dims) = (fx.n("chunk_len"), fx.dims());
    let (x, y) = (fx.f32s("input"), fx.f32s("target"));
    let (b, i, o) = dims;
    for device in devices("a_stateful_batch_of_another_size_needs_a_reset") {
        let mut trainer = Trainer::new(&device, fx.model::<f32>(), config()).unwrap();
        trainer.step(&chunk(&x, &y, 0, tc, dims)).unwrap();
        // The first two sequences only.
        let xs: Vec<f32> = (0..tc)
            .flat_map(|t| x[t * b * i..t * b * i + 2 * i].to_vec())
            .collect();
        let ys: Vec<f32> = (0..tc)
            .flat_map(|t| y[t * b * o..t * b * o + 2 * o].to_vec())
            .collect();
        let small = Batch {
            seq_len: tc,
            batch: 2,
            inputs: Inputs::Features(&xs),
            targets: Targets::Values(&ys),
            lengths: None,
        };
        match trainer.step(&small) {
            Err(LstmError::InvalidValue { .. }) => {}
            other => panic!("{device:?}: {other:?}"),
        }
        trainer.reset_states();
        trainer.step(&small).unwrap();
    }
}
