//! The generative model (paper section 6.3): a classifier of genuine codes
//! E(X) (class 1) against samples of the iDE code distribution Z (class 0),
//! trained by RRR with a false-positive allowance: up to fpa × (fakes per
//! batch) fakes with the largest positive distance difference take the
//! genuine label. Samples of Z that it accepts are decoded.

use rand::Rng;
use rayon::prelude::*;

use super::{Autoencoder, sample_codes};
use crate::data::labeled::Labeled;
use crate::engine::Backend;
use crate::error::Result;
use crate::methods::rrr::Model;
use crate::methods::rrr::classify::Training;
use crate::methods::rrr::classify::{Classifier, Settings};
use crate::methods::rrr::net::Net;
use crate::plot::rows_grid;
use crate::train::{self, EpochEnd, Method, Plan, Session, Start};

/// The generative model's classifier: genuine codes E(X) (class 1) against
/// samples of the iDE code distribution (class 0).
#[derive(Clone, Debug)]
pub struct Generator {
    /// Its net (code nodes → hidden → 2 class nodes).
    pub net: Net,
    /// Its training settings (with the false-positive allowance).
    pub settings: Settings,
    /// Consensus weights and biases.
    pub model: Model,
}

/// Genuine codes E(x) (label 1) of `data` rows and `fakes_per` times as
/// many samples of the iDE distribution `lists` (label 0), as a labeled set
/// for the generator (the paper trains on 10⁴ genuine codes and 2 × 10⁴ fakes).
pub fn genuine_and_fakes(
    ae: &Autoencoder,
    m: &Model,
    data: &[f64],
    lists: &[Vec<f64>],
    fakes_per: usize,
    rng: &mut impl Rng,
) -> Labeled {
    let d = ae.net.data;
    let rows: Vec<&[f64]> = data.chunks(d).collect();
    let genuine: Vec<Vec<f64>> = rows.par_iter().map(|r| ae.encode(m, r)).collect();
    let fakes = sample_codes(lists, rows.len() * fakes_per, rng);
    let mut x = genuine.concat();
    x.extend_from_slice(&fakes);
    let mut y = vec![1u32; rows.len()];
    y.extend(std::iter::repeat_n(0u32, rows.len() * fakes_per));
    Labeled {
        dim: ae.net.code,
        classes: 2,
        x,
        y,
    }
}

/// The generator's error rates on a genuine/fake set: fakes accepted as
/// genuine (false positives) and genuine codes rejected (what the paper
/// calls tn).
pub fn generator_rates(clf: &Classifier, m: &Model, set: &Labeled) -> (f64, f64) {
    let pred = clf.predict(m, set);
    let (mut fp, mut fakes, mut rej, mut genuine) = (0usize, 0usize, 0usize, 0usize);
    for (&p, &t) in pred.iter().zip(&set.y) {
        if t == 0 {
            fakes += 1;
            fp += (p == 1) as usize;
        } else {
            genuine += 1;
            rej += (p == 0) as usize;
        }
    }
    (
        fp as f64 / fakes.max(1) as f64,
        rej as f64 / genuine.max(1) as f64,
    )
}

/// The generator's training settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct GeneratorSettings {
    /// Hidden widths (code → hidden… → 2).
    pub hidden: Vec<usize>,
    /// False-positive allowance: the fraction of a batch's fakes that may
    /// take the genuine label.
    pub fpa: f64,
    /// Weight norm Ω.
    pub omega: f64,
    /// Class margin Δ.
    pub margin: f64,
    /// Items per batch (genuine and fake mixed).
    pub batch: usize,
    /// Epochs.
    pub epochs: usize,
    /// RRR iterations per batch.
    pub iters: usize,
    /// Fake codes (samples of Z) per genuine code.
    pub fakes: usize,
}

/// One epoch of the generator.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GeneratorEpoch {
    /// Always "generator" (its metrics lines share the file with the autoencoder's).
    pub stage: &'static str,
    /// 1-based epoch.
    pub epoch: usize,
    /// Fakes accepted as genuine, on the training codes.
    pub train_fp: f64,
    /// Genuine codes rejected, on the training codes.
    pub train_genuine_rejected: f64,
    /// Fakes accepted, on the held-out codes.
    pub test_fp: Option<f64>,
    /// Genuine codes rejected, on the held-out codes.
    pub test_genuine_rejected: Option<f64>,
    /// Fakes relabeled genuine in the epoch.
    pub relabeled: usize,
    /// GWMs of the epoch.
    pub gwms: f64,
    /// Wall seconds of the epoch.
    pub seconds: f64,
}

/// The generator's classifier training with its own figures per epoch.
struct GeneratorTraining<'a> {
    inner: Training<'a>,
    clf: &'a Classifier,
    train_set: &'a Labeled,
    test_set: Option<&'a Labeled>,
}

impl Method for GeneratorTraining<'_> {
    type Record = GeneratorEpoch;

    fn plan(&self) -> Plan {
        self.inner.plan()
    }

    fn order(&mut self, epoch: usize) -> Vec<usize> {
        self.inner.order(epoch)
    }

    fn batch(&mut self, epoch: usize, index: usize, items: &[usize]) -> Result<()> {
        self.inner.batch(epoch, index, items)
    }

    fn end_epoch(&mut self, epoch: usize, seconds: f64) -> Result<EpochEnd<GeneratorEpoch>> {
        let st = self.inner.end_epoch(epoch, seconds)?.record;
        let m = &self.inner.model;
        let (fp_tr, rej_tr) = generator_rates(self.clf, m, self.train_set);
        let test = self.test_set.map(|t| generator_rates(self.clf, m, t));
        let record = GeneratorEpoch {
            stage: "generator",
            epoch: st.epoch,
            train_fp: fp_tr,
            train_genuine_rejected: rej_tr,
            test_fp: test.map(|t| t.0),
            test_genuine_rejected: test.map(|t| t.1),
            relabeled: self.inner.selected.relabeled.len(),
            gwms: st.gwms,
            seconds: st.seconds,
        };
        Ok(EpochEnd::next(record, st.gwms))
    }

    fn line(&self, g: &GeneratorEpoch) -> String {
        format!(
            "generator epoch {}: fp {:.3}, genuine rejected {:.3} (train){}; {} relabeled, {:.3} GWMs, {:.2} s",
            g.epoch,
            g.train_fp,
            g.train_genuine_rejected,
            match (g.test_fp, g.test_genuine_rejected) {
                (Some(f), Some(r)) => format!("; fp {f:.3}, genuine rejected {r:.3} (held out)"),
                _ => String::new(),
            },
            g.relabeled,
            g.gwms,
            g.seconds
        )
    }
}

/// A trained generator and its final rates on held-out (else training) codes.
pub struct TrainedGenerator {
    /// The classifier.
    pub generator: Generator,
    /// Fakes accepted as genuine.
    pub fp: f64,
    /// Genuine codes rejected.
    pub genuine_rejected: f64,
    /// Its epochs' records (its metrics.jsonl lines).
    pub history: Vec<GeneratorEpoch>,
}

/// Trains the genuine/fake classifier on E(`data`) against samples of Z
/// from `lists` (and rates it on E(`held`) against fresh samples).
#[allow(clippy::too_many_arguments)]
pub fn train_generator(
    backend: &Backend,
    session: &mut Session,
    auto: &Autoencoder,
    model: &Model,
    data: &[f64],
    held: &[f64],
    lists: &[Vec<f64>],
    g: &GeneratorSettings,
    seed: u64,
) -> Result<TrainedGenerator> {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed ^ 0x6e);
    let fakes = g.fakes;
    let train_set = genuine_and_fakes(auto, model, data, lists, fakes, &mut rng);
    let test_set =
        (!held.is_empty()).then(|| genuine_and_fakes(auto, model, held, lists, fakes, &mut rng));
    let mut widths = vec![auto.net.code];
    widths.extend_from_slice(&g.hidden);
    widths.push(2);
    let net = Net::layered(&widths)?;
    // A batch holds about |K| f/(1 + f) fakes for f fakes per genuine code:
    // FPA = fpa × that (the paper's fpa × |K⁽⁰⁾|).
    let fp = (g.fpa * g.batch as f64 * fakes as f64 / (1 + fakes) as f64).round() as usize;
    let s = Settings {
        batch: g.batch,
        epochs: g.epochs,
        iters_per_batch: g.iters,
        tol: 0.0,
        beta: 1.0,
        omega: g.omega,
        upsilon: 1.0,
        margin: g.margin,
        exempt: 0,
        relabel: 0,
        false_positives: fp,
        seed,
    };
    let clf = Classifier::new(net.clone(), &s)?;
    session.say(&format!(
        "generator {}: {} genuine + {} fake training codes, FPA {fp} per batch of {}",
        widths
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join(" → "),
        train_set.len() / (1 + fakes),
        train_set.len() / (1 + fakes) * fakes,
        g.batch
    ));
    let inner = Training::new(backend, &clf, &train_set, None, &s, clf.random_model(seed))?;
    let mut training = GeneratorTraining {
        inner,
        clf: &clf,
        train_set: &train_set,
        test_set: test_set.as_ref(),
    };
    let fin = train::run(session, &mut training, Start::fresh())?;
    let (fp, genuine_rejected) = fin.history.last().map_or((f64::NAN, f64::NAN), |e| {
        (
            e.test_fp.unwrap_or(e.train_fp),
            e.test_genuine_rejected.unwrap_or(e.train_genuine_rejected),
        )
    });
    let model = training.inner.model;
    Ok(TrainedGenerator {
        generator: Generator {
            net,
            settings: s,
            model,
        },
        fp,
        genuine_rejected,
        history: fin.history,
    })
}

impl Generator {
    /// The samples of Z (rows of width C) this generator accepts as genuine.
    pub fn accepted<'z>(&self, z: &'z [f64], code: usize) -> Result<Vec<&'z [f64]>> {
        let clf = Classifier::new(self.net.clone(), &self.settings)?;
        Ok(z.chunks(code)
            .filter(|c| clf.classify(&self.model, c) == 1)
            .collect())
    }
}

/// Decodes up to 64 of `count` fresh samples of Z that the generator
/// accepts; returns the PNG and the acceptance rate.
pub fn generated_png(
    auto: &Autoencoder,
    model: &Model,
    g: &Generator,
    lists: &[Vec<f64>],
    count: usize,
    shape: (usize, usize),
    seed: u64,
) -> Result<(Vec<u8>, f64)> {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed ^ 0x9e);
    let z = sample_codes(lists, count, &mut rng);
    let accepted = g.accepted(&z, auto.net.code)?;
    let rate = accepted.len() as f64 / count.max(1) as f64;
    let decoded: Vec<f64> = accepted
        .iter()
        .take(64)
        .flat_map(|c| auto.decode(model, c))
        .collect();
    let title = format!(
        "RRR generator: {} of {count} samples of Z accepted ({:.1}%), the first {} decoded",
        accepted.len(),
        100.0 * rate,
        accepted.len().min(64)
    );
    let grid = rows_grid(&title, &[("accepted samples", &decoded)], shape, 64, 16);
    Ok((grid.png()?, rate))
}
