//! The ABI facts the library relies on, as one table.
//!
//! [`CHECKS`] pairs a C expression with the value the Rust side computes. The same table is
//! asserted at compile time here and, in `tests/c_abi.rs`, compiled as C against real kernel
//! headers, so a binding that drifts from the kernel fails the build or the test.

use core::mem::{offset_of, size_of};

use crate::ioctl;
use crate::iommufd as i;
use crate::names as n;
#[cfg(feature = "proposed-uapi")]
use crate::proposed as p;
use crate::vfio as v;

/// Which kernel header a check needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// `<linux/iommufd.h>` (7.2 for the nested items).
    Iommufd,
    /// `<linux/vfio.h>`; the items marked [`Header::Vfio`] exist since Linux 6.1.
    Vfio,
    /// `<linux/vfio.h>` items that need Linux 6.6 or later (device cdev), or whose layout
    /// grew after 6.1.
    VfioCdev,
    /// The proposed per-vector uAPI ([`crate::proposed`]), in both headers: only the
    /// headers of a kernel that carries it (the rig's per-vector kernel) define it.
    Proposed,
}

/// One ABI fact: `c_expr` evaluated by a C compiler must equal `value`.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    /// The header that defines what `c_expr` names.
    pub header: Header,
    /// A C expression of integer type, e.g. `sizeof(struct iommu_ioas_map)`.
    pub c_expr: &'static str,
    /// What the Rust bindings say.
    pub value: u64,
}

macro_rules! size {
    ($h:ident, $m:ident :: $t:ident) => {
        Check {
            header: Header::$h,
            c_expr: concat!("sizeof(struct ", stringify!($t), ")"),
            value: size_of::<$m::$t>() as u64,
        }
    };
}
macro_rules! offset {
    ($h:ident, $m:ident :: $t:ident . $f:ident) => {
        offset!($h, $m::$t.$f, stringify!($f))
    };
    ($h:ident, $m:ident :: $t:ident . $f:ident, $cf:expr) => {
        Check {
            header: Header::$h,
            c_expr: concat!("offsetof(struct ", stringify!($t), ", ", $cf, ")"),
            value: offset_of!($m::$t, $f) as u64,
        }
    };
}
macro_rules! number {
    ($h:ident, $n:ident) => {
        Check {
            header: Header::$h,
            c_expr: stringify!($n),
            value: ioctl::$n as u64,
        }
    };
    ($h:ident, $m:ident :: $n:ident) => {
        Check {
            header: Header::$h,
            c_expr: stringify!($n),
            value: $m::$n as u64,
        }
    };
}

/// Every layout, offset and number the library hands to the kernel.
pub const CHECKS: &[Check] = &[
    // iommufd
    size!(Iommufd, i::iommu_destroy),
    size!(Iommufd, i::iommu_ioas_alloc),
    size!(Iommufd, i::iommu_iova_range),
    size!(Iommufd, i::iommu_ioas_iova_ranges),
    offset!(Iommufd, i::iommu_ioas_iova_ranges.allowed_iovas),
    offset!(Iommufd, i::iommu_ioas_iova_ranges.out_iova_alignment),
    size!(Iommufd, i::iommu_ioas_allow_iovas),
    size!(Iommufd, i::iommu_ioas_map),
    offset!(Iommufd, i::iommu_ioas_map.user_va),
    offset!(Iommufd, i::iommu_ioas_map.iova),
    size!(Iommufd, i::iommu_ioas_map_file),
    offset!(Iommufd, i::iommu_ioas_map_file.iova),
    size!(Iommufd, i::iommu_ioas_copy),
    size!(Iommufd, i::iommu_ioas_unmap),
    size!(Iommufd, i::iommu_option),
    offset!(Iommufd, i::iommu_option.val64),
    size!(Iommufd, i::iommu_hwpt_alloc),
    offset!(Iommufd, i::iommu_hwpt_alloc.data_uptr),
    offset!(Iommufd, i::iommu_hwpt_alloc.fault_id),
    size!(Iommufd, i::iommu_hwpt_arm_smmuv3),
    size!(Iommufd, i::iommu_hw_info),
    offset!(Iommufd, i::iommu_hw_info.out_capabilities),
    size!(Iommufd, i::iommu_hw_info_arm_smmuv3),
    size!(Iommufd, i::iommu_hwpt_invalidate),
    offset!(Iommufd, i::iommu_hwpt_invalidate.entry_num),
    size!(Iommufd, i::iommu_viommu_arm_smmuv3_invalidate),
    size!(Iommufd, i::iommu_viommu_alloc),
    offset!(Iommufd, i::iommu_viommu_alloc.data_uptr),
    size!(Iommufd, i::iommu_vdevice_alloc),
    offset!(Iommufd, i::iommu_vdevice_alloc.virt_id),
    size!(Iommufd, i::iommu_veventq_alloc),
    size!(Iommufd, i::iommufd_vevent_header),
    size!(Iommufd, i::iommu_vevent_arm_smmuv3),
    number!(Iommufd, IOMMU_DESTROY),
    number!(Iommufd, IOMMU_IOAS_ALLOC),
    number!(Iommufd, IOMMU_IOAS_ALLOW_IOVAS),
    number!(Iommufd, IOMMU_IOAS_COPY),
    number!(Iommufd, IOMMU_IOAS_IOVA_RANGES),
    number!(Iommufd, IOMMU_IOAS_MAP),
    number!(Iommufd, IOMMU_IOAS_UNMAP),
    number!(Iommufd, IOMMU_OPTION),
    number!(Iommufd, IOMMU_HWPT_ALLOC),
    number!(Iommufd, IOMMU_GET_HW_INFO),
    number!(Iommufd, IOMMU_HWPT_INVALIDATE),
    number!(Iommufd, IOMMU_IOAS_MAP_FILE),
    number!(Iommufd, IOMMU_VIOMMU_ALLOC),
    number!(Iommufd, IOMMU_VDEVICE_ALLOC),
    number!(Iommufd, IOMMU_VEVENTQ_ALLOC),
    number!(Iommufd, n::IOMMU_HWPT_DATA_ARM_SMMUV3),
    number!(Iommufd, n::IOMMU_VIOMMU_TYPE_ARM_SMMUV3),
    number!(Iommufd, n::IOMMU_HW_INFO_TYPE_ARM_SMMUV3),
    number!(Iommufd, n::IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3),
    number!(Iommufd, n::IOMMU_HWPT_ALLOC_NEST_PARENT),
    // VFIO, present since Linux 6.1
    size!(VfioCdev, v::vfio_device_info), // 20 bytes before 6.x added `pad`
    size!(Vfio, v::vfio_region_info),
    offset!(Vfio, v::vfio_region_info.offset),
    size!(Vfio, v::vfio_irq_info),
    size!(Vfio, v::vfio_irq_set),
    offset!(Vfio, v::vfio_irq_set.data),
    number!(Vfio, VFIO_DEVICE_GET_INFO),
    number!(Vfio, VFIO_DEVICE_GET_REGION_INFO),
    number!(Vfio, VFIO_DEVICE_GET_IRQ_INFO),
    number!(Vfio, VFIO_DEVICE_SET_IRQS),
    number!(Vfio, VFIO_DEVICE_RESET),
    number!(Vfio, VFIO_DEVICE_FEATURE),
    number!(Vfio, v::VFIO_IRQ_SET_DATA_NONE),
    number!(Vfio, v::VFIO_IRQ_SET_DATA_EVENTFD),
    number!(Vfio, v::VFIO_IRQ_SET_ACTION_TRIGGER),
    number!(Vfio, v::VFIO_PCI_MSI_IRQ_INDEX),
    number!(Vfio, v::VFIO_PCI_MSIX_IRQ_INDEX),
    number!(Vfio, v::VFIO_PCI_CONFIG_REGION_INDEX),
    // VFIO device cdev (Linux 6.6+)
    size!(VfioCdev, v::vfio_device_bind_iommufd),
    offset!(VfioCdev, v::vfio_device_bind_iommufd.out_devid),
    size!(VfioCdev, v::vfio_device_attach_iommufd_pt),
    size!(VfioCdev, v::vfio_device_detach_iommufd_pt),
    number!(VfioCdev, VFIO_DEVICE_BIND_IOMMUFD),
    number!(VfioCdev, VFIO_DEVICE_ATTACH_IOMMUFD_PT),
    number!(VfioCdev, VFIO_DEVICE_DETACH_IOMMUFD_PT),
    // The proposed uAPI, as the rig's per-vector kernel defines it
    #[cfg(feature = "proposed-uapi")]
    size!(Proposed, p::iommu_ioas_map_msi),
    #[cfg(feature = "proposed-uapi")]
    offset!(Proposed, p::iommu_ioas_map_msi.iova),
    #[cfg(feature = "proposed-uapi")]
    offset!(Proposed, p::iommu_ioas_map_msi.doorbell_offset),
    #[cfg(feature = "proposed-uapi")]
    number!(Proposed, p::IOMMU_IOAS_MAP_MSI),
    #[cfg(feature = "proposed-uapi")]
    number!(Proposed, p::IOMMU_OPTION_SW_MSI_START),
    #[cfg(feature = "proposed-uapi")]
    number!(Proposed, p::IOMMU_OPTION_SW_MSI_SIZE),
    #[cfg(feature = "proposed-uapi")]
    number!(Proposed, p::VFIO_IRQ_SET_DATA_MSI_IOVA),
    #[cfg(feature = "proposed-uapi")]
    number!(Proposed, p::VFIO_IRQ_SET_ACTION_PREPARE),
    #[cfg(feature = "proposed-uapi")]
    number!(Proposed, p::VFIO_IRQ_SET_DATA_TYPE_MASK),
    #[cfg(feature = "proposed-uapi")]
    number!(Proposed, p::VFIO_IRQ_SET_ACTION_TYPE_MASK),
];

// The facts the library's own arithmetic depends on, pinned at compile time (values from
// the 7.2 headers, reference/uapi-facts.md §5-6).
const _: () = {
    assert!(size_of::<i::iommu_ioas_map>() == 40);
    assert!(size_of::<i::iommu_ioas_iova_ranges>() == 32);
    assert!(size_of::<i::iommu_iova_range>() == 16);
    assert!(size_of::<i::iommu_option>() == 24);
    assert!(size_of::<i::iommu_hw_info>() == 40);
    assert!(size_of::<i::iommu_hwpt_alloc>() == 48);
    assert!(size_of::<i::iommu_hwpt_arm_smmuv3>() == 16);
    assert!(size_of::<i::iommu_viommu_arm_smmuv3_invalidate>() == 16);
    assert!(size_of::<i::iommufd_vevent_header>() == 8);
    assert!(size_of::<i::iommu_vevent_arm_smmuv3>() == 32);
    assert!(size_of::<v::vfio_irq_set>() == 20);
    assert!(offset_of!(v::vfio_irq_set, data) == 20);
    assert!(size_of::<v::vfio_device_bind_iommufd>() == 24);
    assert!(size_of::<v::vfio_device_attach_iommufd_pt>() == 16);
    assert!(size_of::<v::vfio_irq_info>() == 16);
};
