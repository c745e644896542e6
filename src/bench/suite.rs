//! The bench suite: its seeded data, its workloads as typed jobs for the
//! methods' library runs, and [`execute`], which runs one job in-process
//! (the `bench-worker` child of `gradfree bench`).

use std::path::{Path, PathBuf};

use super::Suite;
use crate::data::Limits;
use crate::data::labeled::{self, Labeled, LabeledFormat};
use crate::data::majority::Circuit;
use crate::engine::Backend;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::methods::rrr::classify::{self, Settings as ClassifySettings};
use crate::methods::rrr::net::Net;
use crate::methods::rrr::nmf::{self, LedmRun, SolveSettings};
use crate::methods::sgd::{self, SgdSettings};
use crate::methods::{hsic, starnet};
use crate::real::Precision;
use crate::train::Session;

/// What a workload runs: one method's library run with its settings.
#[derive(Clone, Debug)]
pub enum Job {
    /// `rrr nmf --ledm` (the tolerance follows the precision: 1e-8 in f64,
    /// 1e-5 in f32).
    Ledm(LedmRun),
    /// `rrr classify` on a layered net.
    Classify {
        /// Widths.
        layers: Vec<usize>,
        /// Training data.
        train: PathBuf,
        /// Test data.
        test: Option<PathBuf>,
        /// Held-out fraction of the training data (instead of `test`).
        split: Option<f64>,
        /// Settings.
        settings: ClassifySettings,
    },
    /// `sgd`.
    Sgd {
        /// Widths.
        layers: Vec<usize>,
        /// Training data.
        train: PathBuf,
        /// Test data.
        test: Option<PathBuf>,
        /// Held-out fraction of the training data.
        split: Option<f64>,
        /// Settings.
        settings: SgdSettings,
    },
    /// `starnet train` (latent widths; the data width is appended).
    Starnet {
        /// Image data.
        data: PathBuf,
        /// Widths from the latent code up, without the data width.
        layers: Vec<usize>,
        /// Settings.
        settings: starnet::Settings,
    },
    /// `hsic fit` on a CSV whose last column is the label.
    Hsic {
        /// The CSV.
        data: PathBuf,
        /// The solver.
        solver: hsic::Solver,
    },
    /// Fold 1 of `hsic cv` with [`HSIC_SCALE_FOLDS`] seeded folds of a
    /// CSV whose last column is the label.
    HsicFold {
        /// The CSV.
        data: PathBuf,
        /// The solver.
        solver: hsic::Solver,
    },
}

/// Folds of the `hsic-scale` cross-validation (one of them runs).
pub const HSIC_SCALE_FOLDS: usize = 10;

/// Items of the `hsic-scale` mixtures.
pub const HSIC_SCALE_ITEMS: [usize; 4] = [2000, 5000, 10_000, 20_000];

/// One workload of the suite.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Row name.
    pub name: String,
    /// What it runs, in words.
    pub what: String,
    /// The run.
    pub job: Job,
    /// Modelled bytes moved per weight-multiply, for the bandwidth column:
    /// RRR streams at most 10 elements per (item, edge) and iteration
    /// (a run's summary gives its network's model, which the row takes); the
    /// product-bound rows (SGD, StarNet, HSIC) are modelled as reading both
    /// operands of every multiply-add once (2 elements, no reuse), so a
    /// fraction of the copy bandwidth above 1 says how much they reuse
    /// caches, i.e. that they are compute-bound.
    pub bytes_per_wm: Option<f64>,
}

/// What a `bench-worker` child needs to rebuild the suite's workloads.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    /// Suite size.
    pub suite: Suite,
    /// The suite's data directory.
    pub data: PathBuf,
    /// Real images for the 784-20-10 pair.
    pub mnist: Option<PathBuf>,
    /// Working precision.
    pub precision: Precision,
    /// GPU time per kernel from timestamp queries.
    pub profile: bool,
}

/// Writes the suite's seeded data under `dir`: majority gates (the paper's
/// maj13 task), MNIST-shaped random images (IDX) for the 784-20-10 pair
/// and StarNet, and spirals for HSIC.
pub fn write_data(suite: Suite, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    if suite == Suite::HsicScale {
        for n in HSIC_SCALE_ITEMS {
            let d = crate::data::mixture::gaussian_mixture(n, 10, 10, 1.5, 1)?;
            write_atomic(&dir.join(format!("mix{n}.csv")), labeled_csv(&d).as_bytes())?;
        }
        return Ok(());
    }
    let quick = suite == Suite::Quick;
    let circuit = Circuit::random(13, 3, 3, 13, 1)?;
    let (train, test) = circuit.split(1);
    write_atomic(&dir.join("maj_train"), train.to_lwl().as_bytes())?;
    write_atomic(&dir.join("maj_test"), test.to_lwl().as_bytes())?;
    let (cls_images, images) = if quick {
        (1000, 1000)
    } else {
        (10_000, 60_000)
    };
    write_idx_images(dir, "cls", cls_images, 28, 7)?;
    write_idx_images(dir, "star", images, 28, 8)?;
    let per_class = if quick { 100 } else { 500 };
    let sp = crate::data::spiral::spiral(per_class, 3, 0.05, 3);
    write_atomic(&dir.join("spiral.csv"), labeled_csv(&sp).as_bytes())
}

/// Items as CSV rows, the label last (what [`Job::Hsic`] reads).
fn labeled_csv(d: &Labeled) -> String {
    let mut csv = String::new();
    for (row, y) in d.x.chunks(d.dim.max(1)).zip(&d.y) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
        csv += &format!("{},{y}\n", cells.join(","));
    }
    csv
}

/// The suite's workloads on the data of `dir` (see [`write_data`]).
/// `mnist` (any image file the classifier reads, e.g. the reference's 10k
/// zip) replaces the generated images of the 784-20-10 pair, whose RRR and
/// SGD runs both hold out 20% for a test error either way (on the generated
/// images, whose labels are random, that error is chance: it shows the
/// path, not a result).
pub fn workloads(
    suite: Suite,
    dir: &Path,
    precision_bytes: f64,
    mnist: Option<&Path>,
) -> Vec<Workload> {
    if suite == Suite::HsicScale {
        return hsic_scale(dir);
    }
    let quick = suite == Suite::Quick;
    let p = |name: &str| dir.join(name);
    let (cls_images, images) = if quick {
        (1000, 1000)
    } else {
        (10_000, 60_000)
    };
    let cls_data = mnist.map_or(p("cls-images-idx3-ubyte"), Path::to_path_buf);
    let cls_what = match mnist {
        Some(m) => format!("the images of {}", m.display()),
        None => format!("{cls_images} MNIST-shaped random images"),
    };
    let per_class = if quick { 100 } else { 500 };
    let rrr_bytes = Some(crate::engine::gpu::TRAFFIC_PER_ITEM_EDGE * precision_bytes);
    let product_bytes = Some(2.0 * precision_bytes);
    let (nmf_runs, nmf_iter) = if quick { (4, 3000) } else { (20, 200_000) };
    let maj_iters = if quick { 10 } else { 100 };
    let mnist_iters = if quick { 3 } else { 100 };
    let star_layers: Vec<usize> = if quick { vec![32] } else { vec![128, 256] };
    let sgd_maj_epochs = if quick { 2 } else { 40 };
    let rrr = |batch, iters_per_batch, exempt, margin| ClassifySettings {
        batch,
        epochs: 1,
        iters_per_batch,
        tol: 0.0,
        beta: 1.0,
        omega: 2.0,
        upsilon: 1.0,
        margin,
        exempt,
        relabel: 0,
        false_positives: 0,
        seed: 1,
    };
    let sgd = |batch, epochs, lr| SgdSettings {
        batch,
        epochs,
        lr,
        seed: 1,
    };
    let maj = (vec![13, 26, 26, 2], p("maj_train"), Some(p("maj_test")));
    let mnist_layers = vec![784, 20, 10];
    let spiral = |solver: &str| {
        let mut ws = hsic::WsSettings::for_dataset("spiral");
        ws.seed = 1;
        match solver {
            "ws" => hsic::Solver::Ws(ws),
            _ => hsic::Solver::Ism(hsic::ism::IsmSettings {
                seed: 1,
                ..Default::default()
            }),
        }
    };
    vec![
        Workload {
            name: "rrr-nmf-ledm6".into(),
            what: format!("LEDM m=6 rank 5, {nmf_runs} starts, ≤{nmf_iter} iterations"),
            job: Job::Ledm(LedmRun {
                m: 6,
                rank: 5,
                omega: 0.6,
                runs: nmf_runs,
                parallel_runs: 0,
                seed: 1,
                solve: SolveSettings {
                    beta: 0.3,
                    max_iter: nmf_iter,
                    tol: 0.0,
                    check_every: 64,
                    chunk: 10_000,
                },
            }),
            bytes_per_wm: rrr_bytes,
        },
        Workload {
            name: "rrr-classify-maj13".into(),
            what: format!(
                "13-26-26-2 on the 4096 majority training items, |K| 128, {maj_iters} iterations per batch, 1 epoch"
            ),
            job: Job::Classify {
                layers: maj.0.clone(),
                train: maj.1.clone(),
                test: maj.2.clone(),
                split: None,
                settings: rrr(128, maj_iters, 0, 0.1),
            },
            bytes_per_wm: rrr_bytes,
        },
        Workload {
            name: "rrr-classify-784-20-10".into(),
            what: format!(
                "784-20-10 on {cls_what} (80%; 20% held out), |K| 1000, {mnist_iters} iterations per batch, 1 epoch"
            ),
            // 0.5% of the batch exempted.
            job: Job::Classify {
                layers: mnist_layers.clone(),
                train: cls_data.clone(),
                test: None,
                split: Some(0.2),
                settings: rrr(1000, mnist_iters, 5, 0.7),
            },
            bytes_per_wm: rrr_bytes,
        },
        Workload {
            name: "sgd-maj13".into(),
            what: format!(
                "SGD baseline on 13-26-26-2, |K| 128, {sgd_maj_epochs} epochs (3 |K| |E| per step)"
            ),
            job: Job::Sgd {
                layers: maj.0,
                train: maj.1,
                test: maj.2,
                split: None,
                settings: sgd(128, sgd_maj_epochs, 1.0),
            },
            bytes_per_wm: product_bytes,
        },
        Workload {
            name: "sgd-784-20-10".into(),
            what: format!("SGD baseline on 784-20-10, {cls_what} (80/20), |K| 1000, 1 epoch"),
            job: Job::Sgd {
                layers: mnist_layers,
                train: cls_data,
                test: None,
                split: Some(0.2),
                settings: sgd(1000, 1, 0.5),
            },
            bytes_per_wm: product_bytes,
        },
        Workload {
            name: "starnet-epoch".into(),
            what: format!(
                "one SL+SW epoch per layer, {images} × 784, latents {}",
                star_layers
                    .iter()
                    .map(|w| w.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            job: Job::Starnet {
                data: p("star-images-idx3-ubyte"),
                layers: star_layers,
                settings: starnet::Settings {
                    epochs: 1,
                    alpha: 0.5,
                    weight_sample: None,
                    seed: 1,
                    conv: vec![],
                },
            },
            bytes_per_wm: product_bytes,
        },
        Workload {
            name: "hsic-ws".into(),
            what: format!("W_s fit on {} spiral points", 3 * per_class),
            job: Job::Hsic {
                data: p("spiral.csv"),
                solver: spiral("ws"),
            },
            bytes_per_wm: product_bytes,
        },
        Workload {
            name: "hsic-ism".into(),
            what: format!("W* (ISM) fit on {} spiral points", 3 * per_class),
            job: Job::Hsic {
                data: p("spiral.csv"),
                solver: spiral("ism"),
            },
            bytes_per_wm: product_bytes,
        },
    ]
}

/// The `hsic-scale` workloads: for every size, W_s and W* (dense
/// eigen-solves, and `auto`: LOBPCG where it is cheaper).
fn hsic_scale(dir: &Path) -> Vec<Workload> {
    let mut v = vec![];
    for n in HSIC_SCALE_ITEMS {
        let data = dir.join(format!("mix{n}.csv"));
        let mut ws = hsic::WsSettings::for_dataset("mixture");
        ws.seed = 1;
        let ism = |eigen| {
            hsic::Solver::Ism(hsic::ism::IsmSettings {
                seed: 1,
                eigen,
                ..Default::default()
            })
        };
        for (name, solver) in [
            ("ws", hsic::Solver::Ws(ws)),
            ("ism-dense", ism(hsic::ism::EigenSolver::Dense)),
            ("ism-auto", ism(hsic::ism::EigenSolver::Auto)),
        ] {
            v.push(Workload {
                name: format!("hsic-scale-{name}-{n}"),
                what: format!(
                    "fold 1 of {HSIC_SCALE_FOLDS} of {} on a {n}-item Gaussian mixture (10 features, 10 classes)",
                    solver.label()
                ),
                job: Job::HsicFold {
                    data: data.clone(),
                    solver,
                },
                bytes_per_wm: None,
            });
        }
    }
    v
}

/// Writes `DIR/NAME-images-idx3-ubyte` (n random side × side images, pixels
/// 0–255) and the matching labels (10 classes).
fn write_idx_images(dir: &Path, name: &str, n: usize, side: usize, seed: u64) -> Result<()> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut img = vec![0u8, 0, 8, 3];
    for d in [n, side, side] {
        img.extend_from_slice(&(d as u32).to_be_bytes());
    }
    img.extend((0..n * side * side).map(|_| rng.random::<u8>()));
    let mut lab = vec![0u8, 0, 8, 1];
    lab.extend_from_slice(&(n as u32).to_be_bytes());
    lab.extend((0..n).map(|_| rng.random_range(0..10u8)));
    write_atomic(&dir.join(format!("{name}-images-idx3-ubyte")), &img)?;
    write_atomic(&dir.join(format!("{name}-labels-idx1-ubyte")), &lab)
}

/// Training and test data of a classifier job.
fn train_test(
    train: &Path,
    test: Option<&Path>,
    split: Option<f64>,
    seed: u64,
    limits: &Limits,
) -> Result<(Labeled, Option<Labeled>)> {
    let data = labeled::load(train, LabeledFormat::Auto, None, limits)?;
    let test = test
        .map(|t| labeled::load(t, LabeledFormat::Auto, None, limits))
        .transpose()?;
    Ok(match split {
        Some(f) => {
            let (rest, held) = data.hold_out(f, seed);
            (rest, Some(held))
        }
        None => (data, test),
    })
}

/// Runs one job on `backend` in `session`; returns the seed and the
/// summary's own fields.
pub fn execute(
    job: &Job,
    backend: &Backend,
    session: &mut Session,
) -> Result<(u64, serde_json::Value)> {
    let limits = Limits::for_precision(backend.precision());
    match job {
        Job::Ledm(r) => {
            let mut r = r.clone();
            r.solve.tol = match backend.precision() {
                Precision::F64 => 1e-8,
                Precision::F32 => 1e-5,
            };
            Ok((r.seed, nmf::run_ledm(backend, session, &r)?))
        }
        Job::Classify {
            layers,
            train,
            test,
            split,
            settings,
        } => {
            let (train, test) = train_test(train, test.as_deref(), *split, settings.seed, &limits)?;
            let run = classify::Run {
                net: Net::layered(layers)?,
                settings: settings.clone(),
                train,
                test,
                image_shape: None,
                time_limit: None,
                resume: None,
            };
            let own = classify::run(backend, session, &run)?.unwrap_or_default();
            Ok((settings.seed, own))
        }
        Job::Sgd {
            layers,
            train,
            test,
            split,
            settings,
        } => {
            let (train, test) = train_test(train, test.as_deref(), *split, settings.seed, &limits)?;
            let own = sgd::run(backend, session, layers, &train, test.as_ref(), settings)?;
            Ok((settings.seed, own))
        }
        Job::Starnet {
            data,
            layers,
            settings,
        } => {
            let rows = crate::data::images::load_rows(data, None, &limits)?;
            let mut widths = layers.clone();
            widths.push(rows.dim);
            let own = starnet::run(backend, session, &rows.x, &widths, settings, rows.shape)?;
            Ok((settings.seed, own))
        }
        Job::Hsic { data, solver } => {
            let (train, values) = hsic_table(data, &limits)?;
            Ok((
                solver.seed(),
                hsic::run_fit(backend, session, &train, &values, solver)?,
            ))
        }
        Job::HsicFold { data, solver } => {
            let (all, _) = hsic_table(data, &limits)?;
            let mut folds = crate::data::folds::kfold(&all, HSIC_SCALE_FOLDS, solver.seed())?;
            folds.truncate(1);
            let name = data.file_stem().and_then(|n| n.to_str()).unwrap_or("data");
            let mut own = hsic::run_cv(backend, session, name, &folds, solver)?;
            // The one fold's figures, flat, for the bench row.
            let first = |k: &str| own[k][0].as_f64();
            let flat = serde_json::json!({
                "items": all.len(),
                "fold_layers": first("layers").map(|l| l.round() as u64),
                "test_err": first("test_acc").map(|a| 1.0 - a),
            });
            if let (Some(o), Some(f)) = (own.as_object_mut(), flat.as_object()) {
                o.extend(f.clone());
            }
            Ok((solver.seed(), own))
        }
    }
}

/// A CSV whose last column is the label, with its label values.
fn hsic_table(data: &Path, limits: &Limits) -> Result<(Labeled, Vec<i64>)> {
    let d = labeled::load(data, LabeledFormat::Csv, None, limits)?;
    let raw = crate::data::folds::RawTable {
        dim: d.dim,
        x: d.x,
        labels: d.y.iter().map(|&v| v as i64).collect(),
    };
    let values = crate::data::folds::label_values(&[&raw]);
    Ok((crate::data::folds::to_labeled(&raw, &values), values))
}
