//! Register tiles per adapter type: how many outputs each kernel invocation computes.
//!
//! A CPU-backed adapter (lavapipe, SwiftShader, WARP) runs a workgroup on one core, 8 or 16
//! invocations per SIMD instruction; a storage-buffer load there costs as much as dozens of
//! FMAs (it is a loop over the lanes), so the fastest kernels compute many outputs per
//! invocation from few loads. A GPU hides load latency with occupancy instead, which large
//! register tiles would lower. The runner therefore picks the tiles by these documented rules,
//! per adapter type ([`Tiling::for_adapter`]) and layer shape; [`RunnerOptions::tiling`]
//! overrides the choice (the tests run both rule sets on every adapter: results are the same,
//! only speed differs). On devices whose subgroups are exactly 8 invocations (lavapipe), the
//! rules also say when the convolutions use their subgroup entry points, which share loads
//! across the lanes of a subgroup ([`RunnerOptions::subgroups`] turns them off).
//!
//! [`RunnerOptions::tiling`]: super::RunnerOptions::tiling
//! [`RunnerOptions::subgroups`]: super::RunnerOptions::subgroups

/// Workgroups a CPU-backed adapter should get from a dispatch at least, so that its threads
/// (one workgroup at a time each) finish nearly together.
const CPU_MIN_WORKGROUPS: u64 = 32;

/// Most input values of a row one direct-conv invocation can hold: `conv.wgsl`'s span array
/// (`MAX_SV` vec4s, one of them taken by the realignment).
const MAX_SPAN: usize = 41;

/// The tile rules of one adapter type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tiling {
    /// Large tiles for CPU-backed adapters (`wgpu::DeviceType::Cpu`): the 1x1 GEMM computes
    /// 16 output channels x 16 pixels per invocation, the direct conv up to 8 channels x 8
    /// pixels of a row (fewer pixels on narrow rows, so that little of the tile is wasted).
    Cpu,
    /// Small tiles for GPUs (every other device type): the 1x1 GEMM computes 8 output channels
    /// x 4 pixels per invocation, the direct conv up to 8 channels x 4 pixels.
    Gpu,
}

impl Tiling {
    /// The rules for an adapter: [`Tiling::Cpu`] for `DeviceType::Cpu`, else [`Tiling::Gpu`].
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Self {
        if info.device_type == wgpu::DeviceType::Cpu {
            Tiling::Cpu
        } else {
            Tiling::Gpu
        }
    }

    /// The 1x1 GEMM's register tile `[TM, TN]`: output channels x pixels per invocation (each a
    /// multiple of 4; `TM * TN <= 256`, what the kernel's accumulator array holds).
    pub fn pointwise(self) -> [u32; 2] {
        match self {
            Tiling::Cpu => [16, 16],
            Tiling::Gpu => [8, 4],
        }
    }

    /// Whether a 1x1 GEMM with `blocks` blocks of output channels runs the subgroup entry point
    /// (`conv_pointwise_subgroup.wgsl`: the 8 lanes of a subgroup take consecutive (tile, block)
    /// pairs and share the tiles' input loads) on a device that has it: on CPU-backed adapters,
    /// when there are at least 7 blocks, so that a subgroup spans at most two tiles. Never on
    /// GPUs (untested there).
    pub fn pointwise_subgroup(self, blocks: u64) -> bool {
        self == Tiling::Cpu && blocks >= 7
    }

    /// Whether a direct convolution runs the subgroup entry point (`conv_subgroup.wgsl`: the 8
    /// lanes of a subgroup share one channel block's weight loads) on a device that has it: on
    /// CPU-backed adapters, for kernels of at most 3x3 whose weights per input channel fit the
    /// kernel's 24 vec4s, when a channel block has at least 7 tiles of pixels (each block's
    /// tiles are padded to a multiple of 8). Never on GPUs (untested there).
    pub fn conv_subgroup(self, kernel: [usize; 2], ocn: u32, tiles: u64) -> bool {
        let weights = kernel[0] * kernel[1] * (ocn as usize).div_ceil(4);
        self == Tiling::Cpu && kernel[0] <= 3 && kernel[1] <= 3 && weights <= 24 && tiles >= 7
    }

    /// Invocations per workgroup for a dispatch of `invocations` (the conv kernels): on GPUs
    /// 64; on CPU-backed adapters the largest of 64, 32, 16, 8 that still gives 32 workgroups,
    /// since a small dispatch in few large workgroups leaves threads idle at its end (the SIMD
    /// width is 8 lanes, so 8 is the floor). On lavapipe (2 threads) a floor of 32 workgroups
    /// measured ~3% faster at batch 1 than one of 8.
    pub fn workgroup(self, invocations: u64) -> u32 {
        match self {
            Tiling::Gpu => 64,
            Tiling::Cpu => [64u32, 32, 16, 8]
                .into_iter()
                .find(|&wg| invocations.div_ceil(wg as u64) >= CPU_MIN_WORKGROUPS)
                .unwrap_or(8),
        }
    }

    /// The direct conv's register tile `[OCN, PX]` for a group of `cout_g` output channels, a
    /// kernel `kw` wide, a stride and `out_w`-pixel output rows: 4 or 8 channels (weights load
    /// as vec4), and PX pixels of a row whose input span `(PX - 1) * stride + kw` fits the
    /// kernel's span array. CPU-backed adapters take 8 unless that pads the row by more than
    /// 1/7 of its width (then 4; on lavapipe 16 measured slower than 8: the tile no longer
    /// stays in registers); GPUs take 4. `None` when even 4 pixels do not fit.
    pub fn conv(self, cout_g: usize, kw: usize, stride: usize, out_w: u64) -> Option<[u32; 2]> {
        let ocn = if cout_g <= 4 { 4 } else { 8 };
        let fits = |px: usize| (px - 1) * stride + kw <= MAX_SPAN;
        let px = match self {
            Tiling::Cpu => [8usize, 4].into_iter().find(|&px| {
                fits(px) && (px == 4 || out_w.div_ceil(px as u64) * px as u64 * 7 <= out_w * 8)
            }),
            Tiling::Gpu => Some(4).filter(|&px| fits(px)),
        }?;
        Some([ocn, px as u32])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_dispatches_get_small_workgroups_on_cpus() {
        let wg = |n| Tiling::Cpu.workgroup(n);
        assert_eq!(
            [wg(10_000), wg(1_500), wg(600), wg(300), wg(20)],
            [64, 32, 16, 8, 8]
        );
        assert_eq!(Tiling::Gpu.workgroup(20), 64);
    }

    #[test]
    fn subgroup_gemm_from_7_channel_blocks() {
        let sg = |b| Tiling::Cpu.pointwise_subgroup(b);
        assert_eq!(
            [sg(3), sg(6), sg(7), sg(13), sg(28)],
            [false, false, true, true, true]
        );
        assert!(!Tiling::Gpu.pointwise_subgroup(28));
    }

    #[test]
    fn subgroup_conv_for_small_kernels_with_enough_tiles() {
        assert!(Tiling::Cpu.conv_subgroup([3, 3], 8, 7));
        assert!(!Tiling::Cpu.conv_subgroup([3, 3], 8, 6));
        assert!(!Tiling::Cpu.conv_subgroup([7, 7], 8, 100));
        assert!(!Tiling::Gpu.conv_subgroup([3, 3], 8, 100));
    }

    #[test]
    fn conv_tiles_pad_rows_little() {
        let px = |w| Tiling::Cpu.conv(8, 3, 1, w).unwrap()[1];
        assert_eq!(
            [px(112), px(56), px(28), px(14), px(7), px(3)],
            [8, 8, 8, 8, 8, 4]
        );
        assert_eq!(Tiling::Cpu.conv(4, 3, 2, 56), Some([4, 8]));
        assert_eq!(Tiling::Gpu.conv(8, 3, 2, 56), Some([8, 4]));
        assert_eq!(Tiling::Cpu.conv(8, 38, 1, 56), Some([8, 4]));
        assert_eq!(Tiling::Cpu.conv(8, 39, 1, 56), None);
    }
}
