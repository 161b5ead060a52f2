//! An experiment's results, from the fold results the scheduler stored to the files of its run folder.
//!
//! - [`aggregate`]: pooling the finished folds of each sweep point into [`aggregate::ExperimentResults`];
//! - [`selection`]: nested selection of sweep points (a result);
//! - [`leakage`]: the leakage premium (diagnostics, never results);
//! - [`sections`]: the explanations and tables `summary.md` and `report.md` share, as document blocks;
//! - [`document`]: the document [`document::Block`]s and their Markdown and HTML renderings;
//! - [`bundle`]: the run files besides the results (plan, spec, fold results, provenance) and loading a
//!   run folder back;
//! - [`writer`]: the one path that writes a run folder ([`writer::ResultsWriter`]).
//!
//! It may use the plan, the store (read-only, for provenance), the spec and `mer-shared`; it never uses
//! the scheduler, the RPC layer or `report` (which is built on top of it).

pub mod aggregate;
pub mod bundle;
pub mod document;
pub mod leakage;
pub mod sections;
pub mod selection;
pub mod writer;
