//! Pairs for siamese prior learning, built from ONE fold's training samples only.
//!
//! Eq. 7: every unordered pair of distinct training samples is a pair, so N training samples give
//! `P = N (N - 1) / 2` pairs, of which `sum_c n_c (n_c - 1) / 2` are "same" (both samples of class c) and
//! `sum_{c<d} n_c n_d` are "different". On the MEGC2019 composite a fold trains on about 436 samples:
//! about 95k pairs. The full set is split 90/10 (per kind, so both parts hold both kinds) into pairs to
//! learn from and pairs to monitor; each epoch draws a balanced subset (half same, half different) from
//! the learning part, without replacement within the epoch where the part is large enough.

use crate::error::WorkerError;
use rand::seq::{IndexedRandom, SliceRandom};
use rand_chacha::ChaCha8Rng;

/// One pair: indices into the fold's training samples, and whether they share a class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pair {
    /// First sample.
    pub a: u32,
    /// Second sample.
    pub b: u32,
    /// Same class (target 1) or different (target 0).
    pub same: bool,
}

/// Eq. 7's pair count for class sizes `n_c`: returns `(total, same, different)`.
pub fn eq7_pair_count(class_counts: &[usize]) -> (u64, u64, u64) {
    let n: u64 = class_counts.iter().map(|&c| c as u64).sum();
    let total = n * n.saturating_sub(1) / 2;
    let same: u64 = class_counts
        .iter()
        .map(|&c| (c as u64) * (c as u64).saturating_sub(1) / 2)
        .sum();
    (total, same, total - same)
}

/// The fold's pair set, split into learning and monitoring parts.
#[derive(Debug, Clone)]
pub struct PairSet {
    train_same: Vec<(u32, u32)>,
    train_diff: Vec<(u32, u32)>,
    val_same: Vec<(u32, u32)>,
    val_diff: Vec<(u32, u32)>,
}

impl PairSet {
    /// Enumerates all eq. 7 pairs of `labels` (class of each training sample) and splits them.
    pub fn build(
        labels: &[usize],
        val_fraction: f64,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self, WorkerError> {
        if !(0.0..1.0).contains(&val_fraction) {
            return Err(WorkerError::InvalidOption {
                option: "prior.val_fraction".into(),
                message: format!("{val_fraction} must be in [0, 1)"),
            });
        }
        let mut same = Vec::new();
        let mut diff = Vec::new();
        for i in 0..labels.len() {
            for j in i + 1..labels.len() {
                let p = (i as u32, j as u32);
                if labels[i] == labels[j] {
                    same.push(p)
                } else {
                    diff.push(p)
                }
            }
        }
        if same.is_empty() || diff.is_empty() {
            return Err(WorkerError::Training(format!(
                "prior learning needs both same-class and different-class pairs; {} training samples give {} same and {} different",
                labels.len(),
                same.len(),
                diff.len()
            )));
        }
        same.shuffle(rng);
        diff.shuffle(rng);
        let split = |mut v: Vec<(u32, u32)>| {
            let nv = ((v.len() as f64) * val_fraction).round() as usize;
            // Keep at least one pair to learn from.
            let nv = nv.min(v.len() - 1);
            let val = v.split_off(v.len() - nv);
            (v, val)
        };
        let (train_same, val_same) = split(same);
        let (train_diff, val_diff) = split(diff);
        Ok(PairSet {
            train_same,
            train_diff,
            val_same,
            val_diff,
        })
    }

    /// Total pairs (learning + monitoring): eq. 7's count.
    pub fn total(&self) -> usize {
        self.train_same.len() + self.train_diff.len() + self.val_same.len() + self.val_diff.len()
    }

    /// `(same, different)` pairs in the monitoring part.
    pub fn val_counts(&self) -> (usize, usize) {
        (self.val_same.len(), self.val_diff.len())
    }

    /// A balanced, shuffled sample of `n` learning pairs for one epoch (`n / 2` same, the rest different).
    pub fn epoch(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<Pair> {
        let mut out = Vec::with_capacity(n);
        draw(&self.train_same, n / 2, true, rng, &mut out);
        draw(&self.train_diff, n - n / 2, false, rng, &mut out);
        out.shuffle(rng);
        out
    }

    /// The same pair set with every sample index `i` replaced by `to[i]`: pairs built over a subset of
    /// the fold's training samples, re-addressed to the positions of the whole training set.
    pub fn remap(mut self, to: &[usize]) -> Self {
        for part in [
            &mut self.train_same,
            &mut self.train_diff,
            &mut self.val_same,
            &mut self.val_diff,
        ] {
            for p in part.iter_mut() {
                *p = (to[p.0 as usize] as u32, to[p.1 as usize] as u32);
            }
        }
        self
    }

    /// A fixed balanced set of at most `max` pairs from the learning part: for a pair set that nothing
    /// learns from (the clips of subjects kept out of prior learning).
    pub fn balanced(&self, max: usize) -> Vec<Pair> {
        let k = (max / 2)
            .min(self.train_same.len())
            .min(self.train_diff.len());
        let mut v: Vec<Pair> = self.train_same[..k]
            .iter()
            .map(|&(a, b)| Pair { a, b, same: true })
            .collect();
        v.extend(
            self.train_diff[..k]
                .iter()
                .map(|&(a, b)| Pair { a, b, same: false }),
        );
        v
    }

    /// A fixed balanced set of at most `max` monitoring pairs (the same every epoch).
    pub fn validation(&self, max: usize) -> Vec<Pair> {
        let k = (max / 2).min(self.val_same.len()).min(self.val_diff.len());
        let mut v: Vec<Pair> = self.val_same[..k]
            .iter()
            .map(|&(a, b)| Pair { a, b, same: true })
            .collect();
        v.extend(
            self.val_diff[..k]
                .iter()
                .map(|&(a, b)| Pair { a, b, same: false }),
        );
        v
    }
}

/// A fold's training samples split for prior learning: positions into the training set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnseenSplit {
    /// Samples prior learning may pair.
    pub learn: Vec<usize>,
    /// Samples of the subjects kept out of it.
    pub unseen: Vec<usize>,
    /// Those subjects, sorted.
    pub subjects: Vec<String>,
}

/// Splits a fold's training samples (`subjects[i]`, `labels[i]`) into those prior learning may use and
/// those of `k` training subjects kept out of it, whose pairs then measure whether the siamese features
/// carry to people the prior never saw. Subjects are taken in a seeded order; more than `k` are taken
/// when the first `k` hold no same-class or no different-class pair. Returns `(prior, unseen)`
/// positions and the unseen subjects ([`UnseenSplit`]); `k = 0` keeps everything for prior learning.
pub fn unseen_split(
    subjects: &[String],
    labels: &[usize],
    k: usize,
    rng: &mut ChaCha8Rng,
) -> Result<UnseenSplit, WorkerError> {
    let all: Vec<usize> = (0..subjects.len()).collect();
    if k == 0 {
        return Ok(UnseenSplit {
            learn: all,
            unseen: Vec::new(),
            subjects: Vec::new(),
        });
    }
    let mut order: Vec<&String> = subjects
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    order.shuffle(rng);
    // At least one subject stays for prior learning, which itself needs both kinds of pair.
    let mut chosen: Vec<String> = Vec::new();
    for s in order.iter().take(order.len().saturating_sub(1)) {
        chosen.push((*s).clone());
        let unseen: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| chosen.contains(&subjects[i]))
            .collect();
        let has = |same: bool| {
            unseen.iter().enumerate().any(|(x, &i)| {
                unseen[x + 1..]
                    .iter()
                    .any(|&j| (labels[i] == labels[j]) == same)
            })
        };
        if chosen.len() >= k && has(true) && has(false) {
            let learn = all
                .iter()
                .copied()
                .filter(|i| !unseen.contains(i))
                .collect();
            chosen.sort();
            return Ok(UnseenSplit {
                learn,
                unseen,
                subjects: chosen,
            });
        }
    }
    Err(WorkerError::InvalidOption {
        option: "prior.unseen_subjects".into(),
        message: format!(
            "cannot keep {k} of the fold's {} training subjects out of prior learning: no such choice leaves both same-class and different-class pairs among their clips and a subject to learn from",
            order.len()
        ),
    })
}

/// Draws `k` pairs from `from`: without replacement while possible, then starting over.
fn draw(from: &[(u32, u32)], k: usize, same: bool, rng: &mut ChaCha8Rng, out: &mut Vec<Pair>) {
    let mut left = k;
    while left > 0 {
        let take = left.min(from.len());
        out.extend(
            from.choose_multiple(rng, take)
                .map(|&(a, b)| Pair { a, b, same }),
        );
        left -= take;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn pair_count_equals_eq7() {
        // 3 classes of sizes 5, 3, 2 -> N = 10: 45 pairs, same = 10 + 3 + 1 = 14, different = 31.
        let labels = [0, 0, 0, 0, 0, 1, 1, 1, 2, 2];
        assert_eq!(eq7_pair_count(&[5, 3, 2]), (45, 14, 31));
        let ps = PairSet::build(&labels, 0.1, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        assert_eq!(ps.total(), 45);
        // The composite's class sizes minus one typical test subject: about 95k pairs.
        let (total, same, diff) = eq7_pair_count(&[246, 108, 82]);
        assert_eq!(total, 436 * 435 / 2);
        assert_eq!(same + diff, total);
        assert!((90_000..100_000).contains(&total));
    }

    #[test]
    fn split_and_epochs_are_balanced_and_seeded() {
        let labels: Vec<usize> = (0..40).map(|i| i % 3).collect();
        let (total, same, _) = eq7_pair_count(&[14, 13, 13]);
        let ps = PairSet::build(&labels, 0.1, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        assert_eq!(ps.total() as u64, total);
        let (vs, vd) = ps.val_counts();
        assert_eq!(vs, (same as f64 * 0.1).round() as usize);
        assert!(vd > vs);
        let e = ps.epoch(101, &mut ChaCha8Rng::seed_from_u64(5));
        assert_eq!(e.len(), 101);
        assert_eq!(e.iter().filter(|p| p.same).count(), 50);
        assert!(e
            .iter()
            .all(|p| (labels[p.a as usize] == labels[p.b as usize]) == p.same && p.a < p.b));
        // The monitoring pairs never appear in an epoch.
        let val = ps.validation(1000);
        assert_eq!(val.iter().filter(|p| p.same).count(), val.len() / 2);
        let e2 = ps.epoch(1000, &mut ChaCha8Rng::seed_from_u64(5));
        assert!(e2
            .iter()
            .all(|p| !val.iter().any(|v| v.a == p.a && v.b == p.b)));
        assert_eq!(e, ps.epoch(101, &mut ChaCha8Rng::seed_from_u64(5)));
        // More pairs than the learning part holds: starts over instead of failing.
        let small = PairSet::build(&[0, 0, 1, 1], 0.0, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert_eq!(small.epoch(10, &mut ChaCha8Rng::seed_from_u64(1)).len(), 10);
    }

    #[test]
    fn unseen_subjects_are_whole_subjects_kept_out_of_the_prior_pairs() {
        let subjects: Vec<String> = (0..30).map(|i| format!("s{}", i / 6)).collect();
        let labels: Vec<usize> = (0..30).map(|i| i % 3).collect();
        let mut r = ChaCha8Rng::seed_from_u64(9);
        let split = unseen_split(&subjects, &labels, 1, &mut r).unwrap();
        let (prior, unseen, who) = (split.learn, split.unseen, split.subjects);
        assert_eq!((prior.len(), unseen.len(), who.len()), (24, 6, 1));
        assert!(unseen.iter().all(|&i| subjects[i] == who[0]));
        assert!(prior.iter().all(|&i| subjects[i] != who[0]));
        // Pairs built over the prior part and re-addressed never touch an unseen clip.
        let pl: Vec<usize> = prior.iter().map(|&i| labels[i]).collect();
        let ps = PairSet::build(&pl, 0.1, &mut r).unwrap().remap(&prior);
        let e = ps.epoch(500, &mut r);
        assert!(e
            .iter()
            .all(|p| !unseen.contains(&(p.a as usize)) && !unseen.contains(&(p.b as usize))));
        assert!(e
            .iter()
            .all(|p| (labels[p.a as usize] == labels[p.b as usize]) == p.same));
        let ul: Vec<usize> = unseen.iter().map(|&i| labels[i]).collect();
        let held = PairSet::build(&ul, 0.0, &mut r)
            .unwrap()
            .remap(&unseen)
            .balanced(100);
        assert_eq!(held.iter().filter(|p| p.same).count() * 2, held.len());
        assert!(held
            .iter()
            .all(|p| subjects[p.a as usize] == who[0] && subjects[p.b as usize] == who[0]));
        // Seeded, and k = 0 keeps everything.
        let again = unseen_split(&subjects, &labels, 1, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
        assert_eq!(again.subjects, who);
        assert_eq!(
            unseen_split(&subjects, &labels, 0, &mut r)
                .unwrap()
                .learn
                .len(),
            30
        );
        // A subject with one class only is not enough on its own: another joins it.
        let one_class: Vec<usize> = (0..30).map(|i| if i < 6 { 0 } else { i % 3 }).collect();
        let subj2: Vec<String> = (0..30)
            .map(|i| {
                if i < 6 {
                    "a".into()
                } else {
                    format!("b{}", i / 6)
                }
            })
            .collect();
        for seed in 0..8 {
            let s =
                unseen_split(&subj2, &one_class, 1, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
            let u = &s.unseen;
            assert!(
                u.iter().any(|&i| one_class[i] != one_class[u[0]]),
                "{:?}",
                s.subjects
            );
        }
        // Asking for every subject leaves nothing to learn from.
        assert!(unseen_split(&subjects, &labels, 5, &mut r)
            .unwrap_err()
            .to_string()
            .contains("unseen_subjects"));
    }

    #[test]
    fn degenerate_folds_are_errors() {
        assert!(
            PairSet::build(&[0, 1, 2], 0.1, &mut ChaCha8Rng::seed_from_u64(0))
                .unwrap_err()
                .to_string()
                .contains("same")
        );
        assert!(PairSet::build(&[1, 1, 1], 0.1, &mut ChaCha8Rng::seed_from_u64(0)).is_err());
        assert!(PairSet::build(&[0, 0, 1, 1], 1.0, &mut ChaCha8Rng::seed_from_u64(0)).is_err());
    }
}
