//! Classifier networks: layered fully connected nets and arbitrary directed
//! acyclic graphs in the reference net-file format (`D H C`, then for each
//! non-data node in order `node indeg i_1 … i_indeg`, nodes numbered from 0:
//! data, then hidden, then class).

use std::path::Path;

use crate::data::matrix::parse_err;
use crate::error::{Error, Result};

/// A classifier graph: data nodes `0..D`, hidden `D..D+H`, class `D+H..N`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Net {
    /// Data (input) nodes D.
    pub data: usize,
    /// Hidden nodes H.
    pub hidden: usize,
    /// Class nodes C.
    pub classes: usize,
    /// Edges (source, destination), sorted by destination, then source.
    pub edges: Vec<(u32, u32)>,
}

impl Net {
    /// All nodes N.
    pub fn nodes(&self) -> usize {
        self.data + self.hidden + self.classes
    }

    /// A layered, fully connected net, e.g. `[784, 20, 10]`.
    pub fn layered(widths: &[usize]) -> Result<Self> {
        if widths.len() < 2 || widths.contains(&0) {
            return Err(Error::Input(format!(
                "a layered net needs at least two positive widths (input, …, classes), got {widths:?}"
            )));
        }
        if *widths.last().unwrap() < 2 {
            return Err(Error::Input(
                "a classifier needs at least 2 class nodes".into(),
            ));
        }
        crate::problem::check_layered_size(widths)?;
        let mut net = Net {
            data: widths[0],
            hidden: widths[1..widths.len() - 1].iter().sum(),
            classes: *widths.last().unwrap(),
            edges: crate::problem::layered_edges(widths),
        };
        net.edges.sort_by_key(|&(s, d)| (d, s));
        net.check()?;
        Ok(net)
    }

    /// The widths of a layered, fully connected net (`[784, 20, 10]`), or
    /// None for any other graph.
    pub fn layer_widths(&self) -> Option<Vec<usize>> {
        // A node's layer is one past its deepest source's; edges are sorted
        // by destination, and sources precede destinations in a layered net.
        let mut layer = vec![0usize; self.nodes()];
        for &(s, d) in &self.edges {
            let (s, d) = (s as usize, d as usize);
            if s >= d {
                return None;
            }
            layer[d] = layer[d].max(layer[s] + 1);
        }
        let hidden = &layer[self.data..self.data + self.hidden];
        let depth = hidden.iter().copied().max().unwrap_or(0);
        let mut widths = vec![self.data];
        widths.extend((1..=depth).map(|l| hidden.iter().filter(|&&h| h == l).count()));
        widths.push(self.classes);
        Net::layered(&widths)
            .ok()
            .filter(|n| n == self)
            .map(|_| widths)
    }

    /// Parses the reference net-file format.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut toks = IntTokens::new(text, path);
        let (data, l) = toks.int("D")?;
        let (hidden, _) = toks.int("H")?;
        let (classes, _) = toks.int("C")?;
        if data == 0 || classes < 2 {
            return Err(parse_err(
                path,
                l,
                format!("need D ≥ 1 and C ≥ 2, got D = {data}, C = {classes}"),
            ));
        }
        let nodes = data
            .checked_add(hidden)
            .and_then(|n| n.checked_add(classes))
            .filter(|&n| n <= u32::MAX as usize)
            .ok_or_else(|| {
                parse_err(
                    path,
                    l,
                    "the node counts are out of range (at most 2³² − 1 nodes)",
                )
            })?;
        let mut edges = vec![];
        for node in data..nodes {
            let (indeg, line) = toks.node_entry(node)?;
            if indeg == 0 {
                return Err(parse_err(path, line, format!("node {node} has no inputs")));
            }
            if indeg >= nodes {
                return Err(parse_err(
                    path,
                    line,
                    format!("node {node}: in-degree {indeg} exceeds the {nodes} nodes"),
                ));
            }
            let mut seen = std::collections::HashSet::new();
            // A wrong in-degree shifts the inputs into the next entry: say so.
            let hint = format!("(node {node} declares {indeg} inputs: is its in-degree right?)");
            for _ in 0..indeg {
                let (src, line) = toks.int(&format!("an input of node {node}"))?;
                if src >= nodes - classes {
                    return Err(parse_err(
                        path,
                        line,
                        format!(
                            "node {node}: input {src} is out of range (inputs are data or hidden nodes 0..{}) {hint}",
                            nodes - classes
                        ),
                    ));
                }
                if src == node {
                    return Err(parse_err(
                        path,
                        line,
                        format!("node {node} reads itself {hint}"),
                    ));
                }
                if !seen.insert(src) {
                    return Err(parse_err(
                        path,
                        line,
                        format!("node {node} reads node {src} twice {hint}"),
                    ));
                }
                edges.push((src as u32, node as u32));
            }
        }
        toks.end()?;
        edges.sort_by_key(|&(s, d)| (d, s));
        let net = Net {
            data,
            hidden,
            classes,
            edges,
        };
        net.check().map_err(|e| match e {
            Error::Input(m) => parse_err(path, 0, m),
            e => e,
        })?;
        Ok(net)
    }

    /// Loads a net file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::io::read_text(path)?;
        Self::parse(&text, path)
    }

    /// The reference net-file text (in-edges per node in edge order).
    pub fn to_text(&self) -> String {
        let n = self.nodes();
        let mut ins: Vec<Vec<u32>> = vec![vec![]; n];
        for &(s, d) in &self.edges {
            ins[d as usize].push(s);
        }
        let mut s = format!("{} {} {}\n\n", self.data, self.hidden, self.classes);
        for (j, srcs) in ins.iter().enumerate().skip(self.data) {
            s.push_str(&format!("{j} {}\n", srcs.len()));
            let row: Vec<String> = srcs.iter().map(|v| v.to_string()).collect();
            s.push_str(&row.join(" "));
            s.push('\n');
        }
        s
    }

    /// Nodes in an order where every node follows its inputs; an error names
    /// a node on a cycle.
    pub fn topo_order(&self) -> Result<Vec<usize>> {
        let n = self.nodes();
        let mut indeg = vec![0usize; n];
        let mut outs: Vec<Vec<usize>> = vec![vec![]; n];
        for &(s, d) in &self.edges {
            indeg[d as usize] += 1;
            outs[s as usize].push(d as usize);
        }
        let mut ready: Vec<usize> = (0..n).filter(|&i| indeg[i] == 0).rev().collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop() {
            order.push(i);
            for &o in &outs[i] {
                indeg[o] -= 1;
                if indeg[o] == 0 {
                    ready.push(o);
                }
            }
        }
        if order.len() < n {
            let on_cycle = (0..n).find(|&i| indeg[i] > 0).unwrap_or(0);
            return Err(Error::Input(format!(
                "the network has a cycle through node {on_cycle}; classifier nets must be acyclic"
            )));
        }
        Ok(order)
    }

    /// Structural checks: edges in range, acyclic, every non-data node fed,
    /// class nodes read by no one.
    pub fn check(&self) -> Result<()> {
        let n = self.nodes();
        let first_class = n - self.classes;
        let mut fed = vec![false; n];
        for &(s, d) in &self.edges {
            let (s, d) = (s as usize, d as usize);
            if s >= first_class || d >= n || d < self.data || s == d {
                return Err(Error::Input(format!(
                    "edge {s} -> {d} is invalid for D = {}, H = {}, C = {}",
                    self.data, self.hidden, self.classes
                )));
            }
            fed[d] = true;
        }
        if let Some(j) = (self.data..n).find(|&j| !fed[j]) {
            return Err(Error::Input(format!("node {j} has no inputs")));
        }
        self.topo_order().map(|_| ())
    }
}

/// The non-negative integers of a net file, with their line numbers for
/// error messages (shared by the classifier and autoencoder net files).
pub(crate) struct IntTokens<'a> {
    toks: Box<dyn Iterator<Item = (usize, &'a str)> + 'a>,
    path: &'a Path,
}

impl<'a> IntTokens<'a> {
    /// The whitespace-separated tokens of `text`.
    pub(crate) fn new(text: &'a str, path: &'a Path) -> Self {
        IntTokens {
            toks: Box::new(
                text.lines()
                    .enumerate()
                    .flat_map(|(i, l)| l.split_whitespace().map(move |t| (i + 1, t))),
            ),
            path,
        }
    }

    /// The next token as (value, line); `what` names it in errors.
    pub(crate) fn int(&mut self, what: &str) -> Result<(usize, usize)> {
        let (line, t) = self
            .toks
            .next()
            .ok_or_else(|| parse_err(self.path, 0, format!("file ends before {what}")))?;
        let v = t.parse::<usize>().map_err(|_| {
            parse_err(
                self.path,
                line,
                format!("{what} '{t}' is not a non-negative integer"),
            )
        })?;
        Ok((v, line))
    }

    /// The entry head `node indeg` of `node` (nodes are listed in order):
    /// returns (indeg, its line).
    pub(crate) fn node_entry(&mut self, node: usize) -> Result<(usize, usize)> {
        let (found, line) = self.int(&format!("node {node}"))?;
        if found != node {
            return Err(parse_err(
                self.path,
                line,
                format!(
                    "expected the entry of node {node}, found node {found} (nodes must be listed in order)"
                ),
            ));
        }
        self.int(&format!("the in-degree of node {node}"))
    }

    /// Rejects anything after the last node.
    pub(crate) fn end(&mut self) -> Result<()> {
        match self.toks.next() {
            Some((line, t)) => Err(parse_err(
                self.path,
                line,
                format!("unexpected '{t}' after the last node"),
            )),
            None => Ok(()),
        }
    }
}
