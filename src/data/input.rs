//! The one reader of data files: plain, gzip (`.gz`, or the gzip magic
//! bytes) or a zip archive (`.zip`, or a zip signature) that holds exactly
//! one file, through the `flate2` and `zip` crates.
//!
//! Decompressed sizes are bounded by [`Limits::max_bytes`]: a compressed
//! input is first decompressed into nothing, counting bytes and stopping one
//! past the limit, and only an input within it is decompressed again into a
//! buffer of exactly its size. A "zip bomb" thus costs time up to the limit,
//! never memory.

use std::io::{Cursor, Read};
use std::path::Path;

use super::Limits;
use crate::error::{Error, Result};

/// The bytes of the data file `path`, gunzipped or unzipped as its name or
/// its first bytes say; at most `limits.max_bytes` of them.
pub fn read_input(path: &Path, limits: &Limits) -> Result<Vec<u8>> {
    let cannot = |e: std::io::Error| Error::Input(format!("cannot read {}: {e}", path.display()));
    let len = std::fs::metadata(path).map_err(cannot)?.len();
    if len > limits.max_bytes {
        return Err(too_large(path, len, limits));
    }
    let raw = crate::io::read_file(path)?;
    decode_input(raw, path, limits)
}

/// [`read_input`] of bytes already read from `path` (named in errors, and
/// its extension read): `raw` itself when plain, else its decompressed
/// content.
pub fn decode_input(raw: Vec<u8>, path: &Path, limits: &Limits) -> Result<Vec<u8>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let bad = |why: String| Error::Input(format!("{}: {why}", path.display()));
    if raw.starts_with(&[0x1f, 0x8b]) || ext.as_deref() == Some("gz") {
        if !raw.starts_with(&[0x1f, 0x8b]) {
            return Err(bad("not gzip data (named .gz, no gzip header)".into()));
        }
        return gunzip(&raw, path, limits);
    }
    // A zip starts with a local file header, or, when empty, with the
    // end-of-central-directory record.
    if raw.starts_with(b"PK\x03\x04")
        || raw.starts_with(b"PK\x05\x06")
        || ext.as_deref() == Some("zip")
    {
        return unzip_single(&raw, path, limits);
    }
    if raw.len() as u64 > limits.max_bytes {
        return Err(too_large(path, raw.len() as u64, limits));
    }
    Ok(raw)
}

/// The error of a file of `bytes` bytes, over `limits.max_bytes`.
fn too_large(path: &Path, bytes: u64, limits: &Limits) -> Error {
    Error::Input(format!(
        "{} is {bytes} bytes, over the limit of {} bytes ({}) on a data file \
         (by default, the memory available)",
        path.display(),
        limits.max_bytes,
        human(limits.max_bytes)
    ))
}

/// The error when decompressing went past `limits.max_bytes`.
fn over(path: &Path, limits: &Limits) -> Error {
    Error::Input(format!(
        "{} decompresses to more than {} bytes ({}), over the limit on a data file \
         (by default, the memory available); refused before decompressing it into memory",
        path.display(),
        limits.max_bytes,
        human(limits.max_bytes)
    ))
}

/// A size in GiB or MiB, for messages.
fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// The bytes `r` yields, counted without keeping them, up to one past
/// `limits.max_bytes`.
fn count(r: impl Read, limits: &Limits) -> std::io::Result<u64> {
    std::io::copy(
        &mut r.take(limits.max_bytes.saturating_add(1)),
        &mut std::io::sink(),
    )
}

/// The first `n` bytes of `r` (all it has, when fewer), into a buffer of `n`.
fn read_n(r: impl Read, n: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(n as usize);
    r.take(n).read_to_end(&mut out)?;
    Ok(out)
}

/// The content of a gzip stream (one or more members).
fn gunzip(raw: &[u8], path: &Path, limits: &Limits) -> Result<Vec<u8>> {
    let bad = |e: std::io::Error| Error::Input(format!("{}: bad gzip data: {e}", path.display()));
    let gz = || flate2::read::MultiGzDecoder::new(raw);
    let n = count(gz(), limits).map_err(bad)?;
    if n > limits.max_bytes {
        return Err(over(path, limits));
    }
    read_n(gz(), n).map_err(bad)
}

/// The content of the one file in the zip archive `raw`.
fn unzip_single(raw: &[u8], path: &Path, limits: &Limits) -> Result<Vec<u8>> {
    let bad = |why: String| Error::Input(format!("{}: {why}", path.display()));
    let invalid = |e: zip::result::ZipError| bad(format!("not a valid zip archive ({e})"));
    let mut zip = zip::ZipArchive::new(Cursor::new(raw)).map_err(invalid)?;
    let mut files = vec![];
    for i in 0..zip.len() {
        let f = zip.by_index_raw(i).map_err(invalid)?;
        if f.is_file() {
            files.push((i, f.name().to_string()));
        }
    }
    let (i, name) = match files.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(bad(
                "the zip archive holds no file (it needs exactly one)".into()
            ));
        }
        many => {
            let names: Vec<&str> = many.iter().map(|(_, n)| n.as_str()).collect();
            return Err(bad(format!(
                "the zip archive holds {} files ({}); it needs exactly one",
                many.len(),
                names.join(", ")
            )));
        }
    };
    let cannot =
        |e: zip::result::ZipError| bad(format!("cannot read {name} in the zip archive: {e}"));
    let broken = |e: std::io::Error| bad(format!("bad data in {name} of the zip archive: {e}"));
    let n = count(zip.by_index(i).map_err(cannot)?, limits).map_err(broken)?;
    if n > limits.max_bytes {
        return Err(over(path, limits));
    }
    read_n(zip.by_index(i).map_err(cannot)?, n).map_err(broken)
}
