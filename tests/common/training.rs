//! The PyTorch training fixtures (`tools/make_train_fixtures.py`): reading a
//! case and the optimizer, schedule and clipping its metadata describes.

use std::collections::HashMap;

use safetensors::SafeTensors;
use wgpu_lstm::reference::{LrSchedule, OptimizerKind};

pub fn fixture(name: &str) -> (Vec<u8>, HashMap<String, String>) {
    let path = super::root()
        .join("tests/fixtures/training")
        .join(format!("{name}.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap_or_default();
    (bytes, meta)
}

/// The optimizer, schedule and clipping the fixture's metadata describes.
pub fn setup_from_meta(meta: &HashMap<String, String>) -> (OptimizerKind, LrSchedule, Option<f64>) {
    let num = |k: &str| meta[k].parse::<f64>().unwrap();
    let kind = match meta["optimizer"].as_str() {
        "sgd" => OptimizerKind::Sgd {
            lr: num("lr"),
            momentum: num("momentum"),
            dampening: num("dampening"),
            weight_decay: num("weight_decay"),
            nesterov: meta["nesterov"] == "true",
        },
        adam => {
            let (b1, b2) = meta["betas"].split_once(',').unwrap();
            let betas = (b1.parse().unwrap(), b2.parse().unwrap());
            let (lr, eps, weight_decay) = (num("lr"), num("eps"), num("weight_decay"));
            match adam {
                "adam" => OptimizerKind::Adam {
                    lr,
                    betas,
                    eps,
                    weight_decay,
                },
                "adamw" => OptimizerKind::AdamW {
                    lr,
                    betas,
                    eps,
                    weight_decay,
                },
                other => panic!("unknown optimizer {other}"),
            }
        }
    };
    let schedule = match meta["schedule"].as_str() {
        "constant" => LrSchedule::Constant,
        "cosine" => LrSchedule::Cosine {
            t_max: meta["t_max"].parse().unwrap(),
            eta_min: num("eta_min"),
        },
        other => panic!("unknown schedule {other}"),
    };
    let clip = (meta["clip_max_norm"] != "none").then(|| num("clip_max_norm"));
    (kind, schedule, clip)
}

/// The fixture's `clip_grad_value_` limit, applied after the norm's; `None`
/// when it has none.
pub fn clip_value_from_meta(meta: &HashMap<String, String>) -> Option<f64> {
    meta.get("clip_value")
        .filter(|v| *v != "none")
        .map(|v| v.parse().unwrap())
}

/// Trains a two-output last-step model of `lstm` for 4 Adam steps on the CPU
/// and on the GPU from the same start and the same seeded batch, checks that
/// the losses agree within 1e-5 and the parameters within 1e-4 of each
/// tensor's largest magnitude, and returns the GPU's trained model.
pub fn gpu_trains_as_the_cpu(lstm: &wgpu_lstm::LstmConfig) -> wgpu_lstm::Model<f32> {
    use wgpu_lstm::{
        Batch, Device, HeadKind, Inputs, LossKind, Model, Targets, TrainConfig, Trainer,
    };
    let model = Model::<f32>::new(None, lstm, 2, HeadKind::LastStep, 4).unwrap();
    let (t, b, i) = (6, 5, lstm.input_size);
    let x: Vec<f32> = (0..t * b * i)
        .map(|k| ((k * 37 % 19) as f32 / 9.5) - 1.0)
        .collect();
    let y: Vec<f32> = (0..b * 2).map(|k| (k % 3) as f32 - 1.0).collect();
    let batch = Batch {
        seq_len: t,
        batch: b,
        inputs: Inputs::Features(&x),
        targets: Targets::Values(&y),
        lengths: None,
    };
    let config = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(1e-2));
    let mut cpu = Trainer::new(&Device::cpu(), model.clone(), config.clone()).unwrap();
    let mut gpu = Trainer::new(&Device::gpu().unwrap(), model, config).unwrap();
    for step in 0..4 {
        let (a, g) = (
            cpu.step_with_loss(&batch).unwrap(),
            gpu.step_with_loss(&batch).unwrap(),
        );
        assert!(
            (a - g).abs() <= 1e-5 * a.abs().max(1.0),
            "step {step}: {a} vs {g}"
        );
    }
    let (a, g) = (cpu.model().unwrap(), gpu.model().unwrap());
    for ((n, _, p), (_, _, q)) in a.named_params().into_iter().zip(g.named_params()) {
        super::assert_close_to_max(n.as_str(), q, p, 1e-4);
    }
    assert_eq!(g.lstm.config, a.lstm.config);
    g
}

/// An optimizer fixture's starting model (`init.lstm.*` and `init.head.*`:
/// an LSTM and a per-step linear head) and its training configuration (MSE
/// with the optimizer, schedule and clipping its metadata describes).
pub fn optimizer_case(
    file: &wgpu_lstm::TensorFile,
    meta: &HashMap<String, String>,
) -> (wgpu_lstm::Model<f32>, wgpu_lstm::model::TrainConfig) {
    use wgpu_lstm::model::{HeadKind, LossKind, Model, TrainConfig};
    use wgpu_lstm::weights::SafetensorsPrefix;
    let get = |k: &str| file.float::<f32>(k).unwrap();
    let lstm = wgpu_lstm::LstmWeights::<f32>::from_tensor_file(
        file,
        SafetensorsPrefix::Exact("init.lstm."),
    )
    .unwrap();
    let (hw, hb) = (get("init.head.weight"), get("init.head.bias"));
    let head = wgpu_lstm::reference::Linear {
        in_features: hw.shape()[1],
        out_features: hw.shape()[0],
        weight: hw.into_data(),
        bias: hb.into_data(),
    };
    let model = Model {
        embedding: None,
        lstm,
        stack: Vec::new(),
        hidden: None,
        head,
        head_kind: HeadKind::PerStep,
    };
    let (kind, schedule, clip) = setup_from_meta(meta);
    let mut cfg = TrainConfig::new(LossKind::Mse, kind);
    cfg.schedule = schedule;
    cfg.clip_grad_norm = clip;
    cfg.clip_grad_value = clip_value_from_meta(meta);
    (model, cfg)
}
