//! From a dataset on disk to a prepared file (`mer prep`).
//!
//! - [`datasets`]: the readers of the seven datasets' layouts and annotation sheets, the composite list.
//! - [`keyframes`], [`interp`]: the 11 key-frames of a clip (adaptive or uniform) and frame interpolation.
//! - [`face`], [`flow`]: the face crop and the Farneback optical flow (OpenCV).
//! - [`strain`], [`planes`]: optical strain and the baselines' input planes (the `apex_flow` group).
//! - [`figures`]: the per-clip figures of `mer prep --figures`.
//! - [`pipeline`]: the whole preparation run, in parallel, written atomically.
//!
//! Room `prep`: uses only [`crate::error`]. The readers, key-frames and interpolation need the `torch`
//! feature; whatever touches pixels needs `opencv`.

#[cfg(feature = "torch")]
pub mod datasets;
#[cfg(feature = "opencv")]
pub mod face;
#[cfg(feature = "opencv")]
pub mod figures;
#[cfg(feature = "opencv")]
pub mod flow;
#[cfg(feature = "torch")]
pub mod interp;
#[cfg(feature = "torch")]
pub mod keyframes;
#[cfg(feature = "opencv")]
pub mod pipeline;
#[cfg(feature = "torch")]
pub mod planes;
pub mod strain;
