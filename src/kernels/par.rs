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
