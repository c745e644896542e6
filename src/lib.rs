//! gradfree — training neural networks without gradients.
//!
//! Three published methods on one engine: RRR constraint satisfaction
//! ("Learning without loss", Elser), StarNet layer-wise least squares
//! (Zadeh et al.) and layer-wise HSIC networks with closed-form weights
//! (Wu et al.). Data flows one way: methods ([`rrr`]) → [`backend`]
//! (CPU or GPU) → [`kernels`] → [`gpu`] (the only module that calls wgpu).
#![warn(missing_docs)]

pub mod backend;
pub mod bench;
pub mod data;
pub mod error;
pub mod gpu;
pub mod hsic;
pub mod kernels;
pub mod meter;
pub mod output;
pub mod real;
pub mod rrr;
pub mod sgd;
pub mod starnet;

pub use backend::{Backend, DeviceChoice};
pub use error::{Error, Result};
pub use real::{Precision, Real};

/// Keeps freed heap memory in the process for reuse (glibc only; a no-op
/// elsewhere). The solvers free and reallocate the same multi-megabyte
/// buffers every iteration; by default glibc serves each from fresh
/// `mmap`ed pages, whose first-touch faults and zeroing cost about a tenth
/// of an ISM fit. Allocations up to 32 MiB (glibc's ceiling for this
/// setting) then come from the heap, and its top is not trimmed.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called once,
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}
