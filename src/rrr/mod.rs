//! RRR — relaxed-reflect-reflect ("Learning without loss", Elser).
//!
//! Training is constraint satisfaction on replicated variables z. One iteration:
//!
//! ```text
//! a = PA(z);  b = PB(2a − z);  z ← z + β (b − a)
//! RRR_err = sqrt(|b − a|²_metric / |K|)
//! ```
//!
//! A holds the node constraints (consensus of x replicas over out-edges with
//! the node's side constraint; weight consensus over the batch with norm Ω);
//! B holds the bilinear constraints `Σ_i x[k,i→j] w[k,i→j] = Ω y[k,j]` and
//! the bias consensus. Work is counted as GWMs = 1e-9 × iterations × |K| × |E|.

pub mod autoencode;
pub mod classify;
pub mod net;
pub mod nmf;
pub mod problem;

pub use problem::{
    Consensus, IterReport, RrrEngine, RrrProblem, RrrState, WeightGroups, layered_edges,
};

/// The checks every RRR training run shares: at least one batch item,
/// epoch and iteration, the named hyperparameters positive and finite,
/// `tol` finite and ≥ 0.
pub(crate) fn check_run(
    batch: usize,
    epochs: usize,
    iters_per_batch: usize,
    positive: &[(&str, f64)],
    tol: f64,
) -> crate::error::Result<()> {
    use crate::error::Error;
    if batch == 0 || epochs == 0 || iters_per_batch == 0 {
        return Err(Error::Input(
            "--batch, --epochs and --iters-per-batch must be at least 1".into(),
        ));
    }
    if let Some((name, v)) = positive.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
        return Err(Error::Input(format!("--{name} must be positive, got {v}")));
    }
    if !(tol.is_finite() && tol >= 0.0) {
        return Err(Error::Input("--tol must be ≥ 0".into()));
    }
    Ok(())
}

/// Giga-weight-multiplies of `iterations` RRR iterations (paper eq. 24).
pub fn gwms(iterations: u64, items: usize, edges: usize) -> f64 {
    1e-9 * iterations as f64 * items as f64 * edges as f64
}
