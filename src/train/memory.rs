//! Memory a run will need, estimated from its sizes before anything large
//! is allocated, against what the machine has: a run that cannot fit is
//! refused with the figure (bad input, exit 2) instead of being killed by
//! the system halfway. Sizes are multiplied with overflow checks, so a
//! width that wraps around is refused too.

use crate::error::{Error, Result};

/// The most memory a run may plan to use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    /// Bytes.
    pub bytes: u64,
    /// Where the limit comes from, for messages.
    pub source: &'static str,
}

impl Budget {
    /// `limit` bytes when given (the user's), else the memory the machine
    /// has available now (Linux `MemAvailable`), else 8 GiB.
    pub fn new(limit: Option<u64>) -> Self {
        match limit {
            Some(bytes) => Budget {
                bytes,
                source: "the memory limit given",
            },
            None => match crate::data::available_memory() {
                Some(bytes) => Budget {
                    bytes,
                    source: "the memory available on this machine",
                },
                None => Budget {
                    bytes: crate::data::FALLBACK_MAX_BYTES,
                    source: "8 GiB (the available memory could not be read)",
                },
            },
        }
    }

    /// Refuses `needed` bytes (None: the sizes overflow) for `what` when
    /// they exceed the budget.
    pub fn check(&self, needed: Option<u128>, what: &str) -> Result<()> {
        match needed {
            None => Err(Error::Input(format!(
                "{what}: the sizes overflow a 64-bit count (check the widths and batch sizes)"
            ))),
            Some(n) if n > u128::from(self.bytes) => Err(Error::Input(format!(
                "{what} needs about {} of memory, more than {} ({})",
                human(n),
                self.source,
                human(u128::from(self.bytes))
            ))),
            Some(_) => Ok(()),
        }
    }
}

/// Bytes in words: "6.3 TB", "512 MB".
pub fn human(bytes: u128) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// Checked products and sums of sizes.
pub fn mul(values: &[usize]) -> Option<u128> {
    values
        .iter()
        .try_fold(1u128, |acc, &v| acc.checked_mul(v as u128))
}

/// Nodes and edges of a layered, fully connected net (None on overflow).
pub fn layered_size(widths: &[usize]) -> Option<(u128, u128)> {
    let nodes = widths
        .iter()
        .try_fold(0u128, |acc, &w| acc.checked_add(w as u128))?;
    let edges = widths
        .windows(2)
        .try_fold(0u128, |acc, p| acc.checked_add(mul(p)?))?;
    Some((nodes, edges))
}

/// The memory of one RRR batch of `items` items on a net of `nodes` nodes
/// and `edges` edges in precision of `bytes` per value: the engine's
/// replicas and consensus (x, w per edge and item, and the GPU step's quad
/// sums of w, a quarter more; y, b, data and their consensus per node and
/// item), the host's f64 batch state and forward passes, the weight partial
/// sums and the bilinear warm starts.
pub fn rrr_batch(nodes: u128, edges: u128, items: u128, bytes: u128) -> Option<u128> {
    // In quarters of a value per item: 2¼ per edge, 7 per node.
    let engine = items
        .checked_mul(edges.checked_mul(9)?.checked_add(nodes.checked_mul(28)?)?)?
        .checked_mul(bytes)?
        .div_ceil(4);
    let host = items
        .checked_mul(edges.checked_mul(2)?.checked_add(nodes.checked_mul(5)?)?)?
        .checked_mul(8)?;
    let warm = items.checked_mul(nodes)?.checked_mul(16)?;
    let parts = edges.checked_mul(70)?.checked_mul(bytes)?;
    engine
        .checked_add(host)?
        .checked_add(warm)?
        .checked_add(parts)
}

/// A layered dense net trained on batches of `items` (SGD): its weights,
/// gradients and transposes, and a few activations per node and item.
pub fn dense_net(widths: &[usize], items: usize) -> Option<u128> {
    let (nodes, edges) = layered_size(widths)?;
    let weights = edges.checked_mul(4)?;
    let acts = nodes.checked_mul(items as u128)?.checked_mul(6)?;
    weights.checked_add(acts)?.checked_mul(8)
}

/// `copies` f64 arrays of `rows` × `cols` values.
pub fn table(rows: usize, cols: usize, copies: usize) -> Option<u128> {
    mul(&[rows, cols, copies, 8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_overflow_into_none_and_budgets_refuse_what_they_cannot_hold() {
        assert_eq!(layered_size(&[2, 3, 4]), Some((9, 18)));
        assert_eq!(
            layered_size(&[13, usize::MAX, 2]).map(|s| s.0 > 0),
            Some(true)
        );
        assert!(rrr_batch(u128::MAX / 2, 1, 2, 4).is_none());
        let b = Budget {
            bytes: 1000,
            source: "a test",
        };
        assert!(b.check(Some(999), "x").is_ok());
        let e = b.check(Some(2_000_000), "x").unwrap_err().to_string();
        assert!(e.contains("2.0 MB") && e.contains("a test"), "{e}");
        assert!(
            b.check(None, "x")
                .unwrap_err()
                .to_string()
                .contains("overflow")
        );
    }
}
