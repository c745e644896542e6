//! The files gradfree writes and reads back itself: atomic writes (to a
//! temporary name in the same directory, then renamed, so a killed run
//! never leaves a torn file), safetensors models and checkpoints, CSV
//! rows. Dataset loaders are in [`crate::data`], figures in [`crate::plot`].

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// The bytes of an input file (a model, a checkpoint, a net file); a
/// missing or unreadable file is bad input.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))
}

/// An input file as text.
pub fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_file(path)?)
        .map_err(|_| Error::Input(format!("{} is not UTF-8 text", path.display())))
}

/// What names a temporary of [`write_atomic`]: `.NAME.tmpPID`.
const TEMP_MARK: &str = ".tmp";

/// True for a temporary name of [`write_atomic`] written by a process other
/// than this one.
fn foreign_temp(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    match rest.rsplit_once(TEMP_MARK) {
        Some((file, pid)) => {
            !file.is_empty()
                && !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && pid != std::process::id().to_string()
        }
        None => false,
    }
}

/// Removes the temporaries that killed runs left in `dir` (a run killed
/// between writing and renaming cannot clean up). Only for a directory
/// whose lock this process holds, so that no other run is writing them.
pub fn remove_stale_temporaries(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_str().is_some_and(foreign_temp) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let tmp = dir.join(format!(".{name}{TEMP_MARK}{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if written.is_err() {
        // Leave no temporary file behind a failed write.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A named f64 tensor (row-major) for [`safetensors_bytes`].
#[derive(Clone, Debug)]
pub struct NamedTensor {
    /// Tensor name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f64>,
}

/// Serializes tensors (stored as F64) with the run's hyperparameters as
/// JSON under the metadata key `gradfree`.
pub fn safetensors_bytes(tensors: &[NamedTensor], metadata: &serde_json::Value) -> Result<Vec<u8>> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            TensorView::new(Dtype::F64, t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| Error::Input(format!("tensor {}: {e}", t.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut meta = std::collections::HashMap::new();
    meta.insert("gradfree".to_string(), metadata.to_string());
    safetensors::tensor::serialize(views, Some(meta))
        .map_err(|e| Error::Input(format!("safetensors: {e}")))
}

/// Tensors by name: (shape, row-major values).
pub type TensorMap = std::collections::HashMap<String, (Vec<usize>, Vec<f64>)>;

/// Reads F64 tensors and the `gradfree` metadata written by [`safetensors_bytes`].
pub fn read_safetensors(bytes: &[u8]) -> Result<(TensorMap, serde_json::Value)> {
    use safetensors::SafeTensors;
    let bad = |why: String| Error::Input(format!("not a readable safetensors file: {why}"));
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let meta = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("gradfree"))
        .map(|s| serde_json::from_str(s).map_err(|e| bad(e.to_string())))
        .transpose()?
        .unwrap_or(serde_json::Value::Null);
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = std::collections::HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F64 {
            return Err(bad(format!("tensor {name} is not F64")));
        }
        let data = view
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        out.insert(name, (view.shape().to_vec(), data));
    }
    Ok((out, meta))
}

/// Rows of width `d` as CSV lines.
pub fn rows_csv(x: &[f64], d: usize) -> String {
    let mut s = String::new();
    for row in x.chunks(d.max(1)) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
        s += &cells.join(",");
        s.push('\n');
    }
    s
}

/// A square image shape for widths that are perfect squares ≥ 16.
pub fn square_shape(d: usize) -> Option<(usize, usize)> {
    let s = (d as f64).sqrt().round() as usize;
    (d >= 16 && s * s == d).then_some((s, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_other_processes_temporaries_are_stale() {
        let me = std::process::id();
        assert!(foreign_temp(&format!(".metrics.jsonl.tmp{}", me + 1)));
        assert!(!foreign_temp(&format!(".metrics.jsonl.tmp{me}")));
        for name in [
            "metrics.jsonl",
            ".gradfree.lock",
            ".x.tmp",
            ".tmp12",
            "a.tmp12",
            ".x.tmp1a",
        ] {
            assert!(!foreign_temp(name), "{name}");
        }
    }
}
