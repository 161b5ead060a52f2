//! Where a task stands, and the one vocabulary its states are shown in. The scheduler keeps the fine
//! states; status, metrics (`mer_tasks{state=...}`) and the dashboard show the five public names of
//! [`TaskState::public_name`]; the store persists the coarser `store::StoredTaskState`.

/// Where a task stands in the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for dependencies.
    Blocked,
    /// Can be leased.
    Ready,
    /// Held by a worker.
    Leased,
    /// A result is being committed.
    Committing,
    /// A result is stored.
    Done,
    /// Failed too often (or a dependency did); its errors are kept.
    GaveUp,
}

impl TaskState {
    /// Every public name, in the order a task passes through them (metrics always export each).
    pub const PUBLIC_NAMES: [&'static str; 5] = ["blocked", "ready", "running", "done", "failed"];

    /// The name status, metrics and the dashboard show: a task being committed is still `running`, one
    /// that gave up is `failed`.
    pub fn public_name(self) -> &'static str {
        let i = match self {
            TaskState::Blocked => 0,
            TaskState::Ready => 1,
            TaskState::Leased | TaskState::Committing => 2,
            TaskState::Done => 3,
            TaskState::GaveUp => 4,
        };
        Self::PUBLIC_NAMES[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_one_of_the_public_names() {
        let all = [
            TaskState::Blocked,
            TaskState::Ready,
            TaskState::Leased,
            TaskState::Committing,
            TaskState::Done,
            TaskState::GaveUp,
        ];
        let shown: std::collections::BTreeSet<&str> = all.iter().map(|s| s.public_name()).collect();
        assert_eq!(shown.len(), TaskState::PUBLIC_NAMES.len());
        assert_eq!(TaskState::Committing.public_name(), "running");
        assert_eq!(TaskState::GaveUp.public_name(), "failed");
    }
}
