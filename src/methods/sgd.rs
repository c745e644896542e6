//! Minibatch SGD baseline on the same engine: a layered ReLU network with a
//! softmax cross-entropy loss, every product on the backend's `dense`
//! kernel (so it runs on both backends like the methods it is compared
//! with).
//!
//! ```text
//! forward:  H_{l+1} = relu(H_l W_l + c_l), logits Z = H_{L−1} W_{L−1} + c
//! loss:     mean over the batch of −log softmax(Z)_label
//! backward: δ_L = (softmax(Z) − onehot)/|K|;  ∇W_l = H_lᵀ δ_{l+1};
//!           ∇c_l = 1ᵀ δ_{l+1};  δ_l = (δ_{l+1} W_lᵀ) ∘ [H_l > 0]
//! step:     W ← W − η ∇W,  c ← c − η ∇c
//! ```
//!
//! Work is counted as 3 × |K| × |E| weight-multiplies per step (forward
//! plus two backward products), the RRR classifier's unit (|K| × |E| per
//! iteration), so test error can be compared against GWMs.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::labeled::Labeled;
use crate::engine::Backend;
use crate::error::{Error, Result};
use crate::kernels::dense::Act;
use crate::train::{self, Batches, EpochEnd, Method, Plan, Session, Start, epoch_order};

/// SGD settings.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SgdSettings {
    /// Items per step |K|.
    pub batch: usize,
    /// Epochs.
    pub epochs: usize,
    /// Learning rate η.
    pub lr: f64,
    /// Seed of the weights and shuffles.
    pub seed: u64,
}

/// A layered net's weights: `w[l]` is d_l × d_{l+1} row-major, `c[l]` d_{l+1}.
#[derive(Clone, Debug)]
pub struct SgdNet {
    /// Widths, input first.
    pub widths: Vec<usize>,
    /// Weights per layer.
    pub w: Vec<Vec<f64>>,
    /// Biases per layer.
    pub c: Vec<Vec<f64>>,
}

impl SgdNet {
    /// He-initialized weights (normal, variance 2/fan-in), zero biases.
    pub fn random(widths: &[usize], seed: u64) -> Result<Self> {
        if widths.len() < 2 || widths.contains(&0) || *widths.last().unwrap_or(&0) < 2 {
            return Err(Error::Input(format!(
                "SGD needs positive widths ending in ≥ 2 classes, got {widths:?}"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut w = vec![];
        let mut c = vec![];
        for p in widths.windows(2) {
            let scale = (2.0 / p[0] as f64).sqrt();
            w.push(
                (0..p[0] * p[1])
                    .map(|_| scale * crate::random::normal_clamped(&mut rng))
                    .collect(),
            );
            c.push(vec![0.0; p[1]]);
        }
        Ok(SgdNet {
            widths: widths.to_vec(),
            w,
            c,
        })
    }

    /// Edges |E| (weights).
    pub fn edges(&self) -> usize {
        self.widths.windows(2).map(|p| p[0] * p[1]).sum()
    }

    /// Activations of every layer for `x` (rows), the last one the logits.
    pub fn forward(&self, be: &Backend, x: &[f64]) -> Result<Vec<Vec<f64>>> {
        let mut hs = vec![x.to_vec()];
        let last = self.w.len() - 1;
        for (l, (w, c)) in self.w.iter().zip(&self.c).enumerate() {
            let act = if l == last {
                Act::Identity
            } else {
                Act::Leaky(0.0)
            };
            let h = be.dense(&hs[l], self.widths[l], w, self.widths[l + 1], c, act)?;
            hs.push(h);
        }
        Ok(hs)
    }

    /// Fraction of `data` misclassified (argmax of the logits).
    pub fn error(&self, be: &Backend, data: &Labeled) -> Result<f64> {
        if data.is_empty() {
            return Ok(f64::NAN);
        }
        // Each process classifies its slice of the items.
        let col = be.collective();
        let mine = col.slice_of(data.len());
        let classes = *self.widths.last().expect("widths");
        let x = &data.x[mine.start * data.dim..mine.end * data.dim];
        let z = self.forward(be, x)?.pop().expect("logits");
        let mut wrong = [z
            .chunks(classes)
            .zip(&data.y[mine])
            .filter(|(row, y)| argmax(row) != **y as usize)
            .count() as f64];
        col.allreduce_sum_f64(&mut wrong)?;
        Ok(wrong[0] / data.len() as f64)
    }

    /// One SGD step on the rows `x` with labels `y` (this process's share
    /// of the batch); returns the mean loss over the whole batch. The
    /// gradients and the loss are sums over items, taken through the
    /// backend's collective.
    pub fn step(&mut self, be: &Backend, x: &[f64], y: &[u32], lr: f64) -> Result<f64> {
        let kk = y.len();
        let total = be.collective().sum_count(kk)?;
        let classes = *self.widths.last().expect("widths");
        let hs = self.forward(be, x)?;
        // δ_L = (softmax(Z) − onehot)/|K| and the loss, on the host.
        let mut delta = hs[hs.len() - 1].clone();
        let mut loss = 0.0;
        for (row, &label) in delta.chunks_mut(classes).zip(y) {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = row.iter().map(|v| (v - m).exp()).sum();
            loss += m + sum.ln() - row[label as usize];
            for (j, v) in row.iter_mut().enumerate() {
                let p = (*v - m).exp() / sum;
                *v = (p - (j == label as usize) as u32 as f64) / total as f64;
            }
        }
        for l in (0..self.w.len()).rev() {
            let (din, dout) = (self.widths[l], self.widths[l + 1]);
            let h = &hs[l];
            // ∇W = Hᵀ δ (din × K times K × dout), ∇c = 1ᵀ δ.
            let ht = transpose(h, kk, din);
            let mut gw = be.dense(&ht, kk, &delta, dout, &vec![0.0; dout], Act::Identity)?;
            let mut gc = vec![0.0; dout];
            for row in delta.chunks(dout) {
                for (g, d) in gc.iter_mut().zip(row) {
                    *g += d;
                }
            }
            be.collective().allreduce_sum_f64(&mut gw)?;
            be.collective().allreduce_sum_f64(&mut gc)?;
            // δ for the layer below (before this layer's update): (δ Wᵀ) ∘ [H > 0].
            let next = if l > 0 {
                let wt = transpose(&self.w[l], din, dout);
                let mut d = be.dense(&delta, dout, &wt, din, &vec![0.0; din], Act::Identity)?;
                for (v, &a) in d.iter_mut().zip(h) {
                    if a <= 0.0 {
                        *v = 0.0;
                    }
                }
                Some(d)
            } else {
                None
            };
            for (w, g) in self.w[l].iter_mut().zip(&gw) {
                *w -= lr * g;
            }
            for (c, g) in self.c[l].iter_mut().zip(&gc) {
                *c -= lr * g;
            }
            if let Some(d) = next {
                delta = d;
            }
        }
        let mut loss = [loss];
        be.collective().allreduce_sum_f64(&mut loss)?;
        Ok(loss[0] / total as f64)
    }
}

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

fn transpose(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; a.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = a[r * cols + c];
        }
    }
    t
}

/// One epoch's figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Epoch {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean loss over the epoch's steps.
    pub loss: f64,
    /// Training error at the end of the epoch.
    pub train_err: f64,
    /// Test error (null without test data).
    pub test_err: Option<f64>,
    /// GWMs of the epoch (3 |K| |E| per step).
    pub gwms: f64,
    /// Wall seconds of the epoch (evaluation excluded).
    pub seconds: f64,
}

/// SGD as a [`Method`] of the training loop: shuffled batches of |K|
/// (⌊n/|K|⌋ per epoch, as the RRR classifier).
pub struct Sgd<'a> {
    be: &'a Backend,
    /// The net being trained.
    pub net: SgdNet,
    train: &'a Labeled,
    test: Option<&'a Labeled>,
    s: &'a SgdSettings,
    kk: usize,
    loss: f64,
    steps: usize,
    seconds: f64,
}

impl<'a> Sgd<'a> {
    /// Checks the settings and data against the net.
    pub fn new(
        be: &'a Backend,
        net: SgdNet,
        train: &'a Labeled,
        test: Option<&'a Labeled>,
        s: &'a SgdSettings,
    ) -> Result<Self> {
        if s.batch == 0 || s.epochs == 0 || !(s.lr.is_finite() && s.lr > 0.0) {
            return Err(Error::Input(
                "SGD needs a batch and epochs of at least 1 and a positive learning rate".into(),
            ));
        }
        if train.dim != net.widths[0] {
            return Err(Error::Input(format!(
                "the data have {} features but the net has {} inputs",
                train.dim, net.widths[0]
            )));
        }
        let kk = s.batch.min(train.len());
        if kk == 0 {
            return Err(Error::Input("no training items".into()));
        }
        let world = be.collective().world();
        if kk < world {
            return Err(Error::Input(format!(
                "a batch of {kk} items cannot be shared by {world} processes"
            )));
        }
        Ok(Sgd {
            be,
            net,
            train,
            test,
            s,
            kk,
            loss: 0.0,
            steps: 0,
            seconds: 0.0,
        })
    }
}

impl Method for Sgd<'_> {
    type Record = Epoch;

    fn plan(&self) -> Plan {
        Plan {
            items: self.train.len(),
            batches: Batches::Whole(self.kk),
            epochs: self.s.epochs,
            time_limit: None,
        }
    }

    fn order(&mut self, epoch: usize) -> Vec<usize> {
        (self.loss, self.steps) = (0.0, 0);
        epoch_order(self.train.len(), self.s.seed, epoch)
    }

    fn batch(&mut self, epoch: usize, _index: usize, idx: &[usize]) -> Result<()> {
        let t0 = std::time::Instant::now();
        let d = self.train.dim;
        // This process's slice of the batch (all of it in a world of one).
        let idx = &idx[self.be.collective().slice_of(idx.len())];
        let mut x = Vec::with_capacity(idx.len() * d);
        for &k in idx {
            x.extend_from_slice(self.train.item(k));
        }
        let y: Vec<u32> = idx.iter().map(|&k| self.train.y[k]).collect();
        self.loss += self.net.step(self.be, &x, &y, self.s.lr)?;
        self.steps += 1;
        if !self.loss.is_finite() {
            return Err(Error::Numeric(format!(
                "SGD diverged in epoch {epoch} (try a smaller learning rate)"
            )));
        }
        self.seconds += t0.elapsed().as_secs_f64();
        Ok(())
    }

    fn end_epoch(&mut self, epoch: usize, _seconds: f64) -> Result<EpochEnd<Epoch>> {
        let seconds = std::mem::take(&mut self.seconds);
        let gwms = 3e-9 * (self.steps * self.kk * self.net.edges()) as f64;
        let record = Epoch {
            epoch,
            loss: self.loss / self.steps as f64,
            train_err: self.net.error(self.be, self.train)?,
            test_err: self.test.map(|t| self.net.error(self.be, t)).transpose()?,
            gwms,
            seconds,
        };
        Ok(EpochEnd::next(record, gwms))
    }

    fn line(&self, e: &Epoch) -> String {
        format!(
            "epoch {}: loss {:.4}, train_err {:.4}{}, {:.4} GWMs, {:.2} s",
            e.epoch,
            e.loss,
            e.train_err,
            e.test_err
                .map_or(String::new(), |t| format!(", test_err {t:.4}")),
            e.gwms,
            e.seconds
        )
    }
}

/// The `sgd` command as a library run: trains a net of `widths` from its
/// seeded initialization, reports every epoch, and returns the summary's
/// own fields.
pub fn run(
    be: &Backend,
    session: &mut Session,
    widths: &[usize],
    train: &Labeled,
    test: Option<&Labeled>,
    s: &SgdSettings,
) -> Result<serde_json::Value> {
    let net = SgdNet::random(widths, s.seed)?;
    for (d, what) in std::iter::once((train, "training")).chain(test.map(|t| (t, "test"))) {
        let classes = *widths.last().expect("widths");
        if d.dim != widths[0] || d.y.iter().any(|&y| y as usize >= classes) {
            return Err(Error::Input(format!(
                "the {what} data ({} features, classes up to {}) do not fit the net {widths:?}",
                d.dim,
                d.y.iter().max().copied().unwrap_or(0)
            )));
        }
    }
    let mut sgd = Sgd::new(be, net, train, test, s)?;
    let fin = train::run(session, &mut sgd, Start::fresh())?;
    let (train_err, test_err) = fin
        .history
        .last()
        .map_or((f64::NAN, None), |e| (e.train_err, e.test_err));
    session.tell(&format!(
        "after {} epochs: train_err {train_err:.4}{}",
        s.epochs,
        test_err.map_or(String::new(), |t| format!(", test_err {t:.4}"))
    ));
    Ok(
        serde_json::json!({"method": "sgd", "widths": widths, "settings": s, "train_err": train_err,
           "test_err": test_err, "epochs": s.epochs,
           "work": "3 x |K| x |E| weight-multiplies per step"}),
    )
}
