//! The one matrix product of the reference and the CPU engine, backed by
//! the [`gemm`](https://crates.io/crates/gemm) crate: packed SIMD kernels for
//! f32 and f64, and a dedicated path when one side is a vector (the recurrent
//! product at batch size 1).

use crate::real::Real;

/// Who computes a product: the calling thread alone (the reference is
/// single-threaded), or the threads of the current rayon pool (the CPU
/// engine; see [`crate::cpu::CpuEngine`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Threads {
    One,
    Pool,
}

/// A read-only matrix view: `rows × cols` with element (i, j) at
/// `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `[rows, cols]` matrix.
    pub(crate) fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
        assert!(data.len() >= rows * cols, "matrix view past its buffer");
        MatRef {
            data,
            rows,
            cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose, without moving data.
    pub(crate) fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// `c[m, n] = a[m, k] · b[k, n]`, plus the old `c` when `accumulate`.
/// `c` is row-major and dense.
pub(crate) fn matmul<T: Real>(
    threads: Threads,
    c: &mut [T],
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    accumulate: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    assert!(c.len() >= m * n, "output smaller than m·n");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(T::zero());
        }
        return;
    }
    // SAFETY: the asserts above and in `MatRef::new` keep every index
    // (i·rs + j·cs for i < rows, j < cols) inside its slice.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            match threads {
                Threads::One => gemm::Parallelism::None,
                Threads::Pool => gemm::Parallelism::Rayon(0),
            },
        )
    }
}
