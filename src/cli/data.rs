//! `gradfree data`: generated data sets.

use anyhow::Result;
use clap::{Args, Subcommand};
use gradfree::Error;
use gradfree::data::folds;
use gradfree::data::letters;
use gradfree::data::majority::Circuit;
use gradfree::data::matrix::to_csv;
use gradfree::io::write_atomic;
use gradfree::plot::{ImageGrid, Pixels};
use gradfree::train::memory::{Budget, mul};
use std::path::PathBuf;

/// Refuses a data set of `sizes` (multiplied: values, bytes each and copies)
/// that the machine's memory cannot hold, before it is generated.
fn check_fits(sizes: &[usize], what: &str) -> Result<()> {
    Ok(Budget::new(None).check(mul(sizes), what)?)
}

#[derive(Subcommand, Debug)]
pub(crate) enum DataTask {
    /// Letter montages (40×40: w, x, y, z in a 2×2 montage, plain top / slanted bottom; exact NMF rank 16).
    Letters {
        /// Output file (CSV, or the reference NMF format with --format nmf).
        #[arg(long)]
        out: PathBuf,
        /// Number of images.
        #[arg(long, default_value_t = 2000)]
        count: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// File format.
        #[arg(long, value_enum, default_value_t = LettersFormat::Csv)]
        format: LettersFormat,
        /// Also write a PNG grid of the first 64 images here.
        #[arg(long)]
        preview: Option<PathBuf>,
    },
    /// Majority-gate circuit data: all 2^inputs vectors, split in equal train/test halves.
    Majority(MajorityArgs),
    /// Gaussian mixture: class centres N(0, spread²), unit noise; writes
    /// PREFIX_x.csv and PREFIX_y.csv (the input of `hsic fit`).
    Mixture(MixtureArgs),
}

#[derive(Args, Debug)]
pub(crate) struct MixtureArgs {
    /// Output prefix: writes PREFIX_x.csv (features) and PREFIX_y.csv (labels).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Items.
    #[arg(long, default_value_t = 5000)]
    pub(crate) items: usize,
    /// Features per item.
    #[arg(long, default_value_t = 10)]
    pub(crate) features: usize,
    /// Classes.
    #[arg(long, default_value_t = 10)]
    pub(crate) classes: usize,
    /// Standard deviation of the class centres (the noise has 1).
    #[arg(long, default_value_t = 1.5)]
    pub(crate) spread: f64,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Also write K cross-validation folds in the reference's layout,
    /// DIR/NAME/NAME_k{,_label,_test,_label_test}.csv for the prefix
    /// DIR/NAME (read by `hsic cv --data DIR --name NAME --folds K`).
    #[arg(long)]
    pub(crate) folds: Option<usize>,
}

pub(crate) fn data_mixture(a: &MixtureArgs) -> Result<()> {
    // The items and the class means, 8-byte values, a few copies and text.
    let values = a.items.saturating_add(a.classes);
    check_fits(&[values, a.features, 8 * 4], "data mixture")?;
    let d = gradfree::data::mixture::gaussian_mixture(
        a.items, a.features, a.classes, a.spread, a.seed,
    )?;
    let name = |suffix: &str| {
        let mut p = a.out.clone().into_os_string();
        p.push(suffix);
        PathBuf::from(p)
    };
    // The folds' directory and name, checked before anything is written.
    let fold_dir = a.out.parent().unwrap_or(std::path::Path::new("."));
    let fold_name = a.out.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if a.folds.is_some() && fold_name.is_empty() {
        return Err(
            Error::Input(format!("--out {}: no name for the folds", a.out.display())).into(),
        );
    }
    let cv = a.folds.map(|k| folds::kfold(&d, k, a.seed)).transpose()?;
    write_atomic(&name("_x.csv"), folds::features_csv(&d).as_bytes())?;
    write_atomic(&name("_y.csv"), folds::labels_csv(&d).as_bytes())?;
    println!(
        "wrote {} and {} ({} items, {} features, {} classes)",
        name("_x.csv").display(),
        name("_y.csv").display(),
        d.len(),
        d.dim,
        d.classes
    );
    if let Some(cv) = cv {
        folds::write_folds(fold_dir, fold_name, &cv)?;
        println!(
            "wrote {} folds under {}",
            cv.len(),
            fold_dir.join(fold_name).display()
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct MajorityArgs {
    /// Output prefix: writes PREFIX_train and PREFIX_test (reference classifier format).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Boolean inputs (all 2^inputs vectors are generated).
    #[arg(long, default_value_t = 13)]
    pub(crate) inputs: usize,
    /// Circuit depth (layers of gates; the top layer is one gate).
    #[arg(long, default_value_t = 3)]
    pub(crate) depth: usize,
    /// Inputs per gate (odd).
    #[arg(long, default_value_t = 3)]
    pub(crate) fanin: usize,
    /// Gates per layer below the top (default: --inputs).
    #[arg(long)]
    pub(crate) width: Option<usize>,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LettersFormat {
    /// One image per row, comma-separated.
    Csv,
    /// The reference C program's NMF format (row length, then rows).
    Nmf,
}

pub(crate) fn data_letters(
    out: &std::path::Path,
    count: usize,
    seed: u64,
    format: LettersFormat,
    preview: Option<&std::path::Path>,
) -> Result<()> {
    if count == 0 {
        return Err(Error::Input("--count must be at least 1".into()).into());
    }
    if preview == Some(out) {
        return Err(Error::Input("--preview and --out name the same file".into()).into());
    }
    // 40 × 40 pixels per item, 8 bytes each, the matrices and the text.
    check_fits(&[count, 1600, 8 * 4], "data letters")?;
    let (d, _) = letters::generate(count, seed);
    let text = match format {
        LettersFormat::Csv => to_csv(&d),
        LettersFormat::Nmf => {
            let mut s = format!("{}\n", d.ncols());
            s += &to_csv(&d).replace(',', " ");
            s
        }
    };
    write_atomic(out, text.as_bytes())?;
    if let Some(p) = preview {
        let imgs: Vec<Vec<f64>> = (0..count.min(64))
            .map(|k| d.row(k).iter().copied().collect())
            .collect();
        let grid = ImageGrid {
            cells: imgs.iter().map(|i| Some(i.as_slice())).collect(),
            shape: (letters::SIDE, letters::SIDE),
            cols: 8,
            pixels: Pixels::Clamp,
            caption: vec![
                format!(
                    "Letter montages: the first {} of {count} items, seed {seed}",
                    imgs.len()
                ),
                "In item order, 8 per row.".into(),
            ],
        };
        write_atomic(p, &grid.png()?)?;
    }
    println!(
        "wrote {count} letter montages ({}×{} px) to {}",
        letters::SIDE,
        letters::SIDE,
        out.display()
    );
    Ok(())
}

pub(crate) fn data_majority(a: &MajorityArgs) -> Result<()> {
    // The circuit's gates: a few words per gate of each layer.
    let width = a.width.unwrap_or(a.inputs);
    check_fits(&[a.depth.max(1), width, 8 * 6], "data majority")?;
    let circuit = Circuit::random(
        a.inputs,
        a.depth,
        a.fanin,
        a.width.unwrap_or(a.inputs),
        a.seed,
    )?;
    let (train, test) = circuit.split(a.seed);
    let name = |suffix: &str| {
        let mut p = a.out.clone().into_os_string();
        p.push(suffix);
        PathBuf::from(p)
    };
    for (d, suffix) in [(&train, "_train"), (&test, "_test")] {
        write_atomic(&name(suffix), d.to_lwl().as_bytes())?;
    }
    let ones = train.y.iter().chain(&test.y).filter(|&&c| c == 1).count();
    println!(
        "wrote {} and {} ({} + {} items, class 1 in {:.1}%)",
        name("_train").display(),
        name("_test").display(),
        train.len(),
        test.len(),
        100.0 * ones as f64 / (train.len() + test.len()) as f64
    );
    Ok(())
}

/// Runs a `data` task.
pub(crate) fn exec(task: DataTask) -> Result<()> {
    match task {
        DataTask::Majority(a) => data_majority(&a),
        DataTask::Mixture(a) => data_mixture(&a),
        DataTask::Letters {
            out,
            count,
            seed,
            format,
            preview,
        } => data_letters(&out, count, seed, format, preview.as_deref()),
    }
}
