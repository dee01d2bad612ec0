//! ioctl request numbers for iommufd and VFIO.
//!
//! Both subsystems use `_IO(';', nr)` for every command even though each one passes a pointer:
//! the argument size travels inside the structure (`size` / `argsz`), which is how the kernel
//! keeps old and new userspace compatible.

use crate::iommufd as i;
use crate::vfio as v;

/// `_IO(ty, nr)` from `<asm-generic/ioctl.h>`: direction none, size 0.
pub const fn io(ty: u8, nr: u32) -> u32 {
    ((ty as u32) << 8) | nr
}

const fn iommufd(cmd: u32) -> u32 {
    io(i::IOMMUFD_TYPE, cmd)
}

const fn vfio(n: u32) -> u32 {
    io(v::VFIO_TYPE, v::VFIO_BASE + n)
}

/// `IOMMU_DESTROY`
pub const IOMMU_DESTROY: u32 = iommufd(i::IOMMUFD_CMD_DESTROY);
/// `IOMMU_IOAS_ALLOC`
pub const IOMMU_IOAS_ALLOC: u32 = iommufd(i::IOMMUFD_CMD_IOAS_ALLOC);
/// `IOMMU_IOAS_ALLOW_IOVAS`
pub const IOMMU_IOAS_ALLOW_IOVAS: u32 = iommufd(i::IOMMUFD_CMD_IOAS_ALLOW_IOVAS);
/// `IOMMU_IOAS_COPY`
pub const IOMMU_IOAS_COPY: u32 = iommufd(i::IOMMUFD_CMD_IOAS_COPY);
/// `IOMMU_IOAS_IOVA_RANGES`
pub const IOMMU_IOAS_IOVA_RANGES: u32 = iommufd(i::IOMMUFD_CMD_IOAS_IOVA_RANGES);
/// `IOMMU_IOAS_MAP`
pub const IOMMU_IOAS_MAP: u32 = iommufd(i::IOMMUFD_CMD_IOAS_MAP);
/// `IOMMU_IOAS_UNMAP`
pub const IOMMU_IOAS_UNMAP: u32 = iommufd(i::IOMMUFD_CMD_IOAS_UNMAP);
/// `IOMMU_OPTION`
pub const IOMMU_OPTION: u32 = iommufd(i::IOMMUFD_CMD_OPTION);
/// `IOMMU_HWPT_ALLOC`
pub const IOMMU_HWPT_ALLOC: u32 = iommufd(i::IOMMUFD_CMD_HWPT_ALLOC);
/// `IOMMU_GET_HW_INFO`
pub const IOMMU_GET_HW_INFO: u32 = iommufd(i::IOMMUFD_CMD_GET_HW_INFO);
/// `IOMMU_HWPT_INVALIDATE`
pub const IOMMU_HWPT_INVALIDATE: u32 = iommufd(i::IOMMUFD_CMD_HWPT_INVALIDATE);
/// `IOMMU_IOAS_MAP_FILE`
pub const IOMMU_IOAS_MAP_FILE: u32 = iommufd(i::IOMMUFD_CMD_IOAS_MAP_FILE);
/// `IOMMU_VIOMMU_ALLOC`
pub const IOMMU_VIOMMU_ALLOC: u32 = iommufd(i::IOMMUFD_CMD_VIOMMU_ALLOC);
/// `IOMMU_VDEVICE_ALLOC`
pub const IOMMU_VDEVICE_ALLOC: u32 = iommufd(i::IOMMUFD_CMD_VDEVICE_ALLOC);
/// `IOMMU_VEVENTQ_ALLOC`
pub const IOMMU_VEVENTQ_ALLOC: u32 = iommufd(i::IOMMUFD_CMD_VEVENTQ_ALLOC);

/// `VFIO_DEVICE_GET_INFO`
pub const VFIO_DEVICE_GET_INFO: u32 = vfio(7);
/// `VFIO_DEVICE_GET_REGION_INFO`
pub const VFIO_DEVICE_GET_REGION_INFO: u32 = vfio(8);
/// `VFIO_DEVICE_GET_IRQ_INFO`
pub const VFIO_DEVICE_GET_IRQ_INFO: u32 = vfio(9);
/// `VFIO_DEVICE_SET_IRQS`
pub const VFIO_DEVICE_SET_IRQS: u32 = vfio(10);
/// `VFIO_DEVICE_RESET`
pub const VFIO_DEVICE_RESET: u32 = vfio(11);
/// `VFIO_DEVICE_FEATURE`
pub const VFIO_DEVICE_FEATURE: u32 = vfio(17);
/// `VFIO_DEVICE_BIND_IOMMUFD`
pub const VFIO_DEVICE_BIND_IOMMUFD: u32 = vfio(18);
/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`
pub const VFIO_DEVICE_ATTACH_IOMMUFD_PT: u32 = vfio(19);
/// `VFIO_DEVICE_DETACH_IOMMUFD_PT`
pub const VFIO_DEVICE_DETACH_IOMMUFD_PT: u32 = vfio(20);

#[cfg(test)]
mod tests {
    use super::*;

    // Numbers computed by compiling against the 7.2 headers (reference/uapi-facts.md §6);
    // these pin the arithmetic above independently of the C compiler test.
    #[test]
    fn numbers_match_the_7_2_headers() {
        assert_eq!(IOMMU_DESTROY, 0x3b80);
        assert_eq!(IOMMU_IOAS_MAP, 0x3b85);
        assert_eq!(IOMMU_HWPT_ALLOC, 0x3b89);
        assert_eq!(IOMMU_HWPT_INVALIDATE, 0x3b8d);
        assert_eq!(IOMMU_IOAS_MAP_FILE, 0x3b8f);
        assert_eq!(IOMMU_VIOMMU_ALLOC, 0x3b90);
        assert_eq!(IOMMU_VEVENTQ_ALLOC, 0x3b93);
        assert_eq!(VFIO_DEVICE_GET_IRQ_INFO, 0x3b6d);
        assert_eq!(VFIO_DEVICE_SET_IRQS, 0x3b6e);
        assert_eq!(VFIO_DEVICE_BIND_IOMMUFD, 0x3b76);
        assert_eq!(VFIO_DEVICE_DETACH_IOMMUFD_PT, 0x3b78);
    }
}
