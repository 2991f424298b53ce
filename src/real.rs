//! `Real`: the float types the CPU reference runs in (f32, and f64 for
//! finite-difference gradient checks).

use std::fmt::Debug;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A float the CPU reference can compute in: `f32` or `f64` (sealed).
pub trait Real:
    num_traits::Float + Default + Debug + Send + Sync + bytemuck::Pod + sealed::Sealed + 'static
{
    fn from_f64(x: f64) -> Self;
    fn as_f64(self) -> f64;

    /// Logistic sigmoid, finite for every finite input.
    fn sigmoid(self) -> Self {
        // exp(-x) overflows to +inf for very negative x, giving 1/inf = 0: correct.
        // For very positive x, exp(-x) underflows to 0, giving 1: correct.
        let one = Self::one();
        one / (one + (-self).exp())
    }
}

impl Real for f32 {
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    fn from_f64(x: f64) -> Self {
        x
    }
    fn as_f64(self) -> f64 {
        self
    }
}
