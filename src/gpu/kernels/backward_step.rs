//! One step of backpropagation through time (`shaders/lstm_step_backward.wgsl`).

use super::lstm_step::MAX_STEP_ROWS;
use super::{Kernel, StepConfig, StepParams, TileCache, TilePipeline};
use crate::gpu::{GpuContext, Precision};

bindings! {
    /// The buffers one layer's backward steps read and write.
    pub struct BackwardBuffers {
        /// Per-step `StepParams` of the backward pass, bound with a dynamic offset.
        params: DynamicUniform<StepParams>,
        gates: Read,
        c_saved: Read,
        w_hh: Read,
        /// dy [T, B, D·H]; with a hidden projection, dh_t [T, B, D·P] from
        /// [`super::HiddenProjBackwardKernel`].
        dh_in: Read,
        d_gates: ReadWrite,
        /// The carried gradients, dh_0, dc_0 and the forward's c_0, in one
        /// buffer (`Carries`).
        carries: ReadWrite,
        lengths: Read,
        /// With a hidden projection: W_hr [D, P, H]; any buffer otherwise.
        w_hr: Read,
    }
}

/// The launch shape of the backward step kernel: `cols` consecutive units
/// per workgroup (its coalesced dimension), the reduction split over
/// `slices`, and `rows` batch rows per workgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct BackTile {
    /// `JW`.
    pub cols: u32,
    /// `KS`.
    pub slices: u32,
    /// `RB`.
    pub rows: u32,
    /// `WAVE`: the layers of a unidirectional stack in a wavefront (grid z
    /// = layer) instead of one layer's directions.
    pub wave: bool,
}

/// Units per backward workgroup: 32 consecutive f32 columns are one 128-byte
/// line, so a slice's loads are coalesced.
const BACK_COLS: u32 = 32;

/// Bytes of workgroup memory for the backward reduction's partial sums.
const BACK_REDUCTION_BYTES: u32 = 8 << 10;

impl BackTile {
    /// The backward tile paired with the forward's `config` at batch size
    /// `batch`: the same invocations per workgroup, as 32 columns by slices.
    pub fn for_batch(config: StepConfig, batch: usize) -> Self {
        let size = config.lanes * config.units;
        BackTile {
            cols: BACK_COLS,
            slices: (size / BACK_COLS).max(1),
            rows: (batch.max(1) as u32).next_power_of_two().min(MAX_STEP_ROWS),
            wave: false,
        }
    }

    /// The same tile for the wavefront backward of a stack.
    pub fn waved(self) -> Self {
        BackTile { wave: true, ..self }
    }

    pub fn workgroup_size(&self) -> u32 {
        self.cols * self.slices
    }

    /// Rows reduced at a time (`RC`): each of the first RC slices sums one
    /// row, and RC rows of partials fit [`BACK_REDUCTION_BYTES`].
    fn reduce_rows(&self) -> u32 {
        let fit = (BACK_REDUCTION_BYTES / (4 * self.workgroup_size())).max(1);
        self.rows.min(self.slices).min(1 << fit.ilog2())
    }

    /// Workgroups for one backward step: (unit blocks, batch blocks,
    /// directions, or layers in a wavefront).
    pub fn workgroups(&self, hidden: usize, batch: usize, depth: usize) -> (u32, u32, u32) {
        (
            (hidden as u32).div_ceil(self.cols),
            (batch as u32).div_ceil(self.rows),
            depth as u32,
        )
    }

    fn constants(&self) -> [(&'static str, u32); 6] {
        [
            ("JW", self.cols),
            ("KS", self.slices),
            ("RB", self.rows),
            ("RC", self.reduce_rows()),
            ("WGS", self.workgroup_size()),
            ("WAVE", self.wave as u32),
        ]
    }
}

/// Builds the backward step pipeline of each tile once, for one precision.
pub struct BackwardStepKernel {
    precision: Precision,
    built: TileCache<BackTile, BackPipeline>,
}

/// The backward step pipeline of one tile.
pub(crate) type BackPipeline = TilePipeline<BackTile>;

impl BackwardStepKernel {
    pub fn new(precision: Precision) -> Self {
        BackwardStepKernel {
            precision,
            built: TileCache::new(),
        }
    }

    /// The pipeline of `tile`, built on first use.
    pub(crate) fn pipeline(&mut self, ctx: &GpuContext, tile: BackTile) -> BackPipeline {
        let precision = self.precision;
        self.built.get(tile, || {
            let kernel = Kernel::new_typed::<BackwardBuffers>(
                ctx,
                "lstm step backward",
                concat!(
                    include_str!("../../../shaders/backward_common.wgsl"),
                    include_str!("../../../shaders/lstm_step_backward.wgsl")
                ),
                "main",
                &[("store_t", precision)],
                &tile.constants(),
            );
            TilePipeline::new(tile, kernel)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_tiles_fit_their_reduction_and_divide_their_rows() {
        // Every configuration `StepConfig::validate` accepts at 256 invocations.
        let valid = [4u32, 8, 16, 32, 64].into_iter().flat_map(|lanes| {
            [1u32, 2, 4, 8, 16, 32, 64]
                .into_iter()
                .map(move |units| StepConfig { lanes, units })
        });
        for config in valid.filter(|c| c.validate(256).is_ok()) {
            for batch in [1, 2, 3, 5, 16, 17, 64] {
                let t = BackTile::for_batch(config, batch);
                let rc = t.reduce_rows();
                assert!(rc.is_power_of_two() && t.rows.is_multiple_of(rc) && rc <= t.slices);
                assert!(rc * t.workgroup_size() * 4 <= BACK_REDUCTION_BYTES);
                // The wavefront's two products per row.
                assert!(2 * t.rows * t.cols * 4 + rc * t.workgroup_size() * 4 <= 16 << 10);
            }
        }
    }
}
