//! Timing the candidates on the device ([`tune`]), and the table's file on disk ([`TuneCache`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{candidates, workgroup_candidates, ShapeClass, TileChoice, TuneTable, TunedChoice};
use crate::error::{Error, Result};
use crate::gpu::kernels::Family;
use crate::gpu::lower::{is_dense_same, is_pointwise};
use crate::gpu::model::texture_operands;
use crate::gpu::pipeline_cache::write_atomically;
use crate::gpu::runner::storage_buffer;
use crate::gpu::{GpuContext, GpuOp, RunnerOptions, Tiling};
use crate::ops::{ConvArgs, OpGraph, Operation};
use crate::plan::{Conv2d, Graph, OpKind};
use crate::Tensor;

/// Bounds on one call of [`tune`].
#[derive(Clone, Debug)]
pub struct TuneBudget {
    /// No new shape class is started after this long (compiling included): the classes left
    /// stay on the rules, for a later call to tune.
    pub time: Duration,
    /// Timed rounds; the candidates take turns in each round (so that a noisy moment of a
    /// shared machine hits them alike), and each keeps its best time.
    pub rounds: usize,
    /// Milliseconds one timed sample lasts at least: a fast layer is recorded several times
    /// into one submission (at most 32), so that submission costs do not decide.
    pub sample_ms: f64,
}

impl Default for TuneBudget {
    /// Two minutes, five rounds, 2 ms samples.
    fn default() -> Self {
        TuneBudget {
            time: Duration::from_secs(120),
            rounds: 5,
            sample_ms: 2.0,
        }
    }
}

/// One class tuned by a call of [`tune`].
#[derive(Clone, Debug)]
pub struct Tuned {
    /// The class.
    pub class: ShapeClass,
    /// The layer it was timed on (the plan's first of its class).
    pub layer: String,
    /// The winner, its time and the rules' time.
    pub entry: TunedChoice,
    /// Candidates timed.
    pub candidates: usize,
}

/// What a call of [`tune`] did.
#[derive(Clone, Debug, Default)]
pub struct TuneReport {
    /// The classes tuned now.
    pub tuned: Vec<Tuned>,
    /// Classes of the plan the table already held.
    pub cached: usize,
    /// Classes left untuned when the budget ran out.
    pub left: usize,
    /// Wall time of the call, seconds (compiling included).
    pub seconds: f64,
}

/// Times candidate tiles and workgroup sizes for every shape class of `graph`'s convolutions
/// that `table` does not hold yet, at `opts`' batch, precision, shader checks and subgroups,
/// and puts each class's fastest into `table`: the rules' own choice first, then
/// [`candidates`], then the winner at the other workgroup sizes. Each class is timed on its
/// first layer in the plan, alone, on zero inputs (times do not depend on values); classes are
/// tuned in plan order until `budget.time` is spent.
pub fn tune(
    ctx: &GpuContext,
    graph: &Graph,
    opts: &RunnerOptions,
    table: &mut TuneTable,
    budget: &TuneBudget,
) -> Result<TuneReport> {
    let start = Instant::now();
    // The operands and kernels the runner will use: texture operands where it reads them (a
    // layer alone reads them too, through GpuOp), dense "same" convolutions as the GEMM where
    // the rules say so.
    let textures = texture_operands(ctx, opts.textures)?;
    let tiling = opts
        .tiling
        .unwrap_or_else(|| Tiling::for_adapter(&ctx.info));
    let dense_gemm = tiling.dense_as_gemm(textures);
    let opts = RunnerOptions {
        tuned: None,
        taps: Vec::new(),
        textures: Some(textures),
        ..opts.clone()
    };
    let mut report = TuneReport::default();
    for (class, name, conv, input) in classes(graph, opts.batch as u64, dense_gemm) {
        if table.get(&class).is_some() {
            report.cached += 1;
            continue;
        }
        if start.elapsed() > budget.time {
            report.left += 1;
            continue;
        }
        let layer = layer_op(&conv, opts.batch, input)?;
        let (entry, timed) = tune_class(ctx, &layer, class, &opts, budget)?;
        table.insert(class, entry);
        report.tuned.push(Tuned {
            class,
            layer: name,
            entry,
            candidates: timed,
        });
    }
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

/// The distinct shape classes of a graph's convolutions, in plan order, each with its first
/// layer's name, conv and input `[channels, height, width]` (dense "same" convolutions as the
/// GEMM's classes when `dense_gemm`, as the lowering keys them).
fn classes(
    graph: &Graph,
    batch: u64,
    dense_gemm: bool,
) -> Vec<(ShapeClass, String, Conv2d, [usize; 3])> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for op in graph.ops {
        let OpKind::Conv2d(c) = &op.kind else {
            continue;
        };
        let (i, o) = (graph.values[op.input], graph.values[op.output]);
        let size = [o.height as u64, o.width as u64];
        let gemm = is_pointwise(c) || (dense_gemm && is_dense_same(c));
        let class = ShapeClass::of(c, gemm, c.out_channels, batch, size);
        if seen.insert(class) {
            let input = [i.channels, i.height, i.width];
            out.push((class, op.name.clone(), c.clone(), input));
        }
    }
    out
}

/// Convolution `c` alone, as an op of the op library, with small deterministic weights.
fn layer_op(c: &Conv2d, batch: usize, [cin, h, w]: [usize; 3]) -> Result<OpGraph> {
    let cin_g = c.in_channels / c.groups;
    let wshape = vec![c.out_channels, cin_g, c.kernel[0], c.kernel[1]];
    let n: usize = wshape.iter().product();
    let weight = (0..n)
        .map(|i| ((i * 7919) % 201) as f32 * 1e-4 - 1e-2)
        .collect();
    let tensors = HashMap::from([
        ("input".to_string(), Tensor::zeros(vec![batch, cin, h, w])),
        ("weight".to_string(), Tensor::new(wshape, weight)?),
    ]);
    let args = ConvArgs {
        stride: c.stride,
        padding: c.padding,
        dilation: c.dilation,
        groups: c.groups,
        activation: c.activation,
        ..Default::default()
    };
    Operation::Conv2d(args).build(&tensors)
}

/// The choice a convolution op's dispatch carries.
fn choice_of(op: &GpuOp) -> Option<TileChoice> {
    op.variants()
        .into_iter()
        .find(|v| matches!(v.family, Family::Conv | Family::ConvPointwise))
        .map(|v| TileChoice {
            tile: v.tile,
            subgroup: v.subgroup,
            wg: v.wg,
        })
}

/// One class: the rules and the candidates race; then the rules, the winner and the winner at
/// the other workgroup sizes race again, and the fastest of that second race is the choice (so
/// its time and the rules' are from the same rounds). Returns the entry and how many
/// candidates were timed.
fn tune_class(
    ctx: &GpuContext,
    layer: &OpGraph,
    class: ShapeClass,
    opts: &RunnerOptions,
    budget: &TuneBudget,
) -> Result<(TunedChoice, usize)> {
    let rules_op = GpuOp::with_options(ctx, layer, opts)?;
    let rules = choice_of(&rules_op).ok_or_else(|| Error::Gpu("no conv dispatch".into()))?;
    let bench = Bench::new(ctx, &rules_op, budget)?;
    let subgroups = ctx.has_subgroups() && opts.subgroups;
    let mut trials = vec![(rules, rules_op)];
    let cands = candidates(&class, rules, subgroups);
    trials.extend(build_trials(ctx, layer, class, opts, &cands[1..])?);
    let first = bench.race(&trials)?;
    let best = fastest(&first).0;
    let mut timed = trials.len();
    // The second race: the rules, the winner (if another) and its other workgroup sizes.
    let winner = trials.iter().position(|t| t.0 == best).unwrap_or(0);
    let mut second: Vec<(TileChoice, GpuOp)> = Vec::new();
    if winner != 0 {
        second.push(trials.swap_remove(winner));
    }
    second.insert(0, trials.swap_remove(0));
    let others: Vec<TileChoice> = workgroup_candidates(best)
        .into_iter()
        .filter(|c| *c != rules)
        .collect();
    let extra = build_trials(ctx, layer, class, opts, &others)?;
    timed += extra.len();
    second.extend(extra);
    let times = bench.race(&second)?;
    let (choice, ms) = fastest(&times);
    Ok((
        TunedChoice {
            choice,
            ms,
            rules_ms: times[0].1,
        },
        timed,
    ))
}

/// The fastest of a race (the first on a tie).
fn fastest(times: &[(TileChoice, f64)]) -> (TileChoice, f64) {
    times
        .iter()
        .copied()
        .reduce(|a, b| if b.1 < a.1 { b } else { a })
        .expect("a race has the rules at least")
}

/// The ops of `cands` under a table holding only that choice, compiled together on every core;
/// a candidate the lowering turned into one already present (a choice the layer cannot run
/// falls back) is dropped.
fn build_trials(
    ctx: &GpuContext,
    layer: &OpGraph,
    class: ShapeClass,
    opts: &RunnerOptions,
    cands: &[TileChoice],
) -> Result<Vec<(TileChoice, GpuOp)>> {
    let with = |c: TileChoice| {
        let mut t = TuneTable::new();
        let entry = TunedChoice {
            choice: c,
            ms: 0.0,
            rules_ms: 0.0,
        };
        t.insert(class, entry);
        RunnerOptions {
            tuned: Some(Arc::new(t)),
            ..opts.clone()
        }
    };
    let mut variants = Vec::new();
    let mut model = None;
    for &c in cands {
        let (m, dispatches) = GpuOp::lower(ctx, layer, &with(c))?;
        variants.extend(dispatches.iter().map(|d| d.variant));
        model.get_or_insert(m);
    }
    if let Some(m) = &model {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        m.kernels().prepare(&variants, threads);
    }
    let mut out: Vec<(TileChoice, GpuOp)> = Vec::new();
    for &c in cands {
        let op = GpuOp::with_options(ctx, layer, &with(c))?;
        let Some(actual) = choice_of(&op) else {
            continue;
        };
        if actual == c && !out.iter().any(|(o, _)| *o == c) {
            out.push((c, op));
        }
    }
    Ok(out)
}

/// Buffers and repetitions to time one layer with.
struct Bench<'a> {
    ctx: &'a GpuContext,
    input: wgpu::Buffer,
    output: wgpu::Buffer,
    reps: usize,
    rounds: usize,
}

impl<'a> Bench<'a> {
    fn new(ctx: &'a GpuContext, op: &GpuOp, budget: &TuneBudget) -> Result<Self> {
        let device = &ctx.device;
        let bytes = op.input_bytes("input").unwrap_or(16);
        let mut b = Bench {
            ctx,
            // COPY_SRC: texture operands copy the input into a texture.
            input: storage_buffer(device, "tune input", bytes, wgpu::BufferUsages::COPY_SRC),
            output: storage_buffer(
                device,
                "tune output",
                op.output_bytes(),
                wgpu::BufferUsages::empty(),
            ),
            reps: 1,
            rounds: budget.rounds.max(1),
        };
        // A first run warms the driver (some compile at the first dispatch), a second sizes
        // the samples.
        b.time(op)?;
        let once = b.time(op)?;
        b.reps = ((budget.sample_ms / once.max(1e-3)).ceil() as usize).clamp(1, 32);
        Ok(b)
    }

    /// Milliseconds per run of `op`: `reps` runs in one submission, waited for.
    fn time(&self, op: &GpuOp) -> Result<f64> {
        let device = &self.ctx.device;
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("autotune"),
        });
        for _ in 0..self.reps {
            op.encode(&mut enc, &[("input", &self.input)], &self.output)?;
        }
        let t = Instant::now();
        self.ctx.queue.submit([enc.finish()]);
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the autotuner's run: {e}")))?;
        Ok(t.elapsed().as_secs_f64() * 1e3 / self.reps as f64)
    }

    /// Each trial's best time over the rounds (each trial warmed once first).
    fn race(&self, trials: &[(TileChoice, GpuOp)]) -> Result<Vec<(TileChoice, f64)>> {
        let mut best = vec![f64::INFINITY; trials.len()];
        for (_, op) in trials {
            self.time(op)?;
        }
        for _ in 0..self.rounds {
            for (b, (_, op)) in best.iter_mut().zip(trials) {
                *b = b.min(self.time(op)?);
            }
        }
        Ok(trials.iter().map(|t| t.0).zip(best).collect())
    }
}

/// What a table on disk is valid for: the adapter and driver, the host CPU (a CPU-backed
/// adapter's speed is the host's), what the kernels are compiled for, and this crate's version
/// (its kernels).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct CacheKey {
    adapter: String,
    vendor: u32,
    device: u32,
    backend: String,
    driver: String,
    driver_info: String,
    cpu: String,
    threads: usize,
    precision: String,
    shader_checks: String,
    subgroups: bool,
    textures: bool,
    version: String,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    key: CacheKey,
    entries: Vec<CacheEntry>,
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    /// The class as a reader sees it (not read back).
    name: String,
    class: ShapeClass,
    tuned: TunedChoice,
}

/// A [`TuneTable`] kept on disk for one device and set of runner options: a JSON file named by
/// a hash of what it is valid for (adapter, driver, host CPU and its threads, precision,
/// shader checks, subgroups, crate version), which it also holds in full. A file that is
/// missing, damaged or for something else loads as an empty table (every layer on the rules),
/// never an error.
#[derive(Clone, Debug)]
pub struct TuneCache {
    path: PathBuf,
    key: CacheKey,
}

impl TuneCache {
    /// The cache in `dir` for `ctx`'s device under `opts` (precision, shader checks, subgroups,
    /// texture operands).
    pub fn open(dir: &Path, ctx: &GpuContext, opts: &RunnerOptions) -> Self {
        let info = &ctx.info;
        let key = CacheKey {
            adapter: info.name.clone(),
            vendor: info.vendor,
            device: info.device,
            backend: format!("{:?}", info.backend),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            cpu: host_cpu(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            precision: opts.precision.to_string(),
            shader_checks: format!("{:?}", opts.shader_checks),
            subgroups: opts.subgroups && ctx.has_subgroups(),
            textures: texture_operands(ctx, opts.textures).unwrap_or(false),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let json = serde_json::to_vec(&key).unwrap_or_default();
        let hash = crate::gpu::pipeline_cache::checksum(&json);
        TuneCache {
            path: dir.join(format!("tuning-{hash:016x}.json")),
            key,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The table the file holds; empty when there is none, or it is damaged or for another
    /// device or version.
    pub fn load(&self) -> TuneTable {
        let mut table = TuneTable::new();
        let Ok(bytes) = std::fs::read(&self.path) else {
            return table;
        };
        if let Ok(file) = serde_json::from_slice::<CacheFile>(&bytes) {
            if file.key == self.key {
                for e in file.entries {
                    table.insert(e.class, e.tuned);
                }
            }
        }
        table
    }

    /// Writes `table` to the file (atomically: a temporary file renamed over it).
    pub fn save(&self, table: &TuneTable) -> Result<()> {
        let file = CacheFile {
            key: self.key.clone(),
            entries: table
                .entries()
                .into_iter()
                .map(|(class, tuned)| CacheEntry {
                    name: class.to_string(),
                    class,
                    tuned,
                })
                .collect(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| Error::Gpu(e.to_string()))?;
        write_atomically(&self.path, &json)
    }
}

/// The host CPU's model name (`/proc/cpuinfo` on Linux), else the architecture.
fn host_cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// How a program picks tiles: what `gpu_infer --tuning` and `bench --tuning` take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TuningMode {
    /// The documented rules for every layer.
    Rules,
    /// The table on disk for this adapter where there is one, the rules elsewhere (the
    /// default: nothing is timed).
    #[default]
    Cached,
    /// Tune the classes the table on disk lacks (within the budget), save, and use it.
    Tune,
}

impl std::str::FromStr for TuningMode {
    type Err = Error;

    /// `rules`, `cached` or `tune`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "rules" => Ok(TuningMode::Rules),
            "cached" => Ok(TuningMode::Cached),
            "tune" => Ok(TuningMode::Tune),
            _ => Err(Error::Input(format!(
                "unknown tuning `{s}`: rules, cached or tune"
            ))),
        }
    }
}

impl std::fmt::Display for TuningMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TuningMode::Rules => "rules",
            TuningMode::Cached => "cached",
            TuningMode::Tune => "tune",
        })
    }
}

/// The table a runner for `graph` under `opts` should get in `mode`, with the cache in `dir`
/// (`None`: no cache, so `Cached` means the rules and `Tune` tunes without saving), and the
/// report of the tuning done now, if any.
pub fn table_for(
    ctx: &GpuContext,
    graph: &Graph,
    opts: &RunnerOptions,
    mode: TuningMode,
    dir: Option<&Path>,
    budget: &TuneBudget,
) -> Result<(Option<Arc<TuneTable>>, Option<TuneReport>)> {
    if mode == TuningMode::Rules {
        return Ok((None, None));
    }
    let cache = dir.map(|d| TuneCache::open(d, ctx, opts));
    let mut table = cache.as_ref().map(TuneCache::load).unwrap_or_default();
    let mut report = None;
    if mode == TuningMode::Tune {
        let r = tune(ctx, graph, opts, &mut table, budget)?;
        if let Some(c) = &cache {
            if !r.tuned.is_empty() {
                c.save(&table)?;
            }
        }
        report = Some(r);
    }
    Ok(((!table.is_empty()).then(|| Arc::new(table)), report))
}
