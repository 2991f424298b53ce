//! One LSTM test case with seeded data: the configuration and sizes, and
//! the input, initial state and upstream gradients drawn for it.

use wgpu_lstm::reference::OutputGrads;
use wgpu_lstm::{LstmConfig, LstmInput, Real, Tensor};

use super::random_tensor;

pub struct Case {
    pub config: LstmConfig,
    pub seq_len: usize,
    pub batch: usize,
    pub lengths: Option<Vec<usize>>,
    pub with_state: bool,
    /// Input values are drawn from [-scale, scale).
    pub scale: f64,
}

impl Case {
    pub fn new(config: LstmConfig, seq_len: usize, batch: usize) -> Self {
        Case {
            config,
            seq_len,
            batch,
            lengths: None,
            with_state: false,
            scale: 1.0,
        }
    }

    /// Seeded tensors for this case: seeds `seed`, `seed + 1`, ... in field order.
    pub fn data<T: Real>(&self, seed: u64) -> Data<T> {
        let cfg = &self.config;
        let (t, b) = (self.seq_len, self.batch);
        let time_major = |f| {
            if cfg.batch_first {
                [b, t, f]
            } else {
                [t, b, f]
            }
        };
        // h is [D·L, B, H_out] (P with a projection), c is [D·L, B, H].
        let slots = cfg.num_layers * cfg.num_directions();
        let (h_state, c_state) = ([slots, b, cfg.hidden_out()], [slots, b, cfg.hidden_size]);
        Data {
            input: random_tensor(&time_major(cfg.input_size), seed, self.scale),
            h_0: random_tensor(&h_state, seed + 1, 0.5),
            c_0: random_tensor(&c_state, seed + 2, 0.5),
            d_output: random_tensor(&time_major(cfg.output_size()), seed + 3, 1.0),
            d_h_n: random_tensor(&h_state, seed + 4, 1.0),
            d_c_n: random_tensor(&c_state, seed + 5, 1.0),
        }
    }

    /// The forward pass's inputs: `data`'s input, and its state and this
    /// case's lengths where the case has them.
    pub fn input<'a, T: Real>(&'a self, data: &'a Data<T>) -> LstmInput<'a, T> {
        let mut x = LstmInput::new(&data.input);
        if self.with_state {
            x = x.with_state(&data.h_0, &data.c_0);
        }
        if let Some(l) = &self.lengths {
            x = x.with_lengths(l);
        }
        x
    }
}

pub struct Data<T: Real> {
    pub input: Tensor<T>,
    pub h_0: Tensor<T>,
    pub c_0: Tensor<T>,
    pub d_output: Tensor<T>,
    pub d_h_n: Tensor<T>,
    pub d_c_n: Tensor<T>,
}

impl<T: Real> Data<T> {
    /// The same values in another float type (exactly, from f32 to f64).
    pub fn cast<U: Real>(&self) -> Data<U> {
        Data {
            input: self.input.cast(),
            h_0: self.h_0.cast(),
            c_0: self.c_0.cast(),
            d_output: self.d_output.cast(),
            d_h_n: self.d_h_n.cast(),
            d_c_n: self.d_c_n.cast(),
        }
    }

    pub fn grads(&self) -> OutputGrads<'_, T> {
        OutputGrads {
            d_output: &self.d_output,
            d_h_n: Some(&self.d_h_n),
            d_c_n: Some(&self.d_c_n),
        }
    }
}
