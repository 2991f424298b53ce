//! The per-shape half of [`GpuTrainer`]: the buffers of one (T, B) and the
//! dispatch lists of a training step, bound once and reused every step.

use super::GpuTrainer;
use crate::config::Activation;
use crate::error::Result;
use crate::gpu::kernels::{
    DenseBuffers, DenseParams, FLAT_GROUP, GEMM_K_CHUNK, GatherBuffers, GatherParams, GemmLayout,
    GemmOp, GemmParams, Kernel, LossBuffers, LossParams, grid,
};
use crate::gpu::tensor::{TENSOR_USAGE, byte_size};
use crate::gpu::workspace::Uniforms;
use crate::gpu::{GpuContext, GpuTensor};
use crate::model::{HeadKind, LossKind};

/// One dispatch of a training step: its kernel, bind group and workgroup
/// counts.
pub(super) struct Dispatch {
    kernel: Kernel,
    bind_group: wgpu::BindGroup,
    groups: (u32, u32, u32),
}

impl Dispatch {
    pub fn new(kernel: &Kernel, bind_group: wgpu::BindGroup, groups: (u32, u32, u32)) -> Self {
        Dispatch {
            kernel: kernel.clone(),
            bind_group,
            groups,
        }
    }

    pub fn encode(&self, ctx: &GpuContext, pass: &mut wgpu::ComputePass<'_>) {
        self.kernel.encode(ctx, pass, &self.bind_group, self.groups);
    }
}

/// How many (T, B) shapes keep their buffers before the oldest is dropped.
const MAX_SPACES: usize = 4;

/// Buffers and bind groups for one (T, B).
pub(super) struct StepSpace {
    pub seq_len: usize,
    pub batch: usize,
    /// [T, B, I] features, or [T·B] u32 tokens.
    pub input: wgpu::Buffer,
    /// [T, B, I]: what the LSTM reads (features, or looked-up embeddings).
    pub lstm_in: GpuTensor,
    /// [T, B, F]: the last recurrent module's output, copied.
    pub lstm_out: GpuTensor,
    /// [B] u32 lengths.
    pub lengths: wgpu::Buffer,
    /// [rows, O] f32 values or [rows] i32 classes.
    pub targets: wgpu::Buffer,
    /// [T, B, F]: gradient of the last recurrent module's output.
    pub d_output: GpuTensor,
    /// [T·B, E]: gradient of the looked-up embeddings.
    pub d_embedded: GpuTensor,
    pub _buffers: Vec<wgpu::Buffer>,
    pub _uniforms: wgpu::Buffer,
    /// Dispatches before the LSTM (embedding lookup).
    pub before: Vec<Dispatch>,
    /// Head forward, loss, head backward.
    pub head: Vec<Dispatch>,
    /// Embedding backward, norms, clipping, updates (and, in f16, the
    /// narrowing of the LSTM's master weights into its working copy).
    pub after: Vec<Dispatch>,
    /// With gradient accumulation, at the batches that do not update: the
    /// embedding backward and the additions into the accumulators.
    pub accumulate: Vec<Dispatch>,
}

/// The four products of an `nn.Linear(n_in, n_out)` over `rows` rows, in
/// order: y [rows, out] = x · Wᵀ + b; dW [out, in] = dyᵀ · x; db [1, out] =
/// 1ᵀ · dy; dx [rows, in] = dy · W.
fn linear_products(rows: u32, n_in: u32, n_out: u32) -> [GemmParams; 4] {
    let gemm = |m, n, k, lda, ldb, ldc, flags| GemmParams {
        m,
        n,
        k,
        lda,
        ldb,
        ldc,
        flags,
        ..Default::default()
    };
    [
        gemm(
            rows,
            n_out,
            n_in,
            n_in,
            n_in,
            n_out,
            GemmParams::TRANS_B | GemmParams::BIAS,
        ),
        gemm(n_out, n_in, rows, n_out, n_in, n_in, GemmParams::TRANS_A),
        gemm(1, n_out, rows, rows, n_out, n_out, 0),
        gemm(rows, n_in, n_out, n_out, n_in, n_in, 0),
    ]
}

impl GpuTrainer {
    /// The space for (T, B), built on first use.
    pub(super) fn space(&mut self, t: usize, b: usize) -> Result<usize> {
        if let Some(i) = self
            .spaces
            .iter()
            .position(|s| (s.seq_len, s.batch) == (t, b))
        {
            return Ok(i);
        }
        // Batches of many shapes (variable T) keep only the latest few.
        if self.spaces.len() == MAX_SPACES {
            self.spaces.remove(0);
        }
        let sp = self.build_space(t, b)?;
        self.spaces.push(sp);
        Ok(self.spaces.len() - 1)
    }

    fn build_space(&self, t: usize, b: usize) -> Result<StepSpace> {
        let ctx = &self.ctx;
        let cfg = self.lstms[0].config().clone();
        let f = self.shape.features();
        let o = self.shape.outputs;
        let rows = self.rows(t, b);
        let buffer = |label: &str, shape: &[usize]| {
            ctx.create_buffer(label, byte_size(label, shape)?, TENSOR_USAGE)
        };
        let input = match self.shape.embedding {
            Some(_) => buffer("tokens [T·B]", &[t * b])?,
            None => buffer("features [T,B,I]", &[t, b, cfg.input_size])?,
        };
        let lstm_in = match self.shape.embedding {
            Some(_) => GpuTensor::empty(ctx, "embedded [T,B,E]", &[t, b, cfg.input_size])?,
            None => GpuTensor::from_buffer(input.clone(), vec![t, b, cfg.input_size]),
        };
        let lstm_out = GpuTensor::empty(ctx, "lstm output [T,B,D·H]", &[t, b, f])?;
        let lengths = buffer("lengths [B]", &[b])?;
        let targets = buffer("targets", &[rows, o])?;
        let head_in = match self.shape.head_kind {
            HeadKind::PerStep => lstm_out.buffer.clone(),
            HeadKind::LastStep => buffer("last step [B, D·H]", &[b, f])?,
        };
        let logits = buffer("logits [rows, O]", &[rows, o])?;
        let d_logits = buffer("d logits [rows, O]", &[rows, o])?;
        let d_output = GpuTensor::empty(ctx, "d output [T,B,D·H]", &[t, b, f])?;
        let d_head_in = match self.shape.head_kind {
            HeadKind::PerStep => d_output.buffer.clone(),
            HeadKind::LastStep => buffer("d last step [B, D·H]", &[b, f])?,
        };
        let loss_partials = buffer("loss partials", &[rows.div_ceil(FLAT_GROUP as usize)])?;
        let ones = buffer("ones [rows]", &[rows])?;
        ctx.queue()
            .write_buffer(&ones, 0, bytemuck::cast_slice(&vec![1.0f32; rows]));
        let d_embedded = GpuTensor::empty(ctx, "d embedded [T·B,E]", &[t, b, cfg.input_size])?;
        // A hidden dense layer: z = head_in · W_hᵀ + b_h, a = act(z), and the
        // gradient da, made dz in place.
        let hidden = match self.shape.hidden {
            Some((units, activation)) => Some((
                units,
                activation,
                buffer("hidden z [rows, U]", &[rows, units])?,
                buffer("hidden a [rows, U]", &[rows, units])?,
                buffer("hidden d [rows, U]", &[rows, units])?,
            )),
            None => None,
        };
        // What the head reads, and where its input gradient goes.
        let (head_x, d_head_x) = match &hidden {
            Some((_, _, _, a, da)) => (a.clone(), da.clone()),
            None => (head_in.clone(), d_head_in.clone()),
        };
        let u_in = self.shape.head_inputs();

        // The head's dW and db reduce over all rows: past GEMM_K_CHUNK rows
        // (a per-step head over long batches) they run in blocks, whose
        // parameters after the first take the entries from 8 on; a hidden
        // layer's take the entries from `hb` on.
        let blocks = (rows as u32).div_ceil(GEMM_K_CHUNK).max(1) as usize;
        let extra = blocks - 1;
        let hb = 8 + 2 * extra;
        let entries = hb + if hidden.is_some() { 5 + 2 * extra } else { 0 };
        let mut u = Uniforms::new(ctx, entries);
        let own = &self.own;
        let (head_w, head_b) = (&own[own.len() - 2], &own[own.len() - 1]);
        let (rows32, f32_, o32, u32_) = (rows as u32, f as u32, o as u32, u_in as u32);
        // 0–3: the head's products on head_x [rows, U]; hb–hb+3 the hidden
        // layer's on head_in [rows, F].
        for (at, p) in (0..4).zip(linear_products(rows32, u32_, o32)) {
            u.put(at, &p);
        }
        if let Some((units, activation, ..)) = &hidden {
            for (at, p) in (hb..hb + 4).zip(linear_products(rows32, f32_, *units as u32)) {
                u.put(at, &p);
            }
            u.put(
                hb + 4,
                &DenseParams {
                    len: rows32 * *units as u32,
                    kind: match activation {
                        Activation::Tanh => 0,
                        Activation::Relu => 1,
                    },
                    _pad: [0; 2],
                },
            );
        }
        let (has_ignore, ignore_index) = match self.config.loss {
            LossKind::CrossEntropy {
                ignore_index: Some(i),
            } => (1, i as i32),
            _ => (0, 0),
        };
        u.put(
            4,
            &LossParams {
                rows: rows32,
                cols: o32,
                batch: b as u32,
                per_step: u32::from(self.shape.head_kind == HeadKind::PerStep),
                has_ignore,
                ignore_index,
                _pad: [0; 2],
            },
        );
        let e = self.shape.embedding.map_or(0, |(_, d)| d);
        u.put(
            5,
            &GatherParams {
                seq_len: t as u32,
                batch: b as u32,
                features: f32_,
                vocab: 0,
                tokens: (t * b) as u32,
                _pad: [0; 3],
            },
        );
        u.put(
            6,
            &GatherParams {
                seq_len: t as u32,
                batch: b as u32,
                features: e as u32,
                vocab: self.shape.embedding.map_or(0, |(v, _)| v as u32),
                tokens: (t * b) as u32,
                _pad: [0; 3],
            },
        );
        // Block i > 0 of the row-reducing products: entries 1 and 2 (the
        // head's dW and db), hb + 1 and hb + 2 (the hidden layer's).
        let block_entry = |entry: usize, i: usize| match (i, entry) {
            (0, _) => entry,
            (_, 1 | 2) => 8 + (entry - 1) * extra + i - 1,
            _ => hb + 5 + (entry - hb - 1) * extra + i - 1,
        };
        let reducing: Vec<usize> = match hidden {
            Some(_) => vec![1, 2, hb + 1, hb + 2],
            None => vec![1, 2],
        };
        for &entry in &reducing {
            for (i, params) in u.get::<GemmParams>(entry).split_k().iter().enumerate() {
                u.put(block_entry(entry, i), params);
            }
        }
        let uniforms = ctx.create_buffer(
            "training step uniforms",
            u.bytes.len() as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        ctx.queue().write_buffer(&uniforms, 0, &u.bytes);
        let at = |entry: usize| (&uniforms, u.offset(entry) as u64);

        let gemm = |entry: usize,
                    a: &wgpu::Buffer,
                    bm: &wgpu::Buffer,
                    bias: &wgpu::Buffer,
                    c: &wgpu::Buffer,
                    params: GemmParams|
         -> Result<Dispatch> {
            let op = GemmOp {
                params,
                a,
                b: bm,
                bias,
                c,
            };
            let kernel = self
                .gemm
                .iter()
                .find(|k| k.layout() == GemmLayout::of(params.flags))
                .expect("a head GEMM kernel for each layout");
            let groups = kernel.workgroups(ctx, &params)?;
            Ok(Dispatch::new(
                kernel.kernel(),
                kernel.bind(ctx, &op, &uniforms, u.offset(entry) as u64),
                groups,
            ))
        };

        let mut before = Vec::new();
        if self.shape.embedding.is_some() {
            let emb = &own[0];
            let bg = self.kernels.embed.bind(
                ctx,
                &GatherBuffers {
                    params: at(6),
                    src: &emb.value,
                    dst: &lstm_in.buffer,
                    index: &input,
                },
            );
            before.push(Dispatch::new(&self.kernels.embed, bg, grid(ctx, t * b * e)));
        }
        let mut head = Vec::new();
        if self.shape.head_kind == HeadKind::LastStep {
            let bg = self.kernels.last_step.bind(
                ctx,
                &GatherBuffers {
                    params: at(5),
                    src: &lstm_out.buffer,
                    dst: &head_in,
                    index: &lengths,
                },
            );
            head.push(Dispatch::new(&self.kernels.last_step, bg, grid(ctx, b * f)));
        }
        if let Some((_, _, z, a, _)) = &hidden {
            let (w_h, b_h) = (&own[own.len() - 4], &own[own.len() - 3]);
            head.push(gemm(
                hb,
                &head_in,
                &w_h.value,
                &b_h.value,
                z,
                u.get::<GemmParams>(hb),
            )?);
            let k = &self.kernels.dense_forward;
            let bg = k.bind(
                ctx,
                &DenseBuffers {
                    params: at(hb + 4),
                    src: z,
                    dst: a,
                },
            );
            head.push(Dispatch::new(k, bg, grid(ctx, rows * u_in)));
        }
        head.push(gemm(
            0,
            &head_x,
            &head_w.value,
            &head_b.value,
            &logits,
            u.get::<GemmParams>(0),
        )?);
        let loss_kernel = match self.config.loss {
            LossKind::Mse => &self.kernels.mse,
            LossKind::BceWithLogits => &self.kernels.bce_with_logits,
            LossKind::CrossEntropy { .. } => &self.kernels.cross_entropy,
        };
        let loss_bind = |k: &Kernel| {
            k.bind(
                ctx,
                &LossBuffers {
                    params: at(4),
                    pred: &logits,
                    target_f: &targets,
                    target_i: &targets,
                    lengths: &lengths,
                    grad: &d_logits,
                    partials: &loss_partials,
                    scalars: &self.scalars,
                },
            )
        };
        head.push(Dispatch::new(
            loss_kernel,
            loss_bind(loss_kernel),
            ((rows as u32).div_ceil(FLAT_GROUP), 1, 1),
        ));
        let finish = &self.kernels.loss_finish;
        head.push(Dispatch::new(finish, loss_bind(finish), (1, 1, 1)));
        for (entry, (a, bm, c)) in [
            (1, (&d_logits, &head_x, &head_w.grad)),
            (2, (&ones, &d_logits, &head_b.grad)),
        ] {
            for i in 0..blocks {
                let at = block_entry(entry, i);
                head.push(gemm(at, a, bm, a, c, u.get::<GemmParams>(at))?);
            }
        }
        head.push(gemm(
            3,
            &d_logits,
            &head_w.value,
            &d_logits,
            &d_head_x,
            u.get::<GemmParams>(3),
        )?);
        if let Some((_, _, _, a, dz)) = &hidden {
            let (w_h, b_h) = (&own[own.len() - 4], &own[own.len() - 3]);
            let k = &self.kernels.dense_backward;
            let bg = k.bind(
                ctx,
                &DenseBuffers {
                    params: at(hb + 4),
                    src: a,
                    dst: dz,
                },
            );
            head.push(Dispatch::new(k, bg, grid(ctx, rows * u_in)));
            for (entry, (x, bm, c)) in [
                (hb + 1, (dz, &head_in, &w_h.grad)),
                (hb + 2, (&ones, dz, &b_h.grad)),
            ] {
                for i in 0..blocks {
                    let at = block_entry(entry, i);
                    head.push(gemm(at, x, bm, x, c, u.get::<GemmParams>(at))?);
                }
            }
            head.push(gemm(
                hb + 3,
                dz,
                &w_h.value,
                dz,
                &d_head_in,
                u.get::<GemmParams>(hb + 3),
            )?);
        }
        if self.shape.head_kind == HeadKind::LastStep {
            let bg = self.kernels.last_step_backward.bind(
                ctx,
                &GatherBuffers {
                    params: at(5),
                    src: &d_head_in,
                    dst: &d_output.buffer,
                    index: &lengths,
                },
            );
            head.push(Dispatch::new(
                &self.kernels.last_step_backward,
                bg,
                grid(ctx, t * b * f),
            ));
        }
        let mut buffers = vec![logits, d_logits, loss_partials, ones];
        if let Some((_, _, z, a, dz)) = hidden {
            buffers.extend([z, a, dz]);
        }
        buffers.push(head_in);
        buffers.push(d_head_in);
        ctx.check()?;
        Ok(StepSpace {
            seq_len: t,
            batch: b,
            input,
            lstm_in,
            lstm_out,
            lengths,
            targets,
            d_output,
            d_embedded,
            _buffers: buffers,
            _uniforms: uniforms,
            before,
            head,
            after: Vec::new(),
            accumulate: Vec::new(),
        })
    }
}
