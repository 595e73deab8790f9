//! The kernels' parameters as typed structs, one per kernel family, each the Rust twin of the
//! `Params` struct at `@group(0) @binding(0)` of its WGSL file.
//!
//! Every field is a `u32`, declared in the WGSL struct's order; `kernel_params!` also records
//! each field's name and byte offset (`FIELDS`), which `tests/shaders.rs` compares with the WGSL
//! struct through naga's reflection, so the two can never drift apart silently.
//!
//! The lowering computes parameters in `u64` and converts them with [`to_u32`], which names the
//! parameter that would not fit the kernels' 32-bit index arithmetic.

use crate::error::{Error, Result};

/// Declares a `#[repr(C)]` all-`u32` parameter struct with its `FIELDS` table.
macro_rules! kernel_params {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident,)* }) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: u32,)*
        }

        impl $name {
            /// Each field's name and byte offset, in declaration order (the WGSL struct's).
            pub const FIELDS: &'static [(&'static str, usize)] =
                &[$((stringify!($field), std::mem::offset_of!($name, $field)),)*];
        }
    };
}

kernel_params! {
    /// `conv.wgsl`: one part of a direct convolution (any kernel, stride, padding, groups).
    ConvParams {
        /// Images.
        batch,
        /// Input channels.
        in_c,
        /// Input height.
        in_h,
        /// Input width.
        in_w,
        /// Output channels.
        out_c,
        /// Output height.
        out_h,
        /// Output width.
        out_w,
        /// Groups.
        groups,
        /// Zero padding above and below.
        pad_y,
        /// ceil(part_cout / OCN).
        oc_blocks,
        /// PX-pixel tiles per output row.
        tiles_x,
        /// Invocations that compute something (the rest of the grid returns at once).
        invocations,
        /// `main_subgroup`: tiles per (image, group, block) rounded up to the subgroup size.
        tiles_pad,
        /// First group of this part.
        g_begin,
        /// Groups in this part.
        part_groups,
        /// Output channels of each group in this part.
        part_cout,
        /// Channels of the group before this part (0 unless split inside a group).
        oc_skip,
        /// vec4s of weights per (group, c, ky, kx).
        oc_pad4,
        /// vec4s holding the input value.
        x_vec4s,
        /// The value this dispatch writes to the status word when it meets a value it cannot
        /// store ([`super::lower::status_tag`]).
        status_tag,
        /// Channels of the residual (added to the first `res_c` output channels).
        res_c,
        /// Zero padding left and right.
        pad_x,
        /// Vertical stride (the horizontal one is the `STRIDE` constant).
        stride_y,
        /// Vertical dilation (the horizontal one is the `DIL` constant).
        dil_y,
    }
}

kernel_params! {
    /// `conv_pointwise.wgsl`: one part of a 1x1 convolution with one group, or of a "same"
    /// convolution with one group and stride 1 ([`super::lower::is_dense_same`]), as a GEMM.
    PointwiseParams {
        /// Images.
        batch,
        /// Input channels.
        in_c,
        /// Input height.
        in_h,
        /// Input width.
        in_w,
        /// Output channels.
        out_c,
        /// Output height.
        out_h,
        /// Output width.
        out_w,
        /// ceil(oc_count / TM).
        oc_blocks,
        /// TN-pixel tiles per plane.
        tiles,
        /// Invocations that compute something.
        invocations,
        /// First output channel of this part.
        oc_begin,
        /// Output channels of this part.
        oc_count,
        /// vec4s per row of the transposed weights.
        oc_pad4,
        /// vec4s holding the input value.
        x_vec4s,
        /// vec4s holding the residual value.
        r_vec4s,
        /// See [`ConvParams::status_tag`].
        status_tag,
        /// See [`ConvParams::res_c`].
        res_c,
        /// A KH x KW kernel's zero padding above and below (`(KH - 1) / 2`; 0 for a 1x1).
        pad_y,
        /// Its zero padding left and right (`(KW - 1) / 2`).
        pad_x,
        /// Row tiles (a stride-2 1x1 whose inputs load as aligned vec4s): tiles per output row.
        tiles_x,
    }
}

kernel_params! {
    /// `squeeze_excite.wgsl`: the gate of one squeeze-and-excitation (one workgroup per image).
    SqueezeExciteParams {
        /// Images.
        batch,
        /// C.
        channels,
        /// R, the hidden width.
        squeeze,
        /// Values per plane.
        hw,
        /// C rounded up to a multiple of 4.
        c4,
        /// R rounded up to a multiple of 4.
        r4,
        /// First vec4 of W2 in the weights.
        w2_at,
        /// vec4s holding the input value.
        x_vec4s,
    }
}

kernel_params! {
    /// `pool.wgsl`: global average pooling, one invocation per plane.
    PoolParams {
        /// batch * channels.
        planes,
        /// Values per plane.
        hw,
        /// Padding to 16 bytes.
        _pad0,
        /// Padding to 16 bytes.
        _pad1,
    }
}

kernel_params! {
    /// `pool2d.wgsl`: max, average or adaptive average pooling, one invocation per output value.
    Pool2dParams {
        /// batch * channels * out_h * out_w.
        total,
        /// Input height.
        in_h,
        /// Input width.
        in_w,
        /// Output height.
        out_h,
        /// Output width.
        out_w,
        /// Window height.
        k_h,
        /// Window width.
        k_w,
        /// Vertical stride.
        s_h,
        /// Horizontal stride.
        s_w,
        /// Padding above and below.
        p_h,
        /// Padding left and right.
        p_w,
        /// Vertical dilation.
        d_h,
        /// Horizontal dilation.
        d_w,
        /// Average pooling: padding counts in the divisor (1) or not (0).
        count_include_pad,
        /// The bits of an f32 -infinity, max pooling's result where every tap is padding: a
        /// WGSL constant may not be infinite (Chromium refuses the shader), a uniform may.
        neg_inf_bits,
        /// Padding to 16 bytes.
        _pad1,
    }
}

kernel_params! {
    /// `channel_shuffle.wgsl`: one invocation per output value.
    ChannelShuffleParams {
        /// batch * channels * hw.
        total,
        /// Channels.
        channels,
        /// Groups.
        groups,
        /// Values per plane.
        hw,
    }
}

kernel_params! {
    /// `channel_pool.wgsl`: one invocation per (image, pixel).
    ChannelPoolParams {
        /// batch * hw.
        total,
        /// Channels.
        channels,
        /// Values per plane.
        hw,
        /// Padding to 16 bytes.
        _pad0,
    }
}

kernel_params! {
    /// `spatial_gate.wgsl`: one invocation per output value.
    SpatialGateParams {
        /// batch * channels * hw.
        total,
        /// Channels.
        channels,
        /// Values per plane.
        hw,
        /// Padding to 16 bytes.
        _pad0,
    }
}

kernel_params! {
    /// `channel_copy.wgsl`: one invocation per value copied.
    ChannelCopyParams {
        /// batch * count * hw.
        total,
        /// Channels copied.
        count,
        /// Values per plane.
        hw,
        /// Channels of the source.
        src_c,
        /// First channel read.
        src_begin,
        /// Channels of the destination.
        dst_c,
        /// First channel written.
        dst_begin,
        /// Padding to 16 bytes.
        _pad0,
    }
}

kernel_params! {
    /// `deform_conv.wgsl`: one invocation per (image, group, 4 output channels, pixel).
    DeformConvParams {
        /// Images.
        batch,
        /// Input channels.
        in_c,
        /// Input height.
        in_h,
        /// Input width.
        in_w,
        /// Output channels.
        out_c,
        /// Output height.
        out_h,
        /// Output width.
        out_w,
        /// Groups.
        groups,
        /// Offset groups.
        offset_groups,
        /// Kernel height.
        k_h,
        /// Kernel width.
        k_w,
        /// Vertical stride.
        s_h,
        /// Horizontal stride.
        s_w,
        /// Padding above and below.
        p_h,
        /// Padding left and right.
        p_w,
        /// Vertical dilation.
        d_h,
        /// Horizontal dilation.
        d_w,
        /// ceil(out_c / groups / 4).
        oc_blocks,
        /// vec4s of weights per (group, c, ky, kx).
        oc_pad4,
        /// Invocations.
        invocations,
        /// See [`ConvParams::status_tag`].
        status_tag,
        /// Padding to 16 bytes.
        _pad0,
        /// Padding to 16 bytes.
        _pad1,
        /// Padding to 16 bytes.
        _pad2,
    }
}

kernel_params! {
    /// `linear.wgsl`: the fully connected head.
    LinearParams {
        /// Images.
        batch,
        /// Input features.
        in_f,
        /// Output features (classes).
        out_f,
        /// vec4s per padded weight row.
        in4,
        /// vec4s holding x.
        x_vec4s,
        /// See [`ConvParams::status_tag`].
        status_tag,
        /// First output of this part (a head over the binding limit is split by outputs).
        o_begin,
        /// Outputs of this part.
        o_count,
    }
}

/// One dispatch's parameters, typed by kernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelParams {
    /// `conv.wgsl`.
    Conv(ConvParams),
    /// `conv_pointwise.wgsl`.
    Pointwise(PointwiseParams),
    /// `squeeze_excite.wgsl`.
    SqueezeExcite(SqueezeExciteParams),
    /// `pool.wgsl`.
    Pool(PoolParams),
    /// `pool2d.wgsl`.
    Pool2d(Pool2dParams),
    /// `channel_shuffle.wgsl`.
    ChannelShuffle(ChannelShuffleParams),
    /// `deform_conv.wgsl`.
    DeformConv(DeformConvParams),
    /// `channel_pool.wgsl`.
    ChannelPool(ChannelPoolParams),
    /// `spatial_gate.wgsl`.
    SpatialGate(SpatialGateParams),
    /// `channel_copy.wgsl`.
    ChannelCopy(ChannelCopyParams),
    /// `linear.wgsl`.
    Linear(LinearParams),
}

impl KernelParams {
    /// The bytes the uniform binding holds.
    pub fn bytes(&self) -> &[u8] {
        match self {
            KernelParams::Conv(p) => bytemuck::bytes_of(p),
            KernelParams::Pointwise(p) => bytemuck::bytes_of(p),
            KernelParams::SqueezeExcite(p) => bytemuck::bytes_of(p),
            KernelParams::Pool(p) => bytemuck::bytes_of(p),
            KernelParams::Pool2d(p) => bytemuck::bytes_of(p),
            KernelParams::ChannelShuffle(p) => bytemuck::bytes_of(p),
            KernelParams::DeformConv(p) => bytemuck::bytes_of(p),
            KernelParams::ChannelPool(p) => bytemuck::bytes_of(p),
            KernelParams::SpatialGate(p) => bytemuck::bytes_of(p),
            KernelParams::ChannelCopy(p) => bytemuck::bytes_of(p),
            KernelParams::Linear(p) => bytemuck::bytes_of(p),
        }
    }
}

/// `value` as a kernel parameter, or an [`Error::IndexOverflow`] naming it.
pub fn to_u32(op: &str, param: &str, value: u64) -> Result<u32> {
    u32::try_from(value).map_err(|_| Error::IndexOverflow {
        what: format!("parameter `{param}` of `{op}`"),
        count: value,
        max: u32::MAX as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_packed_u32s_in_order() {
        for fields in [
            ConvParams::FIELDS,
            PointwiseParams::FIELDS,
            SqueezeExciteParams::FIELDS,
            PoolParams::FIELDS,
            Pool2dParams::FIELDS,
            ChannelShuffleParams::FIELDS,
            DeformConvParams::FIELDS,
            ChannelPoolParams::FIELDS,
            SpatialGateParams::FIELDS,
            ChannelCopyParams::FIELDS,
            LinearParams::FIELDS,
        ] {
            for (i, (_, offset)) in fields.iter().enumerate() {
                assert_eq!(*offset, 4 * i);
            }
            // Uniform structs are read in whole 16-byte rows.
            assert_eq!(fields.len() % 4, 0, "{fields:?}");
        }
        assert_eq!(std::mem::size_of::<ConvParams>(), 96);
    }

    #[test]
    fn oversized_parameters_are_named() {
        assert_eq!(to_u32("c", "in_c", 7).unwrap(), 7);
        let e = to_u32("stem", "invocations", 1 << 33)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invocations") && e.contains("stem"), "{e}");
    }
}
