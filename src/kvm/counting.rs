//! `CountingVm`: a [`KvmVm`] that only counts, for tests and benchmarks without `/dev/kvm`.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};

use super::{EventFd, KvmIrqRouting, KvmVm, kvm_msi, routing_bytes};
use crate::error::Errno;

/// What a [`CountingVm`] has been asked to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvmCounts {
    /// `KVM_SET_GSI_ROUTING` calls.
    pub commits: u64,
    /// Bytes those calls handed to the kernel (header + entries, as the kernel copies them).
    pub commit_bytes: u64,
    /// Routes in the last committed table.
    pub last_routes: u64,
    /// Routes those calls carried, summed (the kernel allocates one entry for each).
    pub routes_committed: u64,
    /// Registered irqfds at each of those calls, summed (the kernel walks every irqfd of
    /// the VM on each commit).
    pub irqfds_walked: u64,
    /// `KVM_IRQFD` assigns.
    pub irqfd_assigns: u64,
    /// `KVM_IRQFD` deassigns.
    pub irqfd_deassigns: u64,
    /// `KVM_SIGNAL_MSI` calls.
    pub signals: u64,
}

impl KvmCounts {
    /// Every kernel call counted.
    pub fn calls(&self) -> u64 {
        self.commits + self.irqfd_assigns + self.irqfd_deassigns + self.signals
    }

    /// What these calls would cost a kernel, in nanoseconds, by a linear model of the
    /// local measurements in the performance anchors (x86 nested guest, Linux 6.18; not
    /// arm64 numbers): `KVM_SET_GSI_ROUTING` 2.8 µs + 78 ns per route + 20 ns per
    /// registered irqfd; `KVM_IRQFD` assign 0.5 µs, deassign 80 µs (an SRCU grace period);
    /// `KVM_SIGNAL_MSI` 0.2 µs. For comparing designs, not for absolute predictions.
    pub fn modelled_kernel_ns(&self) -> f64 {
        2_800.0 * self.commits as f64
            + 78.0 * self.routes_committed as f64
            + 20.0 * self.irqfds_walked as f64
            + 500.0 * self.irqfd_assigns as f64
            + 80_000.0 * self.irqfd_deassigns as f64
            + 200.0 * self.signals as f64
    }

    /// The counts since `before`.
    pub fn since(&self, before: &KvmCounts) -> KvmCounts {
        KvmCounts {
            commits: self.commits - before.commits,
            commit_bytes: self.commit_bytes - before.commit_bytes,
            last_routes: self.last_routes,
            routes_committed: self.routes_committed - before.routes_committed,
            irqfds_walked: self.irqfds_walked - before.irqfds_walked,
            irqfd_assigns: self.irqfd_assigns - before.irqfd_assigns,
            irqfd_deassigns: self.irqfd_deassigns - before.irqfd_deassigns,
            signals: self.signals - before.signals,
        }
    }
}

/// A VM that accepts every call and counts it (atomics: cheap, and shareable behind an
/// `Arc`). One fault can be injected: the next `KVM_SET_GSI_ROUTING` fails.
#[derive(Debug, Default)]
pub struct CountingVm {
    commits: AtomicU64,
    commit_bytes: AtomicU64,
    last_routes: AtomicU64,
    routes_committed: AtomicU64,
    irqfds_walked: AtomicU64,
    irqfd_assigns: AtomicU64,
    irqfd_deassigns: AtomicU64,
    signals: AtomicU64,
    fail_commit: AtomicI32,
}

impl CountingVm {
    /// A VM with all counters at zero.
    pub fn new() -> Self {
        CountingVm::default()
    }

    /// The counters now.
    pub fn counts(&self) -> KvmCounts {
        KvmCounts {
            commits: self.commits.load(Relaxed),
            commit_bytes: self.commit_bytes.load(Relaxed),
            last_routes: self.last_routes.load(Relaxed),
            routes_committed: self.routes_committed.load(Relaxed),
            irqfds_walked: self.irqfds_walked.load(Relaxed),
            irqfd_assigns: self.irqfd_assigns.load(Relaxed),
            irqfd_deassigns: self.irqfd_deassigns.load(Relaxed),
            signals: self.signals.load(Relaxed),
        }
    }

    /// Makes the next `KVM_SET_GSI_ROUTING` fail with `errno` (and count nothing).
    pub fn fail_next_commit(&self, errno: Errno) {
        self.fail_commit.store(errno as i32, Relaxed);
    }
}

impl KvmVm for CountingVm {
    fn set_gsi_routing(&self, routing: &KvmIrqRouting) -> Result<(), Errno> {
        let fail = self.fail_commit.swap(0, Relaxed);
        if fail != 0 {
            return Err(Errno::from_raw(fail));
        }
        self.commits.fetch_add(1, Relaxed);
        self.commit_bytes
            .fetch_add(routing_bytes(routing) as u64, Relaxed);
        let routes = routing.as_slice().len() as u64;
        self.last_routes.store(routes, Relaxed);
        self.routes_committed.fetch_add(routes, Relaxed);
        let irqfds = self.irqfd_assigns.load(Relaxed) - self.irqfd_deassigns.load(Relaxed);
        self.irqfds_walked.fetch_add(irqfds, Relaxed);
        Ok(())
    }

    fn register_irqfd(&self, _eventfd: &EventFd, _gsi: u32) -> Result<(), Errno> {
        self.irqfd_assigns.fetch_add(1, Relaxed);
        Ok(())
    }

    fn unregister_irqfd(&self, _eventfd: &EventFd, _gsi: u32) -> Result<(), Errno> {
        self.irqfd_deassigns.fetch_add(1, Relaxed);
        Ok(())
    }

    fn signal_msi(&self, _msi: &kvm_msi) -> Result<(), Errno> {
        self.signals.fetch_add(1, Relaxed);
        Ok(())
    }
}
