//! Leases: a task handed to a worker slot until a deadline that every heartbeat pushes back. A lease not
//! renewed in time expires and its task goes back to the queue as "lost" (not "failed": nothing was
//! reported, the worker vanished or was cut off).

pub use mer_shared::task::Progress;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The device name a worker reported, as the coordinator keeps it (it becomes a metrics label): kept when
/// it is at most 32 characters of `[A-Za-z0-9:_.-]` (`cpu`, `cuda:0`, `mps`...), empty when none was sent,
/// `invalid` otherwise, so that a buggy worker cannot flood Prometheus with label values.
pub fn device_label(reported: &str) -> String {
    let ok = reported.len() <= 32
        && reported
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '-'));
    if ok {
        reported.to_string()
    } else {
        "invalid".to_string()
    }
}

/// One lease held by a worker.
#[derive(Debug, Clone)]
pub struct ActiveLease {
    /// Index of the task in the scheduler.
    pub task: usize,
    /// The worker holding it.
    pub worker: String,
    /// When it expires unless renewed.
    pub deadline: Instant,
    /// When it was granted (or adopted after a restart): the task's duration is measured from here.
    pub started: Instant,
    /// How far each heartbeat pushes the deadline.
    pub ttl: Duration,
    /// Attempt number (1-based) this lease is.
    pub attempt: u32,
    /// Experiments (indices) counted as running this task when it was granted.
    pub exps: Vec<usize>,
    /// Latest progress.
    pub progress: Progress,
    /// The worker's devices it holds (indices into the worker's device list; several for a gang lease).
    pub devices: Vec<u32>,
}

/// All live leases, by lease id.
#[derive(Debug)]
pub struct LeaseTable {
    boot: String,
    seq: u64,
    by_id: HashMap<String, ActiveLease>,
}

impl LeaseTable {
    /// An empty table; `boot` makes ids unique across coordinator restarts.
    pub fn new(boot: &str) -> Self {
        LeaseTable {
            boot: boot.to_string(),
            seq: 0,
            by_id: HashMap::new(),
        }
    }

    /// Grants a new lease and returns its id.
    pub fn grant(&mut self, lease: ActiveLease) -> String {
        self.seq += 1;
        let id = format!("{}-{}", self.boot, self.seq);
        self.by_id.insert(id.clone(), lease);
        id
    }

    /// Inserts a lease under a known id (adopting a lease granted before a restart).
    pub fn adopt(&mut self, id: &str, lease: ActiveLease) {
        self.by_id.insert(id.to_string(), lease);
    }

    /// Pushes a lease's deadline back; false when the lease is not held.
    pub fn renew(&mut self, id: &str, now: Instant, progress: Option<Progress>) -> bool {
        match self.by_id.get_mut(id) {
            Some(l) => {
                l.deadline = now + l.ttl;
                if let Some(p) = progress {
                    l.progress = p;
                }
                true
            }
            None => false,
        }
    }

    /// A live lease.
    pub fn get(&self, id: &str) -> Option<&ActiveLease> {
        self.by_id.get(id)
    }

    /// Ends a lease, returning it.
    pub fn take(&mut self, id: &str) -> Option<ActiveLease> {
        self.by_id.remove(id)
    }

    /// Removes and returns every lease whose deadline has passed.
    pub fn take_expired(&mut self, now: Instant) -> Vec<(String, ActiveLease)> {
        let ids: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| self.by_id.remove(&id).map(|l| (id, l)))
            .collect()
    }

    /// Every live lease.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ActiveLease)> {
        self.by_id.iter()
    }

    /// Number of live leases.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether no lease is live.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_labels_are_short_and_plain() {
        for ok in ["", "cpu", "cuda:0", "cuda:15", "mps"] {
            assert_eq!(device_label(ok), ok);
        }
        for bad in ["cuda 0", "cuda:0\n", "x{a=\"b\"}", &"c".repeat(33), "gpü"] {
            assert_eq!(device_label(bad), "invalid", "{bad:?}");
        }
    }

    fn lease(now: Instant, ttl_ms: u64) -> ActiveLease {
        ActiveLease {
            task: 0,
            worker: "w".into(),
            started: now,
            deadline: now + Duration::from_millis(ttl_ms),
            ttl: Duration::from_millis(ttl_ms),
            attempt: 1,
            exps: vec![0],
            progress: Progress::default(),
            devices: vec![],
        }
    }

    #[test]
    fn heartbeats_extend_and_silence_expires() {
        let t0 = Instant::now();
        let mut t = LeaseTable::new("b");
        let a = t.grant(lease(t0, 100));
        let b = t.grant(lease(t0, 100));
        assert_ne!(a, b);
        assert!(t.renew(&a, t0 + Duration::from_millis(80), None));
        let gone = t.take_expired(t0 + Duration::from_millis(120));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0, b);
        assert!(
            !t.renew(&b, t0 + Duration::from_millis(120), None),
            "an expired lease cannot be renewed"
        );
        assert_eq!(t.len(), 1);
        assert!(t.take_expired(t0 + Duration::from_millis(181)).len() == 1);
        assert!(t.is_empty());
    }
}
