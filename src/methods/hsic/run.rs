//! `hsic cv`, `hsic fit` and `hsic predict` as library runs, for either
//! solver.

use super::ism::{self, IsmSettings};
use super::metrics::Metrics;
use super::{SavedModel, Standardize, Work, WsModel, WsSettings, accuracy, fit_ws, knn};
use crate::data::folds::Fold;
use crate::data::labeled::Labeled;
use crate::engine::Backend;
use crate::error::Result;
use crate::train::Session;

/// Which closed-form solver, with its settings.
#[derive(Clone, Debug)]
pub enum Solver {
    /// W_s, the kernel mean embedding.
    Ws(WsSettings),
    /// W*, the ISM solution.
    Ism(IsmSettings),
}

impl Solver {
    /// The solver's name in tables: `W_s` or `W*`.
    pub fn label(&self) -> &'static str {
        match self {
            Solver::Ws(_) => "W_s",
            Solver::Ism(_) => "W*",
        }
    }

    /// Its seed.
    pub fn seed(&self) -> u64 {
        match self {
            Solver::Ws(s) => s.seed,
            Solver::Ism(s) => s.seed,
        }
    }

    /// Its settings as JSON.
    fn settings(&self) -> serde_json::Value {
        match self {
            Solver::Ws(s) => serde_json::to_value(s),
            Solver::Ism(s) => serde_json::to_value(s),
        }
        .expect("settings serialize")
    }
}

/// A fitted network and its figures on the training data.
pub struct Fitted {
    /// The model.
    pub model: SavedModel,
    /// Training accuracy.
    pub train_acc: f64,
    /// The last layer's HSIC (H for W_s, the ISM objective's for W*).
    pub hsic: f64,
    /// The per-layer reports, as JSON.
    pub reports: serde_json::Value,
}

/// Fits a network on `train` with `solver`, counting work in `work`.
pub fn fit(be: &Backend, train: &Labeled, solver: &Solver, work: &mut Work) -> Result<Fitted> {
    Ok(match solver {
        Solver::Ism(s) => {
            let model = ism::fit_ism(be, train, s, work)?;
            Fitted {
                train_acc: model.train_acc,
                hsic: model.hsic,
                reports: serde_json::to_value(model.reports()).expect("json"),
                model: SavedModel::Ism(model),
            }
        }
        Solver::Ws(s) => {
            let model = fit_ws(be, train, s, work)?;
            Fitted {
                train_acc: ws_train_accuracy(&model),
                hsic: model.hsic(),
                reports: serde_json::to_value(model.reports()).expect("json"),
                model: SavedModel::Ws(model),
            }
        }
    })
}

/// 5-NN accuracy of a W_s model on its own training outputs.
fn ws_train_accuracy(model: &WsModel) -> f64 {
    let (w, out) = (&model.output.0, &model.output.1);
    accuracy(&knn(out, &model.y, out, *w, model.classes, 5), &model.y)
}

/// The reference's metrics of a fitted model's training output.
fn fit_metrics(be: &Backend, model: &SavedModel, train: &Labeled) -> Result<Metrics> {
    match model {
        SavedModel::Ism(m) => Ok(m.metrics(&train.y, train.classes)),
        SavedModel::Ws(m) => m.metrics(be),
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt(),
    )
}

/// `hsic cv` as a library run: fits and tests every fold, one metrics line
/// per fold, and prints the results table row (mean ± std over folds);
/// returns the summary's own fields.
pub fn run_cv(
    be: &Backend,
    session: &mut Session,
    name: &str,
    folds: &[Fold],
    solver: &Solver,
) -> Result<serde_json::Value> {
    match solver {
        Solver::Ism(_) => session.say(&format!(
            "HSIC W* (ISM) on {name} ({} folds) on {} ({})",
            folds.len(),
            be.describe(),
            be.precision()
        )),
        Solver::Ws(s) => session.say(&format!(
            "HSIC W_s on {name} ({} folds), σ range down to {} in {} steps on {} ({}){}",
            folds.len(),
            s.smallest_sigma,
            s.sigma_steps,
            be.describe(),
            be.precision(),
            if s.test_own_stats {
                ""
            } else {
                ", test standardized with training statistics"
            }
        )),
    }
    let (mut layers, mut tr, mut te, mut secs, mut hs) = (vec![], vec![], vec![], vec![], vec![]);
    let mut ism = IsmTotals::default();
    let mut metr: Vec<Metrics> = vec![];
    for (k, f) in folds.iter().enumerate() {
        let t0 = std::time::Instant::now();
        let mut work = Work::default();
        let fitted = fit(be, &f.train, solver, &mut work)?;
        let fit_s = t0.elapsed().as_secs_f64();
        let test_acc = accuracy(&fitted.model.predict(be, &f.test.x, &mut work)?, &f.test.y);
        let mt = fit_metrics(be, &fitted.model, &f.train)?;
        session.add_gwms(work.gwms());
        let reports = &fitted.reports;
        let nl = reports.as_array().map_or(0, |v| v.len());
        if let Solver::Ism(s) = solver {
            ism.add(reports, s.max_iter);
        }
        let (train_acc, h) = (fitted.train_acc, fitted.hsic);
        session.say(&format!(
            "fold {:>2}: {nl} layers, H {h:.3}, train {train_acc:.3}, test {test_acc:.3}, {fit_s:.2} s, {:.4} GWMs, MSE {:.3}, CE {:.3}, C {:.3}{}; {}",
            k + 1,
            work.gwms(),
            mt.mse,
            mt.ce,
            mt.c,
            mt.t.map_or(String::new(), |t| format!(", T {t:.3}")),
            reports
        ));
        session.metric(
            &serde_json::json!({"fold": k + 1, "layers": reports, "hsic": h,
            "mse": mt.mse, "ce": mt.ce, "c": mt.c, "t": mt.t, "train_acc": train_acc,
            "test_acc": test_acc, "seconds": fit_s, "gwms": work.gwms()}),
        )?;
        metr.push(mt);
        layers.push(nl as f64);
        tr.push(train_acc);
        te.push(test_acc);
        secs.push(fit_s);
        hs.push(h);
    }
    let f = |v: &[f64]| {
        let (a, b) = mean_std(v);
        format!("{a:.3} ± {b:.3}")
    };
    let col = |g: fn(&Metrics) -> Option<f64>| -> String {
        let v: Vec<f64> = metr.iter().filter_map(g).collect();
        if v.is_empty() { "-".into() } else { f(&v) }
    };
    session.tell(
        "| data | solver | layers | train acc | test acc | time/fold s | H* | MSE | CE | C | T |",
    );
    session.tell("|---|---|---|---|---|---|---|---|---|---|---|");
    session.tell(&format!(
        "| {name} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        solver.label(),
        f(&layers),
        f(&tr),
        f(&te),
        f(&secs),
        f(&hs),
        col(|m| Some(m.mse)),
        col(|m| Some(m.ce)),
        col(|m| Some(m.c)),
        col(|m| m.t)
    ));
    let all = |g: fn(&Metrics) -> f64| mean_std(&metr.iter().map(g).collect::<Vec<_>>());
    let ws = matches!(solver, Solver::Ws(_));
    if !ws {
        session.say(&format!(
            "W*: {} ISM iterations in {} layers, {} of them at the cap; {:.4} s per iteration",
            ism.iterations,
            layers.iter().sum::<f64>(),
            ism.at_cap,
            ism.seconds / ism.iterations.max(1) as f64
        ));
    }
    Ok(serde_json::json!({
        "ism_iterations": (!ws).then_some(ism.iterations),
        "layers_at_cap": (!ws).then_some(ism.at_cap),
        "s_per_iteration": (!ws && ism.iterations > 0).then(|| ism.seconds / ism.iterations as f64),
        "method": "hsic cv", "solver": solver.label(), "data": name, "folds": folds.len(),
        "settings": solver.settings(),
        "layers": mean_std(&layers), "train_acc": mean_std(&tr), "test_acc": mean_std(&te),
        "seconds_per_fold": mean_std(&secs), "hsic": mean_std(&hs),
        "mse": all(|m| m.mse), "ce": all(|m| m.ce), "c": all(|m| m.c),
        "t": ws.then(|| mean_std(&metr.iter().filter_map(|m| m.t).collect::<Vec<_>>())),
    }))
}

/// W* iterations over the folds of a cross-validation, from the layer
/// reports.
#[derive(Default)]
struct IsmTotals {
    iterations: usize,
    seconds: f64,
    /// Layers that ran the iteration cap out (the ISM's eigenvalue change
    /// never fell below its tolerance).
    at_cap: usize,
}

impl IsmTotals {
    fn add(&mut self, reports: &serde_json::Value, cap: usize) {
        for r in reports.as_array().into_iter().flatten() {
            let its = r["iterations"].as_u64().unwrap_or(0) as usize;
            self.iterations += its;
            self.seconds += r["iteration_seconds"].as_f64().unwrap_or(0.0);
            self.at_cap += (its >= cap) as usize;
        }
    }
}

/// `hsic fit` as a library run: fits on `train` (labels mapped from the
/// original `values`), prints each layer, writes `model.safetensors`;
/// returns the summary's own fields.
pub fn run_fit(
    be: &Backend,
    session: &mut Session,
    train: &Labeled,
    values: &[i64],
    solver: &Solver,
) -> Result<serde_json::Value> {
    let mut work = Work::default();
    let fitted = fit(be, train, solver, &mut work)?;
    session.add_gwms(work.gwms());
    let acc = fitted.train_acc;
    match &fitted.model {
        SavedModel::Ism(model) => {
            for r in model.reports() {
                session.say(&format!(
                    "layer {}: σ {:.4}, width {}, {} ISM iterations, silhouette {:.4}",
                    r.layer, r.sigma, r.width, r.iterations, r.silhouette
                ));
            }
            session.tell(&format!(
                "{} layers, train accuracy {:.4}, HSIC {:.4}",
                model.layers.len(),
                acc,
                model.hsic
            ));
        }
        SavedModel::Ws(model) => {
            for r in model.reports() {
                session.say(&format!(
                    "layer {}: σ {:.4}, σ_b {:.4}, width {}, HSIC {:.4} ({} σ tried)",
                    r.layer, r.sigma, r.sigma_b, r.width, r.hsic, r.candidates
                ));
            }
            session.tell(&format!(
                "{} layers, train accuracy {acc:.4}, H {:.4}",
                model.layers.len(),
                model.hsic()
            ));
        }
    }
    let (solver_name, bytes) = match &fitted.model {
        SavedModel::Ism(m) => ("ism", m.to_bytes(values)?),
        SavedModel::Ws(m) => ("ws", m.to_bytes(values)?),
    };
    session.file("model.safetensors", &bytes)?;
    Ok(
        serde_json::json!({"method": "hsic fit", "solver": solver_name,
        "layers": fitted.reports, "train_acc": acc, "hsic": fitted.hsic}),
    )
}

/// `hsic predict` as a library run: the predicted labels (original label
/// values) of the rows `x`, standardized `how`, written to
/// `predictions.csv`; with `labels`, prints the accuracy.
pub fn run_predict(
    be: &Backend,
    session: &Session,
    model: &SavedModel,
    values: &[i64],
    x: &[f64],
    labels: Option<&[i64]>,
    how: Standardize,
) -> Result<Vec<i64>> {
    let rows = x.len() / model.dim().max(1);
    if how == Standardize::Own && rows < 2 {
        return Err(crate::error::Error::Input(format!(
            "{rows} row cannot be standardized with its own statistics (use the training statistics)"
        )));
    }
    let mut work = Work::default();
    let pred = model.predict_with(be, x, how, &mut work)?;
    let out: Vec<i64> = pred.iter().map(|&p| values[p as usize]).collect();
    let text: String = out.iter().map(|v| format!("{v}\n")).collect();
    session.file("predictions.csv", text.as_bytes())?;
    match labels {
        Some(l) => {
            let y: Vec<u32> = l
                .iter()
                .map(|v| values.binary_search(v).map_or(u32::MAX, |i| i as u32))
                .collect();
            session.tell(&format!(
                "accuracy {:.4} on {} items",
                accuracy(&pred, &y),
                y.len()
            ));
        }
        None if session.out().path("predictions.csv").is_none() => {
            for v in &out {
                session.tell(&v.to_string());
            }
        }
        None => {}
    }
    Ok(out)
}
