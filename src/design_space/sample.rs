//! Drawing models from the paper's design spaces, deterministically from a seed.

use std::fmt;
use std::str::FromStr;

use crate::config::{AnyNetParams, Architecture, RegNetParams};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::rng::SplitMix;

/// The paper's group widths (both spaces): `g` in {1, 2, 4, 8, 16, 32}.
pub const GROUP_WIDTHS: [usize; 6] = [1, 2, 4, 8, 16, 32];
/// RegNet: depth `d` is drawn uniformly from `1..=REGNET_MAX_DEPTH` (the paper: d <= 64).
pub const REGNET_MAX_DEPTH: usize = 64;
/// RegNet: `w0` log-uniform in this range, rounded to a multiple of 8 (the paper: w0 <= 256).
pub const REGNET_W0: (f64, f64) = (8.0, 256.0);
/// RegNet: `wa` log-uniform in this range, rounded to 0.01 (the paper: 0 < wa <= 256).
pub const REGNET_WA: (f64, f64) = (0.1, 256.0);
/// RegNet: `wm` log-uniform in this range, rounded to 0.001 (the paper: 1.5 <= wm <= 3).
pub const REGNET_WM: (f64, f64) = (1.5, 3.0);
/// RegNet: models whose quantized widths make this many stages (the paper's RegNet space is
/// a restriction of AnyNetX, which has four); other draws are drawn again.
pub const REGNET_STAGES: usize = 4;
/// AnyNetX: stages, each with stride 2 after a stem of 32 channels, as in the paper.
pub const ANYNET_STAGES: usize = 4;
/// AnyNetX: each stage's depth uniform in `1..=ANYNET_MAX_DEPTH` (the paper: d_i <= 16).
pub const ANYNET_MAX_DEPTH: usize = 16;
/// AnyNetX: each stage's width log-uniform in `8..=ANYNET_MAX_WIDTH`, a multiple of 8 (the
/// paper: w_i <= 1024, divisible by 8).
pub const ANYNET_MAX_WIDTH: usize = 1024;
/// AnyNetX: bottleneck ratios `b_i` (the bottleneck is `w_i / b_i` channels wide).
pub const ANYNET_BOTTLENECK_RATIOS: [usize; 3] = [1, 2, 4];
/// Draws allowed per accepted sample before [`Sampler`] gives up on a window.
pub const MAX_DRAWS_PER_SAMPLE: u64 = 100_000;

/// A design space of the paper.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Space {
    /// RegNet: depth, w0, wa, wm and one group width; bottleneck ratio 1 (the paper's RegNetX,
    /// or RegNetY with squeeze-excitation).
    RegNet,
    /// AnyNetX: four stages, each with its own depth, width, bottleneck ratio and group width.
    AnyNet,
}

impl Space {
    /// Both spaces, in the order they are listed.
    pub const ALL: [Space; 2] = [Space::RegNet, Space::AnyNet];

    /// The name `--space` takes: `regnet` or `anynet`.
    pub fn name(self) -> &'static str {
        match self {
            Space::RegNet => "regnet",
            Space::AnyNet => "anynet",
        }
    }
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Space {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Space::ALL
            .into_iter()
            .find(|sp| sp.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::Spec(format!("unknown design space `{s}`: regnet or anynet")))
    }
}

/// An inclusive window of multiply-adds (one image at the sampler's size).
///
/// Parsed from `MIN:MAX`, each a number with an optional `K`, `M` or `G` suffix:
///
/// ```
/// use regnet_wgpu::design_space::MacsWindow;
/// let w: MacsWindow = "360M:0.4G".parse().unwrap();
/// assert_eq!((w.min, w.max), (360_000_000, 400_000_000));
/// assert!("400M:360M".parse::<MacsWindow>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacsWindow {
    /// Fewest multiply-adds kept.
    pub min: u64,
    /// Most multiply-adds kept.
    pub max: u64,
}

impl MacsWindow {
    /// Whether `macs` is inside the window.
    pub fn contains(&self, macs: u64) -> bool {
        (self.min..=self.max).contains(&macs)
    }
}

fn parse_count(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, scale) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        Some('G') => (&t[..t.len() - 1], 1e9),
        _ => (t, 1.0),
    };
    let bad = || {
        Error::Spec(format!(
            "`{s}` is not a count of MACs (e.g. 400M, 0.4G, 4e8)"
        ))
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    let v = (v * scale).round();
    if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(v as u64)
}

impl FromStr for MacsWindow {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (lo, hi) = s.split_once(':').ok_or_else(|| {
            Error::Spec(format!(
                "`{s}` is not a MACs window MIN:MAX (e.g. 360M:400M)"
            ))
        })?;
        let w = MacsWindow {
            min: parse_count(lo)?,
            max: parse_count(hi)?,
        };
        if w.min > w.max {
            return Err(Error::Spec(format!("MACs window `{s}`: MIN is above MAX")));
        }
        Ok(w)
    }
}

impl fmt::Display for MacsWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.min, self.max)
    }
}

/// What to draw: the space, the seed, the input size the counts are taken at, the window.
#[derive(Clone, Debug)]
pub struct SamplerOptions {
    /// The design space.
    pub space: Space,
    /// The seed: the same seed gives the same samples on every machine.
    pub seed: u64,
    /// Input height and width the plan's counts (and the window) are for.
    pub size: (usize, usize),
    /// Models outside this window of MACs are drawn again.
    pub macs: MacsWindow,
    /// Squeeze-excitation (ratio 0.25) in every block: RegNetY / AnyNetY rather than X.
    pub se: bool,
}

/// A model drawn from a space, inside the window, with the plan's counts at the chosen size.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The space it was drawn from.
    pub space: Space,
    /// The model.
    pub arch: Architecture,
    /// Its spec in the `--regnet` / `--anynet` syntax (parses back to `arch`).
    pub spec: String,
    /// Parameters.
    pub params: u64,
    /// Multiply-adds for one image.
    pub macs: u64,
    /// Activations (output elements of every op) for one image, as `plan` counts them.
    pub activations: u64,
    /// Ops of the plan (convolutions, SE, pools, linear): what per-op overhead scales with.
    pub ops: u64,
}

/// Draws models from a space until they fall inside a window of MACs (the paper's method).
#[derive(Clone, Debug)]
pub struct Sampler {
    opts: SamplerOptions,
    rng: SplitMix,
    draws: u64,
}

/// `x` rounded to a multiple of the integer step `q`.
fn round_to(x: f64, q: f64) -> f64 {
    (x / q).round() * q
}

/// `x` rounded to `1 / per` (`per` a power of ten): the nearest f64 to the decimal, so the spec
/// prints it short (2.51, not 2.5100000000000002).
fn round_decimal(x: f64, per: f64) -> f64 {
    (x * per).round() / per
}

impl Sampler {
    /// A sampler; nothing is drawn yet.
    pub fn new(opts: SamplerOptions) -> Self {
        let rng = SplitMix::new(opts.seed ^ 0xd5e5_1a7c_e5ea_5eed);
        Sampler {
            opts,
            rng,
            draws: 0,
        }
    }

    /// How many models were drawn so far, kept or not.
    pub fn draws(&self) -> u64 {
        self.draws
    }

    /// Log-uniform in `lo..=hi` (musl's log and exp: the same on every machine).
    fn log_uniform(&mut self, (lo, hi): (f64, f64)) -> f64 {
        let u = self.rng.next_f64();
        lo * libm::exp(u * libm::log(hi / lo))
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.int(0, items.len() - 1)]
    }

    fn draw_regnet(&mut self) -> RegNetParams {
        let depth = self.rng.int(1, REGNET_MAX_DEPTH);
        let w0 = (round_to(self.log_uniform(REGNET_W0), 8.0) as usize).max(8);
        let wa = round_decimal(self.log_uniform(REGNET_WA), 100.0).max(0.01);
        let wm = round_decimal(self.log_uniform(REGNET_WM), 1000.0).clamp(REGNET_WM.0, REGNET_WM.1);
        let g = self.pick(&GROUP_WIDTHS);
        let p = RegNetParams::new(depth, w0, wa, wm, g);
        if self.opts.se {
            p.with_se(0.25)
        } else {
            p
        }
    }

    fn draw_anynet(&mut self) -> AnyNetParams {
        let mut p = AnyNetParams {
            depths: Vec::new(),
            widths: Vec::new(),
            group_widths: Vec::new(),
            bottlenecks: Vec::new(),
            strides: vec![2; ANYNET_STAGES],
            se_ratio: self.opts.se.then_some(0.25),
            stem_width: 32,
            num_classes: 1000,
        };
        for _ in 0..ANYNET_STAGES {
            let w = round_to(self.log_uniform((8.0, ANYNET_MAX_WIDTH as f64)), 8.0) as usize;
            let w = w.clamp(8, ANYNET_MAX_WIDTH);
            let b = self.pick(&ANYNET_BOTTLENECK_RATIOS);
            // w is a multiple of 8 and b divides 4: the bottleneck is exactly w / b channels.
            let w_b = w / b;
            let fits: Vec<usize> = GROUP_WIDTHS
                .into_iter()
                .filter(|g| w_b.is_multiple_of(*g))
                .collect();
            p.depths.push(self.rng.int(1, ANYNET_MAX_DEPTH));
            p.widths.push(w);
            p.bottlenecks.push(1.0 / b as f64);
            p.group_widths.push(self.pick(&fits));
        }
        p
    }

    /// One model from the space, inside the window or not.
    pub fn draw(&mut self) -> Architecture {
        self.draws += 1;
        match self.opts.space {
            Space::RegNet => Architecture::RegNet(self.draw_regnet()),
            Space::AnyNet => Architecture::AnyNet(self.draw_anynet()),
        }
    }

    /// The next model inside the window, with its counts. An error when
    /// [`MAX_DRAWS_PER_SAMPLE`] draws in a row fall outside it.
    pub fn next_sample(&mut self) -> Result<Sample> {
        let (h, w) = self.opts.size;
        for _ in 0..MAX_DRAWS_PER_SAMPLE {
            let arch = self.draw();
            // A draw the configurator refuses (none is expected) is drawn again.
            let Ok(plan) = Plan::new(&arch, h, w) else {
                continue;
            };
            if let Architecture::RegNet(p) = &arch {
                if p.stages().map_or(true, |st| st.len() != REGNET_STAGES) {
                    continue;
                }
            }
            let macs = plan.macs();
            if !self.opts.macs.contains(macs) {
                continue;
            }
            let spec = match &arch {
                Architecture::RegNet(p) => p.to_string(),
                Architecture::AnyNet(p) => p.to_string(),
                _ => unreachable!("the sampler draws RegNet and AnyNet models only"),
            };
            return Ok(Sample {
                space: self.opts.space,
                spec,
                params: plan.num_params(),
                macs,
                activations: plan.activations(),
                ops: plan.ops.len() as u64,
                arch,
            });
        }
        Err(Error::Spec(format!(
            "no {} model of {MAX_DRAWS_PER_SAMPLE} drawn had its MACs at {h}x{w} inside {}: \
             widen the window (--macs MIN:MAX)",
            self.opts.space, self.opts.macs
        )))
    }

    /// The next `n` models inside the window.
    pub fn take_samples(&mut self, n: usize) -> Result<Vec<Sample>> {
        (0..n).map(|_| self.next_sample()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(space: Space, seed: u64, se: bool) -> SamplerOptions {
        SamplerOptions {
            space,
            seed,
            size: (224, 224),
            macs: "200M:800M".parse().unwrap(),
            se,
        }
    }

    #[test]
    fn regnet_draws_stay_in_the_papers_ranges() {
        let mut s = Sampler::new(opts(Space::RegNet, 3, false));
        for _ in 0..2000 {
            let Architecture::RegNet(p) = s.draw() else {
                panic!("not a RegNet")
            };
            assert!((1..=REGNET_MAX_DEPTH).contains(&p.depth), "{p}");
            assert!(p.w0 % 8 == 0 && (8..=256).contains(&p.w0), "{p}");
            assert!(p.wa > 0.0 && p.wa <= 256.0, "{p}");
            assert!((1.5..=3.0).contains(&p.wm), "{p}");
            assert!(GROUP_WIDTHS.contains(&p.group_width), "{p}");
            assert_eq!(p.bottleneck, 1.0);
            assert_eq!(p.se_ratio, None);
            assert_eq!(p.to_string().parse::<RegNetParams>().unwrap(), p);
        }
    }

    #[test]
    fn regnet_samples_have_four_stages() {
        let mut s = Sampler::new(opts(Space::RegNet, 5, false));
        for sample in s.take_samples(20).unwrap() {
            let stages = sample.arch.regnet_stages().unwrap().unwrap();
            assert_eq!(stages.len(), REGNET_STAGES, "{}", sample.spec);
        }
    }

    #[test]
    fn anynet_draws_stay_in_the_papers_ranges() {
        let mut s = Sampler::new(opts(Space::AnyNet, 4, true));
        for _ in 0..2000 {
            let Architecture::AnyNet(p) = s.draw() else {
                panic!("not an AnyNet")
            };
            assert_eq!(p.depths.len(), ANYNET_STAGES);
            for i in 0..ANYNET_STAGES {
                assert!((1..=ANYNET_MAX_DEPTH).contains(&p.depths[i]), "{p}");
                assert!(
                    p.widths[i] % 8 == 0 && p.widths[i] <= ANYNET_MAX_WIDTH,
                    "{p}"
                );
                assert!([1.0, 0.5, 0.25].contains(&p.bottlenecks[i]), "{p}");
                assert!(GROUP_WIDTHS.contains(&p.group_widths[i]), "{p}");
                assert_eq!(p.strides[i], 2);
            }
            assert_eq!(p.se_ratio, Some(0.25));
            p.stages().unwrap();
            assert_eq!(p.to_string().parse::<AnyNetParams>().unwrap(), p);
        }
    }

    #[test]
    fn samples_fall_in_the_window_and_repeat_with_the_seed() {
        for space in Space::ALL {
            let a = Sampler::new(opts(space, 11, false))
                .take_samples(5)
                .unwrap();
            let b = Sampler::new(opts(space, 11, false))
                .take_samples(5)
                .unwrap();
            let c = Sampler::new(opts(space, 12, false))
                .take_samples(5)
                .unwrap();
            for s in &a {
                assert!((200_000_000..=800_000_000).contains(&s.macs), "{}", s.spec);
                let plan = Plan::new(&s.arch, 224, 224).unwrap();
                assert_eq!(
                    (s.params, s.macs, s.activations),
                    (plan.num_params(), plan.macs(), plan.activations())
                );
            }
            let specs = |v: &[Sample]| v.iter().map(|s| s.spec.clone()).collect::<Vec<_>>();
            assert_eq!(specs(&a), specs(&b));
            assert_ne!(specs(&a), specs(&c));
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_models_everywhere() {
        // Pinned: what seed 1 draws must not change with the machine or the release.
        let mut s = Sampler::new(SamplerOptions {
            macs: "360M:400M".parse().unwrap(),
            ..opts(Space::RegNet, 1, false)
        });
        let first = s.next_sample().unwrap();
        assert_eq!(first.spec, PINNED_REGNET_SEED_1);
    }

    const PINNED_REGNET_SEED_1: &str =
        "depth=8,w0=48,wa=66.82,wm=2.582,group_width=2,bottleneck=1,stem=32,classes=1000";

    #[test]
    fn an_impossible_window_is_a_named_error() {
        let mut s = Sampler::new(SamplerOptions {
            macs: "1:2".parse().unwrap(),
            ..opts(Space::RegNet, 1, false)
        });
        let e = s.next_sample().unwrap_err().to_string();
        assert!(e.contains("--macs"), "{e}");
    }

    #[test]
    fn windows_and_spaces_parse() {
        assert_eq!(
            "1k:2.5M".parse::<MacsWindow>().unwrap(),
            MacsWindow {
                min: 1000,
                max: 2_500_000
            }
        );
        for bad in ["", "400M", "a:b", "-1:5", "5:1", "1:2:3"] {
            assert!(bad.parse::<MacsWindow>().is_err(), "{bad}");
        }
        assert_eq!("AnyNet".parse::<Space>().unwrap(), Space::AnyNet);
        assert!("resnet".parse::<Space>().is_err());
    }
}
