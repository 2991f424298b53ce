//! Time series: scaling and sliding windows, for `forecast`.

use std::ops::Range;

use rand::Rng;

use super::split_by_position;

/// An affine standardisation `z = (x - mean) / std`, fitted on training data
/// only (fit on the training part, apply to both parts).
#[derive(Clone, Copy, Debug)]
pub struct Scaler {
    pub mean: f32,
    pub std: f32,
}

impl Scaler {
    /// Mean and (population) standard deviation of `xs`; a zero std becomes 1.
    pub fn fit(xs: &[f32]) -> Scaler {
        let n = xs.len().max(1) as f64;
        let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        let std = if var > 0.0 { var.sqrt() } else { 1.0 };
        Scaler {
            mean: mean as f32,
            std: std as f32,
        }
    }

    pub fn apply(&self, x: f32) -> f32 {
        (x - self.mean) / self.std
    }

    pub fn invert(&self, z: f32) -> f32 {
        z * self.std + self.mean
    }
}

/// Sliding windows over a series for one-step-ahead forecasting, split by
/// time: the window ending before index `i` (`series[i - T .. i]`) predicts
/// `series[i]`. Windows whose target lies in the last `test_fraction` of the
/// series form the test set; all others the training set. (A test window's
/// input may reach back into the training years; its target never does.)
#[derive(Clone, Debug)]
pub struct SeriesWindows {
    pub series: Vec<f32>,
    /// The window length `T`.
    pub window: usize,
    /// Index of the first test target.
    pub split: usize,
}

impl SeriesWindows {
    pub fn new(series: Vec<f32>, window: usize, test_fraction: f64) -> SeriesWindows {
        assert!(window >= 1);
        let (train, _) = split_by_position(&series, test_fraction);
        let split = train.len().max(window + 1);
        assert!(
            split <= series.len(),
            "series of {} values too short for window {window}",
            series.len()
        );
        SeriesWindows {
            series,
            window,
            split,
        }
    }

    /// Target indices of the training windows: `T .. split`.
    pub fn train_targets(&self) -> Range<usize> {
        self.window..self.split
    }

    /// Target indices of the test windows: `split .. len`.
    pub fn test_targets(&self) -> Range<usize> {
        self.split..self.series.len()
    }

    /// The batch predicting the given target indices: `(input [T, B, 1],
    /// target [B, 1])`, with `B = targets.len()`.
    pub fn batch(&self, targets: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let (t_len, batch) = (self.window, targets.len());
        let mut input = vec![0.0f32; t_len * batch];
        for (b, &i) in targets.iter().enumerate() {
            assert!(
                i >= t_len && i < self.series.len(),
                "target index {i} has no full window"
            );
            for t in 0..t_len {
                input[t * batch + b] = self.series[i - t_len + t];
            }
        }
        let target = targets.iter().map(|&i| self.series[i]).collect();
        (input, target)
    }

    /// `batch` training windows drawn uniformly (with replacement).
    pub fn train_batch(&self, rng: &mut impl Rng, batch: usize) -> (Vec<f32>, Vec<f32>) {
        let r = self.train_targets();
        let targets: Vec<usize> = (0..batch).map(|_| rng.random_range(r.clone())).collect();
        self.batch(&targets)
    }

    /// All test windows, in order of time, as one batch.
    pub fn test_batch(&self) -> (Vec<f32>, Vec<f32>) {
        self.batch(&self.test_targets().collect::<Vec<_>>())
    }
}
