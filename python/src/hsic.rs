//! Layer-wise HSIC networks (W_s or W*): fit, predictions, last-layer outputs.

use gradfree::Error;
use gradfree::methods::hsic::ism::IsmSettings;
use gradfree::methods::hsic::{self as hsic, SavedModel, Solver, Standardize, Work, WsSettings};
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::classify::labeled;
use crate::{fitted_run, open_backend, py_err, run_released, session};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(hsic_fit, m)?)?;
    m.add_function(wrap_pyfunction!(hsic_predict, m)?)?;
    m.add_function(wrap_pyfunction!(hsic_transform, m)?)?;
    m.add_function(wrap_pyfunction!(hsic_info, m)?)?;
    Ok(())
}

/// Fits a network with `solver` (`ws` or `ism`, settings as JSON) on rows
/// `x` with labels `y` (0..classes) whose original values are `values`;
/// returns the model file, the per-layer reports and the measurement.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn hsic_fit(
    py: Python<'_>,
    x: PyReadonlyArray1<'_, f64>,
    y: PyReadonlyArray1<'_, u32>,
    values: Vec<i64>,
    dim: usize,
    solver: &str,
    settings_json: &str,
    device: &str,
    precision: &str,
    verbose: bool,
) -> PyResult<(Py<PyBytes>, String, String)> {
    let bad = |e: serde_json::Error| py_err(Error::Input(format!("{solver} settings: {e}")));
    let solver = match solver {
        "ws" => Solver::Ws(serde_json::from_str::<WsSettings>(settings_json).map_err(bad)?),
        "ism" => Solver::Ism(serde_json::from_str::<IsmSettings>(settings_json).map_err(bad)?),
        _ => {
            return Err(py_err(Error::Input(format!(
                "unknown solver '{solver}' (ws or ism)"
            ))));
        }
    };
    if values.len() < 2 {
        return Err(py_err(Error::Input(
            "an HSIC network needs at least two classes".into(),
        )));
    }
    let train = labeled(x.as_slice()?, y.as_slice()?, dim, values.len())?;
    let (bytes, reports, measurement) = run_released(py, move || {
        hsic::check(&train, "the training data")?;
        let backend = open_backend(device, precision)?;
        let mut session = session(&backend, verbose)?;
        // `hsic fit` writes no metrics lines: the per-layer reports are the history.
        let own = hsic::run_fit(&backend, &mut session, &train, &values, &solver)?;
        let (model, _, measurement) = fitted_run(&session)?;
        Ok((model, own["layers"].to_string(), measurement))
    })?;
    Ok((PyBytes::new(py, &bytes).unbind(), reports, measurement))
}

/// How rows are standardized: the model's own setting unless `own_stats` says.
fn standardize(model: &SavedModel, own_stats: Option<bool>) -> Standardize {
    let own = own_stats.unwrap_or(match model {
        SavedModel::Ws(m) => m.settings.test_own_stats,
        SavedModel::Ism(m) => m.settings.test_own_stats,
    });
    Standardize::of(own)
}

fn load(bytes: &[u8]) -> PyResult<(SavedModel, Vec<i64>)> {
    SavedModel::from_bytes(bytes, "the model").map_err(py_err)
}

/// Predicted classes (indices into the label values) of the rows `x`.
#[pyfunction]
#[pyo3(signature = (model, x, device, own_stats=None))]
fn hsic_predict<'py>(
    py: Python<'py>,
    model: &[u8],
    x: PyReadonlyArray1<'_, f64>,
    device: &str,
    own_stats: Option<bool>,
) -> PyResult<Bound<'py, PyArray1<u32>>> {
    let (model, _) = load(model)?;
    let x = x.as_slice()?;
    let how = standardize(&model, own_stats);
    let out = run_released(py, || {
        let backend = open_backend(device, "f64")?;
        model.predict_with(&backend, x, how, &mut Work::default())
    })?;
    Ok(PyArray1::from_vec(py, out))
}

/// The last layer's outputs of the rows `x`: its width and the rows.
#[pyfunction]
#[pyo3(signature = (model, x, device, own_stats=None))]
fn hsic_transform<'py>(
    py: Python<'py>,
    model: &[u8],
    x: PyReadonlyArray1<'_, f64>,
    device: &str,
    own_stats: Option<bool>,
) -> PyResult<(usize, Bound<'py, PyArray1<f64>>)> {
    let (model, _) = load(model)?;
    let x = x.as_slice()?;
    let how = standardize(&model, own_stats);
    let (w, out) = run_released(py, || {
        let backend = open_backend(device, "f64")?;
        model.transform_with(&backend, x, how, &mut Work::default())
    })?;
    Ok((w, PyArray1::from_vec(py, out)))
}

/// A model file's solver, features, label values and settings, as JSON.
#[pyfunction]
fn hsic_info(model: &[u8]) -> PyResult<String> {
    let (model, values) = load(model)?;
    let (solver, settings) = match &model {
        SavedModel::Ws(m) => ("ws", serde_json::to_value(&m.settings)),
        SavedModel::Ism(m) => ("ism", serde_json::to_value(&m.settings)),
    };
    Ok(serde_json::json!({
        "solver": solver,
        "dim": model.dim(),
        "label_values": values,
        "settings": settings.expect("settings serialize"),
    })
    .to_string())
}
