//! The RRR problem as the engines see it: a directed graph of neurons with
//! edges sorted by destination, per-node side constraints ([`NodeKind`]),
//! weight groups, the class selection ([`Selection`]), and the layout of
//! the replicated variables of one batch ([`RrrState`]). The kinds are Rust
//! enums here; their `u32` codes exist only at the kernel boundary
//! ([`RrrProblem::node_codes`], [`StepMode::code`], [`Selection::code`]).

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels::rrr_step::csr_ptr;
use crate::kernels::{class_select, consensus_nodes as nodes, rrr_step};

/// A node's side constraint in the A-projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    /// x̄ only (the mean of the x replicas).
    Free,
    /// x̄ clamped at 0 (NMF code node).
    Nonneg,
    /// x = the data value (classifier input node).
    Data,
    /// ReLU hidden node.
    Relu,
    /// Class node of class `index`.
    Class {
        /// Its class.
        index: u32,
    },
    /// Zigmoid node.
    Zigmoid,
    /// Gapped-step node.
    Step,
    /// x fixed to the data value; y and b projected.
    Fixed,
    /// Zigmoid node whose x is fixed to the data value on the items
    /// labelled `on` (an autoencoder's data nodes on data items, its code
    /// nodes on code items) and free on the others.
    FixedZigmoid {
        /// The item label on which x is fixed.
        on: u32,
    },
    /// Gapped-step node fixed on the items labelled `on`.
    FixedStep {
        /// The item label on which x is fixed.
        on: u32,
    },
}

impl NodeKind {
    /// The kind of the kernel's (kind, parameter) codes; `None` for an
    /// unknown kind code.
    pub fn from_code(kind: u32, param: u32) -> Option<Self> {
        Some(match kind {
            nodes::NODE_FREE => NodeKind::Free,
            nodes::NODE_NONNEG => NodeKind::Nonneg,
            nodes::NODE_DATA => NodeKind::Data,
            nodes::NODE_RELU => NodeKind::Relu,
            nodes::NODE_CLASS => NodeKind::Class { index: param },
            nodes::NODE_ZIGMOID => NodeKind::Zigmoid,
            nodes::NODE_STEP => NodeKind::Step,
            nodes::NODE_FIXED => NodeKind::Fixed,
            nodes::NODE_FIXED_ZIGMOID => NodeKind::FixedZigmoid { on: param },
            nodes::NODE_FIXED_STEP => NodeKind::FixedStep { on: param },
            _ => return None,
        })
    }

    /// The kernel's (kind, parameter) codes (`consensus_nodes::NODE_*`).
    pub fn code(self) -> (u32, u32) {
        match self {
            NodeKind::Free => (nodes::NODE_FREE, 0),
            NodeKind::Nonneg => (nodes::NODE_NONNEG, 0),
            NodeKind::Data => (nodes::NODE_DATA, 0),
            NodeKind::Relu => (nodes::NODE_RELU, 0),
            NodeKind::Class { index } => (nodes::NODE_CLASS, index),
            NodeKind::Zigmoid => (nodes::NODE_ZIGMOID, 0),
            NodeKind::Step => (nodes::NODE_STEP, 0),
            NodeKind::Fixed => (nodes::NODE_FIXED, 0),
            NodeKind::FixedZigmoid { on } => (nodes::NODE_FIXED_ZIGMOID, on),
            NodeKind::FixedStep { on } => (nodes::NODE_FIXED_STEP, on),
        }
    }
}

/// What the B-projection does with y at bilinear nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepMode {
    /// y fixed to the data (NMF: Σ_i x w = Y).
    Nmf,
    /// y free, with metric g (classifier, autoencoder).
    FreeY,
}

impl StepMode {
    /// The kernel's code (`rrr_step::MODE_*`).
    pub fn code(self) -> u32 {
        match self {
            StepMode::Nmf => rrr_step::MODE_NMF,
            StepMode::FreeY => rrr_step::MODE_FREE_Y,
        }
    }
}

/// Class-constraint selection inside the A-projection, with its budget of
/// items per batch (EE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Selection {
    /// Every item keeps its label.
    #[default]
    None,
    /// Eccentric exemptions (paper eq. 32).
    Exempt(usize),
    /// Relabeling (eq. 33).
    Relabel(usize),
    /// Relabeling of class-0 items only (the generator's false-positive allowance).
    RelabelFakes(usize),
}

impl Selection {
    /// The kernel's (mode, budget) codes (`class_select::MODE_*`).
    pub fn code(self) -> (u32, usize) {
        match self {
            Selection::None => (class_select::MODE_NONE, 0),
            Selection::Exempt(n) => (class_select::MODE_EXEMPT, n),
            Selection::Relabel(n) => (class_select::MODE_RELABEL, n),
            Selection::RelabelFakes(n) => (class_select::MODE_RELABEL_FAKES, n),
        }
    }

    /// True when items may be exempted or relabeled.
    pub fn is_active(self) -> bool {
        self != Selection::None
    }
}

/// Structure and constants of an RRR model, independent of the batch.
#[derive(Clone, Debug)]
pub struct RrrProblem {
    /// Number of nodes N.
    pub nodes: usize,
    /// Source node per edge (edges sorted by destination, then source).
    pub src: Vec<u32>,
    /// Destination node per edge.
    pub dst: Vec<u32>,
    /// In-edge CSR: edges `in_ptr[j]..in_ptr[j+1]` end at node j.
    pub in_ptr: Vec<u32>,
    /// Out-edge CSR offsets.
    pub out_ptr: Vec<u32>,
    /// Out-edge ids, grouped by source.
    pub out_edges: Vec<u32>,
    /// Side constraint per node.
    pub kind: Vec<NodeKind>,
    /// Metric weight g per node (outdeg for hidden, Υ for class nodes).
    pub metric: Vec<f64>,
    /// Nodes with a bilinear constraint (those with in-edges).
    pub bil: Vec<u32>,
    /// Weight-norm groups (CSR over edge ids).
    pub group_ptr: Vec<u32>,
    /// Edge ids per group.
    pub group_edges: Vec<u32>,
    /// Clamp consensus weights at 0 (NMF).
    pub clamp_weights: bool,
    /// What the B-projection does with y.
    pub mode: StepMode,
    /// Nodes carry bias replicas.
    pub has_bias: bool,
    /// Ω.
    pub omega: f64,
    /// Class margin Δ.
    pub class_margin: f64,
    /// Activation half-width m.
    pub act_margin: f64,
    /// RRR_err is also reported per group of bilinear nodes: `bil` split
    /// into this many equal contiguous ranges (independent runs batched as
    /// a disjoint union of graphs). 1 = one total.
    pub err_groups: usize,
    /// Class-constraint selection: exemptions or relabeling, with its budget per batch.
    pub selection: Selection,
    /// First class node (class nodes are the contiguous range after it).
    pub first_class: usize,
    /// Number of class nodes.
    pub classes: usize,
}

/// How weights are grouped for the norm constraint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightGroups {
    /// Σ_i w[i→j]² = Ω² per destination j (classifier, autoencoder).
    ByDestination,
    /// Σ_j w[i→j]² = Ω² per source i (NMF code nodes).
    BySource,
}

impl RrrProblem {
    /// Builds the graph arrays from an edge list (any order; duplicates rejected).
    pub fn from_edges(nodes: usize, edges: &[(u32, u32)], groups: WeightGroups) -> Result<Self> {
        let mut sorted = edges.to_vec();
        sorted.sort_by_key(|&(s, d)| (d, s));
        for w in sorted.windows(2) {
            if w[0] == w[1] {
                return Err(Error::Input(format!(
                    "duplicate edge {} -> {}",
                    w[0].0, w[0].1
                )));
            }
        }
        for &(s, d) in &sorted {
            if s as usize >= nodes || d as usize >= nodes || s == d {
                return Err(Error::Input(format!(
                    "edge {s} -> {d} is invalid for {nodes} nodes"
                )));
            }
        }
        let src: Vec<u32> = sorted.iter().map(|e| e.0).collect();
        let dst: Vec<u32> = sorted.iter().map(|e| e.1).collect();
        let in_ptr = csr_ptr(nodes, &dst);
        let mut out_edges: Vec<u32> = (0..src.len() as u32).collect();
        out_edges.sort_by_key(|&e| (src[e as usize], e));
        let out_ptr = csr_ptr(nodes, &src);
        let bil = (0..nodes as u32)
            .filter(|&j| in_ptr[j as usize + 1] > in_ptr[j as usize])
            .collect();
        let (group_ptr, group_edges) = match groups {
            WeightGroups::ByDestination => (in_ptr.clone(), (0..src.len() as u32).collect()),
            WeightGroups::BySource => (out_ptr.clone(), out_edges.clone()),
        };
        Ok(RrrProblem {
            nodes,
            src,
            dst,
            in_ptr,
            out_ptr,
            out_edges,
            kind: vec![NodeKind::Free; nodes],
            metric: vec![1.0; nodes],
            bil,
            group_ptr,
            group_edges,
            clamp_weights: false,
            mode: StepMode::FreeY,
            has_bias: false,
            omega: 1.0,
            class_margin: 0.0,
            act_margin: 0.0,
            err_groups: 1,
            selection: Selection::None,
            first_class: nodes,
            classes: 0,
        })
    }

    /// A classifier on a graph whose first `data` nodes are inputs and last
    /// `classes` nodes are class nodes, the rest ReLU hidden nodes (SPEC 2.2):
    /// metric g = outdeg for hidden nodes and Υ for class nodes, weights
    /// normalized per destination, biases on.
    pub fn classifier(
        nodes: usize,
        edges: &[(u32, u32)],
        data: usize,
        classes: usize,
        omega: f64,
        margin: f64,
        upsilon: f64,
    ) -> Result<Self> {
        if data + classes > nodes {
            return Err(Error::Input(format!(
                "{data} data and {classes} class nodes do not fit in {nodes} nodes"
            )));
        }
        let mut p = Self::from_edges(nodes, edges, WeightGroups::ByDestination)?;
        let first_class = nodes - classes;
        for i in 0..nodes {
            let (kind, g) = if i < data {
                (NodeKind::Data, 1.0)
            } else if i < first_class {
                (NodeKind::Relu, p.outdeg(i).max(1) as f64)
            } else {
                let index = (i - first_class) as u32;
                (NodeKind::Class { index }, upsilon)
            };
            p.kind[i] = kind;
            p.metric[i] = g;
        }
        p.has_bias = true;
        p.omega = omega;
        p.class_margin = margin;
        p.first_class = first_class;
        p.classes = classes;
        Ok(p)
    }

    /// Checks that the error groups split the bilinear nodes evenly.
    pub fn check_groups(&self) -> Result<()> {
        if self.err_groups == 0 || !self.bil.len().is_multiple_of(self.err_groups) {
            return Err(Error::Input(format!(
                "{} bilinear nodes cannot form {} equal error groups",
                self.bil.len(),
                self.err_groups
            )));
        }
        Ok(())
    }

    /// Number of edges E.
    pub fn edges(&self) -> usize {
        self.src.len()
    }

    /// The kernels' per-node (kind, parameter) codes.
    pub fn node_codes(&self) -> (Vec<u32>, Vec<u32>) {
        self.kind.iter().map(|k| k.code()).unzip()
    }

    /// Out-degree of a node.
    pub fn outdeg(&self, i: usize) -> usize {
        (self.out_ptr[i + 1] - self.out_ptr[i]) as usize
    }
}

/// Checks that a layered net of these widths can be indexed: node and
/// edge ids are 32-bit in the engines.
pub fn check_layered_size(widths: &[usize]) -> Result<()> {
    let nodes = widths
        .iter()
        .try_fold(0u64, |a, &w| a.checked_add(w as u64));
    let edges = widths.windows(2).try_fold(0u64, |a, p| {
        a.checked_add((p[0] as u64).checked_mul(p[1] as u64)?)
    });
    match (nodes, edges) {
        (Some(n), Some(e)) if n <= u64::from(u32::MAX) && e <= u64::from(u32::MAX) => Ok(()),
        _ => Err(Error::Input(format!(
            "a net of widths {widths:?} has more than 2³² − 1 nodes or edges"
        ))),
    }
}

/// Edges of a layered, fully connected net with the given widths (nodes numbered layer by layer).
pub fn layered_edges(widths: &[usize]) -> Vec<(u32, u32)> {
    let mut edges = vec![];
    let mut start = 0;
    for pair in widths.windows(2) {
        let next = start + pair[0];
        for i in start..next {
            for j in next..next + pair[1] {
                edges.push((i as u32, j as u32));
            }
        }
        start = next;
    }
    edges
}

/// A batch's start in node form, from which every replica follows:
/// x[e][k] = x[src(e)][k], w[e][k] = weights[e], y[i][k] = y[i][k],
/// b[i][k] = biases[i]. N × K values per array instead of E × K: what a
/// device receives to build the replicas itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeStart {
    /// Items K.
    pub items: usize,
    /// Node values of each item's feed pass, [N][K].
    pub x: Vec<f64>,
    /// Pre-activations of each item's feed pass, [N][K].
    pub y: Vec<f64>,
    /// The model's weights, [E].
    pub weights: Vec<f64>,
    /// The model's biases, [N].
    pub biases: Vec<f64>,
    /// Data values [N][K] at data/fixed nodes.
    pub data: Vec<f64>,
    /// Class label per item.
    pub labels: Vec<u32>,
}

impl NodeStart {
    /// From one feed pass per item (node values, pre-activations) and the
    /// model; `data` zero and `labels` 0, for the caller to set.
    pub fn from_passes(
        p: &RrrProblem,
        passes: &[(&[f64], &[f64])],
        weights: &[f64],
        biases: &[f64],
    ) -> Self {
        let (n, kk) = (p.nodes, passes.len());
        let mut x = vec![0.0; n * kk];
        let mut y = vec![0.0; n * kk];
        // Rows in parallel, each contiguous (item by item would stride
        // through the whole [row][item] arrays).
        x.par_chunks_mut(kk.max(1))
            .zip(y.par_chunks_mut(kk.max(1)))
            .enumerate()
            .for_each(|(i, (xr, yr))| {
                for (k, (px, py)) in passes.iter().enumerate() {
                    xr[k] = px[i];
                    yr[k] = py[i];
                }
            });
        NodeStart {
            items: kk,
            x,
            y,
            weights: weights.to_vec(),
            biases: biases.to_vec(),
            data: vec![0.0; n * kk],
            labels: vec![0; kk],
        }
    }

    /// Checks shapes (for `edges` edges and `nodes` nodes) and finiteness.
    pub fn validate_shape(&self, edges: usize, nodes: usize) -> Result<()> {
        let (n, k) = (nodes, self.items);
        let ok = self.x.len() == n * k
            && self.y.len() == n * k
            && self.data.len() == n * k
            && self.weights.len() == edges
            && self.biases.len() == nodes
            && self.labels.len() == k;
        if !ok {
            return Err(Error::Input(format!(
                "batch start shapes do not match {edges} edges, {nodes} nodes and {k} items"
            )));
        }
        let all = [&self.x, &self.y, &self.weights, &self.biases, &self.data];
        if all.iter().any(|v| v.iter().any(|x| !x.is_finite())) {
            return Err(Error::Numeric(
                "batch start holds a non-finite value".into(),
            ));
        }
        Ok(())
    }

    /// Writes the replicas x, w, y and b of `s` (the host twin of the
    /// device's `rrr_load`).
    pub fn fill_replicas(&self, src: &[u32], s: &mut RrrState) {
        let kk = self.items;
        debug_assert_eq!(s.items, kk);
        s.x.par_chunks_mut(kk.max(1))
            .zip(s.w.par_chunks_mut(kk.max(1)))
            .enumerate()
            .for_each(|(e, (xr, wr))| {
                let from = src[e] as usize * kk;
                xr.copy_from_slice(&self.x[from..from + kk]);
                wr.fill(self.weights[e]);
            });
        s.y.copy_from_slice(&self.y);
        s.b.par_chunks_mut(kk.max(1))
            .enumerate()
            .for_each(|(i, br)| br.fill(self.biases[i]));
    }

    /// The whole state: replicas, data and labels.
    pub fn replicas(&self, p: &RrrProblem) -> RrrState {
        let mut s = RrrState::zeros(p, self.items);
        self.fill_replicas(&p.src, &mut s);
        s.data.clone_from(&self.data);
        s.labels.clone_from(&self.labels);
        s
    }
}

/// The replicated variables z of one batch of K items, plus its data.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RrrState {
    /// Items K.
    pub items: usize,
    /// x replicas [E][K].
    pub x: Vec<f64>,
    /// w replicas [E][K].
    pub w: Vec<f64>,
    /// y [N][K] (NMF: the data targets at data nodes).
    pub y: Vec<f64>,
    /// b [N][K].
    pub b: Vec<f64>,
    /// Data values [N][K] at data/fixed nodes.
    pub data: Vec<f64>,
    /// Class label per item.
    pub labels: Vec<u32>,
}

impl RrrState {
    /// A zero state of the right shapes.
    pub fn zeros(p: &RrrProblem, items: usize) -> Self {
        RrrState {
            items,
            x: vec![0.0; p.edges() * items],
            w: vec![0.0; p.edges() * items],
            y: vec![0.0; p.nodes * items],
            b: vec![0.0; p.nodes * items],
            data: vec![0.0; p.nodes * items],
            labels: vec![0; items],
        }
    }

    /// Sets every replica from one feed pass per item: x[e][k] is the
    /// pass's value at edge e's source, y[i][k] its pre-activation at node
    /// i, and w, b the model's weights and biases on every item; `data`
    /// and `labels` are left to the caller.
    pub fn set_replicas(
        &mut self,
        p: &RrrProblem,
        passes: &[(&[f64], &[f64])],
        weights: &[f64],
        biases: &[f64],
    ) {
        debug_assert_eq!(passes.len(), self.items);
        NodeStart::from_passes(p, passes, weights, biases).fill_replicas(&p.src, self);
    }

    /// Checks shapes and finiteness against a problem.
    pub fn validate(&self, p: &RrrProblem) -> Result<()> {
        self.validate_shape(p.edges(), p.nodes)
    }

    /// Checks shapes (for `edges` edges and `nodes` nodes) and finiteness.
    pub fn validate_shape(&self, edges: usize, nodes: usize) -> Result<()> {
        let (e, n, k) = (edges, nodes, self.items);
        let ok = self.x.len() == e * k
            && self.w.len() == e * k
            && self.y.len() == n * k
            && self.b.len() == n * k
            && self.data.len() == n * k
            && self.labels.len() == k;
        if !ok {
            return Err(Error::Input(
                "RRR state shapes do not match the problem".into(),
            ));
        }
        let finite = [&self.x, &self.w, &self.y, &self.b, &self.data]
            .iter()
            .all(|v| v.par_iter().all(|x| x.is_finite()));
        if !finite {
            return Err(Error::Input("RRR state holds NaN or infinity".into()));
        }
        Ok(())
    }
}
