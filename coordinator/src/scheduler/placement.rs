//! Gang placement: which devices of one worker a task may take now. A task with
//! `train.devices_per_task = N > 1` is leased only with N idle devices of one worker, all or nothing, and
//! holds them alone until its lease ends; a one-device task runs on its slot's own device, which several
//! slots may share, unless a gang lease holds it. Devices are indices into the worker's device list (so
//! that `--device cpu --device cpu` gives two CPU replicas). These are the only rules; the lease loop asks here.

/// The devices of one worker as its live leases hold them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DeviceUse {
    /// Live leases on each device.
    leases: Vec<u32>,
    /// Held by a gang lease (no other task may use it).
    gang: Vec<bool>,
}

impl DeviceUse {
    /// The use of a worker with `devices` devices (0 when unknown: a worker adopted after a coordinator
    /// restart that has not sent its list yet), from the device lists of its live leases.
    pub(super) fn of<'a>(devices: usize, held: impl IntoIterator<Item = &'a [u32]>) -> Self {
        let mut u = DeviceUse {
            leases: vec![0; devices],
            gang: vec![false; devices],
        };
        for list in held {
            for &d in list {
                let Some(n) = u.leases.get_mut(d as usize) else {
                    continue;
                };
                *n += 1;
                if list.len() > 1 {
                    u.gang[d as usize] = true;
                }
            }
        }
        u
    }

    /// Devices the worker has (0: unknown).
    pub(super) fn devices(&self) -> usize {
        self.leases.len()
    }

    /// Devices held by gang leases.
    pub(super) fn gang_held(&self) -> usize {
        self.gang.iter().filter(|g| **g).count()
    }

    /// The devices a task needing `need` would take if leased to `slot` now, or `None` when it does not
    /// fit. One device: the slot's own (`slot mod devices`), unless a gang lease holds it. `need > 1`: that
    /// many devices with no live lease at all, the slot's own first when it is idle. A worker whose
    /// devices are unknown gets one-device tasks on its slot's device (an empty list: the slot's own).
    pub(super) fn place(&self, slot: u32, need: usize) -> Option<Vec<u32>> {
        let n = self.devices();
        if n == 0 {
            return (need <= 1).then(Vec::new);
        }
        let own = (slot as usize) % n;
        if need <= 1 {
            return (!self.gang[own]).then(|| vec![own as u32]);
        }
        let idle: Vec<u32> = std::iter::once(own)
            .chain((0..n).filter(|&d| d != own))
            .filter(|&d| self.leases[d] == 0)
            .map(|d| d as u32)
            .take(need)
            .collect();
        (idle.len() == need).then_some(idle)
    }
}

/// Why ready tasks needing `need` devices cannot be placed, when no registered worker has that many
/// (`largest`: the most devices of any registered worker); `None` when some worker could hold them.
pub(super) fn unplaceable(count: usize, need: usize, largest: usize) -> Option<String> {
    exceeds_every_worker(need, largest).then(|| {
        format!(
            "{count} ready task(s) need {need} devices each (train.devices_per_task = {need}), and no registered worker has more than {}: they are not started until a worker with at least {need} devices registers (mer worker --devices ..., or [kubernetes] gpus_per_worker)",
            largest.max(1)
        )
    })
}

/// Whether a task needing `need` devices fits no registered worker (`largest`: the most devices of any;
/// a worker counts as at least one device).
pub(super) fn exceeds_every_worker(need: usize, largest: usize) -> bool {
    need > largest.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn use_of(devices: usize, held: &[&[u32]]) -> DeviceUse {
        DeviceUse::of(devices, held.iter().copied())
    }

    #[test]
    fn one_device_tasks_share_a_slot_device_unless_a_gang_holds_it() {
        let u = use_of(2, &[&[0]]);
        assert_eq!(u.place(0, 1), Some(vec![0]), "slots may share a device");
        assert_eq!(
            u.place(3, 1),
            Some(vec![1]),
            "slot 3 on 2 devices is device 1"
        );
        let g = use_of(3, &[&[0, 2]]);
        assert_eq!(g.gang_held(), 2);
        assert_eq!(g.place(0, 1), None);
        assert_eq!(g.place(2, 1), None);
        assert_eq!(g.place(1, 1), Some(vec![1]));
    }

    #[test]
    fn gang_leases_take_idle_devices_all_or_nothing() {
        let free = use_of(4, &[]);
        assert_eq!(free.place(0, 2), Some(vec![0, 1]));
        assert_eq!(free.place(2, 2), Some(vec![2, 0]), "the slot's own first");
        assert_eq!(free.place(0, 4), Some(vec![0, 1, 2, 3]));
        assert_eq!(free.place(0, 5), None, "never more than the worker has");
        let busy = use_of(4, &[&[1], &[2, 3]]);
        assert_eq!(
            busy.place(0, 2),
            None,
            "only device 0 is idle: nothing is started"
        );
        assert_eq!(busy.place(0, 1), Some(vec![0]));
        let one = use_of(1, &[]);
        assert_eq!(one.place(0, 2), None);
        let unknown = use_of(0, &[]);
        assert_eq!(unknown.place(1, 1), Some(vec![]));
        assert_eq!(unknown.place(1, 2), None);
    }

    #[test]
    fn the_reason_names_the_setting_and_the_largest_worker() {
        let why = unplaceable(6, 2, 1).unwrap();
        assert!(why.contains("6 ready task(s) need 2 devices"), "{why}");
        assert!(
            why.contains("no registered worker has more than 1"),
            "{why}"
        );
        assert_eq!(unplaceable(6, 2, 2), None);
        assert_eq!(unplaceable(6, 1, 0), None);
    }
}
