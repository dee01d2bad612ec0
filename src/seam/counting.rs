//! `Counting`: any kernel, with every verb counted, for "how many kernel calls did that take"
//! on the real kernel as well as on Sim.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use vmsi_sys::iommufd as i;
use vmsi_sys::vfio as v;

use super::{DmaMemory, IrqData, IrqSetHeader, Kernel, KernelFd, MmioRegion};
use crate::error::{Errno, Op};

const OPS: [Op; 31] = [
    Op::OpenIommufd,
    Op::OpenDevice,
    Op::Close,
    Op::Read,
    Op::Mmap,
    Op::Destroy,
    Op::IoasAlloc,
    Op::IoasAllowIovas,
    Op::IoasCopy,
    Op::IoasIovaRanges,
    Op::IoasMap,
    Op::IoasMapFile,
    Op::IoasMapMsi,
    Op::IoasUnmap,
    Op::Option,
    Op::HwptAlloc,
    Op::GetHwInfo,
    Op::HwptInvalidate,
    Op::ViommuAlloc,
    Op::VdeviceAlloc,
    Op::VeventqAlloc,
    Op::DeviceBind,
    Op::DeviceAttach,
    Op::DeviceDetach,
    Op::DeviceGetInfo,
    Op::DeviceGetRegionInfo,
    Op::DeviceGetIrqInfo,
    Op::DeviceSetIrqs,
    Op::DeviceReset,
    Op::DeviceRegionRead,
    Op::DeviceRegionWrite,
];

/// Wraps a [`Kernel`] and counts each verb (atomically, without allocating), so a test or a
/// VMM can see how many ioctls an operation really cost.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn Kernel>,
    counts: [AtomicU64; OPS.len()],
}

impl Counting {
    /// Counts calls made through `inner`.
    pub fn new(inner: Arc<dyn Kernel>) -> Self {
        Counting {
            inner,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The wrapped kernel.
    pub fn inner(&self) -> &Arc<dyn Kernel> {
        &self.inner
    }

    /// Calls of `op` so far.
    pub fn count(&self, op: Op) -> u64 {
        OPS.iter()
            .position(|o| *o == op)
            .map_or(0, |k| self.counts[k].load(Ordering::Relaxed))
    }

    fn hit(&self, op: Op) {
        if let Some(k) = OPS.iter().position(|o| *o == op) {
            self.counts[k].fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Kernel for Counting {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn open_iommufd(&self) -> Result<KernelFd, Errno> {
        self.hit(Op::OpenIommufd);
        self.inner.open_iommufd()
    }
    fn open_device(&self, path: &Path) -> Result<KernelFd, Errno> {
        self.hit(Op::OpenDevice);
        self.inner.open_device(path)
    }
    fn adopt(&self, fd: OwnedFd) -> Result<KernelFd, Errno> {
        self.inner.adopt(fd)
    }
    fn close(&self, fd: KernelFd) {
        self.hit(Op::Close);
        self.inner.close(fd)
    }
    fn read(&self, fd: KernelFd, buf: &mut [u8]) -> Result<usize, Errno> {
        self.hit(Op::Read);
        self.inner.read(fd, buf)
    }
    fn destroy(&self, fd: KernelFd, arg: &mut i::iommu_destroy) -> Result<(), Errno> {
        self.hit(Op::Destroy);
        self.inner.destroy(fd, arg)
    }
    fn ioas_alloc(&self, fd: KernelFd, arg: &mut i::iommu_ioas_alloc) -> Result<(), Errno> {
        self.hit(Op::IoasAlloc);
        self.inner.ioas_alloc(fd, arg)
    }
    fn ioas_map_memory(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_ioas_map,
        mem: &DmaMemory,
        offset: usize,
    ) -> Result<(), Errno> {
        self.hit(Op::IoasMap);
        self.inner.ioas_map_memory(fd, arg, mem, offset)
    }
    unsafe fn ioas_map_user(&self, fd: KernelFd, arg: &mut i::iommu_ioas_map) -> Result<(), Errno> {
        self.hit(Op::IoasMap);
        // SAFETY: the caller upholds the trait's contract for the range; it is forwarded
        // unchanged.
        unsafe { self.inner.ioas_map_user(fd, arg) }
    }
    fn ioas_map_file(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_ioas_map_file,
        file: BorrowedFd<'_>,
    ) -> Result<(), Errno> {
        self.hit(Op::IoasMapFile);
        self.inner.ioas_map_file(fd, arg, file)
    }
    fn ioas_unmap(&self, fd: KernelFd, arg: &mut i::iommu_ioas_unmap) -> Result<(), Errno> {
        self.hit(Op::IoasUnmap);
        self.inner.ioas_unmap(fd, arg)
    }
    fn ioas_copy(&self, fd: KernelFd, arg: &mut i::iommu_ioas_copy) -> Result<(), Errno> {
        self.hit(Op::IoasCopy);
        self.inner.ioas_copy(fd, arg)
    }
    fn ioas_iova_ranges(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_ioas_iova_ranges,
        out: &mut [i::iommu_iova_range],
    ) -> Result<(), Errno> {
        self.hit(Op::IoasIovaRanges);
        self.inner.ioas_iova_ranges(fd, arg, out)
    }
    fn ioas_allow_iovas(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_ioas_allow_iovas,
        ranges: &[i::iommu_iova_range],
    ) -> Result<(), Errno> {
        self.hit(Op::IoasAllowIovas);
        self.inner.ioas_allow_iovas(fd, arg, ranges)
    }
    #[cfg(feature = "proposed-uapi")]
    fn ioas_map_msi(
        &self,
        fd: KernelFd,
        arg: &mut vmsi_sys::proposed::iommu_ioas_map_msi,
    ) -> Result<(), Errno> {
        self.hit(Op::IoasMapMsi);
        self.inner.ioas_map_msi(fd, arg)
    }
    fn option(&self, fd: KernelFd, arg: &mut i::iommu_option) -> Result<(), Errno> {
        self.hit(Op::Option);
        self.inner.option(fd, arg)
    }
    fn hwpt_alloc(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_hwpt_alloc,
        data: &[u8],
    ) -> Result<(), Errno> {
        self.hit(Op::HwptAlloc);
        self.inner.hwpt_alloc(fd, arg, data)
    }
    fn get_hw_info(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_hw_info,
        data: &mut [u8],
    ) -> Result<(), Errno> {
        self.hit(Op::GetHwInfo);
        self.inner.get_hw_info(fd, arg, data)
    }
    fn hwpt_invalidate(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_hwpt_invalidate,
        entries: &[u8],
    ) -> Result<(), Errno> {
        self.hit(Op::HwptInvalidate);
        self.inner.hwpt_invalidate(fd, arg, entries)
    }
    fn viommu_alloc(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_viommu_alloc,
        data: &[u8],
    ) -> Result<(), Errno> {
        self.hit(Op::ViommuAlloc);
        self.inner.viommu_alloc(fd, arg, data)
    }
    fn vdevice_alloc(&self, fd: KernelFd, arg: &mut i::iommu_vdevice_alloc) -> Result<(), Errno> {
        self.hit(Op::VdeviceAlloc);
        self.inner.vdevice_alloc(fd, arg)
    }
    fn veventq_alloc(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_veventq_alloc,
    ) -> Result<KernelFd, Errno> {
        self.hit(Op::VeventqAlloc);
        self.inner.veventq_alloc(fd, arg)
    }
    fn device_bind(
        &self,
        device: KernelFd,
        iommufd: KernelFd,
        arg: &mut v::vfio_device_bind_iommufd,
    ) -> Result<(), Errno> {
        self.hit(Op::DeviceBind);
        self.inner.device_bind(device, iommufd, arg)
    }
    fn device_attach(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_device_attach_iommufd_pt,
    ) -> Result<(), Errno> {
        self.hit(Op::DeviceAttach);
        self.inner.device_attach(device, arg)
    }
    fn device_detach(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_device_detach_iommufd_pt,
    ) -> Result<(), Errno> {
        self.hit(Op::DeviceDetach);
        self.inner.device_detach(device, arg)
    }
    fn device_get_info(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_device_info,
    ) -> Result<(), Errno> {
        self.hit(Op::DeviceGetInfo);
        self.inner.device_get_info(device, arg)
    }
    fn device_get_region_info(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_region_info,
    ) -> Result<(), Errno> {
        self.hit(Op::DeviceGetRegionInfo);
        self.inner.device_get_region_info(device, arg)
    }
    fn device_get_irq_info(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_irq_info,
    ) -> Result<(), Errno> {
        self.hit(Op::DeviceGetIrqInfo);
        self.inner.device_get_irq_info(device, arg)
    }
    fn device_set_irqs(
        &self,
        device: KernelFd,
        header: &IrqSetHeader,
        data: IrqData<'_>,
    ) -> Result<u32, Errno> {
        self.hit(Op::DeviceSetIrqs);
        self.inner.device_set_irqs(device, header, data)
    }
    fn device_reset(&self, device: KernelFd) -> Result<(), Errno> {
        self.hit(Op::DeviceReset);
        self.inner.device_reset(device)
    }
    fn device_read(&self, device: KernelFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
        self.hit(Op::DeviceRegionRead);
        self.inner.device_read(device, buf, offset)
    }
    fn device_write(&self, device: KernelFd, buf: &[u8], offset: u64) -> Result<usize, Errno> {
        self.hit(Op::DeviceRegionWrite);
        self.inner.device_write(device, buf, offset)
    }
    fn device_mmap(&self, device: KernelFd, offset: u64, len: usize) -> Result<MmioRegion, Errno> {
        self.hit(Op::Mmap);
        self.inner.device_mmap(device, offset, len)
    }
}
