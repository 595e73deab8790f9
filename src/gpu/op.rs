//! One operation of the op library ([`crate::ops`]) on the GPU, over a host's buffers.
//!
//! [`GpuOp::new`] uploads the op's parameters (in the layout its kernels read), lowers its
//! ops with the same lowering as a model's ([`super::lower::lower_plan`]) and compiles their
//! pipelines through the context's shared kernels and pipeline cache. [`GpuOp::encode`] then
//! records it into the host's command encoder, reading the host's input buffers and writing
//! its output buffer; intermediate values (CBAM's, squeeze-excitation's gate) live in buffers
//! of the op's own.
//!
//! Buffers hold values in the context's storage precision (`f32`, or `f16` for an f16 op),
//! NCHW, and are read as whole vec4s: a tensor of `n` values needs a buffer of at least
//! `n.div_ceil(4) * 4` values ([`GpuOp::input_bytes`], [`GpuOp::output_bytes`]) with
//! `STORAGE` usage.
//!
//! The convolutions read storage operands by default. [`RunnerOptions::textures`]
//! `Some(true)` makes them read texture operands as a runner's do on CPU-backed adapters
//! ([`super::kernels::Operands::Texture`]): the op then copies each convolution's input into a
//! texture of its own before the convolution runs, so those input buffers need `COPY_SRC` too.

use std::collections::HashMap;
use std::sync::Arc;

use super::kernels::Kernels;
use super::lower::{lower_plan, squeeze_excite_scratch_len, Binding, Dispatch, LowerOptions};
use super::model::{max_binding, GpuModel};
use super::operands;
use super::runner::{
    align16, bind_group, dispatch_grid, storage_buffer, uniform_buffer, uniform_stride,
    RunnerOptions, StatusDecoder,
};
use super::{GpuContext, Precision};
use crate::error::{Error, Result};
use crate::ops::OpGraph;
use crate::plan::{OpKind, ValueId};

/// An [`OpGraph`] compiled for a device: see the [module docs](self).
///
/// ```no_run
/// use std::collections::HashMap;
/// use regnet_wgpu::gpu::{GpuContext, GpuOp, Precision};
/// use regnet_wgpu::ops::{ConvArgs, Operation};
/// use regnet_wgpu::Tensor;
///
/// let ctx = GpuContext::new(Precision::F32)?;
/// let mut tensors = HashMap::new();
/// tensors.insert("input".to_string(), Tensor::zeros(vec![1, 16, 32, 32]));
/// tensors.insert("weight".to_string(), Tensor::zeros(vec![16, 1, 1, 7])); // depthwise 1x7
/// let args = ConvArgs { padding: [0, 3], groups: 16, ..Default::default() };
/// let op = Operation::Conv2d(args).build(&tensors)?;
/// let conv = GpuOp::new(&ctx, &op, Precision::F32)?;
/// let y = conv.run(&tensors)?; // or conv.encode(&mut encoder, &[("input", &x)], &out)
/// assert_eq!(y.shape, [1, 16, 32, 32]);
/// # Ok::<(), regnet_wgpu::Error>(())
/// ```
pub struct GpuOp {
    model: GpuModel,
    op: OpGraph,
    precision: Precision,
    dispatches: Vec<Dispatch>,
    steps: Vec<(wgpu::ComputePipeline, (u32, u32))>,
    /// For each value, the value whose buffer holds it (a squeeze-excitation's output is its
    /// input, gated by the next conv's reads).
    home: Vec<ValueId>,
    own: HashMap<ValueId, wgpu::Buffer>,
    scratch: HashMap<usize, wgpu::Buffer>,
    gates: HashMap<usize, wgpu::Buffer>,
    /// Texture operands: the input texture, and per dispatch the value to copy into it first.
    x_texture: Option<(wgpu::Texture, wgpu::TextureView)>,
    copies: Vec<Option<ValueId>>,
    status: wgpu::Buffer,
    dummy: wgpu::Buffer,
    uniforms: wgpu::Buffer,
    uniform_stride: u64,
    decoder: StatusDecoder,
}

impl GpuOp {
    /// Uploads the op's parameters and compiles its pipelines at `precision`.
    pub fn new(ctx: &GpuContext, op: &OpGraph, precision: Precision) -> Result<Self> {
        let opts = RunnerOptions {
            precision,
            ..Default::default()
        };
        Self::with_options(ctx, op, &opts)
    }

    /// The op's parameters on the device and its lowering under `opts` (precision, shader
    /// checks, subgroups, tiles and the autotuner's table), nothing compiled yet.
    pub(crate) fn lower(
        ctx: &GpuContext,
        op: &OpGraph,
        opts: &RunnerOptions,
    ) -> Result<(GpuModel, Vec<Dispatch>)> {
        // One op runs alone, its input straight from the host: storage operands unless asked.
        let opts = &RunnerOptions {
            textures: Some(opts.textures.unwrap_or(false)),
            ..opts.clone()
        };
        let model = GpuModel::for_ops(ctx, &op.ops, &op.weights, opts)?;
        let lower = LowerOptions::new(ctx, &model, opts, op.batch as u64);
        let parts = |i: usize| {
            model
                .op_buffers(i)
                .map(|b| b.parts.clone())
                .unwrap_or_default()
        };
        let dispatches = lower_plan(&op.graph(), &parts, &lower)?;
        Ok((model, dispatches))
    }

    /// [`GpuOp::new`] under a runner's options: precision, shader checks, subgroups, the tile
    /// rules, the autotuner's table ([`RunnerOptions::tuned`]) and texture operands
    /// ([`RunnerOptions::textures`]: here storage unless `Some(true)`, see the module docs);
    /// batch and taps are the op's own and ignored here.
    pub fn with_options(ctx: &GpuContext, op: &OpGraph, opts: &RunnerOptions) -> Result<Self> {
        let precision = opts.precision;
        let (model, dispatches) = Self::lower(ctx, op, opts)?;
        let device = &ctx.device;
        let limits = device.limits();
        let kernels: &Kernels = model.kernels();
        let variants: Vec<_> = dispatches.iter().map(|d| d.variant).collect();
        kernels.prepare(&variants, 1);
        let steps = dispatches
            .iter()
            .map(|d| Ok((kernels.pipeline(d.variant), dispatch_grid(d, &limits)?)))
            .collect::<Result<Vec<_>>>()?;
        let mut home: Vec<ValueId> = (0..op.values.len()).collect();
        let (mut own, mut scratch, mut gates) = (HashMap::new(), HashMap::new(), HashMap::new());
        let n = op.batch as u64;
        let usage = wgpu::BufferUsages::COPY_SRC;
        for (i, o) in op.ops.iter().enumerate() {
            if let OpKind::SqueezeExcite(se) = &o.kind {
                home[o.output] = home[o.input];
                let label = |what: &str| format!("{}.{what}", o.name);
                let len = n * squeeze_excite_scratch_len(se) * 4;
                scratch.insert(i, storage_buffer(device, &label("scratch"), len, usage));
                let gate = n * se.channels as u64 * 4;
                gates.insert(i, storage_buffer(device, &label("gate"), gate, usage));
            } else if o.output != op.output {
                let bytes = value_bytes(op, o.output, precision);
                if bytes > max_binding(&limits) {
                    return Err(Error::binding_limit(
                        format!("the output of `{}` ({bytes} bytes)", o.name),
                        max_binding(&limits),
                        bytes,
                        "; use a smaller batch or input",
                    ));
                }
                own.insert(o.output, storage_buffer(device, &o.name, bytes, usage));
            }
        }
        let copy_dst = usage | wgpu::BufferUsages::COPY_DST;
        let texels = operands::largest_input(&dispatches, |v| value_texels(op, v));
        Ok(GpuOp {
            x_texture: operands::input_texture(device, texels, precision)?,
            copies: operands::copies(&dispatches, &home),
            decoder: StatusDecoder {
                labels: Arc::new(dispatches.iter().map(|d| d.label.clone()).collect()),
                precision,
            },
            status: storage_buffer(device, "status", 4, copy_dst),
            dummy: storage_buffer(device, "unused binding", 16, wgpu::BufferUsages::empty()),
            uniforms: uniform_buffer(device, &dispatches, &limits),
            uniform_stride: uniform_stride(&dispatches, &limits),
            model,
            op: op.clone(),
            precision,
            dispatches,
            steps,
            home,
            own,
            scratch,
            gates,
        })
    }

    /// The pipeline variants of its dispatches (the autotuner reads its choice from them).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn variants(&self) -> Vec<super::kernels::Variant> {
        self.dispatches.iter().map(|d| d.variant).collect()
    }

    /// The op this was made from.
    pub fn op(&self) -> &OpGraph {
        &self.op
    }

    /// Bytes the buffer of input `name` (`input`, `offset`, ...) must hold at least; `None`
    /// when the op has no such input.
    pub fn input_bytes(&self, name: &str) -> Option<u64> {
        let (_, v) = self.op.inputs.iter().find(|(n, _)| n == name)?;
        Some(value_bytes(&self.op, *v, self.precision))
    }

    /// Bytes the output buffer must hold at least.
    pub fn output_bytes(&self) -> u64 {
        value_bytes(&self.op, self.op.output, self.precision)
    }

    /// The status word the kernels write when they meet a value they cannot store (4 bytes,
    /// `COPY_SRC`): [`GpuOp::check_status`] names the op from it.
    pub fn status_buffer(&self) -> &wgpu::Buffer {
        &self.status
    }

    /// `Ok` for a zero status word, else the error naming the op whose output overflowed.
    pub fn check_status(&self, status: u32) -> Result<()> {
        self.decoder.check(status)
    }

    /// Records the op into `encoder`: it reads the buffers of `inputs` (by name: every input
    /// the op has, [`OpGraph::inputs`]) and writes `output`. Buffers are checked (size, usage,
    /// no input that is also the output) and named in the error.
    pub fn encode(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        inputs: &[(&str, &wgpu::Buffer)],
        output: &wgpu::Buffer,
    ) -> Result<()> {
        let given = self.check_buffers(inputs, output)?;
        let resolve = |b: Binding| -> &wgpu::Buffer {
            match b {
                Binding::Value(v) => {
                    let h = self.home[v];
                    if h == self.op.output {
                        output
                    } else if let Some(buf) = given.get(&h) {
                        buf
                    } else {
                        &self.own[&h]
                    }
                }
                Binding::Weight { op, part } => {
                    &self.model.op_buffers(op).expect("weights").weights[part]
                }
                Binding::Bias(op) => &self.model.op_buffers(op).expect("weights").bias,
                Binding::Scratch(op) => &self.scratch[&op],
                Binding::Gate(op) => &self.gates[&op],
                Binding::Status => &self.status,
                Binding::Unused => &self.dummy,
            }
        };
        let groups: Vec<wgpu::BindGroup> = self
            .dispatches
            .iter()
            .enumerate()
            .map(|(k, d)| {
                let at = (&self.uniforms, k as u64 * self.uniform_stride);
                let x_texture = self.x_texture.as_ref().map(|(_, view)| view);
                bind_group(&self.model, at, d, x_texture, &resolve)
            })
            .collect();
        encoder.clear_buffer(&self.status, 0, None);
        // One compute pass per run of dispatches between copies into the input texture.
        let n = self.steps.len();
        let mut k = 0;
        while k < n {
            if let (Some(v), Some((texture, _))) = (self.copies[k], &self.x_texture) {
                let buffer = resolve(Binding::Value(v));
                let texels = value_texels(&self.op, v);
                operands::encode_copy(encoder, buffer, texture, texels, self.precision);
            }
            let end = (k + 1..n).find(|&j| self.copies[j].is_some()).unwrap_or(n);
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(self.op.name),
                timestamp_writes: None,
            });
            for ((pipeline, grid), group) in self.steps[k..end].iter().zip(&groups[k..end]) {
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, group, &[]);
                pass.dispatch_workgroups(grid.0, grid.1, 1);
            }
            k = end;
        }
        Ok(())
    }

    /// The input buffers by value, checked.
    fn check_buffers<'b>(
        &self,
        inputs: &[(&str, &'b wgpu::Buffer)],
        output: &wgpu::Buffer,
    ) -> Result<HashMap<ValueId, &'b wgpu::Buffer>> {
        let name = self.op.name;
        let check = |what: &str, buf: &wgpu::Buffer, need: u64| {
            if !buf.usage().contains(wgpu::BufferUsages::STORAGE) {
                return Err(Error::Input(format!(
                    "`{name}`: the buffer given for `{what}` lacks the STORAGE usage"
                )));
            }
            if buf.size() < need {
                return Err(Error::Input(format!(
                    "`{name}`: the buffer given for `{what}` holds {} bytes; it needs {need}",
                    buf.size()
                )));
            }
            Ok(())
        };
        check("output", output, self.output_bytes())?;
        let mut given = HashMap::new();
        for (n, buf) in inputs {
            let Some((_, v)) = self.op.inputs.iter().find(|(i, _)| i == n) else {
                return Err(Error::Input(format!(
                    "`{name}` has no input `{n}`; its inputs are {}",
                    self.input_names()
                )));
            };
            check(n, buf, value_bytes(&self.op, *v, self.precision))?;
            let copied = self.copies.iter().flatten().any(|&c| self.home[c] == *v);
            if copied && !buf.usage().contains(wgpu::BufferUsages::COPY_SRC) {
                return Err(Error::Input(format!(
                    "`{name}`: the buffer given for `{n}` lacks the COPY_SRC usage, which \
                     texture operands need (it is copied into a texture; RunnerOptions::textures)"
                )));
            }
            if *buf == output {
                return Err(Error::Input(format!(
                    "`{name}`: `{n}` and the output are the same buffer (the op cannot run in place)"
                )));
            }
            given.insert(*v, *buf);
        }
        if let Some((missing, _)) = self.op.inputs.iter().find(|(_, v)| !given.contains_key(v)) {
            return Err(Error::Input(format!(
                "`{name}`: no buffer given for its input `{missing}` (its inputs are {})",
                self.input_names()
            )));
        }
        Ok(given)
    }

    fn input_names(&self) -> String {
        let names: Vec<&str> = self.op.inputs.iter().map(|(n, _)| n.as_str()).collect();
        names.join(", ")
    }

    /// Runs the op on tensors (by name; see [`OpGraph::check_inputs`]) and reads the result
    /// back, blocking: a convenience for tests and tools. Hosts record [`GpuOp::encode`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn run(&self, tensors: &HashMap<String, crate::Tensor>) -> Result<crate::Tensor> {
        use super::{model::to_store, runner::from_store};
        let ctx = self.model.context();
        let device = &ctx.device;
        let given = self.op.check_inputs(tensors)?;
        let usage = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let mut bufs = Vec::new();
        for ((name, v), t) in self.op.inputs.iter().zip(&given) {
            let buf = storage_buffer(
                device,
                name,
                value_bytes(&self.op, *v, self.precision),
                usage,
            );
            ctx.queue
                .write_buffer(&buf, 0, &to_store(&t.data, self.precision, name)?);
            bufs.push(buf);
        }
        let out = storage_buffer(
            device,
            "output",
            self.output_bytes(),
            wgpu::BufferUsages::COPY_SRC,
        );
        let inputs: Vec<(&str, &wgpu::Buffer)> = self
            .op
            .inputs
            .iter()
            .zip(&bufs)
            .map(|((n, _), b)| (n.as_str(), b))
            .collect();
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some(self.op.name),
        });
        self.encode(&mut enc, &inputs, &out)?;
        ctx.queue.submit([enc.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("`{}` failed: {e}", self.op.name)));
        }
        let status = super::readback::read_buffer_blocking(ctx, &self.status, 0, 4)?;
        self.check_status(u32::from_le_bytes([
            status[0], status[1], status[2], status[3],
        ]))?;
        let shape = self.op.output_shape();
        let n: usize = shape.iter().product();
        let bytes = super::readback::read_buffer_blocking(ctx, &out, 0, out.size())?;
        crate::Tensor::new(shape.to_vec(), from_store(&bytes, n, self.precision))
    }
}

/// Texels (4 values each) of value `v` at the op's batch.
fn value_texels(op: &OpGraph, v: ValueId) -> u64 {
    ((op.batch * op.values[v].numel()) as u64).div_ceil(4)
}

/// Bytes of value `v` at the op's batch in `precision`, in whole vec4s (what the kernels read).
fn value_bytes(op: &OpGraph, v: ValueId, precision: Precision) -> u64 {
    let n = (op.batch * op.values[v].numel()) as u64;
    let elem = precision.bytes();
    align16(n.div_ceil(4) * 4 * elem)
}
