//! Adapter enumeration and selection, device creation, error capture.
//!
//! Selection honours `--backend` / `WGPU_BACKEND` and `--adapter` /
//! `WGPU_ADAPTER_NAME` (case-insensitive substring). We match adapter names
//! ourselves: `wgpu::util::initialize_adapter_from_env` panics when nothing
//! matches, and a missing adapter must be a clean error, not a panic.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::real::Precision;

/// A graphics API to restrict adapter enumeration to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// Vulkan (Linux, Windows, Android; lavapipe in CI).
    Vulkan,
    /// Metal (macOS, iOS).
    Metal,
    /// Direct3D 12 (Windows).
    Dx12,
    /// OpenGL / GLES (fallback; no f64, 16 storage buffers per stage).
    Gl,
}

impl BackendChoice {
    fn backends(self) -> wgpu::Backends {
        match self {
            BackendChoice::Vulkan => wgpu::Backends::VULKAN,
            BackendChoice::Metal => wgpu::Backends::METAL,
            BackendChoice::Dx12 => wgpu::Backends::DX12,
            BackendChoice::Gl => wgpu::Backends::GL,
        }
    }
}

/// What the user asked for when opening a GPU device.
#[derive(Clone, Debug, Default)]
pub struct GpuRequest {
    /// Restrict to one graphics API (else `WGPU_BACKEND`, else all).
    pub backend: Option<BackendChoice>,
    /// Adapter name substring (else `WGPU_ADAPTER_NAME`).
    pub adapter: Option<String>,
    /// Accept software (CPU-type) adapters such as lavapipe.
    pub allow_software: bool,
    /// Take the i-th (modulo their number) of the adapters as good as the
    /// best one (same API and type): the ranks of a multi-GPU machine
    /// each take their own.
    pub index: Option<usize>,
}

/// Description of one adapter, for `gradfree devices` and reports.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    /// Adapter name.
    pub name: String,
    /// Graphics API.
    pub backend: String,
    /// Device type (discrete, integrated, virtual, cpu, other).
    pub device_type: String,
    /// True for software rasterizers (device type Cpu), e.g. lavapipe.
    pub software: bool,
    /// Driver name.
    pub driver: String,
    /// Driver version string.
    pub driver_info: String,
    /// PCI vendor id.
    pub vendor: u32,
    /// f64 in shaders.
    pub shader_f64: bool,
    /// Timestamp queries.
    pub timestamp_query: bool,
    /// Subgroup operations.
    pub subgroup: bool,
    /// Largest storage binding in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer in bytes.
    pub max_buffer_size: u64,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroup shared memory in bytes.
    pub max_compute_workgroup_storage_size: u32,
    /// Storage buffers per shader stage.
    pub max_storage_buffers_per_shader_stage: u32,
}

fn summarize(adapter: &wgpu::Adapter) -> AdapterSummary {
    let info = adapter.get_info();
    let limits = adapter.limits();
    let features = adapter.features();
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend).to_lowercase(),
        device_type: match info.device_type {
            wgpu::DeviceType::DiscreteGpu => "discrete",
            wgpu::DeviceType::IntegratedGpu => "integrated",
            wgpu::DeviceType::VirtualGpu => "virtual",
            wgpu::DeviceType::Cpu => "cpu (software)",
            wgpu::DeviceType::Other => "other",
        }
        .to_string(),
        software: info.device_type == wgpu::DeviceType::Cpu,
        driver: info.driver.clone(),
        driver_info: info.driver_info.clone(),
        vendor: info.vendor,
        shader_f64: features.contains(wgpu::Features::SHADER_F64),
        timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        subgroup: features.contains(wgpu::Features::SUBGROUP),
        max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
        max_buffer_size: limits.max_buffer_size,
        max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
        max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
        max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
        max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
    }
}

fn instance(backend: Option<BackendChoice>) -> wgpu::Instance {
    // `_from_env` reads WGPU_BACKEND; an explicit --backend wins over it.
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    if let Some(b) = backend {
        desc.backends = b.backends();
    }
    wgpu::Instance::new(desc)
}

fn name_filter(req: &GpuRequest) -> Option<String> {
    req.adapter
        .clone()
        .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
        .filter(|s| !s.is_empty())
        .map(|s| s.to_lowercase())
}

fn rank(adapter: &wgpu::Adapter) -> u32 {
    let info = adapter.get_info();
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    // GL last: no f64, fewer storage buffers, slow JIT.
    let api = if info.backend == wgpu::Backend::Gl {
        1
    } else {
        0
    };
    ty * 2 + api
}

/// Every adapter visible with the given backend restriction.
pub fn list_adapters(backend: Option<BackendChoice>) -> Vec<AdapterSummary> {
    let inst = instance(backend);
    let mut adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
    adapters.sort_by_key(rank);
    adapters.iter().map(summarize).collect()
}

/// Returns true if a hardware (non-software) adapter matching the request exists.
pub fn hardware_adapter_present(req: &GpuRequest) -> bool {
    let inst = instance(req.backend);
    let filter = name_filter(req);
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .any(|a| {
            let info = a.get_info();
            info.device_type != wgpu::DeviceType::Cpu
                && filter
                    .as_ref()
                    .is_none_or(|f| info.name.to_lowercase().contains(f))
        })
}

/// Kernel name, entry, lanes, precision and its `override` values (bits).
type PipelineKey = (
    &'static str,
    &'static str,
    u32,
    Precision,
    Vec<(&'static str, u64)>,
);

/// One opened GPU device with its queue, limits and kernel cache.
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) limits: wgpu::Limits,
    summary: AdapterSummary,
    pub(crate) pipelines: Mutex<HashMap<PipelineKey, Arc<super::pipeline::CachedPipeline>>>,
    errors: Arc<Mutex<Vec<String>>>,
    /// Timestamp queries, when profiling.
    pub(crate) stamps: Option<super::profile::Stamps>,
}

/// Submits, dispatches and readbacks of every context of the process.
pub(crate) static SUBMITS: AtomicU64 = AtomicU64::new(0);
pub(crate) static DISPATCHES: AtomicU64 = AtomicU64::new(0);
pub(crate) static READBACKS: AtomicU64 = AtomicU64::new(0);
pub(crate) static BYTES_UP: AtomicU64 = AtomicU64::new(0);
pub(crate) static BYTES_DOWN: AtomicU64 = AtomicU64::new(0);

/// Work the process has sent to devices so far: what a run's summary
/// divides by its iterations.
pub fn work_counts() -> WorkCounts {
    WorkCounts {
        submits: SUBMITS.load(Ordering::Relaxed),
        dispatches: DISPATCHES.load(Ordering::Relaxed),
        readbacks: READBACKS.load(Ordering::Relaxed),
        bytes_to_device: BYTES_UP.load(Ordering::Relaxed),
        bytes_from_device: BYTES_DOWN.load(Ordering::Relaxed),
    }
}

/// Work sent to the device: queue submits, dispatches, readbacks and the
/// bytes that crossed each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkCounts {
    /// Queue submits (readbacks included).
    pub submits: u64,
    /// Compute dispatches recorded.
    pub dispatches: u64,
    /// Blocking readbacks (each one submit and a wait).
    pub readbacks: u64,
    /// Bytes written into device buffers (uploads, uniforms).
    pub bytes_to_device: u64,
    /// Bytes read back from the device.
    pub bytes_from_device: u64,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuContext({})", self.summary.name)
    }
}

impl GpuContext {
    /// Opens the best adapter that matches the request, with f64 enabled when asked for.
    pub fn open(req: &GpuRequest, precision: Precision) -> Result<Arc<Self>> {
        let inst = instance(req.backend);
        let filter = name_filter(req);
        let mut adapters: Vec<wgpu::Adapter> =
            pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
                .into_iter()
                .filter(|a| {
                    let info = a.get_info();
                    (req.allow_software || info.device_type != wgpu::DeviceType::Cpu)
                        && filter
                            .as_ref()
                            .is_none_or(|f| info.name.to_lowercase().contains(f))
                })
                .collect();
        adapters.sort_by_key(rank);
        if precision == Precision::F64 {
            // Prefer an adapter that can run f64 over a better-ranked one that cannot.
            adapters.sort_by_key(|a| !a.features().contains(wgpu::Features::SHADER_F64));
        }
        if let (Some(i), Some(best)) = (req.index, adapters.first().map(|a| a.get_info())) {
            adapters.retain(|a| {
                let info = a.get_info();
                info.backend == best.backend && info.device_type == best.device_type
            });
            let n = adapters.len();
            adapters.rotate_left(i % n);
        }
        let Some(adapter) = adapters.into_iter().next() else {
            let mut detail = String::new();
            if let Some(b) = req.backend {
                detail += &format!(" for backend {b:?}");
            } else if let Ok(b) = std::env::var("WGPU_BACKEND") {
                detail += &format!(" for WGPU_BACKEND={b}");
            }
            if let Some(f) = &filter {
                detail += &format!(" with a name containing '{f}'");
            }
            if !req.allow_software {
                detail += " (hardware adapters only)";
            }
            return Err(Error::NoAdapter { detail });
        };
        let summary = summarize(&adapter);
        let mut features = wgpu::Features::empty();
        if precision == Precision::F64 {
            if !summary.shader_f64 {
                return Err(Error::NoF64 {
                    adapter: summary.name,
                });
            }
            features |= wgpu::Features::SHADER_F64;
        }
        let profiling = super::profile::enabled();
        if profiling {
            if summary.timestamp_query {
                features |= wgpu::Features::TIMESTAMP_QUERY;
            } else {
                super::profile::unsupported(&summary.name);
            }
        }
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("gradfree"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::DeviceRequest {
            adapter: summary.name.clone(),
            reason: e.to_string(),
        })?;
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        // Collect instead of wgpu's default panic; callers check after each submit.
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("wgpu: {e}");
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        log::info!(
            "GPU adapter: {} ({}, {})",
            summary.name,
            summary.backend,
            summary.device_type
        );
        let stamps = (profiling && summary.timestamp_query)
            .then(|| super::profile::Stamps::new(&device, &queue));
        Ok(Arc::new(GpuContext {
            stamps,
            device,
            queue,
            limits,
            summary,
            pipelines: Mutex::new(HashMap::new()),
            errors,
        }))
    }

    /// Adapter description.
    pub fn summary(&self) -> &AdapterSummary {
        &self.summary
    }

    /// Largest storage binding in bytes. `GRADFREE_MAX_BINDING_BYTES` lowers it
    /// (tests use it to exercise the splitting paths on small problems).
    pub fn max_binding_bytes(&self) -> u64 {
        let hw = self.limits.max_storage_buffer_binding_size;
        std::env::var("GRADFREE_MAX_BINDING_BYTES")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(hw, |v| v.clamp(256, hw))
    }

    /// The adapter's own storage-binding limit (ignores the test override).
    pub fn hw_max_binding_bytes(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size
    }

    /// Largest number of workgroups in one dispatch dimension.
    pub fn max_workgroups_per_dim(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension
    }

    /// Required alignment of storage-binding offsets in bytes.
    pub fn offset_alignment(&self) -> u64 {
        self.limits.min_storage_buffer_offset_alignment as u64
    }

    /// Returns (and clears) any error wgpu reported since the last check.
    pub fn check(&self, during: &str) -> Result<()> {
        let mut errs = self.errors.lock().expect("error sink poisoned");
        if errs.is_empty() {
            Ok(())
        } else {
            let reason = errs.join("; ");
            errs.clear();
            Err(Error::Gpu {
                during: during.to_string(),
                reason,
            })
        }
    }

    /// Blocks until all submitted work has finished.
    pub fn wait(&self) -> Result<()> {
        self.wait_for(None)
    }

    /// Waits for the submit `index` (every submit so far with `None`).
    pub(crate) fn wait_for(&self, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: index,
                timeout: None,
            })
            .map_err(|e| Error::Gpu {
                during: "wait".into(),
                reason: e.to_string(),
            })?;
        self.check("wait")
    }
}
