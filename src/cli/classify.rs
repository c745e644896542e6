//! `gradfree rrr classify` and `gradfree predict`.

use super::common::{
    CommonArgs, Contradictions, check_time_limit, effective_batch, given, load_labeled,
    parse_budget, parse_shape, read_checkpoint, resumed_common, split_held_out,
};
use anyhow::Result;
use clap::Args;
use gradfree::Error;
use gradfree::Precision as Prec;
use gradfree::data::labeled::LabeledFormat;
use gradfree::methods::rrr::classify::{self, Saved, Settings};
use gradfree::methods::rrr::net::Net;
use gradfree::train::memory;
use gradfree::train::{OutMode, Session, Voice};
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
    let resume = match &a.resume {
        Some(dir) => {
            let (bytes, what) = read_checkpoint(dir)?;
            Some(Saved::from_bytes(&bytes, &what)?)
        }
        None => None,
    };
    let c = &resumed_common(
        &a.common,
        resume.as_ref().and_then(|r| r.provenance.precision),
    );
    let train_path = a
        .train
        .as_ref()
        .ok_or_else(|| Error::Input("--train is required".into()))?;
    let mut train = load_labeled(train_path, a.format, a.train_labels.as_ref(), c.precision)?;
    let mut test = match &a.test {
        Some(p) => Some(load_labeled(
            p,
            a.format,
            a.test_labels.as_ref(),
            c.precision,
        )?),
        None => None,
    };
    check_time_limit(a.time_limit)?;
    if let Some(f) = a.split {
        let seed = resume.as_ref().map_or(c.seed, |r| r.settings.seed);
        (train, test) = split_held_out(&train, test.is_some(), f, seed)?;
    }
    let (net, settings) = match &resume {
        Some(r) => (r.net.clone(), resumed_settings(a, r)?),
        None => (
            classify_net(a, train.len())?,
            classify_settings(a, train.len())?,
        ),
    };
    let size = (net.nodes() as u128, net.edges.len() as u128);
    c.check_rrr(Some(size), settings.batch.min(train.len()), "rrr classify")?;
    settings.check()?;
    let image_shape = a.image_shape.as_deref().map(parse_shape).transpose()?;
    if let Some((h, w)) = image_shape {
        if h * w != train.dim {
            return Err(Error::Input(format!(
                "--image-shape {h}x{w} does not match {} features",
                train.dim
            ))
            .into());
        }
    }
    let backend = c.open()?;
    let out = c.out.clone().or_else(|| a.resume.clone());
    let mut session = c.session_in(&backend, out.as_deref())?;
    let seed = settings.seed;
    let run = classify::Run {
        net,
        settings,
        train,
        test,
        image_shape,
        time_limit: a.time_limit,
        resume,
    };
    if let Some(own) = classify::run(&backend, &mut session, &run)? {
        session.finish(seed, own)?;
    }
    Ok(())
}

/// The settings of a resumed run: the checkpoint's, with `--epochs` able
/// to move the last epoch; any other training flag given must agree.
fn resumed_settings(a: &ClassifyArgs, r: &Saved) -> Result<Settings> {
    let s = &r.settings;
    let mut x = Contradictions::default();
    if (given("layers") || given("net")) && classify_net(a, usize::MAX)? != r.net {
        let flag = if given("net") { "net" } else { "layers" };
        x.differs(flag, "not the checkpoint's net");
    }
    x.check("batch", a.batch, s.batch);
    x.check("iters_per_batch", a.iters_per_batch, s.iters_per_batch);
    x.check("tol", a.tol, s.tol);
    x.check("beta", a.beta, s.beta);
    x.check("omega", a.omega, s.omega);
    x.check("upsilon", a.upsilon, s.upsilon);
    x.check("margin", a.margin, s.margin);
    x.check("seed", a.common.seed, s.seed);
    x.check(
        "exempt",
        parse_budget("exempt", a.exempt.as_deref(), s.batch)?,
        s.exempt,
    );
    x.check(
        "relabel",
        parse_budget("relabel", a.relabel.as_deref(), s.batch)?,
        s.relabel,
    );
    x.finish()?;
    let mut out = s.clone();
    if given("epochs") && a.epochs != s.epochs {
        if a.epochs < r.epoch {
            return Err(Error::Input(format!(
                "--epochs {}: the checkpoint has trained {} epochs already",
                a.epochs, r.epoch
            ))
            .into());
        }
        println!(
            "--epochs {}: training goes on to epoch {} (the checkpoint planned {})",
            a.epochs, a.epochs, s.epochs
        );
        out.epochs = a.epochs;
    }
    Ok(out)
}

/// The net of `--layers` or `--net`; a layered net too large for the
/// memory budget with batches from `items` training items is refused
/// before it is built.
fn classify_net(a: &ClassifyArgs, items: usize) -> Result<Net> {
    Ok(match (&a.layers, &a.net) {
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
            let size = memory::layered_size(&widths);
            a.common
                .check_rrr(size, a.batch.min(items), "rrr classify")?;
            Net::layered(&widths)?
        }
        (None, Some(p)) => Net::load(p)?,
        _ => return Err(Error::Input("give the network with --layers or --net".into()).into()),
    })
}

/// The training settings of the flags, for `items` training items.
fn classify_settings(a: &ClassifyArgs, items: usize) -> Result<Settings> {
    let batch = effective_batch(a.batch, items);
    Ok(Settings {
        batch,
        epochs: a.epochs,
        iters_per_batch: a.iters_per_batch,
        tol: a.tol,
        beta: a.beta,
        omega: a.omega,
        upsilon: a.upsilon,
        margin: a.margin,
        exempt: parse_budget("exempt", a.exempt.as_deref(), batch)?,
        relabel: parse_budget("relabel", a.relabel.as_deref(), batch)?,
        false_positives: 0,
        seed: a.common.seed,
    })
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
    /// Write into --out even when it holds another run's outputs.
    #[arg(long)]
    pub(crate) force: bool,
}

pub(crate) fn predict(a: &PredictArgs) -> Result<()> {
    let bytes = gradfree::io::read_file(&a.model)?;
    let saved = Saved::from_bytes(&bytes, &a.model.display().to_string())?;
    let data = load_labeled(&a.data, a.format, a.labels.as_ref(), Prec::F64)?;
    let voice = if a.quiet {
        Voice::Quiet
    } else {
        Voice::Verbose
    };
    let mode = if a.force {
        OutMode::Overwrite
    } else {
        OutMode::New
    };
    let session = Session::host(
        "cpu (host forward passes)",
        Prec::F64,
        a.out.as_deref(),
        mode,
        voice,
    )?;
    classify::run_predict(&session, &saved, &data, &a.data.display().to_string())?;
    Ok(())
}
