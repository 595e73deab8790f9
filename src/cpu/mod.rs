//! The CPU backend: runs a [`Plan`] in f32 on all cores. It is the correctness reference for
//! the GPU path and the "vs CPU" baseline of the benchmarks.
//!
//! Layout is NCHW. Convolutions are GEMMs (`gemm` crate; im2col for all but 1x1/s1), with
//! BatchNorm folded, bias and residual accumulated in the GEMM's destination and the
//! activation applied in the same pass.

mod conv;
mod ops;

use crate::error::{Error, Result};
use crate::plan::{OpKind, Plan};
use crate::tensor::{check_image_batch, Tensor};
use crate::weights::Weights;

/// Runs RegNet inference on the CPU.
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
}

impl CpuBackend {
    /// A backend for `plan` (its size is the default; other sizes are planned on demand).
    /// Checks that `weights` hold every op of the plan.
    pub fn new(plan: Plan, weights: Weights) -> Result<Self> {
        for op in &plan.ops {
            match &op.kind {
                OpKind::Conv2d(c) => {
                    let p = weights.conv(&op.name)?;
                    let n: usize = c.weight_shape().iter().product();
                    if p.weight.len() != n || p.bias.len() != c.out_channels {
                        return Err(Error::ShapeMismatch {
                            name: c.weight.clone(),
                            found: vec![p.weight.len()],
                            expected: vec![n],
                        });
                    }
                }
                OpKind::SqueezeExcite(_) => {
                    weights.se(&op.name)?;
                }
                OpKind::Linear(_) => {
                    weights.linear(&op.name)?;
                }
                OpKind::GlobalAvgPool => {}
            }
        }
        Ok(CpuBackend { plan, weights })
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
        check_image_batch(input)?;
        let (n, h, w) = (input.shape[0], input.shape[2], input.shape[3]);
        let resized;
        let plan = if self.plan.input_size() == (h, w) {
            &self.plan
        } else {
            resized = Plan::new(&self.plan.params, h, w)?;
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
        let keep = |v: usize| tap_ids.iter().any(|(_, id)| *id == v);
        let last_use = plan.last_use();

        let mut values: Vec<Option<Vec<f32>>> = vec![None; plan.values.len()];
        values[0] = Some(input.data.clone());
        let mut out_taps = Vec::new();
        for (i, op) in plan.ops.iter().enumerate() {
            let in_shape = plan.values[op.input];
            let out_shape = plan.values[op.output];
            // A value whose last reader is this op may be consumed (moved) rather than copied.
            let take = |v: usize, values: &mut Vec<Option<Vec<f32>>>| -> Vec<f32> {
                if last_use[v] == Some(i) && !keep(v) {
                    values[v].take().expect("value computed before use")
                } else {
                    values[v].clone().expect("value computed before use")
                }
            };
            let y = match &op.kind {
                OpKind::Conv2d(c) => {
                    let residual = c.residual.map(|r| take(r, &mut values));
                    let x = values[op.input]
                        .as_deref()
                        .expect("value computed before use");
                    conv::conv2d(
                        c,
                        self.weights.conv(&op.name)?,
                        x,
                        in_shape,
                        out_shape,
                        n,
                        residual,
                    )
                }
                OpKind::SqueezeExcite(se) => {
                    let mut x = take(op.input, &mut values);
                    let hw = in_shape.height * in_shape.width;
                    ops::squeeze_excite(self.weights.se(&op.name)?, &mut x, se.channels, hw);
                    x
                }
                OpKind::GlobalAvgPool => {
                    let x = values[op.input]
                        .as_deref()
                        .expect("value computed before use");
                    ops::global_avg_pool(x, in_shape.height * in_shape.width)
                }
                OpKind::Linear(l) => {
                    let x = values[op.input]
                        .as_deref()
                        .expect("value computed before use");
                    ops::linear(
                        self.weights.linear(&op.name)?,
                        x,
                        n,
                        l.in_features,
                        l.out_features,
                    )
                }
            };
            values[op.output] = Some(y);
            // Free what no later op reads.
            if last_use[op.input] == Some(i) && !keep(op.input) {
                values[op.input] = None;
            }
            for (name, id) in &tap_ids {
                if *id == op.output {
                    let s = plan.values[*id];
                    let t = Tensor::new(
                        vec![n, s.channels, s.height, s.width],
                        values[*id].clone().unwrap(),
                    )?;
                    out_taps.push((name.clone(), t));
                }
            }
        }
        let classes = plan.values[plan.output].channels;
        let logits = values[plan.output].take().expect("logits computed");
        Ok((Tensor::new(vec![n, classes], logits)?, out_taps))
    }
}
