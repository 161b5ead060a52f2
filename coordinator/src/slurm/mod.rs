//! The Slurm launcher: for an experiment with `launcher = "slurm"` the coordinator, running on a login
//! node, submits **one job array of pilot workers** (`mer worker`), not a job per fold: each element
//! leases tasks until the work runs out or its job ends, so one array serves a whole sweep.
//!
//! - The spec's `[slurm]` table and its checks live with the spec ([`crate::spec::slurm`]).
//! - [`script`]: the batch script, pure text ([`job_script`]); `mer submit --slurm --dry-run` prints it.
//! - [`jobs`]: Slurm's own commands (`sbatch --parsable`, `scontrol show job -o`, `scancel`) and what
//!   their output means ([`jobs::classify`]).
//! - [`controller`]: the loop ([`SlurmController`]) that submits, resubmits with backoff, follows the
//!   elements and cancels the arrays when the experiment ends.
//!
//! **Time limits and preemption.** Jobs carry `--signal=B:USR2@grace` and `--requeue`. The worker
//! knows when its job ends and leases no task whose kind's median duration would not fit; on USR2 it
//! stops leasing and, after the grace, releases a task still running as *interrupted* (queued again,
//! not counted against `max_attempts`); on SIGTERM (preemption, requeue, `scancel`) it does the same
//! within seconds. An element that ends FAILED, NODE_FAIL, OUT_OF_MEMORY, CANCELLED or TIMEOUT has the
//! leases of its worker ended at once instead of at lease expiry.

pub mod controller;
pub mod jobs;
pub mod script;

pub use controller::{SlurmController, SlurmSettings};
pub use script::{job_script, ArrayRequest};
