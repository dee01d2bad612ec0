//! `vmsi`: per-vector MSI handling for virtual machines on ARM SMMUv3 + GICv3 ITS hosts,
//! on Linux iommufd and VFIO device cdevs.
//!
//! Layers, top to bottom: typed RAII objects ([`Iommufd`], [`Ioas`], [`Hwpt`], [`Viommu`],
//! [`Vdevice`], [`Veventq`], [`Device`]) over one kernel seam ([`seam::Kernel`]) with two
//! backends: [`seam::Host`], the real ioctls, and [`seam::Sim`], an in-process model of the
//! Linux 7.2 semantics for tests and fuzzing.

pub mod error;
pub mod ids;
/// KVM MSI routes and irqfds for the vectors: a route image in kernel ABI layout, minimal commits.
#[cfg(feature = "kvm")]
pub mod kvm;
pub mod msi;
mod objects;
pub mod pci;
pub mod seam;

pub use error::{Errno, Error, Feature, Op, Result};
pub use ids::{DeviceId, HwptId, IoasId, VdeviceId, VeventqId, ViommuId};
pub use objects::{
    Device, DeviceInfo, HwInfo, Hwpt, Ioas, Iommufd, IovaRange, IrqInfo, Prot, RegionInfo,
    Smmuv3Info, Ste, Vdevice, Vevent, Veventq, Viommu,
};
#[cfg(feature = "proposed-uapi")]
pub use objects::{DoorbellPage, SwMsiWindow};
pub use seam::{DmaMemory, MmioRegion};
