//! Typed storage buffers: upload, readback, uniforms.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::GpuContext;
use super::context::{BYTES_DOWN, BYTES_UP, READBACKS, SUBMITS};
use crate::error::{Error, Result};
use crate::real::Precision;

/// Element type of a [`GpuBuffer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elem {
    /// A float of the given precision.
    Real(Precision),
    /// 32-bit unsigned integer (indices, labels, flags).
    U32,
    /// Raw bytes of a uniform struct.
    Uniform,
}

impl Elem {
    /// Bytes per element.
    pub fn bytes(self) -> u64 {
        match self {
            Elem::Real(p) => p.bytes() as u64,
            Elem::U32 | Elem::Uniform => 4,
        }
    }
}

/// A device buffer of `len` elements that lives as long as it is used.
pub struct GpuBuffer {
    pub(crate) ctx: Arc<GpuContext>,
    pub(crate) buffer: wgpu::Buffer,
    len: usize,
    elem: Elem,
    staging: Mutex<Option<wgpu::Buffer>>,
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({:?} x {})", self.elem, self.len)
    }
}

fn padded_size(len: usize, elem: Elem) -> u64 {
    // Never zero-sized (bindings must be non-empty, and a quad kernel's
    // hold at least one vec4 of f64); copies need multiples of 4.
    let bytes = (len.max(1) as u64) * elem.bytes();
    bytes.div_ceil(32) * 32
}

impl GpuContext {
    /// Queues a write of `data` into `buffer` at byte `offset`, counting
    /// the bytes sent to the device.
    fn write_buffer(&self, buffer: &wgpu::Buffer, offset: u64, data: &[u8]) {
        BYTES_UP.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.queue.write_buffer(buffer, offset, data);
    }

    /// Allocates a zero-filled storage buffer of `len` elements.
    pub fn alloc(self: &Arc<Self>, len: usize, elem: Elem) -> Result<GpuBuffer> {
        let size = padded_size(len, elem);
        if size > self.limits.max_buffer_size {
            return Err(Error::Limit {
                what: format!("a buffer of {len} elements"),
                needed: size,
                limit: self.limits.max_buffer_size,
            });
        }
        let usage = if elem == Elem::Uniform {
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST
        } else {
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC
        };
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage,
            mapped_at_creation: false,
        });
        Ok(GpuBuffer {
            ctx: self.clone(),
            buffer,
            len,
            elem,
            staging: Mutex::new(None),
        })
    }

    /// Uploads floats, converting to `precision`.
    pub fn upload_real(self: &Arc<Self>, data: &[f64], precision: Precision) -> Result<GpuBuffer> {
        let buf = self.alloc(data.len(), Elem::Real(precision))?;
        buf.write_real(data);
        Ok(buf)
    }

    /// Uploads unsigned integers.
    pub fn upload_u32(self: &Arc<Self>, data: &[u32]) -> Result<GpuBuffer> {
        let buf = self.alloc(data.len(), Elem::U32)?;
        if !data.is_empty() {
            self.write_buffer(&buf.buffer, 0, bytemuck::cast_slice(data));
        }
        Ok(buf)
    }

    /// A uniform buffer holding `value` (a `#[repr(C)]` Pod struct, 16-byte multiple).
    pub fn uniform<T: bytemuck::Pod>(self: &Arc<Self>, value: &T) -> Result<GpuBuffer> {
        let bytes = bytemuck::bytes_of(value);
        let buf = self.alloc(bytes.len() / 4, Elem::Uniform)?;
        self.write_buffer(&buf.buffer, 0, bytes);
        Ok(buf)
    }
}

impl GpuBuffer {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffer holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element type.
    pub fn elem(&self) -> Elem {
        self.elem
    }

    /// Size of the live data in bytes.
    pub fn bytes(&self) -> u64 {
        self.len as u64 * self.elem.bytes()
    }

    /// Overwrites the buffer's contents with floats (queued; takes effect before the next submit).
    pub fn write_real(&self, data: &[f64]) {
        assert_eq!(data.len(), self.len, "write_real: length mismatch");
        if data.is_empty() {
            return;
        }
        match self.elem {
            Elem::Real(Precision::F32) => {
                let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
                self.ctx
                    .write_buffer(&self.buffer, 0, bytemuck::cast_slice(&v));
            }
            Elem::Real(Precision::F64) => {
                self.ctx
                    .write_buffer(&self.buffer, 0, bytemuck::cast_slice(data));
            }
            _ => panic!("write_real on a non-float buffer"),
        }
    }

    /// Overwrites elements `start..start + data.len()` with floats (queued;
    /// takes effect before the next submit): the reused input tile of a
    /// row-tiled product.
    pub fn write_real_at(&self, start: usize, data: &[f64]) {
        assert!(
            start + data.len() <= self.len,
            "write_real_at: out of range"
        );
        if data.is_empty() {
            return;
        }
        let Elem::Real(prec) = self.elem else {
            panic!("write_real_at on a non-float buffer")
        };
        let offset = start as u64 * prec.bytes() as u64;
        match prec {
            Precision::F32 => {
                let v: Vec<f32> = data.iter().map(|&x| x as f32).collect();
                self.ctx
                    .write_buffer(&self.buffer, offset, bytemuck::cast_slice(&v));
            }
            Precision::F64 => {
                self.ctx
                    .write_buffer(&self.buffer, offset, bytemuck::cast_slice(data));
            }
        }
    }

    /// Overwrites the buffer's contents with unsigned integers.
    pub fn write_u32(&self, data: &[u32]) {
        assert_eq!(self.elem, Elem::U32);
        assert_eq!(data.len(), self.len, "write_u32: length mismatch");
        if !data.is_empty() {
            self.ctx
                .write_buffer(&self.buffer, 0, bytemuck::cast_slice(data));
        }
    }

    /// Overwrites a uniform buffer's contents.
    pub fn write_uniform<T: bytemuck::Pod>(&self, value: &T) {
        self.ctx
            .write_buffer(&self.buffer, 0, bytemuck::bytes_of(value));
    }

    /// Reads `range` of the elements back as raw bytes (waits for the GPU).
    fn read_bytes(&self, start: usize, count: usize) -> Result<Vec<u8>> {
        let eb = self.elem.bytes();
        let bytes = (count as u64 * eb).div_ceil(4) * 4;
        if count == 0 {
            return Ok(Vec::new());
        }
        let mut guard = self.staging.lock().expect("staging poisoned");
        let need_new = guard.as_ref().is_none_or(|s| s.size() < bytes);
        if need_new {
            *guard = Some(staging_buffer(&self.ctx.device, bytes));
        }
        let staging = guard.as_ref().expect("staging just set");
        let mut enc = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        enc.copy_buffer_to_buffer(&self.buffer, start as u64 * eb, staging, 0, bytes);
        SUBMITS.fetch_add(1, Ordering::Relaxed);
        self.ctx.queue.submit([enc.finish()]);
        map_read(
            &self.ctx,
            staging,
            bytes,
            (count as u64 * eb) as usize,
            None,
        )
    }

    /// Reads the whole buffer back as f64 (waits for the GPU).
    pub fn read_real(&self) -> Result<Vec<f64>> {
        self.read_real_range(0, self.len)
    }

    /// Reads `count` floats starting at element `start` as f64.
    pub fn read_real_range(&self, start: usize, count: usize) -> Result<Vec<f64>> {
        assert!(start + count <= self.len, "read past the end");
        Ok(real_values(&self.read_bytes(start, count)?, self.elem))
    }

    /// Reads the whole buffer back as u32.
    pub fn read_u32(&self) -> Result<Vec<u32>> {
        assert_eq!(self.elem, Elem::U32);
        let raw = self.read_bytes(0, self.len)?;
        Ok(bytemuck::pod_collect_to_vec(&raw))
    }
}

/// A mappable buffer of `bytes` for readbacks.
fn staging_buffer(device: &wgpu::Device, bytes: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Maps `staging` once the copy into it has run (the submit `after`, or
/// every submit so far) and returns its first `live` bytes.
fn map_read(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    bytes: u64,
    live: usize,
    after: Option<wgpu::SubmissionIndex>,
) -> Result<Vec<u8>> {
    READBACKS.fetch_add(1, Ordering::Relaxed);
    BYTES_DOWN.fetch_add(live as u64, Ordering::Relaxed);
    let (tx, rx) = std::sync::mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, 0..bytes, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait_for(after)?;
    rx.recv()
        .map_err(|e| Error::Gpu {
            during: "readback".into(),
            reason: e.to_string(),
        })?
        .map_err(|e| Error::Gpu {
            during: "readback map".into(),
            reason: e.to_string(),
        })?;
    let out = {
        let view = staging.get_mapped_range(0..bytes).map_err(|e| Error::Gpu {
            during: "readback view".into(),
            reason: e.to_string(),
        })?;
        view[..live].to_vec()
    };
    staging.unmap();
    Ok(out)
}

/// Floats of `elem` in `raw`, as f64.
fn real_values(raw: &[u8], elem: Elem) -> Vec<f64> {
    match elem {
        Elem::Real(Precision::F32) => bytemuck::pod_collect_to_vec::<u8, f32>(raw)
            .into_iter()
            .map(f64::from)
            .collect(),
        Elem::Real(Precision::F64) => bytemuck::pod_collect_to_vec::<u8, f64>(raw),
        _ => panic!("read_real on a non-float buffer"),
    }
}

/// A submit recorded by [`super::Recorder::submit_indexed`]: what a
/// [`Readback`] recorded in it waits for.
#[derive(Debug)]
pub struct Submitted(pub(crate) wgpu::SubmissionIndex);

/// A mappable buffer that [`super::Recorder::readback`] copies into, made
/// once and reused: a loop that reads back every window allocates nothing.
#[derive(Debug)]
pub struct ReadbackBuffer {
    buffer: wgpu::Buffer,
}

impl GpuContext {
    /// A readback buffer for up to `len` elements of `elem`.
    pub fn readback_buffer(&self, len: usize, elem: Elem) -> ReadbackBuffer {
        let bytes = (len as u64 * elem.bytes()).div_ceil(4).max(1) * 4;
        ReadbackBuffer {
            buffer: staging_buffer(&self.device, bytes),
        }
    }
}

/// Part of a buffer copied inside a recorder's command buffer
/// ([`super::Recorder::readback`]) and read once that submit has run: the
/// host can submit more work before it waits, and waits for this submit
/// only, not for the work queued after it.
#[derive(Debug)]
pub struct Readback {
    pub(crate) staging: wgpu::Buffer,
    pub(crate) bytes: u64,
    pub(crate) live: usize,
    pub(crate) elem: Elem,
}

impl Readback {
    /// The copy of a buffer region into `into`, recorded into `enc`.
    pub(crate) fn record(
        enc: &mut wgpu::CommandEncoder,
        src: &GpuBuffer,
        start: usize,
        count: usize,
        into: &ReadbackBuffer,
    ) -> Readback {
        assert!(start + count <= src.len, "readback past the end");
        let eb = src.elem.bytes();
        let live = count as u64 * eb;
        let bytes = live.div_ceil(4).max(1) * 4;
        assert!(
            bytes <= into.buffer.size(),
            "readback larger than its buffer"
        );
        let copy = (live.div_ceil(4) * 4).min(src.buffer.size() - start as u64 * eb);
        if copy > 0 {
            enc.copy_buffer_to_buffer(&src.buffer, start as u64 * eb, &into.buffer, 0, copy);
        }
        Readback {
            staging: into.buffer.clone(),
            bytes,
            live: live as usize,
            elem: src.elem,
        }
    }

    /// The copied bytes, once `after` (the submit holding the copy) has run.
    fn bytes(&self, ctx: &GpuContext, after: &Submitted) -> Result<Vec<u8>> {
        map_read(
            ctx,
            &self.staging,
            self.bytes,
            self.live,
            Some(after.0.clone()),
        )
    }

    /// The values as f64, once `after` has run.
    pub fn real(self, ctx: &GpuContext, after: &Submitted) -> Result<Vec<f64>> {
        Ok(real_values(&self.bytes(ctx, after)?, self.elem))
    }

    /// The values as u32, once `after` has run.
    pub fn u32(self, ctx: &GpuContext, after: &Submitted) -> Result<Vec<u32>> {
        assert_eq!(self.elem, Elem::U32);
        Ok(bytemuck::pod_collect_to_vec(&self.bytes(ctx, after)?))
    }
}
