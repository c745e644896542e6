//! `gradfree hsic fit|predict|cv`.

#[allow(unused_imports)]
use super::common::*;
#[allow(unused_imports)]
use super::*;
use anyhow::Result;
use clap::{Args, Subcommand};
use gradfree::data::labeled::{self, LabeledFormat};
use gradfree::methods::hsic;
use gradfree::train::meter::Meter;
use gradfree::train::report::{Common as CommonSummary, OutDir};
use gradfree::{Error, data};
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub(crate) enum HsicTask {
    /// k-fold cross-validation on the reference's fold folders
    /// (DIR/NAME/NAME_k{,_label,_test,_label_test}.csv).
    Cv(HsicCvArgs),
    /// Fit on a features CSV and a label CSV; writes model.safetensors.
    Fit(HsicFitArgs),
    /// Predict with a fitted model; prints accuracy when labels are given.
    Predict(HsicPredictArgs),
}

#[derive(Args, Debug, Clone)]
pub(crate) struct HsicSolverArgs {
    /// Solver: ws (closed-form kernel mean embedding) or ism (W*, the ISM solution).
    #[arg(long, default_value = "ws")]
    pub(crate) solver: String,
    /// Smallest σ of the search range (default: the reference's per data set).
    #[arg(long)]
    pub(crate) smallest_sigma: Option<f64>,
    /// Points on the σ range (default: the reference's per data set).
    #[arg(long)]
    pub(crate) sigma_steps: Option<usize>,
    /// Standardize test data with the training statistics instead of their
    /// own (the reference's choice, kept as the default because it is more
    /// accurate on the adversarial set; see README).
    #[arg(long)]
    pub(crate) train_stats: bool,
    /// Follow the reference wherever gradfree offers otherwise (overrides
    /// --train-stats). Kernels are always exact (no random features).
    #[arg(long)]
    pub(crate) reference_compat: bool,
}

impl HsicSolverArgs {
    fn ws(&self, name: &str, seed: u64) -> Result<hsic::WsSettings> {
        let mut s = hsic::WsSettings::for_dataset(name);
        if let Some(v) = self.smallest_sigma {
            s.smallest_sigma = v;
        }
        if let Some(v) = self.sigma_steps {
            s.sigma_steps = v;
        }
        if s.smallest_sigma.is_nan() || s.smallest_sigma <= 0.0 || s.sigma_steps == 0 {
            return Err(
                Error::Input("--smallest-sigma must be > 0 and --sigma-steps ≥ 1".into()).into(),
            );
        }
        s.test_own_stats = self.reference_compat || !self.train_stats;
        s.seed = seed;
        Ok(s)
    }

    fn ism(&self, seed: u64) -> hsic::ism::IsmSettings {
        hsic::ism::IsmSettings {
            test_own_stats: self.reference_compat || !self.train_stats,
            seed,
            ..Default::default()
        }
    }

    fn check(&self) -> Result<bool> {
        match self.solver.as_str() {
            "ws" => Ok(false),
            "ism" => Ok(true),
            other => Err(Error::Input(format!("--solver {other}: use ws or ism")).into()),
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct HsicCvArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(flatten)]
    pub(crate) solver: HsicSolverArgs,
    /// Folder holding NAME/ with the fold files.
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Data set name.
    #[arg(long)]
    pub(crate) name: String,
    /// Number of folds.
    #[arg(long, default_value_t = 10)]
    pub(crate) folds: usize,
}

#[derive(Args, Debug)]
pub(crate) struct HsicFitArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(flatten)]
    pub(crate) solver: HsicSolverArgs,
    /// Features CSV (no header), or with --labels omitted a CSV whose last
    /// column is the integer label.
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Label CSV (one integer per line).
    #[arg(long)]
    pub(crate) labels: Option<PathBuf>,
    /// Data set name (picks the reference's σ range).
    #[arg(long, default_value = "")]
    pub(crate) name: String,
}

#[derive(Args, Debug)]
pub(crate) struct HsicPredictArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// model.safetensors from `hsic fit`.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Features CSV.
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Label CSV, for the accuracy.
    #[arg(long)]
    pub(crate) labels: Option<PathBuf>,
}

pub(crate) fn hsic_cv(a: &HsicCvArgs) -> Result<()> {
    let c = &a.common;
    let use_ism = a.solver.check()?;
    let s = a.solver.ws(&a.name, c.seed)?;
    let si = a.solver.ism(c.seed);
    if a.folds == 0 {
        return Err(Error::Input("--folds must be at least 1".into()).into());
    }
    let (folds, _) = data::folds::load_folds(&a.data, &a.name, a.folds)?;
    let backend = c.open()?;
    let mut out = OutDir::new(c.out.as_deref())?;
    let mut meter = Meter::for_backend(&backend);
    let solver = if use_ism { "W*" } else { "W_s" };
    if !c.quiet {
        if use_ism {
            println!(
                "HSIC W* (ISM) on {} ({} folds) on {} ({})",
                a.name,
                a.folds,
                backend.describe(),
                c.precision
            );
        } else {
            println!(
                "HSIC W_s on {} ({} folds), σ range down to {} in {} steps on {} ({}){}",
                a.name,
                a.folds,
                s.smallest_sigma,
                s.sigma_steps,
                backend.describe(),
                c.precision,
                if s.test_own_stats {
                    ""
                } else {
                    ", test standardized with training statistics"
                }
            );
        }
    }
    let (mut layers, mut tr, mut te, mut secs, mut hs) = (vec![], vec![], vec![], vec![], vec![]);
    let mut metr: Vec<hsic::metrics::Metrics> = vec![];
    for (k, f) in folds.iter().enumerate() {
        let t0 = std::time::Instant::now();
        let mut work = hsic::Work::default();
        let (train_acc, test_acc, h, reports, fit_s, mt) = if use_ism {
            let model = hsic::ism::fit_ism(&backend, &f.train, &si, &mut work)?;
            let fit_s = t0.elapsed().as_secs_f64();
            let test_acc = hsic::accuracy(&model.predict(&f.test.x), &f.test.y);
            let mt = model.metrics(&f.train.y, f.train.classes);
            (
                model.train_acc,
                test_acc,
                model.hsic,
                serde_json::to_value(model.reports()).expect("json"),
                fit_s,
                mt,
            )
        } else {
            let model = hsic::fit_ws(&backend, &f.train, &s, &mut work)?;
            let fit_s = t0.elapsed().as_secs_f64();
            let train_acc = hsic::accuracy(
                &hsic::knn(
                    &model.output.1,
                    &model.y,
                    &model.output.1,
                    model.output.0,
                    model.classes,
                    5,
                ),
                &model.y,
            );
            let test_acc =
                hsic::accuracy(&model.predict(&backend, &f.test.x, &mut work)?, &f.test.y);
            (
                train_acc,
                test_acc,
                model.hsic(),
                serde_json::to_value(model.reports()).expect("json"),
                fit_s,
                model.metrics(&backend)?,
            )
        };
        meter.add_gwms(work.gwms());
        let nl = reports.as_array().map_or(0, |v| v.len());
        if !c.quiet {
            println!(
                "fold {:>2}: {nl} layers, H {h:.3}, train {train_acc:.3}, test {test_acc:.3}, {fit_s:.2} s, {:.4} GWMs, MSE {:.3}, CE {:.3}, C {:.3}{}; {}",
                k + 1,
                work.gwms(),
                mt.mse,
                mt.ce,
                mt.c,
                mt.t.map_or(String::new(), |t| format!(", T {t:.3}")),
                reports
            );
        }
        out.metric(
            &json!({"fold": k + 1, "layers": reports, "hsic": h, "mse": mt.mse, "ce": mt.ce,
            "c": mt.c, "t": mt.t, "train_acc": train_acc, "test_acc": test_acc, "seconds": fit_s,
            "gwms": work.gwms()}),
        )?;
        metr.push(mt);
        layers.push(nl as f64);
        tr.push(train_acc);
        te.push(test_acc);
        secs.push(fit_s);
        hs.push(h);
    }
    let m = meter.measure();
    let f = |v: &[f64]| {
        let (a, b) = mean_std(v);
        format!("{a:.3} ± {b:.3}")
    };
    let col = |g: fn(&hsic::metrics::Metrics) -> Option<f64>| -> String {
        let v: Vec<f64> = metr.iter().filter_map(g).collect();
        if v.is_empty() { "-".into() } else { f(&v) }
    };
    let (mse, ce, cc, tt) = (
        col(|m| Some(m.mse)),
        col(|m| Some(m.ce)),
        col(|m| Some(m.c)),
        col(|m| m.t),
    );
    println!(
        "| data | solver | layers | train acc | test acc | time/fold s | H* | MSE | CE | C | T |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {solver} | {} | {} | {} | {} | {} | {mse} | {ce} | {cc} | {tt} |",
        a.name,
        f(&layers),
        f(&tr),
        f(&te),
        f(&secs),
        f(&hs)
    );
    println!("{}", m.line());
    let common = CommonSummary::new(backend.describe(), c.precision, c.seed, &m);
    out.summary(&common, json!({
        "method": "hsic cv", "solver": solver, "data": a.name, "folds": a.folds,
        "settings": if use_ism { serde_json::to_value(&si).expect("json") } else { serde_json::to_value(&s).expect("json") },
        "layers": mean_std(&layers), "train_acc": mean_std(&tr), "test_acc": mean_std(&te),
        "seconds_per_fold": mean_std(&secs), "hsic": mean_std(&hs),
        "mse": mean_std(&metr.iter().map(|m| m.mse).collect::<Vec<_>>()),
        "ce": mean_std(&metr.iter().map(|m| m.ce).collect::<Vec<_>>()),
        "c": mean_std(&metr.iter().map(|m| m.c).collect::<Vec<_>>()),
        "t": (!use_ism).then(|| mean_std(&metr.iter().filter_map(|m| m.t).collect::<Vec<_>>())),
    }))?;
    Ok(())
}

pub(crate) fn hsic_fit(a: &HsicFitArgs) -> Result<()> {
    let c = &a.common;
    let use_ism = a.solver.check()?;
    let s = a.solver.ws(&a.name, c.seed)?;
    let raw = match &a.labels {
        Some(l) => data::folds::load_pair(&a.data, l)?,
        None => {
            let d = labeled::load(&a.data, LabeledFormat::Csv, None)?;
            data::folds::RawTable {
                dim: d.dim,
                x: d.x,
                labels: d.y.iter().map(|&v| v as i64).collect(),
            }
        }
    };
    let values = data::folds::label_values(&[&raw]);
    let train = data::folds::to_labeled(&raw, &values);
    let backend = c.open()?;
    let out = OutDir::new(c.out.as_deref())?;
    let mut meter = Meter::for_backend(&backend);
    let mut work = hsic::Work::default();
    if use_ism {
        let model = hsic::ism::fit_ism(&backend, &train, &a.solver.ism(c.seed), &mut work)?;
        meter.add_gwms(work.gwms());
        for r in model.reports() {
            if !c.quiet {
                println!(
                    "layer {}: σ {:.4}, width {}, {} ISM iterations, silhouette {:.4}",
                    r.layer, r.sigma, r.width, r.iterations, r.silhouette
                );
            }
        }
        println!(
            "{} layers, train accuracy {:.4}, HSIC {:.4}",
            model.layers.len(),
            model.train_acc,
            model.hsic
        );
        let m = meter.measure();
        println!("{}", m.line());
        out.file("model.safetensors", &model.to_bytes(&values)?)?;
        let common = CommonSummary::new(backend.describe(), c.precision, c.seed, &m);
        out.summary(&common, json!({"method": "hsic fit", "solver": "ism", "layers": model.reports(), "train_acc": model.train_acc, "hsic": model.hsic}))?;
        return Ok(());
    }
    let model = hsic::fit_ws(&backend, &train, &s, &mut work)?;
    meter.add_gwms(work.gwms());
    let acc = hsic::accuracy(
        &hsic::knn(
            &model.output.1,
            &model.y,
            &model.output.1,
            model.output.0,
            model.classes,
            5,
        ),
        &model.y,
    );
    for r in model.reports() {
        if !c.quiet {
            println!(
                "layer {}: σ {:.4}, σ_b {:.4}, width {}, HSIC {:.4} ({} σ tried)",
                r.layer, r.sigma, r.sigma_b, r.width, r.hsic, r.candidates
            );
        }
    }
    println!(
        "{} layers, train accuracy {acc:.4}, H {:.4}",
        model.layers.len(),
        model.hsic()
    );
    let m = meter.measure();
    println!("{}", m.line());
    out.file("model.safetensors", &model.to_bytes(&values)?)?;
    let common = CommonSummary::new(backend.describe(), c.precision, c.seed, &m);
    out.summary(&common, json!({"method": "hsic fit", "solver": "ws", "layers": model.reports(), "train_acc": acc, "hsic": model.hsic()}))?;
    Ok(())
}

pub(crate) fn hsic_predict(a: &HsicPredictArgs) -> Result<()> {
    let c = &a.common;
    let bytes = std::fs::read(&a.model)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", a.model.display())))?;
    let (model, values) = hsic::SavedModel::from_bytes(&bytes, &a.model.display().to_string())?;
    let dim = model.dim();
    let m = data::matrix::load_table(&a.data, data::matrix::TableFormat::Csv)?;
    if m.ncols() != dim {
        return Err(Error::Input(format!(
            "{} has {} features, the model {}",
            a.data.display(),
            m.ncols(),
            dim
        ))
        .into());
    }
    let x = data::matrix::row_major(&m);
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::Input(format!("{}: non-finite value", a.data.display())).into());
    }
    let backend = c.open()?;
    let out = OutDir::new(c.out.as_deref())?;
    let mut work = hsic::Work::default();
    let pred = model.predict(&backend, &x, &mut work)?;
    let text: String = pred
        .iter()
        .map(|&p| format!("{}\n", values[p as usize]))
        .collect();
    out.file("predictions.csv", text.as_bytes())?;
    if let Some(l) = &a.labels {
        let raw = data::folds::load_pair(&a.data, l)?;
        let y: Vec<u32> = raw
            .labels
            .iter()
            .map(|v| values.binary_search(v).map_or(u32::MAX, |i| i as u32))
            .collect();
        println!(
            "accuracy {:.4} on {} items",
            hsic::accuracy(&pred, &y),
            y.len()
        );
    } else if out.path("predictions.csv").is_none() {
        print!("{text}");
    }
    Ok(())
}
