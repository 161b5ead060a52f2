//! Task keys (what determines a task's result, hashed) and the derivation of task seeds.

use super::{TaskKind, TaskPayload, TASK_KEY_VERSION};
use mer_shared::digest::sha256_json;
use mer_shared::method::BaselineSettings;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Derives a task's seed from the base seed, the fold and the stage (deterministic, documented): the
/// first 8 bytes (little-endian) of sha256(`mer-seed/1|{base}|{fold}|{stage}`). Sweep points of one fold
/// share it (common random numbers: they differ only in the swept setting).
pub fn derive_seed(base: u64, fold: &str, stage: TaskKind) -> u64 {
    let d = Sha256::digest(format!("mer-seed/1|{base}|{fold}|{}", stage.key()).as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

pub(super) fn to_value<T: Serialize>(v: &T) -> Value {
    // Plain data structs (no maps with non-string keys) always serialise.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// The key of a prior task: what prior learning depends on.
pub fn prior_key(payload: &TaskPayload) -> String {
    let t = &payload.train;
    let v = json!({
        "version": TASK_KEY_VERSION,
        "kind": "prior",
        "prior_scope": "per_fold",
        "dataset": payload.dataset_hash,
        "scheme": payload.scheme,
        "parts": payload.parts,
        "test_subject": payload.test_subject,
        "model": to_value(&t.model),
        "prior": to_value(&t.prior),
        "augment": to_value(&t.augment),
        "fast_path": t.fast_path,
        "seed": t.seed,
    });
    sha256_json(&with_inner(v, payload))
}

/// Adds nested selection's inner split to a key (only for inner tasks, so LOSO keys stay what they were).
fn with_inner(mut v: Value, payload: &TaskPayload) -> Value {
    if let Some(inner) = &payload.inner {
        v["inner"] = to_value(inner);
    }
    v
}

/// The key of a target task: the target stage's settings, the prior task's key (which covers prior
/// learning) or `null` for from-scratch training. A baseline's task is keyed by its method's settings
/// instead ([`baseline_key`]).
pub fn target_key(payload: &TaskPayload) -> String {
    if let Some(b) = &payload.baseline {
        return baseline_key(payload, b);
    }
    let t = &payload.train;
    let mut v = json!({
        "version": TASK_KEY_VERSION,
        "kind": "target",
        "dataset": payload.dataset_hash,
        "scheme": payload.scheme,
        "parts": payload.parts,
        "test_subject": payload.test_subject,
        "model": to_value(&t.model),
        "prior_enabled": t.prior.enabled,
        "prior_key": payload.prior_key,
        "target": to_value(&t.target),
        "augment": to_value(&t.augment),
        "fast_path": t.fast_path,
        "seed": t.seed,
    });
    // The layer statistics change the result (they are stored with it) but not the predictions; only a
    // run that asks for them is keyed apart, so keys without them stay what they were.
    if t.layer_stats {
        v["layer_stats"] = json!(true);
    }
    // Likewise the per-epoch test schedule (stored with the result, never read by training).
    if t.eval_every != 1 {
        v["eval_every"] = json!(t.eval_every);
    }
    sha256_json(&with_inner(v, payload))
}

/// The key of a baseline or user method's task: its settings, the data, the fold and the seed
/// (MERSiamC3D's `[train]` settings, the device and the thread count do not matter to it).
fn baseline_key(payload: &TaskPayload, settings: &BaselineSettings) -> String {
    // A user method's key covers its command, files (by content), inputs and params, not its timeout.
    let settings_value = match settings {
        BaselineSettings::User(u) => u.key_value(),
        other => to_value(other),
    };
    let v = json!({
        "version": TASK_KEY_VERSION,
        "kind": "target",
        "method": settings.method(),
        "settings": settings_value,
        "dataset": payload.dataset_hash,
        "scheme": payload.scheme,
        "parts": payload.parts,
        "test_subject": payload.test_subject,
        "seed": payload.train.seed,
    });
    let mut v = with_inner(v, payload);
    if payload.train.eval_every != 1 {
        v["eval_every"] = json!(payload.train.eval_every);
    }
    sha256_json(&v)
}
