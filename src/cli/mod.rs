//! The `gradfree` command line: one module per command group, each parsing its arguments into the library's configuration, calling the library's run and printing. No training happens here.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use gradfree::Error;
use gradfree::gpu::BackendChoice;

mod autoencode;
mod bench;
mod classify;
mod common;
mod data;
mod devices;
mod distributed;
mod hsic;
mod nmf;
mod plot;
mod sgd;
mod starnet;

/// Gradient-free neural-network training on GPUs (wgpu) and CPUs.
#[derive(Parser, Debug)]
#[command(name = "gradfree", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Under mpirun: auto = the processes train one model together (a
    /// build with the `mpi` feature); off = each runs alone.
    #[arg(long, global = true, value_enum, default_value_t)]
    distributed: distributed::Distributed,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Benchmark suite: GWMs, seconds, GWMs/s, energy, peak memory and
    /// bandwidth per workload and device (bench.json, bench.md).
    Bench(bench::BenchArgs),
    /// One bench workload in this process (run by `bench`).
    #[command(hide = true)]
    BenchWorker(bench::BenchWorkerArgs),
    /// Minibatch SGD baseline (softmax cross-entropy, ReLU) on the classifier
    /// nets, on the same backends, with work counted in GWMs.
    Sgd(Box<sgd::SgdArgs>),
    /// Curves from runs' metrics.jsonl: a y field against cumulative GWMs
    /// (or joules), as curves.csv and a PNG (e.g. RRR vs SGD test error).
    Plot(plot::PlotArgs),
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
    Predict(classify::PredictArgs),
    /// Layer-wise HSIC networks with closed-form weights: W_s (kernel mean
    /// embedding) or W* (the ISM solution).
    Hsic {
        #[command(subcommand)]
        task: hsic::HsicTask,
    },
    /// StarNet: decoders trained layer by layer with exact least-squares
    /// solves (feedforward or conv-unpool layers).
    Starnet {
        #[command(subcommand)]
        task: starnet::StarnetTask,
    },
    /// Data generators.
    Data {
        #[command(subcommand)]
        task: data::DataTask,
    },
}

#[derive(Subcommand, Debug)]
enum RrrTask {
    /// Exact non-negative matrix factorization by RRR.
    Nmf(Box<nmf::NmfArgs>),
    /// Train a classifier on any acyclic network (exemptions, relabeling, checkpoints).
    Classify(Box<classify::ClassifyArgs>),
    /// Train a cyclic autoencoder with iDE codes (or the binary-encoding task),
    /// optionally with the generative model's genuine/fake classifier.
    Autoencode(Box<autoencode::AutoencodeArgs>),
    /// Sample codes, keep those the generator accepts, decode: generated.png.
    Generate(Box<autoencode::AeModelArgs>),
    /// Codes of data rows under a trained autoencoder: codes.csv.
    Encode(Box<autoencode::AeModelArgs>),
    /// Data of codes (CSV rows) under a trained autoencoder: decoded.csv (and decoded.png).
    Decode(Box<autoencode::AeModelArgs>),
}

/// The commands that train one model over the ranks of an MPI job; the
/// others run in one process.
fn data_parallel(c: &Command) -> bool {
    matches!(
        c,
        Command::Sgd(_)
            | Command::Rrr {
                task: RrrTask::Nmf(_) | RrrTask::Classify(_) | RrrTask::Autoencode(_)
            }
            | Command::Hsic {
                task: hsic::HsicTask::Cv(_) | hsic::HsicTask::Fit(_)
            }
            | Command::Starnet {
                task: starnet::StarnetTask::Train(_)
            }
    )
}

/// Runs one command.
fn run(cli: Cli) -> Result<()> {
    use autoencode::AeUse;
    if !data_parallel(&cli.command) {
        distributed::single("this command")?;
    }
    match cli.command {
        Command::Devices { backend, json } => devices::devices(backend, json),
        Command::Bench(a) => bench::bench(&a).context("bench"),
        Command::BenchWorker(a) => bench::bench_worker(&a).context("bench worker"),
        Command::Sgd(a) => sgd::sgd(&a).context("sgd"),
        Command::Plot(a) => plot::plot(&a).context("plot"),
        Command::Predict(a) => classify::predict(&a).context("predict"),
        Command::Rrr { task } => match task {
            RrrTask::Nmf(a) => nmf::rrr_nmf(&a).context("rrr nmf"),
            RrrTask::Classify(a) => classify::rrr_classify(&a).context("rrr classify"),
            RrrTask::Autoencode(a) => autoencode::rrr_autoencode(&a).context("rrr autoencode"),
            RrrTask::Generate(a) => {
                autoencode::rrr_ae_use(&a, AeUse::Generate).context("rrr generate")
            }
            RrrTask::Encode(a) => autoencode::rrr_ae_use(&a, AeUse::Encode).context("rrr encode"),
            RrrTask::Decode(a) => autoencode::rrr_ae_use(&a, AeUse::Decode).context("rrr decode"),
        },
        Command::Hsic { task } => hsic::exec(task),
        Command::Starnet { task } => starnet::exec(task),
        Command::Data { task } => data::exec(task),
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

/// Parses the command line, runs the command on a rayon worker, and maps
/// errors to exit codes (2: bad input, 1: runtime failure).
pub(crate) fn main() -> ExitCode {
    gradfree::keep_freed_memory();
    quiet_software_adapter();
    // Output piped into `head` ends the program quietly, as for any Unix
    // tool, instead of failing a print.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to the default, before any
    // thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    common::record_given(&matches);
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    // Joins the MPI job (when launched in one) before any thread starts;
    // `_job` finalizes MPI when main returns.
    let _job = match distributed::start(cli.distributed) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    let world = distributed::collective();
    // Messages from a job of several processes say which one speaks.
    let who = if world.world() > 1 {
        format!(" (rank {} of {})", world.rank(), world.world())
    } else {
        String::new()
    };
    // The command runs on a rayon worker: a parallel loop started from a
    // worker queues on its own deque, where one started from the main thread
    // wakes the pool through the kernel and sleeps until it is done (an HSIC
    // fit runs thousands of such small loops; this was ~15% of its time).
    let pool = rayon::ThreadPoolBuilder::new()
        .stack_size(16 << 20)
        .build_global();
    set_panic_hook(&world, &who);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match pool {
        Ok(()) => rayon::scope(|_| run(cli)),
        Err(_) => run(cli),
    }));
    let Ok(outcome) = outcome else {
        return ExitCode::from(1);
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error{who}: {e:#}");
            let code = e
                .chain()
                .find_map(|c| c.downcast_ref::<Error>())
                .map_or(1, Error::exit_code);
            // One rank's failure ends the job: the others may be waiting
            // for it in a collective.
            if world.world() > 1 {
                world.abort(code);
            }
            ExitCode::from(code as u8)
        }
    }
}

/// A panic is a bug, never an answer to input: one line that says where,
/// no backtrace (GRADFREE_BACKTRACE=1 keeps Rust's own report), exit 1;
/// in a job of several processes it aborts them all.
fn set_panic_hook(world: &std::sync::Arc<dyn gradfree::engine::Collective>, who: &str) {
    if std::env::var_os("GRADFREE_BACKTRACE").is_none() {
        let (world, who) = (world.clone(), who.to_string());
        std::panic::set_hook(Box::new(move |info| {
            let what = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let at = info
                .location()
                .map_or(String::new(), |l| format!(" at {}:{}", l.file(), l.line()));
            eprintln!(
                "error{who}: internal error{at}: {what} (a bug in gradfree: please report it)"
            );
            // The other ranks would wait in their next collective forever.
            if world.world() > 1 {
                world.abort(1);
            }
        }));
    } else if world.world() > 1 {
        let (world, default) = (world.clone(), std::panic::take_hook());
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            world.abort(1);
        }));
    }
}
