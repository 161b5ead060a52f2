//! `mer` as a library: the compositions of the coordinator (`mer-coordinator`) and the worker
//! (`mer-worker`) that neither crate may hold alone, in the way Ballista composes its standalone mode from
//! its scheduler and executor crates. The command line (`src/main.rs`, `src/cli/`) is built on them.

pub mod local;
pub mod simbench;
