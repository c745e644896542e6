//! The MPI [`Collective`] (cargo feature `mpi`): the processes of
//! `mpirun -np N gradfree …` train one model, each on its share of every
//! batch, and their sums over items meet in MPI's allreduce (shared memory
//! inside a node, the network's fastest transport between nodes). The only
//! module that calls MPI.
//!
//! MPI is initialized with `MPI_THREAD_SERIALIZED`: the command runs on a
//! rayon worker, not the main thread, and one lock keeps calls one at a
//! time.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::{Threading, Universe};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::{CommunicatorCollectives, Equivalence, Root};

use super::collective::{Collective, CommStats};
use crate::error::{Error, Result};

/// An initialized MPI environment; dropping it finalizes MPI, so it must
/// outlive every collective made from it.
pub struct MpiWorld {
    _universe: Universe,
    collective: Arc<MpiCollective>,
}

impl MpiWorld {
    /// Initializes MPI (once per process); `None` when it already was.
    pub fn init() -> Option<Self> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Serialized)?;
        if threading < Threading::Serialized {
            log::warn!("MPI grants thread level {threading:?}; calls stay on one thread at a time");
        }
        let world = universe.world();
        let local = world.split_shared(world.rank());
        let collective = Arc::new(MpiCollective {
            rank: world.rank() as usize,
            size: world.size() as usize,
            local_rank: local.rank() as usize,
            comm: Mutex::new(Comm(world)),
            stats: Mutex::new(CommStats::default()),
        });
        Some(MpiWorld {
            _universe: universe,
            collective,
        })
    }

    /// The collective over every process of the job.
    pub fn collective(&self) -> Arc<MpiCollective> {
        self.collective.clone()
    }
}

/// The world communicator behind a lock.
struct Comm(SimpleCommunicator);

// SAFETY: MPI runs with MPI_THREAD_SERIALIZED and every call goes through
// the `Mutex` around `Comm`, so calls from different threads never overlap.
unsafe impl Send for Comm {}

/// Sums and gathers over the processes of an MPI job.
pub struct MpiCollective {
    rank: usize,
    size: usize,
    local_rank: usize,
    comm: Mutex<Comm>,
    stats: Mutex<CommStats>,
}

impl std::fmt::Debug for MpiCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MpiCollective(rank {} of {})", self.rank, self.size)
    }
}

impl MpiCollective {
    /// Runs `f` on the communicator, timing it and counting `bytes` sent.
    fn call<R>(&self, bytes: usize, f: impl FnOnce(&SimpleCommunicator) -> R) -> Result<R> {
        let comm = self
            .comm
            .lock()
            .map_err(|_| Error::Numeric("the MPI communicator lock is poisoned".into()))?;
        let t = Instant::now();
        let r = f(&comm.0);
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.seconds += t.elapsed().as_secs_f64();
        s.bytes += bytes as u64;
        s.calls += 1;
        Ok(r)
    }

    fn allreduce<T: Equivalence + Copy>(&self, buf: &mut [T]) -> Result<()> {
        if self.size == 1 || buf.is_empty() {
            return Ok(());
        }
        // rsmpi has no in-place allreduce: send a copy, in pieces whose
        // counts fit MPI's int.
        for piece in buf.chunks_mut(1 << 26) {
            let send = piece.to_vec();
            self.call(std::mem::size_of_val(piece), |c| {
                c.all_reduce_into(&send[..], piece, SystemOperation::sum())
            })?;
        }
        Ok(())
    }

    fn gather<T: Equivalence + Copy + Default>(&self, local: &[T]) -> Result<Vec<T>> {
        if self.size == 1 {
            return Ok(local.to_vec());
        }
        let n = local.len() as i32;
        let mut counts = vec![0i32; self.size];
        self.call(4, |c| c.all_gather_into(&n, &mut counts[..]))?;
        let displs: Vec<i32> = counts
            .iter()
            .scan(0i32, |acc, &c| {
                let d = *acc;
                *acc += c;
                Some(d)
            })
            .collect();
        let total = counts.iter().map(|&c| c as usize).sum();
        let mut out = vec![T::default(); total];
        let mut part = PartitionMut::new(&mut out[..], &counts[..], &displs[..]);
        self.call(std::mem::size_of_val(local), |c| {
            c.all_gather_varcount_into(local, &mut part)
        })?;
        Ok(out)
    }
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.size
    }

    fn local_rank(&self) -> usize {
        self.local_rank
    }

    fn allreduce_sum_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.allreduce(buf)
    }

    fn allreduce_sum_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.allreduce(buf)
    }

    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<f64>> {
        self.gather(local)
    }

    fn all_gather_f32(&self, local: &[f32]) -> Result<Vec<f32>> {
        self.gather(local)
    }

    fn all_gather_u64(&self, local: &[u64]) -> Result<Vec<u64>> {
        self.gather(local)
    }

    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()> {
        if self.size == 1 {
            return Ok(());
        }
        let mut len = buf.len() as u64;
        self.call(8, |c| {
            c.process_at_rank(root as i32).broadcast_into(&mut len)
        })?;
        buf.resize(len as usize, 0);
        self.call(len as usize, |c| {
            c.process_at_rank(root as i32).broadcast_into(&mut buf[..])
        })
    }

    fn stats(&self) -> CommStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn abort(&self, code: i32) -> ! {
        // Not through the lock: the holder may be the thread that failed.
        SimpleCommunicator::world().abort(code)
    }
}
