//! The `gradfree` command line: parsing and printing only; the work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use gradfree::data::labeled::{self, Labeled, LabeledFormat};
use gradfree::data::letters;
use gradfree::data::majority::Circuit;
use gradfree::data::matrix::{TableFormat, load_table, require_nonnegative, to_csv};
use gradfree::engine::{Backend, DeviceChoice};
use gradfree::gpu::{BackendChoice, GpuRequest, list_adapters};
use gradfree::io::{NamedTensor, png_grid, safetensors_bytes, write_atomic};
use gradfree::train::meter::Meter;
use gradfree::train::report::{Common as CommonSummary, OutDir, Progress};
use gradfree::methods::rrr::classify::{self, Classifier, Saved, Settings};
use gradfree::methods::rrr::net::Net;
use gradfree::methods::rrr::nmf::{self, Nmf, OnlineSettings, SolveSettings};
use gradfree::methods::{hsic, rrr, starnet};
use gradfree::{Error, Precision, data, io as output};
use serde_json::json;

/// Gradient-free neural-network training on GPUs (wgpu) and CPUs.
#[derive(Parser, Debug)]
#[command(name = "gradfree", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Benchmark suite: GWMs, seconds, GWMs/s, energy, peak memory and
    /// bandwidth per workload and device (bench.json, bench.md).
    Bench(BenchArgs),
    /// Minibatch SGD baseline (softmax cross-entropy, ReLU) on the classifier
    /// nets, on the same backends, with work counted in GWMs.
    Sgd(Box<SgdArgs>),
    /// Curves from runs' metrics.jsonl: a y field against cumulative GWMs
    /// (or joules), as curves.csv and a PNG (e.g. RRR vs SGD test error).
    Plot(PlotArgs),
    /// List GPU adapters (backend, type, driver, limits, features) and the CPU backend.
    Devices {
        /// Restrict to one graphics API.
        #[arg(long, value_enum)]
        backend: Option<BackendChoice>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// RRR ("Learning without loss"): training as constraint satisfaction.
    Rrr {
        #[command(subcommand)]
        task: RrrTask,
    },
    /// Classify data with a trained RRR classifier (model.safetensors).
    Predict(PredictArgs),
    /// Layer-wise HSIC networks with closed-form weights (W_s solver).
    Hsic {
        #[command(subcommand)]
        task: HsicTask,
    },
    /// StarNet: decoders trained layer by layer with exact least-squares
    /// solves (feedforward layers).
    Starnet {
        #[command(subcommand)]
        task: StarnetTask,
    },
    /// Data generators.
    Data {
        #[command(subcommand)]
        task: DataTask,
    },
}

#[derive(Subcommand, Debug)]
enum StarnetTask {
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
struct StarnetTrainArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Training data: IDX images (.gz ok), reference classifier format, or CSV.
    #[arg(long)]
    data: PathBuf,
    /// Widths from the latent code up, without the data width (which is
    /// appended): 128,256 = 128 → 256 → data. Must not shrink.
    #[arg(long, default_value = "128,256")]
    layers: String,
    /// Conv-unpool layers instead of --layers, from the latent up, as
    /// C:KxK:U per layer (input channels, odd kernel side, unpooling), e.g.
    /// 6:7x7:2,2:7x7:2 for 28×28 images: 6×7×7 latents → 2×14×14 → 1×28×28.
    /// Needs square one-channel images.
    #[arg(long)]
    conv: Option<String>,
    /// SL/SW epochs per layer.
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Leaky-ReLU negative slope α.
    #[arg(long, default_value_t = 0.5)]
    alpha: f64,
    /// Items per weight solve, drawn at random every epoch (default all).
    #[arg(long)]
    weight_sample: Option<usize>,
    /// Use only the first N items.
    #[arg(long)]
    limit: Option<usize>,
    /// Items are images of this shape (HxW), for the PNGs.
    #[arg(long)]
    image_shape: Option<String>,
}

#[derive(Args, Debug)]
struct StarnetDataArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// A model written by `starnet train`.
    #[arg(long)]
    model: PathBuf,
    /// Data rows (same formats as for training).
    #[arg(long)]
    data: PathBuf,
    /// Use only the first N items.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Args, Debug)]
struct StarnetDecodeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// A model written by `starnet train`.
    #[arg(long)]
    model: PathBuf,
    /// Codes, one per row (CSV).
    #[arg(long)]
    codes: PathBuf,
    /// Decoded rows are images of this shape (HxW), for decoded.png.
    #[arg(long)]
    image_shape: Option<String>,
}

#[derive(Args, Debug)]
struct StarnetSampleArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// A model written by `starnet train`.
    #[arg(long)]
    model: PathBuf,
    /// Samples to draw.
    #[arg(long, default_value_t = 64)]
    count: usize,
    /// Samples are images of this shape (HxW), for samples.png.
    #[arg(long)]
    image_shape: Option<String>,
}

#[derive(Subcommand, Debug)]
enum HsicTask {
    /// k-fold cross-validation on the reference's fold folders
    /// (DIR/NAME/NAME_k{,_label,_test,_label_test}.csv).
    Cv(HsicCvArgs),
    /// Fit on a features CSV and a label CSV; writes model.safetensors.
    Fit(HsicFitArgs),
    /// Predict with a fitted model; prints accuracy when labels are given.
    Predict(HsicPredictArgs),
}

#[derive(Args, Debug, Clone)]
struct HsicSolverArgs {
    /// Solver: ws (closed-form kernel mean embedding) or ism (W*, the ISM solution).
    #[arg(long, default_value = "ws")]
    solver: String,
    /// Smallest σ of the search range (default: the reference's per data set).
    #[arg(long)]
    smallest_sigma: Option<f64>,
    /// Points on the σ range (default: the reference's per data set).
    #[arg(long)]
    sigma_steps: Option<usize>,
    /// Standardize test data with the training statistics instead of their
    /// own (the reference's choice, kept as the default because it is more
    /// accurate on the adversarial set; see README).
    #[arg(long)]
    train_stats: bool,
    /// Follow the reference wherever gradfree offers otherwise (overrides
    /// --train-stats). Kernels are always exact (no random features).
    #[arg(long)]
    reference_compat: bool,
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
struct HsicCvArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    solver: HsicSolverArgs,
    /// Folder holding NAME/ with the fold files.
    #[arg(long)]
    data: PathBuf,
    /// Data set name.
    #[arg(long)]
    name: String,
    /// Number of folds.
    #[arg(long, default_value_t = 10)]
    folds: usize,
}

#[derive(Args, Debug)]
struct HsicFitArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    solver: HsicSolverArgs,
    /// Features CSV (no header), or with --labels omitted a CSV whose last
    /// column is the integer label.
    #[arg(long)]
    data: PathBuf,
    /// Label CSV (one integer per line).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Data set name (picks the reference's σ range).
    #[arg(long, default_value = "")]
    name: String,
}

#[derive(Args, Debug)]
struct HsicPredictArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// model.safetensors from `hsic fit`.
    #[arg(long)]
    model: PathBuf,
    /// Features CSV.
    #[arg(long)]
    data: PathBuf,
    /// Label CSV, for the accuracy.
    #[arg(long)]
    labels: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum DataTask {
    /// Letter montages (40×40: w, x, y, z in a 2×2 montage, plain top / slanted bottom; exact NMF rank 16).
    Letters {
        /// Output file (CSV, or the reference NMF format with --format nmf).
        #[arg(long)]
        out: PathBuf,
        /// Number of images.
        #[arg(long, default_value_t = 2000)]
        count: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// File format.
        #[arg(long, value_enum, default_value_t = LettersFormat::Csv)]
        format: LettersFormat,
        /// Also write a PNG grid of the first 64 images here.
        #[arg(long)]
        preview: Option<PathBuf>,
    },
    /// Majority-gate circuit data: all 2^inputs vectors, split in equal train/test halves.
    Majority(MajorityArgs),
}

#[derive(Args, Debug)]
struct MajorityArgs {
    /// Output prefix: writes PREFIX_train and PREFIX_test (reference classifier format).
    #[arg(long)]
    out: PathBuf,
    /// Boolean inputs (all 2^inputs vectors are generated).
    #[arg(long, default_value_t = 13)]
    inputs: usize,
    /// Circuit depth (layers of gates; the top layer is one gate).
    #[arg(long, default_value_t = 3)]
    depth: usize,
    /// Inputs per gate (odd).
    #[arg(long, default_value_t = 3)]
    fanin: usize,
    /// Gates per layer below the top (default: --inputs).
    #[arg(long)]
    width: Option<usize>,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LettersFormat {
    /// One image per row, comma-separated.
    Csv,
    /// The reference C program's NMF format (row length, then rows).
    Nmf,
}

#[derive(Subcommand, Debug)]
enum RrrTask {
    /// Exact non-negative matrix factorization by RRR.
    Nmf(Box<NmfArgs>),
    /// Train a classifier on any acyclic network (exemptions, relabeling, checkpoints).
    Classify(Box<ClassifyArgs>),
    /// Train a cyclic autoencoder with iDE codes (or the binary-encoding task),
    /// optionally with the generative model's genuine/fake classifier.
    Autoencode(Box<AutoencodeArgs>),
    /// Sample codes, keep those the generator accepts, decode: generated.png.
    Generate(Box<AeModelArgs>),
    /// Codes of data rows under a trained autoencoder: codes.csv.
    Encode(Box<AeModelArgs>),
    /// Data of codes (CSV rows) under a trained autoencoder: decoded.csv (and decoded.png).
    Decode(Box<AeModelArgs>),
}

#[derive(Args, Debug)]
struct AutoencodeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Binary encoding: the 2^N one-hot items and all 2^N codes of N bits
    /// (net 2^N → N → 2^N unless --encoder/--decoder add layers).
    #[arg(long, conflicts_with_all = ["data", "net"])]
    binary: Option<usize>,
    /// Independent runs of --binary (seeds seed, seed+1, …); prints the success rate.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Data: IDX images (.gz, .zip ok), the reference classifier format, or CSV; values in [0, 1].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Use only the first N items.
    #[arg(long)]
    limit: Option<usize>,
    /// Image shape HxW for PNGs when the data are not IDX.
    #[arg(long)]
    image_shape: Option<String>,
    /// Encoder hidden widths, e.g. 200 or 400,200 (empty: none).
    #[arg(long, default_value = "")]
    encoder: String,
    /// Code nodes.
    #[arg(long, default_value_t = 10)]
    code: usize,
    /// Decoder hidden widths (empty: none).
    #[arg(long, default_value = "")]
    decoder: String,
    /// Net file in the reference autoencoder format (`D encode code decode`, then `node indeg inputs…` for every node).
    #[arg(long, conflicts_with_all = ["encoder", "decoder"])]
    net: Option<PathBuf>,
    /// Activation at every node (default: step for --binary, zigmoid otherwise).
    #[arg(long, value_enum)]
    activation: Option<rrr::autoencode::Activation>,
    /// Activation half-width m.
    #[arg(long, default_value_t = 0.4)]
    margin: f64,
    /// Weight norm Ω per node.
    #[arg(long, default_value_t = 10.0)]
    omega: f64,
    /// RRR β.
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Data items per batch.
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Code items per batch (ignored by --binary, which uses all 2^N).
    #[arg(long, default_value_t = 20)]
    codes: usize,
    /// RRR iterations per batch.
    #[arg(long, default_value_t = 50)]
    iters_per_batch: usize,
    /// Epochs (--binary: at most this many; a run stops once solved).
    #[arg(long, default_value_t = 40)]
    epochs: usize,
    /// Stop a batch once RRR_err < tol (0: never).
    #[arg(long, default_value_t = 0.0)]
    tol: f64,
    /// Hold out this fraction of the data (the last rows) for held-out errors.
    #[arg(long)]
    split: Option<f64>,
    /// Then train the generative model's genuine/fake classifier with these
    /// hidden widths (code → hidden… → 2), e.g. 50,50,50.
    #[arg(long)]
    generator: Option<String>,
    /// Generator: false-positive allowance (fraction of the fakes per batch
    /// that may take the genuine label).
    #[arg(long, default_value_t = 0.25)]
    fpa: f64,
    /// Generator: weight norm Ω.
    #[arg(long, default_value_t = 5.0)]
    gen_omega: f64,
    /// Generator: class margin Δ.
    #[arg(long, default_value_t = 0.1)]
    gen_margin: f64,
    /// Generator: items per batch (genuine and fake mixed).
    #[arg(long, default_value_t = 200)]
    gen_batch: usize,
    /// Generator: epochs.
    #[arg(long, default_value_t = 20)]
    gen_epochs: usize,
    /// Generator: RRR iterations per batch.
    #[arg(long, default_value_t = 100)]
    gen_iters: usize,
    /// Generator: fake codes (samples of Z) per genuine code, in the
    /// training and the held-out sets (the paper: 2).
    #[arg(long, default_value_t = 1)]
    gen_fakes: usize,
    /// Stop after the epoch during which this many seconds have passed
    /// (the run goes on with `--resume`).
    #[arg(long)]
    time_limit: Option<f64>,
    /// Continue a stopped run from DIR/checkpoint.safetensors (same data
    /// arguments; the net and training settings come from the checkpoint).
    #[arg(long, conflicts_with_all = ["binary", "net"])]
    resume: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct PlotArgs {
    /// Series as NAME=RUN_DIR/metrics.jsonl (repeatable), plotted in the
    /// colours blue, red, green, orange, purple.
    #[arg(long, required = true)]
    series: Vec<String>,
    /// Field per epoch to plot.
    #[arg(long, default_value = "test_err")]
    y: String,
    /// x: cumulative `gwms` or `joules` (per-epoch fields summed).
    #[arg(long, default_value = "gwms")]
    x: String,
    /// Linear x axis instead of log₁₀.
    #[arg(long)]
    linear: bool,
    /// Output PNG (curves.csv is written beside it).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct SgdArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Layered net, e.g. 784,20,10.
    #[arg(long)]
    layers: String,
    /// Training data (reference classifier format, CSV with the label last, or IDX).
    #[arg(long)]
    train: PathBuf,
    /// Test data.
    #[arg(long)]
    test: Option<PathBuf>,
    /// Hold out this fraction of the training data for testing (as `rrr classify`).
    #[arg(long)]
    split: Option<f64>,
    /// Items per step |K|.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Epochs.
    #[arg(long, default_value_t = 40)]
    epochs: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// quick (seconds per workload) or paper (the papers' sizes).
    #[arg(long, value_enum, default_value_t = gradfree::bench::Suite::Quick)]
    suite: gradfree::bench::Suite,
    /// Devices to run on in turn, comma-separated: cpu, gpu (default: cpu,
    /// plus gpu when an adapter opens).
    #[arg(long)]
    devices: Option<String>,
    /// Working precision of every workload.
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Only these workloads (comma-separated names).
    #[arg(long)]
    only: Option<String>,
    /// Output directory: bench.json, bench.md, the suite's data and each run's outputs.
    #[arg(long)]
    out: Option<PathBuf>,
    /// An earlier bench.json: print GWMs/s ratios against it.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Real images for the 784-20-10 RRR and SGD workloads (IDX, .gz, or the
    /// reference's mnist_train_10k.zip) instead of generated ones, so their
    /// held-out test errors and curves mean something.
    #[arg(long)]
    mnist: Option<PathBuf>,
    /// Only the table on the terminal.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct AeModelArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// A model.safetensors written by `rrr autoencode`.
    #[arg(long)]
    model: PathBuf,
    /// generate: codes to sample.
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// encode: data rows (IDX, reference format or CSV); decode: codes (CSV, one per row).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Image shape HxW for PNGs (else square when the width is a square).
    #[arg(long)]
    image_shape: Option<String>,
}

#[derive(Args, Debug)]
struct ClassifyArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Layered fully connected net, e.g. 784,20,10.
    #[arg(long, conflicts_with = "net")]
    layers: Option<String>,
    /// Net file in the reference format (`D H C`, then `node indeg inputs…`).
    #[arg(long)]
    net: Option<PathBuf>,
    /// Training data: reference classifier format, CSV (label last), or MNIST IDX (.gz/.zip ok).
    #[arg(long)]
    train: Option<PathBuf>,
    /// Labels file of IDX training images (default: the matching *-labels-idx1-* file).
    #[arg(long)]
    train_labels: Option<PathBuf>,
    /// Test data (same formats).
    #[arg(long)]
    test: Option<PathBuf>,
    /// Labels file of IDX test images.
    #[arg(long)]
    test_labels: Option<PathBuf>,
    /// Hold out this fraction of the training data (seeded) as the test set.
    #[arg(long)]
    split: Option<f64>,
    /// Data format.
    #[arg(long, value_enum, default_value_t = LabeledFormat::Auto)]
    format: LabeledFormat,
    /// Items per batch |K|.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Epochs.
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// RRR iterations per batch.
    #[arg(long, default_value_t = 100)]
    iters_per_batch: usize,
    /// Stop a batch once RRR_err < tol (0 = run every iteration).
    #[arg(long, default_value_t = 0.0)]
    tol: f64,
    /// RRR β.
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Weight norm Ω per node.
    #[arg(long, default_value_t = 2.0)]
    omega: f64,
    /// Class-node metric Υ.
    #[arg(long, default_value_t = 1.0)]
    upsilon: f64,
    /// Class margin Δ.
    #[arg(long, default_value_t = 0.1)]
    margin: f64,
    /// Eccentric exemptions per batch (eq. 32): an item count, or a percentage of the batch like 0.5%.
    #[arg(long)]
    exempt: Option<String>,
    /// Relabels per batch (eq. 33): an item count or a percentage of the batch.
    #[arg(long)]
    relabel: Option<String>,
    /// Images of HxW pixels: write exempted items as a PNG grid.
    #[arg(long)]
    image_shape: Option<String>,
    /// Stop after the epoch during which this many seconds have passed.
    #[arg(long)]
    time_limit: Option<f64>,
    /// Continue a killed run from DIR/checkpoint.safetensors (same data arguments).
    #[arg(long)]
    resume: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct PredictArgs {
    /// A model.safetensors (or checkpoint.safetensors) from `rrr classify`.
    #[arg(long)]
    model: PathBuf,
    /// Data to classify (labels are used to report accuracy).
    #[arg(long)]
    data: PathBuf,
    /// Labels file of IDX images.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Data format.
    #[arg(long, value_enum, default_value_t = LabeledFormat::Auto)]
    format: LabeledFormat,
    /// Output directory: predictions.csv and summary.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only the summary line.
    #[arg(long)]
    quiet: bool,
}

/// Options every command that runs work takes.
#[derive(Args, Debug, Clone)]
struct CommonArgs {
    /// Where to run: auto = a hardware GPU if present, else the CPU backend.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Graphics API for --device gpu|auto (else WGPU_BACKEND, else any).
    #[arg(long, value_enum)]
    backend: Option<BackendChoice>,
    /// Adapter name substring (else WGPU_ADAPTER_NAME).
    #[arg(long)]
    adapter: Option<String>,
    /// Working precision: f32 or f64 (f64 on GPUs with SHADER_F64).
    #[arg(long, default_value = "f32")]
    precision: Precision,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory (metrics.jsonl, summary.json, ...), written atomically.
    #[arg(long)]
    out: Option<PathBuf>,
    /// No progress bar and only the summary on the terminal.
    #[arg(long)]
    quiet: bool,
}

impl CommonArgs {
    fn open(&self) -> Result<Backend> {
        let req = GpuRequest {
            backend: self.backend,
            adapter: self.adapter.clone(),
            allow_software: false,
        };
        Ok(Backend::open(self.device, self.precision, &req)?)
    }
}

#[derive(Args, Debug)]
struct NmfArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Factorize this non-negative data (one item per row: CSV, or the
    /// reference NMF format) online, in batches; without it, the LEDM.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Format of --data.
    #[arg(long, value_enum, default_value_t = TableFormat::Auto)]
    format: TableFormat,
    /// Items per batch (online mode).
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Passes over the data (online mode).
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    /// RRR iterations per batch (online mode).
    #[arg(long, default_value_t = 4)]
    iters_per_batch: usize,
    /// Items are images of this shape (HxW): write features.png and reconstructions.png.
    #[arg(long)]
    image_shape: Option<String>,
    /// Factorize the m×m linear Euclidean distance matrix ((i−k)/(m−1))².
    #[arg(long, default_value_t = 6)]
    ledm: usize,
    /// Number of codes (default: the known nonnegative rank 5, 6, 7, 8 for m = 6, 8, 12, 16).
    #[arg(long)]
    rank: Option<usize>,
    /// RRR step β (default 0.3 for the LEDM, 1 for --data).
    #[arg(long)]
    beta: Option<f64>,
    /// Norm Ω of each code's weights (default: 0.6, 0.7, 0.8, 0.9 for LEDM m = 6, 8, 12, 16, else 1; 2 for --data).
    #[arg(long)]
    omega: Option<f64>,
    /// Independent random starts (seeds seed, seed+1, …).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Starts solved together as one batched problem (0 = auto: all of them
    /// on a GPU, one at a time on the CPU).
    #[arg(long, default_value_t = 0)]
    parallel_runs: usize,
    /// Iteration cap per start.
    #[arg(long, default_value_t = 1_000_000)]
    max_iter: usize,
    /// Success when RRR_err < tol (default 1e-8 in f64, 1e-5 in f32).
    #[arg(long)]
    tol: Option<f64>,
}

fn devices(backend: Option<BackendChoice>, as_json: bool) -> Result<()> {
    let adapters = list_adapters(backend);
    let cpu = json!({
        "name": "gradfree CPU backend (Rust + rayon)",
        "threads": rayon::current_num_threads(),
        "precisions": ["f32", "f64"],
    });
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "gpu": adapters, "cpu": cpu }))?
        );
        return Ok(());
    }
    if adapters.is_empty() {
        println!(
            "GPU adapters: none found (install a Vulkan driver, e.g. `apt-get install -y mesa-vulkan-drivers libvulkan1` for lavapipe)"
        );
    }
    for (i, a) in adapters.iter().enumerate() {
        let soft = if a.software {
            "  [software adapter]"
        } else {
            ""
        };
        println!(
            "gpu {i}: {} — {} {}{soft}",
            a.name, a.backend, a.device_type
        );
        println!("    driver: {} {}", a.driver, a.driver_info);
        println!(
            "    features: f64 {}, timestamps {}, subgroups {}",
            yes(a.shader_f64),
            yes(a.timestamp_query),
            yes(a.subgroup)
        );
        println!(
            "    limits: storage binding {} MiB, buffer {} MiB, {} workgroups/dim, {} invocations/group, {} KiB shared, {} storage buffers/stage",
            a.max_storage_buffer_binding_size >> 20,
            a.max_buffer_size >> 20,
            a.max_compute_workgroups_per_dimension,
            a.max_compute_invocations_per_workgroup,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_storage_buffers_per_shader_stage
        );
    }
    println!(
        "cpu: gradfree CPU backend (Rust + rayon), {} threads, f32 and f64",
        rayon::current_num_threads()
    );
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn median(v: &mut [usize]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2] as f64
    } else {
        (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0
    })
}

fn check_positive(name: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        return Err(Error::Input(format!("--{name} must be a positive number, got {v}")).into());
    }
    Ok(())
}

fn parse_shape(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::Input(format!("--image-shape '{s}' is not HxW (e.g. 40x40)"));
    let (h, w) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (h, w) = (
        h.trim().parse().map_err(|_| bad())?,
        w.trim().parse().map_err(|_| bad())?,
    );
    if h == 0 || w == 0 {
        return Err(bad().into());
    }
    Ok((h, w))
}

fn rrr_nmf(a: &NmfArgs) -> Result<()> {
    match &a.data {
        Some(path) => rrr_nmf_data(a, path),
        None => rrr_nmf_ledm(a),
    }
}

fn rrr_nmf_data(a: &NmfArgs, path: &std::path::Path) -> Result<()> {
    let c = &a.common;
    let y = load_table(path, a.format)?;
    require_nonnegative(&y, path)?;
    let (n, d) = y.shape();
    let rank = a
        .rank
        .ok_or_else(|| Error::Input("--rank is required with --data".into()))?;
    if rank == 0 || rank > d || rank > n {
        return Err(Error::Input(format!(
            "--rank {rank} must be between 1 and the data's dimensions ({n} items × {d} columns)"
        ))
        .into());
    }
    let beta = a.beta.unwrap_or(1.0);
    let omega = a.omega.unwrap_or(2.0);
    check_positive("beta", beta)?;
    check_positive("omega", omega)?;
    let shape = a.image_shape.as_deref().map(parse_shape).transpose()?;
    if let Some((h, w)) = shape {
        if h * w != d {
            return Err(Error::Input(format!(
                "--image-shape {h}x{w} has {} pixels, the data {d} columns",
                h * w
            ))
            .into());
        }
    }
    let backend = c.open()?;
    let mut out = OutDir::new(c.out.as_deref())?;
    let problem = Nmf::new(rank, d, omega)?;
    let s = OnlineSettings {
        batch: a.batch,
        epochs: a.epochs,
        iters_per_batch: a.iters_per_batch,
        beta,
        seed: c.seed,
    };
    if !c.quiet {
        println!(
            "RRR NMF of {} ({n} items × {d}), rank {rank}, β={beta}, Ω={omega}, batches of {}, {} iterations per batch, {} epochs on {} ({})",
            path.display(),
            s.batch.min(n),
            s.iters_per_batch,
            s.epochs,
            backend.describe(),
            c.precision
        );
    }
    let mut meter = Meter::for_backend(&backend);
    let mut bar = Progress::new(s.epochs as u64, c.quiet, "epochs");
    let (w, stats) = nmf::train_online(&backend, &problem, &y, &s, |e| {
        meter.add_gwms(e.gwms);
        bar.set(e.epoch as u64);
        if !c.quiet {
            bar.suspend(|| {
                println!(
                    "epoch {:>3}/{}: recon_err {:.5}, RRR_err {:.4} → {:.4}, {:.4} GWMs, {:.2} s",
                    e.epoch,
                    s.epochs,
                    e.recon_err,
                    e.rrr_err_start,
                    e.rrr_err_end,
                    e.gwms,
                    e.seconds
                )
            });
        }
        out.metric(&serde_json::to_value(e).expect("epoch stats serialize"))
    })?;
    bar.finish();
    let codes = nmf::nnls_codes(&problem, &w, &y, 200)?;
    let m_ = meter.measure();
    let last = stats.last().map(|e| e.recon_err).unwrap_or(f64::NAN);
    println!("recon_err {last:.5} after {} epochs", stats.len());
    println!("{}", m_.line());
    let common = CommonSummary::new(backend.describe(), c.precision, c.seed, &m_);
    out.summary(
        &common,
        json!({
            "method": "rrr nmf online", "data": path.display().to_string(), "items": n, "dim": d,
            "rank": rank, "beta": beta, "omega": omega, "batch": s.batch.min(n), "epochs": stats.len(),
            "iters_per_batch": s.iters_per_batch, "recon_err": last,
        }),
    )?;
    let tensors = [
        NamedTensor {
            name: "codes".into(),
            shape: vec![n, rank],
            data: codes.transpose().iter().copied().collect(),
        },
        NamedTensor {
            name: "weights".into(),
            shape: vec![rank, d],
            data: w.transpose().iter().copied().collect(),
        },
    ];
    let meta = json!({
        "method": "rrr nmf online", "rank": rank, "beta": beta, "omega": omega, "seed": c.seed,
        "layout": "data[k][j] = sum_i codes[k][i] * weights[i][j]",
    });
    out.file("model.safetensors", &safetensors_bytes(&tensors, &meta)?)?;
    out.file("weights.csv", to_csv(&w).as_bytes())?;
    out.file("codes.csv", to_csv(&codes).as_bytes())?;
    if let Some((h, wd)) = shape {
        let features: Vec<Vec<f64>> = (0..rank)
            .map(|i| w.row(i).iter().copied().collect())
            .collect();
        out.file("features.png", &png_grid(&features, h, wd, 8, true)?)?;
        let recon = &codes * &w;
        let sample = n.min(16);
        let mut imgs: Vec<Vec<f64>> = (0..sample)
            .map(|k| y.row(k).iter().copied().collect())
            .collect();
        imgs.extend((0..sample).map(|k| recon.row(k).iter().copied().collect::<Vec<_>>()));
        let top = y.max().max(1e-300);
        let imgs: Vec<Vec<f64>> = imgs
            .into_iter()
            .map(|v| v.iter().map(|x| x / top).collect())
            .collect();
        out.file(
            "reconstructions.png",
            &png_grid(&imgs, h, wd, sample, false)?,
        )?;
    }
    Ok(())
}

fn data_letters(
    out: &std::path::Path,
    count: usize,
    seed: u64,
    format: LettersFormat,
    preview: Option<&std::path::Path>,
) -> Result<()> {
    if count == 0 {
        return Err(Error::Input("--count must be at least 1".into()).into());
    }
    let (d, _) = letters::generate(count, seed);
    let text = match format {
        LettersFormat::Csv => to_csv(&d),
        LettersFormat::Nmf => {
            let mut s = format!("{}\n", d.ncols());
            s += &to_csv(&d).replace(',', " ");
            s
        }
    };
    write_atomic(out, text.as_bytes())?;
    if let Some(p) = preview {
        let imgs: Vec<Vec<f64>> = (0..count.min(64))
            .map(|k| d.row(k).iter().copied().collect())
            .collect();
        write_atomic(p, &png_grid(&imgs, letters::SIDE, letters::SIDE, 8, false)?)?;
    }
    println!(
        "wrote {count} letter montages ({}×{} px) to {}",
        letters::SIDE,
        letters::SIDE,
        out.display()
    );
    Ok(())
}

fn rrr_nmf_ledm(a: &NmfArgs) -> Result<()> {
    let m = a.ledm;
    if m < 2 {
        return Err(Error::Input(format!("--ledm must be at least 2, got {m}")).into());
    }
    let known = |m: usize| match m {
        6 => Some((5, 0.6)),
        8 => Some((6, 0.7)),
        12 => Some((7, 0.8)),
        16 => Some((8, 0.9)),
        _ => None,
    };
    let rank = a
        .rank
        .or(known(m).map(|k| k.0))
        .ok_or_else(|| Error::Input(format!("--rank is required for --ledm {m}")))?;
    if rank > m {
        return Err(Error::Input(format!("--rank {rank} exceeds the matrix dimension {m}")).into());
    }
    let omega = a.omega.or(known(m).map(|k| k.1)).unwrap_or(1.0);
    let beta = a.beta.unwrap_or(0.3);
    check_positive("beta", beta)?;
    check_positive("omega", omega)?;
    if a.runs == 0 || a.max_iter == 0 {
        return Err(Error::Input("--runs and --max-iter must be at least 1".into()).into());
    }
    let c = &a.common;
    let tol = a.tol.unwrap_or(match c.precision {
        Precision::F64 => 1e-8,
        Precision::F32 => 1e-5,
    });
    let backend = c.open()?;
    let mut out = OutDir::new(c.out.as_deref())?;
    let y = nmf::ledm(m);
    let problem = Nmf::new(rank, m, omega)?;
    let settings = SolveSettings {
        beta,
        max_iter: a.max_iter,
        tol,
        check_every: 64,
        chunk: 10_000,
    };
    if !c.quiet {
        println!(
            "RRR NMF of LEDM m={m}, rank {rank}, β={}, Ω={omega}, tol {tol:e}, {} runs on {} ({})",
            beta,
            a.runs,
            backend.describe(),
            c.precision
        );
    }
    let mut meter = Meter::for_backend(&backend);
    let mut results = vec![];
    let mut best = None;
    let per_batch = match a.parallel_runs {
        0 if backend.gpu_context().is_some() => a.runs,
        0 => 1,
        n => n.min(a.runs),
    };
    let seeds: Vec<u64> = (0..a.runs as u64).map(|r| c.seed + r).collect();
    let mut batch_results = vec![];
    for group in seeds.chunks(per_batch) {
        let mut bar = Progress::new(
            a.max_iter as u64,
            c.quiet,
            &format!("starts {}..", group[0]),
        );
        let rs = if group.len() == 1 {
            vec![nmf::solve(
                &backend,
                &problem,
                &y,
                group[0],
                &settings,
                |i| bar.set(i as u64),
            )?]
        } else {
            nmf::solve_batched(&backend, rank, omega, &y, group, &settings, |i| {
                bar.set(i as u64)
            })?
        };
        bar.finish();
        batch_results.extend(rs);
    }
    for (run, r) in batch_results.into_iter().enumerate() {
        let seed = r.seed;
        meter.add_gwms(r.gwms);
        if !c.quiet {
            println!(
                "run {:>3} (seed {seed}): {} after {} iterations, RRR_err {:.3e}, recon_err {:.3e}, {:.4} GWMs, {:.3} s{}",
                run + 1,
                if r.solved { "solved" } else { "NOT solved" },
                r.iterations,
                r.rrr_err,
                r.recon_err,
                r.gwms,
                r.seconds,
                if r.degenerate > 0 {
                    format!(", {} degenerate projections", r.degenerate)
                } else {
                    String::new()
                }
            );
        }
        let stride = (r.series.len() / 1000).max(1);
        let series: Vec<f64> = r.series.iter().step_by(stride).copied().collect();
        out.metric(&json!({
            "run": run + 1, "seed": seed, "solved": r.solved, "iterations": r.iterations,
            "rrr_err": r.rrr_err, "recon_err": r.recon_err, "gwms": r.gwms, "seconds": r.seconds,
            "degenerate": r.degenerate, "rrr_err_series_stride": stride, "rrr_err_series": series,
        }))?;
        if r.solved || results.iter().all(|p: &nmf::RunResult| !p.solved) {
            best = Some((r.x.clone(), r.w.clone(), seed));
        }
        results.push(r);
    }
    let m_ = meter.measure();
    let solved: Vec<_> = results.iter().filter(|r| r.solved).collect();
    let mut its: Vec<usize> = solved.iter().map(|r| r.iterations).collect();
    let mean = (!its.is_empty()).then(|| its.iter().sum::<usize>() as f64 / its.len() as f64);
    let med = median(&mut its);
    println!(
        "solved {}/{} ({:.0}%); iterations of solved runs: median {}, mean {}",
        solved.len(),
        results.len(),
        100.0 * solved.len() as f64 / results.len() as f64,
        med.map_or("-".into(), |v| format!("{v:.0}")),
        mean.map_or("-".into(), |v| format!("{v:.0}"))
    );
    println!("{}", m_.line());
    let common = CommonSummary::new(backend.describe(), c.precision, c.seed, &m_);
    out.summary(
        &common,
        json!({
            "method": "rrr nmf", "ledm": m, "rank": rank, "beta": beta, "omega": omega, "tol": tol,
            "max_iter": a.max_iter, "runs": results.len(), "solved": solved.len(),
            "success_rate": solved.len() as f64 / results.len() as f64,
            "median_iterations": med, "mean_iterations": mean,
        }),
    )?;
    if let Some((x, w, seed)) = best {
        // The factors of the last solved run (or of the last run when none solved).
        let tensors = [
            NamedTensor {
                name: "codes".into(),
                shape: vec![x.nrows(), x.ncols()],
                data: x.transpose().iter().copied().collect(),
            },
            NamedTensor {
                name: "weights".into(),
                shape: vec![w.nrows(), w.ncols()],
                data: w.transpose().iter().copied().collect(),
            },
        ];
        let meta = json!({
            "method": "rrr nmf", "ledm": m, "rank": rank, "beta": beta, "omega": omega,
            "seed": seed, "layout": "data[k][j] = sum_i codes[k][i] * weights[i][j]",
        });
        out.file("model.safetensors", &safetensors_bytes(&tensors, &meta)?)?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Devices { backend, json } => devices(backend, json),
        Command::Bench(a) => bench(&a).context("bench"),
        Command::Sgd(a) => sgd(&a).context("sgd"),
        Command::Plot(a) => plot(&a).context("plot"),
        Command::Rrr {
            task: RrrTask::Nmf(a),
        } => rrr_nmf(&a).context("rrr nmf"),
        Command::Rrr {
            task: RrrTask::Classify(a),
        } => rrr_classify(&a).context("rrr classify"),
        Command::Rrr {
            task: RrrTask::Autoencode(a),
        } => rrr_autoencode(&a).context("rrr autoencode"),
        Command::Rrr {
            task: RrrTask::Generate(a),
        } => rrr_ae_use(&a, AeUse::Generate).context("rrr generate"),
        Command::Rrr {
            task: RrrTask::Encode(a),
        } => rrr_ae_use(&a, AeUse::Encode).context("rrr encode"),
        Command::Rrr {
            task: RrrTask::Decode(a),
        } => rrr_ae_use(&a, AeUse::Decode).context("rrr decode"),
        Command::Predict(a) => predict(&a).context("predict"),
        Command::Hsic {
            task: HsicTask::Cv(a),
        } => hsic_cv(&a).context("hsic cv"),
        Command::Hsic {
            task: HsicTask::Fit(a),
        } => hsic_fit(&a).context("hsic fit"),
        Command::Hsic {
            task: HsicTask::Predict(a),
        } => hsic_predict(&a).context("hsic predict"),
        Command::Starnet { task } => match task {
            StarnetTask::Train(a) => starnet_train(&a).context("starnet train"),
            StarnetTask::Encode(a) => starnet_encode(&a, false).context("starnet encode"),
            StarnetTask::Score(a) => starnet_encode(&a, true).context("starnet score"),
            StarnetTask::Decode(a) => starnet_decode(&a).context("starnet decode"),
            StarnetTask::Sample(a) => starnet_sample(&a).context("starnet sample"),
        },
        Command::Data {
            task: DataTask::Majority(a),
        } => data_majority(&a),
        Command::Data {
            task:
                DataTask::Letters {
                    out,
                    count,
                    seed,
                    format,
                    preview,
                },
        } => data_letters(&out, count, seed, format, preview.as_deref()),
    }
}

/// lavapipe prints an error line per adapter probe when XDG_RUNTIME_DIR is
/// unset; point it at a private directory before any thread starts.
fn quiet_software_adapter() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join(format!("gradfree-xdg-{}", std::process::id()));
        if std::fs::create_dir_all(&dir).is_ok() {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
            }
            // SAFETY: called first thing in main, before any other thread exists.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        }
    }
}

fn main() -> ExitCode {
    gradfree::keep_freed_memory();
    quiet_software_adapter();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    // The command runs on a rayon worker: a parallel loop started from a
    // worker queues on its own deque, where one started from the main thread
    // wakes the pool through the kernel and sleeps until it is done (an HSIC
    // fit runs thousands of such small loops; this was ~15% of its time).
    let pool = rayon::ThreadPoolBuilder::new()
        .stack_size(16 << 20)
        .build_global();
    let outcome = match pool {
        Ok(()) => rayon::scope(|_| run(cli)),
        Err(_) => run(cli),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let code = e
                .chain()
                .find_map(|c| c.downcast_ref::<Error>())
                .map_or(1, Error::exit_code);
            ExitCode::from(code as u8)
        }
    }
}

fn data_majority(a: &MajorityArgs) -> Result<()> {
    let circuit = Circuit::random(
        a.inputs,
        a.depth,
        a.fanin,
        a.width.unwrap_or(a.inputs),
        a.seed,
    )?;
    let (train, test) = circuit.split(a.seed);
    let name = |suffix: &str| {
        let mut p = a.out.clone().into_os_string();
        p.push(suffix);
        PathBuf::from(p)
    };
    for (d, suffix) in [(&train, "_train"), (&test, "_test")] {
        write_atomic(&name(suffix), d.to_lwl().as_bytes())?;
    }
    let ones = train.y.iter().chain(&test.y).filter(|&&c| c == 1).count();
    println!(
        "wrote {} and {} ({} + {} items, class 1 in {:.1}%)",
        name("_train").display(),
        name("_test").display(),
        train.len(),
        test.len(),
        100.0 * ones as f64 / (train.len() + test.len()) as f64
    );
    Ok(())
}

/// An item count or a percentage of the batch ("5", "0.5%").
fn parse_budget(flag: &str, v: Option<&str>, batch: usize) -> Result<usize> {
    let Some(v) = v else { return Ok(0) };
    let bad = || Error::Input(format!("--{flag} '{v}' is not a count or a percentage"));
    if let Some(p) = v.strip_suffix('%') {
        let p: f64 = p.trim().parse().map_err(|_| bad())?;
        if !(0.0..=100.0).contains(&p) {
            return Err(bad().into());
        }
        return Ok((p / 100.0 * batch as f64).round() as usize);
    }
    let n: usize = v.trim().parse().map_err(|_| bad())?;
    if n >= batch {
        return Err(
            Error::Input(format!("--{flag} {n} must be below the batch size {batch}")).into(),
        );
    }
    Ok(n)
}

fn load_labeled(
    path: &std::path::Path,
    format: LabeledFormat,
    labels: Option<&PathBuf>,
) -> Result<Labeled> {
    Ok(labeled::load(path, format, labels.map(|p| p.as_path()))?)
}

/// `--split F`: a seeded held-out fraction of the training data (the same
/// items for `rrr classify` and `sgd` with the same seed).
fn split_held_out(
    train: &Labeled,
    have_test: bool,
    f: f64,
    seed: u64,
) -> Result<(Labeled, Option<Labeled>)> {
    if have_test {
        return Err(Error::Input("--split and --test exclude each other".into()).into());
    }
    if !(f > 0.0 && f < 1.0) {
        return Err(Error::Input(format!("--split must be in (0, 1), got {f}")).into());
    }
    let order = gradfree::train::epoch_order(train.len(), seed, 0);
    let held = ((train.len() as f64) * f).round() as usize;
    Ok((
        train.subset(&order[held..]),
        Some(train.subset(&order[..held])),
    ))
}

/// The bytes of DIR/checkpoint.safetensors and its name for messages
/// (`--resume DIR`).
fn read_checkpoint(dir: &std::path::Path) -> Result<(Vec<u8>, String)> {
    let path = dir.join("checkpoint.safetensors");
    let bytes = std::fs::read(&path)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    Ok((bytes, path.display().to_string()))
}

fn rrr_classify(a: &ClassifyArgs) -> Result<()> {
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

fn predict(a: &PredictArgs) -> Result<()> {
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

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt(),
    )
}

fn hsic_cv(a: &HsicCvArgs) -> Result<()> {
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

fn hsic_fit(a: &HsicFitArgs) -> Result<()> {
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

fn hsic_predict(a: &HsicPredictArgs) -> Result<()> {
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

fn load_model(path: &std::path::Path) -> Result<starnet::StarNet> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Input(format!("cannot read {}: {e}", path.display())))?;
    Ok(starnet::StarNet::from_bytes(
        &bytes,
        &path.display().to_string(),
    )?)
}

fn image_shape(flag: Option<&str>) -> Result<Option<(usize, usize)>> {
    flag.map(parse_shape).transpose()
}

/// A grid PNG, 16 images per grid row, of the first `take` rows of each
/// block (so blocks of 16 line up: targets above reconstructions).
fn rows_png(
    blocks: &[&[f64]],
    shape: (usize, usize),
    take: usize,
) -> gradfree::error::Result<Vec<u8>> {
    let d = shape.0 * shape.1;
    let mut images = vec![];
    for b in blocks {
        for i in 0..take.min(b.len() / d) {
            images.push(b[i * d..(i + 1) * d].to_vec());
        }
    }
    output::png_grid(&images, shape.0, shape.1, 16, false)
}

fn rows_csv(x: &[f64], d: usize) -> String {
    let mut s = String::new();
    for row in x.chunks(d.max(1)) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
        s += &cells.join(",");
        s.push('\n');
    }
    s
}

fn starnet_train(a: &StarnetTrainArgs) -> Result<()> {
    let c = &a.common;
    let mut rows = data::images::load_rows(&a.data, image_shape(a.image_shape.as_deref())?)?;
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
    for w in starnet::check_widths(&widths)? {
        eprintln!("warning: {w}");
    }
    check_positive("--alpha", a.alpha)?;
    let settings = starnet::Settings {
        epochs: a.epochs,
        alpha: a.alpha,
        weight_sample: a.weight_sample,
        seed: c.seed,
        conv,
    };
    let backend = c.open()?;
    let mut out = OutDir::new(c.out.as_deref())?;
    let mut meter = Meter::for_backend(&backend);
    let n = rows.len();
    if !c.quiet {
        println!(
            "StarNet {} on {n} items of {} values, α {}, {} epochs per layer{}, on {} ({})",
            widths
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
                .join(" → "),
            rows.dim,
            a.alpha,
            a.epochs,
            a.weight_sample
                .map_or(String::new(), |k| format!(", weights from {k} items")),
            backend.describe(),
            c.precision
        );
    }
    let x = &rows.x;
    let mut pngs: Vec<(String, Vec<u8>)> = vec![];
    let (net, gwms) = {
        let mut metric_lines = vec![];
        let result = starnet::train(
            &backend,
            x,
            &widths,
            &settings,
            |r| {
                if !c.quiet {
                    println!(
                        "layer {} epoch {}: rms {:.5}, elastic {:.3}, {:.3} GWMs, {:.2} s{}",
                        r.layer,
                        r.epoch,
                        r.rms,
                        r.elastic,
                        r.gwms,
                        r.seconds,
                        r.ridge.map_or(String::new(), |l| format!(
                            ", ridge λ {l:.2e} (rank-deficient system)"
                        ))
                    );
                }
                metric_lines.push(serde_json::to_value(r).expect("json"));
                Ok(())
            },
            |li, trained, h| {
                // Targets vs the reconstruction of the data from this layer's latents.
                if let Some(shape) = rows.shape {
                    let k = 16.min(n);
                    let d0 = trained[0].d_in;
                    let mut rec = h[..k * d0].to_vec();
                    for l in trained {
                        rec = l.forward(&backend, &rec, Some(a.alpha))?;
                    }
                    pngs.push((
                        format!("layer{li}.png"),
                        rows_png(&[&x[..k * rows.dim], &rec], shape, 16)?,
                    ));
                }
                Ok(())
            },
        );
        for m in &metric_lines {
            out.metric(m)?;
        }
        result?
    };
    meter.add_gwms(gwms);
    let (codes, scores) = net.encode(&backend, x)?;
    let recon = net.decode(&backend, &codes)?;
    let (rms, elastic) = starnet::errors(&backend, &recon, x, rows.dim)?;
    let pca = starnet::pca_rms(x, rows.dim, widths[0], 2000, 10_000, c.seed);
    let big_l = net.layers.len();
    let mean_score: Vec<f64> = (0..big_l)
        .map(|l| (0..n).map(|i| scores[i * big_l + l]).sum::<f64>() / n as f64)
        .collect();
    println!(
        "encode → decode of the training data: rms {rms:.5}, elastic {elastic:.3}; PCA with {} components (linear baseline): rms {pca:.5}",
        widths[0]
    );
    if let Some(shape) = rows.shape {
        let k = 16.min(n);
        pngs.push((
            "reconstructions.png".into(),
            rows_png(&[&x[..k * rows.dim], &recon[..k * rows.dim]], shape, 16)?,
        ));
        let samples = net.decode(&backend, &net.sample_codes(64, c.seed))?;
        pngs.push(("samples.png".into(), rows_png(&[&samples], shape, 64)?));
    }
    let m = meter.measure();
    println!("{}", m.line());
    for (name, bytes) in &pngs {
        out.file(name, bytes)?;
    }
    out.file("model.safetensors", &net.to_bytes()?)?;
    let common = CommonSummary::new(backend.describe(), c.precision, c.seed, &m);
    out.summary(
        &common,
        json!({"method": "starnet train", "widths": widths, "alpha": a.alpha, "epochs": a.epochs,
               "weight_sample": a.weight_sample, "items": n, "rms": rms, "elastic": elastic,
               "pca_rms": pca, "mean_residual_per_layer": mean_score}),
    )?;
    Ok(())
}

fn starnet_encode(a: &StarnetDataArgs, score: bool) -> Result<()> {
    let c = &a.common;
    let net = load_model(&a.model)?;
    let mut rows = data::images::load_rows(&a.data, None)?;
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
    let out = OutDir::new(c.out.as_deref())?;
    let mut meter = Meter::for_backend(&backend);
    let (codes, scores) = net.encode(&backend, &rows.x)?;
    let n = rows.len();
    let gwms: f64 = net
        .layers
        .iter()
        .map(|l| 2e-9 * (n * l.d_in * l.d_out) as f64)
        .sum();
    meter.add_gwms(gwms);
    let big_l = net.layers.len();
    for l in 0..big_l {
        let col: Vec<f64> = (0..n).map(|i| scores[i * big_l + l]).collect();
        let mean = col.iter().sum::<f64>() / n as f64;
        let max = col.iter().copied().fold(0.0, f64::max);
        println!(
            "layer {}: residual norm mean {mean:.5}, max {max:.5}",
            l + 1
        );
    }
    let m = meter.measure();
    println!("{}", m.line());
    if score {
        out.file("scores.csv", rows_csv(&scores, big_l).as_bytes())?;
    } else {
        out.file("codes.csv", rows_csv(&codes, net.widths[0]).as_bytes())?;
    }
    let common = CommonSummary::new(backend.describe(), c.precision, c.seed, &m);
    out.summary(
        &common,
        json!({"method": if score { "starnet score" } else { "starnet encode" }, "items": n}),
    )?;
    Ok(())
}

fn starnet_decode(a: &StarnetDecodeArgs) -> Result<()> {
    let c = &a.common;
    let net = load_model(&a.model)?;
    let codes = data::matrix::load_table(&a.codes, data::matrix::TableFormat::Csv)?;
    if codes.ncols() != net.widths[0] {
        return Err(Error::Input(format!(
            "{} has codes of {} values; the model's codes have {}",
            a.codes.display(),
            codes.ncols(),
            net.widths[0]
        ))
        .into());
    }
    let backend = c.open()?;
    let out = OutDir::new(c.out.as_deref())?;
    let mut meter = Meter::for_backend(&backend);
    let x = net.decode(&backend, &data::matrix::row_major(&codes))?;
    meter.add_gwms(
        net.layers
            .iter()
            .map(|l| 1e-9 * (codes.nrows() * l.d_in * l.d_out) as f64)
            .sum(),
    );
    let m = meter.measure();
    println!("decoded {} codes; {}", codes.nrows(), m.line());
    out.file("decoded.csv", rows_csv(&x, net.data_width()).as_bytes())?;
    if let Some(shape) = image_shape(a.image_shape.as_deref())?.or_else(|| square(net.data_width()))
    {
        out.file("decoded.png", &rows_png(&[&x], shape, 256)?)?;
    }
    let common = CommonSummary::new(backend.describe(), c.precision, c.seed, &m);
    out.summary(
        &common,
        json!({"method": "starnet decode", "items": codes.nrows()}),
    )?;
    Ok(())
}

/// A square image shape for widths that are perfect squares ≥ 16.
fn square(d: usize) -> Option<(usize, usize)> {
    let s = (d as f64).sqrt().round() as usize;
    (d >= 16 && s * s == d).then_some((s, s))
}

fn starnet_sample(a: &StarnetSampleArgs) -> Result<()> {
    let c = &a.common;
    let net = load_model(&a.model)?;
    let backend = c.open()?;
    let out = OutDir::new(c.out.as_deref())?;
    let mut meter = Meter::for_backend(&backend);
    let x = net.decode(&backend, &net.sample_codes(a.count, c.seed))?;
    meter.add_gwms(
        net.layers
            .iter()
            .map(|l| 1e-9 * (a.count * l.d_in * l.d_out) as f64)
            .sum(),
    );
    let m = meter.measure();
    println!("{} samples; {}", a.count, m.line());
    out.file("samples.csv", rows_csv(&x, net.data_width()).as_bytes())?;
    if let Some(shape) = image_shape(a.image_shape.as_deref())?.or_else(|| square(net.data_width()))
    {
        out.file("samples.png", &rows_png(&[&x], shape, 256)?)?;
    }
    let common = CommonSummary::new(backend.describe(), c.precision, c.seed, &m);
    out.summary(
        &common,
        json!({"method": "starnet sample", "items": a.count}),
    )?;
    Ok(())
}

fn widths_list(flag: &str, what: &str) -> Result<Vec<usize>> {
    flag.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse::<usize>().ok().filter(|&w| w > 0).ok_or_else(|| {
                Error::Input(format!("{what}: '{t}' is not a positive width")).into()
            })
        })
        .collect()
}

fn rrr_autoencode(a: &AutoencodeArgs) -> Result<()> {
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
fn ae_reconstruct(
    auto: &rrr::autoencode::Autoencoder,
    m: &rrr::Model,
    d: &[f64],
) -> Vec<f64> {
    auto.decode(m, &auto.encode(m, d))
}

/// One histogram per list side by side (the per-code-node distributions,
/// the paper's figure 20): `bins` bins over each list's range, bar heights
/// scaled to the tallest bin.
fn histogram_strip(lists: &[Vec<f64>], bins: usize) -> gradfree::error::Result<Vec<u8>> {
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
fn train_generator(
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
fn generated_png(
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

/// What `rrr generate|encode|decode` do with a trained autoencoder.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AeUse {
    Generate,
    Encode,
    Decode,
}

fn rrr_ae_use(a: &AeModelArgs, what: AeUse) -> Result<()> {
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

fn bench(a: &BenchArgs) -> Result<()> {
    use gradfree::bench;
    let old = a.compare.as_deref().map(bench::load).transpose()?;
    let base = match &a.out {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("gradfree-bench-{}", std::process::id())),
    };
    let prec_bytes = if a.precision == Precision::F64 {
        8.0
    } else {
        4.0
    };
    if let Some(m) = a.mnist.as_ref().filter(|m| !m.is_file()) {
        return Err(Error::Input(format!("--mnist: no file {}", m.display())).into());
    }
    // The child runs start elsewhere: give them an absolute path.
    let mnist = a
        .mnist
        .as_ref()
        .map(|m| std::path::absolute(m).unwrap_or(m.clone()));
    let mut workloads = bench::prepare(a.suite, &base.join("data"), prec_bytes, mnist.as_deref())?;
    if let Some(only) = &a.only {
        let names: Vec<&str> = only.split(',').map(str::trim).collect();
        if let Some(n) = names
            .iter()
            .find(|n| !workloads.iter().any(|w| w.name == **n))
        {
            return Err(Error::Input(format!("--only: no workload '{n}'")).into());
        }
        workloads.retain(|w| names.contains(&w.name.as_str()));
    }
    // Devices and their copy-kernel rooflines.
    let mut copy_gbs = std::collections::BTreeMap::new();
    let devices: Vec<String> = match &a.devices {
        Some(d) => d.split(',').map(|t| t.trim().to_string()).collect(),
        None => {
            let mut v = vec!["cpu".to_string()];
            let req = GpuRequest {
                allow_software: true,
                ..Default::default()
            };
            if gradfree::gpu::GpuContext::open(&req, Precision::F32).is_ok() {
                v.push("gpu".into());
            }
            v
        }
    };
    for d in &devices {
        match d.as_str() {
            "cpu" => {
                copy_gbs.insert("cpu".to_string(), bench::cpu_copy_gbs());
            }
            "gpu" => {
                let req = GpuRequest {
                    allow_software: true,
                    ..Default::default()
                };
                let ctx = gradfree::gpu::GpuContext::open(&req, Precision::F32)?;
                let copy = gradfree::kernels::copy::PreparedCopy::new(&ctx, 64 << 20)?;
                copy.run(1)?;
                let mut best = 0.0f64;
                for _ in 0..3 {
                    let t = std::time::Instant::now();
                    copy.run(4)?;
                    best = best.max(8.0 * copy.bytes as f64 / t.elapsed().as_secs_f64() / 1e9);
                }
                copy_gbs.insert("gpu".to_string(), best);
            }
            other => {
                return Err(Error::Input(format!("--devices: '{other}' is not cpu or gpu")).into());
            }
        }
    }
    let exe = std::env::current_exe().map_err(|e| Error::Input(format!("own executable: {e}")))?;
    let mut rows = vec![];
    for d in &devices {
        for w in &workloads {
            if !a.quiet {
                println!("{} on {d}: {}", w.name, w.what);
            }
            let row = bench::run_one(
                &exe,
                w,
                d,
                &a.precision.to_string(),
                &bench::run_dir(&base, w, d),
                copy_gbs.get(d).copied(),
            );
            if !a.quiet {
                println!("  {}", row.status);
            }
            rows.push(row);
        }
    }
    let report = bench::Report {
        schema: bench::SCHEMA.into(),
        suite: format!("{:?}", a.suite).to_lowercase(),
        precision: a.precision.to_string(),
        copy_gbs,
        rows,
    };
    let md = bench::markdown(&report);
    println!("{md}");
    if let Some(o) = &old {
        println!("{}", bench::compare(&report, o));
    }
    // RRR against SGD: test error against cumulative GWMs, per device.
    for d in &devices {
        for (task, rrr_w, sgd_w) in bench::CURVES {
            let find = |n: &str| workloads.iter().find(|w| w.name == n);
            let (Some(rw), Some(sw)) = (find(rrr_w), find(sgd_w)) else {
                continue;
            };
            let get = |w: &bench::Workload| {
                bench::curve(
                    &bench::run_dir(&base, w, d).join("metrics.jsonl"),
                    "gwms",
                    "test_err",
                )
            };
            if let (Ok(r), Ok(s)) = (get(rw), get(sw)) {
                let last = |c: &[(f64, f64)]| c[c.len() - 1];
                let ((rg, re), (sg, se)) = (last(&r), last(&s));
                println!(
                    "{task} on {d}: RRR test_err {re:.4} after {rg:.3} GWMs, SGD {se:.4} after {sg:.3} GWMs (curves-{task}-{d}.png: RRR blue, SGD red)"
                );
                let png = output::line_plot(&[("RRR".into(), r), ("SGD".into(), s)], true)?;
                write_atomic(&base.join(format!("curves-{task}-{d}.png")), &png)?;
            }
        }
    }
    let json = serde_json::to_string_pretty(&report).expect("json");
    write_atomic(&base.join("bench.json"), json.as_bytes())?;
    write_atomic(&base.join("bench.md"), md.as_bytes())?;
    if a.out.is_none() {
        println!("wrote {}", base.display());
    }
    if report.rows.iter().any(|r| r.status.starts_with("failed")) {
        return Err(Error::Numeric("some workloads failed (see the table)".into()).into());
    }
    Ok(())
}

fn sgd(a: &SgdArgs) -> Result<()> {
    let c = &a.common;
    let widths = widths_list(&a.layers, "--layers")?;
    let mut train = load_labeled(&a.train, LabeledFormat::Auto, None)?;
    let mut test = a
        .test
        .as_ref()
        .map(|p| load_labeled(p, LabeledFormat::Auto, None))
        .transpose()?;
    if let Some(f) = a.split {
        (train, test) = split_held_out(&train, test.is_some(), f, c.seed)?;
    }
    let mut net = gradfree::methods::sgd::SgdNet::random(&widths, c.seed)?;
    for (d, what) in std::iter::once((&train, "training")).chain(test.iter().map(|t| (t, "test"))) {
        if d.dim != widths[0]
            || d.y
                .iter()
                .any(|&y| y as usize >= *widths.last().expect("widths"))
        {
            return Err(Error::Input(format!(
                "the {what} data ({} features, classes up to {}) do not fit the net {widths:?}",
                d.dim,
                d.y.iter().max().copied().unwrap_or(0)
            ))
            .into());
        }
    }
    let s = gradfree::methods::sgd::SgdSettings {
        batch: a.batch,
        epochs: a.epochs,
        lr: a.lr,
        seed: c.seed,
    };
    let backend = c.open()?;
    let mut out = OutDir::new(c.out.as_deref())?;
    let mut meter = Meter::for_backend(&backend);
    let mut last = None;
    let mut lines = vec![];
    gradfree::methods::sgd::train(&backend, &mut net, &train, test.as_ref(), &s, |e| {
        meter.add_gwms(e.gwms);
        if !c.quiet {
            println!(
                "epoch {}: loss {:.4}, train_err {:.4}{}, {:.4} GWMs, {:.2} s",
                e.epoch,
                e.loss,
                e.train_err,
                e.test_err
                    .map_or(String::new(), |t| format!(", test_err {t:.4}")),
                e.gwms,
                e.seconds
            );
        }
        lines.push(serde_json::to_value(e).expect("json"));
        last = Some((e.train_err, e.test_err));
        Ok(())
    })?;
    for l in &lines {
        out.metric(l)?;
    }
    let (train_err, test_err) = last.unwrap_or((f64::NAN, None));
    println!(
        "after {} epochs: train_err {train_err:.4}{}",
        a.epochs,
        test_err.map_or(String::new(), |t| format!(", test_err {t:.4}"))
    );
    let m = meter.measure();
    println!("{}", m.line());
    let common = CommonSummary::new(backend.describe(), c.precision, c.seed, &m);
    out.summary(
        &common,
        json!({"method": "sgd", "widths": widths, "settings": s, "train_err": train_err,
               "test_err": test_err, "epochs": a.epochs,
               "work": "3 x |K| x |E| weight-multiplies per step"}),
    )?;
    Ok(())
}

fn plot(a: &PlotArgs) -> Result<()> {
    let mut series = vec![];
    let mut csv = format!("series,{},{}\n", a.x, a.y);
    for spec in &a.series {
        let (name, path) = spec
            .split_once('=')
            .ok_or_else(|| Error::Input(format!("--series '{spec}' is not NAME=FILE")))?;
        let pts = gradfree::bench::curve(std::path::Path::new(path), &a.x, &a.y)?;
        for (x, y) in &pts {
            csv += &format!("{name},{x},{y}\n");
        }
        series.push((name.to_string(), pts));
    }
    let png = output::line_plot(&series, !a.linear)?;
    write_atomic(&a.out, &png)?;
    write_atomic(&a.out.with_extension("csv"), csv.as_bytes())?;
    let colours = ["blue", "red", "green", "orange", "purple"];
    for (k, (name, pts)) in series.iter().enumerate() {
        let (x, y) = pts[pts.len() - 1];
        let best = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        println!(
            "{name} ({}): {} points, last {} {x:.4} → {} {y:.4}, best {best:.4}",
            colours[k % colours.len()],
            pts.len(),
            a.x,
            a.y
        );
    }
    Ok(())
}
