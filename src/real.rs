//! `Real`: the float types the reference runs in (f32, and f64 for
//! finite-difference gradient checks).

use std::fmt::Debug;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A float the reference can compute in: `f32` or `f64` (sealed).
pub trait Real:
    num_traits::Float + Default + Debug + Send + Sync + bytemuck::Pod + sealed::Sealed + 'static
{
    /// Converts from `f64`, rounding to nearest for `f32` (`as` cast).
    fn from_f64(x: f64) -> Self;
    /// Converts to `f64`, exactly.
    fn as_f64(self) -> f64;

    /// Logistic sigmoid, finite for every finite input.
    fn sigmoid(self) -> Self {
        // exp(-x) overflows to +inf for very negative x, giving 1/inf = 0: correct.
        // For very positive x, exp(-x) underflows to 0, giving 1: correct.
        let one = Self::one();
        one / (one + (-self).exp())
    }

    /// Hyperbolic tangent, finite and saturating at ±1 for every finite input.
    fn tanh_act(self) -> Self {
        self.tanh()
    }
}

impl Real for f32 {
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }

    /// glibc's `tanhf` goes through `expm1f` and costs about a third of an
    /// f32 forward pass, so f32 uses `exp`, which is several times faster:
    /// tanh(x) = 1 - 2/(e^{2x} + 1) (relative error within 4 ulp, saturating
    /// exactly: e^{2x} = inf gives 1, e^{2x} = 0 gives -1), and a short odd
    /// Taylor series for |x| < 1/4, where that form would cancel.
    fn tanh_act(self) -> Self {
        let x = self;
        if x.abs() < 0.25 {
            // x - x³/3 + 2x⁵/15 - 17x⁷/315 + 62x⁹/2835
            let x2 = x * x;
            let p = 62.0 / 2835.0;
            let p = p * x2 - 17.0 / 315.0;
            let p = p * x2 + 2.0 / 15.0;
            let p = p * x2 - 1.0 / 3.0;
            x + x * x2 * p
        } else {
            1.0 - 2.0 / ((2.0 * x).exp() + 1.0)
        }
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

#[cfg(test)]
mod tests {
    use super::Real;

    #[test]
    fn f32_tanh_matches_f64_and_saturates() {
        let mut worst = 0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4; // [-20, 20], densely around the 0.25 switch
            let exact = (x as f64).tanh();
            let err = (x.tanh_act() as f64 - exact).abs() / exact.abs().max(1e-30);
            worst = worst.max(if x == 0.0 { 0.0 } else { err });
        }
        // 1 - 2/(e^{2x}+1) loses 2 bits just above the switch at 1/4: 4 ulp.
        assert!(
            worst < 4.0 * f32::EPSILON as f64,
            "worst relative error {worst:e}"
        );
        for (x, want) in [
            (1e4f32, 1.0),
            (-1e4, -1.0),
            (f32::MAX, 1.0),
            (-f32::MAX, -1.0),
        ] {
            assert_eq!(x.tanh_act(), want);
            assert!(x.sigmoid().is_finite());
        }
        assert_eq!(1e4f32.sigmoid(), 1.0);
        assert_eq!((-1e4f32).sigmoid(), 0.0);
        assert_eq!(1e-30f32.tanh_act(), 1e-30);
    }
}
