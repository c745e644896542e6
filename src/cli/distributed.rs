//! The processes of one run: one, or the ranks of an MPI job
//! (`mpirun -np N gradfree …`, with a build that has the `mpi` feature).

use std::sync::{Arc, OnceLock};

use gradfree::Error;
use gradfree::engine::{Collective, Local};

/// Whether a run started by `mpirun` joins its MPI job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Distributed {
    /// Join the MPI job when `mpirun` (or another launcher) started this
    /// process; else run alone.
    #[default]
    Auto,
    /// Always run alone (every rank would train its own model).
    Off,
}

/// The run's collective, set once at start.
static COLLECTIVE: OnceLock<Arc<dyn Collective>> = OnceLock::new();

/// The size of the job a launcher started this process in, from the
/// environment it sets (Open MPI, then PMI/PMIx launchers such as MPICH's
/// Hydra and Slurm).
fn launched_world() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_SIZE",
        "PMI_SIZE",
        "PMIX_SIZE",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// What must live until the process ends: the MPI environment, when the
/// run joined a job (dropping it finalizes MPI).
pub(crate) struct Job {
    #[cfg(feature = "mpi")]
    _mpi: Option<gradfree::engine::mpi::MpiWorld>,
}

/// Joins the MPI job this process was launched in (as `mode` allows), or
/// runs alone.
pub(crate) fn start(mode: Distributed) -> Result<Job, Error> {
    let launched = launched_world().filter(|_| mode == Distributed::Auto);
    #[cfg(feature = "mpi")]
    if launched.is_some() {
        let world = gradfree::engine::mpi::MpiWorld::init()
            .ok_or_else(|| Error::Numeric("MPI was initialized twice".into()))?;
        let c: Arc<dyn Collective> = world.collective();
        let _ = COLLECTIVE.set(c);
        return Ok(Job { _mpi: Some(world) });
    }
    #[cfg(not(feature = "mpi"))]
    if let Some(n) = launched.filter(|&n| n > 1) {
        return Err(Error::Input(format!(
            "started as one of {n} MPI processes, but this gradfree was built without MPI: build it with `cargo build --release --features mpi` (or run with --distributed off, and every process trains alone)"
        )));
    }
    let _ = launched;
    Ok(Job {
        #[cfg(feature = "mpi")]
        _mpi: None,
    })
}

/// The collective of this run: the MPI job's, or a world of one.
pub(crate) fn collective() -> Arc<dyn Collective> {
    COLLECTIVE.get().cloned().unwrap_or_else(|| Arc::new(Local))
}

/// Refuses a command that runs in one process when the job has several.
pub(crate) fn single(command: &str) -> Result<(), Error> {
    let n = collective().world();
    if n > 1 {
        return Err(Error::Input(format!(
            "{command} runs in one process; this job has {n} (run it without mpirun)"
        )));
    }
    Ok(())
}

/// The bytes of `path` as rank 0 reads them, on every rank (a checkpoint
/// to resume from need only be where rank 0 writes).
pub(crate) fn read_on_root(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    let c = collective();
    if c.world() == 1 {
        return gradfree::io::read_file(path);
    }
    let mine = (c.rank() == 0).then(|| gradfree::io::read_file(path));
    // One byte of status (1: the file follows; 0: rank 0's error follows).
    let mut buf = match &mine {
        Some(Ok(bytes)) => [&[1u8][..], bytes].concat(),
        Some(Err(e)) => [&[0u8][..], e.to_string().as_bytes()].concat(),
        None => vec![],
    };
    c.broadcast_bytes(&mut buf, 0)?;
    match (mine, buf.first()) {
        (Some(Err(e)), _) => Err(e),
        (_, Some(1)) => Ok(buf.split_off(1)),
        _ => Err(Error::Input(format!(
            "rank 0: {}",
            String::from_utf8_lossy(buf.get(1..).unwrap_or_default())
        ))),
    }
}
