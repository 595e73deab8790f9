//! 4-lane f32 vectors for the kernels that are written once for every target: WebAssembly
//! SIMD128 where the build has it (LLVM does not vectorise those kernels' loops into it on its
//! own), arrays elsewhere (what the native builds' portable kernels, and their unit tests, run).
//!
//! On wasm with relaxed SIMD (`+relaxed-simd`, what `scripts/web build` gives the CPU engine
//! where the browser validates it), [`mul_add`] is `f32x4.relaxed_madd`: one fused
//! multiply-add where the CPU has FMA, 25% faster 1x1 convolutions in V8 on an AMD EPYC.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use core::arch::wasm32::*;

    /// A vector.
    pub(crate) type V = v128;

    #[inline(always)]
    pub(crate) fn zero() -> V {
        f32x4_splat(0.0)
    }

    #[inline(always)]
    pub(crate) fn splat(x: f32) -> V {
        f32x4_splat(x)
    }

    /// The first 4 floats of `x`.
    #[inline(always)]
    pub(crate) fn load(x: &[f32]) -> V {
        assert!(x.len() >= 4);
        // SAFETY: 4 floats are readable at x (asserted); v128_load has no alignment need.
        unsafe { v128_load(x.as_ptr() as *const v128) }
    }

    /// Into the first 4 floats of `x`.
    #[inline(always)]
    pub(crate) fn store(x: &mut [f32], v: V) {
        assert!(x.len() >= 4);
        // SAFETY: 4 floats are writable at x (asserted).
        unsafe { v128_store(x.as_mut_ptr() as *mut v128, v) }
    }

    /// `a * b + c`: fused where the build has relaxed SIMD and the CPU has FMA, else a
    /// multiply then an add.
    #[inline(always)]
    pub(crate) fn mul_add(a: V, b: V, c: V) -> V {
        #[cfg(target_feature = "relaxed-simd")]
        let r = f32x4_relaxed_madd(a, b, c);
        #[cfg(not(target_feature = "relaxed-simd"))]
        let r = f32x4_add(c, f32x4_mul(a, b));
        r
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod imp {
    /// A vector.
    pub(crate) type V = [f32; 4];

    #[inline(always)]
    pub(crate) fn zero() -> V {
        [0.0; 4]
    }

    #[inline(always)]
    pub(crate) fn splat(x: f32) -> V {
        [x; 4]
    }

    /// The first 4 floats of `x`.
    #[inline(always)]
    pub(crate) fn load(x: &[f32]) -> V {
        x[..4].try_into().unwrap()
    }

    /// Into the first 4 floats of `x`.
    #[inline(always)]
    pub(crate) fn store(x: &mut [f32], v: V) {
        x[..4].copy_from_slice(&v);
    }

    /// `a * b + c` lane by lane: fused where FMA is part of the baseline (aarch64), else a
    /// multiply then an add (where `f32::mul_add` would be a slow library call).
    #[inline(always)]
    pub(crate) fn mul_add(a: V, b: V, c: V) -> V {
        std::array::from_fn(|l| {
            #[cfg(target_arch = "aarch64")]
            let r = a[l].mul_add(b[l], c[l]);
            #[cfg(not(target_arch = "aarch64"))]
            let r = a[l] * b[l] + c[l];
            r
        })
    }
}

pub(crate) use imp::*;
