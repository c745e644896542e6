//! The RRR classifier: fit, predictions and decision scores.

use gradfree::Error;
use gradfree::data::labeled::Labeled;
use gradfree::methods::rrr::classify::{self, Classifier, Saved, Settings};
use gradfree::methods::rrr::net::Net;
use gradfree::train::memory::{self, Budget};
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::{Fitted, fitted_run, open_backend, py_err, run_released, session};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(rrr_classify_fit, m)?)?;
    m.add_function(wrap_pyfunction!(rrr_classify_predict, m)?)?;
    m.add_function(wrap_pyfunction!(rrr_classify_scores, m)?)?;
    m.add_function(wrap_pyfunction!(rrr_classify_info, m)?)?;
    Ok(())
}

/// Trains a layered classifier (`dim`, `hidden`…, `classes`) on rows `x`
/// with labels `y` (0..classes) and the settings of `settings_json` (the
/// fields of the CLI's `settings`); returns the model file, the epoch
/// records and the measurement (JSON).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn rrr_classify_fit(
    py: Python<'_>,
    x: PyReadonlyArray1<'_, f64>,
    y: PyReadonlyArray1<'_, u32>,
    dim: usize,
    classes: usize,
    hidden: Vec<usize>,
    settings_json: &str,
    device: &str,
    precision: &str,
    verbose: bool,
) -> PyResult<(Py<PyBytes>, String, String)> {
    let (bytes, history, measurement) = fit(
        py,
        x.as_slice()?,
        y.as_slice()?,
        dim,
        classes,
        &hidden,
        settings_json,
        device,
        precision,
        verbose,
    )?;
    Ok((PyBytes::new(py, &bytes).unbind(), history, measurement))
}

#[allow(clippy::too_many_arguments)]
fn fit(
    py: Python<'_>,
    x: &[f64],
    y: &[u32],
    dim: usize,
    classes: usize,
    hidden: &[usize],
    settings_json: &str,
    device: &str,
    precision: &str,
    verbose: bool,
) -> PyResult<Fitted> {
    let settings: Settings = serde_json::from_str(settings_json)
        .map_err(|e| py_err(Error::Input(format!("classifier settings: {e}"))))?;
    let train = labeled(x, y, dim, classes)?;
    let mut widths = vec![dim];
    widths.extend_from_slice(hidden);
    widths.push(classes);
    run_released(py, move || {
        settings.check()?;
        let backend = open_backend(device, precision)?;
        let bytes = backend.precision().bytes() as u128;
        let kk = settings.batch.min(train.len()) as u128;
        let need =
            memory::layered_size(&widths).and_then(|(n, e)| memory::rrr_batch(n, e, kk, bytes));
        Budget::new(None).check(need, "the RRR classifier")?;
        let mut session = session(&backend, verbose)?;
        let run = classify::Run {
            net: Net::layered(&widths)?,
            settings,
            train,
            test: None,
            image_shape: None,
            time_limit: None,
            resume: None,
        };
        classify::run(&backend, &mut session, &run)?;
        fitted_run(&session)
    })
}

/// Labeled rows, checked.
pub(crate) fn labeled(x: &[f64], y: &[u32], dim: usize, classes: usize) -> PyResult<Labeled> {
    if dim == 0 || x.len() != y.len() * dim {
        return Err(py_err(Error::Input(format!(
            "{} values are not {} rows of {dim} features",
            x.len(),
            y.len()
        ))));
    }
    if let Some(&bad) = y.iter().find(|&&c| c as usize >= classes) {
        return Err(py_err(Error::Input(format!(
            "label {bad} is not below the {classes} classes"
        ))));
    }
    Ok(Labeled {
        dim,
        classes,
        x: x.to_vec(),
        y: y.to_vec(),
    })
}

/// A classifier model file, read and rebuilt.
fn load(bytes: &[u8]) -> PyResult<(Saved, Classifier)> {
    let saved = Saved::from_bytes(bytes, "the model").map_err(py_err)?;
    let clf = Classifier::new(saved.net.clone(), &saved.settings).map_err(py_err)?;
    Ok((saved, clf))
}

fn check_width(x: &[f64], clf: &Classifier) -> PyResult<usize> {
    let d = clf.net.data;
    if d == 0 || !x.len().is_multiple_of(d) {
        return Err(py_err(Error::Input(format!(
            "rows must have {d} features, as the model's data nodes"
        ))));
    }
    Ok(x.len() / d)
}

/// Predicted classes (0..classes) of the rows `x`.
#[pyfunction]
fn rrr_classify_predict<'py>(
    py: Python<'py>,
    model: &[u8],
    x: PyReadonlyArray1<'_, f64>,
) -> PyResult<Bound<'py, PyArray1<u32>>> {
    let (saved, clf) = load(model)?;
    let x = x.as_slice()?;
    let rows = check_width(x, &clf)?;
    let d = clf.net.data;
    let out: Vec<u32> = py.detach(|| {
        (0..rows)
            .map(|k| clf.classify(&saved.model, &x[k * d..(k + 1) * d]))
            .collect()
    });
    Ok(PyArray1::from_vec(py, out))
}

/// The class nodes' outputs of the rows `x`, item-major (rows × classes).
#[pyfunction]
fn rrr_classify_scores<'py>(
    py: Python<'py>,
    model: &[u8],
    x: PyReadonlyArray1<'_, f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (saved, clf) = load(model)?;
    let x = x.as_slice()?;
    let rows = check_width(x, &clf)?;
    let d = clf.net.data;
    let out: Vec<f64> = py.detach(|| {
        (0..rows)
            .flat_map(|k| clf.scores(&saved.model, &x[k * d..(k + 1) * d]))
            .collect()
    });
    Ok(PyArray1::from_vec(py, out))
}

/// A model file's net widths (data, hidden…, classes when layered), its
/// settings, and its epoch records, as JSON.
#[pyfunction]
fn rrr_classify_info(model: &[u8]) -> PyResult<String> {
    let (saved, _) = load(model)?;
    Ok(serde_json::json!({
        "data": saved.net.data,
        "hidden": saved.net.hidden,
        "widths": saved.net.layer_widths(),
        "classes": saved.net.classes,
        "settings": saved.settings,
        "history": saved.history,
    })
    .to_string())
}
