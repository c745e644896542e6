//! Streaming copy in 16-byte words, the bandwidth roofline for the other
//! kernels. Twin of `shaders/copy.wgsl`.

use crate::gpu::{Bind, Kernel};

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "copy",
    source: include_str!("../../shaders/copy.wgsl"),
    deps: &[],
    entry: "copy",
    binds: &[Bind::Uniform, Bind::Read, Bind::ReadWrite],
    workgroup: 64,
};

/// Uniform parameters (matches `CopyParams`).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// 16-byte words.
    pub words: u32,
    /// Padding.
    pub pad: [u32; 3],
}

/// The CPU twin.
pub fn run(src: &[u32], dst: &mut [u32]) {
    dst.copy_from_slice(src);
}
