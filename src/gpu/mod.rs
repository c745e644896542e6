//! The only module that calls wgpu: adapter selection and device creation
//! ([`context`]), typed storage buffers and readback ([`buffer`]), and the
//! kernel pipeline cache, prepared dispatches and one-submit recorders
//! ([`pipeline`]), and matrices held as row tiles ([`tiles`]). Everything above this layer sees [`GpuContext`],
//! [`GpuBuffer`], [`Kernel`] and [`Dispatch`], never a wgpu type.

pub mod buffer;
pub mod context;
pub mod pipeline;
pub mod profile;
pub mod tiles;

pub use buffer::{GpuBuffer, Readback, ReadbackBuffer, Submitted};
pub use context::{
    AdapterSummary, BackendChoice, GpuContext, GpuRequest, WorkCounts, list_adapters, work_counts,
};
pub use pipeline::{Bind, BindRef, Constants, Dispatch, Kernel, Recorder, check_lanes, for_items};
pub use profile::{KernelTime, enable_profiling, kernel_times};
pub use tiles::RowTiles;

/// Invocations per workgroup of the one-thread-per-element kernels.
pub const WORKGROUP: u32 = 64;
/// Invocations per workgroup of the reduction kernels.
pub const REDUCE_WORKGROUP: u32 = 256;

/// llvmpipe (lavapipe) ends an invocation's loops once they have run
/// 65,535 iterations in all, every loop of the shader counted together
/// (gallivm's `LP_MAX_TGSI_LOOP_ITERATIONS`), without an error: a kernel
/// whose invocation walks a long dimension must split it over dispatches
/// on a software adapter.
pub const SOFTWARE_LOOP_LIMIT: usize = 65_535;

/// How much of a dimension one dispatch may walk, in units of `step`,
/// when each step costs an invocation `per_step` loop iterations (the
/// loops run once per dispatch take at most 100 more): all of it on
/// hardware, at least one step on a software adapter.
pub fn loop_span(software: bool, per_step: usize, step: usize) -> usize {
    if !software {
        return usize::MAX;
    }
    ((SOFTWARE_LOOP_LIMIT - 100) / per_step.max(1)).max(1) * step
}
