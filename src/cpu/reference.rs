//! Test support: a naive float64 convolution and random convolution cases to check the fast
//! kernels against.

use crate::plan::{Activation, Conv2d, Shape};
use crate::weights::ConvParams;

/// A tiny deterministic generator of values in `[-1, 1)` (xorshift64*).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        v as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub(crate) fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next_f32()).collect()
    }
}

/// One random convolution: its op, parameters and shapes, and a seed for its data.
pub(crate) struct Case {
    pub conv: Conv2d,
    pub params: ConvParams,
    pub in_shape: Shape,
    pub out_shape: Shape,
    seed: u64,
}

/// A random convolution case (weights and biases drawn from `seed`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn random_case(
    seed: u64,
    cin: usize,
    cout: usize,
    groups: usize,
    kernel: [usize; 2],
    stride: usize,
    padding: usize,
    h: usize,
    w: usize,
    activation: Activation,
    residual: bool,
) -> Case {
    let conv = Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel,
        stride: [stride; 2],
        padding: [padding; 2],
        dilation: [1, 1],
        groups,
        activation,
        residual: residual.then_some(0),
        weight: "w".into(),
        bias: None,
        norm: None,
    };
    let (ho, wo) = conv.output_size(h, w);
    let mut rng = Rng::new(seed);
    let params = ConvParams {
        weight: rng.vec(conv.weight_shape().iter().product()),
        bias: rng.vec(cout),
    };
    Case {
        conv,
        params,
        in_shape: Shape {
            channels: cin,
            height: h,
            width: w,
        },
        out_shape: Shape {
            channels: cout,
            height: ho,
            width: wo,
        },
        seed,
    }
}

impl Case {
    /// A random `[batch, Cin, H, W]` input.
    pub(crate) fn input(&self, batch: usize) -> Vec<f32> {
        Rng::new(self.seed + 1000).vec(batch * self.in_shape.numel())
    }

    /// The residual (random) when the case has one, else garbage that must be overwritten.
    pub(crate) fn initial_output(&self, batch: usize) -> Vec<f32> {
        let n = batch * self.out_shape.numel();
        match self.conv.residual {
            Some(_) => Rng::new(self.seed + 2000).vec(n),
            None => vec![1e30; n],
        }
    }

    /// Panics unless `got` is within float32 rounding of `want`.
    pub(crate) fn assert_close(&self, got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let k =
            (self.conv.in_channels / self.conv.groups) * self.conv.kernel[0] * self.conv.kernel[1];
        let tol = 1e-5 * (k as f64).sqrt().max(1.0);
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= tol * (1.0 + w.abs()),
                "{what}: element {i}: got {g}, want {w} ({:?})",
                self.conv
            );
        }
    }
}

/// The convolution computed the obvious way in float64: `act(conv(x) + bias [+ residual])`.
pub(crate) fn naive_conv(case: &Case, batch: usize) -> Vec<f64> {
    let (c, s, o) = (&case.conv, case.in_shape, case.out_shape);
    let x = case.input(batch);
    let init = case.initial_output(batch);
    let (cin_g, cout_g) = (c.in_channels / c.groups, c.out_channels / c.groups);
    let [kh, kw] = c.kernel;
    let mut out = vec![0f64; batch * o.numel()];
    for n in 0..batch {
        for oc in 0..c.out_channels {
            let g = oc / cout_g;
            for oy in 0..o.height {
                for ox in 0..o.width {
                    let mut acc = case.params.bias[oc] as f64;
                    for ci in 0..cin_g {
                        let ic = g * cin_g + ci;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize
                                    - c.padding[0] as isize;
                                let ix = (ox * c.stride[1] + kx * c.dilation[1]) as isize
                                    - c.padding[1] as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= s.height as isize
                                    || ix >= s.width as isize
                                {
                                    continue;
                                }
                                let xv = x[((n * s.channels + ic) * s.height + iy as usize)
                                    * s.width
                                    + ix as usize];
                                let wv =
                                    case.params.weight[((oc * cin_g + ci) * kh + ky) * kw + kx];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    let i = ((n * o.channels + oc) * o.height + oy) * o.width + ox;
                    if c.residual.is_some() {
                        acc += init[i] as f64;
                    }
                    out[i] = match c.activation {
                        Activation::Identity => acc,
                        Activation::Relu => acc.max(0.0),
                        Activation::Relu6 => acc.clamp(0.0, 6.0),
                        Activation::Sigmoid => 1.0 / (1.0 + (-acc).exp()),
                        Activation::Silu => acc / (1.0 + (-acc).exp()),
                    };
                }
            }
        }
    }
    out
}
