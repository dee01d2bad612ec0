//! Test support for the real-kernel tests: tiny userspace drivers for the rig's devices
//! (`edu`, `nvme`), a builder for a guest's SMMUv3 stage 1 (`s1`), and sysfs/PCI helpers
//! (`pci`). Every wait here is bounded and ends in a typed failure, never a hang: the rig's
//! QEMU runs under TCG, where a device may be slow but must not stall a test forever.

#![allow(dead_code)] // each test binary uses a different part

pub mod edu;
pub mod nvme;
pub mod pci;
pub mod s1;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::EventFd;

/// How long one device operation (a DMA, a command, a controller state change) may take on
/// the rig's TCG machine before it counts as hung.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// How long to wait for an interrupt that must arrive.
pub const IRQ_DEADLINE: Duration = Duration::from_secs(3);

/// How long to wait for an interrupt that must NOT arrive. The device raises its MSI in
/// the same step that makes its completion visible, so once the completion is seen, a
/// delivered MSI reaches the eventfd within milliseconds even under TCG.
pub const NO_IRQ_WAIT: Duration = Duration::from_secs(1);

/// Polls `check` every millisecond until it yields `Some`, or `timeout` passes (`None`).
/// The last check happens after the deadline, so a descheduled thread is not a timeout.
pub fn poll_until<T, E>(
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    let deadline = Instant::now() + timeout;
    loop {
        let expired = Instant::now() >= deadline;
        if let Some(v) = check()? {
            return Ok(Some(v));
        }
        if expired {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reads and clears an eventfd's counter; 0 when it has not fired.
pub fn drain(fd: &EventFd) -> u64 {
    let mut b = [0u8; 8];
    match nix::unistd::read(fd.as_fd(), &mut b) {
        Ok(8) => u64::from_ne_bytes(b),
        _ => 0,
    }
}

/// Waits up to `timeout` for a non-blocking eventfd to fire; returns (and clears) its count,
/// 0 if it did not fire in time.
pub fn fired_within(fd: &EventFd, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let count = drain(fd);
        if count > 0 {
            return count;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return 0;
        }
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        // EINTR or a spurious wakeup just goes round again until the deadline.
        let _ = poll(&mut fds, PollTimeout::from(ms));
    }
}

/// Drains every eventfd; returns the counts, in order.
pub fn counts(fds: &[EventFd]) -> Vec<u64> {
    fds.iter().map(drain).collect()
}
