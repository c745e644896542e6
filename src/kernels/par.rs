//! Small helpers for the CPU backend's parallel loops.

/// Below this many element-updates a pass runs on one thread (rayon's
/// scheduling costs more than it saves on tiny problems such as LEDM m = 6).
pub const PARALLEL_THRESHOLD: usize = 1 << 15;

/// True when a pass of `work` element-updates is worth splitting across threads.
pub fn parallel_enough(work: usize) -> bool {
    work >= PARALLEL_THRESHOLD && rayon::current_num_threads() > 1
}

/// A mutable slice that parallel tasks write in disjoint ranges.
pub struct SharedMut<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: tasks only touch disjoint ranges (each caller states its invariant).
unsafe impl<T: Send> Sync for SharedMut<T> {}
unsafe impl<T: Send> Send for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// Wraps a slice.
    pub fn new(s: &mut [T]) -> Self {
        SharedMut {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }

    /// The sub-slice `start..start+len`.
    ///
    /// # Safety
    /// No two live slices obtained from this wrapper may overlap.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.len, "SharedMut: range out of bounds");
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
    }
}

/// Flushes subnormal floats to zero on this thread while alive (x86 FTZ and
/// DAZ bits), restoring the previous mode on drop.
///
/// RRR drives the variables of inactive constraints (a zero entry of an NMF
/// factor, a weight on an unused edge) to zero geometrically; after some
/// 10⁴ iterations they enter the subnormal range, where x86 arithmetic takes
/// a microcode assist per operation and a run slows down by a third or more.
/// GPUs flush f32 subnormals anyway. Values below 2.2e-308 (f64) or
/// 1.2e-38 (f32) then read as zero. No-op on other architectures.
pub struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

#[cfg(target_arch = "x86_64")]
const FTZ_DAZ: u32 = 0x8040;

impl FlushDenormals {
    /// Sets flush-to-zero and denormals-are-zero on the calling thread.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let mut saved: u32 = 0;
            // SAFETY: stmxcsr/ldmxcsr only read and write the SSE control
            // register of this thread; the bits set are rounding-mode neutral.
            unsafe {
                std::arch::asm!("stmxcsr [{}]", in(reg) &mut saved, options(nostack));
                let on = saved | FTZ_DAZ;
                std::arch::asm!("ldmxcsr [{}]", in(reg) &on, options(nostack));
            }
            FlushDenormals { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FlushDenormals {}
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: restores the value read in `new`.
        unsafe {
            std::arch::asm!("ldmxcsr [{}]", in(reg) &self.saved, options(nostack));
        }
    }
}

/// The widest vector instruction set the CPU loops may use, detected once
/// at run time: the crate is built for baseline x86-64 (SSE2) so that one
/// binary runs everywhere, and the hot loops are compiled again for AVX2 and
/// AVX-512 and picked here. `GRADFREE_SIMD=base|avx2|avx512` caps the level
/// (for comparisons). No floating-point contraction is enabled, so every
/// level gives bit-identical results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// The build's baseline (SSE2 on x86-64, or a non-x86 target).
    Base,
    /// 256-bit AVX2.
    Avx2,
    /// 512-bit AVX-512F.
    Avx512,
}

impl SimdLevel {
    /// The levels this CPU supports, lowest first.
    pub fn available() -> Vec<SimdLevel> {
        let mut v = vec![SimdLevel::Base];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                v.push(SimdLevel::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(SimdLevel::Avx512);
            }
        }
        v
    }

    /// The level in use: the highest available, capped by `GRADFREE_SIMD`.
    pub fn current() -> SimdLevel {
        static LEVEL: std::sync::OnceLock<SimdLevel> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| {
            let cap = match std::env::var("GRADFREE_SIMD").as_deref() {
                Ok("base") => SimdLevel::Base,
                Ok("avx2") => SimdLevel::Avx2,
                _ => SimdLevel::Avx512,
            };
            SimdLevel::available()
                .into_iter()
                .filter(|&l| l <= cap)
                .max()
                .unwrap_or(SimdLevel::Base)
        })
    }

    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Base => "base",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }
}

/// True when this CPU has `level`'s instructions.
pub fn simd_supported(level: SimdLevel) -> bool {
    match level {
        SimdLevel::Base => true,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
        #[cfg(not(target_arch = "x86_64"))]
        _ => false,
    }
}

/// Defines `fn $name<T: Real>(level: SimdLevel, args…) -> R` that runs the
/// `#[inline(always)]` function `$body` code-generated for `level` (copies
/// under `#[target_feature]`; closures would not be inlined into them).
/// Levels the CPU lacks fall back to the next lower one.
macro_rules! simd_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident<$t:ident>($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty = $body:ident) => {
        $(#[$m])*
        $vis fn $name<$t: $crate::real::Real>(
            level: $crate::kernels::par::SimdLevel,
            $($arg: $ty),*
        ) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                use $crate::kernels::par::{SimdLevel, simd_supported};
                #[target_feature(enable = "avx2,fma")]
                fn avx2<$t: $crate::real::Real>($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx512f")]
                fn avx512<$t: $crate::real::Real>($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if level >= SimdLevel::Avx512 && simd_supported(SimdLevel::Avx512) {
                    // SAFETY: AVX-512F was detected on this CPU.
                    return unsafe { avx512($($arg),*) };
                }
                if level >= SimdLevel::Avx2 && simd_supported(SimdLevel::Avx2) {
                    // SAFETY: AVX2 was detected on this CPU.
                    return unsafe { avx2($($arg),*) };
                }
            }
            let _ = level;
            $body($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

/// Dot product in 8 interleaved partial sums (a single running sum would
/// not vectorize), added pairwise in a fixed order.
#[inline(always)]
pub fn dot<T: crate::real::Real>(a: &[T], b: &[T]) -> T {
    const L: usize = 8;
    let mut p = [T::ZERO; L];
    let body = a.len() / L * L;
    for (ac, bc) in a[..body].chunks_exact(L).zip(b[..body].chunks_exact(L)) {
        for l in 0..L {
            p[l] += ac[l] * bc[l];
        }
    }
    for (l, (&x, &y)) in a[body..].iter().zip(&b[body..]).enumerate() {
        p[l] += x * y;
    }
    ((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]))
}
