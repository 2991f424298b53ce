//! A plain host tensor: a shape and a row-major buffer.

use crate::error::{LstmError, Result};
use crate::real::Real;

/// A dense, row-major host tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T = f32> {
    shape: Vec<usize>,
    data: Vec<T>,
}

impl<T: Real> Tensor<T> {
    /// Wraps `data` as a tensor of `shape`; the element count must match.
    pub fn new(shape: impl Into<Vec<usize>>, data: Vec<T>) -> Result<Self> {
        let shape = shape.into();
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(LstmError::value(
                "tensor data",
                format!("shape {shape:?} needs {n} elements, got {}", data.len()),
            ));
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of `shape` filled with zeros.
    pub fn zeros(shape: impl Into<Vec<usize>>) -> Self {
        let shape = shape.into();
        let n = shape.iter().product();
        Tensor {
            shape,
            data: vec![T::zero(); n],
        }
    }

    /// The size of each axis, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The elements, row-major, mutable (the shape stays fixed).
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// The row-major element buffer, without the shape.
    pub fn into_data(self) -> Vec<T> {
        self.data
    }

    /// Converts every element to another float type.
    pub fn cast<U: Real>(&self) -> Tensor<U> {
        Tensor {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&x| U::from_f64(x.as_f64())).collect(),
        }
    }

    /// Swaps the first two axes: [A, B, rest...] -> [B, A, rest...].
    /// Converts between time-major [T, B, F] and batch-first [B, T, F].
    pub fn swap_first_two_axes(&self) -> Self {
        assert!(self.shape.len() >= 2, "swap_first_two_axes needs rank >= 2");
        let (a, b) = (self.shape[0], self.shape[1]);
        let inner: usize = self.shape[2..].iter().product();
        let mut out = Vec::with_capacity(self.data.len());
        for j in 0..b {
            for i in 0..a {
                let start = (i * b + j) * inner;
                out.extend_from_slice(&self.data[start..start + inner]);
            }
        }
        let mut shape = self.shape.clone();
        shape.swap(0, 1);
        Tensor { shape, data: out }
    }
}
