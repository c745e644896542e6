//! Labeled data for classifiers: the reference classifier format (`D C`
//! header, then per item D numbers and the class index, any whitespace),
//! CSV (features then an integer label column, optional header), and MNIST
//! IDX (images + labels; pixels scaled to [0, 1]). Any of these may come
//! gzip-compressed (`.gz`) or as the only file of a `.zip` (see
//! [`read_input`]). Errors name the file and the line (or item) at fault;
//! every feature must be finite and within [`Limits::max_abs`].

use std::path::{Path, PathBuf};

use super::matrix::{number, parse_err, text};
use super::{Limits, read_input};
use crate::error::{Error, Result};

/// Items with features and class labels.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Labeled {
    /// Features per item D.
    pub dim: usize,
    /// Number of classes C (labels are 0..C).
    pub classes: usize,
    /// Features, item-major [items][D].
    pub x: Vec<f64>,
    /// Label per item.
    pub y: Vec<u32>,
}

/// A labeled-data format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LabeledFormat {
    /// From the content: IDX magic, commas → CSV, else the reference format.
    Auto,
    /// Reference classifier format: `D C`, then items of D numbers and a class.
    Lwl,
    /// Comma-separated features with the label in the last column.
    Csv,
    /// MNIST IDX images (labels from the matching labels file).
    Idx,
}

impl Labeled {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when there are no items.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// Features of item k.
    pub fn item(&self, k: usize) -> &[f64] {
        &self.x[k * self.dim..(k + 1) * self.dim]
    }

    /// The items with the given indices, in that order.
    pub fn subset(&self, idx: &[usize]) -> Labeled {
        let mut x = Vec::with_capacity(idx.len() * self.dim);
        for &k in idx {
            x.extend_from_slice(self.item(k));
        }
        Labeled {
            dim: self.dim,
            classes: self.classes,
            x,
            y: idx.iter().map(|&k| self.y[k]).collect(),
        }
    }

    /// A seeded held-out split: (the rest, the held-out `fraction`), the
    /// same items for every method given the same seed.
    pub fn hold_out(&self, fraction: f64, seed: u64) -> (Labeled, Labeled) {
        let order = crate::random::epoch_order(self.len(), seed, 0);
        let held = ((self.len() as f64) * fraction).round() as usize;
        (self.subset(&order[held..]), self.subset(&order[..held]))
    }

    /// Checks labels against the class count and features for finiteness.
    pub fn validate(&self, path: &Path) -> Result<()> {
        if self.is_empty() {
            return Err(Error::Input(format!("{}: no items", path.display())));
        }
        if self.x.len() != self.y.len() * self.dim {
            return Err(Error::Input(format!(
                "{}: features do not match items",
                path.display()
            )));
        }
        for (k, &c) in self.y.iter().enumerate() {
            if c as usize >= self.classes {
                return Err(Error::Input(format!(
                    "{}: item {k} has class {c}, but there are {} classes",
                    path.display(),
                    self.classes
                )));
            }
        }
        if let Some(i) = self.x.iter().position(|v| !v.is_finite()) {
            return Err(Error::Input(format!(
                "{}: item {} has a non-finite feature",
                path.display(),
                i / self.dim.max(1)
            )));
        }
        Ok(())
    }

    /// The reference classifier format.
    pub fn to_lwl(&self) -> String {
        let mut s = format!("{} {}\n", self.dim, self.classes);
        for k in 0..self.len() {
            let row: Vec<String> = self.item(k).iter().map(|v| format!("{v}")).collect();
            s.push_str(&row.join(" "));
            s.push_str(&format!(" {}\n", self.y[k]));
        }
        s
    }

    /// CSV: features, then the label.
    pub fn to_csv(&self) -> String {
        let mut s = String::new();
        for k in 0..self.len() {
            let row: Vec<String> = self.item(k).iter().map(|v| format!("{v}")).collect();
            s.push_str(&row.join(","));
            s.push_str(&format!(",{}\n", self.y[k]));
        }
        s
    }
}

fn label(path: &Path, line: usize, tok: &str, limits: &Limits) -> Result<u32> {
    let v = number(path, line, tok, limits)?;
    if v < 0.0 || v.fract() != 0.0 || v > u32::MAX as f64 / 2.0 {
        return Err(parse_err(
            path,
            line,
            format!("class '{tok}' is not a non-negative integer"),
        ));
    }
    Ok(v as u32)
}

/// Parses the reference classifier format.
pub fn parse_lwl(text: &str, path: &Path, limits: &Limits) -> Result<Labeled> {
    // Tokens with their 1-based line numbers.
    let mut toks = text
        .lines()
        .enumerate()
        .flat_map(|(i, l)| l.split_whitespace().map(move |t| (i + 1, t)));
    // The file's last line, where a missing token was due.
    let end = text.lines().count().max(1);
    let mut header = |what: &str| -> Result<(usize, usize)> {
        let (line, t) = toks
            .next()
            .ok_or_else(|| parse_err(path, end, format!("missing {what} in the `D C` header")))?;
        let v = t.parse::<usize>().ok().filter(|&v| v > 0).ok_or_else(|| {
            parse_err(
                path,
                line,
                format!("{what} '{t}' is not a positive integer"),
            )
        })?;
        Ok((v, line))
    };
    let (dim, dim_line) = header("D")?;
    let (classes, header_end) = header("C")?;
    // Each item is D features and a class.
    let per = dim
        .checked_add(1)
        .ok_or_else(|| parse_err(path, dim_line, format!("D {dim} is too large")))?;
    let mut out = Labeled {
        dim,
        classes,
        ..Default::default()
    };
    let rest: Vec<(usize, &str)> = toks.collect();
    if rest.is_empty() {
        return Err(parse_err(path, header_end, "no items after the header"));
    }
    if !rest.len().is_multiple_of(per) {
        let (line, _) = rest[rest.len() - rest.len() % per];
        return Err(parse_err(
            path,
            line,
            format!(
                "truncated item: {} numbers left over (each item is {dim} features and a class)",
                rest.len() % per
            ),
        ));
    }
    out.x.reserve_exact(rest.len() / per * dim);
    for item in rest.chunks(per) {
        for &(line, t) in &item[..dim] {
            out.x.push(number(path, line, t, limits)?);
        }
        let (line, t) = item[dim];
        let c = label(path, line, t, limits)?;
        if c as usize >= classes {
            return Err(parse_err(
                path,
                line,
                format!("class {c} out of range for {classes} classes"),
            ));
        }
        out.y.push(c);
    }
    Ok(out)
}

/// Parses CSV with the label in the last column; classes = max label + 1
/// (or `classes` when given).
pub fn parse_csv(
    text: &str,
    path: &Path,
    classes: Option<usize>,
    limits: &Limits,
) -> Result<Labeled> {
    let mut out = Labeled::default();
    let mut dim = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let toks: Vec<&str> = line.split(',').collect();
        if dim.is_none() && toks.iter().all(|t| t.trim().parse::<f64>().is_err()) {
            continue; // header
        }
        if toks.len() < 2 {
            return Err(parse_err(path, i + 1, "need features and a label column"));
        }
        let d = toks.len() - 1;
        match dim {
            None => dim = Some(d),
            Some(e) if e != d => {
                return Err(parse_err(
                    path,
                    i + 1,
                    format!("{d} features, earlier rows have {e}"),
                ));
            }
            _ => {}
        }
        for t in &toks[..d] {
            out.x.push(number(path, i + 1, t, limits)?);
        }
        out.y.push(label(path, i + 1, toks[d], limits)?);
    }
    out.dim = dim.ok_or_else(|| parse_err(path, 0, "no data rows"))?;
    let seen = out.y.iter().max().map_or(0, |&m| m as usize + 1);
    out.classes = classes.unwrap_or(seen).max(seen);
    Ok(out)
}

/// The dimensions of an unsigned-byte IDX file with `want_dims` of them,
/// and where its body starts; checked (without overflow) against the
/// file's length before anything is allocated for the body.
pub(crate) fn idx_header(
    bytes: &[u8],
    path: &Path,
    want_dims: usize,
) -> Result<(Vec<usize>, usize)> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(parse_err(
            path,
            0,
            "not an unsigned-byte IDX file (bad magic)",
        ));
    }
    let nd = bytes[3] as usize;
    if nd != want_dims {
        return Err(parse_err(
            path,
            0,
            format!("IDX file has {nd} dimensions, expected {want_dims}"),
        ));
    }
    let head = 4 + 4 * nd;
    if bytes.len() < head {
        return Err(parse_err(path, 0, "truncated IDX header"));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let shape = || {
        dims.iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("×")
    };
    let body = bytes.len() - head;
    let total = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| parse_err(path, 0, format!("IDX header's sizes {} overflow", shape())))?;
    if body != total {
        return Err(parse_err(
            path,
            0,
            format!(
                "IDX body has {body} bytes, header says {} = {total}",
                shape()
            ),
        ));
    }
    Ok((dims, head))
}

/// The labels file that goes with an MNIST images file
/// (`…-images-idx3-ubyte…` → `…-labels-idx1-ubyte…`).
pub fn idx_labels_path(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_str()?;
    let swapped = name
        .replace("images-idx3", "labels-idx1")
        .replace("images.idx3", "labels.idx1");
    (swapped != name).then(|| images.with_file_name(swapped))
}

/// Parses IDX images (3-D, u8) and labels (1-D, u8); pixels scaled to [0, 1].
pub fn parse_idx(images: &[u8], labels: &[u8], ipath: &Path, lpath: &Path) -> Result<Labeled> {
    let (dims, head) = idx_header(images, ipath, 3)?;
    // Within usize when there are images: the body holds them all.
    let dim = dims[1].saturating_mul(dims[2]);
    if dim == 0 {
        return Err(parse_err(
            ipath,
            0,
            format!("IDX images of {}×{} have no pixels", dims[1], dims[2]),
        ));
    }
    let (ldims, lhead) = idx_header(labels, lpath, 1)?;
    if dims[0] != ldims[0] {
        return Err(Error::Input(format!(
            "{} has {} images but {} has {} labels",
            ipath.display(),
            dims[0],
            lpath.display(),
            ldims[0]
        )));
    }
    let y: Vec<u32> = labels[lhead..].iter().map(|&v| v as u32).collect();
    Ok(Labeled {
        dim,
        classes: y.iter().max().map_or(0, |&m| m as usize + 1).max(10),
        x: images[head..].iter().map(|&v| v as f64 / 255.0).collect(),
        y,
    })
}

/// Loads labeled data in any supported format; IDX images take their
/// labels from the labels file `labels`, else from the one named like them.
pub fn load(
    path: &Path,
    format: LabeledFormat,
    labels: Option<&Path>,
    limits: &Limits,
) -> Result<Labeled> {
    let bytes = read_input(path, limits)?;
    let is_idx = bytes.len() >= 4 && bytes[..3] == [0, 0, 8];
    let format = match format {
        LabeledFormat::Auto if is_idx => LabeledFormat::Idx,
        LabeledFormat::Auto => {
            let head = &bytes[..bytes.len().min(4096)];
            if head.contains(&b',') {
                LabeledFormat::Csv
            } else {
                LabeledFormat::Lwl
            }
        }
        f => f,
    };
    let data = if format == LabeledFormat::Idx {
        let lpath = match labels {
            Some(l) => l.to_path_buf(),
            None => idx_labels_path(path).ok_or_else(|| {
                Error::Input(format!(
                    "{}: cannot guess the IDX labels file (no *-labels-idx1-* file beside it); name the labels file",
                    path.display()
                ))
            })?,
        };
        let lbytes = read_input(&lpath, limits)?;
        parse_idx(&bytes, &lbytes, path, &lpath)?
    } else {
        let text = text(bytes, path)?;
        if format == LabeledFormat::Csv {
            parse_csv(&text, path, None, limits)?
        } else {
            parse_lwl(&text, path, limits)?
        }
    };
    data.validate(path)?;
    Ok(data)
}
