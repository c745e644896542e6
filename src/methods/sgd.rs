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
        let classes = *self.widths.last().expect("widths");
        let z = self.forward(be, &data.x)?.pop().expect("logits");
        let wrong = z
            .chunks(classes)
            .zip(&data.y)
            .filter(|(row, y)| argmax(row) != **y as usize)
            .count();
        Ok(wrong as f64 / data.len() as f64)
    }

    /// One SGD step on the rows `x` with labels `y`; returns the mean loss.
    pub fn step(&mut self, be: &Backend, x: &[f64], y: &[u32], lr: f64) -> Result<f64> {
        let kk = y.len();
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
                *v = (p - (j == label as usize) as u32 as f64) / kk as f64;
            }
        }
        for l in (0..self.w.len()).rev() {
            let (din, dout) = (self.widths[l], self.widths[l + 1]);
            let h = &hs[l];
            // ∇W = Hᵀ δ (din × K times K × dout), ∇c = 1ᵀ δ.
            let ht = transpose(h, kk, din);
            let gw = be.dense(&ht, kk, &delta, dout, &vec![0.0; dout], Act::Identity)?;
            let mut gc = vec![0.0; dout];
            for row in delta.chunks(dout) {
                for (g, d) in gc.iter_mut().zip(row) {
                    *g += d;
                }
            }
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
        Ok(loss / kk as f64)
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
pub struct SgdEpoch {
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

/// Trains with shuffled batches of |K| (⌊n/|K|⌋ per epoch, as the RRR
/// classifier), calling `on_epoch` after each epoch.
pub fn train(
    be: &Backend,
    net: &mut SgdNet,
    train: &Labeled,
    test: Option<&Labeled>,
    s: &SgdSettings,
    mut on_epoch: impl FnMut(&SgdEpoch) -> Result<()>,
) -> Result<()> {
    if s.batch == 0 || s.epochs == 0 || !(s.lr.is_finite() && s.lr > 0.0) {
        return Err(Error::Input(
            "SGD needs --batch, --epochs ≥ 1 and a positive --lr".into(),
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
    let d = train.dim;
    for epoch in 1..=s.epochs {
        let t0 = std::time::Instant::now();
        let order = crate::train::epoch_order(train.len(), s.seed, epoch);
        let steps = train.len() / kk;
        let mut loss = 0.0;
        for b in 0..steps {
            let idx = &order[b * kk..(b + 1) * kk];
            let mut x = Vec::with_capacity(kk * d);
            for &k in idx {
                x.extend_from_slice(train.item(k));
            }
            let y: Vec<u32> = idx.iter().map(|&k| train.y[k]).collect();
            loss += net.step(be, &x, &y, s.lr)?;
            if !loss.is_finite() {
                return Err(Error::Numeric(format!(
                    "SGD diverged in epoch {epoch} (try a smaller --lr)"
                )));
            }
        }
        let seconds = t0.elapsed().as_secs_f64();
        let stats = SgdEpoch {
            epoch,
            loss: loss / steps as f64,
            train_err: net.error(be, train)?,
            test_err: test.map(|t| net.error(be, t)).transpose()?,
            gwms: 3e-9 * (steps * kk * net.edges()) as f64,
            seconds,
        };
        on_epoch(&stats)?;
    }
    Ok(())
}
