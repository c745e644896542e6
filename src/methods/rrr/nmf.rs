//! RRR non-negative matrix factorization (SPEC 2.1, paper section 3):
//! one layer, code nodes C → data nodes D, `Y[k,j] ≈ Σ_i x[k,i] W[i,j]`.
//!
//! ```text
//! A: x[k,i→j] = xA[k,i] ≥ 0          (mean over out-edges, clamp at 0)
//!    w[k,i→j] = wA[i→j] ≥ 0, Σ_j wA[i→j]² = Ω²   (mean over k, clamp, norm per code node)
//! B: Σ_i x[k,i→j] w[k,i→j] = Y[k,j]  (bilinear, y fixed)
//! RRR_err² = (1/|K|) Σ (wA − wB)² + (xA − xB)²
//! recon_err² = 1/(|K||D|) Σ_{k,j} (Y[k,j] − Σ_i xA[k,i] wA[i→j])²
//! ```
//!
//! Initialization: wA uniform[0,1] normalized per code node; codes from the
//! pseudo-inverse encoder `xA[k] = relu((WᵀW)⁻¹Wᵀ Y[k])` (host, nalgebra);
//! every replica set to its consensus value.

use std::sync::Arc;

use nalgebra::DMatrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::matrix::to_csv;
use crate::engine::DeviceKind;
use crate::engine::{Backend, Local};
use crate::engine::{Consensus, IterReport, RrrEngine};
use crate::error::{Error, Result};
use crate::io::read_safetensors;
use crate::io::{NamedTensor, safetensors_bytes};
use crate::kernels::normalize_weights::normalize_group;
use crate::plot::{Axis, Figure, Format, ImageGrid, LineChart, Pixels, Series, rows_grid};
use crate::problem::{NodeKind, RrrProblem, RrrState, StepMode, WeightGroups};
use crate::train::checkpoint::{Provenance, Totals, fingerprint};
use crate::train::report::Progress;
use crate::train::{self, Batches, EpochEnd, Method, Plan, Session, Start, Stopped};

/// The linear Euclidean distance matrix `Y[i,k] = ((i − k)/(m − 1))²`.
pub fn ledm(m: usize) -> DMatrix<f64> {
    let d = (m.max(2) - 1) as f64;
    DMatrix::from_fn(m, m, |i, k| ((i as f64 - k as f64) / d).powi(2))
}

/// An NMF problem: items are the rows of `y` (K × D), factorized with `rank` codes.
#[derive(Debug)]
pub struct Nmf {
    /// The RRR graph: nodes 0..rank are codes, rank..rank+D data.
    pub problem: RrrProblem,
    /// Number of codes r.
    pub rank: usize,
    /// Data dimension D.
    pub dim: usize,
}

impl Nmf {
    /// Builds the complete bipartite graph codes → data with NMF constraints.
    pub fn new(rank: usize, dim: usize, omega: f64) -> Result<Self> {
        if rank == 0 || dim == 0 {
            return Err(Error::Input(
                "NMF needs rank ≥ 1 and data dimension ≥ 1".into(),
            ));
        }
        if !(omega > 0.0 && omega.is_finite()) {
            return Err(Error::Input(format!(
                "the weight norm Ω must be positive, got {omega}"
            )));
        }
        let edges: Vec<(u32, u32)> = (0..rank as u32)
            .flat_map(|i| (0..dim as u32).map(move |j| (i, rank as u32 + j)))
            .collect();
        let mut p = RrrProblem::from_edges(rank + dim, &edges, WeightGroups::BySource)?;
        for i in 0..rank {
            p.kind[i] = NodeKind::Nonneg;
        }
        p.clamp_weights = true;
        p.mode = StepMode::Nmf;
        p.omega = omega;
        Ok(Nmf {
            problem: p,
            rank,
            dim,
        })
    }

    /// Random non-negative weights W (rank × D), each code's row of norm Ω.
    pub fn random_weights(&self, rng: &mut ChaCha8Rng) -> DMatrix<f64> {
        let mut w = DMatrix::from_fn(self.rank, self.dim, |_, _| rng.random_range(0.0..1.0));
        for i in 0..self.rank {
            let mut row: Vec<f64> = w.row(i).iter().copied().collect();
            normalize_group(&mut row, true, self.problem.omega);
            for j in 0..self.dim {
                w[(i, j)] = row[j];
            }
        }
        w
    }

    /// Codes from the pseudo-inverse encoder: `relu((W Wᵀ)⁻¹ W Y[k])` per item (K × rank).
    pub fn encode(&self, w: &DMatrix<f64>, y: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        // Data ≈ X W (K×r · r×D); least squares X = Y Wᵀ (W Wᵀ)⁻¹.
        let gram = w * w.transpose();
        // nalgebra's SVD does not return on non-finite entries: a diverged
        // W (a huge omega, a damaged checkpoint) is an error here instead.
        if !gram.iter().all(|v| v.is_finite()) {
            return Err(Error::Numeric(
                "encoder: the weights W hold non-finite values (the run diverged)".into(),
            ));
        }
        let inv = gram
            .clone()
            .cholesky()
            .map(|c| c.inverse())
            .or_else(|| gram.pseudo_inverse(1e-12).ok())
            .ok_or_else(|| Error::Numeric("encoder: W Wᵀ is not invertible".into()))?;
        let x = y * w.transpose() * inv;
        Ok(x.map(|v| v.max(0.0)))
    }

    /// The RRR state with every replica at the given consensus (x: K × r, w: r × D).
    pub fn state(&self, x: &DMatrix<f64>, w: &DMatrix<f64>, y: &DMatrix<f64>) -> RrrState {
        let p = &self.problem;
        let kk = y.nrows();
        let mut s = RrrState::zeros(p, kk);
        for e in 0..p.edges() {
            let (i, j) = (p.src[e] as usize, p.dst[e] as usize - self.rank);
            for k in 0..kk {
                s.x[e * kk + k] = x[(k, i)];
                s.w[e * kk + k] = w[(i, j)];
            }
        }
        for j in 0..self.dim {
            for k in 0..kk {
                s.y[(self.rank + j) * kk + k] = y[(k, j)];
            }
        }
        s
    }

    /// Consensus codes (K × r) and weights (r × D) from an A-projection.
    pub fn factors(&self, c: &Consensus, items: usize) -> (DMatrix<f64>, DMatrix<f64>) {
        let p = &self.problem;
        let x = DMatrix::from_fn(items, self.rank, |k, i| c.x[i * items + k]);
        let mut w = DMatrix::zeros(self.rank, self.dim);
        for e in 0..p.edges() {
            w[(p.src[e] as usize, p.dst[e] as usize - self.rank)] = c.w[e];
        }
        (x, w)
    }
}

/// recon_err = rms of Y − X W.
pub fn recon_err(y: &DMatrix<f64>, x: &DMatrix<f64>, w: &DMatrix<f64>) -> f64 {
    let r = y - x * w;
    (r.norm_squared() / (y.len().max(1)) as f64).sqrt()
}

/// Settings of one exact-NMF solve.
#[derive(Clone, Debug)]
pub struct SolveSettings {
    /// β.
    pub beta: f64,
    /// Iteration cap.
    pub max_iter: usize,
    /// Success: RRR_err < tol.
    pub tol: f64,
    /// How often the GPU backend reads RRR_err back.
    pub check_every: usize,
    /// Iterations per engine call (progress granularity; the error series is kept whole).
    pub chunk: usize,
}

/// Result of one random start.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunResult {
    /// Seed of this start.
    pub seed: u64,
    /// RRR_err < tol reached.
    pub solved: bool,
    /// Iterations used.
    pub iterations: usize,
    /// Final RRR_err.
    pub rrr_err: f64,
    /// Final recon_err of the consensus factors.
    pub recon_err: f64,
    /// GWMs of this run.
    pub gwms: f64,
    /// Wall seconds.
    pub seconds: f64,
    /// Bilinear projections with no root (reported, never silent).
    pub degenerate: u64,
    /// The smallest RRR_err of the run and the iteration that reached it
    /// (how close an unsolved run came).
    pub best_rrr_err: f64,
    /// 1-based iteration of `best_rrr_err`.
    pub best_iteration: usize,
    /// RRR_err after every iteration.
    #[serde(skip)]
    pub series: Vec<f64>,
    /// Consensus codes (K × rank).
    #[serde(skip)]
    pub x: DMatrix<f64>,
    /// Consensus weights (rank × D).
    #[serde(skip)]
    pub w: DMatrix<f64>,
}

impl RunResult {
    /// The result as numbers, to send to other processes.
    fn to_wire(&self) -> Vec<f64> {
        let mut v = vec![
            self.seed as f64,
            self.solved as u8 as f64,
            self.iterations as f64,
            self.rrr_err,
            self.recon_err,
            self.gwms,
            self.seconds,
            self.degenerate as f64,
            self.best_rrr_err,
            self.best_iteration as f64,
            self.series.len() as f64,
            self.x.nrows() as f64,
            self.x.ncols() as f64,
            self.w.nrows() as f64,
            self.w.ncols() as f64,
        ];
        v.extend(&self.series);
        v.extend(self.x.iter());
        v.extend(self.w.iter());
        v
    }

    /// Results sent by [`RunResult::to_wire`], one after another.
    fn from_wire(mut v: &[f64]) -> Vec<RunResult> {
        let mut out = vec![];
        while v.len() >= 15 {
            let n = |i: usize| v[i] as usize;
            let (len, xr, xc, wr, wc) = (n(10), n(11), n(12), n(13), n(14));
            let body = &v[15..];
            let (series, rest) = body.split_at(len);
            let (x, rest) = rest.split_at(xr * xc);
            let (w, rest) = rest.split_at(wr * wc);
            out.push(RunResult {
                seed: v[0] as u64,
                solved: v[1] != 0.0,
                iterations: n(2),
                rrr_err: v[3],
                recon_err: v[4],
                gwms: v[5],
                seconds: v[6],
                degenerate: v[7] as u64,
                best_rrr_err: v[8],
                best_iteration: n(9),
                series: series.to_vec(),
                x: DMatrix::from_column_slice(xr, xc, x),
                w: DMatrix::from_column_slice(wr, wc, w),
            });
            v = rest;
        }
        out
    }
}

/// One random start of exact NMF of `y` (K × D) on `backend`.
pub fn solve(
    backend: &Backend,
    nmf: &Nmf,
    y: &DMatrix<f64>,
    seed: u64,
    s: &SolveSettings,
    mut on_progress: impl FnMut(usize),
) -> Result<RunResult> {
    let t0 = std::time::Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let w0 = nmf.random_weights(&mut rng);
    let x0 = nmf.encode(&w0, y)?;
    let kk = y.nrows();
    let mut engine: Box<dyn RrrEngine> = backend.rrr_engine(&nmf.problem, kk)?;
    engine.load(&nmf.state(&x0, &w0, y))?;
    let mut total = IterReport::default();
    while total.iterations < s.max_iter && !total.converged {
        let n = s.chunk.min(s.max_iter - total.iterations);
        let rep = engine.iterate(n, s.beta, s.tol, s.check_every)?;
        total.iterations += rep.iterations;
        total.errors.extend(rep.errors);
        total.degenerate += rep.degenerate;
        total.converged = rep.converged;
        on_progress(total.iterations);
    }
    let c = engine.consensus()?;
    let (x, w) = nmf.factors(&c, kk);
    let recon_err = recon_err(y, &x, &w);
    Ok(RunResult {
        seed,
        // Factors that overflowed (a huge omega) solve nothing, whatever
        // RRR_err says.
        solved: total.converged && recon_err.is_finite(),
        iterations: total.iterations,
        rrr_err: total.errors.last().copied().unwrap_or(f64::NAN),
        recon_err,
        gwms: super::gwms(total.iterations as u64, kk, nmf.problem.edges()),
        seconds: t0.elapsed().as_secs_f64(),
        degenerate: total.degenerate,
        best_rrr_err: best(&total.errors).0,
        best_iteration: best(&total.errors).1,
        series: total.errors,
        x,
        w,
    })
}

/// Non-negative least-squares codes for every item given W (rank × D):
/// `argmin_{X ≥ 0} |Y − X W|`, by accelerated projected gradient (FISTA)
/// from the pseudo-inverse encoder's codes. Used to report recon_err over
/// the whole data set.
pub fn nnls_codes(
    nmf: &Nmf,
    w: &DMatrix<f64>,
    y: &DMatrix<f64>,
    iterations: usize,
) -> Result<DMatrix<f64>> {
    let g = w * w.transpose();
    let lip = g.clone().symmetric_eigenvalues().max().max(1e-300);
    let ywt = y * w.transpose();
    let mut x = nmf.encode(w, y)?;
    let mut z = x.clone();
    let mut t = 1.0f64;
    for _ in 0..iterations {
        let grad = &z * &g - &ywt;
        let next = (&z - grad / lip).map(|v| v.max(0.0));
        let t_next = (1.0 + (1.0 + 4.0 * t * t).sqrt()) / 2.0;
        z = &next + (&next - &x) * ((t - 1.0) / t_next);
        x = next;
        t = t_next;
    }
    Ok(x)
}

/// Settings of online NMF of a data set.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OnlineSettings {
    /// Items per batch.
    pub batch: usize,
    /// Passes over the data.
    pub epochs: usize,
    /// RRR iterations per batch.
    pub iters_per_batch: usize,
    /// β.
    pub beta: f64,
    /// Seed (initial weights, shuffles).
    pub seed: u64,
}

/// One epoch's figures.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Epoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// rms of Y − X W over the whole data (X by NNLS given W).
    pub recon_err: f64,
    /// Mean RRR_err after each batch's first iteration.
    pub rrr_err_start: f64,
    /// Mean RRR_err after each batch's last iteration.
    pub rrr_err_end: f64,
    /// GWMs of the epoch.
    pub gwms: f64,
    /// Wall seconds of the epoch.
    pub seconds: f64,
}

/// Online RRR NMF as a [`Method`] of the loop: batches warm-start from the
/// last consensus weights; the codes of each batch start from the
/// pseudo-inverse encoder. Each epoch reshuffles the previous order with
/// one seeded stream (which also drew the first weights), and keeps the
/// last, smaller batch.
pub struct Online<'a> {
    backend: &'a Backend,
    nmf: &'a Nmf,
    y: &'a DMatrix<f64>,
    s: &'a OnlineSettings,
    rng: ChaCha8Rng,
    /// The consensus weights (rank × D) after the latest batch.
    pub w: DMatrix<f64>,
    /// One engine per distinct batch size (full batches, and the remainder).
    engines: Vec<(usize, Box<dyn RrrEngine>)>,
    order: Vec<usize>,
    sums: (f64, f64, usize, f64),
    time_limit: Option<f64>,
    fingerprint: String,
}

impl<'a> Online<'a> {
    /// Checks the settings and draws the first weights, or takes them,
    /// the item order and the random stream's place from a checkpoint.
    pub fn new(
        backend: &'a Backend,
        nmf: &'a Nmf,
        y: &'a DMatrix<f64>,
        s: &'a OnlineSettings,
        from: Option<&OnlineCheckpoint>,
    ) -> Result<Self> {
        if s.batch == 0 || s.epochs == 0 || s.iters_per_batch == 0 {
            return Err(Error::Input(
                "the batch, the epochs and the iterations per batch must be at least 1".into(),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
        let (w, order) = match from {
            Some(c) => {
                if c.w.shape() != (nmf.rank, nmf.dim) || c.order.len() != y.nrows() {
                    return Err(Error::Input(format!(
                        "the checkpoint's weights ({}×{}) and order ({} items) do not fit rank {} and {} items × {}",
                        c.w.nrows(),
                        c.w.ncols(),
                        c.order.len(),
                        nmf.rank,
                        y.nrows(),
                        nmf.dim
                    )));
                }
                rng.set_word_pos(c.sampler_pos);
                (c.w.clone(), c.order.clone())
            }
            None => (nmf.random_weights(&mut rng), (0..y.nrows()).collect()),
        };
        Ok(Online {
            backend,
            nmf,
            y,
            s,
            rng,
            w,
            engines: vec![],
            order,
            sums: (0.0, 0.0, 0, 0.0),
            time_limit: None,
            fingerprint: fingerprint(y.as_slice(), &[], y.nrows()),
        })
    }

    /// Stops after the epoch during which `seconds` have passed.
    pub fn with_time_limit(mut self, seconds: Option<f64>) -> Self {
        self.time_limit = seconds;
        self
    }
}

/// Where online NMF stands after an epoch: what a resumed run needs to go
/// on exactly as an uninterrupted one would (`checkpoint.safetensors`).
#[derive(Clone, Debug, PartialEq)]
pub struct OnlineCheckpoint {
    /// Number of codes.
    pub rank: usize,
    /// Ω.
    pub omega: f64,
    /// Training settings.
    pub settings: OnlineSettings,
    /// Consensus weights (rank × D).
    pub w: DMatrix<f64>,
    /// The item order of the last epoch (each epoch reshuffles it).
    pub order: Vec<usize>,
    /// Word position of the seeded stream (weights, then the shuffles).
    pub sampler_pos: u128,
    /// Epochs trained.
    pub epoch: usize,
    /// Their records.
    pub history: Vec<Epoch>,
    /// The run's totals, data fingerprint and precision.
    pub provenance: Provenance,
}

impl OnlineCheckpoint {
    /// safetensors bytes: `weights` [rank × D], `order` [n]; the rest in
    /// the metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let tensors = [
            NamedTensor {
                name: "weights".into(),
                shape: vec![self.w.nrows(), self.w.ncols()],
                data: self.w.transpose().iter().copied().collect(),
            },
            NamedTensor {
                name: "order".into(),
                shape: vec![self.order.len()],
                data: self.order.iter().map(|&v| v as f64).collect(),
            },
        ];
        let mut meta = serde_json::json!({
            "method": "rrr nmf online checkpoint", "rank": self.rank, "omega": self.omega,
            "settings": self.settings, "epoch": self.epoch,
            // u128 does not fit a JSON number.
            "sampler_pos": self.sampler_pos.to_string(), "history": self.history,
        });
        self.provenance.to_json(&mut meta);
        safetensors_bytes(&tensors, &meta)
    }

    /// Reads what [`OnlineCheckpoint::to_bytes`] wrote.
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<Self> {
        let bad = |why: String| Error::Input(format!("{what}: {why}"));
        let (tensors, meta) = read_safetensors(bytes).map_err(|e| bad(e.to_string()))?;
        if meta.get("method").and_then(|v| v.as_str()) != Some("rrr nmf online checkpoint") {
            return Err(bad("not a checkpoint of online RRR NMF".into()));
        }
        let field = |key: &str| meta.get(key).cloned().unwrap_or_default();
        let parse = |key: &str| bad(format!("metadata '{key}' is missing or malformed"));
        let rank: usize = serde_json::from_value(field("rank")).map_err(|_| parse("rank"))?;
        let omega: f64 = serde_json::from_value(field("omega")).map_err(|_| parse("omega"))?;
        if !(omega.is_finite() && omega > 0.0) {
            return Err(parse("omega"));
        }
        let settings = serde_json::from_value(field("settings")).map_err(|_| parse("settings"))?;
        let epoch = serde_json::from_value(field("epoch")).map_err(|_| parse("epoch"))?;
        let history = serde_json::from_value(field("history")).map_err(|_| parse("history"))?;
        let sampler_pos = meta
            .get("sampler_pos")
            .and_then(|v| v.as_str())
            .and_then(|t| t.parse::<u128>().ok())
            .ok_or_else(|| parse("sampler_pos"))?;
        let (wshape, wv) = tensors.get("weights").ok_or_else(|| parse("weights"))?;
        let (_, ov) = tensors.get("order").ok_or_else(|| parse("order"))?;
        if wshape.len() != 2
            || wshape[0] != rank
            || wshape[0].checked_mul(wshape[1]) != Some(wv.len())
            || !wv.iter().all(|v| v.is_finite())
        {
            return Err(parse("weights"));
        }
        let n = ov.len();
        let order: Vec<usize> = ov.iter().map(|&v| v as usize).collect();
        let mut seen = vec![false; n];
        for &k in &order {
            if k >= n || std::mem::replace(&mut seen[k], true) {
                return Err(parse("order"));
            }
        }
        Ok(OnlineCheckpoint {
            rank,
            omega,
            settings,
            w: DMatrix::from_row_slice(wshape[0], wshape[1], wv),
            order,
            sampler_pos,
            epoch,
            history,
            provenance: Provenance::from_json(&meta, what)?,
        })
    }
}

impl Method for Online<'_> {
    type Record = Epoch;

    fn plan(&self) -> Plan {
        Plan {
            items: self.y.nrows(),
            batches: Batches::WithRemainder(self.s.batch.min(self.y.nrows())),
            epochs: self.s.epochs,
            time_limit: self.time_limit,
        }
    }

    fn checkpoint(&self, history: &[Epoch], totals: &Totals) -> Result<Option<Vec<u8>>> {
        let c = OnlineCheckpoint {
            rank: self.nmf.rank,
            omega: self.nmf.problem.omega,
            settings: self.s.clone(),
            w: self.w.clone(),
            order: self.order.clone(),
            sampler_pos: self.rng.get_word_pos(),
            epoch: history.last().map_or(0, |e| e.epoch),
            history: history.to_vec(),
            provenance: Provenance {
                totals: Some(*totals),
                fingerprint: Some(self.fingerprint.clone()),
                precision: Some(self.backend.precision()),
            },
        };
        c.to_bytes().map(Some)
    }

    fn order(&mut self, _epoch: usize) -> Vec<usize> {
        self.sums = (0.0, 0.0, 0, 0.0);
        for i in (1..self.order.len()).rev() {
            self.order.swap(i, self.rng.random_range(0..=i));
        }
        self.order.clone()
    }

    fn batch(&mut self, _epoch: usize, _index: usize, chunk: &[usize]) -> Result<()> {
        let (nmf, y) = (self.nmf, self.y);
        let whole = chunk.len();
        // This process's slice of the batch (all of it in a world of one;
        // possibly none of a last batch smaller than the world).
        let chunk = &chunk[self.backend.collective().slice_of(whole)];
        let kk = chunk.len();
        let yb = DMatrix::from_fn(kk, y.ncols(), |k, j| y[(chunk[k], j)]);
        let x0 = nmf.encode(&self.w, &yb)?;
        let pos = match self.engines.iter().position(|(size, _)| *size == kk) {
            Some(p) => p,
            None => {
                let engine = self.backend.rrr_engine(&nmf.problem, kk)?;
                self.engines.push((kk, engine));
                self.engines.len() - 1
            }
        };
        let engine = &mut self.engines[pos].1;
        engine.load(&nmf.state(&x0, &self.w, &yb))?;
        let n = self.s.iters_per_batch;
        let rep = engine.iterate(n, self.s.beta, 0.0, n)?;
        self.sums.0 += rep.errors.first().copied().unwrap_or(0.0);
        self.sums.1 += rep.errors.last().copied().unwrap_or(0.0);
        self.sums.2 += 1;
        self.sums.3 += super::gwms(rep.iterations as u64, whole, nmf.problem.edges());
        let c = engine.consensus()?;
        self.w = nmf.factors(&c, kk).1;
        Ok(())
    }

    fn end_epoch(&mut self, epoch: usize, seconds: f64) -> Result<EpochEnd<Epoch>> {
        let (start, end, batches, gwms) = self.sums;
        let x = nnls_codes(self.nmf, &self.w, self.y, 200)?;
        let record = Epoch {
            epoch,
            recon_err: recon_err(self.y, &x, &self.w),
            rrr_err_start: start / batches as f64,
            rrr_err_end: end / batches as f64,
            gwms,
            seconds,
        };
        Ok(EpochEnd::next(record, gwms))
    }

    fn line(&self, e: &Epoch) -> String {
        format!(
            "epoch {:>3}/{}: recon_err {:.5}, RRR_err {:.4} → {:.4}, {:.4} GWMs, {:.2} s",
            e.epoch, self.s.epochs, e.recon_err, e.rrr_err_start, e.rrr_err_end, e.gwms, e.seconds
        )
    }
}

/// Online RRR NMF of `y` (K × D) in `session`; returns the final weights
/// (rank × D) and the per-epoch figures.
pub fn train_online(
    backend: &Backend,
    session: &mut Session,
    nmf: &Nmf,
    y: &DMatrix<f64>,
    s: &OnlineSettings,
) -> Result<(DMatrix<f64>, Vec<Epoch>)> {
    let mut online = Online::new(backend, nmf, y, s, None)?;
    let fin = train::run(session, &mut online, Start::fresh())?;
    Ok((online.w, fin.history))
}

/// `rrr nmf --data` as a library run: online NMF of the rows of `y`
/// (named `what` in messages), then NNLS codes of every item;
/// writes `model.safetensors`, `weights.csv`, `codes.csv` and, for images,
/// `features.png` and `reconstructions.png`; returns the summary's fields.
#[allow(clippy::too_many_arguments)]
pub fn run_online(
    backend: &Backend,
    session: &mut Session,
    r: &OnlineRun,
) -> Result<Option<serde_json::Value>> {
    let (y, what, rank, omega, s) = (&r.y, r.what.as_str(), r.rank, r.omega, &r.settings);
    let (n, d) = y.shape();
    let problem = Nmf::new(rank, d, omega)?;
    let mut online =
        Online::new(backend, &problem, y, s, r.resume.as_ref())?.with_time_limit(r.time_limit);
    let start = match &r.resume {
        Some(c) => {
            let p = &c.provenance;
            p.check_resume(&online.fingerprint, backend.precision(), "the checkpoint")?;
            let gwms = c.history.iter().map(|e| e.gwms).sum();
            let seconds = c.history.iter().map(|e| e.seconds).sum();
            session.continue_from(p.prior(gwms, seconds));
            let done = session
                .out()
                .path("model.safetensors")
                .is_some_and(|m| m.exists());
            if c.epoch >= s.epochs && done {
                session.tell(&format!(
                    "the checkpoint has trained all {} epochs: nothing to do",
                    s.epochs
                ));
                return Ok(None);
            }
            Start {
                epoch: c.epoch,
                history: c.history.clone(),
            }
        }
        None => Start::fresh(),
    };
    session.say(&format!(
        "RRR NMF of {what} ({n} items × {d}), rank {rank}, β={}, Ω={omega}, batches of {}, {} iterations per batch, {} epochs on {} ({})",
        s.beta,
        s.batch.min(n),
        s.iters_per_batch,
        s.epochs,
        backend.describe(),
        backend.precision()
    ));
    if start.epoch > 0 {
        session.say(&format!("resuming after epoch {}", start.epoch));
    }
    let fin = train::run(session, &mut online, start)?;
    let (w, stats) = (online.w, fin.history);
    let codes = nnls_codes(&problem, &w, y, 200)?;
    let last = stats.last().map(|e| e.recon_err).unwrap_or(f64::NAN);
    if !last.is_finite() {
        return Err(Error::Numeric(format!(
            "recon_err is {last} after {} epochs: the data's scale overflows the working precision",
            stats.len()
        )));
    }
    let time_limited = fin.stopped == Some(Stopped::TimeLimit);
    session.tell(&format!(
        "recon_err {last:.5} after {} epochs{}",
        stats.len(),
        if time_limited { " (time limit)" } else { "" }
    ));
    session.file(
        "model.safetensors",
        &online_model_bytes(&codes, &w, omega, s)?,
    )?;
    session.file("weights.csv", to_csv(&w).as_bytes())?;
    session.file("codes.csv", to_csv(&codes).as_bytes())?;
    if let Some((h, wd)) = r.image_shape {
        let features: Vec<Vec<f64>> = (0..rank)
            .map(|i| w.row(i).iter().copied().collect())
            .collect();
        let grid = ImageGrid {
            cells: features.iter().map(|f| Some(f.as_slice())).collect(),
            shape: (h, wd),
            cols: 8,
            pixels: Pixels::PerImageMax,
            caption: vec![
                format!(
                    "RRR NMF: the {rank} features (rows of the weights), each scaled to its own maximum"
                ),
                "Feature 1 at the top left, then in order, 8 per row.".into(),
            ],
        };
        session.file("features.png", &grid.png()?)?;
        let recon = &codes * &w;
        let sample = n.min(16);
        // One grey scale for data and reconstructions: the data's maximum.
        let top = y.max().max(1e-300);
        let rows = |m: &DMatrix<f64>| -> Vec<f64> {
            (0..sample)
                .flat_map(|k| m.row(k).iter().map(|x| x / top).collect::<Vec<_>>())
                .collect()
        };
        let (data, rec) = (rows(y), rows(&recon));
        let grid = rows_grid(
            "RRR NMF: data items and their reconstructions (codes × weights), scaled by the data's maximum",
            &[
                ("data items", &data),
                ("their reconstructions, column by column", &rec),
            ],
            (h, wd),
            sample,
            16,
        );
        session.file("reconstructions.png", &grid.png()?)?;
    }
    Ok(Some(serde_json::json!({
        "method": "rrr nmf online", "data": what, "items": n, "dim": d,
        "rank": rank, "beta": s.beta, "omega": omega, "batch": s.batch.min(n), "epochs": stats.len(),
        "iters_per_batch": s.iters_per_batch, "recon_err": last, "time_limited": time_limited,
    })))
}

/// The `model.safetensors` of online NMF: `codes` (items × rank) and
/// `weights` (rank × D), with the rank, β, Ω and seed in the metadata.
pub fn online_model_bytes(
    codes: &DMatrix<f64>,
    w: &DMatrix<f64>,
    omega: f64,
    s: &OnlineSettings,
) -> Result<Vec<u8>> {
    let (n, rank, d) = (codes.nrows(), w.nrows(), w.ncols());
    let tensors = [
        NamedTensor {
            name: "codes".into(),
            shape: vec![n, rank],
            data: codes.transpose().iter().copied().collect(),
        },
        NamedTensor {
            name: "weights".into(),
            shape: vec![rank, d],
            data: w.transpose().iter().copied().collect(),
        },
    ];
    let meta = serde_json::json!({
        "method": "rrr nmf online", "rank": rank, "beta": s.beta, "omega": omega, "seed": s.seed,
        "layout": "data[k][j] = sum_i codes[k][i] * weights[i][j]",
    });
    safetensors_bytes(&tensors, &meta)
}

/// What `rrr nmf --data` factorizes.
#[derive(Clone, Debug)]
pub struct OnlineRun {
    /// The data (items × D), non-negative.
    pub y: DMatrix<f64>,
    /// The data's name in messages and the summary.
    pub what: String,
    /// Number of codes.
    pub rank: usize,
    /// Ω.
    pub omega: f64,
    /// Training settings.
    pub settings: OnlineSettings,
    /// Items are images of this shape (for the PNGs).
    pub image_shape: Option<(usize, usize)>,
    /// Stop after the epoch during which this many seconds have passed.
    pub time_limit: Option<f64>,
    /// Go on from this checkpoint.
    pub resume: Option<OnlineCheckpoint>,
}

/// The known nonnegative rank and a working Ω of the LEDM for m = 6, 8,
/// 12, 16 (SPEC 2.1, the paper's table).
pub fn ledm_defaults(m: usize) -> Option<(usize, f64)> {
    match m {
        6 => Some((5, 0.6)),
        8 => Some((6, 0.7)),
        12 => Some((7, 0.8)),
        16 => Some((8, 0.9)),
        _ => None,
    }
}

/// The paper's mean work per solve of the LEDM (GWMs; Table 1: m = 6, 8,
/// 12, 16), interpolated log-linearly in m between those and extrapolated
/// beyond them with the slope of the last pair.
pub fn paper_ledm_gwms(m: usize) -> f64 {
    const TABLE: [(f64, f64); 4] = [(6.0, 0.02), (8.0, 0.61), (12.0, 6.27), (16.0, 41.52)];
    let m = m as f64;
    let seg = TABLE
        .windows(2)
        .find(|w| m <= w[1].0)
        .unwrap_or(&TABLE[2..4]);
    let ((m0, g0), (m1, g1)) = (seg[0], seg[1]);
    let slope = (g1.ln() - g0.ln()) / (m1.ln() - m0.ln());
    (g0.ln() + slope * (m.ln() - m0.ln())).exp()
}

/// The default iteration cap of one LEDM start: ten times the paper's mean
/// work per solve for this m (so a start is stopped only far beyond the
/// instance's typical cost), at least 10⁵.
pub fn ledm_default_cap(m: usize, rank: usize) -> usize {
    let per_iteration = (m * rank * m).max(1) as f64 * 1e-9;
    ((10.0 * paper_ledm_gwms(m) / per_iteration).ceil() as usize).max(100_000)
}

/// What `rrr nmf --ledm` solves.
#[derive(Clone, Debug)]
pub struct LedmRun {
    /// The matrix size m.
    pub m: usize,
    /// Number of codes.
    pub rank: usize,
    /// Ω.
    pub omega: f64,
    /// Random starts (seeds `seed`, `seed + 1`, …).
    pub runs: usize,
    /// Starts solved together as one batched problem (0: all of them on a
    /// GPU, one at a time on the CPU).
    pub parallel_runs: usize,
    /// Seed of the first start.
    pub seed: u64,
    /// β, the iteration cap and the tolerance.
    pub solve: SolveSettings,
}

/// `rrr_err.png` and `.svg`: every start's RRR error against its
/// iterations (both log scales, at most 2000 points per start) and the
/// tolerance that counts as solved.
fn rrr_err_chart(
    session: &Session,
    r: &LedmRun,
    results: &[RunResult],
    backend: &Backend,
) -> Result<()> {
    let mut series: Vec<Series> = results
        .iter()
        .map(|res| {
            // Log-spaced samples: both axes are logarithmic.
            let n = res.series.len();
            let mut at: Vec<usize> = (0..2000)
                .map(|k| ((n as f64).powf(k as f64 / 1999.0) as usize).clamp(1, n.max(1)) - 1)
                .collect();
            at.dedup();
            Series {
                name: if res.solved {
                    format!("seed {}: solved at {}", res.seed, res.iterations)
                } else {
                    format!("seed {}: not solved", res.seed)
                },
                points: at
                    .iter()
                    .filter(|&&i| i < n)
                    .map(|&i| ((i + 1) as f64, res.series[i]))
                    .collect(),
            }
        })
        .collect();
    let last = results
        .iter()
        .map(|r| r.series.len())
        .max()
        .unwrap_or(1)
        .max(1);
    series.push(Series {
        name: format!("tolerance {:e}", r.solve.tol),
        points: vec![(1.0, r.solve.tol), (last as f64, r.solve.tol)],
    });
    let chart = LineChart {
        title: format!(
            "RRR NMF of the LEDM, m = {}, rank {}: RRR error per iteration",
            r.m, r.rank
        ),
        subtitle: format!(
            "β = {}, Ω = {}; {}, {}",
            r.solve.beta,
            r.omega,
            backend.describe(),
            backend.precision()
        ),
        x: Axis {
            label: "iteration".into(),
            log: true,
        },
        y: Axis {
            label: "RRR error".into(),
            log: true,
        },
        series,
    };
    for f in [Format::Png, Format::Svg] {
        session.file(&format!("rrr_err.{}", f.ext()), &chart.render(f)?)?;
    }
    Ok(())
}

/// `rrr nmf --ledm` as a library run: independent random starts of exact
/// NMF of the LEDM, one metrics line per start, `model.safetensors` with
/// the factors of the last solved start (or the last start when none
/// solved); returns the summary's own fields.
pub fn run_ledm(
    backend: &Backend,
    session: &mut Session,
    r: &LedmRun,
) -> Result<serde_json::Value> {
    let (m, rank, omega, s) = (r.m, r.rank, r.omega, &r.solve);
    let y = ledm(m);
    let problem = Nmf::new(rank, m, omega)?;
    session.say(&format!(
        "RRR NMF of LEDM m={m}, rank {rank}, β={}, Ω={omega}, tol {:e}, {} runs of ≤ {} iterations on {} ({})",
        s.beta,
        s.tol,
        r.runs,
        s.max_iter,
        backend.describe(),
        backend.precision()
    ));
    let per_batch = match r.parallel_runs {
        0 if backend.kind() == DeviceKind::Gpu => r.runs,
        0 => 1,
        n => n.min(r.runs),
    };
    let seeds: Vec<u64> = (0..r.runs as u64).map(|k| r.seed + k).collect();
    // The starts are independent: each process solves a slice of them on
    // its own (a world of one for its engines), and all results meet.
    let col = backend.collective_handle();
    let seeds = &seeds[col.slice_of(seeds.len())];
    let backend = &backend.clone().with_collective(Arc::new(Local));
    let mut results = vec![];
    for group in seeds.chunks(per_batch) {
        let mut bar = Progress::new(
            s.max_iter as u64,
            session.quiet(),
            &format!("starts {}..", group[0]),
        );
        let rs = if group.len() == 1 {
            vec![solve(backend, &problem, &y, group[0], s, |i| {
                bar.set(i as u64)
            })?]
        } else {
            solve_batched(backend, rank, omega, &y, group, s, |i| bar.set(i as u64))?
        };
        bar.finish();
        results.extend(rs);
    }
    if col.world() > 1 {
        let mine: Vec<f64> = results.iter().flat_map(RunResult::to_wire).collect();
        results = RunResult::from_wire(&col.all_gather_f64(&mine)?);
    }
    let mut best = None;
    for (run, res) in results.iter().enumerate() {
        session.add_gwms(res.gwms);
        session.say(&format!(
            "run {:>3} (seed {}): {} after {} iterations, RRR_err {:.3e}, recon_err {:.3e}, {:.4} GWMs, {:.3} s{}",
            run + 1,
            res.seed,
            if res.solved { "solved" } else { "NOT solved" },
            res.iterations,
            res.rrr_err,
            res.recon_err,
            res.gwms,
            res.seconds,
            if res.degenerate > 0 {
                format!(", {} degenerate projections", res.degenerate)
            } else {
                String::new()
            }
        ));
        if !res.solved {
            session.say(&format!(
                "    closest: RRR_err {:.3e} at iteration {} (tol {:e}); the cap of {} iterations may be too few for this start",
                res.best_rrr_err, res.best_iteration, s.tol, s.max_iter
            ));
        }
        let stride = (res.series.len() / 1000).max(1);
        let series: Vec<f64> = res.series.iter().step_by(stride).copied().collect();
        session.metric(&serde_json::json!({
            "run": run + 1, "seed": res.seed, "solved": res.solved, "iterations": res.iterations,
            "rrr_err": res.rrr_err, "recon_err": res.recon_err, "gwms": res.gwms, "seconds": res.seconds,
            "degenerate": res.degenerate, "best_rrr_err": res.best_rrr_err,
            "best_iteration": res.best_iteration,
            "rrr_err_series_stride": stride, "rrr_err_series": series,
        }))?;
        if res.solved || results[..run].iter().all(|p| !p.solved) {
            best = Some(res);
        }
    }
    rrr_err_chart(session, r, &results, backend)?;
    let solved: Vec<&RunResult> = results.iter().filter(|r| r.solved).collect();
    let mut its: Vec<usize> = solved.iter().map(|r| r.iterations).collect();
    let mean = (!its.is_empty()).then(|| its.iter().sum::<usize>() as f64 / its.len() as f64);
    let med = median(&mut its);
    session.tell(&format!(
        "solved {}/{} ({:.0}%); iterations of solved runs: median {}, mean {}",
        solved.len(),
        results.len(),
        100.0 * solved.len() as f64 / results.len() as f64,
        med.map_or("-".into(), |v| format!("{v:.0}")),
        mean.map_or("-".into(), |v| format!("{v:.0}"))
    ));
    if let Some(b) = best {
        // The factors of the last solved run (or of the last run when none solved).
        let tensors = [
            NamedTensor {
                name: "codes".into(),
                shape: vec![b.x.nrows(), b.x.ncols()],
                data: b.x.transpose().iter().copied().collect(),
            },
            NamedTensor {
                name: "weights".into(),
                shape: vec![b.w.nrows(), b.w.ncols()],
                data: b.w.transpose().iter().copied().collect(),
            },
        ];
        let meta = serde_json::json!({
            "method": "rrr nmf", "ledm": m, "rank": rank, "beta": s.beta, "omega": omega,
            "seed": b.seed, "layout": "data[k][j] = sum_i codes[k][i] * weights[i][j]",
        });
        session.file("model.safetensors", &safetensors_bytes(&tensors, &meta)?)?;
    }
    Ok(serde_json::json!({
        "method": "rrr nmf", "ledm": m, "rank": rank, "beta": s.beta, "omega": omega, "tol": s.tol,
        "max_iter": s.max_iter, "runs": results.len(), "solved": solved.len(),
        "success_rate": solved.len() as f64 / results.len() as f64,
        "median_iterations": med, "mean_iterations": mean,
    }))
}

/// The smallest value of an error series and its 1-based iteration.
fn best(series: &[f64]) -> (f64, usize) {
    series
        .iter()
        .enumerate()
        .fold((f64::NAN, 0), |(b, i), (k, &e)| {
            if b.is_nan() || e < b {
                (e, k + 1)
            } else {
                (b, i)
            }
        })
}

/// The median of counts (None when empty).
fn median(v: &mut [usize]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    })
}

/// Several random starts of exact NMF of `y` solved together as one RRR
/// problem: the disjoint union of one graph per start, each start's
/// RRR_err tracked as its own error group. Small problems (LEDM) then fill
/// a device; every start stops counting at its own solve. Start `a` uses
/// seed `seeds[a]` and is identical in exact arithmetic to [`solve`] with
/// that seed.
pub fn solve_batched(
    backend: &Backend,
    rank: usize,
    omega: f64,
    y: &DMatrix<f64>,
    seeds: &[u64],
    s: &SolveSettings,
    mut on_progress: impl FnMut(usize),
) -> Result<Vec<RunResult>> {
    let t0 = std::time::Instant::now();
    let (kk, dim) = y.shape();
    let single = Nmf::new(rank, dim, omega)?;
    let runs = seeds.len();
    let per_nodes = rank + dim;
    let per_edges = single.problem.edges();
    let mut edges = Vec::with_capacity(runs * per_edges);
    for a in 0..runs {
        let off = (a * per_nodes) as u32;
        edges.extend(
            single
                .problem
                .src
                .iter()
                .zip(&single.problem.dst)
                .map(|(&i, &j)| (off + i, off + j)),
        );
    }
    let mut p = RrrProblem::from_edges(runs * per_nodes, &edges, WeightGroups::BySource)?;
    for a in 0..runs {
        for i in 0..rank {
            p.kind[a * per_nodes + i] = NodeKind::Nonneg;
        }
    }
    p.clamp_weights = true;
    p.mode = StepMode::Nmf;
    p.omega = omega;
    p.err_groups = runs;
    // Runs are contiguous blocks of edges (sorted by destination) and of node rows.
    let mut st = RrrState::zeros(&p, kk);
    for (a, &seed) in seeds.iter().enumerate() {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w0 = single.random_weights(&mut rng);
        let one = single.state(&single.encode(&w0, y)?, &w0, y);
        let (eb, nb) = (a * per_edges * kk, a * per_nodes * kk);
        st.x[eb..eb + one.x.len()].copy_from_slice(&one.x);
        st.w[eb..eb + one.w.len()].copy_from_slice(&one.w);
        st.y[nb..nb + one.y.len()].copy_from_slice(&one.y);
    }
    let mut engine = backend.rrr_engine(&p, kk)?;
    engine.load(&st)?;
    let mut series: Vec<Vec<f64>> = vec![Vec::new(); runs];
    let mut solved_at: Vec<Option<usize>> = vec![None; runs];
    let (mut done, mut degenerate) = (0usize, 0u64);
    while done < s.max_iter && solved_at.iter().any(Option::is_none) {
        let n = s.chunk.min(s.max_iter - done);
        let rep = engine.iterate(n, s.beta, s.tol, s.check_every)?;
        degenerate += rep.degenerate;
        let groups: Vec<Vec<f64>> = if runs == 1 {
            vec![rep.errors.clone()]
        } else {
            rep.group_errors
        };
        for (a, g) in groups.into_iter().enumerate() {
            if solved_at[a].is_none() {
                if let Some(i) = g.iter().position(|&e| e < s.tol) {
                    solved_at[a] = Some(done + i + 1);
                    series[a].extend_from_slice(&g[..=i]);
                } else {
                    series[a].extend(g);
                }
            }
        }
        done += rep.iterations;
        on_progress(done);
    }
    let c = engine.consensus()?;
    let seconds = t0.elapsed().as_secs_f64();
    let mut out = Vec::with_capacity(runs);
    for (a, &seed) in seeds.iter().enumerate() {
        let sub = Consensus {
            x: c.x[a * per_nodes * kk..(a + 1) * per_nodes * kk].to_vec(),
            w: c.w[a * per_edges..(a + 1) * per_edges].to_vec(),
            y: Vec::new(),
            b: Vec::new(),
        };
        let (x, w) = single.factors(&sub, kk);
        let iterations = solved_at[a].unwrap_or(done);
        out.push(RunResult {
            seed,
            solved: solved_at[a].is_some(),
            iterations,
            rrr_err: series[a].last().copied().unwrap_or(f64::NAN),
            recon_err: recon_err(y, &x, &w),
            gwms: super::gwms(iterations as u64, kk, per_edges),
            seconds,
            // Counted for the whole batch: attribute to the first start.
            degenerate: if a == 0 { degenerate } else { 0 },
            best_rrr_err: best(&series[a]).0,
            best_iteration: best(&series[a]).1,
            series: std::mem::take(&mut series[a]),
            x,
            w,
        });
    }
    Ok(out)
}
