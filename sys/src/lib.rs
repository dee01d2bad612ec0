//! Kernel uAPI for `vmsi`: data layouts and ioctl numbers, no logic.
//!
//! * Merged uAPI is re-exported from the bindings crates rather than rewritten:
//!   [`iommufd`] (iommufd-bindings, Linux 7.1 `iommufd.h`, unchanged in 7.2) and [`vfio`]
//!   (vfio-bindings, Linux 7.2 `vfio.h`).
//! * bindgen does not translate the function-like `_IO()` macros, so the ioctl numbers live
//!   in [`ioctl`], computed the way `<asm-generic/ioctl.h>` does.
//! * Proposed, unmerged uAPI is hand-written in [`proposed`] behind the `proposed-uapi`
//!   feature; every item cites the patch series it comes from.
//!
//! Every layout the library hands to the kernel is pinned by the compile-time asserts in
//! [`layout`], and `tests/c_abi.rs` checks them against real kernel headers with a C compiler.

#![no_std]

pub use iommufd_bindings::iommufd;
pub use vfio_bindings::bindings::vfio;

pub mod ioctl;
pub mod layout;
pub mod names;
#[cfg(feature = "proposed-uapi")]
pub mod proposed;

/// The offset of the ARM GICv3 ITS `GITS_TRANSLATER` register (the MSI doorbell) from the
/// start of the ITS translation frame, which begins 64 KiB into the ITS register block.
pub const GITS_TRANSLATER_OFFSET: u64 = 0x1_0040;

/// The SMMUv3 driver's software MSI window (`MSI_IOVA_BASE`, `MSI_IOVA_LENGTH` in
/// `drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c`), reported as an `msi` reserved region.
pub const SMMUV3_SW_MSI_BASE: u64 = 0x800_0000;
/// Length of [`SMMUV3_SW_MSI_BASE`]'s window: 1 MiB.
pub const SMMUV3_SW_MSI_LENGTH: u64 = 0x10_0000;
