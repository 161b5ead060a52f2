//! `mer` as a library: the compositions of the coordinator (`mer-coordinator`) and the worker
//! (`mer-worker`) that neither crate may hold alone, in the way Ballista composes its standalone mode from
//! its scheduler and executor crates. The command line (`src/main.rs`, `src/cli/`) is built on them.
//!
//! # Layout
//! - `shared/` (`mer-shared`): what both halves speak: the wire (protobuf), specs' training settings,
//!   prepared files, labels, folds, scores, the artifact store, file utilities.
//! - `coordinator/` (`mer-coordinator`, no libtorch): plans, the scheduler and its SQLite store, the gRPC
//!   and HTTP surface, the results path, reports, launchers (Kubernetes, Slurm).
//! - `worker/` (`mer-worker`): the agent, preparation, synthetic data, the training parts, the method,
//!   the baselines and the trainers.
//! - This crate: [`local`] (local mode: a coordinator and its workers on one machine) and [`simbench`]
//!   (the orchestrator's benchmark); `src/cli/` holds one module per group of subcommands.
//! - `tests/`: end-to-end tests of the `mer` binary, with their fixtures in `tests/support/`.

pub mod local;
pub mod simbench;
