//! `gradfree rrr autoencode` (with the generator) and `rrr generate|encode|decode`.

#[allow(unused_imports)]
use super::common::*;
#[allow(unused_imports)]
use super::*;
use anyhow::Result;
use clap::Args;
use gradfree::engine::Backend;
use gradfree::methods::rrr::classify::{self, Classifier, Settings};
use gradfree::methods::rrr::net::Net;
use gradfree::methods::{rrr, starnet};
use gradfree::train::meter::Meter;
use gradfree::train::report::{Common as CommonSummary, OutDir};
use gradfree::{Error, data, io as output};
use serde_json::json;
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
    use rrr::autoencode::{self as ae, Activation, AeNet, AeSettings, Autoencoder, CodeSource};
    let c = &a.common;
    let resumed = match &a.resume {
        Some(dir) => {
            let (bytes, what) = read_checkpoint(dir)?;
            Some(ae::AeModel::from_bytes(&bytes, &what)?)
        }
        None => None,
    };
    let (encoder, decoder) = (
        widths_list(&a.encoder, "--encoder")?,
        widths_list(&a.decoder, "--decoder")?,
    );
    // The data (rows) and the net.
    let (x, dim, shape, net) = match (a.binary, &a.data) {
        (Some(n), _) => {
            if !(1..=10).contains(&n) {
                return Err(Error::Input(format!("--binary takes 1..=10 bits, got {n}")).into());
            }
            let d = 1usize << n;
            (
                ae::one_hot(n),
                d,
                None,
                AeNet::layered(d, &encoder, n, &decoder)?,
            )
        }
        (None, Some(path)) => {
            let mut rows = data::images::load_rows(path, image_shape(a.image_shape.as_deref())?)?;
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
            let net = match (&resumed, &a.net) {
                (Some(r), _) => r.net.clone(),
                (None, Some(f)) => AeNet::load(f)?,
                (None, None) => AeNet::layered(rows.dim, &encoder, a.code, &decoder)?,
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
            (rows.x, rows.dim, rows.shape, net)
        }
        (None, None) => {
            return Err(Error::Input("give --data FILE or --binary N".into()).into());
        }
    };
    let activation = a.activation.unwrap_or(if a.binary.is_some() {
        Activation::Step
    } else {
        Activation::Zigmoid
    });
    let settings = match &resumed {
        Some(r) => r.settings.clone(),
        None => AeSettings {
            batch: a.batch,
            codes: a.codes,
            epochs: a.epochs,
            iters_per_batch: a.iters_per_batch,
            tol: a.tol,
            beta: a.beta,
            omega: a.omega,
            margin: a.margin,
            activation,
            seed: c.seed,
        },
    };
    let activation = settings.activation;
    settings.check()?;
    if a.runs == 0 {
        return Err(Error::Input("--runs must be at least 1".into()).into());
    }
    // Held-out rows (the last ones) for the generator's held-out rates.
    let (x, held) = match a.split {
        None => (x, vec![]),
        Some(f) if f > 0.0 && f < 1.0 && a.binary.is_none() => {
            let n = x.len() / dim;
            let keep = n - ((n as f64 * f).round() as usize).clamp(1, n - 1);
            let held = x[keep * dim..].to_vec();
            (x[..keep * dim].to_vec(), held)
        }
        Some(f) => {
            return Err(Error::Input(format!(
                "--split must be in (0, 1) and needs --data, got {f}"
            ))
            .into());
        }
    };
    let gen_widths = a
        .generator
        .as_deref()
        .map(|g| widths_list(g, "--generator"))
        .transpose()?;
    if gen_widths.is_some() && a.binary.is_some() {
        return Err(Error::Input("--generator needs --data".into()).into());
    }
    if !(0.0..1.0).contains(&a.fpa) {
        return Err(Error::Input(format!("--fpa must be in [0, 1), got {}", a.fpa)).into());
    }
    let auto = Autoencoder::new(net, &settings)?;
    let backend = c.open()?;
    let out_dir = c.out.clone().or_else(|| a.resume.clone());
    let mut out = OutDir::new(out_dir.as_deref())?;
    let mut meter = Meter::for_backend(&backend);
    let rows = x.len() / dim;
    let (start, mut history, start_model) = match resumed {
        Some(r) => {
            for st in &r.history {
                let mut v = serde_json::to_value(st).expect("json");
                v["run"] = json!(1);
                out.metric(&v)?;
            }
            (r.progress, r.history, Some(r.model))
        }
        None => (ae::AeProgress::default(), vec![], None),
    };
    let first_epoch = start.epoch + 1;
    // A finished checkpoint is only good for (re)training the generator.
    let finished = first_epoch > settings.epochs;
    if finished && gen_widths.is_none() {
        return Err(Error::Input(format!(
            "the checkpoint has trained all {} epochs (add --generator to train only the generator)",
            settings.epochs
        ))
        .into());
    }
    if gen_widths.is_some() && a.gen_fakes == 0 {
        return Err(Error::Input("--gen-fakes must be at least 1".into()).into());
    }
    if !c.quiet {
        println!(
            "RRR autoencoder: {} data, {} encoder, {} code, {} decoder nodes, {} edges; {activation:?} m {}, Ω {}, β {}; on {} ({})",
            auto.net.data,
            auto.net.encode,
            auto.net.code,
            auto.net.decode,
            auto.problem.edges(),
            settings.margin,
            settings.omega,
            settings.beta,
            backend.describe(),
            c.precision
        );
        if finished {
            println!(
                "the checkpoint has trained all {} epochs: training the generator only",
                settings.epochs
            );
        } else if first_epoch > 1 {
            println!(
                "resuming after epoch {} of {}",
                first_epoch - 1,
                settings.epochs
            );
        }
    }
    let mut solved_epochs: Vec<Option<usize>> = vec![];
    let mut stopped_at = None;
    let mut last_progress = None;
    let mut last = None;
    let runs = if a.binary.is_some() { a.runs } else { 1 };
    for run in 0..runs {
        let s = AeSettings {
            seed: c.seed + run as u64,
            ..settings.clone()
        };
        let binary_codes = a.binary.map(ae::binary_codes);
        let source = match &binary_codes {
            Some(cs) => CodeSource::Fixed(cs),
            None => CodeSource::Empirical,
        };
        let model = match &start_model {
            Some(m) => m.clone(),
            None => auto.random_model(s.seed),
        };
        let mut solved = None;
        let t0 = std::time::Instant::now();
        // A finished checkpoint trains no epochs here (only the generator).
        let result = ae::train(
            &backend,
            &auto,
            &x,
            source,
            &s,
            model,
            start.clone(),
            |st, m, progress| {
                meter.add_gwms(st.gwms);
                if !c.quiet {
                    println!(
                        "{}epoch {}: data_err {:.4}, code_err {:.4}, RRR_err {:.4} → {:.4}, {:.3} GWMs, {:.2} s",
                        if runs > 1 {
                            format!("run {}: ", run + 1)
                        } else {
                            String::new()
                        },
                        st.epoch,
                        st.data_err,
                        st.code_err,
                        st.rrr_err_start,
                        st.rrr_err_end,
                        st.gwms,
                        st.seconds
                    );
                }
                let mut v = serde_json::to_value(st).expect("json");
                v["run"] = json!(run + 1);
                out.metric(&v)?;
                if let Some(n) = a.binary {
                    if ae::binary_solved(&auto, m, n) {
                        solved = Some(st.epoch);
                        return Ok(false);
                    }
                    return Ok(true);
                }
                // A checkpoint per epoch: a long run stopped by --time-limit, or
                // killed, goes on with --resume.
                history.push(st.clone());
                last_progress = Some(progress.clone());
                let checkpoint = ae::AeModel {
                    net: auto.net.clone(),
                    settings: s.clone(),
                    model: m.clone(),
                    code_lists: vec![],
                    generator: None,
                    progress: progress.clone(),
                    history: history.clone(),
                };
                out.file("checkpoint.safetensors", &checkpoint.to_bytes()?)?;
                if a.time_limit
                    .is_some_and(|t| t0.elapsed().as_secs_f64() >= t)
                    && st.epoch < s.epochs
                {
                    stopped_at = Some(st.epoch);
                    return Ok(false);
                }
                Ok(true)
            },
        );
        let (model, codes) = result?;
        if a.binary.is_some() {
            println!(
                "run {} (seed {}): {}",
                run + 1,
                s.seed,
                solved.map_or("not solved".to_string(), |e| format!("solved in epoch {e}"))
            );
        }
        solved_epochs.push(solved);
        last = Some((model, codes));
    }
    let (model, codes) = last.expect("at least one run");
    let data_err = auto.data_err(&model, &x);
    // Untrained now: the last epoch's figure, not one on the next code batch.
    let code_err = match history.last() {
        Some(h) if finished => h.code_err,
        _ => auto.code_err(&model, &codes),
    };
    let mut extra = json!({});
    if a.binary.is_some() {
        let ok = solved_epochs.iter().filter(|e| e.is_some()).count();
        println!(
            "binary encoding {} → {} → {}: solved {ok} of {runs} runs",
            dim, auto.net.code, dim
        );
        extra = json!({"runs": runs, "solved": ok, "success_rate": ok as f64 / runs as f64,
                       "solved_epochs": solved_epochs});
    } else {
        let linear = starnet::pca_rms(&x, dim, auto.net.code, 2000, 10_000, c.seed);
        println!(
            "data_err {data_err:.4}, code_err {code_err:.4}; the best linear model with {} codes (PCA on this data): rms {linear:.4}",
            auto.net.code
        );
        extra["linear_bound"] = json!(linear);
    }
    if let Some(shape) = shape {
        let k = 16.min(rows);
        let rec: Vec<f64> = (0..k)
            .flat_map(|i| ae_reconstruct(&auto, &model, &x[i * dim..(i + 1) * dim]))
            .collect();
        out.file(
            "reconstructions.png",
            &rows_png(&[&x[..k * dim], &rec], shape, 16)?,
        )?;
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(c.seed ^ 0x5a);
        let sample_rows: Vec<&[f64]> = x.chunks(dim).take(2000).collect();
        let lists = ae::code_lists(&auto, &model, &sample_rows);
        let samples = ae::sample_codes(&lists, 64, &mut rng);
        let decoded: Vec<f64> = samples
            .chunks(auto.net.code)
            .flat_map(|cde| auto.decode(&model, cde))
            .collect();
        out.file("samples.png", &rows_png(&[&decoded], shape, 64)?)?;
        out.file("codes.png", &histogram_strip(&lists, 32)?)?;
    }
    let all_rows: Vec<&[f64]> = x.chunks(dim).collect();
    let code_lists = ae::code_lists(&auto, &model, &all_rows);
    if let Some(e) = stopped_at {
        println!(
            "stopped after epoch {e} of {} (--time-limit); go on with --resume {}",
            settings.epochs,
            out_dir
                .as_deref()
                .map_or("DIR".into(), |d| d.display().to_string())
        );
        extra["time_limited"] = json!(true);
    }
    let generator = match &gen_widths {
        None => None,
        // The generator needs the finished autoencoder's codes.
        Some(_) if stopped_at.is_some() => None,
        Some(hidden) => {
            let g = train_generator(
                a,
                &backend,
                &auto,
                &model,
                &x,
                &held,
                &code_lists,
                hidden,
                &mut out,
            )?;
            meter.add_gwms(g.1);
            if let Some(shape) = shape {
                let (png, rate) =
                    generated_png(&auto, &model, &g.0, &code_lists, 1000, shape, c.seed)?;
                out.file("generated.png", &png)?;
                println!(
                    "generator: accepts {:.1}% of 1000 fresh samples of Z (decoded in generated.png)",
                    100.0 * rate
                );
                extra["acceptance_rate"] = json!(rate);
            }
            extra["generator_fp"] = json!(g.2);
            extra["generator_genuine_rejected"] = json!(g.3);
            Some(g.0)
        }
    };
    let bundle = ae::AeModel {
        net: auto.net.clone(),
        settings: settings.clone(),
        model: model.clone(),
        code_lists,
        generator,
        progress: last_progress.unwrap_or_else(|| {
            if finished {
                start.clone()
            } else {
                ae::AeProgress {
                    epoch: settings.epochs,
                    ..Default::default()
                }
            }
        }),
        history,
    };
    out.file("model.safetensors", &bundle.to_bytes()?)?;
    let m = meter.measure();
    println!("{}", m.line());
    let common = CommonSummary::new(backend.describe(), c.precision, c.seed, &m);
    if !held.is_empty() {
        extra["held_out_items"] = json!(held.len() / dim);
        extra["held_out_data_err"] = json!(auto.data_err(&model, &held));
    }
    let mut own = json!({"method": "rrr autoencode", "items": rows, "data_nodes": auto.net.data,
                         "code_nodes": auto.net.code, "edges": auto.problem.edges(),
                         "data_err": data_err, "code_err": code_err, "settings": settings});
    if let (Some(o), Some(e)) = (own.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    out.summary(&common, own)?;
    Ok(())
}

/// D(E(d)) of one item.
pub(crate) fn ae_reconstruct(
    auto: &rrr::autoencode::Autoencoder,
    m: &rrr::Model,
    d: &[f64],
) -> Vec<f64> {
    auto.decode(m, &auto.encode(m, d))
}

/// One histogram per list side by side (the per-code-node distributions,
/// the paper's figure 20): `bins` bins over each list's range, bar heights
/// scaled to the tallest bin.
pub(crate) fn histogram_strip(lists: &[Vec<f64>], bins: usize) -> gradfree::error::Result<Vec<u8>> {
    let images: Vec<Vec<f64>> = lists
        .iter()
        .map(|l| {
            let lo = l.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut counts = vec![0usize; bins];
            for &v in l {
                let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                counts[((t * bins as f64) as usize).min(bins - 1)] += 1;
            }
            let top = counts.iter().copied().max().unwrap_or(1).max(1);
            let mut img = vec![0.0; bins * bins];
            for (b, &n) in counts.iter().enumerate() {
                let h = (n * bins).div_ceil(top);
                for r in bins - h..bins {
                    img[r * bins + b] = 1.0;
                }
            }
            img
        })
        .collect();
    output::png_grid(&images, bins, bins, images.len().max(1), false)
}

/// Trains the genuine/fake classifier on E(train) vs samples of Z (and rates
/// on E(held) vs fresh samples); returns it, its GWMs and the final
/// (false-positive, genuine-rejected) rates on held-out (else training) codes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_generator(
    a: &AutoencodeArgs,
    backend: &Backend,
    auto: &rrr::autoencode::Autoencoder,
    model: &rrr::Model,
    x: &[f64],
    held: &[f64],
    lists: &[Vec<f64>],
    hidden: &[usize],
    out: &mut OutDir,
) -> Result<(rrr::autoencode::Generator, f64, f64, f64)> {
    use rrr::autoencode as ae;
    let c = &a.common;
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(c.seed ^ 0x6e);
    let fakes = a.gen_fakes;
    let train_set = ae::genuine_and_fakes(auto, model, x, lists, fakes, &mut rng);
    let test_set = (!held.is_empty())
        .then(|| ae::genuine_and_fakes(auto, model, held, lists, fakes, &mut rng));
    let mut widths = vec![auto.net.code];
    widths.extend_from_slice(hidden);
    widths.push(2);
    let net = Net::layered(&widths)?;
    // A batch holds about |K| f/(1 + f) fakes for f fakes per genuine code:
    // FPA = fpa × that (the paper's fpa × |K⁽⁰⁾|).
    let fp = (a.fpa * a.gen_batch as f64 * fakes as f64 / (1 + fakes) as f64).round() as usize;
    let s = Settings {
        batch: a.gen_batch,
        epochs: a.gen_epochs,
        iters_per_batch: a.gen_iters,
        tol: 0.0,
        beta: 1.0,
        omega: a.gen_omega,
        upsilon: 1.0,
        margin: a.gen_margin,
        exempt: 0,
        relabel: 0,
        false_positives: fp,
        seed: c.seed,
    };
    let clf = Classifier::new(net.clone(), &s)?;
    let start = clf.random_model(c.seed);
    let mut gwms = 0.0;
    let mut last = (f64::NAN, f64::NAN);
    if !c.quiet {
        println!(
            "generator {}: {} genuine + {} fake training codes, FPA {fp} per batch of {}",
            widths
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join(" → "),
            train_set.len() / (1 + fakes),
            train_set.len() / (1 + fakes) * fakes,
            a.gen_batch
        );
    }
    let mut lines = vec![];
    let trained = classify::train(
        backend,
        &clf,
        &train_set,
        None,
        &s,
        start,
        1,
        |st, m, sel| {
            gwms += st.gwms;
            let (fp_tr, rej_tr) = rrr::autoencode::generator_rates(&clf, m, &train_set);
            let test = test_set
                .as_ref()
                .map(|t| rrr::autoencode::generator_rates(&clf, m, t));
            last = test.unwrap_or((fp_tr, rej_tr));
            if !c.quiet {
                println!(
                    "generator epoch {}: fp {:.3}, genuine rejected {:.3} (train){}; {} relabeled, {:.3} GWMs, {:.2} s",
                    st.epoch,
                    fp_tr,
                    rej_tr,
                    test.map_or(String::new(), |(f, r)| format!(
                        "; fp {f:.3}, genuine rejected {r:.3} (held out)"
                    )),
                    sel.relabeled.len(),
                    st.gwms,
                    st.seconds
                );
            }
            lines.push(
                json!({"stage": "generator", "epoch": st.epoch, "train_fp": fp_tr,
            "train_genuine_rejected": rej_tr, "test_fp": test.map(|t| t.0),
            "test_genuine_rejected": test.map(|t| t.1), "relabeled": sel.relabeled.len(),
            "gwms": st.gwms, "seconds": st.seconds}),
            );
            Ok(())
        },
    )?;
    for l in &lines {
        out.metric(l)?;
    }
    Ok((
        rrr::autoencode::Generator {
            net,
            settings: s,
            model: trained,
        },
        gwms,
        last.0,
        last.1,
    ))
}

/// Decodes up to 64 of `count` fresh samples of Z that the generator
/// accepts; returns the PNG and the acceptance rate.
pub(crate) fn generated_png(
    auto: &rrr::autoencode::Autoencoder,
    model: &rrr::Model,
    g: &rrr::autoencode::Generator,
    lists: &[Vec<f64>],
    count: usize,
    shape: (usize, usize),
    seed: u64,
) -> Result<(Vec<u8>, f64)> {
    let clf = Classifier::new(g.net.clone(), &g.settings)?;
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed ^ 0x9e);
    let z = rrr::autoencode::sample_codes(lists, count, &mut rng);
    let accepted: Vec<&[f64]> = z
        .chunks(auto.net.code)
        .filter(|c| clf.classify(&g.model, c) == 1)
        .collect();
    let rate = accepted.len() as f64 / count.max(1) as f64;
    let decoded: Vec<f64> = accepted
        .iter()
        .take(64)
        .flat_map(|c| auto.decode(model, c))
        .collect();
    Ok((rows_png(&[&decoded], shape, 64)?, rate))
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
    use rrr::autoencode::{AeModel, Autoencoder};
    let c = &a.common;
    let bytes = std::fs::read(&a.model)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", a.model.display())))?;
    let bundle = AeModel::from_bytes(&bytes, &a.model.display().to_string())?;
    let auto = Autoencoder::new(bundle.net.clone(), &bundle.settings)?;
    let m = &bundle.model;
    let (d, cw) = (auto.net.data, auto.net.code);
    let out = OutDir::new(c.out.as_deref())?;
    let shape = match image_shape(a.image_shape.as_deref())? {
        Some(s) => Some(s),
        None => {
            let side = (d as f64).sqrt().round() as usize;
            (side * side == d && side >= 4).then_some((side, side))
        }
    };
    let meter = gradfree::train::meter::Meter::start(gradfree::train::meter::SensorKind::Cpu);
    let own = match what {
        AeUse::Generate => {
            let Some(g) = &bundle.generator else {
                return Err(Error::Input(format!(
                    "{} has no generator: train one with `rrr autoencode --generator …`",
                    a.model.display()
                ))
                .into());
            };
            if a.count == 0 {
                return Err(Error::Input("--count must be at least 1".into()).into());
            }
            let clf = Classifier::new(g.net.clone(), &g.settings)?;
            let mut rng =
                <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(c.seed ^ 0x9e);
            let z = rrr::autoencode::sample_codes(&bundle.code_lists, a.count, &mut rng);
            let accepted: Vec<&[f64]> = z
                .chunks(cw)
                .filter(|q| clf.classify(&g.model, q) == 1)
                .collect();
            let rate = accepted.len() as f64 / a.count as f64;
            let decoded: Vec<f64> = accepted.iter().flat_map(|q| auto.decode(m, q)).collect();
            println!(
                "accepted {} of {} samples of Z ({:.1}%)",
                accepted.len(),
                a.count,
                100.0 * rate
            );
            out.file("generated.csv", rows_csv(&decoded, d).as_bytes())?;
            if let Some(s) = shape {
                out.file("generated.png", &rows_png(&[&decoded], s, 256)?)?;
            }
            json!({"method": "rrr generate", "count": a.count, "accepted": accepted.len(), "acceptance_rate": rate})
        }
        AeUse::Encode | AeUse::Decode => {
            let Some(path) = &a.data else {
                return Err(Error::Input("give --data FILE".into()).into());
            };
            let rows = data::images::load_rows(path, None)?;
            let want = if what == AeUse::Encode { d } else { cw };
            if rows.dim != want {
                return Err(Error::Input(format!(
                    "{} has rows of {} values; the model's {} layer has {want} nodes",
                    path.display(),
                    rows.dim,
                    if what == AeUse::Encode {
                        "data"
                    } else {
                        "code"
                    }
                ))
                .into());
            }
            let res: Vec<f64> = rows
                .x
                .chunks(rows.dim)
                .flat_map(|r| {
                    if what == AeUse::Encode {
                        auto.encode(m, r)
                    } else {
                        auto.decode(m, r)
                    }
                })
                .collect();
            if what == AeUse::Encode {
                out.file("codes.csv", rows_csv(&res, cw).as_bytes())?;
            } else {
                out.file("decoded.csv", rows_csv(&res, d).as_bytes())?;
                if let Some(s) = shape {
                    out.file("decoded.png", &rows_png(&[&res], s, 256)?)?;
                }
            }
            println!("{} rows written", rows.len());
            json!({"method": if what == AeUse::Encode { "rrr encode" } else { "rrr decode" }, "items": rows.len()})
        }
    };
    let ms = meter.measure();
    let common = CommonSummary::new("cpu (host forward passes)".into(), c.precision, c.seed, &ms);
    out.summary(&common, own)?;
    Ok(())
}
