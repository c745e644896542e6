//! RRR classifier on any acyclic network (paper section 5, SPEC 2.2).
//!
//! Variables per (item k, edge i→j): `x`, `w`; per (k, non-data node j): `y`
//! (pre-activation) and `b` (bias replica); metric 1 on x, w and
//! `g_j = outdeg(j)` (hidden) or `Υ` (class) on y, b.
//!
//! ```text
//! A: x[k,i→j] = x̄[k,i] for all out-edges, with x̄ = d (data nodes),
//!    x̄ = relu(y − b) (hidden, joint projection), class margins
//!    y − b ≥ Δ (label) and y − b ≤ 0 (others);  w[k,e] = w̄[e] with
//!    Σ_i w̄[i→j]² = Ω² per node j
//! B: Σ_i x[k,i→j] w[k,i→j] = Ω y[k,j];  b[k,j] = b̄[j]
//! ```
//!
//! Each batch starts from a forward pass with the current consensus weights
//! and biases (`y_j = Σ_i x_i w_ij / Ω`, `x_j = relu(y_j − b_j)`); the first
//! weights are uniform in [−1, 1] per node, mean removed, norm Ω, biases 0.
//! After a batch the weights are the A-consensus w̄ and the biases the B
//! consensus b̄ (batch mean of 2b_A − b) of the last iteration, as in the
//! reference code.
//! Inference: forward pass, class = argmax over class nodes of y − b.
//! Eccentric exemptions (eq. 32) and relabeling (eq. 33) run inside PA
//! through `kernels::class_select`. Shuffles are seeded per epoch, so a run
//! resumed from an end-of-epoch checkpoint retraces the uninterrupted one.

use std::ops::Range;
use std::sync::Arc;

use rayon::prelude::*;

use super::net::Net;
use super::{Model, random_model};
use crate::data::labeled::Labeled;
use crate::engine::{Backend, Collective};
use crate::engine::{Predictions, RrrEngine};
use crate::error::{Error, Result};
use crate::io::{NamedTensor, read_safetensors, safetensors_bytes};
use crate::kernels::class_select::LABEL_EXEMPT;
use crate::kernels::rrr_forward::Feed;
use crate::plot::{ImageGrid, Pixels};
use crate::problem::{NodeStart, RrrProblem, Selection};
use crate::real::Precision;
use crate::train::checkpoint::{Provenance, Totals, fingerprint};
use crate::train::{self, Batches, EpochEnd, Method, Plan, Session, Start, Stopped, epoch_order};

/// Training settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Settings {
    /// Items per batch |K|.
    pub batch: usize,
    /// Epochs.
    pub epochs: usize,
    /// RRR iterations per batch.
    pub iters_per_batch: usize,
    /// Stop a batch once RRR_err < tol (0: never).
    pub tol: f64,
    /// β.
    pub beta: f64,
    /// Weight norm Ω per node.
    pub omega: f64,
    /// Class-node metric Υ.
    pub upsilon: f64,
    /// Class margin Δ.
    pub margin: f64,
    /// Eccentric exemptions per batch (EE of eq. 32).
    pub exempt: usize,
    /// Relabels per batch (EE of eq. 33).
    pub relabel: usize,
    /// Items of class 0 (fakes) per batch that may take another label (the
    /// generative model's false-positive allowance FPA).
    #[serde(default)]
    pub false_positives: usize,
    /// Seed of the initial weights and the shuffles.
    pub seed: u64,
}

impl Settings {
    /// Rejects impossible values.
    pub fn check(&self) -> Result<()> {
        super::check_run(
            self.batch,
            self.epochs,
            self.iters_per_batch,
            &[
                ("beta", self.beta),
                ("omega", self.omega),
                ("upsilon", self.upsilon),
            ],
            self.tol,
        )?;
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return Err(Error::Input("the class margin Δ must be ≥ 0".into()));
        }
        if [self.exempt, self.relabel, self.false_positives]
            .iter()
            .filter(|&&v| v > 0)
            .count()
            > 1
        {
            return Err(Error::Input(
                "exemptions, relabeling and a false-positive allowance cannot be combined".into(),
            ));
        }
        // A resumed run's settings come from its checkpoint, not the flags'
        // parser: the same bound here.
        if self.exempt.max(self.relabel) >= self.batch {
            return Err(Error::Input(format!(
                "{} exempted or relabeled items per batch must be below the batch size {}",
                self.exempt.max(self.relabel),
                self.batch
            )));
        }
        Ok(())
    }
}

/// A network with its RRR problem and evaluation order.
#[derive(Clone, Debug)]
pub struct Classifier {
    /// The graph.
    pub net: Net,
    /// RRR structure (edges sorted by destination).
    pub problem: RrrProblem,
    order: Vec<usize>,
    /// The non-data nodes of `order`, for a device feed pass.
    feed_order: Vec<u32>,
}

impl Classifier {
    /// Builds the RRR problem of a net with Ω, Δ, Υ and the class selection.
    pub fn new(net: Net, s: &Settings) -> Result<Self> {
        net.check()?;
        let mut problem = RrrProblem::classifier(
            net.nodes(),
            &net.edges,
            net.data,
            net.classes,
            s.omega,
            s.margin,
            s.upsilon,
        )?;
        problem.selection = if s.exempt > 0 {
            Selection::Exempt(s.exempt)
        } else if s.relabel > 0 {
            Selection::Relabel(s.relabel)
        } else if s.false_positives > 0 {
            Selection::RelabelFakes(s.false_positives)
        } else {
            Selection::None
        };
        let order = net.topo_order()?;
        let feed_order = order
            .iter()
            .filter(|&&j| j >= net.data)
            .map(|&j| j as u32)
            .collect();
        Ok(Classifier {
            net,
            problem,
            order,
            feed_order,
        })
    }

    /// Random first weights: uniform in [−1, 1] per node, mean removed, norm Ω.
    pub fn random_model(&self, seed: u64) -> Model {
        random_model(&self.problem, seed)
    }

    /// The structure of [`Classifier::forward`] for a device feed pass.
    pub fn feed(&self) -> Feed<'_> {
        let p = &self.problem;
        Feed {
            nodes: p.nodes,
            dim: self.net.data,
            order: &self.feed_order,
            in_ptr: &p.in_ptr,
            src: &p.src,
            first_class: p.first_class,
            classes: p.classes,
            inv_omega: 1.0 / p.omega,
        }
    }

    /// Forward pass of one item: node values x and pre-activations y.
    pub fn forward(&self, m: &Model, input: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let p = &self.problem;
        let first_class = p.first_class;
        let mut x = vec![0.0; p.nodes];
        let mut y = vec![0.0; p.nodes];
        x[..self.net.data].copy_from_slice(input);
        let inv = 1.0 / p.omega;
        for &j in &self.order {
            if j < self.net.data {
                continue;
            }
            let mut s = 0.0;
            for e in p.in_ptr[j] as usize..p.in_ptr[j + 1] as usize {
                s += x[p.src[e] as usize] * m.weights[e];
            }
            y[j] = s * inv;
            let z = y[j] - m.biases[j];
            x[j] = if j < first_class { z.max(0.0) } else { z };
        }
        (x, y)
    }

    /// The class nodes' outputs (y − b) for one item: the classifier's
    /// decision scores, largest for the predicted class.
    pub fn scores(&self, m: &Model, input: &[f64]) -> Vec<f64> {
        let (mut x, _) = self.forward(m, input);
        x.drain(..self.problem.first_class);
        x
    }

    /// Predicted class of one item.
    pub fn classify(&self, m: &Model, input: &[f64]) -> u32 {
        let scores = &self.scores(m, input);
        let mut best = 0;
        for c in 1..scores.len() {
            if scores[c] > scores[best] {
                best = c;
            }
        }
        best as u32
    }

    /// Predictions for every item.
    pub fn predict(&self, m: &Model, data: &Labeled) -> Vec<u32> {
        (0..data.len())
            .into_par_iter()
            .map(|k| self.classify(m, data.item(k)))
            .collect()
    }

    /// Fraction misclassified (divided by the real number of items).
    pub fn error(&self, m: &Model, data: &Labeled) -> f64 {
        if data.is_empty() {
            return f64::NAN;
        }
        let wrong = self
            .predict(m, data)
            .iter()
            .zip(&data.y)
            .filter(|(a, b)| a != b)
            .count();
        wrong as f64 / data.len() as f64
    }

    /// [`Classifier::error`] with the items split over the processes of
    /// `collective`, each classifying its slice.
    pub fn shared_error(
        &self,
        m: &Model,
        data: &Labeled,
        collective: &dyn Collective,
    ) -> Result<f64> {
        if collective.world() == 1 {
            return Ok(self.error(m, data));
        }
        if data.is_empty() {
            return Ok(f64::NAN);
        }
        let mut wrong = [collective
            .slice_of(data.len())
            .into_par_iter()
            .filter(|&k| self.classify(m, data.item(k)) != data.y[k])
            .count() as f64];
        collective.allreduce_sum_f64(&mut wrong)?;
        Ok(wrong[0] / data.len() as f64)
    }

    /// The start of a batch's RRR state, in node form: a forward pass per
    /// item with the current model (the engine builds the replicas).
    pub fn batch_start(&self, m: &Model, data: &Labeled, idx: &[usize]) -> NodeStart {
        let p = &self.problem;
        let kk = idx.len();
        let passes: Vec<(Vec<f64>, Vec<f64>)> = idx
            .par_iter()
            .map(|&item| self.forward(m, data.item(item)))
            .collect();
        let views: Vec<(&[f64], &[f64])> = passes
            .iter()
            .map(|(x, y)| (x.as_slice(), y.as_slice()))
            .collect();
        let mut s = NodeStart::from_passes(p, &views, &m.weights, &m.biases);
        for (k, (x, _)) in passes.iter().enumerate() {
            for (i, &v) in x[..self.net.data].iter().enumerate() {
                s.data[i * kk + k] = v;
            }
        }
        for (k, &item) in idx.iter().enumerate() {
            s.labels[k] = data.y[item];
        }
        s
    }

    /// Checks that data fit the net.
    pub fn check_data(&self, data: &Labeled, what: &str) -> Result<()> {
        if data.dim != self.net.data {
            return Err(Error::Input(format!(
                "{what} has {} features but the net has {} data nodes",
                data.dim, self.net.data
            )));
        }
        if let Some(&c) = data.y.iter().find(|&&c| c as usize >= self.net.classes) {
            return Err(Error::Input(format!(
                "{what} has class {c} but the net has {} class nodes",
                self.net.classes
            )));
        }
        Ok(())
    }
}

/// One epoch's figures.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Epoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean over batches of the error on the batch's non-exempted items, after training it.
    pub batch_err: f64,
    /// Error on the whole training set at the end of the epoch.
    pub train_err: f64,
    /// Error on the test set (null without one).
    pub test_err: Option<f64>,
    /// Mean RRR_err after each batch's first iteration.
    pub rrr_err_start: f64,
    /// Mean RRR_err after each batch's last iteration.
    pub rrr_err_end: f64,
    /// Mean iterations per batch.
    pub iterations: f64,
    /// Items exempted at the end of their batch (eq. 32).
    pub exempted: usize,
    /// Items whose label was changed at the end of their batch (eq. 33).
    pub relabeled: usize,
    /// GWMs of the epoch.
    pub gwms: f64,
    /// Wall seconds of the epoch.
    pub seconds: f64,
}

/// Which items the selection touched in one epoch (indices into the training set).
#[derive(Clone, Debug, Default)]
pub struct SelectedItems {
    /// Exempted items.
    pub exempted: Vec<usize>,
    /// Relabeled items and the labels they took.
    pub relabeled: Vec<(usize, u32)>,
}

/// The classifier's training as a [`Method`] of the loop: batches are the
/// shuffled training set cut into ⌊n/|K|⌋ batches of |K| (as the reference
/// does; every item is drawn across epochs).
pub struct Training<'a> {
    clf: &'a Classifier,
    train: &'a Labeled,
    test: Option<&'a Labeled>,
    s: &'a Settings,
    time_limit: Option<f64>,
    engine: Box<dyn RrrEngine>,
    /// True when the engine keeps the training set: batches start and are
    /// classified by feed passes on its device.
    fed: bool,
    kk: usize,
    /// The processes of the run, and this one's slice of every batch.
    collective: Arc<dyn Collective>,
    local: Range<usize>,
    /// The model after the latest batch.
    pub model: Model,
    /// The items the selection touched in the latest epoch.
    pub selected: SelectedItems,
    epoch: EpochSums,
    /// The latest batch, counted once the next one is under way (or the
    /// epoch ends): its classes come from the device without holding up
    /// the next batch's work.
    pending: Option<PendingBatch>,
    /// Lines to print per epoch.
    line: fn(&Settings, &Epoch) -> String,
    /// What the checkpoints record of the run's data and precision.
    fingerprint: String,
    precision: Precision,
}

/// A batch's items, the labels its selection used and its classes under
/// the new model, to be counted.
struct PendingBatch {
    items: Vec<usize>,
    used: Vec<u32>,
    predicted: Predictions,
}

/// Sums over an epoch's batches.
#[derive(Default)]
struct EpochSums {
    rrr_start: f64,
    rrr_end: f64,
    iterations: usize,
    batch_err: f64,
    batches: usize,
}

impl<'a> Training<'a> {
    /// Checks the settings and data and builds the batch engine.
    pub fn new(
        backend: &Backend,
        clf: &'a Classifier,
        train: &'a Labeled,
        test: Option<&'a Labeled>,
        s: &'a Settings,
        model: Model,
    ) -> Result<Self> {
        s.check()?;
        clf.check_data(train, "the training data")?;
        if let Some(t) = test {
            clf.check_data(t, "the test data")?;
        }
        let kk = s.batch.min(train.len());
        if kk == 0 {
            return Err(Error::Input("no training items".into()));
        }
        let collective = backend.collective_handle();
        if kk < collective.world() {
            return Err(Error::Input(format!(
                "a batch of {kk} items cannot be shared by {} processes",
                collective.world()
            )));
        }
        let local = collective.slice_of(kk);
        let mut engine = backend.rrr_engine(&clf.problem, local.len())?;
        let fed = engine.feeds_on_device() && engine.keep_items(&clf.feed(), &train.x, &train.y)?;
        Ok(Training {
            clf,
            train,
            test,
            s,
            time_limit: None,
            engine,
            fed,
            kk,
            collective,
            local,
            model,
            selected: SelectedItems::default(),
            epoch: EpochSums::default(),
            pending: None,
            line: epoch_line,
            fingerprint: data_fingerprint(train),
            precision: backend.precision(),
        })
    }

    /// True when the engine keeps the training set and batches start
    /// from feed passes on its device (see `RrrEngine::feeds_on_device`).
    pub fn starts_on_device(&self) -> bool {
        self.fed
    }

    /// Stops after the epoch during which `seconds` have passed.
    pub fn with_time_limit(mut self, seconds: Option<f64>) -> Self {
        self.time_limit = seconds;
        self
    }

    /// Prints each epoch with `line` instead of the classifier's line.
    pub fn with_line(mut self, line: fn(&Settings, &Epoch) -> String) -> Self {
        self.line = line;
        self
    }
}

/// The classifier's epoch line.
fn epoch_line(s: &Settings, e: &Epoch) -> String {
    format!(
        "epoch {:>3}/{}: batch_err {:.4}, train_err {:.4}, test_err {}, RRR_err {:.3e} → {:.3e}{}{}, {:.3} GWMs, {:.2} s",
        e.epoch,
        s.epochs,
        e.batch_err,
        e.train_err,
        e.test_err.map_or("-".into(), |t| format!("{t:.4}")),
        e.rrr_err_start,
        e.rrr_err_end,
        if s.exempt > 0 {
            format!(", {} exempted", e.exempted)
        } else {
            String::new()
        },
        if s.relabel > 0 {
            format!(", {} relabeled", e.relabeled)
        } else {
            String::new()
        },
        e.gwms,
        e.seconds
    )
}

impl Training<'_> {
    /// Adds a batch's training error and the items its selection exempted
    /// or relabeled (every process's, in batch order) to the epoch's.
    fn count(&mut self, b: PendingBatch) -> Result<()> {
        let predicted = b.predicted.take()?;
        let y = &self.train.y;
        let (mut exempted, mut relabeled) = (vec![], vec![]);
        let mut counts = [0.0f64; 2];
        for (k, &item) in b.items.iter().enumerate() {
            match b.used.get(k) {
                Some(&LABEL_EXEMPT) => {
                    exempted.push(item as u64);
                    continue;
                }
                Some(&l) if l != y[item] => relabeled.extend([item as u64, l as u64]),
                _ => {}
            }
            counts[1] += 1.0;
            counts[0] += (predicted[k] != y[item]) as u8 as f64;
        }
        let c = self.collective.as_ref();
        c.allreduce_sum_f64(&mut counts)?;
        let exempted = c.all_gather_u64(&exempted)?;
        let relabeled = c.all_gather_u64(&relabeled)?;
        let sel = &mut self.selected;
        sel.exempted.extend(exempted.iter().map(|&i| i as usize));
        sel.relabeled
            .extend(relabeled.chunks(2).map(|p| (p[0] as usize, p[1] as u32)));
        let e = &mut self.epoch;
        e.batch_err += counts[0] / counts[1].max(1.0);
        e.batches += 1;
        Ok(())
    }
}

impl Method for Training<'_> {
    type Record = Epoch;

    fn plan(&self) -> Plan {
        Plan {
            items: self.train.len(),
            batches: Batches::Whole(self.kk),
            epochs: self.s.epochs,
            time_limit: self.time_limit,
        }
    }

    fn order(&mut self, epoch: usize) -> Vec<usize> {
        self.epoch = EpochSums::default();
        self.selected = SelectedItems::default();
        epoch_order(self.train.len(), self.s.seed, epoch)
    }

    fn batch(&mut self, epoch: usize, b: usize, idx: &[usize]) -> Result<()> {
        let (clf, s, train) = (self.clf, self.s, self.train);
        // This process's slice of the batch (all of it in a world of one).
        let idx = &idx[self.local.clone()];
        let (rows, host_start);
        let start = if self.fed {
            rows = idx.iter().map(|&i| i as u32).collect::<Vec<_>>();
            super::BatchStart::Fed(&rows)
        } else {
            host_start = clf.batch_start(&self.model, train, idx);
            super::BatchStart::Nodes(&host_start)
        };
        let (rep, used) = super::solve_batch(
            self.engine.as_mut(),
            start,
            s.iters_per_batch,
            s.beta,
            s.tol,
            &mut self.model,
            clf.net.data,
            (epoch, b),
            clf.problem.selection.is_active(),
        )?;
        let e = &mut self.epoch;
        e.rrr_start += rep.errors.first().copied().unwrap_or(f64::NAN);
        e.rrr_end += rep.errors.last().copied().unwrap_or(f64::NAN);
        e.iterations += rep.iterations;
        // The batch's classes under the new model: on the device when it
        // keeps the set, queued there and read back at the next batch's
        // end, when they are long done.
        let predicted = if self.fed {
            self.engine
                .predict_queued(&self.model.weights, &self.model.biases)?
        } else {
            Predictions::ready(
                idx.par_iter()
                    .map(|&item| clf.classify(&self.model, train.item(item)))
                    .collect(),
            )
        };
        let batch = PendingBatch {
            items: idx.to_vec(),
            used,
            predicted,
        };
        match self.pending.replace(batch) {
            Some(previous) => self.count(previous),
            None => Ok(()),
        }
    }

    fn end_epoch(&mut self, epoch: usize, seconds: f64) -> Result<EpochEnd<Epoch>> {
        if let Some(last) = self.pending.take() {
            self.count(last)?;
        }
        let e = &self.epoch;
        let nb = e.batches as f64;
        let gwms = super::gwms(e.iterations as u64, self.kk, self.clf.problem.edges());
        let record = Epoch {
            epoch,
            batch_err: e.batch_err / nb,
            train_err: self
                .clf
                .shared_error(&self.model, self.train, self.collective.as_ref())?,
            test_err: match self.test {
                Some(t) => Some(
                    self.clf
                        .shared_error(&self.model, t, self.collective.as_ref())?,
                ),
                None => None,
            },
            rrr_err_start: e.rrr_start / nb,
            rrr_err_end: e.rrr_end / nb,
            iterations: e.iterations as f64 / nb,
            exempted: self.selected.exempted.len(),
            relabeled: self.selected.relabeled.len(),
            gwms,
            seconds,
        };
        Ok(EpochEnd::next(record, gwms))
    }

    fn checkpoint(&self, history: &[Epoch], totals: &Totals) -> Result<Option<Vec<u8>>> {
        let saved = Saved {
            net: self.clf.net.clone(),
            settings: self.s.clone(),
            model: self.model.clone(),
            epoch: history.last().map_or(0, |e| e.epoch),
            history: history.to_vec(),
            provenance: Provenance {
                totals: Some(*totals),
                fingerprint: Some(self.fingerprint.clone()),
                precision: Some(self.precision),
            },
        };
        saved.to_bytes(self.clf).map(Some)
    }

    fn line(&self, e: &Epoch) -> String {
        (self.line)(self.s, e)
    }
}

/// Trains `clf` from `model` and `start` (a fresh start or a checkpoint's
/// epochs and history) in `session`; returns the model and the records of
/// every epoch.
#[allow(clippy::too_many_arguments)]
pub fn train(
    backend: &Backend,
    session: &mut Session,
    clf: &Classifier,
    train: &Labeled,
    test: Option<&Labeled>,
    s: &Settings,
    model: Model,
    start: Start<Epoch>,
) -> Result<(Model, Vec<Epoch>)> {
    let mut training = Training::new(backend, clf, train, test, s, model)?;
    let fin = train::run(session, &mut training, start)?;
    Ok((training.model, fin.history))
}

/// What `rrr classify` trains on.
pub struct Run {
    /// The net.
    pub net: Net,
    /// Training settings.
    pub settings: Settings,
    /// Training data.
    pub train: Labeled,
    /// Test data.
    pub test: Option<Labeled>,
    /// Items are images of this shape (for `exempted.png`).
    pub image_shape: Option<(usize, usize)>,
    /// Stop after the epoch during which this many seconds have passed.
    pub time_limit: Option<f64>,
    /// Go on from this checkpoint (its net and settings are the run's).
    pub resume: Option<Saved>,
}

/// `rrr classify` as a library run: trains (or resumes), writes
/// `net.txt`, a checkpoint per epoch, `model.safetensors`, `exempted.txt`
/// (`exempted.png`), `relabeled.csv`, and returns the summary's own fields.
pub fn run(backend: &Backend, session: &mut Session, r: &Run) -> Result<Option<serde_json::Value>> {
    let (net, s) = (&r.net, &r.settings);
    let clf = Classifier::new(net.clone(), s)?;
    clf.check_data(&r.train, "the training data")?;
    if let Some(t) = &r.test {
        clf.check_data(t, "the test data")?;
    }
    let fingerprint = data_fingerprint(&r.train);
    if let Some(saved) = &r.resume {
        let p = &saved.provenance;
        p.check_resume(&fingerprint, backend.precision(), "the checkpoint")?;
        let gwms = saved.history.iter().map(|e| e.gwms).sum();
        let seconds = saved.history.iter().map(|e| e.seconds).sum();
        session.continue_from(p.prior(gwms, seconds));
        let done = session
            .out()
            .path("model.safetensors")
            .is_some_and(|m| m.exists());
        if saved.epoch >= s.epochs && done {
            session.tell(&format!(
                "the checkpoint has trained all {} epochs: nothing to do",
                s.epochs
            ));
            return Ok(None);
        }
    }
    let (model, start) = match &r.resume {
        Some(saved) => (
            saved.model.clone(),
            Start {
                epoch: saved.epoch,
                history: saved.history.clone(),
            },
        ),
        None => (clf.random_model(s.seed), Start::fresh()),
    };
    let (train, test) = (&r.train, r.test.as_ref());
    session.say(&format!(
        "RRR classifier: {} data, {} hidden, {} class nodes, {} edges; {} train / {} test items; |K| = {}, {} iterations per batch, β={}, Ω={}, Υ={}, Δ={}{}{} on {} ({})",
        net.data,
        net.hidden,
        net.classes,
        net.edges.len(),
        train.len(),
        test.map_or(0, |t| t.len()),
        s.batch.min(train.len()),
        s.iters_per_batch,
        s.beta,
        s.omega,
        s.upsilon,
        s.margin,
        if s.exempt > 0 {
            format!(", EE = {} exempted", s.exempt)
        } else {
            String::new()
        },
        if s.relabel > 0 {
            format!(", up to {} relabeled", s.relabel)
        } else {
            String::new()
        },
        backend.describe(),
        backend.precision()
    ));
    if start.epoch > 0 {
        session.say(&format!("resuming after epoch {}", start.epoch));
    }
    session.file("net.txt", net.to_text().as_bytes())?;
    let mut training =
        Training::new(backend, &clf, train, test, s, model)?.with_time_limit(r.time_limit);
    let fin = train::run(session, &mut training, start)?;
    let time_limited = fin.stopped == Some(Stopped::TimeLimit);
    let last = fin.history.last();
    if let Some(e) = last {
        session.tell(&format!(
            "after {} epochs: train_err {:.4}, test_err {}, batch_err {:.4}{}",
            e.epoch,
            e.train_err,
            e.test_err.map_or("-".into(), |t| format!("{t:.4}")),
            e.batch_err,
            if time_limited { " (time limit)" } else { "" }
        ));
    }
    let saved = Saved {
        net: net.clone(),
        settings: s.clone(),
        model: training.model.clone(),
        epoch: fin.epoch,
        history: fin.history.clone(),
        provenance: Provenance {
            totals: Some(session.totals()),
            fingerprint: Some(fingerprint),
            precision: Some(backend.precision()),
        },
    };
    session.file("model.safetensors", &saved.to_bytes(&clf)?)?;
    let sel = &training.selected;
    if s.exempt > 0 {
        let mut ex = sel.exempted.clone();
        ex.sort_unstable();
        let text: String = ex.iter().map(|k| format!("{k}\n")).collect();
        session.file("exempted.txt", text.as_bytes())?;
        if let (Some((h, w)), false) = (r.image_shape, ex.is_empty()) {
            let grid = ImageGrid {
                cells: ex.iter().map(|&k| Some(train.item(k))).collect(),
                shape: (h, w),
                cols: 10,
                pixels: Pixels::Clamp,
                caption: vec![
                    format!(
                        "RRR classifier: the {} training items exempted in the last epoch",
                        ex.len()
                    ),
                    "In item order (as in exempted.txt), 10 per row.".into(),
                ],
            };
            session.file("exempted.png", &grid.png()?)?;
        }
    }
    if s.relabel > 0 {
        let text: String = sel
            .relabeled
            .iter()
            .map(|(k, l)| format!("{k},{},{l}\n", train.y[*k]))
            .collect();
        session.file(
            "relabeled.csv",
            format!("item,label,new_label\n{text}").as_bytes(),
        )?;
    }
    let history = &fin.history;
    Ok(Some(serde_json::json!({
        "method": "rrr classify", "data_nodes": net.data, "hidden_nodes": net.hidden,
        "class_nodes": net.classes, "edges": net.edges.len(), "train_items": train.len(),
        "test_items": test.map_or(0, |t| t.len()), "settings": s,
        "epochs": fin.epoch, "train_err": last.map(|e| e.train_err),
        "test_err": last.and_then(|e| e.test_err), "batch_err": last.map(|e| e.batch_err),
        "best_test_err": history.iter().filter_map(|e| e.test_err).reduce(f64::min),
        "exempted_final_epoch": sel.exempted.len(), "relabeled_final_epoch": sel.relabeled.len(),
        "time_limited": time_limited, "batches_start_on_device": training.starts_on_device(),
    })))
}

/// The fingerprint of a classifier's training data.
pub fn data_fingerprint(train: &Labeled) -> String {
    fingerprint(&train.x, &train.y, train.dim)
}

/// A trained classifier as stored in `model.safetensors` and checkpoints.
#[derive(Clone, Debug)]
pub struct Saved {
    /// The net.
    pub net: Net,
    /// The settings it was trained with.
    pub settings: Settings,
    /// Weights and biases.
    pub model: Model,
    /// Epochs completed.
    pub epoch: usize,
    /// Metrics lines of the completed epochs (for resuming).
    pub history: Vec<Epoch>,
    /// The run's totals, data fingerprint and precision.
    pub provenance: Provenance,
}

impl Saved {
    /// safetensors bytes: `weights` [E], `biases` [N], `edge_src`/`edge_dst`
    /// [E] (problem edge order), metadata with the net and settings.
    pub fn to_bytes(&self, clf: &Classifier) -> Result<Vec<u8>> {
        let p = &clf.problem;
        let tensors = [
            NamedTensor {
                name: "weights".into(),
                shape: vec![p.edges()],
                data: self.model.weights.clone(),
            },
            NamedTensor {
                name: "biases".into(),
                shape: vec![p.nodes],
                data: self.model.biases.clone(),
            },
            NamedTensor {
                name: "edge_src".into(),
                shape: vec![p.edges()],
                data: p.src.iter().map(|&v| v as f64).collect(),
            },
            NamedTensor {
                name: "edge_dst".into(),
                shape: vec![p.edges()],
                data: p.dst.iter().map(|&v| v as f64).collect(),
            },
        ];
        let meta = serde_json::json!({
            "method": "rrr classify",
            "data_nodes": self.net.data, "hidden_nodes": self.net.hidden, "class_nodes": self.net.classes,
            "settings": self.settings, "epoch": self.epoch, "history": self.history,
            "inference": "forward pass y_j = sum_i x_i w_ij / omega, x_j = relu(y_j - b_j); class = argmax of y - b over class nodes",
        });
        let mut meta = meta;
        self.provenance.to_json(&mut meta);
        safetensors_bytes(&tensors, &meta)
    }

    /// Reads what [`Saved::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Self> {
        let bad = |why: String| Error::Input(format!("{what}: {why}"));
        let (tensors, meta) = read_safetensors(bytes).map_err(|e| bad(e.to_string()))?;
        let get = |name: &str| -> Result<&Vec<f64>> {
            tensors
                .get(name)
                .map(|t| &t.1)
                .ok_or_else(|| bad(format!("no tensor '{name}' (not a gradfree classifier)")))
        };
        let count = |key: &str| -> Result<usize> {
            meta.get(key)
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .ok_or_else(|| bad(format!("metadata lacks '{key}'")))
        };
        // Files before the method was recorded have none; another method's
        // file is refused whatever tensors it shares with a classifier.
        if let Some(m) = meta.get("method").and_then(|v| v.as_str()) {
            if m != "rrr classify" {
                return Err(bad(format!("a '{m}' file, not a classifier's")));
            }
        }
        let (src, dst) = (get("edge_src")?, get("edge_dst")?);
        if src.len() != dst.len() {
            return Err(bad("edge arrays differ in length".into()));
        }
        let mut edges: Vec<(u32, u32)> = src
            .iter()
            .zip(dst)
            .map(|(&s, &d)| (s as u32, d as u32))
            .collect();
        edges.sort_by_key(|&(s, d)| (d, s));
        let (data, hidden, classes) = (
            count("data_nodes")?,
            count("hidden_nodes")?,
            count("class_nodes")?,
        );
        // The node ids are 32-bit; counts beyond them (or whose sum
        // overflows) are a damaged file, not a net.
        let nodes = data
            .checked_add(hidden)
            .and_then(|n| n.checked_add(classes))
            .filter(|&n| n <= u32::MAX as usize)
            .ok_or_else(|| bad("node counts out of range".into()))?;
        if src
            .iter()
            .chain(dst)
            .any(|&v| !(v >= 0.0 && v < nodes as f64))
        {
            return Err(bad("an edge names a node out of range".into()));
        }
        let net = Net {
            data,
            hidden,
            classes,
            edges,
        };
        net.check().map_err(|e| bad(e.to_string()))?;
        let settings: Settings = serde_json::from_value(meta["settings"].clone())
            .map_err(|e| bad(format!("settings: {e}")))?;
        let history: Vec<Epoch> =
            serde_json::from_value(meta.get("history").cloned().unwrap_or_default())
                .unwrap_or_default();
        let model = Model {
            weights: get("weights")?.clone(),
            biases: get("biases")?.clone(),
        };
        if model.weights.len() != net.edges.len() || model.biases.len() != net.nodes() {
            return Err(bad("weights or biases do not match the net".into()));
        }
        // A NaN model would predict one class for everything, with exit 0.
        if !model
            .weights
            .iter()
            .chain(&model.biases)
            .all(|v| v.is_finite())
        {
            return Err(bad("weights or biases are not finite".into()));
        }
        Ok(Saved {
            net,
            settings,
            model,
            epoch: count("epoch")?,
            history,
            provenance: Provenance::from_json(&meta, what)?,
        })
    }
}

/// `predict` as a library run: classifies `data` with a trained model,
/// prints the accuracy, writes `predictions.csv` (item, predicted, label)
/// and a `summary.json` of the accuracy; returns the predictions.
pub fn run_predict(
    session: &Session,
    saved: &Saved,
    data: &Labeled,
    what: &str,
) -> Result<Vec<u32>> {
    let clf = Classifier::new(saved.net.clone(), &saved.settings)?;
    clf.check_data(data, what)?;
    let pred = clf.predict(&saved.model, data);
    let wrong = pred.iter().zip(&data.y).filter(|(p, y)| p != y).count();
    let err = wrong as f64 / data.len() as f64;
    session.tell(&format!(
        "{} items: accuracy {:.4} (error {:.4}, {} wrong)",
        data.len(),
        1.0 - err,
        err,
        wrong
    ));
    let text: String = pred
        .iter()
        .zip(&data.y)
        .enumerate()
        .map(|(k, (p, y))| format!("{k},{p},{y}\n"))
        .collect();
    session.file(
        "predictions.csv",
        format!("item,predicted,label\n{text}").as_bytes(),
    )?;
    if session.out().path("predictions.csv").is_none() && data.len() <= 20 {
        for (k, p) in pred.iter().enumerate() {
            session.say(&format!("{k}: {p}"));
        }
    }
    let summary = serde_json::json!({"method": "predict", "items": data.len(),
        "error": err, "accuracy": 1.0 - err});
    session.file(
        "summary.json",
        serde_json::to_string_pretty(&summary)
            .expect("json")
            .as_bytes(),
    )?;
    Ok(pred)
}
