//! The HSIC reference's data layout: a features CSV (`<name>.csv`, no
//! header) with a label CSV beside it (`<name>_label.csv`, one integer per
//! row), and k-fold folders `<dir>/<name>/<name>_k{,_label,_test,_label_test}.csv`
//! for k = 1..folds. Labels of any integer values map to classes 0..C in
//! sorted order (the reference's LabelEncoder), with one map per data set
//! so that every fold shares it. Each file may be plain, `.gz` or the one
//! file of a `.zip` (see [`read_input`]); features must be finite and within
//! [`Limits::max_abs`].

use std::path::{Path, PathBuf};

use super::labeled::Labeled;
use super::matrix::{TableFormat, number, parse_err, parse_table, row_major, text};
use super::{Limits, read_input};
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
pub fn load_pair(features: &Path, labels: &Path, limits: &Limits) -> Result<RawTable> {
    let f = text(read_input(features, limits)?, features)?;
    let l = text(read_input(labels, limits)?, labels)?;
    parse_pair(&f, &l, features, labels, limits)
}

/// Largest |label|: integers up to 2^53 are exact in f64.
const MAX_LABEL: f64 = (1u64 << 53) as f64;

/// Parses a label CSV: one integer per line (blank and `#` lines skipped,
/// a first line that is not a number taken for a header).
pub fn parse_labels(text: &str, path: &Path, limits: &Limits) -> Result<Vec<i64>> {
    let mut out = vec![];
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols = line.split(',').count();
        if out.is_empty() && line.split(',').all(|t| t.trim().parse::<f64>().is_err()) {
            continue; // header
        }
        if cols != 1 {
            return Err(parse_err(
                path,
                i + 1,
                format!("expected one label per line, found {cols} columns"),
            ));
        }
        let v = number(path, i + 1, line, limits)?;
        if v.fract() != 0.0 || v.abs() > MAX_LABEL {
            return Err(parse_err(
                path,
                i + 1,
                format!("label {line} is not an integer (|label| ≤ 2^53)"),
            ));
        }
        out.push(v as i64);
    }
    if out.is_empty() {
        return Err(parse_err(path, 0, "no labels"));
    }
    Ok(out)
}

/// Parses a features CSV (`features`, read from `fpath`) and its label CSV
/// (`labels`, from `lpath`).
pub fn parse_pair(
    features: &str,
    labels: &str,
    fpath: &Path,
    lpath: &Path,
    limits: &Limits,
) -> Result<RawTable> {
    let m = parse_table(features, fpath, TableFormat::Csv, limits)?;
    let labels_v = parse_labels(labels, lpath, limits)?;
    if labels_v.len() != m.nrows() {
        return Err(Error::Input(format!(
            "{} has {} labels but {} has {} rows",
            lpath.display(),
            labels_v.len(),
            fpath.display(),
            m.nrows()
        )));
    }
    Ok(RawTable {
        dim: m.ncols(),
        x: row_major(&m),
        labels: labels_v,
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
pub fn load_folds(
    dir: &Path,
    name: &str,
    folds: usize,
    limits: &Limits,
) -> Result<(Vec<Fold>, Vec<i64>)> {
    let mut raw = vec![];
    for k in 1..=folds {
        let train = load_pair(
            &fold_path(dir, name, k, ""),
            &fold_path(dir, name, k, "_label"),
            limits,
        )?;
        let test = load_pair(
            &fold_path(dir, name, k, "_test"),
            &fold_path(dir, name, k, "_label_test"),
            limits,
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

/// k-fold cross-validation of `data`: the items in a seeded random order,
/// fold k (1-based) testing on the k-th of `folds` near-equal runs of it and
/// training on the rest (the reference's shuffled `KFold`, seeded).
pub fn kfold(data: &Labeled, folds: usize, seed: u64) -> Result<Vec<Fold>> {
    let n = data.len();
    if folds < 2 || folds > n {
        return Err(Error::Input(format!(
            "{folds} folds of {n} items: need 2 ≤ folds ≤ items"
        )));
    }
    let order = crate::random::epoch_order(n, seed, 0);
    Ok((0..folds)
        .map(|k| {
            let (lo, hi) = (k * n / folds, (k + 1) * n / folds);
            let rest: Vec<usize> = order[..lo].iter().chain(&order[hi..]).copied().collect();
            Fold {
                train: data.subset(&rest),
                test: data.subset(&order[lo..hi]),
            }
        })
        .collect())
}

/// Writes `folds` in the reference's layout under `<dir>/<name>/` (read back
/// by [`load_folds`]); labels are the class numbers.
pub fn write_folds(dir: &Path, name: &str, folds: &[Fold]) -> Result<()> {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).map_err(|e| Error::io(&sub, e))?;
    for (i, f) in folds.iter().enumerate() {
        let k = i + 1;
        for (suffix, body) in [
            ("", features_csv(&f.train)),
            ("_label", labels_csv(&f.train)),
            ("_test", features_csv(&f.test)),
            ("_label_test", labels_csv(&f.test)),
        ] {
            crate::io::write_atomic(&fold_path(dir, name, k, suffix), body.as_bytes())?;
        }
    }
    Ok(())
}

/// The features as the reference's CSV (no header, shortest round-trip
/// decimals).
pub fn features_csv(d: &Labeled) -> String {
    super::matrix::rows_csv(&d.x, d.dim)
}

/// The class numbers, one per line (the reference's label CSV).
pub fn labels_csv(d: &Labeled) -> String {
    d.y.iter().map(|c| format!("{c}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kfold_tests_every_item_once_and_reads_back_through_the_fold_files() {
        let data = crate::data::mixture::gaussian_mixture(23, 2, 3, 1.0, 4).unwrap();
        let folds = kfold(&data, 5, 9).unwrap();
        assert_eq!(folds.len(), 5);
        let mut tested: Vec<Vec<u64>> = vec![];
        for f in &folds {
            assert_eq!(f.train.len() + f.test.len(), 23);
            assert!((4..=5).contains(&f.test.len()), "near-equal folds");
            tested.extend(
                f.test
                    .x
                    .chunks(2)
                    .map(|r| r.iter().map(|v| v.to_bits()).collect()),
            );
        }
        let mut all: Vec<Vec<u64>> = data
            .x
            .chunks(2)
            .map(|r| r.iter().map(|v| v.to_bits()).collect())
            .collect();
        tested.sort();
        all.sort();
        assert_eq!(tested, all, "the test parts partition the items");
        // Seeded.
        assert_eq!(kfold(&data, 5, 9).unwrap()[2].test.y, folds[2].test.y);
        assert!(kfold(&data, 1, 9).is_err() && kfold(&data, 24, 9).is_err());
        let dir = std::env::temp_dir().join(format!("gradfree-kfold-{}", std::process::id()));
        write_folds(&dir, "m", &folds).unwrap();
        let (back, values) =
            load_folds(&dir, "m", 5, &Limits::for_precision(crate::Precision::F64)).unwrap();
        assert_eq!(values, vec![0, 1, 2]);
        for (a, b) in back.iter().zip(&folds) {
            assert_eq!(a.test.x, b.test.x, "shortest round-trip decimals");
            assert_eq!(a.train.y, b.train.y);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
