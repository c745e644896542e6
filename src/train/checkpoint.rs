//! What every checkpoint records besides the method's own state, so that a
//! resumed run is the same run: the work, time and energy of the parts
//! trained so far (the summary of a resumed run describes the whole run),
//! a fingerprint of the training data (a resume on other data is refused),
//! and the working precision.

use crate::error::{Error, Result};
use crate::real::Precision;

/// Work, wall time and energy of a run's parts so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    /// Giga-weight-multiplies.
    pub gwms: f64,
    /// Wall seconds.
    pub seconds: f64,
    /// Joules, when every part so far was measured.
    pub joules: Option<f64>,
    /// Parts (the first run and each resume).
    pub parts: usize,
}

/// A run's identity and totals, stored in its checkpoints and model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Provenance {
    /// Totals up to the checkpoint (none in files of older versions).
    pub totals: Option<Totals>,
    /// Fingerprint of the training data ([`fingerprint`]).
    pub fingerprint: Option<String>,
    /// Working precision of the run.
    pub precision: Option<Precision>,
}

impl Provenance {
    /// The metadata entries (`run_totals`, `data_fingerprint`, `precision`).
    pub fn to_json(&self, meta: &mut serde_json::Value) {
        if let Some(t) = &self.totals {
            meta["run_totals"] = serde_json::to_value(t).expect("totals serialize");
        }
        if let Some(f) = &self.fingerprint {
            meta["data_fingerprint"] = serde_json::json!(f);
        }
        if let Some(p) = self.precision {
            meta["precision"] = serde_json::json!(p);
        }
    }

    /// Reads what [`Provenance::to_json`] wrote (entries may be missing).
    pub fn from_json(meta: &serde_json::Value, what: &str) -> Result<Self> {
        let bad = |key: &str, e: serde_json::Error| Error::Input(format!("{what}: {key}: {e}"));
        let get = |key: &str| meta.get(key).filter(|v| !v.is_null()).cloned();
        Ok(Provenance {
            totals: get("run_totals")
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| bad("run_totals", e))?,
            fingerprint: get("data_fingerprint")
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| bad("data_fingerprint", e))?,
            precision: get("precision")
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| bad("precision", e))?,
        })
    }

    /// The totals of the run so far: the recorded ones, or for a file of an
    /// older version those its epoch records sum to (energy unknown).
    pub fn prior(&self, gwms: f64, seconds: f64) -> Totals {
        self.totals.unwrap_or(Totals {
            gwms,
            seconds,
            joules: None,
            parts: 1,
        })
    }

    /// Checks that a resumed run trains on the same data, in the same
    /// precision, as the checkpoint's (`what` names the checkpoint).
    pub fn check_resume(&self, data: &str, precision: Precision, what: &str) -> Result<()> {
        if let Some(f) = &self.fingerprint {
            if f != data {
                return Err(Error::Input(format!(
                    "{what} was trained on other data (fingerprint {f}; these data: {data}): a resumed run goes on with the same training data"
                )));
            }
        }
        if let Some(p) = self.precision {
            if p != precision {
                return Err(Error::Input(format!(
                    "{what} was trained in {p}, not {precision}: a resumed run keeps its precision"
                )));
            }
        }
        Ok(())
    }
}

/// A fingerprint of training data: FNV-1a (64 bits) over the values' bits,
/// the labels and the row width, as 16 hex digits.
pub fn fingerprint(x: &[f64], labels: &[u32], width: usize) -> String {
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    };
    eat(&(width as u64).to_le_bytes());
    eat(&(x.len() as u64).to_le_bytes());
    for v in x {
        eat(&v.to_bits().to_le_bytes());
    }
    for l in labels {
        eat(&l.to_le_bytes());
    }
    format!("{h:016x}")
}
