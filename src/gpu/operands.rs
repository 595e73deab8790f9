//! Texture operands ([`Operands::Texture`]): the inputs and weights of the convolutions and of
//! squeeze-and-excitation as 2-D textures of vec4 texels, [`TEXTURE_ROW`] a row, which
//! CPU-backed adapters load ~10x faster than storage buffers (`shaders/operands_texture.wgsl`).
//! The weights are uploaded as textures once (`GpuModel`); an activation is copied from its
//! buffer into the runner's input texture right before the first dispatch that reads it. This module says which dispatches need that copy
//! and records it.

use super::kernels::{Family, Operands, TEXTURE_ROW};
use super::lower::{Binding, Dispatch};
use super::Precision;
use crate::error::{Error, Result};
use crate::plan::ValueId;

/// Bytes of one operand texel: 4 values of the storage precision.
pub(crate) fn texel_bytes(precision: Precision) -> u64 {
    4 * precision.bytes()
}

/// Rows of an operand texture holding `texels` texels (at least one).
pub(crate) fn rows(texels: u64) -> u64 {
    texels.div_ceil(TEXTURE_ROW as u64).max(1)
}

/// An operand texture of `rows` rows of [`TEXTURE_ROW`] texels: rgba32float, or rgba16float for
/// f16 storage; written by the queue (weights) or by copies from activation buffers.
pub(crate) fn descriptor(
    label: &str,
    rows: u32,
    precision: Precision,
) -> wgpu::TextureDescriptor<'_> {
    wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d {
            width: TEXTURE_ROW,
            height: rows,
            depth_or_array_layers: 1,
        },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: match precision {
            Precision::F32 => wgpu::TextureFormat::Rgba32Float,
            Precision::F16 => wgpu::TextureFormat::Rgba16Float,
        },
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    }
}

/// An error naming the device limit when an operand texture of `rows` rows does not fit it.
pub(crate) fn check_rows(limits: &wgpu::Limits, what: &str, rows: u64) -> Result<()> {
    let max = limits.max_texture_dimension_2d as u64;
    if rows > max {
        return Err(Error::DeviceLimit {
            what: format!("{what} as a texture ({rows} rows of {TEXTURE_ROW} texels)"),
            limit: "max_texture_dimension_2d",
            have: max,
            needed: rows,
            advice: "; set RunnerOptions::textures to Some(false)".into(),
        });
    }
    Ok(())
}

/// For each dispatch, the value to copy into the input texture before it runs: the input of
/// a dispatch reading texture operands (a convolution, squeeze-and-excitation), unless the texture still holds that value (the
/// dispatch before it read it too, and nothing since wrote its buffer: a split convolution's
/// parts, a block's two convolutions of one input, or a squeeze-and-excitation and the
/// convolution it gates).
/// `loc` says where each value lives (values at equal locations share a buffer).
pub(crate) fn copies<L: PartialEq>(dispatches: &[Dispatch], loc: &[L]) -> Vec<Option<ValueId>> {
    let mut held: Option<ValueId> = None;
    dispatches
        .iter()
        .map(|d| {
            let mut copy = None;
            if d.variant.operands == Operands::Texture {
                if let Some(&Binding::Value(v)) = d.bindings.first() {
                    if held != Some(v) {
                        copy = Some(v);
                    }
                    held = Some(v);
                }
            }
            if let Some(h) = held {
                if writes(d, d.variant.family).any(|w| loc[w] == loc[h]) {
                    held = None;
                }
            }
            copy
        })
        .collect()
}

/// The values a dispatch writes: its read-write storage bindings that hold values.
fn writes(d: &Dispatch, family: Family) -> impl Iterator<Item = ValueId> + '_ {
    family
        .storage_bindings()
        .iter()
        .zip(&d.bindings)
        .filter_map(|(&(_, read_only), b)| match b {
            Binding::Value(v) if !read_only => Some(*v),
            _ => None,
        })
}

/// The input texture of the convolutions reading texture operands, rows enough for the largest
/// input, `texels` texels; `None` when no convolution reads one (`texels` is `None`).
pub(crate) fn input_texture(
    device: &wgpu::Device,
    texels: Option<u64>,
    precision: Precision,
) -> Result<Option<(wgpu::Texture, wgpu::TextureView)>> {
    let Some(texels) = texels else {
        return Ok(None);
    };
    let rows = rows(texels);
    check_rows(&device.limits(), "the largest convolution input", rows)?;
    let texture = device.create_texture(&descriptor("convolution input", rows as u32, precision));
    let view = texture.create_view(&Default::default());
    Ok(Some((texture, view)))
}

/// Texels of the largest input a dispatch reads from the input texture, by `texels` of a
/// value; `None` when none does.
pub(crate) fn largest_input(
    dispatches: &[Dispatch],
    texels: impl Fn(ValueId) -> u64,
) -> Option<u64> {
    dispatches
        .iter()
        .filter(|d| d.variant.operands == Operands::Texture)
        .filter_map(|d| match d.bindings.first() {
            Some(&Binding::Value(v)) => Some(texels(v)),
            _ => None,
        })
        .max()
}

/// Records the copy of `texels` texels from the start of `buffer` into `texture`, row by row
/// ([`TEXTURE_ROW`] texels a row; the last row partly).
pub(crate) fn encode_copy(
    encoder: &mut wgpu::CommandEncoder,
    buffer: &wgpu::Buffer,
    texture: &wgpu::Texture,
    texels: u64,
    precision: Precision,
) {
    let row = TEXTURE_ROW as u64;
    let row_bytes = row * texel_bytes(precision);
    let (full, rest) = (texels / row, texels % row);
    let mut copy = |first_row: u64, width: u64, height: u64| {
        encoder.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo {
                buffer,
                layout: wgpu::TexelCopyBufferLayout {
                    offset: first_row * row_bytes,
                    bytes_per_row: Some(row_bytes as u32),
                    rows_per_image: None,
                },
            },
            wgpu::TexelCopyTextureInfo {
                texture,
                mip_level: 0,
                origin: wgpu::Origin3d {
                    x: 0,
                    y: first_row as u32,
                    z: 0,
                },
                aspect: wgpu::TextureAspect::All,
            },
            wgpu::Extent3d {
                width: width as u32,
                height: height as u32,
                depth_or_array_layers: 1,
            },
        );
    };
    if full > 0 {
        copy(0, row, full);
    }
    if rest > 0 {
        copy(full, rest, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Architecture;
    use crate::gpu::lower::{lower_plan, weight_parts, LowerOptions};
    use crate::gpu::memory::plan_memory;
    use crate::gpu::tiling::Tiling;
    use crate::plan::Plan;

    /// Every convolution reading texture operands finds its input in the texture: the last
    /// copy before it was of that value and nothing since wrote the value's buffer; and a
    /// ResNet's block input is copied once for its first convolution and its projection.
    #[test]
    fn every_texture_read_sees_its_input() {
        for name in [
            "resnet50",
            "regnet_y_400mf",
            "rexnet_100",
            "resnext50_32x4d",
        ] {
            let plan = Plan::new(Architecture::named(name).unwrap(), 64, 64).unwrap();
            let o = LowerOptions {
                batch: 2,
                tiling: Tiling::Cpu,
                subgroups: true,
                tuned: None,
                textures: true,
                dense_gemm: true,
                unrolled_channels: false,
            };
            let parts = |i: usize| weight_parts(&plan.ops[i], 4, u64::MAX).unwrap();
            let ds = lower_plan(&plan.graph(), &parts, &o).unwrap();
            let memory = plan_memory(&plan, 2, 4, &[], u64::MAX).unwrap();
            let copies = copies(&ds, &memory.loc);
            let mut held = None;
            let mut reads = 0;
            for (d, copy) in ds.iter().zip(&copies) {
                if let Some(v) = copy {
                    held = Some(*v);
                }
                if d.variant.operands == Operands::Texture {
                    reads += 1;
                    assert!(!d.variant.subgroup, "{name}: {}", d.label);
                    assert_eq!(d.bindings[0], Binding::Value(held.unwrap()), "{}", d.label);
                } else {
                    assert!(copy.is_none(), "{name}: {} copies for nothing", d.label);
                }
                let written: Vec<_> = writes(d, d.variant.family).collect();
                if let Some(h) = held {
                    if written.iter().any(|&w| memory.loc[w] == memory.loc[h]) {
                        held = None;
                    }
                }
            }
            let copied = copies.iter().flatten().count();
            assert!(
                reads > 0 && copied <= reads,
                "{name}: {copied} copies, {reads} reads"
            );
            if name == "resnet50" {
                // Four blocks with a projection: it shares its block's input copy.
                assert!(
                    copied <= reads - 4,
                    "{name}: {copied} copies, {reads} reads"
                );
            }
            // Squeeze-and-excitation reads the input of the convolution it gates from the
            // texture: where that convolution runs next, the one copy serves both.
            for (k, d) in ds.iter().enumerate() {
                if d.variant.family == Family::SqueezeExcite {
                    assert_eq!(d.variant.operands, Operands::Texture, "{}", d.label);
                    if ds[k + 1].bindings[0] == d.bindings[0] {
                        assert!(copies[k + 1].is_none(), "{name}: {} copied twice", d.label);
                    }
                }
            }
        }
    }
}
