//! `mer-worker`: everything that touches pixels and tensors.
