//! KVM MSI routes and irqfds for the vectors (feature `kvm`).
//!
//! [`KvmRoutes`](crate::kvm::KvmRoutes) turns the [`Effect`](crate::msi::Effect)s of the MSI
//! core into the fewest KVM calls per guest write:
//!
//! * The route image is kept in kernel ABI layout: a
//!   [`KvmIrqRouting`](crate::kvm::KvmIrqRouting) (`struct kvm_irq_routing` header +
//!   `kvm_irq_routing_entry` array, one contiguous buffer), each MSI route of type
//!   `KVM_IRQ_ROUTING_MSI` with `KVM_MSI_VALID_DEVID` (arm64 ITS routes carry the device
//!   id). A route update writes one 48-byte entry in place: O(1), no allocation. A commit
//!   hands the very same buffer to `KVM_SET_GSI_ROUTING`: no copy, no allocation.
//! * GSIs are allocated on a vector's first route (the guest's first unmask), lowest free
//!   first, and freed when the device is removed. `KVM_MAX_IRQ_ROUTES` (4096) is the
//!   ceiling: the 4097th route is refused with
//!   [`ROUTES_EXHAUSTED`](crate::kvm::ROUTES_EXHAUSTED) and changes nothing.
//! * `KVM_SET_GSI_ROUTING` is issued only when a route really changed, and once for any
//!   number of changes across devices ([`KvmRoutes::apply`](crate::kvm::KvmRoutes::apply)
//!   stages, [`KvmRoutes::commit`](crate::kvm::KvmRoutes::commit) commits). On the trap path
//!   ([`KvmRoutes::update`](crate::kvm::KvmRoutes::update)) routes put in force while the
//!   table is closed (MSI-X disabled or function masked) wait for it to open, so a bring-up
//!   or restore is one commit.
//! * Each vector's irqfd (`KVM_IRQFD` with the vector's eventfd and GSI) is registered once,
//!   right after the commit that first routes it, and is only torn down when the device is
//!   removed: masking never deassigns it (a deassign waits for an SRCU grace period, tens of
//!   microseconds to milliseconds).
//!
//! # Mask and pending semantics
//!
//! A mask costs no kernel call: the route and the irqfd stay. Interrupts that the VMM holds
//! itself (the [`VectorTable`](crate::msi::VectorTable) marks them pending when the VMM
//! reports them with `host_interrupt` while the vector or the function is masked) are
//! delivered on unmask with one `KVM_SIGNAL_MSI` of the vector's route, so none is lost.
//!
//! The limit, stated plainly: KVM has no per-route mask, so an interrupt that the *device*
//! raises while the guest has the vector masked travels eventfd → irqfd → vITS at once
//! instead of being held. Before a vector's first unmask there is no irqfd yet, so those
//! interrupts accumulate in the eventfd and KVM injects them when the irqfd is registered
//! (exactly the pending-until-unmask behaviour). After that, a VMM that needs strict
//! hold-while-masked semantics diverts the vector's VFIO trigger to an eventfd it polls on
//! [`Effect::Masked`](crate::msi::Effect::Masked) and back on unmask (one
//! `VFIO_DEVICE_SET_IRQS` each way, what QEMU does), feeding what it reads to
//! `VectorTable::host_interrupt`; the irqfd stays registered throughout. Linux guests do not
//! need that: they mask MSI-X entries while reprogramming them (the trap emulator already
//! defers those writes to the unmask) and treat an interrupt that arrives while the line is
//! disabled as pending in software.
//!
//! # Kernel calls go through a trait
//!
//! [`KvmVm`](crate::kvm::KvmVm) is the four verbs used: `KVM_SET_GSI_ROUTING`, `KVM_IRQFD`
//! (assign and deassign) and `KVM_SIGNAL_MSI`. It is implemented for `kvm_ioctls::VmFd` (the
//! real ioctls) and by [`CountingVm`](crate::kvm::CountingVm), which counts calls and bytes
//! without `/dev/kvm`, for tests and benchmarks.

mod counting;
mod routes;

use std::sync::Arc;

pub use kvm_bindings::{
    KVM_IRQ_ROUTING_MSI, KVM_MAX_IRQ_ROUTES, KVM_MSI_VALID_DEVID, KvmIrqRouting, kvm_irq_routing,
    kvm_irq_routing_entry, kvm_msi,
};
pub use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

pub use counting::{CountingVm, KvmCounts};
pub use routes::{DeviceKey, KvmRoutes, ROUTES_EXHAUSTED, RoutesConfig, is_routes_exhausted};

use crate::error::Errno;
use crate::msi::Route;

/// The KVM verbs the route table needs, on one VM.
///
/// Every verb returns the kernel's errno on failure; [`KvmRoutes`] names the operation.
pub trait KvmVm {
    /// `KVM_SET_GSI_ROUTING`: replaces the VM's whole routing table with `routing`.
    fn set_gsi_routing(&self, routing: &KvmIrqRouting) -> Result<(), Errno>;
    /// `KVM_IRQFD` assign: signalling `eventfd` injects `gsi`'s route.
    fn register_irqfd(&self, eventfd: &EventFd, gsi: u32) -> Result<(), Errno>;
    /// `KVM_IRQFD` with `KVM_IRQFD_FLAG_DEASSIGN`.
    fn unregister_irqfd(&self, eventfd: &EventFd, gsi: u32) -> Result<(), Errno>;
    /// `KVM_SIGNAL_MSI`: injects one MSI now, without a route.
    fn signal_msi(&self, msi: &kvm_msi) -> Result<(), Errno>;
}

fn errno(e: vmm_sys_util::errno::Error) -> Errno {
    Errno::from_raw(e.errno())
}

impl KvmVm for kvm_ioctls::VmFd {
    fn set_gsi_routing(&self, routing: &KvmIrqRouting) -> Result<(), Errno> {
        kvm_ioctls::VmFd::set_gsi_routing(self, routing).map_err(errno)
    }

    fn register_irqfd(&self, eventfd: &EventFd, gsi: u32) -> Result<(), Errno> {
        kvm_ioctls::VmFd::register_irqfd(self, eventfd, gsi).map_err(errno)
    }

    fn unregister_irqfd(&self, eventfd: &EventFd, gsi: u32) -> Result<(), Errno> {
        kvm_ioctls::VmFd::unregister_irqfd(self, eventfd, gsi).map_err(errno)
    }

    fn signal_msi(&self, msi: &kvm_msi) -> Result<(), Errno> {
        // A positive return only says whether the guest accepted it; both are delivered.
        kvm_ioctls::VmFd::signal_msi(self, *msi)
            .map(|_| ())
            .map_err(errno)
    }
}

impl<T: KvmVm + ?Sized> KvmVm for &T {
    fn set_gsi_routing(&self, routing: &KvmIrqRouting) -> Result<(), Errno> {
        (**self).set_gsi_routing(routing)
    }

    fn register_irqfd(&self, eventfd: &EventFd, gsi: u32) -> Result<(), Errno> {
        (**self).register_irqfd(eventfd, gsi)
    }

    fn unregister_irqfd(&self, eventfd: &EventFd, gsi: u32) -> Result<(), Errno> {
        (**self).unregister_irqfd(eventfd, gsi)
    }

    fn signal_msi(&self, msi: &kvm_msi) -> Result<(), Errno> {
        (**self).signal_msi(msi)
    }
}

impl<T: KvmVm + ?Sized> KvmVm for Arc<T> {
    fn set_gsi_routing(&self, routing: &KvmIrqRouting) -> Result<(), Errno> {
        (**self).set_gsi_routing(routing)
    }

    fn register_irqfd(&self, eventfd: &EventFd, gsi: u32) -> Result<(), Errno> {
        (**self).register_irqfd(eventfd, gsi)
    }

    fn unregister_irqfd(&self, eventfd: &EventFd, gsi: u32) -> Result<(), Errno> {
        (**self).unregister_irqfd(eventfd, gsi)
    }

    fn signal_msi(&self, msi: &kvm_msi) -> Result<(), Errno> {
        (**self).signal_msi(msi)
    }
}

/// The routing entry for `route` at `gsi`: an MSI route with a valid device id.
pub fn msi_route_entry(gsi: u32, route: &Route) -> kvm_irq_routing_entry {
    // Start from all-zero bytes: the union is wider than the MSI member and every byte of
    // the entry reaches the kernel.
    let mut e = kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        flags: KVM_MSI_VALID_DEVID,
        ..Default::default()
    };
    e.u.msi = kvm_bindings::kvm_irq_routing_msi {
        address_lo: route.doorbell_gpa as u32,
        address_hi: (route.doorbell_gpa >> 32) as u32,
        data: route.data,
        __bindgen_anon_1: kvm_bindings::kvm_irq_routing_msi__bindgen_ty_1 { devid: route.devid },
    };
    e
}

/// The `KVM_SIGNAL_MSI` argument that injects `route` once.
pub fn msi_of(route: &Route) -> kvm_msi {
    kvm_msi {
        address_lo: route.doorbell_gpa as u32,
        address_hi: (route.doorbell_gpa >> 32) as u32,
        data: route.data,
        flags: KVM_MSI_VALID_DEVID,
        devid: route.devid,
        pad: [0; 12],
    }
}

/// Bytes `KVM_SET_GSI_ROUTING` copies in for `routing`: the header and every entry.
pub fn routing_bytes(routing: &KvmIrqRouting) -> usize {
    size_of::<kvm_irq_routing>() + size_of_val(routing.as_slice())
}

// The kernel ABI the image relies on (include/uapi/linux/kvm.h).
const _: () = assert!(size_of::<kvm_irq_routing>() == 8);
const _: () = assert!(size_of::<kvm_irq_routing_entry>() == 48);
