//! The RRR engine interface: what a backend does with one batch of an
//! [`crate::problem::RrrProblem`] (load the replicas, iterate z ← z + β(PB(2PA(z) − z) −
//! PA(z)), read the consensus back). The CPU engine is in [`super::cpu`],
//! the WGSL one in [`super::gpu`]; both take every sum over items through
//! the backend's [`super::collective::Collective`].

use crate::error::{Error, Result};
use crate::kernels::rrr_forward::Feed;
use crate::problem::{NodeStart, RrrState};

/// The A-projection of the current state: consensus values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Consensus {
    /// Node values xa [N][K].
    pub x: Vec<f64>,
    /// Consensus weights [E].
    pub w: Vec<f64>,
    /// ya [N][K].
    pub y: Vec<f64>,
    /// ba [N][K].
    pub b: Vec<f64>,
}

/// What a batch leaves for its model ([`RrrEngine::batch_end`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchEnd {
    /// The consensus weights w̄ [E] of PA(z).
    pub weights: Vec<f64>,
    /// The bias consensus [N] of the latest iteration.
    pub biases: Vec<f64>,
    /// The labels used [K], where asked for (else empty).
    pub labels: Vec<u32>,
}

/// The classes a feed pass gives a loaded batch
/// ([`RrrEngine::predict_queued`]), taken when they are needed: a device
/// engine reads them back then, so its next work need not wait for them.
pub struct Predictions(Classes);

enum Classes {
    Ready(Vec<u32>),
    Queued(Box<dyn FnOnce() -> Result<Vec<u32>> + Send>),
}

impl Predictions {
    /// Classes already at hand.
    pub fn ready(classes: Vec<u32>) -> Self {
        Predictions(Classes::Ready(classes))
    }

    /// Classes that `read` reads back (waiting for the device if it has
    /// not got to them).
    pub(crate) fn queued(read: impl FnOnce() -> Result<Vec<u32>> + Send + 'static) -> Self {
        Predictions(Classes::Queued(Box::new(read)))
    }

    /// The classes, one per item of the batch.
    pub fn take(self) -> Result<Vec<u32>> {
        match self.0 {
            Classes::Ready(v) => Ok(v),
            Classes::Queued(read) => read(),
        }
    }
}

impl std::fmt::Debug for Predictions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Classes::Ready(v) => write!(f, "Predictions::Ready({} classes)", v.len()),
            Classes::Queued(_) => write!(f, "Predictions::Queued"),
        }
    }
}

/// [`RrrEngine::batch_end`] by its three calls, one after the other.
pub(crate) fn batch_end_by_calls<E: RrrEngine + ?Sized>(
    e: &mut E,
    labels: bool,
) -> Result<BatchEnd> {
    Ok(BatchEnd {
        weights: e.consensus_weights()?,
        biases: e.bias_consensus()?,
        labels: if labels { e.labels_used()? } else { vec![] },
    })
}

/// What a run of iterations did.
#[derive(Clone, Debug, Default)]
pub struct IterReport {
    /// Iterations performed.
    pub iterations: usize,
    /// RRR_err after each iteration.
    pub errors: Vec<f64>,
    /// Bilinear projections with no root in (−1, 1).
    pub degenerate: u64,
    /// Bilinear projections that hit the iteration cap.
    pub not_converged: u64,
    /// True when RRR_err fell below tol (every group's, with several groups).
    pub converged: bool,
    /// With `err_groups > 1`: RRR_err of each group after each iteration.
    pub group_errors: Vec<Vec<f64>>,
}

impl IterReport {
    /// Appends iteration errors from per-group error sums (Σ over the
    /// group's bilinear nodes and items of |b − a|²): total and per group.
    pub fn push_group_sums(&mut self, sums: &[f64], items: usize) {
        let inv_k = 1.0 / items.max(1) as f64;
        let total: f64 = sums.iter().sum();
        self.errors.push((total * inv_k).max(0.0).sqrt());
        if sums.len() > 1 {
            self.group_errors.resize(sums.len(), Vec::new());
            for (g, &s) in sums.iter().enumerate() {
                self.group_errors[g].push((s * inv_k).max(0.0).sqrt());
            }
        }
    }

    /// True when the latest errors are all below `tol` (per group when grouped).
    pub fn below(&self, tol: f64) -> bool {
        if self.group_errors.is_empty() {
            self.errors.last().is_some_and(|&e| e < tol)
        } else {
            self.group_errors.iter().all(|g| g.iter().any(|&e| e < tol))
        }
    }
}

/// A backend's implementation of RRR iterations on one problem.
pub trait RrrEngine: Send {
    /// Replaces the state z (and data, labels) of the batch.
    fn load(&mut self, state: &RrrState) -> Result<()>;
    /// Replaces the state with the replicas of a batch start in node form
    /// (the same state as `load(&start.replicas(p))`).
    fn load_nodes(&mut self, start: &NodeStart) -> Result<()>;
    /// Whether batches start faster from a device feed pass
    /// ([`RrrEngine::keep_items`]) than from the host's: on hardware GPUs.
    /// Not on the CPU engine, and not on software adapters, where the
    /// host's pass on every core beats one workgroup per 64 items (on
    /// lavapipe a maj13 epoch took 3% longer with it).
    fn feeds_on_device(&self) -> bool {
        false
    }
    /// Keeps a labelled item set (`inputs` item-major, `feed.dim` per item,
    /// a label each) on the engine's device, for batches started by
    /// [`RrrEngine::load_fed`] and classified by [`RrrEngine::predict_loaded`].
    /// `Ok(false)` where the engine has no device feed pass: the CPU
    /// engine, whose host feed pass is the same work, or a set larger than
    /// one storage binding.
    fn keep_items(&mut self, _feed: &Feed<'_>, _inputs: &[f64], _labels: &[u32]) -> Result<bool> {
        Ok(false)
    }
    /// Starts the batch of kept items `rows` from their feed pass with the
    /// model's `weights` and `biases`: the state `load_nodes` builds from
    /// the host's feed pass of the same items.
    fn load_fed(&mut self, _weights: &[f64], _biases: &[f64], _rows: &[u32]) -> Result<()> {
        Err(Error::Input(
            "this engine keeps no item set to start a batch from".into(),
        ))
    }
    /// The class each item of the batch of `load_fed` gets from the model
    /// `weights`, `biases` (the first class node with the largest y − b).
    fn predict_loaded(&mut self, weights: &[f64], biases: &[f64]) -> Result<Vec<u32>> {
        self.predict_queued(weights, biases)?.take()
    }
    /// [`Self::predict_loaded`] queued on the engine's device: the classes
    /// are read back when taken, and work queued after them does not wait
    /// for the host to read them.
    fn predict_queued(&mut self, _weights: &[f64], _biases: &[f64]) -> Result<Predictions> {
        Err(Error::Input(
            "this engine keeps no item set to classify".into(),
        ))
    }
    /// Runs up to `iters` iterations of z ← z + β(PB(2PA(z) − z) − PA(z)),
    /// stopping once RRR_err < tol (checked every `check_every` iterations).
    fn iterate(
        &mut self,
        iters: usize,
        beta: f64,
        tol: f64,
        check_every: usize,
    ) -> Result<IterReport>;
    /// Reads the state z back.
    fn state(&mut self) -> Result<RrrState>;
    /// The A-projection PA(z) of the current state.
    fn consensus(&mut self) -> Result<Consensus>;
    /// The consensus weights w̄ of PA(z) alone: what a batch's model takes
    /// (a device reads back E values instead of the node arrays).
    fn consensus_weights(&mut self) -> Result<Vec<f64>> {
        Ok(self.consensus()?.w)
    }
    /// The B-side bias consensus of the latest iteration: per node, the
    /// batch mean of 2b_A − b (zeros before any iteration or without biases).
    fn bias_consensus(&mut self) -> Result<Vec<f64>>;
    /// Effective labels of the latest A-projection: the given labels, with
    /// `class_select::LABEL_EXEMPT` for exempted items and the new label for
    /// relabeled ones.
    fn labels_used(&mut self) -> Result<Vec<u32>>;
    /// The end of a batch: [`Self::consensus_weights`], then
    /// [`Self::bias_consensus`] and, with `labels`, [`Self::labels_used`],
    /// read back together where the engine can (a GPU in one submit).
    fn batch_end(&mut self, labels: bool) -> Result<BatchEnd> {
        batch_end_by_calls(self, labels)
    }
}
