//! Reports and the live dashboard.
//!
//! - [`bundle`]: the files a run folder holds besides the planner's results (plan, spec, fold results,
//!   provenance), how the coordinator writes them and how a report loads them;
//! - [`render`]: `mer report`, Markdown + one self-contained HTML page with the paper's tables and plots;
//! - [`plots`]: PNG figures (plotters, bitmap backend);
//! - [`paper`]: the paper's published reference numbers;
//! - [`dashboard`]: the live dashboard and its JSON API on the coordinator's HTTP port.

pub mod bundle;
pub mod dashboard;
pub mod paper;
pub mod plots;
pub mod render;

pub use render::{render_report, render_report_with, Block, ReportOutput};

#[cfg(test)]
mod tests;
