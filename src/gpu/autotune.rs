//! The autotuner: register tiles and workgroup sizes chosen by timing them on the device.
//!
//! The rules of [`super::tiling`] were measured on one host and do not carry to every other
//! (BENCHMARKS.md, "Portable speed"). The autotuner groups a plan's convolutions into shape
//! classes ([`ShapeClass`]: the kernel, stride and dilation, and the sizes of the GEMM rounded
//! to powers of two), times a small set of candidate [`TileChoice`]s for each class on the
//! device ([`candidates`], [`tune`]) and keeps the fastest in a [`TuneTable`]. A runner given
//! the table ([`RunnerOptions::tuned`](super::RunnerOptions::tuned)) takes its choice for every
//! convolution of a class it holds and the documented rules for the rest; without a table (the
//! default) the rules decide everything. [`TuneCache`] keeps tables on disk, one file per
//! adapter, driver, host CPU, precision and shader checks.
//!
//! A choice changes speed, never results: every candidate computes the same values
//! (`tests/autotune.rs` runs each against torch on small shapes), and a choice that does not fit
//! a layer (a tile larger than the kernel's arrays, a subgroup entry point the layer's shape does
//! not allow, as a hand-edited or stale file may hold) falls back to the rules for that layer.
//!
//! What tuning costs: each candidate is a pipeline of its own (tiles and workgroup sizes are
//! override constants), so tuning compiles them, and a driver that compiles on the CPU
//! (lavapipe: about a second per convolution pipeline) spends far more time compiling than
//! timing. Tuning is therefore asked for, bounded by a [`TuneBudget`], and its result kept on
//! disk so that it is paid once per machine; `gpu_infer` and `bench` take `--tuning`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use regnet_wgpu::gpu::autotune::{tune, TuneBudget, TuneCache};
//! use regnet_wgpu::gpu::{GpuContext, GpuRunner, Precision, RunnerOptions};
//! use regnet_wgpu::{zoo, Plan, Weights};
//!
//! let ctx = GpuContext::new(Precision::F32)?;
//! let plan = Plan::new(&zoo::get("regnet_y_400mf")?, 224, 224)?;
//! let mut opts = RunnerOptions { batch: 8, ..Default::default() };
//! let cache = TuneCache::open(std::path::Path::new("tuning"), &ctx, &opts);
//! let mut table = cache.load();
//! let report = tune(&ctx, &plan.graph(), &opts, &mut table, &TuneBudget::default())?;
//! println!("tuned {} shape classes in {:.1} s", report.tuned.len(), report.seconds);
//! cache.save(&table)?;
//! opts.tuned = Some(Arc::new(table));
//! let runner = GpuRunner::new(&ctx, &plan, &Weights::random(&plan, 0), opts)?;
//! # Ok::<(), regnet_wgpu::Error>(())
//! ```

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::context::PROBED_WORKGROUPS;
use super::tiling::{
    conv_columns, CONV_MAX_OC, CONV_MAX_PV, POINTWISE_MAX_NV, POINTWISE_MAX_TM,
    SUBGROUP_GEMM_MAX_XK,
};
use crate::plan::Conv2d;

#[cfg(not(target_arch = "wasm32"))]
mod measure;
#[cfg(not(target_arch = "wasm32"))]
pub use measure::{table_for, tune, TuneBudget, TuneCache, TuneReport, Tuned, TuningMode};

/// Which kernel a convolution runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConvKind {
    /// `conv_pointwise.wgsl` (1x1, one group): a GEMM of output channels by pixels.
    Pointwise,
    /// `conv.wgsl`: the direct convolution (any kernel, groups).
    Direct,
}

/// The shapes of convolution that share their best [`TileChoice`]: the same kernel, stride and
/// dilation, and GEMM sizes in the same powers of two. `k`, `m` and `n` are the base-2
/// logarithms, rounded up, of the reduction length per output (input channels per group x
/// kernel area), of the output channels (a pointwise part's rows; a direct conv's channels per
/// group) and of the output pixels of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShapeClass {
    /// The kernel.
    pub kind: ConvKind,
    /// Kernel height and width.
    pub kernel: [u32; 2],
    /// Vertical and horizontal stride.
    pub stride: [u32; 2],
    /// Vertical and horizontal dilation.
    pub dilation: [u32; 2],
    /// One input channel per group (depthwise).
    pub depthwise: bool,
    /// log2 of the reduction length per output, rounded up.
    pub k: u8,
    /// log2 of the output channels (per group for a direct conv), rounded up.
    pub m: u8,
    /// log2 of the output pixels of the batch, rounded up.
    pub n: u8,
    /// A direct conv's output row width (its pixel tiles pad the rows); 0 for pointwise.
    pub row: u32,
    /// A pointwise conv's planes are a multiple of 4 pixels (`ALIGNED`); false for direct.
    pub aligned: bool,
}

fn log2_up(x: u64) -> u8 {
    x.max(1).next_power_of_two().trailing_zeros() as u8
}

impl ShapeClass {
    /// The class of convolution `c` computing `rows` of its output channels (a part of a split
    /// weight, or all of them) at `batch` images of `out` = `[height, width]` pixels.
    pub fn of(c: &Conv2d, pointwise: bool, rows: usize, batch: u64, out: [u64; 2]) -> Self {
        let cin_g = (c.in_channels / c.groups.max(1)) as u64;
        let hw = out[0] * out[1];
        let m = if pointwise {
            rows
        } else {
            c.out_channels / c.groups.max(1)
        };
        let u = |v: [usize; 2]| [v[0] as u32, v[1] as u32];
        ShapeClass {
            kind: if pointwise {
                ConvKind::Pointwise
            } else {
                ConvKind::Direct
            },
            kernel: u(c.kernel),
            stride: u(c.stride),
            dilation: u(c.dilation),
            depthwise: cin_g == 1 && c.groups > 1,
            k: log2_up(cin_g * (c.kernel[0] * c.kernel[1]) as u64),
            m: log2_up(m as u64),
            n: log2_up(batch * hw),
            row: if pointwise { 0 } else { out[1] as u32 },
            aligned: pointwise && hw.is_multiple_of(4),
        }
    }
}

impl std::fmt::Display for ShapeClass {
    /// `pointwise 1x1/s1 K2^6 M2^7 N2^12 aligned`, `direct 3x3/s2 d1 depthwise K2^4 M2^3
    /// N2^10 row 28`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [kh, kw] = self.kernel;
        let [sy, sx] = self.stride;
        match self.kind {
            ConvKind::Pointwise => write!(f, "pointwise 1x1/s{sy}")?,
            ConvKind::Direct => {
                write!(f, "direct {kh}x{kw}/s{sy}")?;
                if sx != sy {
                    write!(f, ",{sx}")?;
                }
                let [dy, dx] = self.dilation;
                if [dy, dx] != [1, 1] {
                    write!(f, " d{dy},{dx}")?;
                }
                if self.depthwise {
                    f.write_str(" depthwise")?;
                }
            }
        }
        write!(f, " K2^{} M2^{} N2^{}", self.k, self.m, self.n)?;
        if self.kind == ConvKind::Direct {
            write!(f, " row {}", self.row)?;
        } else if self.aligned {
            f.write_str(" aligned")?;
        }
        Ok(())
    }
}

/// What the autotuner chooses for a convolution: its register tile (pointwise: output channels
/// `TM` x pixels `TN`; direct: output channels `OCN` x pixels of a row `PX`), whether it runs the
/// subgroup entry point where the device and the layer allow it, and its workgroup size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TileChoice {
    /// The register tile.
    pub tile: [u32; 2],
    /// The subgroup entry point (where allowed; else the plain one).
    pub subgroup: bool,
    /// Invocations per workgroup (8, 16, 32 or 64: the sizes whose subgroup layout is probed).
    pub wg: u32,
}

impl TileChoice {
    fn wg_ok(&self) -> bool {
        PROBED_WORKGROUPS.contains(&self.wg)
    }

    /// Whether `conv_pointwise.wgsl` can run this tile: `TM` and `TN` multiples of 4 within its
    /// accumulator arrays (and `TN` within the subgroup entry point's loads when it is asked).
    pub fn fits_pointwise(&self) -> bool {
        let [tm, tn] = self.tile;
        let sg_loads = 2 * 2 * (tn / 4 + 1) <= SUBGROUP_GEMM_MAX_XK;
        self.wg_ok()
            && tm >= 4
            && tn >= 4
            && tm.is_multiple_of(4)
            && tn.is_multiple_of(4)
            && tm <= POINTWISE_MAX_TM
            && tn / 4 <= POINTWISE_MAX_NV
            && tm * tn <= POINTWISE_MAX_TM * POINTWISE_MAX_NV * 4
            && (!self.subgroup || sg_loads)
    }

    /// The direct conv's `[OCN, PX, KC]` for this tile on a kernel `kw` wide with horizontal
    /// `stride` and `dilation`, when `conv.wgsl` can run it: `OCN` 4 or 8, `PX` a multiple of 4
    /// within its arrays, and at least one kernel column's span in its registers.
    pub fn conv_tile(&self, kw: usize, stride: usize, dilation: usize) -> Option<[u32; 3]> {
        let [ocn, px] = self.tile;
        let ok = self.wg_ok()
            && (ocn == 4 || ocn == CONV_MAX_OC)
            && px >= 4
            && px.is_multiple_of(4)
            && px / 4 <= CONV_MAX_PV;
        ok.then(|| conv_columns(px, kw, stride, dilation))
            .flatten()
            .map(|kc| [ocn, px, kc])
    }
}

/// The winner of one shape class: the choice, its time and the rules' time in the same run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunedChoice {
    /// The choice.
    pub choice: TileChoice,
    /// Its best time on the representative layer, milliseconds.
    pub ms: f64,
    /// The rules' best time on the same layer in the same run, milliseconds.
    pub rules_ms: f64,
}

/// The autotuner's choices by shape class.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TuneTable {
    entries: HashMap<ShapeClass, TunedChoice>,
}

impl TuneTable {
    /// An empty table (every layer on the rules).
    pub fn new() -> Self {
        Self::default()
    }

    /// The choice for a class, if the table has one.
    pub fn get(&self, class: &ShapeClass) -> Option<TileChoice> {
        self.entries.get(class).map(|e| e.choice)
    }

    /// The whole entry for a class.
    pub fn entry(&self, class: &ShapeClass) -> Option<&TunedChoice> {
        self.entries.get(class)
    }

    /// Sets the choice for a class.
    pub fn insert(&mut self, class: ShapeClass, tuned: TunedChoice) {
        self.entries.insert(class, tuned);
    }

    /// Classes held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No class held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, ordered by class.
    pub fn entries(&self) -> Vec<(ShapeClass, TunedChoice)> {
        let mut v: Vec<_> = self.entries.iter().map(|(c, e)| (*c, *e)).collect();
        v.sort_by_key(|(c, _)| *c);
        v
    }
}

/// The candidates the autotuner times for a class, `rules` (what the tile rules chose for its
/// representative layer) first: for the 1x1 GEMM the tiles 16x16, 16x8, 8x16, 8x8 and 8x4; for
/// the direct conv 4, 8 and 16 pixels of a row at the rules' channels per invocation; each with and without the subgroup entry point when the device has
/// it, at the rules' workgroup size. ([`tune`] then tries the winner at the other workgroup
/// sizes.) Candidates the layer cannot run are dropped by the lowering, which falls back.
pub fn candidates(class: &ShapeClass, rules: TileChoice, subgroups: bool) -> Vec<TileChoice> {
    let tiles: Vec<[u32; 2]> = match class.kind {
        ConvKind::Pointwise => vec![[16, 16], [16, 8], [8, 16], [8, 8], [8, 4]],
        ConvKind::Direct => [4, 8, 16].map(|px| [rules.tile[0], px]).to_vec(),
    };
    let sgs: &[bool] = if subgroups { &[false, true] } else { &[false] };
    let mut out = vec![rules];
    for tile in tiles {
        for &subgroup in sgs {
            let c = TileChoice {
                tile,
                subgroup,
                wg: rules.wg,
            };
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

/// The same choice at each other workgroup size.
pub fn workgroup_candidates(best: TileChoice) -> Vec<TileChoice> {
    PROBED_WORKGROUPS
        .iter()
        .filter(|&&wg| wg != best.wg)
        .map(|&wg| TileChoice { wg, ..best })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Activation;

    fn conv(cin: usize, cout: usize, k: usize, stride: usize, groups: usize) -> Conv2d {
        Conv2d {
            in_channels: cin,
            out_channels: cout,
            kernel: [k, k],
            stride: [stride; 2],
            padding: [k / 2; 2],
            dilation: [1, 1],
            groups,
            activation: Activation::Relu,
            residual: None,
            weight: "w".into(),
            bias: None,
            norm: None,
        }
    }

    #[test]
    fn classes_round_sizes_up_to_powers_of_two() {
        let c = conv(104, 208, 1, 1, 1);
        let a = ShapeClass::of(&c, true, 208, 8, [14, 14]);
        assert_eq!((a.k, a.m, a.n, a.aligned, a.row), (7, 8, 11, true, 0));
        // 120 and 100 channels are in the same powers of two as 104 and 208? 120 -> 2^7, yes.
        let b = ShapeClass::of(&conv(120, 200, 1, 1, 1), true, 200, 8, [14, 14]);
        assert_eq!(a, b);
        let d = ShapeClass::of(&conv(48, 48, 3, 2, 6), false, 48, 1, [28, 28]);
        assert_eq!((d.k, d.m, d.n, d.row, d.depthwise), (7, 3, 10, 28, false));
        let dw = ShapeClass::of(&conv(32, 32, 3, 1, 32), false, 32, 1, [7, 7]);
        assert!(dw.depthwise && dw.k == 4 && dw.m == 0);
        assert_eq!(d.to_string(), "direct 3x3/s2 K2^7 M2^3 N2^10 row 28", "{d}");
        assert_eq!(a.to_string(), "pointwise 1x1/s1 K2^7 M2^8 N2^11 aligned");
    }

    #[test]
    fn candidates_fit_the_kernels_and_start_with_the_rules() {
        let pw = ShapeClass::of(&conv(64, 64, 1, 1, 1), true, 64, 1, [28, 28]);
        let rules = TileChoice {
            tile: [16, 16],
            subgroup: true,
            wg: 64,
        };
        let cands = candidates(&pw, rules, true);
        assert_eq!(cands[0], rules);
        assert_eq!(cands.len(), 10);
        assert!(cands.iter().all(TileChoice::fits_pointwise));
        let dc = ShapeClass::of(&conv(64, 64, 3, 1, 8), false, 64, 1, [28, 28]);
        let rules = TileChoice {
            tile: [8, 8],
            subgroup: false,
            wg: 32,
        };
        let cands = candidates(&dc, rules, false);
        assert_eq!(cands.len(), 3);
        assert!(cands.iter().all(|c| c.conv_tile(3, 1, 1).is_some()));
        assert_eq!(workgroup_candidates(rules).len(), 3);
    }

    #[test]
    fn choices_the_kernels_cannot_run_are_refused() {
        let c = |tile, wg| TileChoice {
            tile,
            subgroup: false,
            wg,
        };
        assert!(!c([20, 16], 64).fits_pointwise());
        assert!(!c([16, 20], 64).fits_pointwise());
        assert!(!c([16, 6], 64).fits_pointwise());
        assert!(!c([16, 16], 48).fits_pointwise());
        assert!(!c([0, 16], 64).fits_pointwise());
        assert_eq!(c([8, 8], 64).conv_tile(3, 1, 1), Some([8, 8, 3]));
        assert_eq!(c([6, 8], 64).conv_tile(3, 1, 1), None);
        assert_eq!(c([8, 20], 64).conv_tile(3, 1, 1), None);
        // 16 pixels at stride 2 span 33 inputs plus a 7-wide kernel's 6: one span per 7
        // columns does not fit, fewer columns do.
        assert_eq!(c([8, 16], 64).conv_tile(7, 2, 1), Some([8, 16, 7]));
        assert_eq!(c([8, 16], 64).conv_tile(7, 3, 1), None);
    }
}
