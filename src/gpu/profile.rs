//! GPU time per kernel from timestamp queries: with profiling on (before a
//! device is opened) and an adapter that has `TIMESTAMP_QUERY`, every
//! dispatch runs in a compute pass of its own whose start and end the
//! device stamps; each submit resolves and reads the stamps back and adds
//! them to the kernel's total. Profiling serializes the passes and waits
//! after each submit: its times are per-kernel shares, not a run's speed.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<BTreeMap<String, (u64, f64)>> = Mutex::new(BTreeMap::new());
static UNSUPPORTED: Mutex<Option<String>> = Mutex::new(None);

/// Dispatches stamped per readback (two timestamps each).
pub(crate) const CAPACITY: u32 = 1024;

/// Turns profiling on for the devices opened from now on.
pub fn enable_profiling() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether profiling is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Notes that an opened adapter cannot stamp time.
pub(crate) fn unsupported(adapter: &str) {
    if let Ok(mut u) = UNSUPPORTED.lock() {
        *u = Some(format!("{adapter} has no timestamp queries"));
    }
}

/// GPU time of one kernel entry point over the run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct KernelTime {
    /// `shader::entry`.
    pub kernel: String,
    /// Dispatches timed.
    pub dispatches: u64,
    /// Device seconds between the pass's start and end stamps, summed.
    pub seconds: f64,
}

/// The per-kernel times so far, longest first; `Err` says why there are
/// none (profiling off, or no timestamp queries on the adapter).
pub fn kernel_times() -> std::result::Result<Vec<KernelTime>, String> {
    if !enabled() {
        return Err("profiling is off".into());
    }
    if let Some(why) = UNSUPPORTED.lock().ok().and_then(|u| u.clone()) {
        return Err(why);
    }
    let totals = TOTALS.lock().map_err(|e| e.to_string())?;
    let mut v: Vec<KernelTime> = totals
        .iter()
        .map(|(k, &(n, s))| KernelTime {
            kernel: k.clone(),
            dispatches: n,
            seconds: s,
        })
        .collect();
    v.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    Ok(v)
}

/// The query set and buffers of one device.
pub(crate) struct Stamps {
    pub(crate) set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    period_ns: f64,
}

impl Stamps {
    pub(crate) fn new(device: &wgpu::Device, queue: &wgpu::Queue) -> Self {
        let bytes = 2 * CAPACITY as u64 * 8;
        Stamps {
            set: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * CAPACITY,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            staging: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile staging"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            period_ns: queue.get_timestamp_period() as f64,
        }
    }

    /// Records the resolve of the first `n` dispatches' stamps into `enc`.
    pub(crate) fn resolve(&self, enc: &mut wgpu::CommandEncoder, n: u32) {
        enc.resolve_query_set(&self.set, 0..2 * n, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.staging, 0, 2 * n as u64 * 8);
    }

    /// After the submit that resolved them: adds the `names`' times.
    pub(crate) fn collect(&self, ctx: &super::GpuContext, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let bytes = 2 * names.len() as u64 * 8;
        let (tx, rx) = std::sync::mpsc::channel();
        self.staging
            .map_async(wgpu::MapMode::Read, 0..bytes, move |r| {
                let _ = tx.send(r);
            });
        ctx.wait()?;
        rx.recv()
            .map_err(|e| profile_error(e.to_string()))?
            .map_err(|e| profile_error(e.to_string()))?;
        let ticks: Vec<u64> = {
            let view = self
                .staging
                .get_mapped_range(0..bytes)
                .map_err(|e| profile_error(e.to_string()))?;
            bytemuck::cast_slice(&view).to_vec()
        };
        self.staging.unmap();
        let mut totals = TOTALS.lock().map_err(|e| profile_error(e.to_string()))?;
        for (name, t) in names.iter().zip(ticks.chunks(2)) {
            let seconds = t[1].saturating_sub(t[0]) as f64 * self.period_ns * 1e-9;
            let e = totals.entry(name.clone()).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += seconds;
        }
        Ok(())
    }
}

fn profile_error(reason: String) -> Error {
    Error::Gpu {
        during: "profile readback".into(),
        reason,
    }
}
