//! Instruction-set selection for the hand-blocked CPU kernels.
//!
//! Each kernel has a portable build (plain Rust over the 4-lane vectors of [`super::lanes`]:
//! arrays that LLVM vectorises for the target's baseline, or wasm SIMD128) and, on x86-64
//! machines that have them, an AVX2 + FMA build chosen at run time. The outermost function of
//! such a build carries `#[target_feature]`, and what it calls is `#[inline(always)]` or has
//! the same features, so that all of it is compiled for them.

/// The instruction set a kernel runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    /// The target's baseline features.
    Portable,
    /// x86-64 with AVX2 and FMA (8-lane vectors, 16 registers).
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Isa {
    /// The best instruction set this machine supports (detected once; cheap afterwards).
    pub(crate) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Isa::Avx2Fma;
        }
        Isa::Portable
    }

    /// Every instruction set this machine can run (for tests comparing them).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        if Isa::detect() != Isa::Portable {
            v.push(Isa::detect());
        }
        v
    }
}
