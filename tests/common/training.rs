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
