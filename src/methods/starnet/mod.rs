//! StarNet (Zadeh et al.): decoders trained layer by layer by solving
//! determined linear systems, no gradients. A decoder of widths
//! d₀ ≤ d₁ ≤ … ≤ d_L (d_L = data):
//!
//! ```text
//! h_i = a_α(W_i h_{i−1} + c_i),  i = 1..L,   h_0 = free latent code, h_L ≈ x
//! a_α(v) = v (v ≥ 0), α v (v < 0)            (leaky ReLU, invertible)
//! ```
//!
//! Layer i is trained on a target T_i (T_L = X) with Ẑ = a_α⁻¹(T_i), for
//! a few epochs of two exact solves:
//!
//! ```text
//! SL  h = (WᵀW)⁻¹Wᵀ(ẑ − c) for every item: H = Ẑ Pᵀ − 1(Pc)ᵀ, P the
//!     pseudo-inverse (host Cholesky of WᵀW), one batched product
//! SW  [W c]ᵀ = argmin ‖[H,1][W c]ᵀ − Ẑ‖: ([H,1]ᵀ[H,1]) [W c]ᵀ = [H,1]ᵀẐ,
//!     the Gram matrix and right-hand side summed over items (or a random
//!     subset of `weight_sample` items) by the backend, solved on the host
//! ```
//!
//! then T_{i−1} = H (latents solved with the final W), down to layer 1;
//! T_0 are the training codes. Encoding new data runs the SL solves from the
//! top (a⁻¹, pseudo-inverse, a⁻¹, …); each item's residual ‖W h + c − ẑ‖ per
//! layer is its outlier score (lemma 4). A singular Gram matrix (rank
//! deficient design) gets the smallest ridge λ I, λ = 10⁻¹² · 10^k ·
//! tr/(p+1), that makes Cholesky succeed, and the run reports λ.
//!
//! Work (GWMs) counts the multiply-adds of the batched products: SL
//! N·d_out·d_in, reconstruction N·d_in·d_out, SW N·(p+1)·(p+1+q).

pub mod conv;

use nalgebra::{DMatrix, DVector};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::engine::Collective;
use crate::engine::{Backend, DeviceKind, Held};
use crate::error::{Error, Result};
use crate::io::rows_csv;
use crate::kernels::dense::Act;
use crate::plot::rows_grid;
use crate::train::{self, Batches, EpochEnd, Method, Plan, Session, Start};

/// One decoder layer `h ↦ a(W h + c)`.
#[derive(Clone, Debug)]
pub struct Layer {
    /// W (d_out × d_in), row-major.
    pub w: Vec<f64>,
    /// c (d_out).
    pub c: Vec<f64>,
    /// Input width.
    pub d_in: usize,
    /// Output width.
    pub d_out: usize,
    /// For a conv-unpool layer: its shape, kernels (conv channels × c_in·k²)
    /// and biases (conv channels), of which `w` and `c` are the dense form.
    pub conv: Option<(conv::ConvShape, Vec<f64>, Vec<f64>)>,
}

/// A trained decoder.
#[derive(Clone, Debug)]
pub struct StarNet {
    /// Widths d₀ … d_L.
    pub widths: Vec<usize>,
    /// Leaky-ReLU slope.
    pub alpha: f64,
    /// Layers 1..L.
    pub layers: Vec<Layer>,
    /// Mean of the training codes.
    pub code_mean: Vec<f64>,
    /// Lower Cholesky factor of their covariance (d₀ × d₀, row-major).
    pub code_chol: Vec<f64>,
}

/// Training settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    /// SL/SW epochs per layer.
    pub epochs: usize,
    /// Leaky-ReLU slope α.
    pub alpha: f64,
    /// Items per weight solve (None = all).
    pub weight_sample: Option<usize>,
    /// Seed of the initial weights and the weight samples.
    pub seed: u64,
    /// Conv-unpool layer shapes from the latent up (empty: feedforward).
    #[serde(default)]
    pub conv: Vec<conv::ConvShape>,
}

/// Reconstruction error of one epoch of one layer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Epoch {
    /// Layer (1-based).
    pub layer: usize,
    /// Epoch (1-based).
    pub epoch: usize,
    /// rms error of a(H Wᵀ + c) against the layer's target.
    pub rms: f64,
    /// Mean elastic error |e|₁ + ‖e‖₂ per item.
    pub elastic: f64,
    /// Ridge λ of this epoch's solves, if any was needed.
    pub ridge: Option<f64>,
    /// Work so far (GWMs).
    pub gwms: f64,
    /// Seconds of this epoch.
    pub seconds: f64,
}

/// Checks a width list d₀ … d_L; returns warnings (equal widths).
pub fn check_widths(widths: &[usize]) -> Result<Vec<String>> {
    if widths.len() < 2 || widths.contains(&0) {
        return Err(Error::Input(format!(
            "StarNet needs a latent width and at least one layer, all positive (got {widths:?})"
        )));
    }
    let mut warn = vec![];
    for (i, p) in widths.windows(2).enumerate() {
        if p[0] > p[1] {
            return Err(Error::Input(format!(
                "layer {} maps {} → {}: widths must not shrink toward the output, \
                 or the latents are underdetermined (widths {widths:?})",
                i + 1,
                p[0],
                p[1]
            )));
        }
        if p[0] == p[1] {
            warn.push(format!(
                "layer {} maps {} → {}: equal widths make W square, so every target is fit \
                 exactly and the latents just invert it (degenerate)",
                i + 1,
                p[0],
                p[1]
            ));
        }
    }
    Ok(warn)
}

/// Cholesky of a symmetric matrix, adding the smallest ridge λ I (λ =
/// 10⁻¹²·10^k·tr/n) that makes it succeed; returns the factor and λ.
fn cholesky_ridge(
    m: DMatrix<f64>,
) -> Result<(nalgebra::Cholesky<f64, nalgebra::Dyn>, Option<f64>)> {
    if m.iter().any(|v| !v.is_finite()) {
        return Err(Error::Numeric(format!(
            "the {n}×{n} normal equations hold non-finite values: the data's scale overflows the working precision",
            n = m.nrows()
        )));
    }
    if let Some(c) = m.clone().cholesky() {
        return Ok((c, None));
    }
    let n = m.nrows().max(1);
    let scale = (m.trace() / n as f64).abs().max(1e-300);
    // λ from 10⁻¹² to 10¹² of the mean diagonal: beyond that the system is
    // no longer the data's.
    let mut lambda = 1e-12 * scale;
    for _ in 0..=RIDGE_STEPS {
        let mut r = m.clone();
        for i in 0..m.nrows() {
            r[(i, i)] += lambda;
        }
        if let Some(c) = r.cholesky() {
            return Ok((c, Some(lambda)));
        }
        lambda *= 10.0;
    }
    Err(Error::Numeric(format!(
        "no ridge up to {:e} makes the {n}×{n} normal equations positive definite",
        lambda / 10.0
    )))
}

/// Ridges tried after 10⁻¹² of the mean diagonal, each ten times the last.
const RIDGE_STEPS: usize = 24;

/// Solves the normal equations C = [G | R] ((p+1) × (p+1+q), from
/// [`Backend::normal_eq`]) for X = [W c]ᵀ ((p+1) × q, row-major); returns
/// X and the ridge used, if any.
pub fn solve_normal(c: &[f64], p: usize, q: usize) -> Result<(Vec<f64>, Option<f64>)> {
    let cols = p + 1 + q;
    let g = DMatrix::from_fn(p + 1, p + 1, |i, j| c[i * cols + j]);
    let r = DMatrix::from_fn(p + 1, q, |i, j| c[i * cols + p + 1 + j]);
    let (chol, ridge) = cholesky_ridge(g)?;
    let x = chol.solve(&r);
    let mut out = vec![0.0; (p + 1) * q];
    for i in 0..=p {
        for j in 0..q {
            out[i * q + j] = x[(i, j)];
        }
    }
    Ok((out, ridge))
}

impl Layer {
    /// A random layer with full column rank almost surely: W ~ N(0, 1/d_in).
    pub fn random(d_in: usize, d_out: usize, rng: &mut ChaCha8Rng) -> Layer {
        let s = 1.0 / (d_in as f64).sqrt();
        Layer {
            w: (0..d_in * d_out)
                .map(|_| crate::random::normal(rng) * s)
                .collect(),
            c: vec![0.0; d_out],
            d_in,
            d_out,
            conv: None,
        }
    }

    /// A conv-unpool layer with random kernels N(0, 1/(c_in·k²)).
    pub fn random_conv(shape: conv::ConvShape, rng: &mut ChaCha8Rng) -> Layer {
        let s = 1.0 / (shape.patch() as f64).sqrt();
        let kernels: Vec<f64> = (0..shape.conv_channels() * shape.patch())
            .map(|_| crate::random::normal(rng) * s)
            .collect();
        Layer::from_conv(shape, kernels, vec![0.0; shape.conv_channels()])
    }

    /// The dense form of a conv-unpool layer.
    pub fn from_conv(shape: conv::ConvShape, kernels: Vec<f64>, bias: Vec<f64>) -> Layer {
        let (w, c) = shape.materialize(&kernels, &bias);
        Layer {
            w,
            c,
            d_in: shape.d_in(),
            d_out: shape.d_out(),
            conv: Some((shape, kernels, bias)),
        }
    }

    /// Wᵀ (d_in × d_out), row-major: the B of `H Wᵀ`.
    fn w_t(&self) -> Vec<f64> {
        let mut t = vec![0.0; self.w.len()];
        for o in 0..self.d_out {
            for i in 0..self.d_in {
                t[i * self.d_out + o] = self.w[o * self.d_in + i];
            }
        }
        t
    }

    /// Pᵀ = W (WᵀW)⁻¹ (d_out × d_in, row-major), −P c, and the ridge used.
    fn pinv_t(&self) -> Result<(Vec<f64>, Vec<f64>, Option<f64>)> {
        let w = DMatrix::from_row_slice(self.d_out, self.d_in, &self.w);
        let (chol, ridge) = cholesky_ridge(w.transpose() * &w)?;
        // P = (WᵀW)⁻¹Wᵀ (d_in × d_out).
        let p = chol.solve(&w.transpose());
        let pc = &p * DVector::from_column_slice(&self.c);
        let mut pt = vec![0.0; self.d_in * self.d_out];
        for o in 0..self.d_out {
            for i in 0..self.d_in {
                pt[o * self.d_in + i] = p[(i, o)];
            }
        }
        Ok((pt, pc.iter().map(|v| -v).collect(), ridge))
    }

    /// SW: the least-squares W and c for latents H (n × d_in) and
    /// pre-activation targets Ẑ (n × d_out) — dense normal equations, or
    /// per conv channel over all positions for a conv-unpool layer. Returns
    /// the ridge used (if the system was singular) and the work in GWMs.
    pub fn solve_weights(
        &mut self,
        be: &Backend,
        h: &[f64],
        zhat: &[f64],
    ) -> Result<(Option<f64>, f64)> {
        let (d_in, d_out) = (self.d_in, self.d_out);
        // The work of every process's items.
        let n = be.collective().sum_count(h.len() / d_in)?;
        match self.conv.clone() {
            None => {
                let c = be.normal_eq(h, d_in, zhat, d_out)?;
                self.take_normal_solution(&c, n)
            }
            Some((shape, _, _)) => {
                let c = be.conv_normal_eq(&shape, h, zhat)?;
                self.take_conv_solution(shape, &c, n)
            }
        }
    }

    /// A dense layer's W and c from its normal equations `c` over `n`
    /// items: the ridge used and the work in GWMs.
    fn take_normal_solution(&mut self, c: &[f64], n: usize) -> Result<(Option<f64>, f64)> {
        let (d_in, d_out) = (self.d_in, self.d_out);
        let work = 1e-9 * (n * (d_in + 1) * (d_in + 1 + d_out)) as f64;
        let (wc, ridge) = solve_normal(c, d_in, d_out)?;
        for o in 0..d_out {
            for i in 0..d_in {
                self.w[o * d_in + i] = wc[i * d_out + o];
            }
            self.c[o] = wc[d_in * d_out + o];
        }
        Ok((ridge, work))
    }

    /// A conv-unpool layer's kernels and biases from its per-kernel normal
    /// equations `c` over `n` items: the ridge used and the work in GWMs.
    fn take_conv_solution(
        &mut self,
        shape: conv::ConvShape,
        c: &[f64],
        n: usize,
    ) -> Result<(Option<f64>, f64)> {
        let (pl, oc) = (shape.patch(), shape.conv_channels());
        let work = 1e-9 * (n * shape.side * shape.side * (pl + 1) * (pl + 1 + oc)) as f64;
        let (kc, ridge) = solve_normal(c, pl, oc)?;
        let kernels: Vec<f64> = (0..oc * pl).map(|j| kc[(j % pl) * oc + j / pl]).collect();
        let bias: Vec<f64> = (0..oc).map(|o| kc[pl * oc + o]).collect();
        *self = Layer::from_conv(shape, kernels, bias);
        Ok((ridge, work))
    }

    /// [`Layer::solve_weights`] of held operands, the normal equations
    /// summed where the operands are held.
    pub fn solve_weights_held(
        &mut self,
        be: &Backend,
        h: &Held,
        zhat: &Held,
    ) -> Result<(Option<f64>, f64)> {
        let n = be.collective().sum_count(h.rows())?;
        match self.conv.clone() {
            None => {
                let c = be.normal_eq_held(h, zhat)?;
                self.take_normal_solution(&c, n)
            }
            Some((shape, _, _)) => {
                let c = be.conv_normal_eq_held(&shape, h, zhat)?;
                self.take_conv_solution(shape, &c, n)
            }
        }
    }

    /// [`Layer::solve_latents`] of held Ẑ, H held where it was computed.
    pub fn solve_latents_held(&self, be: &Backend, zhat: &Held) -> Result<(Held, Option<f64>)> {
        if let Some((shape, kernels, _)) = &self.conv {
            let (m, shift, ridge) = self.gram_inverse()?;
            let g = be.conv_transpose_held(shape, kernels, zhat)?;
            let h = be.dense_held(&g, &m, self.d_in, &shift, Act::Identity)?;
            return Ok((h, ridge));
        }
        let (pt, bias, ridge) = self.pinv_t()?;
        let h = be.dense_held(zhat, &pt, self.d_in, &bias, Act::Identity)?;
        Ok((h, ridge))
    }

    /// [`Layer::forward`] of held H, the result held where it was computed.
    pub fn forward_held(&self, be: &Backend, h: &Held, alpha: Option<f64>) -> Result<Held> {
        let act = alpha.map_or(Act::Identity, Act::Leaky);
        if let Some((shape, kernels, bias)) = &self.conv {
            return be.conv_forward_held(shape, kernels, bias, h, act);
        }
        be.dense_held(h, &self.w_t(), self.d_out, &self.c, act)
    }

    /// Latents of pre-activation targets Ẑ (n × d_out): H (n × d_in).
    /// A conv-unpool layer's Wᵀz runs as the transposed convolution, then one
    /// product with (WᵀW)⁻¹ (symmetric, so it is its own transpose).
    pub fn solve_latents(&self, be: &Backend, zhat: &[f64]) -> Result<(Vec<f64>, Option<f64>)> {
        if let Some((shape, kernels, _)) = &self.conv {
            let (m, shift, ridge) = self.gram_inverse()?;
            let g = be.conv_transpose(shape, kernels, zhat)?;
            let h = be.dense(&g, self.d_in, &m, self.d_in, &shift, Act::Identity)?;
            return Ok((h, ridge));
        }
        let (pt, bias, ridge) = self.pinv_t()?;
        let h = be.dense(zhat, self.d_out, &pt, self.d_in, &bias, Act::Identity)?;
        Ok((h, ridge))
    }

    /// (WᵀW)⁻¹ (d_in × d_in, row-major), −(WᵀW)⁻¹Wᵀc, and the ridge used.
    fn gram_inverse(&self) -> Result<(Vec<f64>, Vec<f64>, Option<f64>)> {
        let w = DMatrix::from_row_slice(self.d_out, self.d_in, &self.w);
        let (chol, ridge) = cholesky_ridge(w.transpose() * &w)?;
        let m = chol.inverse();
        let shift = -(&m * (w.transpose() * DVector::from_column_slice(&self.c)));
        // The column-major slice read row-major is Mᵀ: rows h = g Mᵀ.
        Ok((m.as_slice().to_vec(), shift.as_slice().to_vec(), ridge))
    }

    /// W H + c for the rows of H (pre-activation), or a(W H + c); a
    /// conv-unpool layer runs as the convolution itself.
    pub fn forward(&self, be: &Backend, h: &[f64], alpha: Option<f64>) -> Result<Vec<f64>> {
        let act = alpha.map_or(Act::Identity, Act::Leaky);
        if let Some((shape, kernels, bias)) = &self.conv {
            return be.conv_forward(shape, kernels, bias, h, act);
        }
        be.dense(h, self.d_in, &self.w_t(), self.d_out, &self.c, act)
    }
}

fn rows_of(x: &[f64], d: usize, idx: &[usize]) -> Vec<f64> {
    idx.iter()
        .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
        .collect()
}

/// (rms, mean elastic error) of `got` against `want` (n × d).
pub fn errors(be: &Backend, got: &[f64], want: &[f64], d: usize) -> Result<(f64, f64)> {
    residual_errors(be, &be.row_residual(got, want, d)?, d)
}

/// (rms, mean elastic error) from per-row residuals of rows of `d` values,
/// over the items of every process.
fn residual_errors(be: &Backend, r: &[f64], d: usize) -> Result<(f64, f64)> {
    let col = be.collective();
    let n = col.sum_count(r.len() / 2)?;
    if n == 0 || d == 0 {
        return Ok((0.0, 0.0));
    }
    let mut sums = [
        r.chunks(2).map(|p| p[1]).sum::<f64>(),
        r.chunks(2).map(|p| p[0] + p[1].sqrt()).sum::<f64>(),
    ];
    col.allreduce_sum_f64(&mut sums)?;
    Ok(((sums[0] / (n * d) as f64).sqrt(), sums[1] / n as f64))
}

/// The checks a training run makes before it starts.
fn check_training(x: &[f64], widths: &[usize], s: &Settings) -> Result<()> {
    check_widths(widths)?;
    let dl = *widths.last().expect("widths");
    if x.is_empty() || !x.len().is_multiple_of(dl) {
        return Err(Error::Input(format!(
            "data of {} values is not a whole number of items of width {dl}",
            x.len()
        )));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::Input("data contain NaN or infinite values".into()));
    }
    if !(s.alpha > 0.0 && s.alpha.is_finite()) {
        return Err(Error::Input(format!(
            "the leaky-ReLU slope α must be positive (got {})",
            s.alpha
        )));
    }
    if s.epochs == 0 {
        return Err(Error::Input(
            "the epochs per layer must be at least 1".into(),
        ));
    }
    if s.weight_sample == Some(0) {
        return Err(Error::Input(
            "the weight sample must hold at least one item".into(),
        ));
    }
    if !s.conv.is_empty() {
        let ok = s.conv.len() + 1 == widths.len()
            && s.conv
                .iter()
                .zip(widths.windows(2))
                .all(|(c, w)| c.d_in() == w[0] && c.d_out() == w[1]);
        if !ok {
            return Err(Error::Input(format!(
                "conv-unpool shapes {:?} do not match the widths {widths:?}",
                s.conv
            )));
        }
    }
    Ok(())
}

/// A layer's targets T and pre-activation targets Ẑ, the operands of all
/// its epochs' solves: on a GPU they stay on the device, and
/// each epoch's latents and reconstruction are computed and used there, so
/// only the layer's small matrices and the per-item residuals cross.
struct Operands {
    zhat: Held,
    target: Held,
    /// Ẑ on the host as well, for weight samples, where it is held on a GPU.
    zhat_host: Option<Vec<f64>>,
}

/// Training a decoder of widths d₀ … d_L on X (n × d_L) as a [`Method`]
/// of the loop: the loop's epochs are the (layer, epoch) steps from the
/// top layer down, `epochs` per layer, each one SL + SW solve on all
/// items (one batch). After a layer's last epoch its latents become the
/// next layer's targets.
pub struct Training<'a> {
    be: &'a Backend,
    x: &'a [f64],
    widths: &'a [usize],
    s: &'a Settings,
    /// Items of this process, items of all processes together, and where
    /// this process's items start among them.
    n: usize,
    n_all: usize,
    offset: usize,
    rng: ChaCha8Rng,
    /// Work so far (GWMs).
    gwms: f64,
    /// Work of the current step.
    step_gwms: f64,
    /// Trained layers, the lowest first.
    layers: Vec<Layer>,
    /// The next layer's targets (the data, then each layer's latents).
    target: Vec<f64>,
    /// The current layer's targets and pre-activation targets, held where
    /// the device computes for all the layer's epochs.
    operands: Option<Operands>,
    layer: Option<Layer>,
    report: Option<Epoch>,
    image_shape: Option<(usize, usize)>,
    /// `layerN.png` of every trained layer (with an image shape).
    pub pngs: Vec<(String, Vec<u8>)>,
}

impl<'a> Training<'a> {
    /// Checks the data and settings.
    pub fn new(
        be: &'a Backend,
        x: &'a [f64],
        widths: &'a [usize],
        s: &'a Settings,
        image_shape: Option<(usize, usize)>,
    ) -> Result<Self> {
        check_training(x, widths, s)?;
        let n = x.len() / widths[widths.len() - 1];
        let share = be.collective().share_of(n)?;
        Ok(Training {
            be,
            x,
            widths,
            s,
            n,
            n_all: share.total,
            offset: share.offset,
            rng: ChaCha8Rng::seed_from_u64(s.seed),
            gwms: 0.0,
            step_gwms: 0.0,
            layers: Vec::with_capacity(widths.len() - 1),
            target: x.to_vec(),
            operands: None,
            layer: None,
            report: None,
            image_shape,
            pngs: vec![],
        })
    }

    /// Epochs per layer.
    fn per_layer(&self) -> usize {
        self.s.epochs
    }

    /// (layer, epoch within the layer) of loop epoch `g` (1-based).
    fn step(&self, g: usize) -> (usize, usize) {
        let e = self.per_layer();
        (self.widths.len() - 1 - (g - 1) / e, (g - 1) % e + 1)
    }

    fn work(&mut self, g: f64) {
        self.gwms += g;
        self.step_gwms += g;
    }

    /// A new layer `li` with its targets' pre-activations Ẑ.
    fn begin_layer(&mut self, li: usize) -> Result<()> {
        let (d_in, d_out) = (self.widths[li - 1], self.widths[li]);
        let zhat = self.be.leaky_relu(&self.target, self.s.alpha, true)?;
        let target = std::mem::take(&mut self.target);
        let layer = match self.s.conv.get(li - 1) {
            Some(&shape) => Layer::random_conv(shape, &mut self.rng),
            None => {
                let mut l = Layer::random(d_in, d_out, &mut self.rng);
                // Start the bias at the targets' mean, so SL begins centred.
                let n = self.n;
                let mut sums: Vec<f64> = (0..d_out)
                    .map(|j| (0..n).map(|i| zhat[i * d_out + j]).sum::<f64>())
                    .collect();
                let col = self.be.collective();
                col.allreduce_sum_f64(&mut sums)?;
                let total = col.sum_count(n)?;
                for (c, sum) in l.c.iter_mut().zip(sums) {
                    *c = sum / total as f64;
                }
                l
            }
        };
        self.layer = Some(layer);
        // Weight samples are gathered on the host: there Ẑ stays too.
        let sampled = self.s.weight_sample.is_some_and(|k| k < self.n_all);
        let zhat_host = (sampled && self.be.kind() == DeviceKind::Gpu).then(|| zhat.clone());
        self.operands = Some(Operands {
            zhat: self.be.hold(zhat, d_out)?,
            target: self.be.hold(target, d_out)?,
            zhat_host,
        });
        Ok(())
    }

    /// The layer's final latents become the next targets.
    fn end_layer(&mut self, li: usize) -> Result<()> {
        let layer = self.layer.take().expect("a layer in training");
        let ops = self.operands.take().expect("a layer's operands");
        let (d_in, d_out) = (layer.d_in, layer.d_out);
        let (h, _) = layer.solve_latents_held(self.be, &ops.zhat)?;
        let h = h.into_values()?;
        self.work(1e-9 * (self.n_all * d_in * d_out) as f64);
        self.layers.insert(0, layer);
        if let Some(shape) = self.image_shape {
            // Targets vs the reconstruction of the data from this layer's latents.
            let k = 16.min(self.n);
            let mut rec = h[..k * d_in].to_vec();
            for l in &self.layers {
                rec = l.forward(self.be, &rec, Some(self.s.alpha))?;
            }
            let dl = self.widths[self.widths.len() - 1];
            self.pngs.push((
                format!("layer{li}.png"),
                rows_grid(
                    &format!("StarNet layer {li}: data items, and their reconstructions from this layer's latents through the trained layers"),
                    &[
                        ("data items", &self.x[..k * dl]),
                        ("their reconstructions, column by column", &rec),
                    ],
                    shape,
                    16,
                    16,
                )
                .png()?,
            ));
        }
        self.target = h;
        Ok(())
    }

    /// The trained decoder (after the last step) and the work in GWMs.
    pub fn into_net(self) -> Result<(StarNet, f64)> {
        let d0 = self.widths[0];
        let (code_mean, code_chol) = gaussian_fit(&self.target, d0, self.be.collective())?;
        Ok((
            StarNet {
                widths: self.widths.to_vec(),
                alpha: self.s.alpha,
                layers: self.layers,
                code_mean,
                code_chol,
            },
            self.gwms,
        ))
    }
}

impl Method for Training<'_> {
    type Record = Epoch;

    fn plan(&self) -> Plan {
        Plan {
            items: self.n,
            batches: Batches::Whole(self.n),
            epochs: (self.widths.len() - 1) * self.per_layer(),
            time_limit: None,
        }
    }

    fn order(&mut self, _epoch: usize) -> Vec<usize> {
        (0..self.n).collect()
    }

    fn batch(&mut self, g: usize, _index: usize, _items: &[usize]) -> Result<()> {
        let t0 = std::time::Instant::now();
        let (li, epoch) = self.step(g);
        self.step_gwms = 0.0;
        if epoch == 1 {
            self.begin_layer(li)?;
        }
        let (be, n) = (self.be, self.n_all);
        let (d_in, d_out) = (self.widths[li - 1], self.widths[li]);
        let mut layer = self.layer.take().expect("begun");
        // Numerical failures say where: layer and epoch.
        let at = |e: Error| match e {
            Error::Numeric(m) => Error::Numeric(format!("layer {li}, epoch {epoch}: {m}")),
            e => e,
        };
        let ops = self.operands.take().expect("begun");
        let (h, r1) = layer.solve_latents_held(be, &ops.zhat).map_err(at)?;
        self.work(1e-9 * (n * d_in * d_out) as f64);
        let (r2, work) = match self.s.weight_sample {
            Some(k) if k < n => {
                // One sample of all processes' items; each takes its own.
                let mine = self.offset..self.offset + self.n;
                let idx: Vec<usize> = rand::seq::index::sample(&mut self.rng, n, k)
                    .into_iter()
                    .filter(|i| mine.contains(i))
                    .map(|i| i - self.offset)
                    .collect();
                let hs = rows_of(&h.values()?, d_in, &idx);
                let zs = match &ops.zhat_host {
                    Some(z) => rows_of(z, d_out, &idx),
                    None => rows_of(&ops.zhat.values()?, d_out, &idx),
                };
                layer.solve_weights(be, &hs, &zs)
            }
            _ => layer.solve_weights_held(be, &h, &ops.zhat),
        }
        .map_err(at)?;
        self.work(work);
        let recon = layer.forward_held(be, &h, Some(self.s.alpha))?;
        self.work(1e-9 * (n * d_in * d_out) as f64);
        let r = be.row_residual_held(&recon, &ops.target)?;
        let (rms, elastic) = residual_errors(be, &r, d_out)?;
        self.layer = Some(layer);
        self.operands = Some(ops);
        self.report = Some(Epoch {
            layer: li,
            epoch,
            rms,
            elastic,
            ridge: r2.or(r1),
            gwms: self.gwms,
            seconds: t0.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    fn end_epoch(&mut self, g: usize, _seconds: f64) -> Result<EpochEnd<Epoch>> {
        let record = self.report.take().expect("one batch per step");
        let (li, epoch) = self.step(g);
        if epoch == self.per_layer() {
            self.end_layer(li)?;
        }
        Ok(EpochEnd::next(record, self.step_gwms))
    }

    fn line(&self, r: &Epoch) -> String {
        format!(
            "layer {} epoch {}: rms {:.5}, elastic {:.3}, {:.3} GWMs, {:.2} s{}",
            r.layer,
            r.epoch,
            r.rms,
            r.elastic,
            r.gwms,
            r.seconds,
            r.ridge.map_or(String::new(), |l| format!(
                ", ridge λ {l:.2e} (rank-deficient system)"
            ))
        )
    }
}

/// Trains a decoder of widths `widths` (d₀ … d_L, d_L = the data width) on
/// X (n × d_L) in `session`; returns it and every step's report.
pub fn train(
    be: &Backend,
    session: &mut Session,
    x: &[f64],
    widths: &[usize],
    s: &Settings,
) -> Result<(StarNet, Vec<Epoch>)> {
    let mut t = Training::new(be, x, widths, s, None)?;
    let fin = train::run(session, &mut t, Start::fresh())?;
    Ok((t.into_net()?.0, fin.history))
}

/// `starnet train` as a library run: trains from the top layer down,
/// encodes and decodes the training data beside the PCA baseline, writes
/// `layerN.png`, `reconstructions.png`, `samples.png` (for images) and
/// `model.safetensors`; returns the summary's own fields.
pub fn run(
    be: &Backend,
    session: &mut Session,
    x: &[f64],
    widths: &[usize],
    s: &Settings,
    image_shape: Option<(usize, usize)>,
) -> Result<serde_json::Value> {
    for w in check_widths(widths)? {
        session.warn(&w);
    }
    let dim = *widths.last().expect("widths");
    let n = x.len() / dim.max(1);
    // Every process holds all items and trains on its slice; the PCA
    // baseline is fitted to all of them on each.
    let all = x;
    let x = &all[be.collective().slice_of(n).start * dim..be.collective().slice_of(n).end * dim];
    session.say(&format!(
        "StarNet {} on {n} items of {dim} values, α {}, {} epochs per layer{}, on {} ({})",
        widths
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join(" → "),
        s.alpha,
        s.epochs,
        s.weight_sample
            .map_or(String::new(), |k| format!(", weights from {k} items")),
        be.describe(),
        be.precision()
    ));
    let mut t = Training::new(be, x, widths, s, image_shape)?;
    train::run(session, &mut t, Start::fresh())?;
    let mut pngs = std::mem::take(&mut t.pngs);
    let (net, _) = t.into_net()?;
    let (codes, scores) = net.encode(be, x)?;
    let recon = net.decode(be, &codes)?;
    let (rms, elastic) = errors(be, &recon, x, dim)?;
    let pca = crate::data::pca::pca_rms(all, dim, widths[0], 2000, 10_000, s.seed);
    let big_l = net.layers.len();
    let mut mean_score: Vec<f64> = (0..big_l)
        .map(|l| {
            (0..x.len() / dim)
                .map(|i| scores[i * big_l + l])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    be.collective().allreduce_sum_f64(&mut mean_score)?;
    session.tell(&format!(
        "encode → decode of the training data: rms {rms:.5}, elastic {elastic:.3}; PCA with {} components (linear baseline): rms {pca:.5}",
        widths[0]
    ));
    if let Some(shape) = image_shape {
        let k = 16.min(x.len() / dim);
        pngs.push((
            "reconstructions.png".into(),
            rows_grid(
                "StarNet: training items and their round trips (encode, then decode)",
                &[
                    ("training items", &x[..k * dim]),
                    ("their reconstructions, column by column", &recon[..k * dim]),
                ],
                shape,
                16,
                16,
            )
            .png()?,
        ));
        let samples = net.decode(be, &net.sample_codes(64, s.seed))?;
        let grid = rows_grid(
            "StarNet: 64 samples, codes drawn from the model's code distribution and decoded",
            &[("samples", &samples)],
            shape,
            64,
            16,
        );
        pngs.push(("samples.png".into(), grid.png()?));
    }
    for (name, bytes) in &pngs {
        session.file(name, bytes)?;
    }
    session.file("model.safetensors", &net.to_bytes()?)?;
    Ok(
        serde_json::json!({"method": "starnet train", "widths": widths, "alpha": s.alpha,
        "epochs": s.epochs, "weight_sample": s.weight_sample, "items": n, "rms": rms,
        "elastic": elastic, "pca_rms": pca, "mean_residual_per_layer": mean_score}),
    )
}

/// Mean and lower Cholesky factor of the covariance of the rows (ridged if
/// singular), summed over the items of every process.
fn gaussian_fit(codes: &[f64], d: usize, col: &dyn Collective) -> Result<(Vec<f64>, Vec<f64>)> {
    let local = codes.len() / d;
    let n = col.sum_count(local)?;
    let m = DMatrix::from_row_slice(local, d, codes);
    let mut mean: Vec<f64> = (0..d).map(|j| m.column(j).sum()).collect();
    col.allreduce_sum_f64(&mut mean)?;
    mean.iter_mut().for_each(|v| *v /= n as f64);
    let centred = DMatrix::from_fn(local, d, |i, j| m[(i, j)] - mean[j]);
    let mut cross = centred.transpose() * &centred;
    col.allreduce_sum_f64(cross.as_mut_slice())?;
    let cov = cross / (n.max(2) - 1) as f64;
    let (chol, _) = cholesky_ridge(cov)?;
    let l = chol.l();
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            out[i * d + j] = l[(i, j)];
        }
    }
    Ok((mean, out))
}

impl StarNet {
    /// Data width d_L.
    pub fn data_width(&self) -> usize {
        *self.widths.last().expect("widths")
    }

    /// Decodes codes (n × d₀) through layers `from..` (0-based) to the data.
    pub fn decode_from(&self, be: &Backend, codes: &[f64], from: usize) -> Result<Vec<f64>> {
        let mut h = codes.to_vec();
        for l in &self.layers[from..] {
            h = l.forward(be, &h, Some(self.alpha))?;
        }
        Ok(h)
    }

    /// Decodes codes (n × d₀).
    pub fn decode(&self, be: &Backend, codes: &[f64]) -> Result<Vec<f64>> {
        self.check_width(codes, self.widths[0], "codes")?;
        self.decode_from(be, codes, 0)
    }

    fn check_width(&self, x: &[f64], d: usize, what: &str) -> Result<()> {
        if !x.len().is_multiple_of(d) {
            return Err(Error::Input(format!(
                "{what} of {} values are not rows of width {d}",
                x.len()
            )));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::Input(format!(
                "{what} contain NaN or infinite values"
            )));
        }
        Ok(())
    }

    /// Codes of data rows (n × d_L) by the layer-wise pseudo-inverse from
    /// the top, and each item's residual norm ‖W h + c − ẑ‖ per layer (n ×
    /// L, layer 1 first).
    pub fn encode(&self, be: &Backend, x: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
        let dl = self.data_width();
        self.check_width(x, dl, "data")?;
        let n = x.len() / dl;
        let big_l = self.layers.len();
        let mut scores = vec![0.0; n * big_l];
        let mut t = x.to_vec();
        for (li, l) in self.layers.iter().enumerate().rev() {
            let zhat = be.leaky_relu(&t, self.alpha, true)?;
            let (h, _) = l.solve_latents(be, &zhat)?;
            let fit = l.forward(be, &h, None)?;
            let r = be.row_residual(&fit, &zhat, l.d_out)?;
            for i in 0..n {
                scores[i * big_l + li] = r[2 * i + 1].sqrt();
            }
            t = h;
        }
        Ok((t, scores))
    }

    /// `count` codes drawn from the Gaussian fitted to the training codes.
    pub fn sample_codes(&self, count: usize, seed: u64) -> Vec<f64> {
        let d = self.widths[0];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(count * d);
        for _ in 0..count {
            let e: Vec<f64> = (0..d).map(|_| crate::random::normal(&mut rng)).collect();
            for i in 0..d {
                let s: f64 = (0..=i).map(|j| self.code_chol[i * d + j] * e[j]).sum();
                out.push(self.code_mean[i] + s);
            }
        }
        out
    }

    /// The model as safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let tensor = |name: String, shape: Vec<usize>, data: Vec<f64>| crate::io::NamedTensor {
            name,
            shape,
            data,
        };
        let mut t = vec![];
        for (i, l) in self.layers.iter().enumerate() {
            match &l.conv {
                Some((sh, k, b)) => {
                    t.push(tensor(
                        format!("k{}", i + 1),
                        vec![sh.conv_channels(), sh.patch()],
                        k.clone(),
                    ));
                    t.push(tensor(
                        format!("b{}", i + 1),
                        vec![sh.conv_channels()],
                        b.clone(),
                    ));
                }
                None => {
                    t.push(tensor(
                        format!("w{}", i + 1),
                        vec![l.d_out, l.d_in],
                        l.w.clone(),
                    ));
                    t.push(tensor(format!("c{}", i + 1), vec![l.d_out], l.c.clone()));
                }
            }
        }
        let d0 = self.widths[0];
        t.push(tensor("code_mean".into(), vec![d0], self.code_mean.clone()));
        t.push(tensor(
            "code_chol".into(),
            vec![d0, d0],
            self.code_chol.clone(),
        ));
        crate::io::safetensors_bytes(
            &t,
            &serde_json::json!({"model": "starnet", "widths": self.widths, "alpha": self.alpha,
                "conv": self.layers.iter().map(|l| l.conv.as_ref().map(|c| c.0)).collect::<Vec<_>>()}),
        )
    }

    /// Reads a model written by [`StarNet::to_bytes`].
    pub fn from_bytes(bytes: &[u8], what: &str) -> Result<StarNet> {
        let bad = |why: String| Error::Input(format!("{what}: {why}"));
        let (t, meta) = crate::io::read_safetensors(bytes)?;
        if meta["model"] != "starnet" {
            return Err(bad("not a StarNet model".into()));
        }
        let widths: Vec<usize> = serde_json::from_value(meta["widths"].clone())
            .map_err(|e| bad(format!("widths: {e}")))?;
        check_widths(&widths)?;
        let alpha = meta["alpha"]
            .as_f64()
            .filter(|a| a.is_finite() && *a > 0.0)
            .ok_or_else(|| bad("no alpha > 0".into()))?;
        // Non-finite values would decode to NaN rows that look like output.
        let get = |name: &str, len: usize| -> Result<Vec<f64>> {
            match t.get(name) {
                Some((_, v)) if v.len() == len && v.iter().all(|x| x.is_finite()) => Ok(v.clone()),
                _ => Err(bad(format!(
                    "tensor {name} missing, not {len} values or not finite"
                ))),
            }
        };
        let shapes: Vec<Option<conv::ConvShape>> = match meta.get("conv") {
            Some(v) if !v.is_null() => {
                serde_json::from_value(v.clone()).map_err(|e| bad(format!("conv: {e}")))?
            }
            _ => vec![None; widths.len() - 1],
        };
        if shapes.len() != widths.len() - 1 {
            return Err(bad("conv shapes do not match the layers".into()));
        }
        let mut layers = vec![];
        for i in 1..widths.len() {
            let (d_in, d_out) = (widths[i - 1], widths[i]);
            layers.push(match shapes[i - 1] {
                Some(sh) => {
                    if (sh.d_in(), sh.d_out()) != (d_in, d_out) {
                        return Err(bad(format!(
                            "layer {i}: conv shape does not match the widths"
                        )));
                    }
                    let kernels = get(&format!("k{i}"), sh.conv_channels() * sh.patch())?;
                    Layer::from_conv(sh, kernels, get(&format!("b{i}"), sh.conv_channels())?)
                }
                None => Layer {
                    w: get(&format!("w{i}"), d_in * d_out)?,
                    c: get(&format!("c{i}"), d_out)?,
                    d_in,
                    d_out,
                    conv: None,
                },
            });
        }
        let d0 = widths[0];
        Ok(StarNet {
            code_mean: get("code_mean", d0)?,
            code_chol: get("code_chol", d0 * d0)?,
            widths,
            alpha,
            layers,
        })
    }
}

/// `starnet encode` (`score` false: codes.csv) or `starnet score`
/// (scores.csv, the residual norm per item and layer) of the rows `x`:
/// prints each layer's mean and largest residual; returns the summary's
/// own fields.
pub fn run_encode(
    be: &Backend,
    session: &mut Session,
    net: &StarNet,
    x: &[f64],
    score: bool,
) -> Result<serde_json::Value> {
    let (codes, scores) = net.encode(be, x)?;
    let n = x.len() / net.data_width().max(1);
    session.add_gwms(
        net.layers
            .iter()
            .map(|l| 2e-9 * (n * l.d_in * l.d_out) as f64)
            .sum(),
    );
    let big_l = net.layers.len();
    for l in 0..big_l {
        let col: Vec<f64> = (0..n).map(|i| scores[i * big_l + l]).collect();
        let mean = col.iter().sum::<f64>() / n as f64;
        let max = col.iter().copied().fold(0.0, f64::max);
        session.tell(&format!(
            "layer {}: residual norm mean {mean:.5}, max {max:.5}",
            l + 1
        ));
    }
    if score {
        session.file("scores.csv", rows_csv(&scores, big_l).as_bytes())?;
    } else {
        session.file("codes.csv", rows_csv(&codes, net.widths[0]).as_bytes())?;
    }
    Ok(
        serde_json::json!({"method": if score { "starnet score" } else { "starnet encode" }, "items": n}),
    )
}

/// Decodes `codes` (rows of width d₀) into `NAME.csv` and, with an image
/// shape, `NAME.png` (`decoded` for `starnet decode`, `samples` for
/// `starnet sample`); returns the number of rows.
pub fn run_decode(
    be: &Backend,
    session: &mut Session,
    net: &StarNet,
    codes: &[f64],
    name: &str,
    image_shape: Option<(usize, usize)>,
) -> Result<usize> {
    if let Some((h, w)) = image_shape {
        if h * w != net.data_width() {
            return Err(Error::Input(format!(
                "images of {h}x{w} have {} pixels; the model decodes to {} values",
                h * w,
                net.data_width()
            )));
        }
    }
    let n = codes.len() / net.widths[0].max(1);
    let x = net.decode(be, codes)?;
    session.add_gwms(
        net.layers
            .iter()
            .map(|l| 1e-9 * (n * l.d_in * l.d_out) as f64)
            .sum(),
    );
    session.file(
        &format!("{name}.csv"),
        rows_csv(&x, net.data_width()).as_bytes(),
    )?;
    if let Some(shape) = image_shape.or_else(|| crate::io::square_shape(net.data_width())) {
        let title = format!(
            "StarNet: {} decoded rows{}",
            n.min(256),
            if n > 256 {
                format!(" (the first 256 of {n})")
            } else {
                String::new()
            }
        );
        let grid = rows_grid(
            &title,
            &[(&format!("{name} rows, in order"), &x)],
            shape,
            256,
            16,
        );
        session.file(&format!("{name}.png"), &grid.png()?)?;
    }
    Ok(n)
}
