//! The seam where sums over data items leave the process.
//!
//! Every method trains on items (images, rows, codes); a data-parallel run
//! gives each process a share of every batch. Whatever a method adds up
//! over items therefore goes through a [`Collective`], which combines the
//! shares of all processes:
//!
//! | method | summed over items (allreduce) | gathered per item |
//! |---|---|---|
//! | RRR engines (classify, autoencode, generator, NMF) | weight consensus Σ_k w, bias consensus Σ_k (2b_A − b), RRR_err per error group, the batch size | exemption / relabel selection keys |
//! | StarNet | normal equations [H,1]ᵀ[H,1,Ẑ], target means, reconstruction residuals, the training codes' mean and covariance | |
//! | HSIC (W_s and W*) | every kernel product Σ_j f(a_i, b_j) M_j over the items j of B (H and σ scores, unit normalizers, layer outputs, Φ = Zᵀ(Diag(1ᵀΨ) − Ψ)Z, silhouettes) | |
//! | SGD | gradients ∇W, ∇c and the loss | |
//!
//! The local engine never knows about ranks: it produces its partial sums
//! and hands them to the collective, which returns the totals. [`Local`]
//! is a world of one process, where every operation is the identity, so a
//! run's bits do not change; `engine::mpi::MpiCollective` (feature `mpi`)
//! is the processes of an MPI job.

use std::fmt::Debug;

use crate::error::Result;
use crate::real::{Precision, Real};

/// Sums, gathers and broadcasts across the processes of one run.
///
/// Every process calls the same operations in the same order (as with
/// MPI collectives); a call returns once every rank has contributed.
pub trait Collective: Send + Sync + Debug {
    /// This process's rank, 0-based.
    fn rank(&self) -> usize;
    /// Number of processes.
    fn world(&self) -> usize;
    /// Element-wise sum over ranks, in place: every rank ends with the total.
    fn allreduce_sum_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// [`Collective::allreduce_sum_f64`] for f32 values.
    fn allreduce_sum_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// Every rank's values, concatenated in rank order (shares may differ in length).
    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<f64>>;
    /// [`Collective::all_gather_f64`] for f32 values.
    fn all_gather_f32(&self, local: &[f32]) -> Result<Vec<f32>>;
    /// [`Collective::all_gather_f64`] for counts and indices.
    fn all_gather_u64(&self, local: &[u64]) -> Result<Vec<u64>>;
    /// Replaces `buf` on every rank with `root`'s bytes.
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()>;
    /// This process's rank among the processes of its machine (which GPU
    /// it takes).
    fn local_rank(&self) -> usize {
        0
    }
    /// Time and bytes spent communicating so far.
    fn stats(&self) -> CommStats {
        CommStats::default()
    }
    /// Ends every process of the run with exit status `code` (a failure
    /// on one rank must not leave the others waiting in a collective).
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

/// What a run's communication cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct CommStats {
    /// Collective calls made.
    pub calls: u64,
    /// Seconds spent in them (waiting for the other ranks included).
    pub seconds: f64,
    /// Bytes this rank contributed.
    pub bytes: u64,
}

impl dyn Collective + '_ {
    /// True on the rank that writes the run's outputs.
    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    /// Element-wise sum over ranks in the working precision `T`.
    pub fn allreduce_sum<T: Real>(&self, buf: &mut [T]) -> Result<()> {
        match T::PRECISION {
            Precision::F64 => self.allreduce_sum_f64(bytemuck::cast_slice_mut(buf)),
            Precision::F32 => self.allreduce_sum_f32(bytemuck::cast_slice_mut(buf)),
        }
    }

    /// Every rank's values in the working precision `T`, in rank order.
    pub fn all_gather<T: Real>(&self, local: &[T]) -> Result<Vec<T>> {
        Ok(match T::PRECISION {
            Precision::F64 => {
                bytemuck::cast_slice(&self.all_gather_f64(bytemuck::cast_slice(local))?).to_vec()
            }
            Precision::F32 => {
                bytemuck::cast_slice(&self.all_gather_f32(bytemuck::cast_slice(local))?).to_vec()
            }
        })
    }

    /// The sum of a count over ranks.
    pub fn sum_count(&self, local: usize) -> Result<usize> {
        let all = self.all_gather_u64(&[local as u64])?;
        Ok(all.iter().sum::<u64>() as usize)
    }

    /// Where this rank's `local` items start in the run's item order (the
    /// ranks' shares are contiguous, in rank order) and how many items all
    /// ranks hold together.
    pub fn share_of(&self, local: usize) -> Result<Share> {
        let all = self.all_gather_u64(&[local as u64])?;
        let offset = all[..self.rank()].iter().sum::<u64>() as usize;
        Ok(Share {
            offset,
            items: local,
            total: all.iter().sum::<u64>() as usize,
        })
    }
}

impl dyn Collective + '_ {
    /// This rank's contiguous slice of `n` items split over the ranks in
    /// rank order, as even as can be (the first `n mod world` ranks take
    /// one more).
    pub fn slice_of(&self, n: usize) -> std::ops::Range<usize> {
        let (w, r) = (self.world().max(1), self.rank());
        let at = |r: usize| r * (n / w) + r.min(n % w);
        at(r)..at(r + 1)
    }
}

/// One rank's contiguous share of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// First item of this rank's share in the batch.
    pub offset: usize,
    /// Items this rank holds.
    pub items: usize,
    /// Items of the whole batch (every rank's together).
    pub total: usize,
}

impl Share {
    /// The share of a batch that one process holds whole.
    pub fn whole(items: usize) -> Self {
        Share {
            offset: 0,
            items,
            total: items,
        }
    }
}

/// A world of one process: every collective operation is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Local;

impl Collective for Local {
    fn rank(&self) -> usize {
        0
    }

    fn world(&self) -> usize {
        1
    }

    fn allreduce_sum_f64(&self, _buf: &mut [f64]) -> Result<()> {
        Ok(())
    }

    fn allreduce_sum_f32(&self, _buf: &mut [f32]) -> Result<()> {
        Ok(())
    }

    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<f64>> {
        Ok(local.to_vec())
    }

    fn all_gather_f32(&self, local: &[f32]) -> Result<Vec<f32>> {
        Ok(local.to_vec())
    }

    fn all_gather_u64(&self, local: &[u64]) -> Result<Vec<u64>> {
        Ok(local.to_vec())
    }

    fn broadcast_bytes(&self, _buf: &mut Vec<u8>, _root: usize) -> Result<()> {
        Ok(())
    }
}
