//! Kernels, the pipeline cache, prepared dispatches and the recorder that
//! turns a sequence of dispatches into one submit.
//!
//! A [`Kernel`] names a WGSL source, an entry point and the kinds of its
//! bindings (group 0, binding i in order). Pipelines and bind-group layouts
//! are built once per (kernel, entry, precision) and cached in the context.
//! A [`Dispatch`] binds concrete buffers once; iterations then replay it.
//! Dispatches over more than 65535 workgroups use a 2-D grid: shaders compute
//! their linear index as `(wid.y * nwg.x + wid.x) * WG + lid.x`.

use std::borrow::Cow;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::context::{DISPATCHES, SUBMITS};

use super::buffer::{Readback, ReadbackBuffer, Submitted};
use super::{GpuBuffer, GpuContext};
use crate::error::{Error, Result};
use crate::real::Precision;

/// Kind of one binding of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bind {
    /// `var<uniform>` parameters.
    Uniform,
    /// `var<storage, read>`.
    Read,
    /// `var<storage, read_write>`.
    ReadWrite,
}

/// A compute kernel: WGSL source (without the `real` alias), entry point, bindings.
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// Shader file stem, for messages and caching.
    pub name: &'static str,
    /// WGSL source; `alias real = f32|f64;` and `REAL_EPS` are prepended at build time.
    pub source: &'static str,
    /// Other shader files whose function part (the text before `//!entry`) this one calls.
    pub deps: &'static [&'static str],
    /// Entry point.
    pub entry: &'static str,
    /// Binding kinds in binding order.
    pub binds: &'static [Bind],
    /// Invocations per workgroup (must match the shader's `@workgroup_size`).
    pub workgroup: u32,
    /// Items per invocation for kernels written over `itemv`: 1, or 4 in a
    /// kernel's [`Kernel::quad`] variant, 2 in its [`Kernel::pair`] one.
    pub lanes: u32,
}

/// The item type of a kernel's invocations: one item, or two or four
/// neighbours of an item-fastest `[rows][K]` row read and written as one
/// vec2 or vec4 (WGSL cannot index a scalar, hence the accessors).
const ONE_ITEM: &str = "alias itemv = real;
const LANE_ITEMS: u32 = 1u;
fn item_at(v: itemv, c: u32) -> real { return v; }
fn item_set(v: itemv, c: u32, s: real) -> itemv { return s; }
fn items_sum(v: itemv) -> real { return v; }
";
const TWO_ITEMS: &str = "alias itemv = vec2<real>;
const LANE_ITEMS: u32 = 2u;
fn item_at(v: itemv, c: u32) -> real { return v[c]; }
fn item_set(v: itemv, c: u32, s: real) -> itemv { var r = v; r[c] = s; return r; }
fn items_sum(v: itemv) -> real { return v.x + v.y; }
";
const FOUR_ITEMS: &str = "alias itemv = vec4<real>;
const LANE_ITEMS: u32 = 4u;
fn item_at(v: itemv, c: u32) -> real { return v[c]; }
fn item_set(v: itemv, c: u32, s: real) -> itemv { var r = v; r[c] = s; return r; }
fn items_sum(v: itemv) -> real { return (v.x + v.y) + (v.z + v.w); }
";

impl Kernel {
    /// The variant whose invocations take four neighbouring items each, for
    /// rows whose item count is a multiple of 4. Software adapters load a
    /// vec4 per lane where they gather four scalars: on lavapipe the quad
    /// `rrr_step` of 784-20-10 takes 0.58 of the scalar one's time.
    pub const fn quad(self) -> Kernel {
        Kernel { lanes: 4, ..self }
    }

    /// The variant whose invocations take two neighbouring items each, for
    /// rows of an even item count that is not a multiple of 4: a software
    /// adapter's load loops over its lanes once per vec2 instead of once
    /// per scalar (20 batched LEDM m = 6 starts, rows of 6 items: 0.80 of
    /// the scalar fused kernel's time per iteration on lavapipe).
    pub const fn pair(self) -> Kernel {
        Kernel { lanes: 2, ..self }
    }

    /// `file::entry`, with `×4` (`×2`) for a quad (pair) variant: names it
    /// in messages and profiles.
    pub fn label(&self) -> String {
        let quad = match self.lanes {
            1 => String::new(),
            n => format!("×{n}"),
        };
        format!("{}::{}{quad}", self.name, self.entry)
    }

    /// The full WGSL text for a precision.
    pub fn wgsl(&self, precision: Precision) -> String {
        let mut text = format!(
            "alias real = {};\nconst REAL_EPS: real = {:e};\n",
            precision.wgsl(),
            precision.epsilon()
        );
        text += match self.lanes {
            4 => FOUR_ITEMS,
            2 => TWO_ITEMS,
            _ => ONE_ITEM,
        };
        for dep in self.deps {
            text += functions_part(dep);
        }
        text += self.source;
        text
    }
}

/// Values of a pipeline's WGSL `override` constants by name (a `bool`
/// as 0 or 1), fixed when it is built.
pub type Constants = [(&'static str, f64)];

/// `one`, its quad variant `four` where rows of `items` split into whole
/// quads, or else its pair variant `two` where they split into pairs: the
/// variant the GPU engine runs.
pub fn for_items(
    one: &'static Kernel,
    two: &'static Kernel,
    four: &'static Kernel,
    items: usize,
) -> &'static Kernel {
    match items % 4 {
        0 => four,
        2 => two,
        _ => one,
    }
}

/// Checks that rows of `items` split into `kernel`'s items per invocation.
pub fn check_lanes(kernel: &Kernel, items: usize) -> Result<()> {
    if items.is_multiple_of(kernel.lanes as usize) {
        return Ok(());
    }
    Err(Error::Input(format!(
        "{} takes rows of a multiple of {} items, got {items}",
        kernel.label(),
        kernel.lanes
    )))
}

/// The part of a shader file before its `//!entry` marker: functions and
/// constants other kernels may include (WGSL has no include directive).
pub fn functions_part(source: &str) -> &str {
    source.split("//!entry").next().unwrap_or(source)
}

pub(crate) struct CachedPipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// A buffer, or an element range of one, to bind.
#[derive(Clone, Copy, Debug)]
pub struct BindRef<'a> {
    /// The buffer.
    pub buffer: &'a GpuBuffer,
    /// First element.
    pub offset: usize,
    /// Number of elements (None = to the end).
    pub len: Option<usize>,
}

impl<'a> From<&'a GpuBuffer> for BindRef<'a> {
    fn from(buffer: &'a GpuBuffer) -> Self {
        BindRef {
            buffer,
            offset: 0,
            len: None,
        }
    }
}

/// A kernel with its buffers bound and its grid sized: replay it every iteration.
pub struct Dispatch {
    pipeline: Arc<CachedPipeline>,
    bind_group: wgpu::BindGroup,
    groups: (u32, u32),
    label: String,
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dispatch({}, {:?})", self.label, self.groups)
    }
}

impl GpuContext {
    fn pipeline(
        &self,
        kernel: &Kernel,
        precision: Precision,
        constants: &Constants,
    ) -> Result<Arc<CachedPipeline>> {
        let values = constants.iter().map(|&(k, v)| (k, v.to_bits())).collect();
        let key = (kernel.name, kernel.entry, kernel.lanes, precision, values);
        if let Some(p) = self.pipelines.lock().expect("cache poisoned").get(&key) {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.name),
                source: wgpu::ShaderSource::Wgsl(Cow::Owned(kernel.wgsl(precision))),
            });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = kernel
            .binds
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match b {
                        Bind::Uniform => wgpu::BufferBindingType::Uniform,
                        Bind::Read => wgpu::BufferBindingType::Storage { read_only: true },
                        Bind::ReadWrite => wgpu::BufferBindingType::Storage { read_only: false },
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(kernel.name),
                entries: &entries,
            });
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(kernel.name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(kernel.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    ..Default::default()
                },
                cache: None,
            });
        if let Some(err) = pollster::block_on(scope.pop()) {
            return Err(Error::Shader {
                kernel: format!("{} ({precision})", kernel.label()),
                reason: err.to_string(),
            });
        }
        let cached = Arc::new(CachedPipeline { pipeline, layout });
        self.pipelines
            .lock()
            .expect("cache poisoned")
            .insert(key, cached.clone());
        Ok(cached)
    }

    /// Grid for `threads` invocations at `workgroup` per group, 2-D beyond the per-dimension limit.
    pub fn grid(&self, threads: u64, workgroup: u32) -> Result<(u32, u32)> {
        let groups = threads.div_ceil(workgroup as u64);
        let max = self.max_workgroups_per_dim() as u64;
        if groups == 0 {
            return Ok((0, 0));
        }
        let x = groups.min(max);
        let y = groups.div_ceil(x);
        if y > max {
            return Err(Error::Limit {
                what: format!("a dispatch of {threads} invocations"),
                needed: groups,
                limit: max * max,
            });
        }
        Ok((x as u32, y as u32))
    }

    /// Binds buffers to a kernel and sizes its grid for `threads` invocations.
    pub fn prepare(
        &self,
        kernel: &Kernel,
        precision: Precision,
        binds: &[BindRef<'_>],
        threads: u64,
    ) -> Result<Dispatch> {
        self.prepare_specialized(kernel, precision, &[], binds, threads)
    }

    /// [`GpuContext::prepare`] with values for the kernel's WGSL
    /// `override` constants (each named one must exist in its shader):
    /// its pipeline is built, and cached, for them.
    pub fn prepare_specialized(
        &self,
        kernel: &Kernel,
        precision: Precision,
        constants: &Constants,
        binds: &[BindRef<'_>],
        threads: u64,
    ) -> Result<Dispatch> {
        assert_eq!(
            binds.len(),
            kernel.binds.len(),
            "kernel {} takes {} bindings",
            kernel.name,
            kernel.binds.len()
        );
        let cached = self.pipeline(kernel, precision, constants)?;
        let max_bind = self.max_binding_bytes();
        let align = self.offset_alignment();
        let mut entries = Vec::with_capacity(binds.len());
        for (i, b) in binds.iter().enumerate() {
            let eb = b.buffer.elem().bytes();
            let offset = b.offset as u64 * eb;
            // A quad kernel reads every array as whole vec4s.
            let live = b
                .len
                .unwrap_or(b.buffer.len().saturating_sub(b.offset))
                .max(1)
                .next_multiple_of(kernel.lanes as usize) as u64
                * eb;
            let size = (live.div_ceil(4) * 4).min(b.buffer.buffer.size() - offset);
            if size > max_bind {
                return Err(Error::Limit {
                    what: format!("binding {i} of kernel {}", kernel.name),
                    needed: size,
                    limit: max_bind,
                });
            }
            if !offset.is_multiple_of(align) {
                return Err(Error::Limit {
                    what: format!("offset alignment of binding {i} of kernel {}", kernel.name),
                    needed: offset,
                    limit: align,
                });
            }
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &b.buffer.buffer,
                    offset,
                    size: NonZeroU64::new(size),
                }),
            });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.name),
            layout: &cached.layout,
            entries: &entries,
        });
        Ok(Dispatch {
            pipeline: cached,
            bind_group,
            groups: self.grid(threads, kernel.workgroup)?,
            label: kernel.label(),
        })
    }

    /// Runs prepared dispatches in order, in one submit.
    pub fn run_all(&self, ds: &[Dispatch]) -> Result<()> {
        let mut rec = self.recorder();
        rec.dispatches(&ds.iter().collect::<Vec<_>>());
        rec.submit()
    }

    /// Runs one prepared dispatch in its own submit.
    pub fn run_one(&self, d: &Dispatch) -> Result<()> {
        let mut rec = self.recorder();
        rec.dispatch(d);
        rec.submit()
    }

    /// Starts recording a batch of work for one submit.
    pub fn recorder(&self) -> Recorder<'_> {
        Recorder {
            ctx: self,
            encoder: self.encoder(),
            stamped: Vec::new(),
            failed: None,
        }
    }

    fn encoder(&self) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
    }
}

/// Records dispatches and copies into one command buffer; [`Recorder::submit`] sends it.
pub struct Recorder<'a> {
    ctx: &'a GpuContext,
    encoder: wgpu::CommandEncoder,
    /// When profiling: the kernels stamped in this encoder, in order.
    stamped: Vec<String>,
    /// When profiling: a failed mid-recording readback, for `submit`.
    failed: Option<Error>,
}

impl Recorder<'_> {
    /// Appends a dispatch (wgpu inserts the storage barriers between dispatches).
    pub fn dispatch(&mut self, d: &Dispatch) {
        self.dispatches(&[d]);
    }

    /// Appends several dispatches in one compute pass, in order; wgpu
    /// inserts the barriers their storage dependencies need.
    pub fn dispatches(&mut self, ds: &[&Dispatch]) {
        if ds.iter().all(|d| d.groups.0 == 0) {
            return;
        }
        if let Some(stamps) = &self.ctx.stamps {
            for d in ds.iter().filter(|d| d.groups.0 > 0) {
                if self.stamped.len() == super::profile::CAPACITY as usize {
                    // A full query set: submit what is recorded and read its stamps.
                    let enc = std::mem::replace(&mut self.encoder, self.ctx.encoder());
                    if let Err(e) = self.finish(enc, stamps) {
                        self.failed.get_or_insert(e);
                    }
                }
                let i = self.stamped.len() as u32;
                let mut pass = self
                    .encoder
                    .begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &stamps.set,
                            beginning_of_pass_write_index: Some(2 * i),
                            end_of_pass_write_index: Some(2 * i + 1),
                        }),
                    });
                DISPATCHES.fetch_add(1, Ordering::Relaxed);
                pass.set_pipeline(&d.pipeline.pipeline);
                pass.set_bind_group(0, &d.bind_group, &[]);
                pass.dispatch_workgroups(d.groups.0, d.groups.1, 1);
                drop(pass);
                self.stamped.push(d.label.clone());
            }
            return;
        }
        let mut pass = self
            .encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
        for d in ds.iter().filter(|d| d.groups.0 > 0) {
            DISPATCHES.fetch_add(1, Ordering::Relaxed);
            pass.set_pipeline(&d.pipeline.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(d.groups.0, d.groups.1, 1);
        }
    }

    /// Appends a whole-buffer copy.
    pub fn copy(&mut self, src: &GpuBuffer, dst: &GpuBuffer) {
        assert_eq!(src.bytes(), dst.bytes(), "copy: size mismatch");
        let bytes = src.bytes().div_ceil(4) * 4;
        if bytes > 0 {
            self.encoder
                .copy_buffer_to_buffer(&src.buffer, 0, &dst.buffer, 0, bytes);
        }
    }

    /// Submits everything recorded (one queue submit) and checks for errors.
    pub fn submit(self) -> Result<()> {
        self.submit_indexed().map(|_| ())
    }

    /// Appends a copy of elements `start..start + count` of `src` into
    /// `into`, to be read once this recorder's submit has run ([`Readback`]).
    pub fn readback(
        &mut self,
        src: &GpuBuffer,
        start: usize,
        count: usize,
        into: &ReadbackBuffer,
    ) -> Readback {
        Readback::record(&mut self.encoder, src, start, count, into)
    }

    /// [`Recorder::submit`], returning the submit for the readbacks recorded in it.
    pub fn submit_indexed(mut self) -> Result<Submitted> {
        if let Some(stamps) = &self.ctx.stamps {
            let enc = std::mem::replace(&mut self.encoder, self.ctx.encoder());
            let index = self.finish(enc, stamps)?;
            return self.failed.map_or(Ok(Submitted(index)), Err);
        }
        SUBMITS.fetch_add(1, Ordering::Relaxed);
        let index = self.ctx.queue.submit([self.encoder.finish()]);
        self.ctx.check("submit")?;
        Ok(Submitted(index))
    }

    /// Profiling: submits `enc` with the resolve of its stamps, then reads them.
    fn finish(
        &mut self,
        mut enc: wgpu::CommandEncoder,
        stamps: &super::profile::Stamps,
    ) -> Result<wgpu::SubmissionIndex> {
        if !self.stamped.is_empty() {
            stamps.resolve(&mut enc, self.stamped.len() as u32);
        }
        SUBMITS.fetch_add(1, Ordering::Relaxed);
        let index = self.ctx.queue.submit([enc.finish()]);
        self.ctx.check("submit")?;
        let names = std::mem::take(&mut self.stamped);
        stamps.collect(self.ctx, &names)?;
        Ok(index)
    }
}
