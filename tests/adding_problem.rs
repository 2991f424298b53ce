//! The adding problem (Hochreiter & Schmidhuber 1997), learnt by an LSTM and
//! by a GRU on the CPU engine: two marked values, one in each half of a
//! sequence of T = 100 steps, must be added at the end, which takes carrying
//! information across the sequence. Always predicting the mean scores an MSE
//! of about 1/6; both cells must reach a held-out MSE below 0.01.

mod common;

use common::adding_batch;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use wgpu_lstm::model::{Batch, HeadKind, Inputs, LossKind, Model, Targets, TrainConfig};
use wgpu_lstm::{Device, LstmConfig, OptimizerKind, Trainer};

/// Trains `cfg` until the held-out MSE is below 0.005 or `max_steps` pass;
/// returns (held-out MSE, steps).
fn train(cfg: LstmConfig, max_steps: usize) -> (f64, usize) {
    let (t, b) = (100, 64);
    let mut model = Model::<f32>::new(None, &cfg, 1, HeadKind::LastStep, 3).unwrap();
    if cfg.cell == wgpu_lstm::Cell::Lstm {
        // Keras' unit_forget_bias: start by remembering.
        let h = cfg.hidden_size;
        for lw in &mut model.lstm.layers {
            if let (Some(bi), Some(bh)) = (&mut lw.bias_ih, &mut lw.bias_hh) {
                bi[h..2 * h].fill(1.0);
                bh[h..2 * h].fill(0.0);
            }
        }
    }
    let mut config = TrainConfig::new(LossKind::Mse, OptimizerKind::adam(0.01));
    config.clip_grad_norm = Some(1.0);
    let mut trainer = Trainer::new(&Device::cpu(), model, config).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (tx, ty) = adding_batch(&mut ChaCha8Rng::seed_from_u64(99), t, 500);
    let test = Batch {
        seq_len: t,
        batch: 500,
        inputs: Inputs::Features(&tx),
        targets: Targets::Values(&ty),
        lengths: None,
    };
    let mut mse = f64::NAN;
    for step in 1..=max_steps {
        let (x, y) = adding_batch(&mut rng, t, b);
        let batch = Batch {
            seq_len: t,
            batch: b,
            inputs: Inputs::Features(&x),
            targets: Targets::Values(&y),
            lengths: None,
        };
        trainer.step(&batch).unwrap();
        if step % 100 == 0 {
            mse = trainer.evaluate(&test).unwrap();
            if mse < 0.005 {
                return (mse, step);
            }
        }
    }
    (mse, max_steps)
}

#[test]
fn an_lstm_and_a_gru_learn_the_adding_problem_on_the_cpu_engine() {
    for cfg in [LstmConfig::new(2, 32), LstmConfig::gru(2, 32)] {
        let (mse, steps) = train(cfg.clone(), 3000);
        eprintln!("{:?}: held-out MSE {mse:.5} after {steps} steps", cfg.cell);
        assert!(
            mse < 0.01,
            "{:?}: held-out MSE {mse} after {steps} steps",
            cfg.cell
        );
    }
}
