//! Work and energy meter used by every run: wall time, GWMs, GWMs/s and,
//! where a power sensor can be read, joules and GWMs per joule.
//!
//! Sensors: NVIDIA NVML (total energy counter, through `nvml-wrapper`, which
//! loads the driver library at run time — no driver, no reading) and Linux
//! RAPL powercap (`/sys/class/powercap/intel-rapl:N/energy_uj`, package
//! domains only, wraparound at `max_energy_range_uj` handled). Without a
//! sensor the report says `energy: unavailable (<reason>)`.

use std::path::{Path, PathBuf};
use std::time::Instant;

/// One RAPL package domain.
#[derive(Clone, Debug)]
struct RaplDomain {
    energy: PathBuf,
    range_uj: u64,
    start_uj: u64,
}

/// Reads RAPL package energy counters under a powercap root.
#[derive(Clone, Debug)]
pub struct Rapl {
    domains: Vec<RaplDomain>,
}

fn read_u64(p: &Path) -> Result<u64, String> {
    std::fs::read_to_string(p)
        .map_err(|e| format!("{}: {e}", p.display()))?
        .trim()
        .parse()
        .map_err(|e| format!("{}: {e}", p.display()))
}

impl Rapl {
    /// Opens the package domains (`intel-rapl:N`, not sub-zones `intel-rapl:N:M`) under `root`.
    pub fn open(root: &Path) -> Result<Self, String> {
        let entries = std::fs::read_dir(root)
            .map_err(|e| format!("no RAPL powercap ({}: {e})", root.display()))?;
        let mut domains = Vec::new();
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for dir in names {
            let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let is_package = name
                .strip_prefix("intel-rapl:")
                .is_some_and(|rest| !rest.contains(':'));
            if !is_package {
                continue;
            }
            let energy = dir.join("energy_uj");
            let start_uj = read_u64(&energy)?;
            let range_uj = read_u64(&dir.join("max_energy_range_uj")).unwrap_or(u64::MAX);
            domains.push(RaplDomain {
                energy,
                range_uj,
                start_uj,
            });
        }
        if domains.is_empty() {
            return Err(format!("no RAPL package domain under {}", root.display()));
        }
        Ok(Rapl { domains })
    }

    /// Joules used by all packages since `open` (one wraparound per domain at most).
    pub fn joules(&self) -> Result<f64, String> {
        let mut uj = 0u128;
        for d in &self.domains {
            let now = read_u64(&d.energy)?;
            let delta = if now >= d.start_uj {
                now - d.start_uj
            } else {
                d.range_uj.saturating_sub(d.start_uj) + now
            };
            uj += delta as u128;
        }
        Ok(uj as f64 * 1e-6)
    }
}

/// NVML total-energy counter of every NVIDIA GPU.
struct Nvml {
    nvml: nvml_wrapper::Nvml,
    start_mj: Vec<u64>,
}

impl Nvml {
    fn open() -> Result<Self, String> {
        let nvml = nvml_wrapper::Nvml::init().map_err(|e| format!("NVML not loadable: {e}"))?;
        let count = nvml.device_count().map_err(|e| format!("NVML: {e}"))?;
        let mut start_mj = Vec::new();
        for i in 0..count {
            let dev = nvml
                .device_by_index(i)
                .map_err(|e| format!("NVML device {i}: {e}"))?;
            start_mj.push(
                dev.total_energy_consumption()
                    .map_err(|e| format!("NVML energy counter of device {i}: {e}"))?,
            );
        }
        if start_mj.is_empty() {
            return Err("NVML found no GPU".into());
        }
        Ok(Nvml { nvml, start_mj })
    }

    fn joules(&self) -> Result<f64, String> {
        let mut mj = 0u64;
        for (i, &s) in self.start_mj.iter().enumerate() {
            let dev = self
                .nvml
                .device_by_index(i as u32)
                .map_err(|e| format!("NVML device {i}: {e}"))?;
            let now = dev
                .total_energy_consumption()
                .map_err(|e| format!("NVML: {e}"))?;
            mj += now.saturating_sub(s);
        }
        Ok(mj as f64 * 1e-3)
    }
}

enum Sensor {
    Rapl(Rapl),
    Nvml(Box<Nvml>),
    None(String),
}

/// Which sensor to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SensorKind {
    /// NVML for GPU runs, RAPL for CPU runs.
    Cpu,
    /// NVML first (GPU energy), then RAPL.
    Gpu,
}

/// Default powercap root (overridable with GRADFREE_POWERCAP_ROOT, used by tests).
pub fn powercap_root() -> PathBuf {
    std::env::var_os("GRADFREE_POWERCAP_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/sys/class/powercap"))
}

/// Measures wall time, work and energy of a run.
pub struct Meter {
    start: Instant,
    sensor: Sensor,
    gwms: f64,
}

/// A finished measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Measurement {
    /// Giga-weight-multiplies.
    pub gwms: f64,
    /// Wall seconds.
    pub seconds: f64,
    /// GWMs per second.
    pub gwms_per_s: f64,
    /// Joules, when a sensor was read.
    pub joules: Option<f64>,
    /// GWMs per joule, when a sensor was read.
    pub gwms_per_joule: Option<f64>,
    /// Which sensor, or why energy is unavailable.
    pub energy_note: String,
}

impl Meter {
    /// Starts timing and opens the sensor for this kind of run.
    pub fn start(kind: SensorKind) -> Self {
        let rapl = || Rapl::open(&powercap_root());
        let sensor = match kind {
            SensorKind::Gpu => match Nvml::open() {
                Ok(n) => Sensor::Nvml(Box::new(n)),
                Err(e1) => match rapl() {
                    Ok(r) => {
                        log::info!("{e1}; measuring CPU package energy (RAPL) only");
                        Sensor::Rapl(r)
                    }
                    Err(e2) => Sensor::None(format!("{e1}; {e2}")),
                },
            },
            SensorKind::Cpu => match rapl() {
                Ok(r) => Sensor::Rapl(r),
                Err(e) => Sensor::None(e),
            },
        };
        Meter {
            start: Instant::now(),
            sensor,
            gwms: 0.0,
        }
    }

    /// Starts timing with the sensor for a backend's device (NVML for a
    /// GPU, else RAPL).
    pub fn for_backend(backend: &crate::engine::Backend) -> Self {
        Self::start(match backend.kind() {
            crate::engine::DeviceKind::Gpu => SensorKind::Gpu,
            crate::engine::DeviceKind::Cpu => SensorKind::Cpu,
        })
    }

    /// Adds work done.
    pub fn add_gwms(&mut self, g: f64) {
        self.gwms += g;
    }

    /// Work so far.
    pub fn gwms(&self) -> f64 {
        self.gwms
    }

    /// Current figures.
    pub fn measure(&self) -> Measurement {
        let seconds = self.start.elapsed().as_secs_f64();
        let (joules, note) = match &self.sensor {
            Sensor::Rapl(r) => match r.joules() {
                Ok(j) => (Some(j), "RAPL powercap (CPU packages)".to_string()),
                Err(e) => (None, format!("unavailable ({e})")),
            },
            Sensor::Nvml(n) => match n.joules() {
                Ok(j) => (Some(j), "NVML total energy (GPUs)".to_string()),
                Err(e) => (None, format!("unavailable ({e})")),
            },
            Sensor::None(why) => (None, format!("unavailable ({why})")),
        };
        Measurement {
            gwms: self.gwms,
            seconds,
            gwms_per_s: if seconds > 0.0 {
                self.gwms / seconds
            } else {
                0.0
            },
            joules,
            gwms_per_joule: joules.filter(|&j| j > 0.0).map(|j| self.gwms / j),
            energy_note: note,
        }
    }
}

impl Measurement {
    /// One line for the terminal.
    pub fn line(&self) -> String {
        let energy = match (self.joules, self.gwms_per_joule) {
            (Some(j), Some(gpj)) => format!("{j:.3} J, {gpj:.4} GWMs/J ({})", self.energy_note),
            (Some(j), None) => format!("{j:.3} J ({})", self.energy_note),
            _ => format!("energy: {}", self.energy_note),
        };
        format!(
            "{:.6} GWMs in {:.3} s = {:.4} GWMs/s; {energy}",
            self.gwms, self.seconds, self.gwms_per_s
        )
    }
}
