//! `gradfree starnet train|encode|decode|sample|score`.

use super::common::{CommonArgs, check_positive, image_shape};
use anyhow::Result;
use clap::{Args, Subcommand};
use gradfree::methods::starnet;
use gradfree::train::memory;
use gradfree::{Error, data};
use serde_json::json;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub(crate) enum StarnetTask {
    /// Train a decoder on data (IDX images, the reference classifier format,
    /// or CSV); writes model.safetensors, per-layer PNGs and samples.png.
    Train(StarnetTrainArgs),
    /// Codes of new data (layer-wise pseudo-inverse from the top): codes.csv.
    Encode(StarnetDataArgs),
    /// Decode codes (a CSV, one code per row): decoded.csv (and decoded.png).
    Decode(StarnetDecodeArgs),
    /// Decode codes drawn from a Gaussian fitted to the training codes.
    Sample(StarnetSampleArgs),
    /// Per-item residual norm per layer (outlier score, lemma 4): scores.csv.
    Score(StarnetDataArgs),
}

#[derive(Args, Debug)]
pub(crate) struct StarnetTrainArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Training data: IDX images (.gz ok), reference classifier format, or CSV.
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Widths from the latent code up, without the data width (which is
    /// appended): 128,256 = 128 → 256 → data. Must not shrink.
    #[arg(long, default_value = "128,256")]
    pub(crate) layers: String,
    /// Conv-unpool layers instead of --layers, from the latent up, as
    /// C:KxK:U per layer (input channels, odd kernel side, unpooling), e.g.
    /// 6:7x7:2,2:7x7:2 for 28×28 images: 6×7×7 latents → 2×14×14 → 1×28×28.
    /// Needs square one-channel images.
    #[arg(long, conflicts_with = "layers")]
    pub(crate) conv: Option<String>,
    /// SL/SW epochs per layer.
    #[arg(long, default_value_t = 5)]
    pub(crate) epochs: usize,
    /// Leaky-ReLU negative slope α.
    #[arg(long, default_value_t = 0.5)]
    pub(crate) alpha: f64,
    /// Items per weight solve, drawn at random every epoch (default all).
    #[arg(long)]
    pub(crate) weight_sample: Option<usize>,
    /// Use only the first N items.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// Items are images of this shape (HxW), for the PNGs.
    #[arg(long)]
    pub(crate) image_shape: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct StarnetDataArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// A model written by `starnet train`.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Data rows (same formats as for training).
    #[arg(long)]
    pub(crate) data: PathBuf,
    /// Use only the first N items.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
}

#[derive(Args, Debug)]
pub(crate) struct StarnetDecodeArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// A model written by `starnet train`.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Codes, one per row (CSV).
    #[arg(long)]
    pub(crate) codes: PathBuf,
    /// Decoded rows are images of this shape (HxW), for decoded.png.
    #[arg(long)]
    pub(crate) image_shape: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct StarnetSampleArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// A model written by `starnet train`.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Samples to draw.
    #[arg(long, default_value_t = 64)]
    pub(crate) count: usize,
    /// Samples are images of this shape (HxW), for samples.png.
    #[arg(long)]
    pub(crate) image_shape: Option<String>,
}

pub(crate) fn starnet_train(a: &StarnetTrainArgs) -> Result<()> {
    let c = &a.common;
    let mut rows =
        data::images::load_rows(&a.data, image_shape(a.image_shape.as_deref())?, &c.limits())?;
    if let Some(n) = a.limit {
        rows.truncate(n);
    }
    let (widths, conv) = match &a.conv {
        None => {
            let mut widths: Vec<usize> = a
                .layers
                .split(',')
                .map(|t| {
                    t.trim()
                        .parse::<usize>()
                        .map_err(|_| Error::Input(format!("--layers: '{t}' is not a width")))
                })
                .collect::<std::result::Result<_, _>>()?;
            widths.push(rows.dim);
            (widths, vec![])
        }
        Some(spec) => {
            let side = match rows.shape {
                Some((h, w)) if h == w => h,
                _ => {
                    return Err(Error::Input(
                        "--conv needs square images (IDX, or --image-shape SxS)".into(),
                    )
                    .into());
                }
            };
            let shapes = starnet::conv::parse_spec(spec, 1, side)?;
            let mut widths: Vec<usize> = shapes.iter().map(|c| c.d_in()).collect();
            widths.push(shapes.last().map_or(0, |c| c.d_out()));
            (widths, shapes)
        }
    };
    check_positive("alpha", a.alpha)?;
    // Latents, targets and products of every item at the widest layer, and
    // each layer's weights and normal equations.
    let need = (|| {
        let widest = *widths.iter().max()?;
        let weights = widths.windows(2).try_fold(0u128, |t, p| {
            t.checked_add(memory::mul(&[p[0] + 1, p[1] + p[0] + 1, 4])?)
        })?;
        memory::table(rows.len(), widest, 8)?.checked_add(weights.checked_mul(8)?)
    })();
    c.budget().check(need, "starnet train")?;
    let settings = starnet::Settings {
        epochs: a.epochs,
        alpha: a.alpha,
        weight_sample: a.weight_sample,
        seed: c.seed,
        conv,
    };
    let backend = c.open()?;
    let mut session = c.session(&backend)?;
    let own = starnet::run(
        &backend,
        &mut session,
        &rows.x,
        &widths,
        &settings,
        rows.shape,
    )?;
    session.finish(c.seed, own)?;
    Ok(())
}

pub(crate) fn starnet_encode(a: &StarnetDataArgs, score: bool) -> Result<()> {
    let c = &a.common;
    let net = load_model(&a.model)?;
    let mut rows = data::images::load_rows(&a.data, None, &c.limits())?;
    if let Some(n) = a.limit {
        rows.truncate(n);
    }
    if rows.dim != net.data_width() {
        return Err(Error::Input(format!(
            "{} has rows of {} values; the model decodes to {}",
            a.data.display(),
            rows.dim,
            net.data_width()
        ))
        .into());
    }
    let backend = c.open()?;
    let mut session = c.session(&backend)?;
    let own = starnet::run_encode(&backend, &mut session, &net, &rows.x, score)?;
    session.finish(c.seed, own)?;
    Ok(())
}

pub(crate) fn starnet_decode(a: &StarnetDecodeArgs) -> Result<()> {
    let c = &a.common;
    let net = load_model(&a.model)?;
    let codes = data::matrix::load_table(&a.codes, data::matrix::TableFormat::Csv, &c.limits())?;
    if codes.ncols() != net.widths[0] {
        return Err(Error::Input(format!(
            "{} has codes of {} values; the model's codes have {}",
            a.codes.display(),
            codes.ncols(),
            net.widths[0]
        ))
        .into());
    }
    let shape = image_shape(a.image_shape.as_deref())?;
    let backend = c.open()?;
    let mut session = c.session(&backend)?;
    let rows = data::matrix::row_major(&codes);
    let n = starnet::run_decode(&backend, &mut session, &net, &rows, "decoded", shape)?;
    let m = session.measure();
    session.tell(&format!("decoded {n} codes; {}", m.line()));
    session.summary(&m, c.seed, json!({"method": "starnet decode", "items": n}))?;
    Ok(())
}

pub(crate) fn starnet_sample(a: &StarnetSampleArgs) -> Result<()> {
    let c = &a.common;
    let net = load_model(&a.model)?;
    let shape = image_shape(a.image_shape.as_deref())?;
    let widest = net.widths.iter().copied().max().unwrap_or(0);
    c.check_rows(a.count, widest.max(net.data_width()), "--count")?;
    let backend = c.open()?;
    let mut session = c.session(&backend)?;
    let codes = net.sample_codes(a.count, c.seed);
    let n = starnet::run_decode(&backend, &mut session, &net, &codes, "samples", shape)?;
    let m = session.measure();
    session.tell(&format!("{n} samples; {}", m.line()));
    session.summary(&m, c.seed, json!({"method": "starnet sample", "items": n}))?;
    Ok(())
}

pub(crate) fn load_model(path: &std::path::Path) -> Result<starnet::StarNet> {
    let bytes = gradfree::io::read_file(path)?;
    Ok(starnet::StarNet::from_bytes(
        &bytes,
        &path.display().to_string(),
    )?)
}

/// Runs a `starnet` task.
pub(crate) fn exec(task: StarnetTask) -> Result<()> {
    use anyhow::Context;
    match task {
        StarnetTask::Train(a) => starnet_train(&a).context("starnet train"),
        StarnetTask::Encode(a) => starnet_encode(&a, false).context("starnet encode"),
        StarnetTask::Score(a) => starnet_encode(&a, true).context("starnet score"),
        StarnetTask::Decode(a) => starnet_decode(&a).context("starnet decode"),
        StarnetTask::Sample(a) => starnet_sample(&a).context("starnet sample"),
    }
}
