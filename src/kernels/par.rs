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
