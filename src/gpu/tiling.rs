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

/// The sizes the kernels' register arrays are declared with: WGSL `const`s, by file and name.
/// The tile rules below are written against these; `tests/shaders.rs` reads each one from its
/// WGSL file and checks that it is this value, so the two cannot drift apart.
pub const SHADER_CONSTANTS: &[(&str, &str, u32)] = &[
    ("conv.wgsl", "MAX_OC", CONV_MAX_OC),
    ("conv.wgsl", "MAX_PV", CONV_MAX_PV),
    ("conv.wgsl", "MAX_SV", CONV_MAX_SV),
    ("conv.wgsl", "MAX_KW", CONV_MAX_KW),
    ("conv_pointwise.wgsl", "MAX_TM", POINTWISE_MAX_TM),
    ("conv_pointwise.wgsl", "MAX_NV", POINTWISE_MAX_NV),
    ("conv_pointwise.wgsl", "MAX_SV", POINTWISE_MAX_NV + 1),
    (
        "conv_pointwise.wgsl",
        "MAX_CHANNEL_STEP",
        POINTWISE_UNROLLED_CHANNELS,
    ),
    (
        "conv_pointwise_subgroup.wgsl",
        "MAX_XK",
        SUBGROUP_GEMM_MAX_XK,
    ),
    ("conv_subgroup.wgsl", "MAX_WK", SUBGROUP_CONV_MAX_WK),
    ("conv_subgroup.wgsl", "MAX_K", SUBGROUP_CONV_MAX_K),
    ("subgroup.wgsl", "SG", super::kernels::SUBGROUP_SIZE),
    ("deform_conv.wgsl", "MAX_OCV", super::lower::DEFORM_MAX_OCV),
    ("linear.wgsl", "OUTS", super::lower::LINEAR_OUTS),
    (
        "operands_texture.wgsl",
        "TEXTURE_ROW_BITS",
        super::kernels::TEXTURE_ROW_BITS,
    ),
];

/// `conv.wgsl`: output channels per invocation at most (`OCN`).
pub const CONV_MAX_OC: u32 = 8;
/// `conv.wgsl`: vec4s of pixels per invocation at most (`PX / 4`).
pub const CONV_MAX_PV: u32 = 4;
/// `conv.wgsl`: vec4s of a row span (`MAX_SV`), one of them taken by the realignment.
pub const CONV_MAX_SV: u32 = 12;
/// Most input values of a row one direct-conv invocation can hold: `(PX - 1) * STRIDE + KW`
/// plus up to 3 values of realignment fit `CONV_MAX_SV - 1` vec4s.
pub const MAX_SPAN: usize = 4 * (CONV_MAX_SV as usize - 1) - 3;
/// `conv.wgsl`: the widest kernel (its loop over kernel columns is written out to this bound).
pub const CONV_MAX_KW: u32 = 7;
/// `conv_pointwise.wgsl`: output channels per invocation at most (`TM`).
pub const POINTWISE_MAX_TM: u32 = 16;
/// `conv_pointwise.wgsl`: vec4s of pixels per invocation at most (`TN / 4`).
pub const POINTWISE_MAX_NV: u32 = 4;
/// `conv_pointwise.wgsl`: input channels per trip of the channel loop where they are written out
/// ([`unrolled_channels`]; `CHANNEL_STEP`, at most `MAX_CHANNEL_STEP`).
pub const POINTWISE_UNROLLED_CHANNELS: u32 = 4;
/// `conv_pointwise_subgroup.wgsl`: vec4s loaded per round, 2 tiles x 2 channels x (TN / 4 + 1).
pub const SUBGROUP_GEMM_MAX_XK: u32 = 24;
/// The subgroup GEMM's lanes take consecutive (tile, channel block) pairs and load the inputs
/// of at most two tiles: a subgroup of 8 lanes spans at most two tiles when a tile has at least
/// 7 channel blocks.
pub const SUBGROUP_GEMM_MIN_BLOCKS: u64 = super::kernels::SUBGROUP_SIZE as u64 - 1;
/// `conv_subgroup.wgsl`: vec4s of weights per input channel (`KH * KW * ceil(OCN / 4)`).
pub const SUBGROUP_CONV_MAX_WK: u32 = 24;
/// `conv_subgroup.wgsl`: largest kernel side.
pub const SUBGROUP_CONV_MAX_K: u32 = 3;

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
        self == Tiling::Cpu && blocks >= SUBGROUP_GEMM_MIN_BLOCKS
    }

    /// Whether a direct convolution runs the subgroup entry point (`conv_subgroup.wgsl`: the 8
    /// lanes of a subgroup share one channel block's weight loads) on a device that has it: on
    /// CPU-backed adapters, for kernels of at most 3x3 whose weights per input channel fit the
    /// kernel's 24 vec4s, when a channel block has at least 7 tiles of pixels (each block's
    /// tiles are padded to a multiple of 8). Never on GPUs (untested there).
    pub fn conv_subgroup(self, kernel: [usize; 2], ocn: u32, tiles: u64) -> bool {
        self == Tiling::Cpu && conv_subgroup_fits(kernel, ocn, tiles)
    }

    /// Whether a dense "same" convolution larger than 1x1 (one group, stride 1, output plane =
    /// input plane: [`super::lower::is_dense_same`], ResNet's 3x3s) runs as the GEMM over its
    /// taps (`conv_pointwise.wgsl` with `KH`, `KW`) rather than the direct kernel: on CPU-backed
    /// adapters reading texture operands, where each tap's tile of pixels is one contiguous run
    /// of vec4 texel fetches and the GEMM's 16 x 16 tile does 256 FMAs per 9 loads (the direct
    /// kernel's 8 x 8 tile: 192 per ~10, with a realignment and a mask per value): 1.4-2.7x
    /// faster on lavapipe, 2-2.7x on SwiftShader (BENCHMARKS.md). Not with storage operands
    /// (slower than the direct kernel's subgroup path, measured), nor on GPUs (not measured).
    pub fn dense_as_gemm(self, textures: bool) -> bool {
        self == Tiling::Cpu && textures
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

    /// The direct conv's register tile `[OCN, PX]` and kernel columns per row span `KC` for a
    /// group of `cout_g` output channels, a kernel `kw` wide with horizontal `stride` and
    /// `dilation`, and `out_w`-pixel output rows: 4 or 8 channels (weights load as vec4), and
    /// PX pixels of a row whose input span `(PX - 1) * stride + (KC - 1) * dilation + 1` fits
    /// the kernel's span array. CPU-backed adapters take 8 pixels unless that pads the row by
    /// more than 1/7 of its width (then 4; on lavapipe 16 measured slower than 8: the tile no
    /// longer stays in registers); GPUs take 4. KC is the whole kernel width when its span
    /// fits (every model here), else the most columns (at most `MAX_KW`) whose span does.
    /// `None` when not even one column of 4 pixels fits (a horizontal stride over 13).
    pub fn conv(
        self,
        cout_g: usize,
        kw: usize,
        stride: usize,
        dilation: usize,
        out_w: u64,
    ) -> Option<[u32; 3]> {
        let ocn = if cout_g <= 4 { 4 } else { 8 };
        let fits = |px: usize| {
            conv_columns(px as u32, kw, stride, dilation)
                == Some(kw.min(CONV_MAX_KW as usize) as u32)
        };
        let px = match self {
            Tiling::Cpu => [8usize, 4].into_iter().find(|&px| {
                fits(px) && (px == 4 || out_w.div_ceil(px as u64) * px as u64 * 7 <= out_w * 8)
            }),
            Tiling::Gpu => Some(4).filter(|&px| fits(px)),
        }
        .unwrap_or(4);
        Some([
            ocn,
            px as u32,
            conv_columns(px as u32, kw, stride, dilation)?,
        ])
    }
}

/// Whether the 1x1 GEMM (`conv_pointwise.wgsl`) takes its input channels 4 per trip of its
/// channel loop (`CHANNEL_STEP` 4, the 4 written out) rather than one: on SwiftShader, whose
/// compiler (Subzero) pays for every trip of a runtime loop (the 1x1s ran 10-20% faster with 4,
/// BENCHMARKS.md). SwiftShader is Chromium's WebGPU adapter on machines without a GPU (there a
/// fallback adapter: `DeviceType::Cpu` on `BrowserWebGpu`, whose name the browser leaves empty)
/// and natively a Vulkan driver named "SwiftShader Device". Not on lavapipe, whose LLVM ran the
/// 1x1s 10-25% slower with 4.
pub fn unrolled_channels(info: &wgpu::AdapterInfo) -> bool {
    info.device_type == wgpu::DeviceType::Cpu
        && (info.backend == wgpu::Backend::BrowserWebGpu
            || info.name.to_ascii_lowercase().contains("swiftshader"))
}

/// The direct conv's kernel columns per row span (`KC`) for `px` pixels of a row, a kernel `kw`
/// wide with horizontal `stride` and `dilation`: the whole width when its input span
/// `(px - 1) * stride + (KC - 1) * dilation + 1` fits the kernel's span array, else the most
/// columns (at most `MAX_KW`) that do; `None` when not even one does.
pub fn conv_columns(px: u32, kw: usize, stride: usize, dilation: usize) -> Option<u32> {
    let span = |kc: usize| (px as usize).saturating_sub(1) * stride + (kc - 1) * dilation + 1;
    (1..=kw.min(CONV_MAX_KW as usize))
        .rev()
        .find(|&kc| span(kc) <= MAX_SPAN)
        .map(|kc| kc as u32)
}

/// Whether a direct convolution's shape allows the subgroup entry point (`conv_subgroup.wgsl`):
/// kernels of at most 3x3 whose weights per input channel fit its 24 vec4s, and at least 7
/// tiles of pixels per channel block.
pub fn conv_subgroup_fits(kernel: [usize; 2], ocn: u32, tiles: u64) -> bool {
    let weights = kernel[0] * kernel[1] * (ocn as usize).div_ceil(4);
    let k = SUBGROUP_CONV_MAX_K as usize;
    kernel[0] <= k && kernel[1] <= k && weights <= SUBGROUP_CONV_MAX_WK as usize && tiles >= 7
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_fit_the_kernels_arrays() {
        for t in [Tiling::Cpu, Tiling::Gpu] {
            let [tm, tn] = t.pointwise();
            assert!(tm <= POINTWISE_MAX_TM && tn / 4 <= POINTWISE_MAX_NV);
            assert!(tm % 4 == 0 && tn % 4 == 0);
            // The subgroup GEMM loads 2 tiles x 2 channels x (TN / 4 + 1) vec4s per round.
            assert!(2 * 2 * (tn / 4 + 1) <= SUBGROUP_GEMM_MAX_XK);
            let cases = [
                (8, 3, 1, 1, 56),
                (4, 3, 2, 1, 112),
                (64, 7, 2, 1, 112),
                (8, 3, 1, 6, 56),
                (8, 11, 1, 1, 56),
                (8, 3, 3, 13, 20),
                (8, 5, 13, 1, 20),
            ];
            for (cout_g, kw, stride, dil, w) in cases {
                let [ocn, px, kc] = t.conv(cout_g, kw, stride, dil, w).unwrap();
                assert!(ocn <= CONV_MAX_OC && px / 4 <= CONV_MAX_PV && kc <= CONV_MAX_KW);
                let kc = kc as usize;
                assert!(kc >= 1 && kc <= kw);
                let span = (px as usize - 1) * stride + (kc - 1) * dil + 1;
                assert!(span <= MAX_SPAN, "{span}");
            }
            assert_eq!(t.conv(8, 3, 14, 1, 20), None);
        }
        assert_eq!(MAX_SPAN, 41);
    }

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
        let px = |w| Tiling::Cpu.conv(8, 3, 1, 1, w).unwrap()[1];
        assert_eq!(
            [px(112), px(56), px(28), px(14), px(7), px(3)],
            [8, 8, 8, 8, 8, 4]
        );
        assert_eq!(Tiling::Cpu.conv(4, 3, 2, 1, 56), Some([4, 8, 3]));
        assert_eq!(Tiling::Gpu.conv(8, 3, 2, 1, 56), Some([8, 4, 3]));
        assert_eq!(Tiling::Cpu.conv(8, 7, 2, 1, 56), Some([8, 8, 7]));
        // conv.wgsl writes out its loop over the columns of a span up to MAX_KW: wider kernels
        // load a span per 7 columns; widely dilated ones per fewer.
        assert_eq!(Tiling::Cpu.conv(8, 11, 1, 1, 56), Some([8, 8, 7]));
        assert_eq!(Tiling::Cpu.conv(8, 3, 1, 12, 56), Some([8, 8, 3]));
        assert_eq!(Tiling::Cpu.conv(8, 3, 1, 20, 56), Some([8, 4, 2]));
    }

    #[test]
    fn channels_unrolled_on_swiftshader_only() {
        let info = |name: &str, backend, device_type| wgpu::AdapterInfo {
            name: name.into(),
            ..wgpu::AdapterInfo::new(device_type, backend)
        };
        use wgpu::{Backend, DeviceType};
        let cases = [
            (
                "SwiftShader Device (Subzero)",
                Backend::Vulkan,
                DeviceType::Cpu,
                true,
            ),
            ("", Backend::BrowserWebGpu, DeviceType::Cpu, true),
            ("", Backend::BrowserWebGpu, DeviceType::IntegratedGpu, false),
            (
                "llvmpipe (LLVM 19.1.7, 256 bits)",
                Backend::Vulkan,
                DeviceType::Cpu,
                false,
            ),
            (
                "NVIDIA H200",
                Backend::Vulkan,
                DeviceType::DiscreteGpu,
                false,
            ),
        ];
        for (name, backend, device_type, want) in cases {
            assert_eq!(
                unrolled_channels(&info(name, backend, device_type)),
                want,
                "{name}"
            );
        }
    }
}
