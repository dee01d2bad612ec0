//! Handing the eventfds VFIO signals to KVM: vmm-sys-util's `EventFd` (what KVM irqfds take)
//! can only be built from a raw fd, which is `unsafe`, so the conversion lives here.

use std::os::fd::{AsFd, IntoRawFd, OwnedFd};

use nix::sys::eventfd::EventFd as NixEventFd;
use vmm_sys_util::eventfd::EventFd as VmmEventFd;

use crate::error::{Errno, Error, Op, Result};

/// A vmm-sys-util `EventFd` on the same eventfd as `fd` (a duplicate descriptor: signals on
/// either are seen on both).
pub fn vmm_eventfd(fd: &NixEventFd) -> Result<VmmEventFd> {
    let dup: OwnedFd = fd.as_fd().try_clone_to_owned().map_err(|e| Error::Kernel {
        op: Op::KvmIrqfd,
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EBADF as i32)),
    })?;
    // SAFETY: `dup` is a freshly duplicated, owned eventfd descriptor; into_raw_fd gives up
    // its ownership, which from_raw_fd takes over, so it is closed exactly once.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(dup.into_raw_fd()) })
}
