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
pub use pipeline::{Bind, BindRef, Dispatch, Kernel, Recorder, check_lanes, for_items};
pub use profile::{KernelTime, enable_profiling, kernel_times};
pub use tiles::RowTiles;

/// Invocations per workgroup of the one-thread-per-element kernels.
pub const WORKGROUP: u32 = 64;
/// Invocations per workgroup of the reduction kernels.
pub const REDUCE_WORKGROUP: u32 = 256;
