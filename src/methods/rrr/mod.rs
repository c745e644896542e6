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

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::engine::{IterReport, RrrEngine};
use crate::error::{Error, Result};
use crate::problem::{NodeStart, RrrProblem, RrrState};

/// Consensus weights (in the problem's edge order) and biases per node:
/// what a classifier, an autoencoder or a generator has learned.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// w̄ per edge.
    pub weights: Vec<f64>,
    /// b̄ per node (0 at data nodes).
    pub biases: Vec<f64>,
}

/// Random first weights of any RRR net with weights grouped by destination
/// (classifier, autoencoder): uniform in [−1, 1] per node, mean removed,
/// norm Ω; biases 0.
pub fn random_model(p: &RrrProblem, seed: u64) -> Model {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut weights = vec![0.0; p.edges()];
    for j in 0..p.nodes {
        let r = p.in_ptr[j] as usize..p.in_ptr[j + 1] as usize;
        if r.is_empty() {
            continue;
        }
        for e in r.clone() {
            weights[e] = rng.random_range(-1.0..=1.0);
        }
        let mean = weights[r.clone()].iter().sum::<f64>() / r.len() as f64;
        weights[r.clone()].iter_mut().for_each(|w| *w -= mean);
        let norm = weights[r.clone()].iter().map(|w| w * w).sum::<f64>().sqrt();
        let scale = if norm > 0.0 { p.omega / norm } else { 0.0 };
        weights[r].iter_mut().for_each(|w| *w *= scale);
    }
    Model {
        weights,
        biases: vec![0.0; p.nodes],
    }
}

/// How a batch's RRR state is given to the engine.
#[derive(Clone, Copy, Debug)]
pub(crate) enum BatchStart<'a> {
    /// Every replica, built on the host.
    State(&'a RrrState),
    /// The node form the engine builds the replicas from.
    Nodes(&'a NodeStart),
    /// These rows of the item set the engine keeps, fed forward on its
    /// device with the model (see `RrrEngine::keep_items`).
    Fed(&'a [u32]),
}

/// One batch of RRR training, as classify, autoencode and the generator
/// do it: load the batch's replicas, run the iterations, and take the
/// A-consensus weights w̄ and the B bias consensus b̄ (the batch mean of
/// 2b_A − b of the last iteration, as the reference code does) of nodes
/// `first_biased..` as the new model. With `labels`, also the labels the
/// batch used (exemptions, relabels), read back with them.
#[allow(clippy::too_many_arguments)]
pub(crate) fn solve_batch(
    engine: &mut dyn RrrEngine,
    start: BatchStart<'_>,
    iterations: usize,
    beta: f64,
    tol: f64,
    model: &mut Model,
    first_biased: usize,
    (epoch, batch): (usize, usize),
    labels: bool,
) -> Result<(IterReport, Vec<u32>)> {
    match start {
        BatchStart::State(s) => engine.load(s)?,
        BatchStart::Nodes(s) => engine.load_nodes(s)?,
        BatchStart::Fed(rows) => engine.load_fed(&model.weights, &model.biases, rows)?,
    }
    let check_every = if tol > 0.0 { 10 } else { iterations };
    let rep = engine.iterate(iterations, beta, tol, check_every)?;
    let end = engine.batch_end(labels)?;
    model.weights = end.weights;
    model.biases[first_biased..].copy_from_slice(&end.biases[first_biased..]);
    if model
        .weights
        .iter()
        .chain(&model.biases)
        .any(|v| !v.is_finite())
    {
        return Err(Error::Numeric(format!(
            "weights became non-finite in epoch {epoch}, batch {batch}"
        )));
    }
    Ok((rep, end.labels))
}

/// The checks every RRR training run shares: at least one batch item,
/// epoch and iteration, the named hyperparameters positive and finite,
/// `tol` finite and ≥ 0.
pub(crate) fn check_run(
    batch: usize,
    epochs: usize,
    iters_per_batch: usize,
    positive: &[(&str, f64)],
    tol: f64,
) -> Result<()> {
    if batch == 0 || epochs == 0 || iters_per_batch == 0 {
        return Err(Error::Input(
            "the batch size, the epochs and the iterations per batch must be at least 1".into(),
        ));
    }
    if let Some((name, v)) = positive.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
        return Err(Error::Input(format!("{name} must be positive, got {v}")));
    }
    if !(tol.is_finite() && tol >= 0.0) {
        return Err(Error::Input("the tolerance must be ≥ 0".into()));
    }
    Ok(())
}

/// Giga-weight-multiplies of `iterations` RRR iterations (paper eq. 24).
pub fn gwms(iterations: u64, items: usize, edges: usize) -> f64 {
    1e-9 * iterations as f64 * items as f64 * edges as f64
}
