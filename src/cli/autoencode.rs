//! `gradfree rrr autoencode` (with the generator) and `rrr generate|encode|decode`.

use super::common::{
    CommonArgs, Contradictions, check_positive, check_time_limit, effective_batch, given,
    image_shape, read_checkpoint, resumed_common, widths_list,
};
use anyhow::Result;
use clap::Args;
use gradfree::methods::rrr;
use gradfree::methods::rrr::autoencode as ae;
use gradfree::train::memory;
use gradfree::train::{Session, Voice};
use gradfree::{Error, data};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub(crate) struct AutoencodeArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Binary encoding: the 2^N one-hot items and all 2^N codes of N bits
    /// (net 2^N → N → 2^N unless --encoder/--decoder add layers).
    #[arg(long, conflicts_with_all = ["data", "net"])]
    pub(crate) binary: Option<usize>,
    /// Independent runs of --binary (seeds seed, seed+1, …); prints the success rate.
    #[arg(long, default_value_t = 1)]
    pub(crate) runs: usize,
    /// Data: IDX images (.gz, .zip ok), the reference classifier format, or CSV; values in [0, 1].
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Use only the first N items.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// Image shape HxW for PNGs when the data are not IDX.
    #[arg(long)]
    pub(crate) image_shape: Option<String>,
    /// Encoder hidden widths, e.g. 200 or 400,200 (empty: none).
    #[arg(long, default_value = "")]
    pub(crate) encoder: String,
    /// Code nodes.
    #[arg(long, default_value_t = 10)]
    pub(crate) code: usize,
    /// Decoder hidden widths (empty: none).
    #[arg(long, default_value = "")]
    pub(crate) decoder: String,
    /// Net file in the reference autoencoder format (`D encode code decode`, then `node indeg inputs…` for every node).
    #[arg(long, conflicts_with_all = ["encoder", "decoder"])]
    pub(crate) net: Option<PathBuf>,
    /// Activation at every node (default: step for --binary, zigmoid otherwise).
    #[arg(long, value_enum)]
    pub(crate) activation: Option<rrr::autoencode::Activation>,
    /// Activation half-width m.
    #[arg(long, default_value_t = 0.4)]
    pub(crate) margin: f64,
    /// Weight norm Ω per node.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) omega: f64,
    /// RRR β.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) beta: f64,
    /// Data items per batch.
    #[arg(long, default_value_t = 200)]
    pub(crate) batch: usize,
    /// Code items per batch (ignored by --binary, which uses all 2^N).
    #[arg(long, default_value_t = 20)]
    pub(crate) codes: usize,
    /// RRR iterations per batch.
    #[arg(long, default_value_t = 50)]
    pub(crate) iters_per_batch: usize,
    /// Epochs (--binary: at most this many; a run stops once solved).
    #[arg(long, default_value_t = 40)]
    pub(crate) epochs: usize,
    /// Stop a batch once RRR_err < tol (0: never).
    #[arg(long, default_value_t = 0.0)]
    pub(crate) tol: f64,
    /// Hold out this fraction of the data (the last rows) for held-out errors.
    #[arg(long)]
    pub(crate) split: Option<f64>,
    /// Then train the generative model's genuine/fake classifier with these
    /// hidden widths (code → hidden… → 2), e.g. 50,50,50.
    #[arg(long)]
    pub(crate) generator: Option<String>,
    /// Generator: false-positive allowance (fraction of the fakes per batch
    /// that may take the genuine label).
    #[arg(long, default_value_t = 0.25)]
    pub(crate) fpa: f64,
    /// Generator: weight norm Ω.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) gen_omega: f64,
    /// Generator: class margin Δ.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) gen_margin: f64,
    /// Generator: items per batch (genuine and fake mixed).
    #[arg(long, default_value_t = 200)]
    pub(crate) gen_batch: usize,
    /// Generator: epochs.
    #[arg(long, default_value_t = 20)]
    pub(crate) gen_epochs: usize,
    /// Generator: RRR iterations per batch.
    #[arg(long, default_value_t = 100)]
    pub(crate) gen_iters: usize,
    /// Generator: fake codes (samples of Z) per genuine code, in the
    /// training and the held-out sets (the paper: 2).
    #[arg(long, default_value_t = 1)]
    pub(crate) gen_fakes: usize,
    /// Stop after the epoch during which this many seconds have passed
    /// (the run goes on with `--resume`).
    #[arg(long)]
    pub(crate) time_limit: Option<f64>,
    /// Continue a stopped run from DIR/checkpoint.safetensors (same data
    /// arguments; the net and training settings come from the checkpoint).
    #[arg(long, conflicts_with_all = ["binary", "net"])]
    pub(crate) resume: Option<PathBuf>,
}

pub(crate) fn rrr_autoencode(a: &AutoencodeArgs) -> Result<()> {
    let resume = match &a.resume {
        Some(dir) => {
            let (bytes, what) = read_checkpoint(dir)?;
            Some(ae::AeModel::from_bytes(&bytes, &what)?)
        }
        None => None,
    };
    let c = &resumed_common(
        &a.common,
        resume.as_ref().and_then(|r| r.provenance.precision),
    );
    let (x, image_shape, net) = ae_data(a, resume.as_ref())?;
    let settings = match &resume {
        Some(r) => resumed_ae_settings(a, r)?,
        None => ae_settings(a),
    };
    settings.check()?;
    if a.runs == 0 {
        return Err(Error::Input("--runs must be at least 1".into()).into());
    }
    check_time_limit(a.time_limit)?;
    let generator = generator_settings(a)?;
    check_ae_memory(
        c,
        &net,
        &settings,
        x.len(),
        generator.as_ref(),
        a.binary.is_some(),
    )?;
    let (data, held) = held_out(x, net.data, a.split, a.binary.is_some())?;
    let mut settings = settings;
    if a.binary.is_none() {
        settings.batch = effective_batch(settings.batch, data.len() / net.data);
    }
    let backend = c.open()?;
    let out = c.out.clone().or_else(|| a.resume.clone());
    let mut session = c.session_in(&backend, out.as_deref())?;
    let run = ae::AeRun {
        net,
        settings,
        data,
        held,
        image_shape,
        binary: a.binary,
        runs: a.runs,
        generator,
        time_limit: a.time_limit,
        seed: resume.as_ref().map_or(c.seed, |r| r.settings.seed),
        resume,
    };
    let outcome = ae::run(&backend, &mut session, &run)?;
    if let Some(e) = outcome.stopped_at {
        session.tell(&format!(
            "stopped after epoch {e} of {} (--time-limit); go on with --resume {}",
            run.settings.epochs,
            out.as_deref()
                .map_or("DIR".into(), |d| d.display().to_string())
        ));
    }
    if let Some(own) = outcome.summary {
        session.finish(run.seed, own)?;
    }
    Ok(())
}

/// The settings of a resumed run: the checkpoint's, with `--epochs` able
/// to move the last epoch; any other training flag given must agree.
fn resumed_ae_settings(a: &AutoencodeArgs, r: &ae::AeModel) -> Result<ae::AeSettings> {
    let s = &r.settings;
    let mut x = Contradictions::default();
    for id in ["encoder", "decoder", "code", "net"] {
        if given(id) {
            x.differs(id, "the net comes from the checkpoint");
        }
    }
    x.check("batch", a.batch, s.batch);
    x.check("codes", a.codes, s.codes);
    x.check("iters_per_batch", a.iters_per_batch, s.iters_per_batch);
    x.check("tol", a.tol, s.tol);
    x.check("beta", a.beta, s.beta);
    x.check("omega", a.omega, s.omega);
    x.check("margin", a.margin, s.margin);
    x.check("seed", a.common.seed, s.seed);
    if let Some(act) = a.activation {
        x.check("activation", act, s.activation);
    }
    x.finish()?;
    let mut out = s.clone();
    if given("epochs") && a.epochs != s.epochs {
        if a.epochs < r.progress.epoch {
            return Err(Error::Input(format!(
                "--epochs {}: the checkpoint has trained {} epochs already",
                a.epochs, r.progress.epoch
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

/// Rows to train on, their image shape, and the net.
type AeData = (Vec<f64>, Option<(usize, usize)>, ae::AeNet);

/// The rows to train on (the one-hot items of `--binary`, or `--data`),
/// their image shape, and the net.
/// Refuses a run whose batches or generator codes would not fit in memory.
/// Fresh nets were checked before they were built; this covers the net a
/// checkpoint or net file brings with its own settings (code items).
fn check_ae_memory(
    c: &CommonArgs,
    net: &ae::AeNet,
    settings: &ae::AeSettings,
    values: usize,
    generator: Option<&ae::GeneratorSettings>,
    binary: bool,
) -> Result<()> {
    let rows = values / net.data.max(1);
    if !binary {
        let size = (net.nodes() as u128, net.edges.len() as u128);
        let items = settings.batch.min(rows).saturating_add(settings.codes);
        c.check_rrr(Some(size), items, "rrr autoencode")?;
    }
    if let Some(g) = generator {
        // Genuine codes and `fakes` drawn codes per training row.
        let codes = rows.saturating_mul(g.fakes.saturating_add(1));
        c.check_rows(codes, net.nodes(), "--gen-fakes")?;
    }
    Ok(())
}

fn ae_data(a: &AutoencodeArgs, resume: Option<&ae::AeModel>) -> Result<AeData> {
    let (encoder, decoder) = (
        widths_list(&a.encoder, "--encoder")?,
        widths_list(&a.decoder, "--decoder")?,
    );
    match (a.binary, &a.data) {
        (Some(n), _) => {
            if !(1..=10).contains(&n) {
                return Err(Error::Input(format!("--binary takes 1..=10 bits, got {n}")).into());
            }
            let d = 1usize << n;
            a.common
                .check_rrr(ae_size(d, &encoder, n, &decoder), 2 * d, "rrr autoencode")?;
            let net = ae::AeNet::layered(d, &encoder, n, &decoder)?;
            Ok((ae::one_hot(n), None, net))
        }
        (None, Some(path)) => {
            let mut rows = data::images::load_rows(
                path,
                image_shape(a.image_shape.as_deref())?,
                &a.common.limits(),
            )?;
            if let Some(n) = a.limit {
                rows.truncate(n);
            }
            if let Some(i) = rows.x.iter().position(|v| !(0.0..=1.0).contains(v)) {
                return Err(Error::Input(format!(
                    "{}: value {} of row {} is outside [0, 1] (the activations' range)",
                    path.display(),
                    rows.x[i],
                    i / rows.dim + 1
                ))
                .into());
            }
            let net = match (resume, &a.net) {
                (Some(r), _) => r.net.clone(),
                (None, Some(f)) => ae::AeNet::load(f)?,
                (None, None) => {
                    let size = ae_size(rows.dim, &encoder, a.code, &decoder);
                    let items = a.batch.min(rows.len()).saturating_add(a.codes);
                    a.common.check_rrr(size, items, "rrr autoencode")?;
                    ae::AeNet::layered(rows.dim, &encoder, a.code, &decoder)?
                }
            };
            if net.data != rows.dim {
                return Err(Error::Input(format!(
                    "{} has rows of {} values but the net has {} data nodes",
                    path.display(),
                    rows.dim,
                    net.data
                ))
                .into());
            }
            Ok((rows.x, rows.shape, net))
        }
        (None, None) => Err(Error::Input("give --data FILE or --binary N".into()).into()),
    }
}

/// Nodes and edges of a layered autoencoder (None when they overflow).
fn ae_size(data: usize, encoder: &[usize], code: usize, decoder: &[usize]) -> Option<(u128, u128)> {
    let mut widths = vec![data];
    widths.extend_from_slice(encoder);
    widths.push(code);
    widths.extend_from_slice(decoder);
    let (nodes, edges) = memory::layered_size(&widths)?;
    let back = memory::mul(&[*widths.last()?, data])?;
    Some((nodes, edges.checked_add(back)?))
}

/// The training settings of the flags.
fn ae_settings(a: &AutoencodeArgs) -> ae::AeSettings {
    ae::AeSettings {
        batch: a.batch,
        codes: a.codes,
        epochs: a.epochs,
        iters_per_batch: a.iters_per_batch,
        tol: a.tol,
        beta: a.beta,
        omega: a.omega,
        margin: a.margin,
        activation: a.activation.unwrap_or(if a.binary.is_some() {
            ae::Activation::Step
        } else {
            ae::Activation::Zigmoid
        }),
        seed: a.common.seed,
    }
}

/// `--split F`: the last rows held out, for the generator's held-out rates.
fn held_out(
    x: Vec<f64>,
    dim: usize,
    split: Option<f64>,
    binary: bool,
) -> Result<(Vec<f64>, Vec<f64>)> {
    match split {
        None => Ok((x, vec![])),
        Some(f) if f > 0.0 && f < 1.0 && !binary => {
            let n = x.len() / dim;
            let keep = n - ((n as f64 * f).round() as usize).clamp(1, n - 1);
            let held = x[keep * dim..].to_vec();
            Ok((x[..keep * dim].to_vec(), held))
        }
        Some(f) => Err(Error::Input(format!(
            "--split must be in (0, 1) and needs --data, got {f}"
        ))
        .into()),
    }
}

/// The generator's settings, when `--generator` is given.
fn generator_settings(a: &AutoencodeArgs) -> Result<Option<ae::GeneratorSettings>> {
    let hidden = a
        .generator
        .as_deref()
        .map(|g| widths_list(g, "--generator"))
        .transpose()?;
    if hidden.is_some() && a.binary.is_some() {
        return Err(Error::Input("--generator needs --data".into()).into());
    }
    if !(0.0..1.0).contains(&a.fpa) {
        return Err(Error::Input(format!("--fpa must be in [0, 1), got {}", a.fpa)).into());
    }
    if hidden.is_some() {
        for (flag, v) in [
            ("gen-fakes", a.gen_fakes),
            ("gen-batch", a.gen_batch),
            ("gen-epochs", a.gen_epochs),
            ("gen-iters", a.gen_iters),
        ] {
            if v == 0 {
                return Err(Error::Input(format!("--{flag} must be at least 1")).into());
            }
        }
        check_positive("gen-omega", a.gen_omega)?;
        if !(a.gen_margin.is_finite() && a.gen_margin >= 0.0) {
            return Err(
                Error::Input(format!("--gen-margin must be ≥ 0, got {}", a.gen_margin)).into(),
            );
        }
    }
    Ok(hidden.map(|hidden| ae::GeneratorSettings {
        hidden,
        fpa: a.fpa,
        omega: a.gen_omega,
        margin: a.gen_margin,
        batch: a.gen_batch,
        epochs: a.gen_epochs,
        iters: a.gen_iters,
        fakes: a.gen_fakes,
    }))
}

#[derive(Args, Debug)]
pub(crate) struct AeModelArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// A model.safetensors written by `rrr autoencode`.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// generate: codes to sample.
    #[arg(long, default_value_t = 1000)]
    pub(crate) count: usize,
    /// encode: data rows (IDX, reference format or CSV); decode: codes (CSV, one per row).
    #[arg(long)]
    pub(crate) data: Option<PathBuf>,
    /// Image shape HxW for PNGs (else square when the width is a square).
    #[arg(long)]
    pub(crate) image_shape: Option<String>,
}

/// What `rrr generate|encode|decode` do with a trained autoencoder.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum AeUse {
    Generate,
    Encode,
    Decode,
}

pub(crate) fn rrr_ae_use(a: &AeModelArgs, what: AeUse) -> Result<()> {
    let c = &a.common;
    let bytes = gradfree::io::read_file(&a.model)?;
    let bundle = ae::AeModel::from_bytes(&bytes, &a.model.display().to_string())?;
    let (d, cw) = (bundle.net.data, bundle.net.code);
    let shape = image_shape(a.image_shape.as_deref())?.or_else(|| gradfree::io::square_shape(d));
    if let Some((h, w)) = shape.filter(|(h, w)| h * w != d) {
        return Err(Error::Input(format!(
            "--image-shape {h}x{w} has {} pixels; the model's data layer has {d} nodes",
            h * w
        ))
        .into());
    }
    let voice = if c.quiet {
        Voice::Quiet
    } else {
        Voice::Verbose
    };
    let session = Session::host(
        "cpu (host forward passes)",
        c.precision,
        c.out.as_deref(),
        c.out_mode(),
        voice,
    )?;
    let own = match what {
        AeUse::Generate => {
            if bundle.generator.is_none() {
                return Err(Error::Input(format!(
                    "{} has no generator: train one with `rrr autoencode --generator …`",
                    a.model.display()
                ))
                .into());
            }
            if a.count == 0 {
                return Err(Error::Input("--count must be at least 1".into()).into());
            }
            c.check_rows(a.count, bundle.net.nodes(), "--count")?;
            ae::generate(&session, &bundle, a.count, shape, c.seed)?
        }
        AeUse::Encode | AeUse::Decode => {
            let Some(path) = &a.data else {
                return Err(Error::Input("give --data FILE".into()).into());
            };
            let rows = data::images::load_rows(path, None, &c.limits())?;
            let decode = what == AeUse::Decode;
            let want = if decode { cw } else { d };
            if rows.dim != want {
                return Err(Error::Input(format!(
                    "{} has rows of {} values; the model's {} layer has {want} nodes",
                    path.display(),
                    rows.dim,
                    if decode { "code" } else { "data" }
                ))
                .into());
            }
            ae::encode_or_decode(&session, &bundle, &rows.x, rows.dim, decode, shape)?
        }
    };
    let m = session.measure();
    session.summary(&m, c.seed, own)?;
    Ok(())
}
