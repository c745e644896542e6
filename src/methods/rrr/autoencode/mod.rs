//! RRR autoencoder with iDE codes (paper section 6, SPEC 2.3).
//!
//! A cyclic network D → E… → C → R… → D: the data nodes are both input and
//! output. A batch holds |Kd| data items and |Kc| code items. Every node is
//! bilinear (metric g = outdeg) with a bias, and every node's activation is
//! the zigmoid `f(z) = clamp((z + m)/2m, 0, 1)` or the gapped step
//! (`0` for `z ≤ −m`, `1` for `z ≥ m`), z = y − b:
//!
//! ```text
//! A: x̄ = mean over out-edges; data nodes x̄ = d[k] on data items, code
//!    nodes x̄ = c[k] on code items (there only y and b move, equally and
//!    oppositely, onto f(y − b) = x̄); elsewhere (x̄, y, b) → the graph of f;
//!    w̄ per edge with Σ_i w̄[i→j]² = Ω² per node j
//! B: Σ_i x[k,i→j] w[k,i→j] = Ω y[k,j] at every node;  b[k,j] = b̄[j]
//! ```
//!
//! Item kinds travel in the engine's labels ([`LABEL_DATA`], [`LABEL_CODE`])
//! and the fixed-or-free node kinds of `kernels::consensus_nodes`.
//! Codes of a batch are drawn from the product of the per-code-node
//! empirical distributions of the previous batch's encodings (invertible,
//! data-enveloping, disentangled: iDE); binary encoding uses all 2ⁿ codes.
//! Each batch starts from feed-around passes with the current consensus
//! weights and biases: data items from the data nodes round to the data
//! nodes' pre-activations, code items from the code nodes round to theirs.
//! Errors: `data_err` = rms of D(E(d)) − d, `code_err` = rms of
//! E(D(c)) − c (feed-around), and RRR_err.

use rand::Rng;
use rayon::prelude::*;

mod generator;
mod persist;
mod run;
mod train;

pub use generator::*;
pub use persist::*;
pub use run::*;
pub use train::*;

use super::Model;
use crate::data::matrix::parse_err;
use crate::error::{Error, Result};
use crate::problem::{NodeKind, RrrProblem, RrrState, WeightGroups};

/// Engine label of a data item (x fixed at the data nodes).
pub const LABEL_DATA: u32 = 0;
/// Engine label of a code item (x fixed at the code nodes).
pub const LABEL_CODE: u32 = 1;

/// Activation at every node.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `clamp((z + m)/2m, 0, 1)` (images).
    Zigmoid,
    /// 0 below −m, 1 above m (binary data).
    Step,
}

impl Activation {
    /// f(z) for a forward pass (the step thresholds at 0 inside its gap).
    pub fn apply(self, z: f64, m: f64) -> f64 {
        match self {
            Activation::Zigmoid => ((z + m) / (2.0 * m)).clamp(0.0, 1.0),
            Activation::Step => {
                if z > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// The cyclic graph: nodes numbered data, encoder hidden, code, decoder
/// hidden. Edges into encoder and code nodes come from data or encoder
/// nodes of lower index, edges into decoder nodes from code or decoder
/// nodes of lower index, edges into data nodes from code or decoder nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AeNet {
    /// Data nodes D.
    pub data: usize,
    /// Encoder hidden nodes.
    pub encode: usize,
    /// Code nodes C.
    pub code: usize,
    /// Decoder hidden nodes.
    pub decode: usize,
    /// Edges (source, destination), sorted by destination then source.
    pub edges: Vec<(u32, u32)>,
}

/// Which part of the cycle a node belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    Data,
    Encode,
    Code,
    Decode,
}

impl AeNet {
    /// Total nodes.
    pub fn nodes(&self) -> usize {
        self.data + self.encode + self.code + self.decode
    }

    /// First code node.
    pub fn first_code(&self) -> usize {
        self.data + self.encode
    }

    fn part(&self, i: usize) -> Part {
        if i < self.data {
            Part::Data
        } else if i < self.first_code() {
            Part::Encode
        } else if i < self.first_code() + self.code {
            Part::Code
        } else {
            Part::Decode
        }
    }

    /// Layered and fully connected: `data → encoder… → code → decoder… → data`.
    pub fn layered(data: usize, encoder: &[usize], code: usize, decoder: &[usize]) -> Result<Self> {
        if data == 0 || code == 0 || encoder.contains(&0) || decoder.contains(&0) {
            return Err(Error::Input(format!(
                "autoencoder widths must be positive: data {data}, encoder {encoder:?}, code {code}, decoder {decoder:?}"
            )));
        }
        // Node numbering follows the widths data, encoder…, code, decoder…;
        // the last layer feeds the data nodes.
        let mut widths = vec![data];
        widths.extend_from_slice(encoder);
        widths.push(code);
        widths.extend_from_slice(decoder);
        crate::problem::check_layered_size(&widths)?;
        let last_to_data = (*widths.last().expect("widths") as u64).checked_mul(data as u64);
        if last_to_data.is_none_or(|e| e > u64::from(u32::MAX)) {
            return Err(Error::Input(format!(
                "an autoencoder of widths {widths:?} has more than 2³² − 1 edges"
            )));
        }
        let mut edges = crate::problem::layered_edges(&widths);
        let total: usize = widths.iter().sum();
        let last = *widths.last().expect("widths");
        for i in total - last..total {
            for j in 0..data {
                edges.push((i as u32, j as u32));
            }
        }
        edges.sort_by_key(|&(s, d)| (d, s));
        let net = AeNet {
            data,
            encode: encoder.iter().sum(),
            code,
            decode: decoder.iter().sum(),
            edges,
        };
        net.check()?;
        Ok(net)
    }

    /// Rejects edges that break the cycle's order and nodes without inputs.
    pub fn check(&self) -> Result<()> {
        let n = self.nodes();
        let mut fed = vec![false; n];
        for &(s, d) in &self.edges {
            let (s, d) = (s as usize, d as usize);
            let ok = s < n
                && d < n
                && s != d
                && match (self.part(s), self.part(d)) {
                    (Part::Data | Part::Encode, Part::Encode | Part::Code) => s < d,
                    (Part::Code | Part::Decode, Part::Decode) => s < d,
                    (Part::Code | Part::Decode, Part::Data) => true,
                    _ => false,
                };
            if !ok {
                return Err(Error::Input(format!(
                    "edge {s} -> {d} does not fit the autoencoder cycle (D = {}, encode = {}, code = {}, decode = {}): \
                     encoder and code nodes read data or encoder nodes of lower index, decoder nodes read code or decoder nodes of lower index, data nodes read code or decoder nodes",
                    self.data, self.encode, self.code, self.decode
                )));
            }
            fed[d] = true;
        }
        if let Some(j) = (0..n).find(|&j| !fed[j]) {
            return Err(Error::Input(format!("node {j} has no inputs")));
        }
        Ok(())
    }

    /// Parses the reference's autoencoder net file: `D encode code decode`,
    /// then for every node in order `node indeg i_1 … i_indeg`.
    pub fn parse(text: &str, path: &std::path::Path) -> Result<Self> {
        let mut toks = super::net::IntTokens::new(text, path);
        let (data, l) = toks.int("D")?;
        let (encode, _) = toks.int("the encoder count")?;
        let (code, _) = toks.int("the code count")?;
        let (decode, _) = toks.int("the decoder count")?;
        if data == 0 || code == 0 {
            return Err(parse_err(path, l, "need D ≥ 1 and at least one code node"));
        }
        let n = [encode, code, decode]
            .iter()
            .try_fold(data, |a, &b| a.checked_add(b))
            .filter(|&n| n <= u32::MAX as usize)
            .ok_or_else(|| {
                parse_err(
                    path,
                    l,
                    "the node counts are out of range (at most 2³² − 1 nodes)",
                )
            })?;
        let mut edges = vec![];
        for node in 0..n {
            let (indeg, line) = toks.node_entry(node)?;
            if indeg == 0 || indeg >= n {
                return Err(parse_err(
                    path,
                    line,
                    format!("node {node}: in-degree {indeg} must be in 1..{n}"),
                ));
            }
            for _ in 0..indeg {
                let (src, line) = toks.int(&format!("an input of node {node}"))?;
                if src >= n {
                    return Err(parse_err(
                        path,
                        line,
                        format!("node {node}: input {src} is out of range (0..{n})"),
                    ));
                }
                edges.push((src as u32, node as u32));
            }
        }
        toks.end()?;
        edges.sort_by_key(|&(s, d)| (d, s));
        if let Some(w) = edges.windows(2).find(|w| w[0] == w[1]) {
            return Err(parse_err(
                path,
                0,
                format!("node {} reads node {} twice", w[0].1, w[0].0),
            ));
        }
        let net = AeNet {
            data,
            encode,
            code,
            decode,
            edges,
        };
        net.check().map_err(|e| match e {
            Error::Input(m) => parse_err(path, 0, m),
            e => e,
        })?;
        Ok(net)
    }

    /// Reads a net file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = crate::io::read_text(path)?;
        Self::parse(&text, path)
    }

    /// The reference net-file text (round-trips through [`AeNet::parse`]).
    pub fn to_text(&self) -> String {
        let n = self.nodes();
        let mut ins: Vec<Vec<u32>> = vec![vec![]; n];
        for &(s, d) in &self.edges {
            ins[d as usize].push(s);
        }
        let mut s = format!(
            "{} {} {} {}\n\n",
            self.data, self.encode, self.code, self.decode
        );
        for (j, srcs) in ins.iter().enumerate() {
            let row: Vec<String> = srcs.iter().map(|v| v.to_string()).collect();
            s.push_str(&format!("{j} {}\n{}\n", srcs.len(), row.join(" ")));
        }
        s
    }
}

/// Training settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AeSettings {
    /// Data items per batch |Kd|.
    pub batch: usize,
    /// Code items per batch |Kc|.
    pub codes: usize,
    /// Epochs.
    pub epochs: usize,
    /// RRR iterations per batch.
    pub iters_per_batch: usize,
    /// Stop a batch once RRR_err < tol (0: never).
    pub tol: f64,
    /// β.
    pub beta: f64,
    /// Ω.
    pub omega: f64,
    /// Activation half-width m.
    pub margin: f64,
    /// Activation at every node.
    pub activation: Activation,
    /// Seed of the initial weights, shuffles and code samples.
    pub seed: u64,
}

impl AeSettings {
    /// Rejects impossible values.
    pub fn check(&self) -> Result<()> {
        super::check_run(
            self.batch,
            self.epochs,
            self.iters_per_batch,
            &[
                ("beta", self.beta),
                ("omega", self.omega),
                ("margin", self.margin),
            ],
            self.tol,
        )
    }
}

/// A cyclic net with its RRR problem.
#[derive(Clone, Debug)]
pub struct Autoencoder {
    /// The graph.
    pub net: AeNet,
    /// RRR structure (edges sorted by destination).
    pub problem: RrrProblem,
    /// Activation and its half-width.
    pub activation: Activation,
    /// m.
    pub margin: f64,
}

/// Values of one feed-around pass: node outputs x and pre-activations y.
#[derive(Clone, Debug)]
pub struct Pass {
    /// x per node (the fixed values at the starting nodes).
    pub x: Vec<f64>,
    /// y per node.
    pub y: Vec<f64>,
}

impl Autoencoder {
    /// Builds the RRR problem (SPEC 2.3): every node bilinear with metric
    /// outdeg and a bias, data and code nodes fixed on their items.
    pub fn new(net: AeNet, s: &AeSettings) -> Result<Self> {
        net.check()?;
        let n = net.nodes();
        let mut p = RrrProblem::from_edges(n, &net.edges, WeightGroups::ByDestination)?;
        let (fixed, free): (fn(u32) -> NodeKind, NodeKind) = match s.activation {
            Activation::Zigmoid => (|on| NodeKind::FixedZigmoid { on }, NodeKind::Zigmoid),
            Activation::Step => (|on| NodeKind::FixedStep { on }, NodeKind::Step),
        };
        for i in 0..n {
            p.kind[i] = match net.part(i) {
                Part::Data => fixed(LABEL_DATA),
                Part::Code => fixed(LABEL_CODE),
                _ => free,
            };
            p.metric[i] = p.outdeg(i).max(1) as f64;
        }
        p.has_bias = true;
        p.omega = s.omega;
        p.act_margin = s.margin;
        Ok(Autoencoder {
            net,
            problem: p,
            activation: s.activation,
            margin: s.margin,
        })
    }

    /// Random first weights: uniform in [−1, 1] per node, mean removed, norm
    /// Ω (the classifier's rule); biases 0.
    pub fn random_model(&self, seed: u64) -> Model {
        super::random_model(&self.problem, seed)
    }

    fn eval(&self, m: &Model, j: usize, x: &[f64], y: &mut [f64]) -> f64 {
        let p = &self.problem;
        let mut s = 0.0;
        for e in p.in_ptr[j] as usize..p.in_ptr[j + 1] as usize {
            s += x[p.src[e] as usize] * m.weights[e];
        }
        y[j] = s / p.omega;
        self.activation.apply(y[j] - m.biases[j], self.margin)
    }

    /// Feed-around from data `d`: encoder, code, decoder, then the data
    /// nodes' pre-activations (x at the data nodes stays d).
    pub fn pass_data(&self, m: &Model, d: &[f64]) -> Pass {
        let n = self.net.nodes();
        let (mut x, mut y) = (vec![0.0; n], vec![0.0; n]);
        x[..self.net.data].copy_from_slice(d);
        for j in self.net.data..n {
            x[j] = self.eval(m, j, &x, &mut y);
        }
        for j in 0..self.net.data {
            self.eval(m, j, &x, &mut y);
        }
        Pass { x, y }
    }

    /// Feed-around from code `c`: decoder, data, encoder, then the code
    /// nodes' pre-activations (x at the code nodes stays c).
    pub fn pass_code(&self, m: &Model, c: &[f64]) -> Pass {
        let n = self.net.nodes();
        let fc = self.net.first_code();
        let (mut x, mut y) = (vec![0.0; n], vec![0.0; n]);
        x[fc..fc + self.net.code].copy_from_slice(c);
        for j in (fc + self.net.code..n).chain(0..self.net.data) {
            x[j] = self.eval(m, j, &x, &mut y);
        }
        for j in self.net.data..fc + self.net.code {
            let v = self.eval(m, j, &x, &mut y);
            if j < fc {
                x[j] = v;
            }
        }
        Pass { x, y }
    }

    /// E(d): the code of data d.
    pub fn encode(&self, m: &Model, d: &[f64]) -> Vec<f64> {
        let fc = self.net.first_code();
        self.pass_data(m, d).x[fc..fc + self.net.code].to_vec()
    }

    /// D(c): the data of code c.
    pub fn decode(&self, m: &Model, c: &[f64]) -> Vec<f64> {
        let pass = self.pass_code(m, c);
        pass.x[..self.net.data].to_vec()
    }

    /// D(E(d)): the round trip of one item through code space.
    pub fn round_trip(&self, m: &Model, d: &[f64]) -> Vec<f64> {
        self.decode(m, &self.encode(m, d))
    }

    /// D(E(d)) from a data pass: f(y − b) at the data nodes.
    fn reconstruction(&self, m: &Model, pass: &Pass) -> Vec<f64> {
        (0..self.net.data)
            .map(|j| self.activation.apply(pass.y[j] - m.biases[j], self.margin))
            .collect()
    }

    /// E(D(c)) from a code pass: f(y − b) at the code nodes.
    fn code_return(&self, m: &Model, pass: &Pass) -> Vec<f64> {
        let fc = self.net.first_code();
        (fc..fc + self.net.code)
            .map(|j| self.activation.apply(pass.y[j] - m.biases[j], self.margin))
            .collect()
    }

    /// rms of D(E(d)) − d over `data` (rows of width D).
    pub fn data_err(&self, m: &Model, data: &[f64]) -> f64 {
        round_trip_rms(data, self.net.data, |row| {
            self.reconstruction(m, &self.pass_data(m, row))
        })
    }

    /// rms of E(D(c)) − c over `codes` (rows of width C).
    pub fn code_err(&self, m: &Model, codes: &[f64]) -> f64 {
        round_trip_rms(codes, self.net.code, |row| {
            self.code_return(m, &self.pass_code(m, row))
        })
    }

    /// The RRR state of a batch: `data` rows (data items) then `codes` rows
    /// (code items), every replica set from its feed-around pass.
    pub fn batch_state(&self, m: &Model, data: &[&[f64]], codes: &[&[f64]]) -> RrrState {
        let mut s = RrrState::zeros(&self.problem, data.len() + codes.len());
        self.fill_batch_state(m, data, codes, &mut s);
        s
    }

    /// [`Self::batch_state`] into a state of the right shapes, reused
    /// across batches of the same sizes: a fresh one is ≈ 1 GB of new pages
    /// per batch on MNIST.
    pub fn fill_batch_state(&self, m: &Model, data: &[&[f64]], codes: &[&[f64]], s: &mut RrrState) {
        let p = &self.problem;
        let kk = data.len() + codes.len();
        debug_assert_eq!(s.items, kk);
        let fc = self.net.first_code();
        let passes: Vec<Pass> = data
            .par_iter()
            .map(|d| self.pass_data(m, d))
            .chain(codes.par_iter().map(|c| self.pass_code(m, c)))
            .collect();
        let views: Vec<(&[f64], &[f64])> = passes
            .iter()
            .map(|q| (q.x.as_slice(), q.y.as_slice()))
            .collect();
        s.set_replicas(p, &views, &m.weights, &m.biases);
        s.data.fill(0.0);
        for (k, d) in data.iter().enumerate() {
            for (i, &v) in d.iter().enumerate() {
                s.data[i * kk + k] = v;
            }
            s.labels[k] = LABEL_DATA;
        }
        for (q, c) in codes.iter().enumerate() {
            let k = data.len() + q;
            for (i, &v) in c.iter().enumerate() {
                s.data[(fc + i) * kk + k] = v;
            }
            s.labels[k] = LABEL_CODE;
        }
    }
}

/// rms of `back(row) − row` over the rows of width `w` (NaN without rows).
fn round_trip_rms(rows: &[f64], w: usize, back: impl Fn(&[f64]) -> Vec<f64> + Sync) -> f64 {
    let n = rows.len() / w.max(1);
    if n == 0 {
        return f64::NAN;
    }
    // Per-row sums in parallel, added in row order: the same bits whatever
    // the thread count or work stealing.
    let per_row: Vec<f64> = rows[..n * w]
        .par_chunks(w)
        .map(|row| {
            back(row)
                .iter()
                .zip(row)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f64>()
        })
        .collect();
    let sq: f64 = per_row.iter().sum();
    (sq / (n * w) as f64).sqrt()
}

/// Draws `count` codes, coordinate i uniformly from `lists[i]` (the i-th
/// code node's empirical values): the product of the per-node empirical
/// distributions. Rows of width `lists.len()`.
pub fn sample_codes(lists: &[Vec<f64>], count: usize, rng: &mut impl Rng) -> Vec<f64> {
    let mut out = Vec::with_capacity(count * lists.len());
    for _ in 0..count {
        for l in lists {
            out.push(if l.is_empty() {
                0.0
            } else {
                l[rng.random_range(0..l.len())]
            });
        }
    }
    out
}

/// The 2ⁿ binary codes of n bits (rows, most significant bit first).
pub fn binary_codes(n: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(n << n);
    for v in 0..1usize << n {
        for b in (0..n).rev() {
            out.push(((v >> b) & 1) as f64);
        }
    }
    out
}

/// The 2ⁿ one-hot vectors of length 2ⁿ (rows).
pub fn one_hot(n: usize) -> Vec<f64> {
    let m = 1usize << n;
    let mut out = vec![0.0; m * m];
    for k in 0..m {
        out[k * m + k] = 1.0;
    }
    out
}

/// Per code node, the encodings of `items` (the iDE empirical lists).
pub fn code_lists(ae: &Autoencoder, m: &Model, items: &[&[f64]]) -> Vec<Vec<f64>> {
    let codes: Vec<Vec<f64>> = items.par_iter().map(|d| ae.encode(m, d)).collect();
    (0..ae.net.code)
        .map(|i| codes.iter().map(|c| c[i]).collect())
        .collect()
}

/// Binary encoding solved: every one-hot item round-trips exactly and every
/// code maps back to itself (D and E are inverse bijections).
pub fn binary_solved(ae: &Autoencoder, m: &Model, n: usize) -> bool {
    ae.data_err(m, &one_hot(n)) == 0.0 && ae.code_err(m, &binary_codes(n)) == 0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn sampler_draws_each_coordinate_from_its_own_list() {
        let lists = vec![vec![1.0, 2.0], vec![10.0], vec![-5.0, -6.0, -7.0]];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let codes = sample_codes(&lists, 200, &mut rng);
        assert_eq!(codes.len(), 600);
        for row in codes.chunks(3) {
            for (v, l) in row.iter().zip(&lists) {
                assert!(l.contains(v), "{v} not in {l:?}");
            }
        }
        // Every value of every list is drawn (200 draws of ≤ 3 values).
        for (i, l) in lists.iter().enumerate() {
            for v in l {
                assert!(codes.chunks(3).any(|r| r[i] == *v));
            }
        }
    }

    #[test]
    fn layered_net_round_trips_and_rejects_bad_edges() {
        let net = AeNet::layered(8, &[], 3, &[]).unwrap();
        assert_eq!(net.edges.len(), 48);
        let text = net.to_text();
        let back = AeNet::parse(&text, std::path::Path::new("t")).unwrap();
        assert_eq!(back, net);
        let bad = AeNet {
            edges: vec![(0, 1)],
            ..net.clone()
        };
        assert!(bad.check().is_err());
    }

    #[test]
    fn binary_codes_and_one_hot() {
        assert_eq!(
            binary_codes(2),
            vec![0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]
        );
        assert_eq!(one_hot(1), vec![1.0, 0.0, 0.0, 1.0]);
    }
}
