//! The fused LSTM step kernel (`shaders/lstm_step.wgsl`): `main` for
//! inference, `main_train` to also save activations and apply dropout, one
//! pipeline pair per [`StepTile`].

use super::{DropoutParams, Kernel, TileCache};
use crate::gpu::{GpuContext, Precision};

/// Mirrors `StepParams` in `shaders/common.wgsl`, field for field: the
/// per-step uniform of the forward and the backward step kernels.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepParams {
    pub step: u32,
    pub parity: u32,
    pub seq_len: u32,
    pub batch: u32,
    pub hidden: u32,
    pub dirs: u32,
    pub slot: u32,
    pub slots: u32,
    pub dropout: DropoutParams,
    /// H_out: the width of h (P with a hidden projection, else H).
    pub h_out: u32,
    /// The cell activation: 0 tanh, 1 relu.
    pub act: u32,
    /// Training with recurrent dropout: the u32 index in the lengths
    /// buffer where this layer's mask [D, B, H_out] (f32 bits) starts; 0 for
    /// none (see `crate::gpu::lstm::masks`).
    pub rmask: u32,
    /// Inference asking for the per-step cell states: the f32 index in the
    /// state buffer where the last layer's [T, B, D, H] starts; 0 for none
    /// (and in every other layer).
    pub cells: u32,
    /// The cell: 0 LSTM, 1 GRU (inference; its weights padded to four
    /// gate slots, see `gru_cell` in `shaders/common.wgsl`).
    pub cell: u32,
    /// A layer-normalised LSTM: the f32 index in the state buffer of the
    /// raw recurrent products R [D, B, H, 4], which the step kernel writes
    /// and `shaders/ln_step.wgsl` normalises (forward); any non-zero value
    /// makes the backward step kernel leave the cell to
    /// `shaders/ln_step_backward.wgsl`. 0 for a plain cell.
    pub ln: u32,
    pub _pad: [u32; 2],
}
const _: () = assert!(std::mem::size_of::<StepParams>() == 96);

bindings! {
    /// The buffers one layer's steps read and write (`main`'s bindings).
    pub struct StepBuffers {
        /// Per-step `StepParams`, bound with a dynamic offset.
        params: DynamicUniform<StepParams>,
        gates_x: Read,
        w_hh: Read,
        /// h [2, L·D, B, H_out] then c [L·D, B, H].
        state: ReadWrite,
        y: ReadWrite,
        lengths: Read,
    }
}

bindings! {
    /// What a training step saves for the backward pass (`main_train`'s
    /// bindings after [`StepBuffers`]').
    pub struct TrainBuffers {
        gates: ReadWrite,
        c: ReadWrite,
        h_prev: ReadWrite,
    }
}

/// How the forward step kernel splits one step's work on a GPU: `lanes`
/// invocations share each hidden unit's reduction over K = H_out (reading
/// consecutive inputs of its W_hh rows), and a workgroup holds `units`
/// units, so a step launches ceil(H / units) · ceil(B / rows) · D
/// workgroups of `lanes · units` invocations. Batch rows per workgroup
/// follow from the batch (up to 16). [`StepConfig::CANDIDATES`] are the
/// configurations built and tested; any other is checked by
/// [`validate`](Self::validate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StepConfig {
    /// Invocations per unit along K: a power of two from 4 to 64.
    pub lanes: u32,
    /// Units per workgroup: a power of two from 1 to 64 (so that the
    /// backward tile's slices, lanes × units / 32, are one too).
    pub units: u32,
}

impl StepConfig {
    /// The configurations the tests run and a tuner chooses among.
    pub const CANDIDATES: [StepConfig; 4] = [
        StepConfig {
            lanes: 8,
            units: 16,
        },
        StepConfig {
            lanes: 16,
            units: 8,
        },
        StepConfig {
            lanes: 32,
            units: 4,
        },
        StepConfig {
            lanes: 64,
            units: 4,
        },
    ];

    /// The default for recurrent inputs of width `h_out`: one 32-lane group
    /// (a warp on NVIDIA, half a wave on AMD) per unit once K is wide enough
    /// to keep its lanes busy, fewer lanes for narrow layers; 128
    /// invocations per workgroup either way.
    pub fn default_for(h_out: usize) -> Self {
        let lanes = match h_out {
            0..32 => 8,
            32..128 => 16,
            _ => 32,
        };
        StepConfig {
            lanes,
            units: 128 / lanes,
        }
    }

    /// Checks the configuration against its rules and the device's limit on
    /// invocations per workgroup.
    pub fn validate(&self, max_invocations: u32) -> crate::error::Result<()> {
        let ok = self.lanes.is_power_of_two()
            && (4..=64).contains(&self.lanes)
            && self.units.is_power_of_two()
            && self.units <= 64
            && self.lanes * self.units <= max_invocations;
        if ok {
            Ok(())
        } else {
            Err(crate::error::LstmError::value(
                "step config",
                format!(
                    "{self:?}: lanes must be a power of two in 4..=64, units a power of two \
                     in 1..=64, and lanes × units at most {max_invocations} (this device's \
                     invocations per workgroup)"
                ),
            ))
        }
    }

    /// The tile for batch size `batch`.
    pub(crate) fn tile(&self, batch: usize, h_out: usize) -> StepTile {
        StepTile::for_batch(self.lanes, self.units, batch).with_width(h_out)
    }

    /// The backward step kernel's tile for batch size `batch`.
    pub(crate) fn back_tile(&self, batch: usize) -> super::BackTile {
        super::BackTile::for_batch(*self, batch)
    }
}

/// The launch shape of the forward step kernel: a [`StepConfig`] with the
/// batch rows that share each read of W_hh. Each tile is its own pipeline,
/// built on first use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StepTile {
    /// Lanes along K per unit (a power of two, at least `rows`): `KL`.
    pub lanes: u32,
    /// Units per workgroup: `UPW`.
    pub units: u32,
    /// Batch rows per workgroup (a power of two): `RB`.
    pub rows: u32,
    /// Elements of W_hh each lane loads at once (`VEC`: 4, 2 or 1, the
    /// largest that divides H_out): `vec4<store_t>` or `vec2<store_t>`
    /// loads, f16 included, still accumulating in f32.
    pub vec: u32,
}

/// Bytes of workgroup memory the step kernel's reduction may use: half of
/// WebGPU's guaranteed 16 KiB.
const REDUCTION_BYTES: u32 = 8 << 10;

/// The most batch rows one workgroup takes.
pub(crate) const MAX_STEP_ROWS: u32 = 16;

impl StepTile {
    /// The tile for (`lanes`, `units`) at batch size `batch`: rows are the
    /// batch rounded up to a power of two, at most [`MAX_STEP_ROWS`] and
    /// at most `lanes`.
    pub fn for_batch(lanes: u32, units: u32, batch: usize) -> Self {
        let rows = (batch.max(1) as u32)
            .next_power_of_two()
            .min(MAX_STEP_ROWS)
            .min(lanes);
        StepTile {
            lanes,
            units,
            rows,
            vec: 1,
        }
    }

    /// This tile with W_hh loaded `VEC` elements at a time for inputs of
    /// width `h_out`.
    pub fn with_width(self, h_out: usize) -> Self {
        let vec = match h_out {
            w if w % 4 == 0 => 4,
            w if w % 2 == 0 => 2,
            _ => 1,
        };
        StepTile { vec, ..self }
    }

    /// The WGSL that `VEC` selects, put before a forward step kernel's
    /// source: the alias `wvec_t` that the weights are bound as, `wdot` (one
    /// weight load against up to 4 values, in f32) and `load_h` (`VEC`
    /// values of h from `state`); for the wavefront kernel also `load_x`
    /// (from `outputs`) and `w_elem` (one element of `weights`).
    pub(crate) fn prelude(&self, wavefront: bool) -> String {
        let (ty, w, h) = match self.vec {
            4 => ("vec4<store_t>", "vec4<f32>(w)", "h"),
            2 => ("vec2<store_t>", "vec2<f32>(w)", "h.xy"),
            _ => ("store_t", "f32(w)", "h.x"),
        };
        let product = if self.vec == 1 {
            format!("{w} * {h}")
        } else {
            format!("dot({w}, {h})")
        };
        let load = |name: &str, buffer: &str| {
            let parts: Vec<String> = (0..4)
                .map(|e| match e < self.vec {
                    true => format!("{buffer}[i + {e}u]"),
                    false => "0.0".to_string(),
                })
                .collect();
            format!(
                "fn {name}(i: u32) -> vec4<f32> {{ return vec4<f32>({}); }}\n",
                parts.join(", ")
            )
        };
        let mut out = format!(
            "alias wvec_t = {ty};\nfn wdot(w: wvec_t, h: vec4<f32>) -> f32 {{ return {product}; }}\n"
        );
        out += &load("load_h", "state");
        if wavefront {
            out += &load("load_x", "outputs");
            out += match self.vec {
                1 => "fn w_elem(i: u32) -> f32 { return f32(weights[i]); }\n",
                _ => "fn w_elem(i: u32) -> f32 { return f32(weights[i / VEC][i % VEC]); }\n",
            };
        }
        out
    }

    /// Invocations per workgroup.
    pub fn workgroup_size(&self) -> u32 {
        self.lanes * self.units
    }

    /// Rows reduced at a time (`RC`), so that the reduction's workgroup
    /// array fits [`REDUCTION_BYTES`].
    fn reduce_rows(&self) -> u32 {
        // Rows of vec4<f32> partials that fit, rounded down to a power of two.
        let fit = (REDUCTION_BYTES / (16 * self.workgroup_size())).max(1);
        self.rows.min(1 << fit.ilog2())
    }

    /// Workgroups for one step: (unit blocks, batch blocks, directions).
    pub fn workgroups(&self, hidden: usize, batch: usize, dirs: usize) -> (u32, u32, u32) {
        (
            (hidden as u32).div_ceil(self.units),
            (batch as u32).div_ceil(self.rows),
            dirs as u32,
        )
    }

    pub(crate) fn constants(&self) -> [(&'static str, u32); 6] {
        [
            ("VEC", self.vec),
            ("KL", self.lanes),
            ("UPW", self.units),
            ("RB", self.rows),
            ("RC", self.reduce_rows()),
            ("WGS", self.workgroup_size()),
        ]
    }
}

/// Builds the step pipelines of each tile once, for one storage precision.
pub struct StepKernel {
    precision: Precision,
    built: TileCache<StepTile, StepPipelines>,
}

impl StepKernel {
    pub fn new(precision: Precision) -> Self {
        StepKernel {
            precision,
            built: TileCache::new(),
        }
    }

    /// The inference and training pipelines of `tile`, built on first use.
    pub fn pipelines(&mut self, ctx: &GpuContext, tile: StepTile) -> StepPipelines {
        let types = &[("store_t", self.precision)];
        self.built.get(tile, || {
            let source = format!(
                "{}{}{}",
                tile.prelude(false),
                include_str!("../../../shaders/step_reduce.wgsl"),
                include_str!("../../../shaders/lstm_step.wgsl")
            );
            let constants = tile.constants();
            let infer = Kernel::new_typed::<StepBuffers>(
                ctx,
                "lstm step",
                &source,
                "main",
                types,
                &constants,
            );
            let train = Kernel::new_typed::<(StepBuffers, TrainBuffers)>(
                ctx,
                "lstm step (training)",
                &source,
                "main_train",
                types,
                &constants,
            );
            StepPipelines { tile, infer, train }
        })
    }
}

/// The two step pipelines of one tile (clones share them).
#[derive(Clone)]
pub struct StepPipelines {
    tile: StepTile,
    infer: Kernel,
    train: Kernel,
}

impl StepPipelines {
    pub fn tile(&self) -> StepTile {
        self.tile
    }

    /// A bind group for inference, or for training when `saved` is given.
    pub fn bind(
        &self,
        ctx: &GpuContext,
        b: &StepBuffers<'_>,
        saved: Option<&TrainBuffers<'_>>,
    ) -> wgpu::BindGroup {
        match saved {
            Some(s) => self.train.bind(ctx, &(*b, *s)),
            None => self.infer.bind(ctx, b),
        }
    }

    /// Encodes one step: both directions of one layer in a single dispatch.
    pub fn encode(
        &self,
        ctx: &GpuContext,
        pass: &mut wgpu::ComputePass<'_>,
        training: bool,
        bind_group: &wgpu::BindGroup,
        params_offset: u32,
        workgroups: (u32, u32, u32),
    ) {
        let kernel = if training { &self.train } else { &self.infer };
        kernel.encode_at(ctx, pass, bind_group, &[params_offset], workgroups);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_fit_the_reduction_memory_and_divide_their_rows() {
        for lanes in [4, 8, 16, 32, 64] {
            for units in [1, 2, 4, 8, 16] {
                for batch in [1, 2, 3, 5, 16, 17, 64, 1000] {
                    let t = StepTile::for_batch(lanes, units, batch);
                    let rc = t.reduce_rows();
                    assert!(t.rows.is_power_of_two() && t.rows <= lanes.min(MAX_STEP_ROWS));
                    assert!(
                        rc.is_power_of_two() && t.rows.is_multiple_of(rc),
                        "{t:?}: RC {rc}"
                    );
                    assert!(rc * t.workgroup_size() * 16 <= REDUCTION_BYTES || rc == 1);
                }
            }
        }
    }
}

bindings! {
    /// What the wavefront kernel (`shaders/lstm_wavefront.wgsl`) binds.
    pub struct WavefrontBuffers {
        /// Per-dispatch `StepParams` (`step` = the wavefront index, `slot`
        /// = the block of one layer in `weights`, `slots` = L), bound with
        /// a dynamic offset.
        params: DynamicUniform<StepParams>,
        /// [T, B, H]: layer 0's input projection.
        gates_x: Read,
        /// Every layer's W_ih, W_hh and bias pair, in blocks.
        weights: Read,
        state: ReadWrite,
        /// [L, T, B, H]: every layer's output (the inner layers' after
        /// dropout when training).
        outputs: ReadWrite,
        lengths: Read,
    }
}

/// Builds the wavefront pipelines of each tile once, for one precision: one
/// dispatch per wavefront step (T + L - 1 for L layers), for inference and
/// for a training forward.
pub struct WavefrontKernel {
    precision: Precision,
    built: TileCache<StepTile, WavePipelines>,
}

impl WavefrontKernel {
    pub fn new(precision: Precision) -> Self {
        WavefrontKernel {
            precision,
            built: TileCache::new(),
        }
    }

    /// The wavefront pipelines of `tile`, built on first use.
    pub fn pipelines(&mut self, ctx: &GpuContext, tile: StepTile) -> WavePipelines {
        let types = &[("store_t", self.precision)];
        self.built.get(tile, || {
            let source = format!(
                "{}{}{}",
                tile.prelude(true),
                include_str!("../../../shaders/step_reduce.wgsl"),
                include_str!("../../../shaders/lstm_wavefront.wgsl")
            );
            let constants = tile.constants();
            WavePipelines {
                infer: Kernel::new_typed::<WavefrontBuffers>(
                    ctx,
                    "lstm wavefront step",
                    &source,
                    "main",
                    types,
                    &constants,
                ),
                train: Kernel::new_typed::<(WavefrontBuffers, TrainBuffers)>(
                    ctx,
                    "lstm wavefront step (training)",
                    &source,
                    "main_train",
                    types,
                    &constants,
                ),
            }
        })
    }
}

/// The wavefront pipelines of one tile: inference, and the training forward
/// (which also binds the saved activations of every layer, [L, T, B, ...]).
#[derive(Clone)]
pub struct WavePipelines {
    pub infer: Kernel,
    pub train: Kernel,
}

/// Elements of one layer's block in the wavefront kernel's packed weights:
/// W_ih [4H, H], W_hh [4H, H], then b_ih and b_hh [4H] each.
pub(crate) fn wavefront_block(hidden: usize) -> usize {
    8 * hidden * hidden + 8 * hidden
}
