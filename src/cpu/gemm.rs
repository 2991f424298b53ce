//! The CPU reference's one matrix product, backed by a well-kept GEMM crate.
//!
//! Two crates are wired in so the benchmark can compare them (`benches/cpu_gemm.rs`):
//! - [`gemm`](https://crates.io/crates/gemm) (default): packed SIMD kernels for
//!   f32 and f64, threaded with rayon, and a dedicated path when one side is a
//!   vector, which is the recurrent product at batch size 1.
//! - [`matrixmultiply`](https://crates.io/crates/matrixmultiply): BLIS-style
//!   kernels threaded per `MATMUL_NUM_THREADS` (default: physical cores).

use std::any::TypeId;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::real::Real;

/// Which crate computes [`matmul`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmBackend {
    /// The `gemm` crate, multithreaded through rayon.
    Gemm,
    /// The `matrixmultiply` crate with its `threading` feature.
    MatrixMultiply,
}

static BACKEND: AtomicU8 = AtomicU8::new(0);

/// Selects the GEMM crate for every later CPU matrix product in this process.
pub fn set_backend(backend: GemmBackend) {
    BACKEND.store(backend as u8, Ordering::Relaxed);
}

/// The GEMM crate currently in use.
pub fn backend() -> GemmBackend {
    match BACKEND.load(Ordering::Relaxed) {
        0 => GemmBackend::Gemm,
        _ => GemmBackend::MatrixMultiply,
    }
}

/// A read-only matrix view: `rows × cols` with element (i, j) at
/// `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `[rows, cols]` matrix.
    pub fn new(data: &'a [T], rows: usize, cols: usize) -> Self {
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
    pub fn t(self) -> Self {
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
pub fn matmul<T: Real>(c: &mut [T], a: MatRef<'_, T>, b: MatRef<'_, T>, accumulate: bool) {
    matmul_with(backend(), c, a, b, accumulate)
}

/// [`matmul`] with an explicit backend (for benchmarks).
pub fn matmul_with<T: Real>(
    backend: GemmBackend,
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
    match backend {
        // SAFETY: the asserts above and in `MatRef::new` keep every index
        // (i·rs + j·cs for i < rows, j < cols) inside its slice.
        GemmBackend::Gemm => unsafe {
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
                // Inside a pool thread (a batch chunk of `split.rs`), the
                // other threads are busy with the other chunks.
                if rayon::current_thread_index().is_some() {
                    gemm::Parallelism::None
                } else {
                    gemm::Parallelism::Rayon(0)
                },
            )
        },
        GemmBackend::MatrixMultiply => {
            let beta: f64 = if accumulate { 1.0 } else { 0.0 };
            let beta32 = beta as f32;
            let (rsa, csa) = (a.row_stride as isize, a.col_stride as isize);
            let (rsb, csb) = (b.row_stride as isize, b.col_stride as isize);
            // SAFETY: as above; the casts only reinterpret T as the identical type.
            unsafe {
                if TypeId::of::<T>() == TypeId::of::<f32>() {
                    let cast = |s: &[T]| bytemuck::cast_slice::<T, f32>(s).as_ptr();
                    let cp = bytemuck::cast_slice_mut::<T, f32>(c).as_mut_ptr();
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        cast(a.data),
                        rsa,
                        csa,
                        cast(b.data),
                        rsb,
                        csb,
                        beta32,
                        cp,
                        n as isize,
                        1,
                    );
                } else {
                    let cast = |s: &[T]| bytemuck::cast_slice::<T, f64>(s).as_ptr();
                    let cp = bytemuck::cast_slice_mut::<T, f64>(c).as_mut_ptr();
                    matrixmultiply::dgemm(
                        m,
                        k,
                        n,
                        1.0,
                        cast(a.data),
                        rsa,
                        csa,
                        cast(b.data),
                        rsb,
                        csb,
                        beta,
                        cp,
                        n as isize,
                        1,
                    );
                }
            }
        }
    }
}
