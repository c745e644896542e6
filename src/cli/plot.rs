//! `gradfree plot`.

use anyhow::Result;
use clap::Args;
use gradfree::io::write_atomic;
use gradfree::{Error, io as output};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub(crate) struct PlotArgs {
    /// Series as NAME=RUN_DIR/metrics.jsonl (repeatable), plotted in the
    /// colours blue, red, green, orange, purple.
    #[arg(long, required = true)]
    pub(crate) series: Vec<String>,
    /// Field per epoch to plot.
    #[arg(long, default_value = "test_err")]
    pub(crate) y: String,
    /// x: cumulative `gwms` or `joules` (per-epoch fields summed).
    #[arg(long, default_value = "gwms")]
    pub(crate) x: String,
    /// Linear x axis instead of log₁₀.
    #[arg(long)]
    pub(crate) linear: bool,
    /// Output file stem or name: writes STEM.png and STEM.csv (an
    /// extension .png, .svg or .csv given here is replaced).
    #[arg(long)]
    pub(crate) out: PathBuf,
}

pub(crate) fn plot(a: &PlotArgs) -> Result<()> {
    let mut series = vec![];
    let mut csv = format!("series,{},{}\n", a.x, a.y);
    for spec in &a.series {
        let (name, path) = spec
            .split_once('=')
            .ok_or_else(|| Error::Input(format!("--series '{spec}' is not NAME=FILE")))?;
        let pts = gradfree::bench::curve(std::path::Path::new(path), &a.x, &a.y)?;
        for (x, y) in &pts {
            csv += &format!("{name},{x},{y}\n");
        }
        series.push((name.to_string(), pts));
    }
    let png = output::line_plot(&series, !a.linear)?;
    let stem = match a.out.extension().and_then(|e| e.to_str()) {
        Some("png" | "svg" | "csv") => a.out.with_extension(""),
        _ => a.out.clone(),
    };
    let with = |ext: &str| {
        let mut p = stem.clone().into_os_string();
        p.push(format!(".{ext}"));
        PathBuf::from(p)
    };
    let (png_path, csv_path) = (with("png"), with("csv"));
    write_atomic(&png_path, &png)?;
    write_atomic(&csv_path, csv.as_bytes())?;
    println!("wrote {} and {}", png_path.display(), csv_path.display());
    let colours = ["blue", "red", "green", "orange", "purple"];
    for (k, (name, pts)) in series.iter().enumerate() {
        let (x, y) = pts[pts.len() - 1];
        let best = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        println!(
            "{name} ({}): {} points, last {} {x:.4} → {} {y:.4}, best {best:.4}",
            colours[k % colours.len()],
            pts.len(),
            a.x,
            a.y
        );
    }
    Ok(())
}
