//! Numeric tables: CSV (one item per row, optional header line) and the
//! reference C program's NMF data format (first number = row length D, then
//! the rows, any whitespace). Errors name the file and line; every value
//! must be finite and within [`Limits::max_abs`].

use std::path::Path;

use nalgebra::DMatrix;

use super::{Limits, read_input};
use crate::error::{Error, Result};

/// A table format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TableFormat {
    /// Decide from the content: commas → CSV, else the NMF format.
    Auto,
    /// Comma-separated, one item per row.
    Csv,
    /// Reference NMF format: D, then rows of D numbers.
    Nmf,
}

/// The matrix's entries row by row (nalgebra stores columns).
pub fn row_major(m: &DMatrix<f64>) -> Vec<f64> {
    m.transpose().as_slice().to_vec()
}

/// The matrix of `cols` columns whose entries, row by row, are `x`
/// (the inverse of [`row_major`]).
pub fn from_row_major(x: &[f64], cols: usize) -> DMatrix<f64> {
    let rows = x.len().checked_div(cols).unwrap_or(0);
    DMatrix::from_row_slice(rows, cols, &x[..rows * cols])
}

/// A parse error at a file's line.
pub(crate) fn parse_err(path: &Path, line: usize, reason: impl Into<String>) -> Error {
    Error::Parse {
        path: path.to_path_buf(),
        line,
        reason: reason.into(),
    }
}

/// A number token that is finite and within `limits.max_abs`, or a parse
/// error naming the line, the value and the limit.
pub(crate) fn number(path: &Path, line: usize, tok: &str, limits: &Limits) -> Result<f64> {
    let tok = tok.trim();
    let v: f64 = tok
        .parse()
        .map_err(|_| parse_err(path, line, format!("'{tok}' is not a number")))?;
    let max = limits.max_abs;
    let why = if v.is_nan() {
        format!("is not a number (values must be finite, |x| ≤ {max:e})")
    } else if v.is_infinite() {
        format!("is infinite (values must be finite, |x| ≤ {max:e})")
    } else if v.abs() > max {
        format!("is too large for the working precision (|x| ≤ {max:e})")
    } else {
        return Ok(v);
    };
    Err(parse_err(path, line, format!("value {tok} {why}")))
}

/// The text of a data file's bytes; invalid UTF-8 is a parse error at its line.
pub(crate) fn text(bytes: Vec<u8>, path: &Path) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        parse_err(path, line, format!("not UTF-8 text (byte {at})"))
    })
}

/// Parses a table from text (items as rows).
pub fn parse_table(
    text: &str,
    path: &Path,
    format: TableFormat,
    limits: &Limits,
) -> Result<DMatrix<f64>> {
    let format = match format {
        TableFormat::Auto if text.contains(',') => TableFormat::Csv,
        TableFormat::Auto => TableFormat::Nmf,
        f => f,
    };
    let (rows, dim) = match format {
        TableFormat::Csv => {
            let mut rows: Vec<Vec<f64>> = vec![];
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let toks: Vec<&str> = line.split(',').collect();
                // A first line with no numeric field is a header.
                if rows.is_empty() && toks.iter().all(|t| t.trim().parse::<f64>().is_err()) {
                    continue;
                }
                let row = toks
                    .iter()
                    .map(|t| number(path, i + 1, t, limits))
                    .collect::<Result<Vec<_>>>()?;
                if let Some(first) = rows.first() {
                    if row.len() != first.len() {
                        return Err(parse_err(
                            path,
                            i + 1,
                            format!("{} values, expected {}", row.len(), first.len()),
                        ));
                    }
                }
                rows.push(row);
            }
            let dim = rows.first().map_or(0, Vec::len);
            (rows, dim)
        }
        _ => {
            let mut toks = text
                .lines()
                .enumerate()
                .flat_map(|(i, l)| l.split_whitespace().map(move |t| (i + 1, t)));
            let Some((l0, t0)) = toks.next() else {
                return Err(parse_err(path, 0, "empty file"));
            };
            let dim = t0.parse::<usize>().ok().filter(|&d| d > 0).ok_or_else(|| {
                parse_err(
                    path,
                    l0,
                    format!("row length '{t0}' is not a positive integer"),
                )
            })?;
            let mut last = l0;
            let vals = toks
                .map(|(l, t)| {
                    last = l;
                    number(path, l, t, limits)
                })
                .collect::<Result<Vec<_>>>()?;
            if vals.len() % dim != 0 {
                return Err(parse_err(
                    path,
                    last,
                    format!(
                        "{} values are not a whole number of rows of {dim}",
                        vals.len()
                    ),
                ));
            }
            (vals.chunks(dim).map(<[f64]>::to_vec).collect(), dim)
        }
    };
    if rows.is_empty() || dim == 0 {
        return Err(parse_err(path, 0, "no data rows"));
    }
    Ok(DMatrix::from_fn(rows.len(), dim, |i, j| rows[i][j]))
}

/// Reads a table from a file (plain, `.gz` or a one-file `.zip`).
pub fn load_table(path: &Path, format: TableFormat, limits: &Limits) -> Result<DMatrix<f64>> {
    // An unreadable input is the user's to fix: bad input (exit 2), not a runtime failure.
    let text = text(read_input(path, limits)?, path)?;
    parse_table(&text, path, format, limits)
}

/// Checks that every entry is non-negative (NMF input).
pub fn require_nonnegative(m: &DMatrix<f64>, path: &Path) -> Result<()> {
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            if m[(i, j)] < 0.0 {
                return Err(Error::Input(format!(
                    "{}: item {} (row {}), column {}: negative value {} (NMF needs non-negative data)",
                    path.display(),
                    i,
                    i + 1,
                    j + 1,
                    m[(i, j)]
                )));
            }
        }
    }
    Ok(())
}

/// Row-major items (`dim` values each) as CSV rows (shortest round-trip
/// numbers).
pub fn rows_csv(x: &[f64], dim: usize) -> String {
    let mut s = String::with_capacity(x.len() * 8);
    for row in x.chunks(dim.max(1)) {
        for (j, v) in row.iter().enumerate() {
            if j > 0 {
                s.push(',');
            }
            s += &format!("{v}");
        }
        s.push('\n');
    }
    s
}

/// Writes items as CSV rows (shortest round-trip numbers).
pub fn to_csv(m: &DMatrix<f64>) -> String {
    let mut s = String::with_capacity(m.len() * 8);
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            if j > 0 {
                s.push(',');
            }
            s += &format!("{}", m[(i, j)]);
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("t")
    }

    const L: Limits = Limits {
        max_abs: 1e16,
        max_bytes: 1 << 20,
    };

    #[test]
    fn row_major_round_trips() {
        let m = from_row_major(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3);
        assert_eq!(m.shape(), (2, 3));
        assert_eq!(m[(1, 0)], 4.0);
        assert_eq!(row_major(&m), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(from_row_major(&[], 0).shape(), (0, 0));
    }

    fn parse_table(text: &str, path: &Path, format: TableFormat) -> Result<DMatrix<f64>> {
        super::parse_table(text, path, format, &L)
    }

    #[test]
    fn csv_with_header_and_nmf_format() {
        let m = parse_table("a,b\n1,2\n3,4.5\n", p(), TableFormat::Auto).unwrap();
        assert_eq!(m, DMatrix::from_row_slice(2, 2, &[1.0, 2.0, 3.0, 4.5]));
        let m = parse_table("3\n1 2 3\n4 5\n6\n", p(), TableFormat::Auto).unwrap();
        assert_eq!(
            m,
            DMatrix::from_row_slice(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_table("1,2\n3\n", p(), TableFormat::Csv).unwrap_err();
        assert!(e.to_string().contains("t:2"), "{e}");
        let e = parse_table("1,2\n3,NaN\n", p(), TableFormat::Csv).unwrap_err();
        assert!(
            e.to_string().contains("t:2: value NaN is not a number"),
            "{e}"
        );
        let e = parse_table("1,2\n\n3,-1e17\n", p(), TableFormat::Csv).unwrap_err();
        assert!(
            e.to_string()
                .contains("t:3: value -1e17 is too large for the working precision (|x| ≤ 1e16)"),
            "{e}"
        );
        let e = parse_table("2\n1 2\n3 inf\n", p(), TableFormat::Nmf).unwrap_err();
        assert!(e.to_string().contains("t:3: value inf is infinite"), "{e}");
        let e = parse_table("", p(), TableFormat::Auto).unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = parse_table("2\n1 2 3\n", p(), TableFormat::Nmf).unwrap_err();
        assert!(
            e.to_string()
                .contains("t:2: 3 values are not a whole number"),
            "{e}"
        );
        let m = parse_table("1,-2\n", p(), TableFormat::Csv).unwrap();
        assert!(require_nonnegative(&m, p()).is_err());
    }
}
