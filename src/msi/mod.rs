//! The MSI core: per-vector tables, message composition and guest trap emulation.
//!
//! * [`VectorTable`]: one device's vectors of one IRQ index, sized once, fixed slots, with
//!   provided / enabled / masked / pending bitmaps and one lock. Every guest or host event on
//!   a vector is O(1) and allocates nothing.
//! * [`Composer`]: turns a guest-programmed message into the host message the device must
//!   write and the route the guest's virtual ITS receives, for paging and nested domains.
//! * The trap emulator ([`VectorTable::msix_write`], [`VectorTable::msi_config_write`] and
//!   their reads): guest MMIO to the MSI-X table and PBA, and guest config writes to the MSI
//!   capability, become table updates. Hostile input gets a typed error and changes nothing.

mod compose;
mod device;
pub mod firmware;
mod strategy;
mod table;
mod trap;

pub use compose::{Composer, Domain, DoorbellMap, HostAddressing};
pub use device::MsiDevice;
pub use strategy::{Finding, KernelWindow, Rmr, Strategy, StrategyReport, probe};
pub use table::{Delivery, Effect, VectorState, VectorTable};
pub use trap::{MSI_CAP_LEN, MSIX_CONTROL_ENABLE, MSIX_CONTROL_FUNCTION_MASK, MsixRegion};

/// The IRQ index a table serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IrqIndex {
    /// PCI MSI: up to 32 vectors sharing one address, data differing in the low bits.
    Msi,
    /// PCI MSI-X: up to 2048 vectors, each with its own table entry.
    Msix,
}

impl IrqIndex {
    /// The VFIO IRQ index number.
    pub fn vfio_index(self) -> u32 {
        match self {
            IrqIndex::Msi => vmsi_sys::vfio::VFIO_PCI_MSI_IRQ_INDEX,
            IrqIndex::Msix => vmsi_sys::vfio::VFIO_PCI_MSIX_IRQ_INDEX,
        }
    }

    /// The most vectors the index can have.
    pub fn max_vectors(self) -> u32 {
        match self {
            IrqIndex::Msi => 32,
            IrqIndex::Msix => 2048,
        }
    }
}

/// An MSI message as the guest programmed it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GuestMessage {
    /// Address: a GPA (paging domain) or a guest IOVA (nested domain).
    pub address: u64,
    /// Data: the guest's EventID for its virtual ITS.
    pub data: u32,
}

/// What the guest's virtual ITS receives for a vector: a KVM MSI route
/// (`kvm_irq_routing_msi` with `KVM_MSI_VALID_DEVID`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Route {
    /// GPA of the virtual ITS's `GITS_TRANSLATER`.
    pub doorbell_gpa: u64,
    /// The guest's EventID.
    pub data: u32,
    /// The device id the guest's ITS knows the device by.
    pub devid: u32,
}

/// What the physical device writes for a vector. The data (the host EventID) belongs to
/// the host kernel and is never invented here; only the address is the library's to know.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HostMessage {
    /// The IOVA the device writes: it reaches the physical ITS doorbell through the IOMMU.
    pub address: u64,
}
