//! Typed RAII owners of iommufd and VFIO objects.
//!
//! Each object keeps the objects it depends on alive (a HWPT its IOAS, a vIOMMU its parent
//! HWPT, a vDEVICE its vIOMMU and device, everything the iommufd file), so dropping in any
//! order destroys in a safe one: an object is destroyed only after everything that uses it.
//! Dropping ignores errors because closing the iommufd destroys whatever is left; `destroy`
//! methods report them.

mod device;
mod hwpt;
mod ioas;
mod iommufd;
#[cfg(feature = "proposed-uapi")]
mod per_vector;
mod smmuv3;
mod viommu;

pub use device::{Device, DeviceInfo, IrqInfo, RegionInfo};
pub use hwpt::Hwpt;
pub use ioas::{Ioas, IovaRange, Prot};
pub use iommufd::Iommufd;
#[cfg(feature = "proposed-uapi")]
pub use per_vector::{DoorbellPage, SwMsiWindow};
pub use smmuv3::{HwInfo, Smmuv3Info, Ste};
pub use viommu::{Vdevice, Vevent, Veventq, Viommu};
