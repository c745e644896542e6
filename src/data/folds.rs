//! The HSIC reference's data layout: a features CSV (`<name>.csv`, no
//! header) with a label CSV beside it (`<name>_label.csv`, one integer per
//! row), and k-fold folders `<dir>/<name>/<name>_k{,_label,_test,_label_test}.csv`
//! for k = 1..folds. Labels of any integer values map to classes 0..C in
//! sorted order (the reference's LabelEncoder), with one map per data set
//! so that every fold shares it.

use std::path::{Path, PathBuf};

use super::labeled::Labeled;
use super::matrix::{TableFormat, load_table, parse_err};
use crate::error::{Error, Result};

/// Features and raw integer labels of one file pair.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTable {
    /// Features per row.
    pub dim: usize,
    /// Row-major features.
    pub x: Vec<f64>,
    /// Label value per row.
    pub labels: Vec<i64>,
}

/// Reads a features CSV and its label CSV (one integer per line).
pub fn load_pair(features: &Path, labels: &Path) -> Result<RawTable> {
    let m = load_table(features, TableFormat::Csv)?;
    let l = load_table(labels, TableFormat::Csv)?;
    if l.ncols() != 1 {
        return Err(Error::Input(format!(
            "{}: expected one label per line, found {} columns",
            labels.display(),
            l.ncols()
        )));
    }
    if l.nrows() != m.nrows() {
        return Err(Error::Input(format!(
            "{} has {} labels but {} has {} rows",
            labels.display(),
            l.nrows(),
            features.display(),
            m.nrows()
        )));
    }
    let mut out = Vec::with_capacity(l.nrows());
    for (r, &v) in l.column(0).iter().enumerate() {
        if v.fract() != 0.0 || !v.is_finite() {
            return Err(parse_err(
                labels,
                r + 1,
                format!("label {v} is not an integer"),
            ));
        }
        out.push(v as i64);
    }
    let x = super::matrix::row_major(&m);
    Ok(RawTable {
        dim: m.ncols(),
        x,
        labels: out,
    })
}

/// The sorted distinct label values (class c = position in this list).
pub fn label_values(tables: &[&RawTable]) -> Vec<i64> {
    let mut v: Vec<i64> = tables
        .iter()
        .flat_map(|t| t.labels.iter().copied())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Converts to classes 0..C by `values` (from [`label_values`]).
pub fn to_labeled(t: &RawTable, values: &[i64]) -> Labeled {
    Labeled {
        dim: t.dim,
        classes: values.len(),
        x: t.x.clone(),
        y: t.labels
            .iter()
            .map(|l| values.binary_search(l).expect("label in the map") as u32)
            .collect(),
    }
}

/// One fold: training and test parts.
#[derive(Clone, Debug)]
pub struct Fold {
    /// Training part.
    pub train: Labeled,
    /// Test part.
    pub test: Labeled,
}

fn fold_path(dir: &Path, name: &str, k: usize, suffix: &str) -> PathBuf {
    dir.join(name).join(format!("{name}_{k}{suffix}.csv"))
}

/// Loads folds 1..=folds of `<dir>/<name>/`; classes are numbered over all
/// folds together.
pub fn load_folds(dir: &Path, name: &str, folds: usize) -> Result<(Vec<Fold>, Vec<i64>)> {
    let mut raw = vec![];
    for k in 1..=folds {
        let train = load_pair(
            &fold_path(dir, name, k, ""),
            &fold_path(dir, name, k, "_label"),
        )?;
        let test = load_pair(
            &fold_path(dir, name, k, "_test"),
            &fold_path(dir, name, k, "_label_test"),
        )?;
        if test.dim != train.dim {
            return Err(Error::Input(format!(
                "fold {k} of {name}: test rows have {} features, training rows {}",
                test.dim, train.dim
            )));
        }
        raw.push((train, test));
    }
    let all: Vec<&RawTable> = raw.iter().flat_map(|(a, b)| [a, b]).collect();
    let values = label_values(&all);
    let folds = raw
        .iter()
        .map(|(a, b)| Fold {
            train: to_labeled(a, &values),
            test: to_labeled(b, &values),
        })
        .collect();
    Ok((folds, values))
}
