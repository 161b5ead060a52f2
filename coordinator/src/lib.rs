//! `mer-coordinator`: experiment orchestration without libtorch.
