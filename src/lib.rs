//! gradfree — training neural networks without gradients.
//!
//! Three published methods on one engine: RRR constraint satisfaction
//! ("Learning without loss", Elser), StarNet layer-wise least squares
//! (Zadeh et al.) and layer-wise HSIC networks with closed-form weights
//! (Wu et al.).
//!
//! Imports point one way, down this list (the command line sits on top,
//! in the binary):
//!
//! ```text
//! bench                   suites of method runs, measured
//! methods                 rrr (classify, nmf, autoencode, generator), starnet, hsic, sgd;
//!                         no method imports another
//! train                   the one epoch/batch loop: shuffles, time limit, checkpoints
//!                         and exact resume, metrics.jsonl, summary.json, progress, meter
//! engine                  Backend (cpu | gpu Ops), the RRR engines, the Collective
//!                         that every sum over items goes through
//! problem                 the RRR graph, node and selection kinds, state layout
//! kernels                 <name>.rs ↔ shaders/<name>.wgsl, each with its f64 twin
//! gpu                     the only module that calls wgpu
//! data, io, plot,        the ground floor: datasets, our files, figures,
//! random, real, error     seeded draws, precisions, errors
//! ```
//!
//! `tests/suite/layers.rs` fails on an import that points up this list.
#![warn(missing_docs)]

pub mod bench;
pub mod data;
pub mod engine;
pub mod error;
pub mod gpu;
pub mod io;
pub mod kernels;
pub mod methods;
pub mod plot;
pub mod problem;
pub mod random;
pub mod real;
pub mod train;

pub use engine::{Backend, DeviceChoice};
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
