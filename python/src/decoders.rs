//! Decoders and factorizations: RRR NMF (online, of data), StarNet, the
//! RRR autoencoder and its generator.

use gradfree::Error;
use gradfree::data::matrix::{from_row_major, row_major};
use gradfree::methods::rrr::autoencode::{
    self as ae, AeModel, AeNet, AeSettings, Autoencoder, GeneratorSettings,
};
use gradfree::methods::rrr::nmf::{self, Nmf, OnlineSettings};
use gradfree::methods::starnet::{self, StarNet};
use gradfree::train::memory::{self, Budget};
use numpy::{PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::{Fitted, fitted_run, measurement_json, open_backend, py_err, run_released, session};

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(model_tensor, m)?)?;
    m.add_function(wrap_pyfunction!(rrr_nmf_fit, m)?)?;
    m.add_function(wrap_pyfunction!(rrr_nmf_transform, m)?)?;
    m.add_function(wrap_pyfunction!(rrr_nmf_info, m)?)?;
    m.add_function(wrap_pyfunction!(starnet_fit, m)?)?;
    m.add_function(wrap_pyfunction!(starnet_encode, m)?)?;
    m.add_function(wrap_pyfunction!(starnet_decode, m)?)?;
    m.add_function(wrap_pyfunction!(starnet_sample, m)?)?;
    m.add_function(wrap_pyfunction!(starnet_info, m)?)?;
    m.add_function(wrap_pyfunction!(rrr_autoencode_fit, m)?)?;
    m.add_function(wrap_pyfunction!(rrr_autoencode_encode, m)?)?;
    m.add_function(wrap_pyfunction!(rrr_autoencode_decode, m)?)?;
    m.add_function(wrap_pyfunction!(rrr_autoencode_sample, m)?)?;
    m.add_function(wrap_pyfunction!(rrr_autoencode_info, m)?)?;
    Ok(())
}

fn input(why: String) -> PyErr {
    py_err(Error::Input(why))
}

/// A settings JSON's error as a ValueError.
fn bad_settings(what: &str) -> impl Fn(serde_json::Error) -> PyErr + '_ {
    move |e| input(format!("{what} settings: {e}"))
}

/// The number of rows of `width` values in `x` (at least one).
fn rows(x: &[f64], width: usize, what: &str) -> PyResult<usize> {
    if width == 0 || x.is_empty() || !x.len().is_multiple_of(width) {
        return Err(input(format!(
            "{what}: {} values are not rows of {width} values",
            x.len()
        )));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(input(format!("{what} contain NaN or infinite values")));
    }
    Ok(x.len() / width)
}

/// Two arrays (codes and scores, or codes and rows).
type Pair<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>);

fn fitted(py: Python<'_>, (bytes, history, measurement): Fitted) -> (Py<PyBytes>, String, String) {
    (PyBytes::new(py, &bytes).unbind(), history, measurement)
}

/// A tensor of a model file: its shape and its values, row-major.
#[pyfunction]
fn model_tensor<'py>(
    py: Python<'py>,
    model: &[u8],
    name: &str,
) -> PyResult<(Vec<usize>, Bound<'py, PyArray1<f64>>)> {
    let (mut tensors, _) = gradfree::io::read_safetensors(model).map_err(py_err)?;
    let (shape, values) = tensors
        .remove(name)
        .ok_or_else(|| input(format!("the model file has no tensor '{name}'")))?;
    Ok((shape, PyArray1::from_vec(py, values)))
}

// ---- RRR NMF -------------------------------------------------------------

/// Online RRR NMF of the non-negative rows `x` (width `dim`) with `rank`
/// codes of weight norm `omega` and the settings of `settings_json` (batch,
/// epochs, iters_per_batch, beta, seed): what `rrr nmf --data` trains.
/// Returns the model file, the epoch records and the measurement.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn rrr_nmf_fit(
    py: Python<'_>,
    x: PyReadonlyArray1<'_, f64>,
    dim: usize,
    rank: usize,
    omega: f64,
    settings_json: &str,
    device: &str,
    precision: &str,
    verbose: bool,
) -> PyResult<(Py<PyBytes>, String, String)> {
    let s: OnlineSettings = serde_json::from_str(settings_json).map_err(bad_settings("NMF"))?;
    let x = x.as_slice()?;
    let n = rows(x, dim, "the data")?;
    if let Some(i) = x.iter().position(|&v| v < 0.0) {
        return Err(input(format!(
            "row {}, column {}: negative value {} (NMF needs non-negative data)",
            i / dim,
            i % dim,
            x[i]
        )));
    }
    if rank == 0 || rank > dim || rank > n {
        return Err(input(format!(
            "the rank {rank} must be between 1 and the data's dimensions ({n} items × {dim} columns)"
        )));
    }
    if !(s.beta.is_finite() && s.beta > 0.0) {
        return Err(input(format!("β must be positive, got {}", s.beta)));
    }
    let y = from_row_major(x, dim);
    let out = run_released(py, move || {
        let backend = open_backend(device, precision)?;
        let bytes = backend.precision().bytes() as u128;
        let need = (|| {
            let e = memory::mul(&[rank, dim])?;
            let batch = memory::rrr_batch((rank + dim) as u128, e, s.batch.min(n) as u128, bytes)?;
            batch.checked_add(memory::table(n, rank.checked_add(dim)?, 4)?)
        })();
        Budget::new(None).check(need, "rrr nmf")?;
        let mut session = session(&backend, verbose)?;
        let run = nmf::OnlineRun {
            y,
            what: "the data".into(),
            rank,
            omega,
            settings: s,
            image_shape: None,
            time_limit: None,
            resume: None,
        };
        nmf::run_online(&backend, &mut session, &run)?;
        fitted_run(&session)
    })?;
    Ok(fitted(py, out))
}

/// An online NMF model file: (rank, features, Ω, weights rank × D).
fn nmf_model(model: &[u8]) -> PyResult<(usize, usize, f64, Vec<f64>)> {
    let (tensors, meta) = gradfree::io::read_safetensors(model).map_err(py_err)?;
    if meta.get("method").and_then(|v| v.as_str()) != Some("rrr nmf online") {
        return Err(input(
            "not a model of online RRR NMF (`rrr nmf --data`)".into(),
        ));
    }
    let omega = meta.get("omega").and_then(|v| v.as_f64()).unwrap_or(2.0);
    match tensors.get("weights") {
        Some((shape, w)) if shape.len() == 2 && shape[0] * shape[1] == w.len() && !w.is_empty() => {
            Ok((shape[0], shape[1], omega, w.clone()))
        }
        _ => Err(input("the model's weights are missing or malformed".into())),
    }
}

/// Non-negative least-squares codes of the rows `x` given the model's
/// weights (what the model stores for its training rows), rows × rank.
#[pyfunction]
fn rrr_nmf_transform<'py>(
    py: Python<'py>,
    model: &[u8],
    x: PyReadonlyArray1<'_, f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (rank, dim, omega, w) = nmf_model(model)?;
    let x = x.as_slice()?;
    rows(x, dim, "the data")?;
    let codes = run_released(py, || {
        let problem = Nmf::new(rank, dim, omega)?;
        let w = from_row_major(&w, dim);
        let y = from_row_major(x, dim);
        Ok(row_major(&nmf::nnls_codes(&problem, &w, &y, 200)?))
    })?;
    Ok(PyArray1::from_vec(py, codes))
}

/// An online NMF model file's rank, features, items and metadata, as JSON.
#[pyfunction]
fn rrr_nmf_info(model: &[u8]) -> PyResult<String> {
    let (rank, dim, _, _) = nmf_model(model)?;
    let (tensors, meta) = gradfree::io::read_safetensors(model).map_err(py_err)?;
    let items = tensors.get("codes").map_or(0, |(s, _)| s[0]);
    Ok(serde_json::json!({
        "rank": rank, "dim": dim, "items": items, "beta": meta.get("beta"),
        "omega": meta.get("omega"), "seed": meta.get("seed"),
    })
    .to_string())
}

// ---- StarNet -------------------------------------------------------------

/// Trains a StarNet decoder on the rows `x` (width `dim`): widths `layers`
/// (from the latent up) then `dim`, or the conv-unpool layers of `conv`
/// (the CLI's `--conv`, for square one-channel images), with the settings
/// of `settings_json` (epochs, alpha, weight_sample, seed). Returns the
/// model file, the per-layer epoch records and the measurement.
#[pyfunction]
#[pyo3(signature = (x, dim, layers, conv, settings_json, device, precision, verbose))]
#[allow(clippy::too_many_arguments)]
fn starnet_fit(
    py: Python<'_>,
    x: PyReadonlyArray1<'_, f64>,
    dim: usize,
    layers: Vec<usize>,
    conv: Option<String>,
    settings_json: &str,
    device: &str,
    precision: &str,
    verbose: bool,
) -> PyResult<(Py<PyBytes>, String, String)> {
    let mut s: starnet::Settings =
        serde_json::from_str(settings_json).map_err(bad_settings("StarNet"))?;
    let x = x.as_slice()?;
    let n = rows(x, dim, "the data")?;
    let widths = match conv {
        None => {
            let mut widths = layers;
            widths.push(dim);
            widths
        }
        Some(spec) => {
            let side = dim.isqrt();
            if side * side != dim {
                return Err(input(format!(
                    "conv-unpool layers need square one-channel images; {dim} features are not a square"
                )));
            }
            s.conv = starnet::conv::parse_spec(&spec, 1, side).map_err(py_err)?;
            let mut widths: Vec<usize> = s.conv.iter().map(|c| c.d_in()).collect();
            widths.push(s.conv.last().map_or(0, |c| c.d_out()));
            widths
        }
    };
    starnet::check_widths(&widths).map_err(py_err)?;
    let need = (|| {
        let widest = *widths.iter().max()?;
        let weights = widths.windows(2).try_fold(0u128, |t, p| {
            t.checked_add(memory::mul(&[p[0] + 1, p[1] + p[0] + 1, 4])?)
        })?;
        memory::table(n, widest, 8)?.checked_add(weights.checked_mul(8)?)
    })();
    Budget::new(None)
        .check(need, "starnet train")
        .map_err(py_err)?;
    let out = run_released(py, move || {
        let backend = open_backend(device, precision)?;
        let mut session = session(&backend, verbose)?;
        let (net, history) = starnet::train(&backend, &mut session, x, &widths, &s)?;
        Ok((
            net.to_bytes()?,
            serde_json::to_string(&history).expect("records serialize"),
            measurement_json(&session),
        ))
    })?;
    Ok(fitted(py, out))
}

fn starnet_model(model: &[u8]) -> PyResult<StarNet> {
    StarNet::from_bytes(model, "the model").map_err(py_err)
}

/// Codes of the rows `x` (layer-wise pseudo-inverse from the top) and
/// each row's residual norm per layer (rows × layers, layer 1 first: the
/// CLI's `starnet score`).
#[pyfunction]
fn starnet_encode<'py>(
    py: Python<'py>,
    model: &[u8],
    x: PyReadonlyArray1<'_, f64>,
    device: &str,
    precision: &str,
) -> PyResult<Pair<'py>> {
    let net = starnet_model(model)?;
    let x = x.as_slice()?;
    rows(x, net.data_width(), "the data")?;
    let (codes, scores) = run_released(py, || {
        let backend = open_backend(device, precision)?;
        net.encode(&backend, x)
    })?;
    Ok((
        PyArray1::from_vec(py, codes),
        PyArray1::from_vec(py, scores),
    ))
}

/// The decoded rows of `codes` (rows of the latent width).
#[pyfunction]
fn starnet_decode<'py>(
    py: Python<'py>,
    model: &[u8],
    codes: PyReadonlyArray1<'_, f64>,
    device: &str,
    precision: &str,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let net = starnet_model(model)?;
    let codes = codes.as_slice()?;
    rows(codes, net.widths[0], "the codes")?;
    let out = run_released(py, || {
        let backend = open_backend(device, precision)?;
        net.decode(&backend, codes)
    })?;
    Ok(PyArray1::from_vec(py, out))
}

/// `count` codes drawn from the Gaussian of the training codes (seeded as
/// `starnet sample --seed`), and their decoded rows.
#[pyfunction]
fn starnet_sample<'py>(
    py: Python<'py>,
    model: &[u8],
    count: usize,
    seed: u64,
    device: &str,
    precision: &str,
) -> PyResult<Pair<'py>> {
    let net = starnet_model(model)?;
    let codes = net.sample_codes(count, seed);
    let out = run_released(py, || {
        let backend = open_backend(device, precision)?;
        net.decode(&backend, &codes)
    })?;
    Ok((PyArray1::from_vec(py, codes), PyArray1::from_vec(py, out)))
}

/// A StarNet model file's widths, α and conv-unpool shapes, as JSON.
#[pyfunction]
fn starnet_info(model: &[u8]) -> PyResult<String> {
    let net = starnet_model(model)?;
    let conv: Vec<_> = net
        .layers
        .iter()
        .map(|l| l.conv.as_ref().map(|c| c.0))
        .collect();
    Ok(serde_json::json!({"widths": net.widths, "alpha": net.alpha, "conv": conv}).to_string())
}

// ---- RRR autoencoder -----------------------------------------------------

/// Trains the RRR autoencoder `dim` → `encoder`… → `code` → `decoder`… →
/// `dim` on the rows `x` (values in [0, 1]) with the settings of
/// `settings_json` (the model file's `settings`), as `rrr autoencode
/// --data` does; then, given `generator_json` (hidden, fpa, omega, margin,
/// batch, epochs, iters, fakes), the generator's classifier, rated on the
/// held-out rows `held` when there are any. Returns the model file, the
/// epoch records (the autoencoder's, then the generator's) and the
/// measurement.
#[pyfunction]
#[pyo3(signature = (x, held, dim, encoder, code, decoder, settings_json, generator_json, device, precision, verbose))]
#[allow(clippy::too_many_arguments)]
fn rrr_autoencode_fit(
    py: Python<'_>,
    x: PyReadonlyArray1<'_, f64>,
    held: PyReadonlyArray1<'_, f64>,
    dim: usize,
    encoder: Vec<usize>,
    code: usize,
    decoder: Vec<usize>,
    settings_json: &str,
    generator_json: Option<&str>,
    device: &str,
    precision: &str,
    verbose: bool,
) -> PyResult<(Py<PyBytes>, String, String)> {
    let s: AeSettings = serde_json::from_str(settings_json).map_err(bad_settings("autoencoder"))?;
    s.check().map_err(py_err)?;
    let generator: Option<GeneratorSettings> = generator_json
        .map(|g| serde_json::from_str(g).map_err(bad_settings("generator")))
        .transpose()?;
    let (x, held) = (x.as_slice()?, held.as_slice()?);
    let n = rows(x, dim, "the data")?;
    if !held.is_empty() {
        rows(held, dim, "the held-out rows")?;
    }
    let outside =
        |rows: &[f64], what: &str| match rows.iter().position(|v| !(0.0..=1.0).contains(v)) {
            Some(i) => Err(input(format!(
                "{what}: value {} of row {} is outside [0, 1] (the activations' range)",
                rows[i],
                i / dim
            ))),
            None => Ok(()),
        };
    outside(x, "the data")?;
    outside(held, "the held-out rows")?;
    let net = AeNet::layered(dim, &encoder, code, &decoder).map_err(py_err)?;
    let out = run_released(py, move || {
        let backend = open_backend(device, precision)?;
        let mut widths = vec![dim];
        widths.extend_from_slice(&encoder);
        widths.push(code);
        widths.extend_from_slice(&decoder);
        let size = memory::layered_size(&widths).and_then(|(nodes, edges)| {
            let back = memory::mul(&[*widths.last()?, dim])?;
            Some((nodes, edges.checked_add(back)?))
        });
        let bytes = backend.precision().bytes() as u128;
        let items = (s.batch.min(n) + s.codes) as u128;
        let need = size.and_then(|(nodes, edges)| memory::rrr_batch(nodes, edges, items, bytes));
        Budget::new(None).check(need, "rrr autoencode")?;
        let mut session = session(&backend, verbose)?;
        let run = ae::AeRun {
            net,
            seed: s.seed,
            settings: s,
            data: x.to_vec(),
            held: held.to_vec(),
            image_shape: None,
            binary: None,
            runs: 1,
            generator,
            time_limit: None,
            resume: None,
        };
        ae::run(&backend, &mut session, &run)?;
        fitted_run(&session)
    })?;
    Ok(fitted(py, out))
}

fn ae_model(model: &[u8]) -> PyResult<(AeModel, Autoencoder)> {
    let bundle = AeModel::from_bytes(model, "the model").map_err(py_err)?;
    let auto = Autoencoder::new(bundle.net.clone(), &bundle.settings).map_err(py_err)?;
    Ok((bundle, auto))
}

/// The codes E(x) of the rows `x` (rows × code nodes).
#[pyfunction]
fn rrr_autoencode_encode<'py>(
    py: Python<'py>,
    model: &[u8],
    x: PyReadonlyArray1<'_, f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (bundle, auto) = ae_model(model)?;
    let x = x.as_slice()?;
    let d = auto.net.data;
    rows(x, d, "the data")?;
    let out: Vec<f64> = py.detach(|| {
        x.chunks(d)
            .flat_map(|r| auto.encode(&bundle.model, r))
            .collect()
    });
    Ok(PyArray1::from_vec(py, out))
}

/// The data D(c) of the codes `codes` (rows × data nodes).
#[pyfunction]
fn rrr_autoencode_decode<'py>(
    py: Python<'py>,
    model: &[u8],
    codes: PyReadonlyArray1<'_, f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let (bundle, auto) = ae_model(model)?;
    let codes = codes.as_slice()?;
    let c = auto.net.code;
    rows(codes, c, "the codes")?;
    let out: Vec<f64> = py.detach(|| {
        codes
            .chunks(c)
            .flat_map(|r| auto.decode(&bundle.model, r))
            .collect()
    });
    Ok(PyArray1::from_vec(py, out))
}

/// `count` decoded samples of Z, drawn as `rrr generate --seed` draws them:
/// with a generator, the first `count` samples it accepts (drawing as many
/// as that takes, at most `max_draws`); without one, the first `count`
/// samples. Returns the rows and the number of samples drawn.
#[pyfunction]
fn rrr_autoencode_sample<'py>(
    py: Python<'py>,
    model: &[u8],
    count: usize,
    seed: u64,
    max_draws: usize,
) -> PyResult<(Bound<'py, PyArray1<f64>>, usize)> {
    let (bundle, _) = ae_model(model)?;
    let d = bundle.net.data;
    let (mut out, draws) = run_released(py, || {
        let mut draws = count.max(1);
        loop {
            let rows = ae::sample_decoded(&bundle, draws, seed)?;
            let got = rows.len() / d;
            if got >= count {
                return Ok((rows, draws));
            }
            if draws >= max_draws {
                return Err(Error::Numeric(format!(
                    "the generator accepted {got} of {draws} samples of Z, fewer than the {count} asked for"
                )));
            }
            // Enough draws at the acceptance rate so far, and then some.
            let want = (count as f64 * 1.25 * draws as f64 / got.max(1) as f64).ceil() as usize;
            draws = want.max(2 * draws).min(max_draws);
        }
    })?;
    out.truncate(count * d);
    Ok((PyArray1::from_vec(py, out), draws))
}

/// Encoder and decoder widths of a layered autoencoder net (None for any
/// other graph).
fn ae_widths(net: &AeNet) -> Option<(Vec<usize>, Vec<usize>)> {
    let fc = net.first_code();
    let mut layer = vec![0usize; net.nodes()];
    // Edges are sorted by destination and every source of an encoder,
    // code or decoder node has a lower index.
    for &(s, d) in &net.edges {
        let (s, d) = (s as usize, d as usize);
        if d >= net.data {
            layer[d] = layer[d].max(layer[s] + 1);
        }
    }
    let count = |nodes: std::ops::Range<usize>, from: usize| -> Vec<usize> {
        let depth = nodes.clone().map(|j| layer[j]).max().unwrap_or(from);
        (from + 1..=depth)
            .map(|l| nodes.clone().filter(|&j| layer[j] == l).count())
            .collect()
    };
    let encoder = count(net.data..fc, 0);
    let decoder = count(fc + net.code..net.nodes(), encoder.len() + 1);
    AeNet::layered(net.data, &encoder, net.code, &decoder)
        .ok()
        .filter(|n| n == net)
        .map(|_| (encoder, decoder))
}

/// An autoencoder model file's net (data, encoder widths, code, decoder
/// widths; the widths null when the net is not layered), settings, epoch
/// records and generator (hidden widths and settings, or null), as JSON.
#[pyfunction]
fn rrr_autoencode_info(model: &[u8]) -> PyResult<String> {
    let (bundle, _) = ae_model(model)?;
    let widths = ae_widths(&bundle.net);
    let generator = bundle.generator.as_ref().map(|g| {
        serde_json::json!({
            "hidden": g.net.layer_widths().map(|w| w[1..w.len() - 1].to_vec()),
            "settings": g.settings,
        })
    });
    Ok(serde_json::json!({
        "data": bundle.net.data,
        "code": bundle.net.code,
        "encoder": widths.as_ref().map(|w| &w.0),
        "decoder": widths.as_ref().map(|w| &w.1),
        "settings": bundle.settings,
        "history": bundle.history,
        "generator": generator,
        "precision": bundle.provenance.precision,
    })
    .to_string())
}
