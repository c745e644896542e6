//! Data sets: loaders of the reference formats, CSV and IDX, generators
//! (majority gates, letters, spirals), and the PCA baseline.
//!
//! Every data file is read through [`read_input`] (plain, gzip, or the one
//! file of a zip), and every loader takes the [`Limits`] it enforces as its
//! last argument: how many bytes an input may decompress to, and how large a
//! value may be for the working precision.

pub mod folds;
pub mod images;
mod input;
pub mod labeled;
pub mod letters;
pub mod majority;
pub mod matrix;
pub mod mixture;
pub mod pca;
pub mod spiral;

pub use input::{decode_input, read_input};

use crate::real::Precision;

/// What a loader accepts: values up to `max_abs` in magnitude and inputs
/// of at most `max_bytes` (after decompression).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    /// Largest |value| a text file may hold (see [`Precision::max_input`]).
    pub max_abs: f64,
    /// Most bytes a data file may hold, after gunzipping or unzipping: a
    /// larger one (a "zip bomb") is refused before it is decompressed into
    /// memory.
    pub max_bytes: u64,
}

/// [`Limits::max_bytes`] when the available memory cannot be read: 8 GiB.
pub const FALLBACK_MAX_BYTES: u64 = 8 << 30;

impl Limits {
    /// Values up to [`Precision::max_input`] of `p`; inputs up to the
    /// machine's available memory ([`available_memory`], else 8 GiB).
    pub fn for_precision(p: Precision) -> Limits {
        Limits {
            max_abs: p.max_input(),
            max_bytes: available_memory().unwrap_or(FALLBACK_MAX_BYTES),
        }
    }
}

/// The memory available to new allocations without swapping, in bytes:
/// `MemAvailable` of /proc/meminfo; `None` where that cannot be read (not
/// Linux, or a kernel older than 3.14).
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_available(&text)
}

/// `MemAvailable: N kB` of a /proc/meminfo text, in bytes.
fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let mut words = line.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    let unit = match words.next() {
        None => 1,
        Some("kB") => 1024,
        Some(_) => return None,
    };
    n.checked_mul(unit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_in_bytes() {
        let t = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_mem_available(t), Some(20_000_000 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 5 kB\n"), None);
        assert_eq!(parse_mem_available("MemAvailable: x kB\n"), None);
        assert_eq!(parse_mem_available("MemAvailable: 7\n"), Some(7));
    }
}
