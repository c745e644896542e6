//! `gradfree rrr classify` and `gradfree predict`.

#[allow(unused_imports)]
use super::common::*;
#[allow(unused_imports)]
use super::*;
use anyhow::Result;
use clap::{Args, Parser};
use gradfree::Error;
use gradfree::data::labeled::LabeledFormat;
use gradfree::io::{png_grid, write_atomic};
use gradfree::methods::rrr::classify::{self, Classifier, Saved, Settings};
use gradfree::methods::rrr::net::Net;
use gradfree::train::meter::Meter;
use gradfree::train::report::{Common as CommonSummary, OutDir, Progress};
use serde_json::json;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub(crate) struct ClassifyArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Layered fully connected net, e.g. 784,20,10.
    #[arg(long, conflicts_with = "net")]
    pub(crate) layers: Option<String>,
    /// Net file in the reference format (`D H C`, then `node indeg inputs…`).
    #[arg(long)]
    pub(crate) net: Option<PathBuf>,
    /// Training data: reference classifier format, CSV (label last), or MNIST IDX (.gz/.zip ok).
    #[arg(long)]
    pub(crate) train: Option<PathBuf>,
    /// Labels file of IDX training images (default: the matching *-labels-idx1-* file).
    #[arg(long)]
    pub(crate) train_labels: Option<PathBuf>,
    /// Test data (same formats).
    #[arg(long)]
    pub(crate) test: Option<PathBuf>,
    /// Labels file of IDX test images.
    #[arg(long)]
    pub(crate) test_labels: Option<PathBuf>,
    /// Hold out this fraction of the training data (seeded) as the test set.
    #[arg(long)]
    pub(crate) split: Option<f64>,
    /// Data format.
    #[arg(long, value_enum, default_value_t = LabeledFormat::Auto)]
    pub(crate) format: LabeledFormat,
    /// Items per batch |K|.
    #[arg(long, default_value_t = 128)]
    pub(crate) batch: usize,
    /// Epochs.
    #[arg(long, default_value_t = 10)]
    pub(crate) epochs: usize,
    /// RRR iterations per batch.
    #[arg(long, default_value_t = 100)]
    pub(crate) iters_per_batch: usize,
    /// Stop a batch once RRR_err < tol (0 = run every iteration).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) tol: f64,
    /// RRR β.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) beta: f64,
    /// Weight norm Ω per node.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) omega: f64,
    /// Class-node metric Υ.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) upsilon: f64,
    /// Class margin Δ.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) margin: f64,
    /// Eccentric exemptions per batch (eq. 32): an item count, or a percentage of the batch like 0.5%.
    #[arg(long)]
    pub(crate) exempt: Option<String>,
    /// Relabels per batch (eq. 33): an item count or a percentage of the batch.
    #[arg(long)]
    pub(crate) relabel: Option<String>,
    /// Images of HxW pixels: write exempted items as a PNG grid.
    #[arg(long)]
    pub(crate) image_shape: Option<String>,
    /// Stop after the epoch during which this many seconds have passed.
    #[arg(long)]
    pub(crate) time_limit: Option<f64>,
    /// Continue a killed run from DIR/checkpoint.safetensors (same data arguments).
    #[arg(long)]
    pub(crate) resume: Option<PathBuf>,
}

pub(crate) fn rrr_classify(a: &ClassifyArgs) -> Result<()> {
    let c = &a.common;
    let resumed = match &a.resume {
        Some(dir) => {
            let (bytes, what) = read_checkpoint(dir)?;
            Some(Saved::from_bytes(&bytes, &what)?)
        }
        None => None,
    };
    let train_path = a
        .train
        .as_ref()
        .ok_or_else(|| Error::Input("--train is required".into()))?;
    let mut train = load_labeled(train_path, a.format, a.train_labels.as_ref())?;
    let mut test = match &a.test {
        Some(p) => Some(load_labeled(p, a.format, a.test_labels.as_ref())?),
        None => None,
    };
    let (net, settings) = if let Some(r) = &resumed {
        (r.net.clone(), r.settings.clone())
    } else {
        let net = match (&a.layers, &a.net) {
            (Some(l), None) => {
                let widths: Vec<usize> = l
                    .split(',')
                    .map(|t| t.trim().parse::<usize>())
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|_| {
                        Error::Input(format!(
                            "--layers '{l}' is not a comma-separated list of widths"
                        ))
                    })?;
                Net::layered(&widths)?
            }
            (None, Some(p)) => Net::load(p)?,
            _ => return Err(Error::Input("give the network with --layers or --net".into()).into()),
        };
        let s = Settings {
            batch: a.batch,
            epochs: a.epochs,
            iters_per_batch: a.iters_per_batch,
            tol: a.tol,
            beta: a.beta,
            omega: a.omega,
            upsilon: a.upsilon,
            margin: a.margin,
            exempt: parse_budget("exempt", a.exempt.as_deref(), a.batch)?,
            relabel: parse_budget("relabel", a.relabel.as_deref(), a.batch)?,
            false_positives: 0,
            seed: c.seed,
        };
        (net, s)
    };
    settings.check()?;
    if let Some(f) = a.split {
        (train, test) = split_held_out(&train, test.is_some(), f, settings.seed)?;
    }
    let shape = a.image_shape.as_deref().map(parse_shape).transpose()?;
    if let Some((h, w)) = shape {
        if h * w != train.dim {
            return Err(Error::Input(format!(
                "--image-shape {h}x{w} does not match {} features",
                train.dim
            ))
            .into());
        }
    }
    let clf = Classifier::new(net.clone(), &settings)?;
    clf.check_data(&train, "the training data")?;
    if let Some(t) = &test {
        clf.check_data(t, "the test data")?;
    }
    let backend = c.open()?;
    let out_dir = c.out.clone().or_else(|| a.resume.clone());
    let mut out = OutDir::new(out_dir.as_deref())?;
    let (model, first_epoch, mut history) = match resumed {
        Some(r) => {
            for e in &r.history {
                out.metric(&serde_json::to_value(e).expect("serializable"))?;
            }
            (r.model, r.epoch + 1, r.history)
        }
        None => (clf.random_model(settings.seed), 1, vec![]),
    };
    let s = &settings;
    if !c.quiet {
        println!(
            "RRR classifier: {} data, {} hidden, {} class nodes, {} edges; {} train / {} test items; |K| = {}, {} iterations per batch, β={}, Ω={}, Υ={}, Δ={}{}{} on {} ({})",
            net.data,
            net.hidden,
            net.classes,
            net.edges.len(),
            train.len(),
            test.as_ref().map_or(0, |t| t.len()),
            s.batch.min(train.len()),
            s.iters_per_batch,
            s.beta,
            s.omega,
            s.upsilon,
            s.margin,
            if s.exempt > 0 {
                format!(", EE = {} exempted", s.exempt)
            } else {
                String::new()
            },
            if s.relabel > 0 {
                format!(", up to {} relabeled", s.relabel)
            } else {
                String::new()
            },
            backend.describe(),
            c.precision
        );
        if first_epoch > 1 {
            println!("resuming after epoch {}", first_epoch - 1);
        }
    }
    out.file("net.txt", net.to_text().as_bytes())?;
    let mut meter = Meter::for_backend(&backend);
    let mut bar = Progress::new(s.epochs as u64, c.quiet, "epochs");
    let t0 = std::time::Instant::now();
    let mut last_sel = classify::SelectedItems::default();
    let mut stop = false;
    let result = classify::train(
        &backend,
        &clf,
        &train,
        test.as_ref(),
        s,
        model,
        first_epoch,
        |e, m, sel| {
            meter.add_gwms(e.gwms);
            bar.set(e.epoch as u64);
            if !c.quiet {
                bar.suspend(|| {
                println!(
                    "epoch {:>3}/{}: batch_err {:.4}, train_err {:.4}, test_err {}, RRR_err {:.3e} → {:.3e}{}{}, {:.3} GWMs, {:.2} s",
                    e.epoch, s.epochs, e.batch_err, e.train_err,
                    e.test_err.map_or("-".into(), |t| format!("{t:.4}")),
                    e.rrr_err_start, e.rrr_err_end,
                    if s.exempt > 0 { format!(", {} exempted", e.exempted) } else { String::new() },
                    if s.relabel > 0 { format!(", {} relabeled", e.relabeled) } else { String::new() },
                    e.gwms, e.seconds
                )
            });
            }
            out.metric(&serde_json::to_value(e).expect("serializable"))?;
            history.push(e.clone());
            let saved = Saved {
                net: net.clone(),
                settings: s.clone(),
                model: m.clone(),
                epoch: e.epoch,
                history: history.clone(),
            };
            out.file("checkpoint.safetensors", &saved.to_bytes(&clf)?)?;
            last_sel = sel.clone();
            if a.time_limit
                .is_some_and(|t| t0.elapsed().as_secs_f64() >= t)
                && e.epoch < s.epochs
            {
                stop = true;
                return Err(gradfree::Error::Input("time limit".into()));
            }
            Ok(())
        },
    );
    let model = match result {
        Ok(m) => m,
        Err(_) if stop => {
            Saved::from_bytes(
                &std::fs::read(out.path("checkpoint.safetensors").expect("out dir"))?,
                "checkpoint",
            )?
            .model
        }
        Err(e) => return Err(e.into()),
    };
    bar.finish();
    let m_ = meter.measure();
    let last = history.last().cloned();
    if let Some(e) = &last {
        println!(
            "after {} epochs: train_err {:.4}, test_err {}, batch_err {:.4}{}",
            e.epoch,
            e.train_err,
            e.test_err.map_or("-".into(), |t| format!("{t:.4}")),
            e.batch_err,
            if stop { " (time limit)" } else { "" }
        );
    }
    println!("{}", m_.line());
    let epochs_done = last.as_ref().map_or(0, |e| e.epoch);
    let saved = Saved {
        net: net.clone(),
        settings: s.clone(),
        model,
        epoch: epochs_done,
        history: history.clone(),
    };
    out.file("model.safetensors", &saved.to_bytes(&clf)?)?;
    if s.exempt > 0 {
        let mut ex = last_sel.exempted.clone();
        ex.sort_unstable();
        let text: String = ex.iter().map(|k| format!("{k}\n")).collect();
        out.file("exempted.txt", text.as_bytes())?;
        if let Some((h, w)) = shape {
            if !ex.is_empty() {
                let imgs: Vec<Vec<f64>> = ex.iter().map(|&k| train.item(k).to_vec()).collect();
                out.file("exempted.png", &png_grid(&imgs, h, w, 10, false)?)?;
            }
        }
    }
    if s.relabel > 0 {
        let text: String = last_sel
            .relabeled
            .iter()
            .map(|(k, l)| format!("{k},{},{l}\n", train.y[*k]))
            .collect();
        out.file(
            "relabeled.csv",
            format!("item,label,new_label\n{text}").as_bytes(),
        )?;
    }
    let common = CommonSummary::new(backend.describe(), c.precision, s.seed, &m_);
    out.summary(
        &common,
        json!({
            "method": "rrr classify", "data_nodes": net.data, "hidden_nodes": net.hidden,
            "class_nodes": net.classes, "edges": net.edges.len(), "train_items": train.len(),
            "test_items": test.as_ref().map_or(0, |t| t.len()), "settings": s,
            "epochs": epochs_done, "train_err": last.as_ref().map(|e| e.train_err),
            "test_err": last.as_ref().and_then(|e| e.test_err), "batch_err": last.as_ref().map(|e| e.batch_err),
            "best_test_err": history.iter().filter_map(|e| e.test_err).reduce(f64::min),
            "exempted_final_epoch": last_sel.exempted.len(), "relabeled_final_epoch": last_sel.relabeled.len(),
            "time_limited": stop,
        }),
    )?;
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct PredictArgs {
    /// A model.safetensors (or checkpoint.safetensors) from `rrr classify`.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Data to classify (labels are used to report accuracy).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Labels file of IDX images.
    #[arg(long)]
    pub(crate) labels: Option<PathBuf>,
    /// Data format.
    #[arg(long, value_enum, default_value_t = LabeledFormat::Auto)]
    pub(crate) format: LabeledFormat,
    /// Output directory: predictions.csv and summary.json.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Only the summary line.
    #[arg(long)]
    pub(crate) quiet: bool,
}

pub(crate) fn predict(a: &PredictArgs) -> Result<()> {
    let bytes = std::fs::read(&a.model)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", a.model.display())))?;
    let saved = Saved::from_bytes(&bytes, &a.model.display().to_string())?;
    let clf = Classifier::new(saved.net.clone(), &saved.settings)?;
    let data = load_labeled(&a.data, a.format, a.labels.as_ref())?;
    clf.check_data(&data, &a.data.display().to_string())?;
    let pred = clf.predict(&saved.model, &data);
    let wrong = pred.iter().zip(&data.y).filter(|(p, y)| p != y).count();
    let err = wrong as f64 / data.len() as f64;
    println!(
        "{} items: accuracy {:.4} (error {:.4}, {} wrong)",
        data.len(),
        1.0 - err,
        err,
        wrong
    );
    let out = OutDir::new(a.out.as_deref())?;
    let text: String = pred
        .iter()
        .zip(&data.y)
        .enumerate()
        .map(|(k, (p, y))| format!("{k},{p},{y}\n"))
        .collect();
    out.file(
        "predictions.csv",
        format!("item,predicted,label\n{text}").as_bytes(),
    )?;
    if !a.quiet && a.out.is_none() && data.len() <= 20 {
        for (k, p) in pred.iter().enumerate() {
            println!("{k}: {p}");
        }
    }
    if let Some(p) = out.path("summary.json") {
        write_atomic(&p, serde_json::to_string_pretty(&json!({"method": "predict", "items": data.len(), "error": err, "accuracy": 1.0 - err})).expect("json").as_bytes())?;
    }
    Ok(())
}
