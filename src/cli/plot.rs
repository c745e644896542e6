//! `gradfree plot`.

use anyhow::Result;
use clap::Args;
use gradfree::Error;
use gradfree::io::write_atomic;
use gradfree::plot::{
    Axis, Figure, Format, Formats, LineChart, Series, field_label, metrics_curve, series_style,
};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub(crate) struct PlotArgs {
    /// A series as NAME=RUN_DIR/metrics.jsonl or NAME=RUN_DIR (repeatable);
    /// drawn in the order given.
    #[arg(long, required = true)]
    pub(crate) series: Vec<String>,
    /// Field per epoch on the y axis (test_err, train_err, loss, …).
    #[arg(long, default_value = "test_err")]
    pub(crate) y: String,
    /// Field on the x axis, summed over epochs: gwms, joules or seconds
    /// (epoch is taken as it is).
    #[arg(long, default_value = "gwms")]
    pub(crate) x: String,
    /// Linear x axis instead of log₁₀.
    #[arg(long)]
    pub(crate) linear: bool,
    /// Log₁₀ y axis instead of linear.
    #[arg(long)]
    pub(crate) log_y: bool,
    /// The chart's title (default: "Y against X").
    #[arg(long)]
    pub(crate) title: Option<String>,
    /// Figure formats (default: both, or the one named by --out's extension).
    #[arg(long, value_enum)]
    pub(crate) format: Option<Formats>,
    /// Output file stem or name: writes STEM.png, STEM.svg and STEM.csv
    /// (the points); a name ending .png or .svg writes that figure and the CSV.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

/// The device and precision a run's summary.json (beside its metrics)
/// records, as "device, precision" parts.
fn run_facts(metrics: &Path) -> Vec<(&'static str, String)> {
    let summary = metrics.with_file_name("summary.json");
    let Ok(text) = std::fs::read_to_string(summary) else {
        return vec![];
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return vec![];
    };
    ["device", "precision"]
        .into_iter()
        .filter_map(|k| {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(|s| (k, s.to_string()))
        })
        .collect()
}

/// The figure formats and the file stem from `--out` and `--format`.
fn outputs(a: &PlotArgs) -> Result<(Vec<Format>, PathBuf)> {
    let ext = a.out.extension().and_then(|e| e.to_str());
    let named = match ext {
        Some("png") => Some(Formats::Png),
        Some("svg") => Some(Formats::Svg),
        _ => None,
    };
    let formats = match (a.format, named) {
        (Some(f), Some(n)) if f != n => {
            return Err(Error::Input(format!(
                "--out {} names a {} file but --format asks for {f:?}",
                a.out.display(),
                ext.unwrap_or_default()
            ))
            .into());
        }
        (Some(f), _) | (None, Some(f)) => f,
        (None, None) => Formats::Both,
    };
    let stem = match ext {
        Some("png" | "svg" | "csv") => a.out.with_extension(""),
        _ => a.out.clone(),
    };
    Ok((formats.list().to_vec(), stem))
}

pub(crate) fn plot(a: &PlotArgs) -> Result<()> {
    let (formats, stem) = outputs(a)?;
    let (series, shared, csv) = read_series(a)?;
    let x = Axis {
        label: field_label(&a.x, true),
        log: !a.linear,
    };
    let y = Axis {
        label: field_label(&a.y, false),
        log: a.log_y,
    };
    let short = |l: &str| l.split(" (").next().unwrap_or(l).to_string();
    let chart = LineChart {
        title: a
            .title
            .clone()
            .unwrap_or_else(|| format!("{} against {}", short(&y.label), short(&x.label))),
        subtitle: shared.join(", "),
        x,
        y,
        series,
    };
    let with = |ext: &str| {
        let mut p = stem.clone().into_os_string();
        p.push(format!(".{ext}"));
        PathBuf::from(p)
    };
    let mut written = vec![];
    for f in formats {
        let path = with(f.ext());
        write_atomic(&path, &chart.render(f)?)?;
        written.push(path);
    }
    let csv_path = with("csv");
    write_atomic(&csv_path, csv.as_bytes())?;
    written.push(csv_path);
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    println!("wrote {}", names.join(", "));
    report_series(a, &chart.series);
    Ok(())
}

/// Each `--series` run's curve, named with the facts it does not share
/// with the others; the facts every run shares (for the subtitle); and
/// the points as CSV text.
fn read_series(a: &PlotArgs) -> Result<(Vec<Series>, Vec<String>, String)> {
    let mut series = vec![];
    let mut facts = vec![];
    let mut csv = format!("series,{},{}\n", a.x, a.y);
    for spec in &a.series {
        let (name, path) = spec
            .split_once('=')
            .ok_or_else(|| Error::Input(format!("--series '{spec}' is not NAME=FILE")))?;
        let mut path = PathBuf::from(path);
        if path.is_dir() {
            path.push("metrics.jsonl");
        }
        let pts = metrics_curve(&path, &a.x, &a.y)?;
        for (x, y) in &pts {
            csv += &format!("{name},{x},{y}\n");
        }
        facts.push(run_facts(&path));
        series.push(Series {
            name: name.to_string(),
            points: pts,
        });
    }
    // Facts every run shares go under the title; the others into the legend.
    let shared: Vec<(&str, String)> = facts[0]
        .iter()
        .filter(|f| facts.iter().all(|g| g.contains(f)))
        .cloned()
        .collect();
    for (s, f) in series.iter_mut().zip(&facts) {
        let own: Vec<&str> = f
            .iter()
            .filter(|x| !shared.contains(x))
            .map(|x| x.1.as_str())
            .collect();
        if !own.is_empty() {
            s.name = format!("{} ({})", s.name, own.join(", "));
        }
    }
    let shared = shared.into_iter().map(|f| f.1).collect();
    Ok((series, shared, csv))
}

/// One line per series: its style, points plotted, last and lowest values.
fn report_series(a: &PlotArgs, series: &[Series]) {
    for (k, s) in series.iter().enumerate() {
        let (colour, marker) = series_style(k);
        let finite: Vec<&(f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .collect();
        let what = match finite.last() {
            Some((x, y)) => {
                let best = finite.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
                format!("last {} {x:.4} → {} {y:.4}, lowest {best:.4}", a.x, a.y)
            }
            None => "nothing to draw".into(),
        };
        println!(
            "{} ({} {}): {} points ({} plotted), {what}",
            s.name,
            colour,
            marker,
            s.points.len(),
            finite.len()
        );
    }
}
