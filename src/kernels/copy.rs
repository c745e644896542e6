//! Streaming copy in 16-byte words, the bandwidth roofline for the other
//! kernels. Twin of `shaders/copy.wgsl`.

use crate::error::Result;
use crate::gpu::buffer::Elem;
use crate::gpu::{Bind, Kernel};
use crate::gpu::{GpuBuffer, GpuContext};
use crate::real::Precision;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The WGSL kernel.
pub const KERNEL: Kernel = Kernel {
    name: "copy",
    source: include_str!("../../shaders/copy.wgsl"),
    deps: &[],
    entry: "copy",
    binds: &[Bind::Uniform, Bind::Read, Bind::ReadWrite],
    workgroup: 64,
    lanes: 1,
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

/// Copies `src` (u32 words, a multiple of 4) with the copy kernel; returns the copy.
pub fn gpu_words(ctx: &Arc<GpuContext>, src: &[u32]) -> Result<Vec<u32>> {
    assert!(src.len().is_multiple_of(4), "copy works in 16-byte words");
    let k = PreparedCopy::bind(ctx, ctx.upload_u32(src)?, src.len() / 4)?;
    k.run(1)?;
    k._bufs[2].read_u32()
}

/// A copy kernel bound once to two buffers of `bytes`, for bandwidth runs.
pub struct PreparedCopy {
    ctx: Arc<GpuContext>,
    dispatch: crate::gpu::Dispatch,
    /// Bytes copied per run.
    pub bytes: usize,
    _bufs: [GpuBuffer; 3],
}

impl PreparedCopy {
    /// Allocates source and destination and binds the kernel.
    pub fn new(ctx: &Arc<GpuContext>, bytes: usize) -> Result<Self> {
        let words = (bytes / 16).max(1);
        Self::bind(ctx, ctx.alloc(words * 4, Elem::U32)?, words)
    }

    /// Binds the kernel to copy `words` 16-byte words of `src` into a new buffer.
    fn bind(ctx: &Arc<GpuContext>, src: GpuBuffer, words: usize) -> Result<Self> {
        let params = ctx.uniform(&Params {
            words: words as u32,
            pad: [0; 3],
        })?;
        let dst = ctx.alloc(words * 4, Elem::U32)?;
        let dispatch = ctx.prepare(
            &KERNEL,
            Precision::F32,
            &[(&params).into(), (&src).into(), (&dst).into()],
            words as u64,
        )?;
        Ok(PreparedCopy {
            ctx: ctx.clone(),
            dispatch,
            bytes: words * 16,
            _bufs: [params, src, dst],
        })
    }

    /// Runs `reps` copies in one submit and waits.
    pub fn run(&self, reps: usize) -> Result<()> {
        let mut rec = self.ctx.recorder();
        for _ in 0..reps {
            rec.dispatch(&self.dispatch);
        }
        rec.submit()?;
        self.ctx.wait()
    }

    /// Seconds per copy and GB/s (read + write) over `reps` copies.
    pub fn bandwidth(&self, reps: usize) -> Result<(f64, f64)> {
        self.run(1)?;
        let t = Instant::now();
        self.run(reps)?;
        let per = t.elapsed().max(Duration::from_nanos(1)).as_secs_f64() / reps.max(1) as f64;
        Ok((per, 2.0 * self.bytes as f64 / per / 1e9))
    }
}
