//! Proposed, unmerged uAPI. None of this is in Linux 7.2 (reference/uapi-facts.md §7); a
//! stock kernel answers these with `EOPNOTSUPP` or `EINVAL`, and the library falls back.
//!
//! Values are taken verbatim from the posted series so that a kernel carrying them (such as
//! the rig's patched kernel, `tests/rig/kernel/patches/`) and this crate agree. The one
//! command no series defines, [`IOMMU_IOAS_MAP_MSI`], is the rig kernel's (its README says
//! why it exists and how it is kept safe).

use crate::iommufd::iommufd_option;

/// Base of a device's software MSI window, as an `IOMMU_OPTION` option id.
///
/// Series: "iommufd: Add MSI mapping support with nested SMMU (Part-2 RMR)" v2 4/7,
/// Nicolin Chen, 14 Oct 2025, lore `cover.1760487869.git.nicolinc@nvidia.com`.
/// Per device: `object_id` is the device id; set before attach (else `EBUSY`); the value is an
/// address, 1 MiB aligned.
pub const IOMMU_OPTION_SW_MSI_START: iommufd_option = 2;

/// Size of a device's software MSI window in MiB, as an `IOMMU_OPTION` option id.
///
/// Same series as [`IOMMU_OPTION_SW_MSI_START`]; 0 means "the driver's window" (start and
/// size); setting only the start moves a window of the driver's size.
pub const IOMMU_OPTION_SW_MSI_SIZE: iommufd_option = 3;

/// `VFIO_DEVICE_SET_IRQS` data type: `data[]` holds one `u64` MSI IOVA per vector.
///
/// Series: "vfio: Allow userspace to specify the address for each MSI vector" RFCv1 7/7
/// (lore `cover.1731130093.git.nicolinc@nvidia.com`), repeated in "iommu: Add MSI mapping
/// support with nested SMMU" RFCv2 13/13 (lore `cover.1736550979.git.nicolinc@nvidia.com`).
pub const VFIO_IRQ_SET_DATA_MSI_IOVA: u32 = 1 << 6;

/// `VFIO_DEVICE_SET_IRQS` action: record per-vector MSI IOVAs before the `TRIGGER` that
/// enables the vectors (the IOVAs are consumed when the host IRQs are allocated).
///
/// Same series as [`VFIO_IRQ_SET_DATA_MSI_IOVA`].
pub const VFIO_IRQ_SET_ACTION_PREPARE: u32 = 1 << 7;

/// `VFIO_IRQ_SET_DATA_TYPE_MASK` as the series widens it.
pub const VFIO_IRQ_SET_DATA_TYPE_MASK: u32 =
    crate::vfio::VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_DATA_MSI_IOVA;

/// `VFIO_IRQ_SET_ACTION_TYPE_MASK` as the series widens it.
pub const VFIO_IRQ_SET_ACTION_TYPE_MASK: u32 =
    crate::vfio::VFIO_IRQ_SET_ACTION_TYPE_MASK | VFIO_IRQ_SET_ACTION_PREPARE;

/// `IOMMUFD_CMD_IOAS_MAP_MSI`: the first command number after Linux 7.2's last
/// (`IOMMUFD_CMD_HW_QUEUE_ALLOC` = 0x94).
pub const IOMMUFD_CMD_IOAS_MAP_MSI: u32 = 0x95;

/// `IOMMU_IOAS_MAP_MSI`: `_IO(';', 0x95)`.
pub const IOMMU_IOAS_MAP_MSI: u32 =
    crate::ioctl::io(crate::iommufd::IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP_MSI);

/// `struct iommu_ioas_map_msi`: map the page holding a device's own MSI doorbell into an
/// IOAS at a chosen IOVA. The kernel finds the page from the device's MSI controller; the
/// caller never names a physical address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct iommu_ioas_map_msi {
    /// `sizeof(struct iommu_ioas_map_msi)`.
    pub size: u32,
    /// Must be 0.
    pub flags: u32,
    /// The IOAS to map into (a nest-parent stage 2 is the IOAS it was allocated from).
    pub ioas_id: u32,
    /// The device whose doorbell page is mapped.
    pub dev_id: u32,
    /// Page-aligned IOVA.
    pub iova: u64,
    /// Out: bytes mapped (one page).
    pub length: u64,
    /// Out: the doorbell register's offset in its page.
    pub doorbell_offset: u32,
    /// Must be 0.
    pub __reserved: u32,
}

const _: () = {
    assert!(core::mem::size_of::<iommu_ioas_map_msi>() == 40);
    assert!(core::mem::offset_of!(iommu_ioas_map_msi, iova) == 16);
    assert!(core::mem::offset_of!(iommu_ioas_map_msi, doorbell_offset) == 32);
};

const _: () = {
    // The new bits must not collide with any merged data-type or action bit.
    assert!(VFIO_IRQ_SET_DATA_MSI_IOVA & crate::vfio::VFIO_IRQ_SET_DATA_TYPE_MASK == 0);
    assert!(VFIO_IRQ_SET_DATA_MSI_IOVA & crate::vfio::VFIO_IRQ_SET_ACTION_TYPE_MASK == 0);
    assert!(VFIO_IRQ_SET_ACTION_PREPARE & crate::vfio::VFIO_IRQ_SET_DATA_TYPE_MASK == 0);
    assert!(VFIO_IRQ_SET_ACTION_PREPARE & crate::vfio::VFIO_IRQ_SET_ACTION_TYPE_MASK == 0);
    // Options 0 and 1 are the merged RLIMIT_MODE and HUGE_PAGES.
    assert!(
        IOMMU_OPTION_SW_MSI_START == crate::iommufd::iommufd_option_IOMMU_OPTION_HUGE_PAGES + 1
    );
};
