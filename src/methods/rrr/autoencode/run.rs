//! `rrr autoencode` as a library run (train or resume, PNGs, the generator,
//! `model.safetensors`), and what `rrr generate|encode|decode` do with a
//! trained model.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{
    AeModel, AeNet, AeProgress, AeSettings, AeTraining, Autoencoder, CodeSource, GeneratorSettings,
    binary_codes, code_lists, generated_png, sample_codes, train_generator,
};
use crate::data::pca::pca_rms;
use crate::engine::Backend;
use crate::error::{Error, Result};
use crate::io::rows_csv;
use crate::plot::{Figure, Format, Histograms, Panel, rows_grid};
use crate::train::checkpoint::{Provenance, fingerprint};
use crate::train::{self, Session, Start, Stopped};

/// What `rrr autoencode` trains on.
#[derive(Clone, Debug)]
pub struct AeRun {
    /// The cyclic net.
    pub net: AeNet,
    /// Training settings (`seed` is replaced by the run's seeds).
    pub settings: AeSettings,
    /// Training rows (width D).
    pub data: Vec<f64>,
    /// Held-out rows, for held-out errors and generator rates.
    pub held: Vec<f64>,
    /// Rows are images of this shape (for the PNGs).
    pub image_shape: Option<(usize, usize)>,
    /// The binary-encoding task of this many bits (the data are its one-hot items).
    pub binary: Option<usize>,
    /// Independent runs (binary encoding), seeds `seed`, `seed + 1`, ….
    pub runs: usize,
    /// Then train the generative model's classifier.
    pub generator: Option<GeneratorSettings>,
    /// Stop after the epoch during which this many seconds have passed.
    pub time_limit: Option<f64>,
    /// Go on from this checkpoint.
    pub resume: Option<AeModel>,
    /// Seed of the first run (and of the PNGs' samples).
    pub seed: u64,
}

/// How an `rrr autoencode` run ended.
#[derive(Clone, Debug)]
pub struct AeOutcome {
    /// The summary's own fields (none when there was nothing to do).
    pub summary: Option<serde_json::Value>,
    /// The epoch after which the time limit stopped training.
    pub stopped_at: Option<usize>,
}

/// Trains the autoencoder (or resumes it), then the generator if asked;
/// writes a checkpoint per epoch, `reconstructions.png`, `samples.png`,
/// `codes.png`, `generated.png` and `model.safetensors`.
pub fn run(backend: &Backend, session: &mut Session, r: &AeRun) -> Result<AeOutcome> {
    let settings = &r.settings;
    settings.check()?;
    if r.runs == 0 {
        return Err(Error::Input("the number of runs must be at least 1".into()));
    }
    let auto = Autoencoder::new(r.net.clone(), settings)?;
    let (dim, x) = (auto.net.data, &r.data);
    let rows = x.len() / dim;
    let (start, start_history, start_model) = match &r.resume {
        Some(m) => (m.progress.clone(), m.history.clone(), Some(m.model.clone())),
        None => (AeProgress::default(), vec![], None),
    };
    // A finished checkpoint is only good for (re)training the generator.
    let finished = start.epoch >= settings.epochs;
    let fingerprint = fingerprint(x, &[], dim);
    if let Some(m) = &r.resume {
        let p = &m.provenance;
        p.check_resume(&fingerprint, backend.precision(), "the checkpoint")?;
        let gwms = m.history.iter().map(|e| e.gwms).sum();
        let seconds = m.history.iter().map(|e| e.seconds).sum();
        session.continue_from(p.prior(gwms, seconds));
        let done = session
            .out()
            .path("model.safetensors")
            .is_some_and(|f| f.exists());
        if finished && r.generator.is_none() && done {
            session.tell(&format!(
                "the checkpoint has trained all {} epochs: nothing to do (a generator can still be trained from it)",
                settings.epochs
            ));
            return Ok(AeOutcome {
                summary: None,
                stopped_at: None,
            });
        }
    }
    session.say(&format!(
        "RRR autoencoder: {} data, {} encoder, {} code, {} decoder nodes, {} edges; {:?} m {}, Ω {}, β {}; on {} ({})",
        auto.net.data,
        auto.net.encode,
        auto.net.code,
        auto.net.decode,
        auto.problem.edges(),
        settings.activation,
        settings.margin,
        settings.omega,
        settings.beta,
        backend.describe(),
        backend.precision()
    ));
    if finished {
        session.say(&format!(
            "the checkpoint has trained all {} epochs: training the generator only",
            settings.epochs
        ));
    } else if start.epoch > 0 {
        session.say(&format!(
            "resuming after epoch {} of {}",
            start.epoch, settings.epochs
        ));
    }
    let runs = if r.binary.is_some() { r.runs } else { 1 };
    let binary = r.binary.map(binary_codes);
    let mut solved_epochs: Vec<Option<usize>> = vec![];
    let (mut stopped_at, mut progress, mut history, mut last) = (None, None, vec![], None);
    for run in 0..runs {
        let s = AeSettings {
            seed: r.seed + run as u64,
            ..settings.clone()
        };
        let source = match &binary {
            Some(cs) => CodeSource::Fixed(cs),
            None => CodeSource::Empirical,
        };
        let model = match &start_model {
            Some(m) => m.clone(),
            None => auto.random_model(s.seed),
        };
        let mut training = AeTraining::new(backend, &auto, x, source, &s, model, start.clone())?
            .with_time_limit(r.time_limit)
            .run_of(run + 1, runs);
        if let Some(n) = r.binary {
            training = training.binary(n);
        }
        let from = Start {
            epoch: start.epoch,
            history: start_history.clone(),
        };
        let fin = train::run(session, &mut training, from)?;
        if r.binary.is_some() {
            session.tell(&format!(
                "run {} (seed {}): {}",
                run + 1,
                s.seed,
                training
                    .solved
                    .map_or("not solved".to_string(), |e| format!("solved in epoch {e}"))
            ));
        } else {
            history = fin.history;
        }
        if fin.stopped == Some(Stopped::TimeLimit) {
            stopped_at = Some(fin.epoch);
        }
        solved_epochs.push(training.solved);
        progress = training.progress.take();
        last = Some((training.model, training.batch_codes));
    }
    let (model, codes) = last.expect("at least one run");
    let data_err = auto.data_err(&model, x);
    // Untrained now: the last epoch's figure, not one on the next code batch.
    let code_err = match start_history.last() {
        Some(h) if finished => h.code_err,
        _ => auto.code_err(&model, &codes),
    };
    let mut extra = serde_json::json!({});
    if r.binary.is_some() {
        let ok = solved_epochs.iter().filter(|e| e.is_some()).count();
        session.tell(&format!(
            "binary encoding {} → {} → {}: solved {ok} of {runs} runs",
            dim, auto.net.code, dim
        ));
        extra = serde_json::json!({"runs": runs, "solved": ok,
            "success_rate": ok as f64 / runs as f64, "solved_epochs": solved_epochs});
    } else {
        let linear = pca_rms(x, dim, auto.net.code, 2000, 10_000, r.seed);
        session.tell(&format!(
            "data_err {data_err:.4}, code_err {code_err:.4}; the best linear model with {} codes (PCA on this data): rms {linear:.4}",
            auto.net.code
        ));
        extra["linear_bound"] = serde_json::json!(linear);
    }
    if let Some(shape) = r.image_shape {
        image_pngs(session, &auto, &model, x, shape, r.seed)?;
    }
    let all_rows: Vec<&[f64]> = x.chunks(dim).collect();
    let lists = code_lists(&auto, &model, &all_rows);
    if stopped_at.is_some() {
        extra["time_limited"] = serde_json::json!(true);
    }
    let generator = match &r.generator {
        // The generator needs the finished autoencoder's codes.
        Some(g) if stopped_at.is_none() => {
            let t = train_generator(
                backend, session, &auto, &model, x, &r.held, &lists, g, r.seed,
            )?;
            if let Some(shape) = r.image_shape {
                let (png, rate) =
                    generated_png(&auto, &model, &t.generator, &lists, 1000, shape, r.seed)?;
                session.file("generated.png", &png)?;
                session.say(&format!(
                    "generator: accepts {:.1}% of 1000 fresh samples of Z (decoded in generated.png)",
                    100.0 * rate
                ));
                extra["acceptance_rate"] = serde_json::json!(rate);
            }
            extra["generator_fp"] = serde_json::json!(t.fp);
            extra["generator_genuine_rejected"] = serde_json::json!(t.genuine_rejected);
            Some(t.generator)
        }
        _ => None,
    };
    let bundle = AeModel {
        net: auto.net.clone(),
        settings: settings.clone(),
        model: model.clone(),
        code_lists: lists,
        generator,
        progress: progress.unwrap_or_else(|| {
            if finished {
                start.clone()
            } else {
                AeProgress {
                    epoch: settings.epochs,
                    ..Default::default()
                }
            }
        }),
        history,
        provenance: Provenance {
            totals: Some(session.totals()),
            fingerprint: Some(fingerprint),
            precision: Some(backend.precision()),
        },
    };
    session.file("model.safetensors", &bundle.to_bytes()?)?;
    if !r.held.is_empty() {
        extra["held_out_items"] = serde_json::json!(r.held.len() / dim);
        extra["held_out_data_err"] = serde_json::json!(auto.data_err(&model, &r.held));
    }
    let mut own = serde_json::json!({"method": "rrr autoencode", "items": rows,
        "data_nodes": auto.net.data, "code_nodes": auto.net.code, "edges": auto.problem.edges(),
        "data_err": data_err, "code_err": code_err, "settings": settings});
    if let (Some(o), Some(e)) = (own.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    Ok(AeOutcome {
        summary: Some(own),
        stopped_at,
    })
}

/// `reconstructions.png` (16 items above their round trips), `samples.png`
/// (64 decoded samples of Z) and `codes.png` (a histogram per code node,
/// the paper's figure 20).
fn image_pngs(
    session: &Session,
    auto: &Autoencoder,
    model: &crate::methods::rrr::Model,
    x: &[f64],
    shape: (usize, usize),
    seed: u64,
) -> Result<()> {
    let dim = auto.net.data;
    let k = 16.min(x.len() / dim);
    let rec: Vec<f64> = (0..k)
        .flat_map(|i| auto.round_trip(model, &x[i * dim..(i + 1) * dim]))
        .collect();
    session.file(
        "reconstructions.png",
        &rows_grid(
            "RRR autoencoder: training items and their round trips (encode, then decode)",
            &[
                ("training items", &x[..k * dim]),
                ("their reconstructions, column by column", &rec),
            ],
            shape,
            16,
            16,
        )
        .png()?,
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5a);
    let sample_rows: Vec<&[f64]> = x.chunks(dim).take(2000).collect();
    let lists = code_lists(auto, model, &sample_rows);
    let samples = sample_codes(&lists, 64, &mut rng);
    let decoded: Vec<f64> = samples
        .chunks(auto.net.code)
        .flat_map(|c| auto.decode(model, c))
        .collect();
    let grid = rows_grid(
        "RRR autoencoder: 64 samples of Z (each code node drawn from its own histogram) decoded",
        &[("decoded samples", &decoded)],
        shape,
        64,
        16,
    );
    session.file("samples.png", &grid.png()?)?;
    let codes = Histograms {
        title: format!(
            "RRR autoencoder: code values of {} training items, per code node",
            sample_rows.len()
        ),
        x_label: "code value".into(),
        bins: 32,
        panels: lists
            .into_iter()
            .enumerate()
            .map(|(i, values)| Panel {
                name: format!("code node {}", i + 1),
                values,
            })
            .collect(),
    };
    for f in [Format::Png, Format::Svg] {
        session.file(&format!("codes.{}", f.ext()), &codes.render(f)?)?;
    }
    Ok(())
}

/// `rrr generate`: samples `count` codes of Z, keeps those the generator
/// accepts and decodes them (`generated.csv`, `generated.png`); returns the
/// summary's own fields.
pub fn generate(
    session: &Session,
    bundle: &AeModel,
    count: usize,
    shape: Option<(usize, usize)>,
    seed: u64,
) -> Result<serde_json::Value> {
    if bundle.generator.is_none() {
        return Err(Error::Input(
            "the model has no generator (train one with the autoencoder)".into(),
        ));
    }
    if count == 0 {
        return Err(Error::Input("the sample count must be at least 1".into()));
    }
    let decoded = sample_decoded(bundle, count, seed)?;
    let accepted = decoded.len() / bundle.net.data;
    let rate = accepted as f64 / count as f64;
    session.tell(&format!(
        "accepted {} of {} samples of Z ({:.1}%)",
        accepted,
        count,
        100.0 * rate
    ));
    session.file(
        "generated.csv",
        rows_csv(&decoded, bundle.net.data).as_bytes(),
    )?;
    if let Some(s) = shape {
        let title = format!(
            "RRR generator: {} of {count} samples of Z accepted, the first {} decoded",
            accepted,
            accepted.min(256)
        );
        let grid = rows_grid(
            &title,
            &[("accepted samples, in order", &decoded)],
            s,
            256,
            16,
        );
        session.file("generated.png", &grid.png()?)?;
    }
    Ok(
        serde_json::json!({"method": "rrr generate", "count": count, "accepted": accepted, "acceptance_rate": rate}),
    )
}

/// `count` samples of Z drawn as `rrr generate` draws them (seeded by
/// `seed`), those the generator accepts (all of them when the model has
/// none), decoded: rows of width D. The draws are one stream, so the
/// rows of fewer draws are the first rows of more.
pub fn sample_decoded(bundle: &AeModel, count: usize, seed: u64) -> Result<Vec<f64>> {
    let auto = Autoencoder::new(bundle.net.clone(), &bundle.settings)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e);
    let z = sample_codes(&bundle.code_lists, count, &mut rng);
    let code = auto.net.code;
    let accepted = match &bundle.generator {
        Some(g) => g.accepted(&z, code)?,
        None => z.chunks(code).collect(),
    };
    Ok(accepted
        .iter()
        .flat_map(|q| auto.decode(&bundle.model, q))
        .collect())
}

/// `rrr encode` (`decode` false: data rows → `codes.csv`) or `rrr decode`
/// (code rows → `decoded.csv`, `decoded.png`); returns the summary's own fields.
pub fn encode_or_decode(
    session: &Session,
    bundle: &AeModel,
    rows: &[f64],
    width: usize,
    decode: bool,
    shape: Option<(usize, usize)>,
) -> Result<serde_json::Value> {
    let auto = Autoencoder::new(bundle.net.clone(), &bundle.settings)?;
    let m = &bundle.model;
    let (d, cw) = (auto.net.data, auto.net.code);
    let res: Vec<f64> = rows
        .chunks(width.max(1))
        .flat_map(|r| {
            if decode {
                auto.decode(m, r)
            } else {
                auto.encode(m, r)
            }
        })
        .collect();
    if decode {
        session.file("decoded.csv", rows_csv(&res, d).as_bytes())?;
        if let Some(s) = shape {
            let n = rows.len() / width.max(1);
            let title = format!(
                "RRR autoencoder: {} decoded code rows{}",
                n.min(256),
                if n > 256 {
                    format!(" (the first 256 of {n})")
                } else {
                    String::new()
                }
            );
            let grid = rows_grid(&title, &[("decoded rows, in order", &res)], s, 256, 16);
            session.file("decoded.png", &grid.png()?)?;
        }
    } else {
        session.file("codes.csv", rows_csv(&res, cw).as_bytes())?;
    }
    let n = rows.len() / width.max(1);
    session.tell(&format!("{n} rows written"));
    Ok(serde_json::json!({"method": if decode { "rrr decode" } else { "rrr encode" }, "items": n}))
}
