//! The CPU backend: runs a [`Plan`] in f32 on all cores. It is the correctness reference for
//! the GPU path and the "vs CPU" baseline of the benchmarks.
//!
//! Layout is NCHW, BatchNorm folded into the convolutions. Each convolution runs one of three
//! kernels chosen by its shape (see the `conv` module): a direct, register-blocked kernel for narrow
//! groups and short reductions (grouped 3x3 convs, depthwise convs, the stem), a GEMM on the
//! input itself for 1x1 convs, and im2col + GEMM for the rest. Bias, residual and activation
//! are applied while each block of output is still in cache.
//!
//! A run enters the rayon pool once; a batch is split into one part of whole images per
//! thread, while threads without a part (all but one at batch 1) spin, stealing work from the
//! parallel loops inside the ops. Activation buffers are reused across ops and across runs
//! (the backend keeps those of its largest run).

mod conv;
mod deform;
mod direct;
mod lanes;
mod ops;
#[cfg(any(target_arch = "wasm32", test))]
mod panel_gemm;
mod pool;
mod pooling;
#[cfg(test)]
mod reference;
mod shared;
mod simd;
mod winograd;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(target_arch = "wasm32"))]
use std::time::Instant;
// std's `Instant::now` panics on wasm32-unknown-unknown: performance.now() there.
#[cfg(target_arch = "wasm32")]
use web_time::Instant;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::plan::{Conv2d, DeformConv2d, Graph, OpKind, Plan, ValueId};
use crate::tensor::{check_image_batch, Tensor};
use crate::weights::Weights;
use conv::ConvLayer;
use pool::{BufferPool, Buffers};

/// Runs a plan (any family) on the CPU.
///
/// ```
/// use regnet_wgpu::{cpu::CpuBackend, zoo, Plan, Tensor, Weights};
/// let params = zoo::get("regnet_x_200mf")?;
/// let plan = Plan::new(&params, 64, 64)?;
/// let weights = Weights::random(&plan, 0);
/// let cpu = CpuBackend::new(plan, weights)?;
/// let logits = cpu.run(&Tensor::zeros(vec![1, 3, 64, 64]))?;
/// assert_eq!(logits.shape, [1, 1000]);
/// # Ok::<(), regnet_wgpu::Error>(())
/// ```
pub struct CpuBackend {
    plan: Plan,
    weights: Weights,
    /// Convolution weights reordered for their kernels, by op name.
    packed: HashMap<String, conv::Prepared>,
    /// Activation buffers kept between runs.
    buffers: BufferPool,
}

impl CpuBackend {
    /// A backend for `plan` (its size is the default; other sizes are planned on demand).
    /// Checks that `weights` hold every op of the plan.
    pub fn new(plan: Plan, weights: Weights) -> Result<Self> {
        let mut packed = HashMap::new();
        for op in &plan.ops {
            match &op.kind {
                OpKind::Conv2d(c) | OpKind::DeformConv2d(DeformConv2d { conv: c, .. }) => {
                    let p = weights.conv(&op.name)?;
                    let n: usize = c.weight_shape().iter().product();
                    if p.weight.len() != n || p.bias.len() != c.out_channels {
                        return Err(Error::ShapeMismatch {
                            name: c.weight.clone(),
                            found: vec![p.weight.len()],
                            expected: vec![n],
                        });
                    }
                    if let (OpKind::Conv2d(_), Some(w)) =
                        (&op.kind, conv::prepare(c, p, plan.values[op.output]))
                    {
                        packed.insert(op.name.clone(), w);
                    }
                }
                OpKind::SqueezeExcite(_) => {
                    weights.se(&op.name)?;
                }
                OpKind::Linear(_) => {
                    weights.linear(&op.name)?;
                }
                _ => {}
            }
        }
        Ok(CpuBackend {
            plan,
            weights,
            packed,
            buffers: BufferPool::default(),
        })
    }

    /// The plan this backend was built with.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Logits `[N, classes]` for an image batch `[N, 3, H, W]` (any N, H, W >= 1).
    pub fn run(&self, input: &Tensor) -> Result<Tensor> {
        Ok(self.run_with_taps(input, &[])?.0)
    }

    /// Logits and the named intermediate values (`stem`, `block1`, ...) as `[N, C, H, W]`.
    pub fn run_with_taps(
        &self,
        input: &Tensor,
        taps: &[&str],
    ) -> Result<(Tensor, Vec<(String, Tensor)>)> {
        let (logits, taps, _) = self.run_timed(input, taps, false)?;
        Ok((logits, taps))
    }

    /// Wall time of every op of one run of `input`, in milliseconds, labelled with its op's
    /// name, in the plan's order. A batch of several images runs as usual, split into parts
    /// that the threads run side by side; an op's time is then its longest across the parts.
    ///
    /// ```
    /// use regnet_wgpu::{cpu::CpuBackend, zoo, Plan, Tensor, Weights};
    /// let plan = Plan::new(&zoo::get("regnet_x_200mf")?, 64, 64)?;
    /// let weights = Weights::random(&plan, 0);
    /// let cpu = CpuBackend::new(plan, weights)?;
    /// let times = cpu.profile(&Tensor::zeros(vec![2, 3, 64, 64]))?;
    /// assert_eq!(times.len(), cpu.plan().ops.len());
    /// assert_eq!(times[0].0, cpu.plan().ops[0].name);
    /// # Ok::<(), regnet_wgpu::Error>(())
    /// ```
    pub fn profile(&self, input: &Tensor) -> Result<Vec<(String, f64)>> {
        let (_, _, times) = self.run_timed(input, &[], true)?;
        let names = self.plan.ops.iter().map(|op| op.name.clone());
        Ok(names.zip(times).collect())
    }

    /// [`Self::run_with_taps`], and with `timed` each op's longest wall time across the
    /// batch's parts (ms; empty otherwise).
    fn run_timed(&self, input: &Tensor, taps: &[&str], timed: bool) -> Result<TimedRun> {
        check_image_batch(input)?;
        let (h, w) = (input.shape[2], input.shape[3]);
        let resized;
        let plan = if self.plan.input_size() == (h, w) {
            &self.plan
        } else {
            resized = self.plan.resized(h, w)?;
            &resized
        };
        let tap_ids: Vec<(String, usize)> = taps
            .iter()
            .map(|t| {
                plan.tap(t)
                    .map(|v| (t.to_string(), v))
                    .ok_or_else(|| Error::Input(format!("no tap named `{t}` in this plan")))
            })
            .collect::<Result<_>>()?;
        let n = input.shape[0];
        let per_image = input.data.len() / n;
        // One hand-off to the thread pool for the whole run: the many parallel loops inside
        // then start from a worker thread, which is much cheaper than from outside the pool.
        let (logits, tap_data, times) = rayon::scope(|_| {
            let parts = split_batch(n, rayon::current_num_threads());
            let run = |&(i0, i1): &(usize, usize)| {
                let x = &input.data[i0 * per_image..i1 * per_image];
                self.run_part(plan, &tap_ids, x, i1 - i0, timed)
            };
            with_spinners(|| {
                if parts.len() == 1 {
                    return run(&parts[0]);
                }
                // Whole images per thread: no synchronisation between ops, and each thread's
                // activations stay in its cache; idle threads still steal inside the ops.
                let outs: Vec<_> = parts.par_iter().map(run).collect::<Result<_>>()?;
                Ok(concat_parts(outs))
            })
        })?;
        let classes = plan.values[plan.output].channels;
        let taps = tap_ids
            .iter()
            .zip(tap_data)
            .map(|((name, id), data)| {
                let s = plan.values[*id];
                Ok((
                    name.clone(),
                    Tensor::new(vec![n, s.channels, s.height, s.width], data)?,
                ))
            })
            .collect::<Result<_>>()?;
        Ok((Tensor::new(vec![n, classes], logits)?, taps, times))
    }

    /// Runs a batch of `batch` images `x` (`[batch, 3, H, W]`) through `plan`: the logits and
    /// the taps' values.
    fn run_part(
        &self,
        plan: &Plan,
        tap_ids: &[(String, usize)],
        x: &[f32],
        batch: usize,
        timed: bool,
    ) -> Result<PartOutput> {
        let mut run = Run {
            weights: &self.weights,
            packed: &self.packed,
            graph: plan.graph(),
            batch,
            tap_ids,
            last_use: plan.last_use(),
            values: vec![None; plan.values.len()],
            buffers: self.buffers.begin(),
            times: timed.then(Vec::new),
        };
        run.execute(&[(0, x)], plan.output)
    }
}

/// Runs the ops of `graph` on `batch` images: `inputs` are the values given (`[batch, ...]`
/// each), `weights` hold every op's parameters; returns value `output`. What [`crate::ops`]
/// runs on the CPU.
pub(crate) fn run_graph(
    graph: Graph<'_>,
    weights: &Weights,
    inputs: &[(ValueId, &[f32])],
    batch: usize,
    output: ValueId,
) -> Result<Vec<f32>> {
    let packed = HashMap::new();
    let pool = BufferPool::default();
    rayon::scope(|_| {
        let mut run = Run {
            weights,
            packed: &packed,
            graph,
            batch,
            tap_ids: &[],
            last_use: graph.last_use(),
            values: vec![None; graph.values.len()],
            buffers: pool.begin(),
            times: None,
        };
        Ok(run.execute(inputs, output)?.0)
    })
}

/// Runs `body` (on a thread of the pool) while the pool's other threads spin, running any
/// work they can steal, until it returns. An idle rayon thread soon goes to sleep, and waking
/// it can take longer than one of a batch-1 run's hundred short parallel loops (on a 2-vCPU
/// VM, batch 1 took 8.6-9.1 ms without this and 6.1-7.6 ms with it, at times).
fn with_spinners<R: Send>(body: impl FnOnce() -> R + Send) -> R {
    let done = AtomicBool::new(false);
    let owner = rayon::current_thread_index();
    rayon::scope(|s| {
        for _ in 1..rayon::current_num_threads() {
            s.spawn(|_| {
                // The body's own thread must not get stuck here while it waits inside `body`.
                if rayon::current_thread_index() == owner {
                    return;
                }
                let mut idle = 0u32;
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() == Some(rayon::Yield::Executed) {
                        idle = 0;
                    } else {
                        idle += 1;
                        // Let the OS run something else now and then (on a busy machine).
                        if idle.is_multiple_of(256) {
                            std::thread::yield_now();
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                }
            });
        }
        let r = body();
        done.store(true, Ordering::Release);
        r
    })
}

/// A run's logits, named taps and (when timed) each op's wall time in ms.
type TimedRun = (Tensor, Vec<(String, Tensor)>, Vec<f64>);

/// The logits and the taps' values of a batch, and each op's wall time in ms when timed.
type PartOutput = (Vec<f32>, Vec<Vec<f32>>, Vec<f64>);

/// Splits `n` images into contiguous parts, one per thread when there are enough images
/// (`[(first, end)]`).
fn split_batch(n: usize, threads: usize) -> Vec<(usize, usize)> {
    let parts = threads.clamp(1, n.max(1));
    (0..parts)
        .map(|p| (p * n / parts, (p + 1) * n / parts))
        .collect()
}

/// The outputs of consecutive parts of a batch, as one batch's; an op's time is its longest
/// across the parts (which ran side by side).
fn concat_parts(parts: Vec<PartOutput>) -> PartOutput {
    let mut iter = parts.into_iter();
    let (mut logits, mut taps, mut times) = iter.next().unwrap_or_default();
    for (l, t, ms) in iter {
        logits.extend(l);
        for (all, part) in taps.iter_mut().zip(t) {
            all.extend(part);
        }
        for (all, part) in times.iter_mut().zip(ms) {
            *all = all.max(part);
        }
    }
    (logits, taps, times)
}

/// The state of one run: the live values and the buffers to reuse.
struct Run<'a> {
    weights: &'a Weights,
    /// Convolution weights reordered for the direct kernel, by op name.
    packed: &'a HashMap<String, conv::Prepared>,
    graph: Graph<'a>,
    batch: usize,
    tap_ids: &'a [(String, usize)],
    /// For each value, the last op that reads it.
    last_use: Vec<Option<usize>>,
    /// The values computed and still needed (`[N, C, H, W]` each).
    values: Vec<Option<Vec<f32>>>,
    buffers: Buffers<'a>,
    /// Each op's wall time so far, in ms, when the run is timed.
    times: Option<Vec<f64>>,
}

impl Run<'_> {
    /// Runs every op on the values given (the images, as value 0, for a plan); returns value
    /// `output` (the logits) and the taps' values.
    fn execute(&mut self, inputs: &[(ValueId, &[f32])], output: ValueId) -> Result<PartOutput> {
        for &(v, data) in inputs {
            let mut x = self.buffers.take(data.len());
            x.copy_from_slice(data);
            self.values[v] = Some(x);
        }
        let mut taps = vec![Vec::new(); self.tap_ids.len()];
        for (i, op) in self.graph.ops.iter().enumerate() {
            // The clock only when profiling.
            let start = self.times.is_some().then(Instant::now);
            let y = self.op(i)?;
            if let (Some(times), Some(start)) = (&mut self.times, start) {
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
            self.values[op.output] = Some(y);
            if self.is_dead(op.input, i) {
                if let Some(v) = self.values[op.input].take() {
                    self.buffers.give(v);
                }
            }
            for (tap, (_, id)) in taps.iter_mut().zip(self.tap_ids) {
                if *id == op.output {
                    *tap = self.value(*id).to_vec();
                }
            }
        }
        let logits = self.values[output].take().expect("output computed");
        for v in self.values.drain(..).flatten() {
            self.buffers.give(v);
        }
        Ok((logits, taps, self.times.take().unwrap_or_default()))
    }

    /// Whether value `v` is read by no op after op `i` (and is no tap).
    fn is_dead(&self, v: usize, i: usize) -> bool {
        self.last_use[v] == Some(i) && !self.tap_ids.iter().any(|(_, id)| *id == v)
    }

    /// A computed value.
    fn value(&self, v: usize) -> &[f32] {
        self.values[v]
            .as_deref()
            .expect("value computed before use")
    }

    /// Value `v` as a buffer of its own for op `i` to write into: moved out when `i` is its
    /// last reader, else copied.
    fn take_or_copy(&mut self, v: usize, i: usize) -> Vec<f32> {
        if self.is_dead(v, i) {
            return self.values[v].take().expect("value computed before use");
        }
        self.copy(v)
    }

    /// A copy of value `v` in a buffer of its own.
    fn copy(&mut self, v: usize) -> Vec<f32> {
        let len = self.value(v).len();
        let mut buf = self.buffers.take(len);
        buf.copy_from_slice(self.value(v));
        buf
    }

    /// A buffer of `per_image` floats per image holding value `r` in its first values, zeros
    /// after: the destination of a conv whose residual has fewer channels than its output.
    fn partial_residual(&mut self, r: usize, per_image: usize) -> Vec<f32> {
        let mut buf = self.buffers.take(self.batch * per_image);
        let src = self.value(r);
        let len = src.len() / self.batch.max(1);
        for (dst, img) in buf.chunks_exact_mut(per_image).zip(src.chunks_exact(len)) {
            dst[..len].copy_from_slice(img);
            dst[len..].fill(0.0);
        }
        buf
    }

    /// Convolution op `i`: into a buffer holding its residual (then accumulated), or a fresh one.
    fn conv(&mut self, i: usize, c: &Conv2d) -> Result<Vec<f32>> {
        let (plan, n) = (self.graph, self.batch);
        let op = &plan.ops[i];
        let (in_shape, out_shape) = (plan.values[op.input], plan.values[op.output]);
        let (mut out, accumulate) = match c.residual {
            // A residual of fewer channels goes into the first channels of each image.
            Some(r) if plan.values[r].channels < out_shape.channels => {
                let out = self.partial_residual(r, out_shape.numel());
                if self.is_dead(r, i) {
                    if let Some(v) = self.values[r].take() {
                        self.buffers.give(v);
                    }
                }
                (out, true)
            }
            // The input must stay readable while the residual is overwritten.
            Some(r) if r == op.input => (self.copy(r), true),
            Some(r) => (self.take_or_copy(r, i), true),
            None => (self.buffers.take(n * out_shape.numel()), false),
        };
        let layer = ConvLayer {
            conv: c,
            params: self.weights.conv(&op.name)?,
            packed: self.packed.get(&op.name),
            in_shape,
            out_shape,
        };
        conv::conv2d(&layer, self.value(op.input), &mut out, accumulate);
        Ok(out)
    }

    /// A channel slice or a concatenation (op `i`): the channel ranges copied.
    fn copy_channels(&mut self, i: usize) -> Vec<f32> {
        let plan = self.graph;
        let op = &plan.ops[i];
        let out_shape = plan.values[op.output];
        let hw = out_shape.height * out_shape.width;
        let mut out = self.buffers.take(self.batch * out_shape.numel());
        // (source, its first channel, channels copied)
        let parts: Vec<(usize, usize, usize)> = match &op.kind {
            OpKind::ChannelSlice(begin) => vec![(op.input, *begin, out_shape.channels)],
            OpKind::Concat(others) => std::iter::once(op.input)
                .chain(others.iter().copied())
                .map(|v| (v, 0, plan.values[v].channels))
                .collect(),
            _ => Vec::new(),
        };
        let mut at = 0;
        for (v, begin, count) in parts {
            let src = (self.value(v), plan.values[v].channels, begin);
            ops::copy_channels(src, (&mut out, out_shape.channels, at), count, hw);
            at += count;
        }
        out
    }

    /// Computes op `i`'s output.
    fn op(&mut self, i: usize) -> Result<Vec<f32>> {
        let (plan, n) = (self.graph, self.batch);
        let op = &plan.ops[i];
        let (in_shape, out_shape) = (plan.values[op.input], plan.values[op.output]);
        Ok(match &op.kind {
            OpKind::Conv2d(c) => self.conv(i, c)?,
            OpKind::SqueezeExcite(se) => {
                let mut x = self.take_or_copy(op.input, i);
                let hw = in_shape.height * in_shape.width;
                let p = self.weights.se(&op.name)?;
                ops::squeeze_excite(p, &mut x, se.channels, hw, se.activation, se.pool_max);
                x
            }
            OpKind::Pool2d(p) => {
                let out = self.buffers.take(self.batch * out_shape.numel());
                pooling::pool2d(
                    self.value(op.input),
                    p,
                    (in_shape.height, in_shape.width),
                    (out_shape.height, out_shape.width),
                    out,
                )
            }
            OpKind::AdaptiveAvgPool2d(_) => {
                let out = self.buffers.take(self.batch * out_shape.numel());
                pooling::adaptive_avg_pool(
                    self.value(op.input),
                    (in_shape.height, in_shape.width),
                    (out_shape.height, out_shape.width),
                    out,
                )
            }
            OpKind::ChannelShuffle(groups) => ops::channel_shuffle(
                self.value(op.input),
                in_shape.channels,
                *groups,
                in_shape.height * in_shape.width,
            ),
            OpKind::ChannelPool => ops::channel_pool(
                self.value(op.input),
                in_shape.channels,
                in_shape.height * in_shape.width,
            ),
            OpKind::SpatialGate(m) => ops::spatial_gate(
                self.value(op.input),
                self.value(*m),
                in_shape.channels,
                in_shape.height * in_shape.width,
            ),
            OpKind::ChannelSlice(_) | OpKind::Concat(_) => self.copy_channels(i),
            OpKind::DeformConv2d(d) => {
                let mut out = self.buffers.take(n * out_shape.numel());
                deform::deform_conv2d(
                    d,
                    self.weights.conv(&op.name)?,
                    self.value(op.input),
                    (self.value(d.offset), d.mask.map(|m| self.value(m))),
                    (in_shape, out_shape),
                    &mut out,
                );
                out
            }
            OpKind::GlobalAvgPool => {
                ops::global_avg_pool(self.value(op.input), in_shape.height * in_shape.width)
            }
            OpKind::Linear(l) => ops::linear(
                self.weights.linear(&op.name)?,
                self.value(op.input),
                n,
                l.in_features,
                l.out_features,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_runs_agree_with_a_lone_run() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<CpuBackend>();
        let plan = Plan::new(crate::zoo::get("regnet_y_400mf").unwrap(), 40, 36).unwrap();
        let cpu = CpuBackend::new(plan.clone(), Weights::random(&plan, 5)).unwrap();
        let n = 3 * 3 * 40 * 36;
        let x = Tensor::new(vec![3, 3, 40, 36], reference::Rng::new(1).vec(n)).unwrap();
        let alone = cpu.run(&x).unwrap();
        std::thread::scope(|s| {
            let runs: Vec<_> = (0..3).map(|_| s.spawn(|| cpu.run(&x).unwrap())).collect();
            for r in runs {
                assert_eq!(r.join().unwrap(), alone);
            }
        });
        // And again, with the buffers the concurrent runs left behind.
        assert_eq!(cpu.run(&x).unwrap(), alone);
    }

    #[test]
    fn batches_split_into_contiguous_parts() {
        assert_eq!(split_batch(1, 2), [(0, 1)]);
        assert_eq!(split_batch(5, 2), [(0, 2), (2, 5)]);
        assert_eq!(split_batch(8, 2), [(0, 4), (4, 8)]);
        assert_eq!(split_batch(2, 4), [(0, 1), (1, 2)]);
        assert_eq!(split_batch(3, 1), [(0, 3)]);
        let parts = vec![
            (vec![1.0, 2.0], vec![vec![10.0], vec![]], vec![1.0, 4.0]),
            (vec![3.0], vec![vec![20.0, 21.0], vec![5.0]], vec![2.0, 3.0]),
        ];
        assert_eq!(
            concat_parts(parts),
            (
                vec![1.0, 2.0, 3.0],
                vec![vec![10.0, 20.0, 21.0], vec![5.0]],
                vec![2.0, 4.0]
            )
        );
    }
}
