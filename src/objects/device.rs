//! VFIO devices, opened through their cdev and bound to an iommufd.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use vmsi_sys::iommufd as i;
use vmsi_sys::vfio as v;

use super::iommufd::Ctx;
use super::{HwInfo, Hwpt, Ioas, Iommufd};
use crate::error::{Errno, Error, Op, Result};
use crate::ids::{DeviceId, HwptId};
use crate::seam::{IrqData, IrqSetHeader, Kernel, KernelFd, MmioRegion};

/// `VFIO_DEVICE_GET_INFO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Regions (9 for PCI: BAR0-5, ROM, config, VGA).
    pub num_regions: u32,
    /// IRQ indexes (5 for PCI: INTx, MSI, MSI-X, ERR, REQ).
    pub num_irqs: u32,
}

/// `VFIO_DEVICE_GET_REGION_INFO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionInfo {
    /// Region index.
    pub index: u32,
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Size in bytes (0: absent).
    pub size: u64,
    /// Offset of the region in the device file (for pread/pwrite/mmap).
    pub offset: u64,
}

impl RegionInfo {
    /// Whether the region can be mapped with [`Device::map_region`].
    pub fn mappable(&self) -> bool {
        self.flags & v::VFIO_REGION_INFO_FLAG_MMAP != 0
    }
}

/// `VFIO_DEVICE_GET_IRQ_INFO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqInfo {
    /// IRQ index.
    pub index: u32,
    /// `VFIO_IRQ_INFO_*`.
    pub flags: u32,
    /// Vectors.
    pub count: u32,
}

impl IrqInfo {
    /// Whether vectors can be added while the index is enabled (dynamic MSI-X).
    pub fn resizable(&self) -> bool {
        self.flags & v::VFIO_IRQ_INFO_NORESIZE == 0
    }
}

/// A VFIO device cdev. Cloning gives another handle to the same open device.
#[derive(Clone, Debug)]
pub struct Device {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    kernel: Arc<dyn Kernel>,
    fd: KernelFd,
    path: Option<PathBuf>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    bound: Option<(Arc<Ctx>, DeviceId)>,
    attached: Option<Attachment>,
}

/// What the device is attached to, held so it outlives the attachment.
#[derive(Debug)]
enum Attachment {
    // The IOAS is held, not read: it must outlive the attachment.
    Ioas(#[allow(dead_code)] Ioas, HwptId),
    Hwpt(Hwpt),
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the cdev unbinds the device (IRQs off, detached) before the iommufd, which
        // `state` still holds, can close.
        self.kernel.close(self.fd);
    }
}

fn not_bound() -> Error {
    Error::InvalidArgument("the device is not bound to an iommufd")
}

impl Device {
    /// Opens a VFIO cdev (`/dev/vfio/devices/vfioN`).
    pub fn open(kernel: Arc<dyn Kernel>, path: impl AsRef<Path>) -> Result<Device> {
        let path = path.as_ref();
        let fd = kernel.open_device(path).map_err(|errno| Error::Kernel {
            op: Op::OpenDevice,
            errno,
        })?;
        Ok(Device::new(kernel, fd, Some(path.to_path_buf())))
    }

    /// Adopts a device fd the caller already opened (not yet bound).
    pub fn from_fd(kernel: Arc<dyn Kernel>, fd: OwnedFd) -> Result<Device> {
        let fd = kernel.adopt(fd).map_err(Ctx::err(Op::OpenDevice))?;
        Ok(Device::new(kernel, fd, None))
    }

    fn new(kernel: Arc<dyn Kernel>, fd: KernelFd, path: Option<PathBuf>) -> Device {
        Device {
            inner: Arc::new(Inner {
                kernel,
                fd,
                path,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The cdev of the PCI device at `bdf` (e.g. `0000:00:02.0`) bound to vfio-pci, from
    /// `/sys/bus/pci/devices/<bdf>/vfio-dev/vfioN`.
    pub fn cdev_path(bdf: &str) -> Result<PathBuf> {
        if bdf.is_empty() || bdf.contains('/') || bdf.contains("..") {
            return Err(Error::InvalidArgument("not a PCI address"));
        }
        let dir = PathBuf::from(format!("/sys/bus/pci/devices/{bdf}/vfio-dev"));
        let io = |source| Error::Io {
            path: dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(&dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("vfio") {
                return Ok(PathBuf::from("/dev/vfio/devices").join(&*name));
            }
        }
        Err(Error::Io {
            path: dir.clone(),
            source: std::io::ErrorKind::NotFound.into(),
        })
    }

    /// The path it was opened from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The device file, for raw seam calls.
    pub fn fd(&self) -> KernelFd {
        self.inner.fd
    }

    fn kernel(&self) -> &dyn Kernel {
        &*self.inner.kernel
    }

    /// `VFIO_DEVICE_BIND_IOMMUFD`. A device binds once; the iommufd stays open while the
    /// device is bound.
    pub fn bind(&self, iommufd: &Iommufd) -> Result<DeviceId> {
        let mut st = self.inner.state.lock();
        let mut arg = v::vfio_device_bind_iommufd {
            argsz: size_of::<v::vfio_device_bind_iommufd>() as u32,
            ..Default::default()
        };
        self.kernel()
            .device_bind(self.inner.fd, iommufd.fd(), &mut arg)
            .map_err(Ctx::err(Op::DeviceBind))?;
        let id = DeviceId(arg.out_devid);
        st.bound = Some((iommufd.ctx.clone(), id));
        Ok(id)
    }

    /// The iommufd the device is bound to and its id there.
    #[cfg(feature = "proposed-uapi")]
    pub(super) fn binding(&self) -> Result<(Arc<Ctx>, DeviceId)> {
        self.inner.state.lock().bound.clone().ok_or_else(not_bound)
    }

    /// The device's id in its iommufd, once bound.
    pub fn id(&self) -> Option<DeviceId> {
        self.inner.state.lock().bound.as_ref().map(|b| b.1)
    }

    pub(crate) fn require_id(&self) -> Result<DeviceId> {
        self.id().ok_or_else(not_bound)
    }

    fn attach_raw(&self, pt_id: u32) -> Result<u32> {
        let mut arg = v::vfio_device_attach_iommufd_pt {
            argsz: size_of::<v::vfio_device_attach_iommufd_pt>() as u32,
            pt_id,
            ..Default::default()
        };
        self.kernel()
            .device_attach(self.inner.fd, &mut arg)
            .map_err(Ctx::err(Op::DeviceAttach))?;
        Ok(arg.pt_id)
    }

    /// Attaches (or moves) the device to `ioas`; the kernel finds or makes a paging HWPT and
    /// returns its id. An IOAS mapping inside the device's reserved MSI window makes this
    /// fail with `EADDRINUSE`.
    pub fn attach_ioas(&self, ioas: &Ioas) -> Result<HwptId> {
        let mut st = self.inner.state.lock();
        if st.bound.is_none() {
            return Err(not_bound());
        }
        let hwpt = HwptId(self.attach_raw(ioas.id().0)?);
        st.attached = Some(Attachment::Ioas(ioas.clone(), hwpt));
        Ok(hwpt)
    }

    /// Attaches (or moves) the device to a HWPT (paging, nest parent or nested).
    pub fn attach_hwpt(&self, hwpt: &Hwpt) -> Result<()> {
        let mut st = self.inner.state.lock();
        if st.bound.is_none() {
            return Err(not_bound());
        }
        self.attach_raw(hwpt.id().0)?;
        st.attached = Some(Attachment::Hwpt(hwpt.clone()));
        Ok(())
    }

    /// The HWPT the device is attached to.
    pub fn attached_hwpt(&self) -> Option<HwptId> {
        match &self.inner.state.lock().attached {
            Some(Attachment::Ioas(_, h)) => Some(*h),
            Some(Attachment::Hwpt(h)) => Some(h.id()),
            None => None,
        }
    }

    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT`: DMA is blocked from now on.
    pub fn detach(&self) -> Result<()> {
        let mut st = self.inner.state.lock();
        let mut arg = v::vfio_device_detach_iommufd_pt {
            argsz: size_of::<v::vfio_device_detach_iommufd_pt>() as u32,
            ..Default::default()
        };
        self.kernel()
            .device_detach(self.inner.fd, &mut arg)
            .map_err(Ctx::err(Op::DeviceDetach))?;
        st.attached = None;
        Ok(())
    }

    /// `VFIO_DEVICE_GET_INFO`.
    pub fn info(&self) -> Result<DeviceInfo> {
        let mut arg = v::vfio_device_info {
            argsz: 16,
            ..Default::default()
        };
        self.kernel()
            .device_get_info(self.inner.fd, &mut arg)
            .map_err(Ctx::err(Op::DeviceGetInfo))?;
        Ok(DeviceInfo {
            flags: arg.flags,
            num_regions: arg.num_regions,
            num_irqs: arg.num_irqs,
        })
    }

    /// `VFIO_DEVICE_GET_REGION_INFO`.
    pub fn region_info(&self, index: u32) -> Result<RegionInfo> {
        let mut arg = v::vfio_region_info {
            argsz: size_of::<v::vfio_region_info>() as u32,
            index,
            ..Default::default()
        };
        self.kernel()
            .device_get_region_info(self.inner.fd, &mut arg)
            .map_err(Ctx::err(Op::DeviceGetRegionInfo))?;
        Ok(RegionInfo {
            index,
            flags: arg.flags,
            size: arg.size,
            offset: arg.offset,
        })
    }

    /// `VFIO_DEVICE_GET_IRQ_INFO`.
    pub fn irq_info(&self, index: u32) -> Result<IrqInfo> {
        let mut arg = v::vfio_irq_info {
            argsz: size_of::<v::vfio_irq_info>() as u32,
            index,
            ..Default::default()
        };
        self.kernel()
            .device_get_irq_info(self.inner.fd, &mut arg)
            .map_err(Ctx::err(Op::DeviceGetIrqInfo))?;
        Ok(IrqInfo {
            index,
            flags: arg.flags,
            count: arg.count,
        })
    }

    /// Maps a whole region (a BAR) for volatile 32/64-bit access.
    pub fn map_region(&self, index: u32) -> Result<MmioRegion> {
        let info = self.region_info(index)?;
        if !info.mappable() || info.size == 0 || info.size > usize::MAX as u64 {
            return Err(Error::InvalidArgument("the region cannot be mapped"));
        }
        self.kernel()
            .device_mmap(self.inner.fd, info.offset, info.size as usize)
            .map_err(Ctx::err(Op::Mmap))
    }

    fn config_offset(&self) -> u64 {
        (v::VFIO_PCI_CONFIG_REGION_INDEX as u64) << 40
    }

    /// Reads PCI config space (as VFIO virtualizes it).
    pub fn read_config(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let n = self
            .kernel()
            .device_read(self.inner.fd, buf, self.config_offset() + offset)
            .map_err(Ctx::err(Op::DeviceRegionRead))?;
        if n == buf.len() {
            Ok(())
        } else {
            Err(Error::Kernel {
                op: Op::DeviceRegionRead,
                errno: Errno::EIO,
            })
        }
    }

    /// Writes PCI config space.
    pub fn write_config(&self, offset: u64, buf: &[u8]) -> Result<()> {
        let n = self
            .kernel()
            .device_write(self.inner.fd, buf, self.config_offset() + offset)
            .map_err(Ctx::err(Op::DeviceRegionWrite))?;
        if n == buf.len() {
            Ok(())
        } else {
            Err(Error::Kernel {
                op: Op::DeviceRegionWrite,
                errno: Errno::EIO,
            })
        }
    }

    /// A raw `VFIO_DEVICE_SET_IRQS`.
    pub fn set_irqs(&self, header: &IrqSetHeader, data: IrqData<'_>) -> Result<()> {
        match self.kernel().device_set_irqs(self.inner.fd, header, data) {
            Ok(0) => Ok(()),
            // vfio_msi_enable could not get every vector: it enabled none and says how many
            // it could get.
            Ok(_) => Err(Error::Kernel {
                op: Op::DeviceSetIrqs,
                errno: Errno::ENOSPC,
            }),
            Err(errno) => Err(Error::Kernel {
                op: Op::DeviceSetIrqs,
                errno,
            }),
        }
    }

    /// Refuses to enable interrupts on a device that is not attached to a page table.
    ///
    /// Linux 7.2 answers such a request with ENOSPC (the blocking domain has no MSI
    /// cookie) and, as seen on the rig, the device then cannot enable MSI again until the
    /// host reboots, even after attach and reopen. Asking first costs one lock.
    fn require_attached(&self) -> Result<()> {
        if self.inner.state.lock().attached.is_some() {
            Ok(())
        } else {
            Err(Error::InvalidArgument(
                "attach the device to an IOAS or HWPT before enabling its interrupts",
            ))
        }
    }

    /// Enables MSI or MSI-X `index` with one eventfd (or none: `None`) per vector from 0.
    /// The device must be attached (see the errors).
    pub fn enable_irqs(&self, index: u32, eventfds: &[Option<BorrowedFd<'_>>]) -> Result<()> {
        self.require_attached()?;
        let header = IrqSetHeader {
            flags: v::VFIO_IRQ_SET_DATA_EVENTFD | v::VFIO_IRQ_SET_ACTION_TRIGGER,
            index,
            start: 0,
            count: eventfds.len() as u32,
        };
        self.set_irqs(&header, IrqData::Eventfds(eventfds))
    }

    /// Sets one vector's eventfd (or removes it with `None`) on an enabled index. The
    /// argument lives on the stack: no allocation.
    pub fn set_vector_eventfd(
        &self,
        index: u32,
        vector: u32,
        eventfd: Option<BorrowedFd<'_>>,
    ) -> Result<()> {
        self.require_attached()?;
        let header = IrqSetHeader {
            flags: v::VFIO_IRQ_SET_DATA_EVENTFD | v::VFIO_IRQ_SET_ACTION_TRIGGER,
            index,
            start: vector,
            count: 1,
        };
        self.set_irqs(&header, IrqData::Eventfds(&[eventfd]))
    }

    /// Disables MSI or MSI-X `index` (all vectors).
    pub fn disable_irqs(&self, index: u32) -> Result<()> {
        let header = IrqSetHeader {
            flags: v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_TRIGGER,
            index,
            start: 0,
            count: 0,
        };
        self.set_irqs(&header, IrqData::None)
    }

    /// Signals a vector's eventfd from the kernel side (`DATA_NONE` trigger), as a loopback
    /// test of the wiring.
    pub fn trigger_vector(&self, index: u32, vector: u32) -> Result<()> {
        let header = IrqSetHeader {
            flags: v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_TRIGGER,
            index,
            start: vector,
            count: 1,
        };
        self.set_irqs(&header, IrqData::None)
    }

    /// `IOMMU_GET_HW_INFO` for the IOMMU behind this device.
    pub fn hw_info(&self) -> Result<HwInfo> {
        let (ctx, id) = {
            let st = self.inner.state.lock();
            let (ctx, id) = st.bound.as_ref().ok_or_else(not_bound)?;
            (ctx.clone(), *id)
        };
        let mut data = [0u8; 40];
        let mut arg = i::iommu_hw_info {
            size: size_of::<i::iommu_hw_info>() as u32,
            dev_id: id.0,
            data_len: data.len() as u32,
            ..Default::default()
        };
        ctx.kernel
            .get_hw_info(ctx.fd, &mut arg, &mut data)
            .map_err(Ctx::err(Op::GetHwInfo))?;
        let data_type = crate::seam::hw_info_data_type(&arg);
        Ok(HwInfo::decode(
            data_type,
            arg.out_capabilities,
            arg.out_max_pasid_log2,
            &data,
        ))
    }

    /// `VFIO_DEVICE_RESET`.
    pub fn reset(&self) -> Result<()> {
        self.kernel()
            .device_reset(self.inner.fd)
            .map_err(Ctx::err(Op::DeviceReset))
    }
}
