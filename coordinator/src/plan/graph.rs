//! The task graph being built: the tasks of one (sweep point, fold) pair - or of one inner split of the
//! fold - with their payloads, keys and derived seeds, prior tasks shared between the sweep points whose
//! prior settings agree. The LOSO phase ([`super::expand`]) and nested selection ([`super::nested`]) both
//! add their tasks through it.

use super::keys::{derive_seed, prior_key, target_key};
use super::{InnerSplit, SweepPoint, TaskDef, TaskKind, TaskPayload};
use crate::spec::ExperimentSpec;
use mer_shared::train_config::TargetConfig;
use mer_shared::Dataset;
use std::collections::BTreeMap;

/// Tasks being collected: prior tasks deduplicated by key (sweep points that share prior settings share
/// the prior task), in first-seen order, and target tasks in order.
#[derive(Default)]
pub(super) struct TaskGraph {
    priors_by_key: BTreeMap<String, TaskDef>,
    prior_order: Vec<String>,
    targets: Vec<TaskDef>,
}

impl TaskGraph {
    /// Adds the target task of `sp` on `fold` (an inner split of it with `inner`; a whole held-out part
    /// with `test_subjects`, its subjects) and the prior task it needs, if the point has prior learning and
    /// no equal prior task is there yet.
    pub(super) fn add(
        &mut self,
        spec: &ExperimentSpec,
        parts: &[Dataset],
        sp: &SweepPoint,
        fold: &str,
        inner: Option<&InnerSplit>,
        test_subjects: Option<Vec<String>>,
    ) {
        // Seeds differ per inner split (its own training set) and agree across sweep points.
        let seed_fold = match inner {
            None => fold.to_string(),
            Some(i) => format!("{fold}|inner {}/{}", i.index, i.of),
        };
        let payload = |train, prior_key, baseline| TaskPayload {
            dataset_hash: sp.dataset_hash.clone(),
            scheme: spec.scheme,
            parts: parts.to_vec(),
            test_subject: fold.to_string(),
            train,
            prior_key,
            baseline,
            inner: inner.cloned(),
            test_subjects: test_subjects.clone(),
        };
        let prior_key = if sp.method.has_prior() && sp.train.prior.enabled {
            let mut train = sp.train.clone();
            train.target = TargetConfig::default();
            train.seed = derive_seed(sp.train.seed, &seed_fold, TaskKind::Prior);
            let payload = payload(train, None, None);
            let key = self::prior_key(&payload);
            if !self.priors_by_key.contains_key(&key) {
                self.prior_order.push(key.clone());
                self.priors_by_key.insert(
                    key.clone(),
                    TaskDef {
                        key: key.clone(),
                        kind: TaskKind::Prior,
                        fold: fold.to_string(),
                        sweep_point: None,
                        deps: vec![],
                        payload,
                    },
                );
            }
            Some(key)
        } else {
            None
        };
        let mut train = sp.train.clone();
        train.seed = derive_seed(sp.train.seed, &seed_fold, TaskKind::Target);
        let payload = payload(train, prior_key.clone(), sp.baseline.clone());
        let key = target_key(&payload);
        self.targets.push(TaskDef {
            key,
            kind: TaskKind::Target,
            fold: fold.to_string(),
            sweep_point: Some(sp.index),
            deps: prior_key.into_iter().collect(),
            payload,
        });
    }

    /// The prior tasks, then the target tasks.
    pub(super) fn into_tasks(mut self) -> Vec<TaskDef> {
        let mut tasks: Vec<TaskDef> = self
            .prior_order
            .iter()
            .filter_map(|k| self.priors_by_key.remove(k))
            .collect();
        tasks.extend(self.targets);
        tasks
    }
}
