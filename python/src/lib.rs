//! `gradfree._core`: the library's methods for the Python package. Each
//! function takes flat float64 rows and their width (the Python side
//! checks shapes, dtypes and finiteness and reshapes the results), runs
//! the library with the GIL released, and returns models as the bytes of
//! the CLI's `model.safetensors`, histories as the metrics.jsonl records
//! and the run's measurement, both as JSON text.
#![warn(missing_docs)]

mod classify;
mod decoders;
mod hsic;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gradfree::engine::{Backend, DeviceChoice};
use gradfree::gpu::GpuRequest;
use gradfree::train::{Session, Voice};
use gradfree::{Error, Precision};
use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// A library error as a Python exception: bad input is a ValueError,
/// anything else a RuntimeError.
pub(crate) fn py_err(e: Error) -> PyErr {
    match e {
        Error::Input(_) | Error::Parse { .. } | Error::NoF64 { .. } | Error::Limit { .. } => {
            PyValueError::new_err(e.to_string())
        }
        Error::Interrupted => PyKeyboardInterrupt::new_err("training interrupted"),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

/// Opens the backend of `device` (auto, gpu, cpu) in `precision` (f32, f64).
pub(crate) fn open_backend(device: &str, precision: &str) -> Result<Backend, Error> {
    let choice = match device {
        "auto" => DeviceChoice::Auto,
        "gpu" => DeviceChoice::Gpu,
        "cpu" => DeviceChoice::Cpu,
        _ => {
            return Err(Error::Input(format!(
                "unknown device '{device}' (auto, gpu or cpu)"
            )));
        }
    };
    Backend::open(choice, parse_precision(precision)?, &GpuRequest::default())
}

/// f32 or f64.
pub(crate) fn parse_precision(precision: &str) -> Result<Precision, Error> {
    match precision {
        "f32" => Ok(Precision::F32),
        "f64" => Ok(Precision::F64),
        _ => Err(Error::Input(format!(
            "unknown precision '{precision}' (f32 or f64)"
        ))),
    }
}

/// A session that keeps the run's files in memory; with `verbose`, it
/// prints the run's lines and progress bar.
pub(crate) fn session(backend: &Backend, verbose: bool) -> Result<Session, Error> {
    let voice = if verbose {
        Voice::Verbose
    } else {
        Voice::Silent
    };
    Session::in_memory(backend, voice)
}

/// A training run's results: the model file, the per-epoch records and
/// the measurement (gwms, seconds, joules, …), both JSON.
pub(crate) type Fitted = (Vec<u8>, String, String);

/// What the CLI's run wrote into an in-memory session: its
/// `model.safetensors`, its `metrics.jsonl` records as one JSON list, and
/// the measurement.
pub(crate) fn fitted_run(session: &Session) -> Result<Fitted, Error> {
    let model = session
        .take_file("model.safetensors")
        .ok_or_else(|| Error::Numeric("the run ended without a model".into()))?;
    let lines = session.take_file("metrics.jsonl").unwrap_or_default();
    let records: Vec<serde_json::Value> = lines
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("metrics.jsonl is our own JSON"))
        .collect();
    Ok((
        model,
        serde_json::to_string(&records).expect("records serialize"),
        measurement_json(session),
    ))
}

/// The measurement of `session` as JSON text.
pub(crate) fn measurement_json(session: &Session) -> String {
    serde_json::to_string(&session.measure()).expect("measurements serialize")
}

/// Runs `f` on a thread of its own with the GIL released. The calling
/// thread wakes every 50 ms to let Python handle signals: on
/// KeyboardInterrupt the run is asked to stop (the library checks between
/// batches, layers and iterations), and the exception is raised once it
/// has.
pub(crate) fn run_released<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> Result<T, Error> + Send,
) -> PyResult<T> {
    let flag = Arc::new(AtomicBool::new(false));
    let done = AtomicBool::new(false);
    let caller = std::thread::current();
    std::thread::scope(|s| {
        let stop = flag.clone();
        let worker = s.spawn(|| {
            let out = gradfree::train::with_stop_flag(stop, f);
            done.store(true, Ordering::Release);
            caller.unpark();
            out
        });
        let mut interrupted = None;
        while !done.load(Ordering::Acquire) {
            py.detach(|| std::thread::park_timeout(Duration::from_millis(50)));
            if interrupted.is_none() {
                if let Err(e) = py.check_signals() {
                    flag.store(true, Ordering::Relaxed);
                    interrupted = Some(e);
                }
            }
        }
        let joined = py.detach(|| worker.join());
        match (joined, interrupted) {
            (_, Some(e)) => Err(e),
            (Ok(out), None) => out.map_err(py_err),
            (Err(panic), None) => Err(PyRuntimeError::new_err(format!(
                "gradfree failed: {}",
                panic_text(&panic)
            ))),
        }
    })
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// The adapters wgpu sees (name, device type, graphics API).
#[pyfunction]
fn devices() -> Vec<String> {
    gradfree::gpu::list_adapters(None)
        .into_iter()
        .map(|a| format!("{} ({}, {})", a.name, a.device_type, a.backend))
        .collect()
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    classify::register(m)?;
    hsic::register(m)?;
    decoders::register(m)?;
    Ok(())
}
