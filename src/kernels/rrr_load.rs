//! A batch's replicas built on the device from its node form
//! ([`crate::problem::NodeStart`]): x[e][k] from the source node's value,
//! w[e][k] the model's weight, y[i][k] the pre-activation, b[i][k] the
//! bias. Its twin is [`crate::problem::NodeStart::fill_replicas`]. Twin of
//! `shaders/rrr_load.wgsl`.
//!
//! The index is one u32 over E × K + N × K elements: a chunk's arrays fit a
//! storage binding, so they are far below 2³² elements.

use crate::gpu::{Bind, Kernel};

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "rrr_load",
    source: include_str!("../../shaders/rrr_load.wgsl"),
    deps: &[],
    entry: "rrr_load",
    binds: &[
        Bind::Uniform,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::Read,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
        Bind::ReadWrite,
    ],
    workgroup: 64,
    lanes: 1,
};

/// [`KERNEL`] over quads of items (a chunk of a multiple of 4 items).
pub const QUAD: Kernel = KERNEL.quad();

/// [`KERNEL`] over pairs of items (a multiple of 2, not of 4).
pub const PAIR: Kernel = KERNEL.pair();

/// Uniform parameters (matches `LoadParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Items of the chunk (row stride).
    pub items: u32,
    /// Edges E.
    pub edges: u32,
    /// Nodes N.
    pub nodes: u32,
    /// Padding.
    pub pad: u32,
}
