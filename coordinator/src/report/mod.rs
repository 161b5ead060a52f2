//! Reports and the live dashboard, read from run folders that [`crate::results`] writes (and from the
//! scheduler's state, for the dashboard).
//!
//! - [`render`]: `mer report`, Markdown + one self-contained HTML page with the paper's tables and plots;
//! - [`plots`]: PNG figures (plotters, bitmap backend);
//! - [`paper`]: the paper's published reference numbers;
//! - [`dashboard`]: the live dashboard and its JSON API on the coordinator's HTTP port.

pub mod dashboard;
pub mod paper;
pub mod plots;
pub mod render;

pub use render::{render_report, render_report_with, ReportOutput};

#[cfg(test)]
mod tests;
