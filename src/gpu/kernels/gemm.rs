//! The tiled GEMM kernel (`shaders/gemm.wgsl`).

use super::{ColumnSumKernel, ColumnSumParams, Kernel, check_groups};
use crate::error::Result;
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
    /// 0, or rows of K per slice of a split K: workgroup z reduces rows
    /// [z·k_split, (z + 1)·k_split) and stores its partial sum alone in
    /// C's z-th M × ldc slab (see [`GemmParams::split_parallel`]).
    pub k_split: u32,
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

    /// C[M, N] = op(A) · op(B) over whole, contiguous operands stored as
    /// `layout` says (leading dimensions from the shape), with the extra
    /// epilogue `flags`.
    pub fn dense(m: u32, n: u32, k: u32, layout: GemmLayout, flags: u32) -> Self {
        GemmParams {
            m,
            n,
            k,
            lda: if layout.trans_a { m } else { k },
            ldb: if layout.trans_b { k } else { n },
            ldc: n,
            flags: flags | layout.flags(),
            ..Default::default()
        }
    }

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

    /// Whether a tiled kernel may load this product's operands as `vec4`s:
    /// their offsets and row strides are multiples of 4 (buffers are
    /// allocated in multiples of 16 bytes).
    pub fn aligned(&self) -> bool {
        [self.a_off, self.lda, self.b_off, self.ldb]
            .iter()
            .all(|v| v.is_multiple_of(4))
    }

    /// Slices of K (workgroups along z): 1 unless K is split.
    pub fn slices(&self) -> u32 {
        match self.k_split {
            0 => 1,
            s => self.k.div_ceil(s).max(1),
        }
    }

    /// This product with its K split into `splits` slices computed in
    /// parallel, each into its own M × N slab of a workspace, and the column
    /// sum that adds the slabs, in slice order, into C (with this product's
    /// `ACCUMULATE`): `None` when it is not split (`splits` ≤ 1, K too short
    /// for two slices of 64 rows, or an epilogue with a bias). Slices are
    /// whole multiples of 64 rows. The workspace needs
    /// `slices() · M · N` f32 elements.
    pub fn split_parallel(self, splits: u32) -> Option<(GemmParams, ColumnSumParams)> {
        const ROWS: u32 = 64;
        if splits <= 1 || self.k < 2 * ROWS || self.flags & (Self::BIAS | Self::BIAS_PAIR) != 0 {
            return None;
        }
        let k_split = self.k.div_ceil(splits).div_ceil(ROWS) * ROWS;
        let slices = self.k.div_ceil(k_split);
        if slices <= 1 {
            return None;
        }
        let cells = self.m * self.n;
        let gemm = GemmParams {
            ldc: self.n,
            c_off: 0,
            flags: self.flags & (Self::TRANS_A | Self::TRANS_B),
            k_split,
            ..self
        };
        // Assumes C dense from c_off: a row stride of N.
        debug_assert_eq!(self.ldc, self.n, "a split product writes a dense C");
        let sum = ColumnSumParams {
            rows: slices,
            cols: cells,
            ld: cells,
            src_off: 0,
            pair: 0,
            accumulate: u32::from(self.flags & Self::ACCUMULATE != 0),
            dst_off: self.c_off,
            _pad: 0,
        };
        Some((gemm, sum))
    }
}

/// Rows of the reduction one GEMM (or column-sum) dispatch takes. A longer
/// product (the weight gradients reduce over all T·B rows) runs as several
/// dispatches of at most this many rows, each adding to the last
/// (`ACCUMULATE`): on lavapipe, long loops returned wrong sums (measured: the
/// GEMM from about 58,000 rows, 3,600 steps of 16 rows; a barrier-free
/// column sum at 65,920 iterations per invocation), and sums in blocks round
/// less.
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

/// Which operands a product reads transposed: a pipeline constant, so
/// loads carry no transpose branch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GemmLayout {
    /// A is stored [K, M].
    pub trans_a: bool,
    /// B is stored [N, K].
    pub trans_b: bool,
}

impl GemmLayout {
    /// A [M, K], B [K, N].
    pub const NN: GemmLayout = GemmLayout {
        trans_a: false,
        trans_b: false,
    };
    /// B stored [N, K]: the input projection X · W_ihᵀ.
    pub const NT: GemmLayout = GemmLayout {
        trans_a: false,
        trans_b: true,
    };
    /// A stored [K, M]: the weight gradients dGᵀ · X.
    pub const TN: GemmLayout = GemmLayout {
        trans_a: true,
        trans_b: false,
    };

    /// The `TRANS_A` / `TRANS_B` flags of this layout.
    pub fn flags(self) -> u32 {
        (if self.trans_a { GemmParams::TRANS_A } else { 0 })
            | (if self.trans_b { GemmParams::TRANS_B } else { 0 })
    }

    /// The layout `flags` (`TRANS_A`, `TRANS_B`) describe.
    pub fn of(flags: u32) -> Self {
        GemmLayout {
            trans_a: flags & GemmParams::TRANS_A != 0,
            trans_b: flags & GemmParams::TRANS_B != 0,
        }
    }
}

/// How a GEMM kernel feeds its invocations (see `shaders/gemm.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmKind {
    /// K through workgroup-memory tiles of A and B (`gemm_tiled.wgsl`).
    Tiled,
    /// No workgroup memory: each invocation owns all `tm` rows of the
    /// workgroup's tile, so A is read at workgroup-uniform addresses (a
    /// broadcast) and B straight from memory (`gemm_direct.wgsl`).
    Direct,
}

/// A workgroup's share of C: a `bm` × `bn` tile, `tm` × `tn` per
/// invocation, so (bm / tm) · (bn / tn) invocations; a tiled kernel steps
/// K `bk` at a time through workgroup memory (256 invocations), a direct
/// one has `bm` = `tm` (one row of invocations) and no K tile (`bk` = 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmTile {
    /// How the kernel reaches its operands.
    pub kind: GemmKind,
    /// Rows of C per workgroup.
    pub bm: u32,
    /// Columns of C per workgroup.
    pub bn: u32,
    /// K per workgroup-memory step (0 for a direct kernel).
    pub bk: u32,
    /// Rows per invocation.
    pub tm: u32,
    /// Columns per invocation.
    pub tn: u32,
}

impl GemmTile {
    /// 64 × 64, 4 × 4 per invocation.
    pub const T64: GemmTile = GemmTile::tiled(64, 64, 16, 4, 4);
    /// The tiles each product can run with; every one is tested.
    pub const CANDIDATES: [GemmTile; 7] = [
        GemmTile::T64,
        GemmTile::tiled(128, 128, 8, 8, 8),
        GemmTile::tiled(128, 64, 16, 8, 4),
        GemmTile::tiled(32, 32, 16, 2, 2),
        // Direct kernels: 64 and 128 accumulators per invocation fit a
        // GPU's registers; 512 suit a CPU implementation that runs
        // invocations as SIMD lanes (lavapipe), where each memory access
        // costs a loop over the lanes and FMAs are cheap.
        GemmTile::direct(8, 32, 8),
        GemmTile::direct(16, 32, 8),
        GemmTile::direct(32, 16, 16),
    ];

    const fn tiled(bm: u32, bn: u32, bk: u32, tm: u32, tn: u32) -> Self {
        GemmTile {
            kind: GemmKind::Tiled,
            bm,
            bn,
            bk,
            tm,
            tn,
        }
    }

    /// `tm` rows × `wx` invocations of `tn` columns each.
    const fn direct(tm: u32, wx: u32, tn: u32) -> Self {
        GemmTile {
            kind: GemmKind::Direct,
            bm: tm,
            bn: wx * tn,
            bk: 0,
            tm,
            tn,
        }
    }

    /// The constants the shader declares for this tile in `layout`. A tile
    /// stored with K across invocations is padded to 32 / BK words past a
    /// multiple of 32 per K row, so those stores fall in distinct banks.
    fn constants(&self, layout: GemmLayout) -> [(&'static str, u32); 10] {
        let pad = |k_fast: bool| {
            if k_fast && self.bk > 0 {
                32 / self.bk
            } else {
                0
            }
        };
        [
            ("BM", self.bm),
            ("BN", self.bn),
            ("BK", self.bk),
            ("TM", self.tm),
            ("TN", self.tn),
            ("WX", self.bn / self.tn),
            ("WY", self.bm / self.tm),
            ("TA", layout.trans_a as u32),
            ("TB", layout.trans_b as u32),
            ("AP", pad(!layout.trans_a)),
        ]
    }

    /// Whether this tile can load its operands as `vec4`s: a tiled kernel
    /// whose invocations each fetch whole groups of 4 of both tiles.
    pub fn vectorizable(&self) -> bool {
        let wg = (self.bm / self.tm) * (self.bn / self.tn);
        self.kind == GemmKind::Tiled
            && [
                self.bm * self.bk / wg,
                self.bn * self.bk / wg,
                self.bk,
                self.bm,
                self.bn,
            ]
            .iter()
            .all(|v| v.is_multiple_of(4))
    }

    /// The bindings of A and B and their loaders (see `shaders/gemm.wgsl`),
    /// scalar or as `vec4`s.
    fn operands(vector: bool) -> String {
        let mut out = String::new();
        for (x, binding) in [("a", 1), ("b", 2)] {
            let (elem, ld, ld4) = match vector {
                false => (
                    format!("{x}_t"),
                    format!("f32({x}[i])"),
                    format!("vec4<f32>(f32({x}[i]), 0.0, 0.0, 0.0)"),
                ),
                true => (
                    format!("vec4<{x}_t>"),
                    format!("f32({x}[i >> 2u][i & 3u])"),
                    format!("vec4<f32>({x}[i >> 2u])"),
                ),
            };
            out += &format!(
                "@group(0) @binding({binding}) var<storage, read> {x}: array<{elem}>;\n\
                 fn ld_{x}(i: u32) -> f32 {{\n    return {ld};\n}}\n\
                 fn ld_{x}4(i: u32) -> vec4<f32> {{\n    return {ld4};\n}}\n"
            );
        }
        out
    }

    /// The shader with this tile's register block spelled out: one variable
    /// per element of C an invocation owns (see `shaders/gemm.wgsl`), with
    /// the operands loaded as `vec4`s when `vector`.
    fn source(&self, vector: bool) -> String {
        let (tm, tn) = (self.tm, self.tn);
        let cells = || (0..tm).flat_map(move |i| (0..tn).map(move |j| (i, j)));
        let mut declare = String::new();
        let mut accumulate = String::new();
        let mut store = String::new();
        let body = match self.kind {
            GemmKind::Tiled => {
                for (i, j) in cells() {
                    declare += &format!("    var c_{i}_{j} = 0.0;\n");
                    store += &format!(
                        "    store(row0 + ty + {i}u * WY, col0 + tx + {j}u * WX, c_{i}_{j}, wg.z);\n"
                    );
                }
                for i in 0..tm {
                    accumulate +=
                        &format!("            let a_{i} = tile_a[kk * AS + ty + {i}u * WY];\n");
                }
                for j in 0..tn {
                    accumulate +=
                        &format!("            let b_{j} = tile_b[kk * BS + tx + {j}u * WX];\n");
                }
                for (i, j) in cells() {
                    accumulate +=
                        &format!("            c_{i}_{j} = fma(a_{i}, b_{j}, c_{i}_{j});\n");
                }
                include_str!("../../../shaders/gemm_tiled.wgsl")
            }
            GemmKind::Direct => {
                for i in 0..tm {
                    declare += &format!("    let ab_{i} = a_base(min(row0 + {i}u, last_m));\n");
                    accumulate += &format!("        let a_{i} = ld_a(ab_{i} + ka);\n");
                }
                for j in 0..tn {
                    declare +=
                        &format!("    let bb_{j} = b_base(min(col0 + tx + {j}u * WX, last_n));\n");
                    accumulate += &format!("        let b_{j} = ld_b(bb_{j} + kb);\n");
                }
                for (i, j) in cells() {
                    declare += &format!("    var c_{i}_{j} = 0.0;\n");
                    accumulate += &format!("        c_{i}_{j} = fma(a_{i}, b_{j}, c_{i}_{j});\n");
                    store += &format!(
                        "    store(row0 + {i}u, col0 + tx + {j}u * WX, c_{i}_{j}, wg.z);\n"
                    );
                }
                include_str!("../../../shaders/gemm_direct.wgsl")
            }
        };
        let body = body
            .replace("//{DECLARE}\n", &declare)
            .replace("//{ACCUMULATE}\n", &accumulate)
            .replace("//{STORE}\n", &store);
        let common = include_str!("../../../shaders/gemm.wgsl")
            .replace("//{OPERANDS}\n", &Self::operands(vector));
        format!("{common}\n{body}")
    }

    fn b_pad(&self, layout: GemmLayout) -> u32 {
        if layout.trans_b && self.bk > 0 {
            32 / self.bk
        } else {
            0
        }
    }
}

/// `64x64x16/4x4` (BM × BN × BK / TM × TN) for a tiled kernel,
/// `direct 16x256/16x4` (BM × BN / TM × TN) for a direct one.
impl std::fmt::Display for GemmTile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (bm, bn, bk, tm, tn) = (self.bm, self.bn, self.bk, self.tm, self.tn);
        match self.kind {
            GemmKind::Tiled => write!(f, "{bm}x{bn}x{bk}/{tm}x{tn}"),
            GemmKind::Direct => write!(f, "direct {bm}x{bn}/{tm}x{tn}"),
        }
    }
}

/// Owns one GEMM pipeline, for one set of operand types, one layout and one
/// tile. Clones share it.
#[derive(Clone)]
pub struct GemmKernel {
    kernel: Kernel,
    layout: GemmLayout,
    tile: GemmTile,
    /// Loads its operands as `vec4`s: only for aligned products.
    vector: bool,
}

impl GemmKernel {
    /// The all-f32 product in `layout`, with the default tile.
    pub fn new(ctx: &GpuContext, layout: GemmLayout) -> Self {
        Self::typed(ctx, GemmTypes::default(), layout, GemmTile::T64)
    }

    /// A product whose operands are stored as `types` (f32 accumulation), in
    /// `layout`, with `tile`, loading scalars.
    pub fn typed(ctx: &GpuContext, types: GemmTypes, layout: GemmLayout, tile: GemmTile) -> Self {
        Self::build(ctx, types, layout, tile, false)
    }

    /// [`typed`](Self::typed), loading `vec4`s where the tile can and
    /// `params` are aligned for it ([`GemmParams::aligned`]).
    pub fn for_params(
        ctx: &GpuContext,
        types: GemmTypes,
        layout: GemmLayout,
        tile: GemmTile,
        params: &GemmParams,
    ) -> Self {
        Self::build(ctx, types, layout, tile, Self::vector_for(tile, params))
    }

    fn vector_for(tile: GemmTile, params: &GemmParams) -> bool {
        tile.vectorizable() && params.aligned()
    }

    fn build(
        ctx: &GpuContext,
        types: GemmTypes,
        layout: GemmLayout,
        tile: GemmTile,
        vector: bool,
    ) -> Self {
        let c = tile.constants(layout);
        let mut constants = c.to_vec();
        constants.push(("BP", tile.b_pad(layout)));
        constants.push(("VW", if vector { 4 } else { 1 }));
        let kernel = Kernel::new_typed::<GemmBuffers>(
            ctx,
            "gemm",
            &tile.source(vector),
            "main",
            &[
                ("a_t", types.a),
                ("b_t", types.b),
                ("bias_t", types.bias),
                ("c_t", types.c),
            ],
            &constants,
        );
        GemmKernel {
            kernel,
            layout,
            tile,
            vector,
        }
    }

    pub fn layout(&self) -> GemmLayout {
        self.layout
    }

    /// A bind group for `op`, reading its parameters from `params_buffer` at
    /// `params_offset` (written by the caller). `op`'s transposes must be
    /// this kernel's layout.
    pub fn bind(
        &self,
        ctx: &GpuContext,
        op: &GemmOp<'_>,
        params_buffer: &wgpu::Buffer,
        params_offset: u64,
    ) -> wgpu::BindGroup {
        assert_eq!(
            GemmLayout::of(op.params.flags),
            self.layout,
            "a product bound to a GEMM pipeline of another layout"
        );
        assert!(
            !self.vector
                || (op.params.aligned()
                    && op.a.size().is_multiple_of(16)
                    && op.b.size().is_multiple_of(16)),
            "an unaligned product bound to a vec4 GEMM pipeline"
        );
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

    /// Workgroups for an M×N product (× its slices of K), checked against
    /// the device limit.
    pub fn workgroups(&self, ctx: &GpuContext, params: &GemmParams) -> Result<(u32, u32, u32)> {
        let (x, y, z) = (
            params.n.div_ceil(self.tile.bn),
            params.m.div_ceil(self.tile.bm),
            params.slices(),
        );
        let what = format!("a {}×{} matrix product", params.m, params.n);
        check_groups(ctx, &what, &[x, y, z])?;
        Ok((x, y, z))
    }

    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        bind_group: &wgpu::BindGroup,
        workgroups: (u32, u32, u32),
    ) {
        self.kernel.encode(ctx, pass, bind_group, workgroups);
    }
}

/// One product of the LSTM passes: its operand types and layout, and its
/// pipelines per tile, built on first use and shared by clones. Each
/// product runs in the tile the autotuner picks for its size class.
#[derive(Clone)]
pub struct GemmRole {
    types: GemmTypes,
    layout: GemmLayout,
    built: std::sync::Arc<std::sync::Mutex<Vec<GemmKernel>>>,
}

impl GemmRole {
    fn new(types: GemmTypes, layout: GemmLayout) -> Self {
        GemmRole {
            types,
            layout,
            built: Default::default(),
        }
    }

    /// The pipeline for `params` on `ctx`, in the tile the tuner picks for
    /// its size class (measured on first use of the class).
    pub fn kernel(&self, ctx: &GpuContext, params: &GemmParams) -> Result<GemmKernel> {
        let tile = ctx.gemm_tile_for(self.types, self.layout, params)?;
        let vector = GemmKernel::vector_for(tile, params);
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = built.iter().find(|k| k.tile == tile && k.vector == vector) {
            return Ok(k.clone());
        }
        let k = GemmKernel::build(ctx, self.types, self.layout, tile, vector);
        built.push(k.clone());
        Ok(k)
    }

    /// How `params` runs: in the tuned tile and, for a weight gradient
    /// (layout TN, a dense C and no bias), with K in as many parallel
    /// slices as the tuner chose for its class.
    pub fn plan(&self, ctx: &GpuContext, params: &GemmParams) -> Result<GemmPlan> {
        let kernel = self.kernel(ctx, params)?;
        let splittable = self.layout == GemmLayout::TN
            && params.ldc == params.n
            && params.split_parallel(2).is_some();
        let split = match splittable {
            true => {
                let mut splits =
                    ctx.gemm_splits_for(self.types, self.layout, kernel.tile, params)?;
                // Fewer slices where the workspace or the column sum's grid
                // would pass the device's limits (none where even 2 would).
                loop {
                    match params.split_parallel(splits) {
                        Some(split) if split_fits(&ctx.limits(), &split.0) => break Some(split),
                        Some(_) if splits > 2 => splits /= 2,
                        _ => break None,
                    }
                }
            }
            false => None,
        };
        Ok(match split {
            Some((params, sum)) => GemmPlan {
                kernel,
                params,
                sum: Some(sum),
            },
            None => GemmPlan {
                kernel,
                params: *params,
                sum: None,
            },
        })
    }
}

/// Whether a split product's workspace (`slices` slabs of M × N f32) fits
/// one binding and its column sum's grid (M·N / 64 workgroups) one
/// dimension.
fn split_fits(limits: &wgpu::Limits, split: &GemmParams) -> bool {
    let cells = split.m as u64 * split.n as u64;
    let bytes = 4 * split.slices() as u64 * cells;
    ColumnSumKernel::workgroups(cells.min(u32::MAX as u64) as u32).0
        <= limits.max_compute_workgroups_per_dimension
        && bytes.next_multiple_of(16)
            <= limits
                .max_storage_buffer_binding_size
                .min(limits.max_buffer_size)
}

/// A product as it will run: its pipeline, its parameters, and with a
/// split K, the column sum that adds the slices into C.
pub struct GemmPlan {
    pub kernel: GemmKernel,
    pub params: GemmParams,
    /// With a split K: the sum of the slices, from a workspace of
    /// [`workspace_len`](Self::workspace_len) f32 elements into C.
    pub sum: Option<ColumnSumParams>,
}

impl GemmPlan {
    /// f32 elements of workspace the split product writes (0 unsplit).
    pub fn workspace_len(&self) -> usize {
        match self.sum {
            Some(_) => (self.params.slices() * self.params.m * self.params.n) as usize,
            None => 0,
        }
    }
}

/// The GEMMs of the LSTM passes, each for its operands' storage types: with
/// [`Precision::F16`], weights, the input projection G, the saved h and the
/// gate gradients dG are f16, while the layer inputs X, the `ones` vector and
/// every gradient GEMM's output are f32.
#[derive(Clone)]
pub struct LstmGemms {
    /// G [T·B, D·4H] = X · W_ihᵀ + b_ih + b_hh.
    pub forward: GemmRole,
    /// dW_ih = dGᵀ · X.
    pub weight_ih: GemmRole,
    /// dW_hh = H_prevᵀ · dG.
    pub weight_hh: GemmRole,
    /// dX = dG · W_ih.
    pub input: GemmRole,
    /// dW_hr = dhᵀ · M (LSTMP hidden projection; every operand f32).
    pub weight_hr: GemmRole,
}

impl LstmGemms {
    pub fn new(precision: Precision) -> Self {
        use Precision::F32;
        let s = precision;
        let role = |a, b, bias, c, layout| GemmRole::new(GemmTypes { a, b, bias, c }, layout);
        LstmGemms {
            forward: role(F32, s, s, s, GemmLayout::NT),
            weight_ih: role(s, F32, F32, F32, GemmLayout::TN),
            weight_hh: role(s, s, F32, F32, GemmLayout::TN),
            input: role(s, s, F32, F32, GemmLayout::NN),
            weight_hr: role(F32, F32, F32, F32, GemmLayout::TN),
        }
    }
}

/// One product bound once, with its own parameter uniform, to run as often
/// as asked: the benchmark, the tuner's checks and timings, and the tests.
pub(crate) struct BoundGemm {
    kernel: GemmKernel,
    bind_group: wgpu::BindGroup,
    groups: (u32, u32, u32),
    /// With a split K: the column sum of the slices into C.
    sum: Option<(ColumnSumKernel, wgpu::BindGroup, (u32, u32, u32))>,
    _buffers: Vec<wgpu::Buffer>,
}

impl BoundGemm {
    pub fn new(ctx: &GpuContext, kernel: GemmKernel, op: &GemmOp<'_>) -> Result<Self> {
        Self::split(ctx, kernel, op, 1)
    }

    /// `op` with its K split into `splits` slices in parallel (see
    /// [`GemmParams::split_parallel`]), with its own workspace; unsplit
    /// when the product does not split.
    pub fn split(
        ctx: &GpuContext,
        kernel: GemmKernel,
        op: &GemmOp<'_>,
        splits: u32,
    ) -> Result<Self> {
        let uniform = |label: &str, bytes: &[u8]| -> Result<wgpu::Buffer> {
            let u = ctx.create_buffer(
                label,
                bytes.len() as u64,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            )?;
            ctx.queue().write_buffer(&u, 0, bytes);
            Ok(u)
        };
        let Some((params, sum)) = op.params.split_parallel(splits) else {
            let u = uniform("gemm params", bytemuck::bytes_of(&op.params))?;
            let groups = kernel.workgroups(ctx, &op.params)?;
            let bind_group = kernel.bind(ctx, op, &u, 0);
            return Ok(BoundGemm {
                kernel,
                bind_group,
                groups,
                sum: None,
                _buffers: vec![u],
            });
        };
        let workspace = ctx.create_buffer(
            "split gemm workspace",
            4 * (params.slices() * params.m * params.n).max(1) as u64,
            crate::gpu::tensor::TENSOR_USAGE,
        )?;
        let (u, u_sum) = (
            uniform("gemm params", bytemuck::bytes_of(&params))?,
            uniform("split sum params", bytemuck::bytes_of(&sum))?,
        );
        let groups = kernel.workgroups(ctx, &params)?;
        let bind_group = kernel.bind(
            ctx,
            &GemmOp {
                params,
                c: &workspace,
                ..*op
            },
            &u,
            0,
        );
        let sum_kernel = ColumnSumKernel::new(ctx, Precision::F32);
        let sum_bind = sum_kernel.bind(ctx, (&u_sum, 0), &workspace, op.c);
        let sum_groups = ColumnSumKernel::checked_workgroups(ctx, sum.cols)?;
        Ok(BoundGemm {
            kernel,
            bind_group,
            groups,
            sum: Some((sum_kernel, sum_bind, sum_groups)),
            _buffers: vec![u, u_sum, workspace],
        })
    }

    /// Runs the product `repeats` times in one submit and waits for it.
    pub fn run(&self, ctx: &GpuContext, repeats: usize) -> Result<()> {
        let mut enc = ctx
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("gemm"),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("gemm"),
                timestamp_writes: None,
            });
            for _ in 0..repeats {
                self.kernel
                    .encode(ctx, &mut pass, &self.bind_group, self.groups);
                if let Some((k, bg, groups)) = &self.sum {
                    k.kernel().encode(ctx, &mut pass, bg, *groups);
                }
            }
        }
        ctx.submit_and_wait(enc)
    }
}

/// A standalone C[M, N] = op(A) · op(B) on fixed data, for measuring the
/// GEMM kernel by itself (benches, `lstm-bench --gemm`, `tools/gpu_bench.sh`):
/// by default in the layout of the LSTM's input projection, A [M, K] · B
/// [N, K]ᵀ.
pub struct GemmRunner {
    bound: BoundGemm,
    _buffers: [wgpu::Buffer; 3],
    /// Rows of C.
    pub m: usize,
    /// Columns of C.
    pub n: usize,
    /// The inner dimension.
    pub k: usize,
}

impl GemmRunner {
    /// Buffers for an [m, k] · [n, k]ᵀ product, filled with fixed values,
    /// with the default tile.
    pub fn new(ctx: &GpuContext, m: usize, n: usize, k: usize) -> Result<Self> {
        Self::with_tile(ctx, m, n, k, GemmTile::T64)
    }

    /// [`new`](Self::new) with `tile`.
    pub fn with_tile(
        ctx: &GpuContext,
        m: usize,
        n: usize,
        k: usize,
        tile: GemmTile,
    ) -> Result<Self> {
        Self::with_layout(ctx, (m, n, k), GemmLayout::NT, tile)
    }

    /// An M × N × K product in `layout`, with the tile the autotuner picks
    /// for its class on `ctx` (measured on first use), as the LSTM runs it.
    pub fn tuned(
        ctx: &GpuContext,
        (m, n, k): (usize, usize, usize),
        layout: GemmLayout,
    ) -> Result<Self> {
        let params = GemmParams::dense(m as u32, n as u32, k as u32, layout, 0);
        let tile = ctx.gemm_tile_for(GemmTypes::default(), layout, &params)?;
        Self::with_layout(ctx, (m, n, k), layout, tile)
    }

    /// An M × N × K product with its operands stored as `layout` says (NN:
    /// the dX of the backward pass, NT: the input projection, TN: the
    /// weight gradients), with `tile`.
    pub fn with_layout(
        ctx: &GpuContext,
        (m, n, k): (usize, usize, usize),
        layout: GemmLayout,
        tile: GemmTile,
    ) -> Result<Self> {
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
        let params = GemmParams::dense(m as u32, n as u32, k as u32, layout, 0);
        let kernel = GemmKernel::for_params(ctx, GemmTypes::default(), layout, tile, &params);
        let op = GemmOp {
            params,
            a: &a,
            b: &b,
            bias: &a,
            c: &c,
        };
        let bound = BoundGemm::new(ctx, kernel, &op)?;
        ctx.check()?;
        Ok(GemmRunner {
            bound,
            _buffers: [a, b, c],
            m,
            n,
            k,
        })
    }

    /// Runs the product `repeats` times in one submit and waits for it.
    pub fn run(&self, ctx: &GpuContext, repeats: usize) -> Result<()> {
        self.bound.run(ctx, repeats)
    }

    /// FLOPs of one product: 2·M·N·K.
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;
    use crate::gpu::GpuTensor;

    fn ctx() -> Option<GpuContext> {
        match GpuContext::new() {
            Ok(ctx) => Some(ctx),
            Err(e) if crate::gpu::gpu_required_by_env() => panic!("a GPU adapter is required: {e}"),
            Err(_) => None,
        }
    }

    /// C = op(A) · op(B) (+ bias) (+ old C) on the GPU with `tile` and
    /// `layout`, against the same product in f64, each element within twice
    /// the first-order rounding bound of f32 summation in K order.
    fn check(
        ctx: &GpuContext,
        tile: GemmTile,
        layout: GemmLayout,
        (m, n, k): (usize, usize, usize),
        flags: u32,
    ) {
        check_split(ctx, tile, layout, (m, n, k), flags, 1)
    }

    /// [`check`] with K split into `splits` parallel slices: the slices'
    /// sums are added in order, so the bound is the same.
    fn check_split(
        ctx: &GpuContext,
        tile: GemmTile,
        layout: GemmLayout,
        (m, n, k): (usize, usize, usize),
        flags: u32,
        splits: u32,
    ) {
        let value = |i: usize, s: usize| ((i * s + 3) % 29) as f32 / 14.0 - 1.0;
        let a: Vec<f32> = (0..m * k).map(|i| value(i, 7)).collect();
        let b: Vec<f32> = (0..k * n).map(|i| value(i, 5)).collect();
        let bias: Vec<f32> = (0..2 * n).map(|i| value(i, 3)).collect();
        let old: Vec<f32> = (0..m * n).map(|i| value(i, 11)).collect();
        let a_at = |i: usize, p: usize| {
            if layout.trans_a {
                a[p * m + i]
            } else {
                a[i * k + p]
            }
        };
        let b_at = |p: usize, j: usize| {
            if layout.trans_b {
                b[j * k + p]
            } else {
                b[p * n + j]
            }
        };
        let params = GemmParams::dense(m as u32, n as u32, k as u32, layout, flags);
        let flags = params.flags;
        let up = |v: &[f32]| {
            GpuTensor::upload(ctx, "x", &Tensor::new(vec![v.len()], v.to_vec()).unwrap()).unwrap()
        };
        let (ga, gb, gbias, gc) = (up(&a), up(&b), up(&bias), up(&old));
        // vec4 loads where the tile can and the product is aligned.
        let kernel = GemmKernel::for_params(ctx, GemmTypes::default(), layout, tile, &params);
        let lda = if layout.trans_a { m } else { k };
        let ldb = if layout.trans_b { k } else { n };
        assert_eq!(
            kernel.vector,
            tile.vectorizable() && lda.is_multiple_of(4) && ldb.is_multiple_of(4)
        );
        let op = GemmOp {
            params,
            a: &ga.buffer,
            b: &gb.buffer,
            bias: &gbias.buffer,
            c: &gc.buffer,
        };
        if splits > 1 {
            assert!(
                params.split_parallel(splits).is_some(),
                "({m}, {n}, {k}) splits"
            );
        }
        BoundGemm::split(ctx, kernel, &op, splits)
            .unwrap()
            .run(ctx, 1)
            .unwrap();
        let got = gc.to_host(ctx).unwrap();
        for i in 0..m {
            for j in 0..n {
                let terms: Vec<f64> = (0..k)
                    .map(|p| a_at(i, p) as f64 * b_at(p, j) as f64)
                    .collect();
                let mut want: f64 = terms.iter().sum();
                if flags & GemmParams::BIAS != 0 {
                    want += bias[j] as f64;
                }
                if flags & GemmParams::BIAS_PAIR != 0 {
                    want += bias[n + j] as f64;
                }
                if flags & GemmParams::ACCUMULATE != 0 {
                    want += old[i * n + j] as f64;
                }
                // The first-order bound of f32 summation in K order: each
                // product and each partial sum rounded once (u = 2^-24),
                // doubled, plus the epilogue's few roundings.
                let mut partial = 0.0f64;
                let mut bound = 0.0f64;
                for t in &terms {
                    partial += t;
                    bound += partial.abs() + t.abs();
                }
                let tol = 2.0 * (bound + 4.0 * (want.abs() + 4.0)) / (1u64 << 24) as f64;
                let g = got.data()[i * n + j] as f64;
                assert!(
                    (g - want).abs() <= tol,
                    "{tile:?} {layout:?} ({m}, {n}, {k}) flags {flags}: C[{i},{j}] = {g}, want {want}"
                );
            }
        }
    }

    /// Every tile in every layout: edge tiles in M, N and K, whole tiles,
    /// one element, a long K, and the bias and accumulate epilogues; with
    /// `vec4` loads where the tile has them and the layout's row strides
    /// are multiples of 4 (both 128s and the 136 × 132 × 52 in every
    /// layout).
    #[test]
    fn every_tile_and_layout_matches_a_plain_product() {
        let Some(ctx) = ctx() else { return };
        for tile in GemmTile::CANDIDATES {
            for layout in [GemmLayout::NN, GemmLayout::NT, GemmLayout::TN] {
                let shapes = [
                    (70, 37, 45),
                    (128, 128, 32),
                    (136, 132, 52),
                    (1, 1, 1),
                    (33, 5, 3000),
                ];
                for shape in shapes {
                    check(&ctx, tile, layout, shape, 0);
                }
                let epilogue = GemmParams::BIAS | GemmParams::BIAS_PAIR | GemmParams::ACCUMULATE;
                check(&ctx, tile, layout, (20, 70, 17), epilogue);
            }
        }
    }

    /// Every tile with K split into parallel slices (whole and partial
    /// last slices, slices that start mid-tile of K), plain and adding to C.
    #[test]
    fn every_tile_with_a_split_k_matches_a_plain_product() {
        let Some(ctx) = ctx() else { return };
        for tile in GemmTile::CANDIDATES {
            for layout in [GemmLayout::NN, GemmLayout::TN] {
                check_split(&ctx, tile, layout, (70, 37, 300), 0, 3);
                check_split(
                    &ctx,
                    tile,
                    layout,
                    (33, 65, 1000),
                    GemmParams::ACCUMULATE,
                    16,
                );
            }
        }
    }

    #[test]
    fn a_split_k_slices_whole_multiples_of_64_rows() {
        let p = GemmParams::dense(8, 4, 1000, GemmLayout::TN, GemmParams::ACCUMULATE);
        let (g, s) = p.split_parallel(4).unwrap();
        assert_eq!((g.k_split, g.slices()), (256, 4));
        assert_eq!(g.flags & GemmParams::ACCUMULATE, 0);
        assert_eq!((s.rows, s.cols, s.accumulate), (4, 32, 1));
        let (g, _) = p.split_parallel(16).unwrap();
        assert_eq!((g.k_split, g.slices()), (64, 16));
        // Too short to split, or a bias epilogue.
        assert!(GemmParams { k: 100, ..p }.split_parallel(4).is_none());
        assert!(p.split_parallel(1).is_none());
        let biased = GemmParams::dense(8, 4, 1000, GemmLayout::NT, GemmParams::BIAS);
        assert!(biased.split_parallel(4).is_none());
    }

    #[test]
    fn a_split_must_fit_the_device_limits() {
        let limits = wgpu::Limits::default();
        let split = |m, n, splits| {
            GemmParams::dense(m, n, 16384, GemmLayout::TN, 0)
                .split_parallel(splits)
                .unwrap()
                .0
        };
        assert!(split_fits(&limits, &split(1024, 256, 16)));
        // 16 slabs of 4096 × 1024 f32 are 256 MiB, over WebGPU's 128 MiB
        // binding; 4 slabs are 64 MiB, but the column sum's grid of
        // 65,536 workgroups is one too many.
        assert!(!split_fits(&limits, &split(4096, 1024, 16)));
        assert!(!split_fits(&limits, &split(4096, 1024, 4)));
        assert!(split_fits(&limits, &split(4096, 1000, 4)));
    }

    #[test]
    fn a_long_reduction_splits_into_blocks_that_add_up() {
        let p = GemmParams {
            m: 4,
            n: 3,
            k: 2 * GEMM_K_CHUNK + 5,
            lda: 4,
            ldb: 3,
            flags: GemmParams::TRANS_A,
            ..Default::default()
        };
        let blocks = p.split_k();
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks.iter().map(|b| b.k).sum::<u32>(), p.k);
        for (i, b) in blocks.iter().enumerate() {
            let k0 = i as u32 * GEMM_K_CHUNK;
            assert_eq!((b.a_off, b.b_off), (k0 * 4, k0 * 3));
            assert_eq!(b.flags & GemmParams::ACCUMULATE != 0, i > 0);
        }
        assert_eq!(GemmParams { k: 7, ..p }.split_k().len(), 1);
    }
}
