//! The tiled GEMM kernel (`shaders/gemm.wgsl`).

use super::Kernel;
use crate::error::{LstmError, Result};
use crate::gpu::{GpuContext, Precision};

/// Mirrors `GemmParams` in `shaders/gemm.wgsl`, field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GemmParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub lda: u32,
    pub ldb: u32,
    pub ldc: u32,
    pub a_off: u32,
    pub b_off: u32,
    pub c_off: u32,
    pub bias_off: u32,
    pub flags: u32,
    pub _pad: u32,
}
const _: () = assert!(std::mem::size_of::<GemmParams>() == 48);

impl GemmParams {
    pub const TRANS_A: u32 = 1;
    pub const TRANS_B: u32 = 2;
    pub const BIAS: u32 = 4;
    /// Adds the old C (the shader's epilogue): a long reduction split over
    /// dispatches.
    pub const ACCUMULATE: u32 = 8;
    /// With `BIAS`, also adds the N values that follow the bias (the LSTM's
    /// b_hh after its b_ih).
    pub const BIAS_PAIR: u32 = 16;

    /// This product as dispatches over consecutive blocks of at most
    /// [`GEMM_K_CHUNK`] rows of its reduction, in order, each after the first
    /// adding to C; itself alone when K fits one block.
    pub fn split_k(self) -> Vec<GemmParams> {
        let chunks = self.k.div_ceil(GEMM_K_CHUNK).max(1);
        (0..chunks)
            .map(|c| {
                let k0 = c * GEMM_K_CHUNK;
                let mut q = self;
                q.k = GEMM_K_CHUNK.min(self.k - k0);
                // Where row k0 of op(A) and of op(B) starts as stored.
                q.a_off += k0
                    * if self.flags & Self::TRANS_A != 0 {
                        self.lda
                    } else {
                        1
                    };
                q.b_off += k0
                    * if self.flags & Self::TRANS_B != 0 {
                        1
                    } else {
                        self.ldb
                    };
                if c > 0 {
                    q.flags |= Self::ACCUMULATE;
                }
                q
            })
            .collect()
    }
}

/// Rows of the reduction one GEMM dispatch takes. A longer product (the
/// weight gradients reduce over all T·B rows) runs as several dispatches of
/// at most this many rows, each adding to the last (`ACCUMULATE`): a
/// workgroup that loops over hundreds of thousands of rows alone returned
/// wrong sums on lavapipe (from about 58,000 rows, 3,600 steps of 16 rows
/// with two barriers each, measured), and sums in blocks round less.
pub(crate) const GEMM_K_CHUNK: u32 = 16384;

/// A product to encode: `c = op(a) · op(b) (+ bias) (+ c)`.
pub struct GemmOp<'a> {
    pub params: GemmParams,
    pub a: &'a wgpu::Buffer,
    pub b: &'a wgpu::Buffer,
    /// Any buffer when `params.flags` lacks `BIAS`.
    pub bias: &'a wgpu::Buffer,
    pub c: &'a wgpu::Buffer,
}

/// The storage types of a product's operands A, B, bias and C.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GemmTypes {
    pub a: Precision,
    pub b: Precision,
    pub bias: Precision,
    pub c: Precision,
}

bindings! {
    /// What one product binds: its parameters, then A, B, bias and C as stored.
    struct GemmBuffers {
        params: Uniform<GemmParams>,
        a: Read,
        b: Read,
        bias: Read,
        c: ReadWrite,
    }
}

/// Owns one GEMM pipeline, for one set of operand types. Clones share it.
#[derive(Clone)]
pub struct GemmKernel {
    kernel: Kernel,
}

/// Output tile edge of one workgroup: BM = BN in the shader, declared from
/// here.
const TILE: u32 = 64;

impl GemmKernel {
    /// The all-f32 product.
    pub fn new(ctx: &GpuContext) -> Self {
        Self::typed(ctx, GemmTypes::default())
    }

    /// A product whose operands are stored as `types` (f32 accumulation).
    pub fn typed(ctx: &GpuContext, types: GemmTypes) -> Self {
        let kernel = Kernel::new_typed::<GemmBuffers>(
            ctx,
            "gemm",
            include_str!("../../../shaders/gemm.wgsl"),
            "main",
            &[
                ("a_t", types.a),
                ("b_t", types.b),
                ("bias_t", types.bias),
                ("c_t", types.c),
            ],
            &[("BM", TILE), ("BN", TILE)],
        );
        GemmKernel { kernel }
    }

    /// A bind group for `op`, reading its parameters from `params_buffer` at
    /// `params_offset` (written by the caller).
    pub fn bind(
        &self,
        ctx: &GpuContext,
        op: &GemmOp<'_>,
        params_buffer: &wgpu::Buffer,
        params_offset: u64,
    ) -> wgpu::BindGroup {
        self.kernel.bind(
            ctx,
            &GemmBuffers {
                params: (params_buffer, params_offset),
                a: op.a,
                b: op.b,
                bias: op.bias,
                c: op.c,
            },
        )
    }

    /// The kernel itself, for dispatch lists of mixed kernels.
    pub(crate) fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Workgroups for an M×N product, checked against the device limit.
    pub fn workgroups(ctx: &GpuContext, params: &GemmParams) -> Result<(u32, u32)> {
        let (x, y) = (params.n.div_ceil(TILE), params.m.div_ceil(TILE));
        let limit = ctx.limits().max_compute_workgroups_per_dimension;
        if x.max(y) > limit {
            return Err(LstmError::DeviceLimit {
                what: format!("a {}×{} matrix product", params.m, params.n),
                limit: "max_compute_workgroups_per_dimension",
                requested: x.max(y) as u64,
                available: limit as u64,
            });
        }
        Ok((x, y))
    }

    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        bind_group: &wgpu::BindGroup,
        workgroups: (u32, u32),
    ) {
        self.kernel
            .encode(ctx, pass, bind_group, (workgroups.0, workgroups.1, 1));
    }
}

/// The GEMMs of the LSTM passes, each for its operands' storage types: with
/// [`Precision::F16`], weights, the input projection G, the saved h and the
/// gate gradients dG are f16, while the layer inputs X, the `ones` vector and
/// every gradient GEMM's output are f32. With f32 all six share one pipeline.
#[derive(Clone)]
pub struct LstmGemms {
    /// G [T·B, D·4H] = X · W_ihᵀ + b_ih + b_hh.
    pub forward: GemmKernel,
    /// dW_ih = dGᵀ · X.
    pub weight_ih: GemmKernel,
    /// dW_hh = H_prevᵀ · dG.
    pub weight_hh: GemmKernel,
    /// db = 1ᵀ · dG.
    pub bias: GemmKernel,
    /// dX = dG · W_ih.
    pub input: GemmKernel,
    /// dW_hr = dhᵀ · M (LSTMP hidden projection; every operand f32).
    pub weight_hr: GemmKernel,
}

impl LstmGemms {
    pub fn new(ctx: &GpuContext, precision: Precision) -> Self {
        use Precision::F32;
        let s = precision;
        if s == F32 {
            let k = GemmKernel::new(ctx);
            return LstmGemms {
                forward: k.clone(),
                weight_ih: k.clone(),
                weight_hh: k.clone(),
                bias: k.clone(),
                input: k.clone(),
                weight_hr: k,
            };
        }
        let typed = |a, b, bias, c| GemmKernel::typed(ctx, GemmTypes { a, b, bias, c });
        LstmGemms {
            forward: typed(F32, s, s, s),
            weight_ih: typed(s, F32, F32, F32),
            weight_hh: typed(s, s, F32, F32),
            bias: typed(F32, s, F32, F32),
            input: typed(s, s, F32, F32),
            weight_hr: GemmKernel::new(ctx),
        }
    }
}

/// A standalone C[M, N] = A[M, K] · B[N, K]ᵀ on random data, for measuring the
/// GEMM kernel by itself (benches, `tools/gpu_bench.sh`). The product is the
/// shape of the LSTM's input projection.
pub struct GemmRunner {
    kernel: GemmKernel,
    bind_group: wgpu::BindGroup,
    groups: (u32, u32),
    _buffers: [wgpu::Buffer; 4],
    /// Rows of C.
    pub m: usize,
    /// Columns of C.
    pub n: usize,
    /// The inner dimension.
    pub k: usize,
}

impl GemmRunner {
    /// Buffers for an [m, k] · [n, k]ᵀ product, filled with fixed values.
    pub fn new(ctx: &GpuContext, m: usize, n: usize, k: usize) -> Result<Self> {
        use crate::gpu::tensor::TENSOR_USAGE;
        let buffer = |label: &str, len: usize, fill: f32| -> Result<wgpu::Buffer> {
            let b = ctx.create_buffer(label, 4 * len as u64, TENSOR_USAGE)?;
            let data: Vec<f32> = (0..len)
                .map(|i| fill * ((i % 17) as f32 - 8.0) / 8.0)
                .collect();
            ctx.queue().write_buffer(&b, 0, bytemuck::cast_slice(&data));
            Ok(b)
        };
        let (a, b, c) = (
            buffer("gemm A", m * k, 1.0)?,
            buffer("gemm B", n * k, 0.5)?,
            buffer("gemm C", m * n, 0.0)?,
        );
        let params = GemmParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            lda: k as u32,
            ldb: k as u32,
            ldc: n as u32,
            flags: GemmParams::TRANS_B,
            ..Default::default()
        };
        let uniform = ctx.create_buffer(
            "gemm params",
            std::mem::size_of::<GemmParams>() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        ctx.queue()
            .write_buffer(&uniform, 0, bytemuck::bytes_of(&params));
        let kernel = GemmKernel::new(ctx);
        let op = GemmOp {
            params,
            a: &a,
            b: &b,
            bias: &a,
            c: &c,
        };
        let groups = GemmKernel::workgroups(ctx, &params)?;
        let bind_group = kernel.bind(ctx, &op, &uniform, 0);
        ctx.check()?;
        Ok(GemmRunner {
            kernel,
            bind_group,
            groups,
            _buffers: [a, b, c, uniform],
            m,
            n,
            k,
        })
    }

    /// Runs the product `repeats` times in one submit and waits for it.
    pub fn run(&self, ctx: &GpuContext, repeats: usize) -> Result<()> {
        let mut enc = ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("gemm bench"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("gemm bench"),
                timestamp_writes: None,
            });
            for _ in 0..repeats {
                self.kernel
                    .encode(ctx, &mut pass, &self.bind_group, self.groups);
            }
        }
        ctx.submit_and_wait(enc)
    }

    /// FLOPs of one product: 2·M·N·K.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}
