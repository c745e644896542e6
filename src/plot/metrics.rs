//! Curves out of a run's `metrics.jsonl`, and axis labels for its fields.

use std::path::Path;

use crate::error::{Error, Result};

/// (cumulative `x`, `y`) per line of a metrics.jsonl that has both fields
/// (`x` = `epoch` is taken as it is, not summed).
/// A field present but not a number (null: not measured, or NaN) gives a
/// NaN coordinate, so a chart can say how many it left out; a null `x`
/// adds nothing to the running sum. Lines without both fields (other
/// stages) are skipped; a file with none is bad input.
pub fn metrics_curve(path: &Path, x: &str, y: &str) -> Result<Vec<(f64, f64)>> {
    let text = crate::io::read_text(path)?;
    let mut cum = 0.0;
    let mut pts = vec![];
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        if let (Some(dx), Some(vy)) = (v.get(x), v.get(y)) {
            let dx = dx.as_f64().unwrap_or(f64::NAN);
            let vy = vy.as_f64().unwrap_or(f64::NAN);
            if x == "epoch" {
                pts.push((dx, vy));
            } else if dx.is_finite() {
                cum += dx;
                pts.push((cum, vy));
            } else {
                pts.push((f64::NAN, vy));
            }
        }
    }
    if pts.is_empty() {
        return Err(Error::Input(format!(
            "{}: no lines with both '{x}' and '{y}'",
            path.display()
        )));
    }
    Ok(pts)
}

/// An axis label, with units, for a metrics field (`cumulative` for an x
/// axis of per-epoch amounts summed).
pub fn field_label(field: &str, cumulative: bool) -> String {
    let cumulative = cumulative && field != "epoch";
    let base = match field {
        "gwms" => "GWMs (10⁹ weight multiplies)",
        "joules" => "energy (J)",
        "seconds" => "time (s)",
        "epoch" => "epoch",
        "test_err" => "test error (fraction misclassified)",
        "train_err" => "training error (fraction misclassified)",
        "batch_err" => "batch error (fraction misclassified)",
        "loss" => "training loss (cross-entropy)",
        "rrr_err_start" => "RRR error at the batch's start",
        "rrr_err_end" => "RRR error at the batch's end",
        "rrr_err" => "RRR error",
        "recon_err" => "reconstruction error",
        "iterations" => "RRR iterations",
        "exempted" => "exempted items",
        "relabeled" => "relabeled items",
        other => other,
    };
    if cumulative {
        format!("cumulative {base}")
    } else {
        base.to_string()
    }
}
