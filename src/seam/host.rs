//! The real kernel: ioctls on `/dev/iommu` and VFIO device cdevs.

use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;

use memmap2::MmapOptions;
use nix::fcntl::{OFlag, open};
use nix::libc;
use nix::sys::stat::Mode;
use vmsi_sys::ioctl as nr;
use vmsi_sys::iommufd as i;
use vmsi_sys::vfio as v;

use super::{IrqData, IrqSetHeader, Kernel, KernelFd, MmioRegion, SET_IRQS_STACK_ENTRIES, UapiArg};
use crate::error::Errno;
use crate::seam::DmaMemory;

/// The running kernel. Stateless: every verb is one system call.
#[derive(Debug, Default, Clone, Copy)]
pub struct Host;

/// One ioctl whose argument the kernel reads and writes only during the call.
///
/// # Safety
/// `arg` must point to a live, writable value of the type request `req` expects (the kernel
/// checks the size field inside it), including any buffers its pointer fields name.
unsafe fn ioctl_ptr<T>(fd: RawFd, req: u32, arg: *mut T) -> Result<(), Errno> {
    // SAFETY: forwarded from the caller's contract; `req` is a `_IO()` number for this fd type.
    let r = unsafe { libc::ioctl(fd, req as _, arg) };
    Errno::result(r).map(drop)
}

/// Calls `ioctl_ptr` on an argument that is a plain uAPI struct with no pointer fields in use.
fn ioctl_plain<T: UapiArg>(fd: KernelFd, req: u32, arg: &mut T) -> Result<(), Errno> {
    arg.check_declared_size()?;
    // SAFETY: `arg` is an exclusive reference to a complete #[repr(C)] uAPI structure that
    // outlives the call; any pointer fields were set by the caller of this function to
    // buffers that also outlive the call (see each use).
    unsafe { ioctl_ptr(fd.0, req, arg as *mut T) }
}

impl Kernel for Host {
    fn name(&self) -> &'static str {
        "host"
    }

    fn open_iommufd(&self) -> Result<KernelFd, Errno> {
        let fd = open(
            "/dev/iommu",
            OFlag::O_RDWR | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(KernelFd(fd.into_raw_fd()))
    }

    fn open_device(&self, path: &Path) -> Result<KernelFd, Errno> {
        let fd = open(path, OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())?;
        Ok(KernelFd(fd.into_raw_fd()))
    }

    fn adopt(&self, fd: OwnedFd) -> Result<KernelFd, Errno> {
        Ok(KernelFd(fd.into_raw_fd()))
    }

    fn close(&self, fd: KernelFd) {
        // The object layer closes each KernelFd exactly once; an error from close(2) leaves
        // nothing to retry (the fd is gone either way).
        let _ = nix::unistd::close(fd.0);
    }

    fn read(&self, fd: KernelFd, buf: &mut [u8]) -> Result<usize, Errno> {
        // SAFETY: buf is a valid writable buffer of buf.len() bytes for the whole call.
        let r = unsafe { libc::read(fd.0, buf.as_mut_ptr().cast(), buf.len()) };
        match Errno::result(r) {
            Ok(n) => Ok(n as usize),
            Err(Errno::EAGAIN) => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn destroy(&self, iommufd: KernelFd, arg: &mut i::iommu_destroy) -> Result<(), Errno> {
        ioctl_plain(iommufd, nr::IOMMU_DESTROY, arg)
    }

    fn ioas_alloc(&self, iommufd: KernelFd, arg: &mut i::iommu_ioas_alloc) -> Result<(), Errno> {
        ioctl_plain(iommufd, nr::IOMMU_IOAS_ALLOC, arg)
    }

    fn ioas_map_memory(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_ioas_map,
        mem: &DmaMemory,
        offset: usize,
    ) -> Result<(), Errno> {
        let in_bounds = offset
            .checked_add(arg.length as usize)
            .is_some_and(|end| end <= mem.len() && arg.length <= usize::MAX as u64);
        if !in_bounds {
            return Err(Errno::EFAULT);
        }
        arg.check_declared_size()?;
        arg.user_va = mem.addr() + offset as u64;
        // SAFETY: the range lies inside `mem`, which is accessed only by volatile copies and
        // whose pages stay pinned by the kernel (not reused by this process) after `mem` is
        // dropped; see the trait's contract.
        unsafe { ioctl_ptr(iommufd.0, nr::IOMMU_IOAS_MAP, arg as *mut _) }
    }

    unsafe fn ioas_map_user(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_ioas_map,
    ) -> Result<(), Errno> {
        arg.check_declared_size()?;
        // SAFETY: the caller guarantees the user range (see the trait's # Safety).
        unsafe { ioctl_ptr(iommufd.0, nr::IOMMU_IOAS_MAP, arg as *mut _) }
    }

    fn ioas_map_file(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_ioas_map_file,
        file: BorrowedFd<'_>,
    ) -> Result<(), Errno> {
        arg.fd = file.as_raw_fd();
        ioctl_plain(iommufd, nr::IOMMU_IOAS_MAP_FILE, arg)
    }

    #[cfg(feature = "proposed-uapi")]
    fn ioas_map_msi(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::proposed::iommu_ioas_map_msi,
    ) -> Result<(), Errno> {
        ioctl_plain(iommufd, vmsi_sys::proposed::IOMMU_IOAS_MAP_MSI, arg)
    }

    fn ioas_unmap(&self, iommufd: KernelFd, arg: &mut i::iommu_ioas_unmap) -> Result<(), Errno> {
        ioctl_plain(iommufd, nr::IOMMU_IOAS_UNMAP, arg)
    }

    fn ioas_copy(&self, iommufd: KernelFd, arg: &mut i::iommu_ioas_copy) -> Result<(), Errno> {
        ioctl_plain(iommufd, nr::IOMMU_IOAS_COPY, arg)
    }

    fn ioas_iova_ranges(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_ioas_iova_ranges,
        out: &mut [i::iommu_iova_range],
    ) -> Result<(), Errno> {
        arg.num_iovas = arg.num_iovas.min(out.len() as u32);
        arg.allowed_iovas = out.as_mut_ptr() as u64;
        // allowed_iovas points at `out`, which holds num_iovas entries for the whole call.
        ioctl_plain(iommufd, nr::IOMMU_IOAS_IOVA_RANGES, arg)
    }

    fn ioas_allow_iovas(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_ioas_allow_iovas,
        ranges: &[i::iommu_iova_range],
    ) -> Result<(), Errno> {
        arg.num_iovas = arg.num_iovas.min(ranges.len() as u32);
        arg.allowed_iovas = ranges.as_ptr() as u64;
        // The kernel only reads num_iovas entries of `ranges`.
        ioctl_plain(iommufd, nr::IOMMU_IOAS_ALLOW_IOVAS, arg)
    }

    fn option(&self, iommufd: KernelFd, arg: &mut i::iommu_option) -> Result<(), Errno> {
        ioctl_plain(iommufd, nr::IOMMU_OPTION, arg)
    }

    fn hwpt_alloc(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_hwpt_alloc,
        data: &[u8],
    ) -> Result<(), Errno> {
        arg.data_len = arg.data_len.min(data.len() as u32);
        arg.data_uptr = if data.is_empty() {
            0
        } else {
            data.as_ptr() as u64
        };
        // data_uptr names `data` (data_len bytes), read during the call only.
        ioctl_plain(iommufd, nr::IOMMU_HWPT_ALLOC, arg)
    }

    fn get_hw_info(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_hw_info,
        data: &mut [u8],
    ) -> Result<(), Errno> {
        arg.data_len = arg.data_len.min(data.len() as u32);
        arg.data_uptr = data.as_mut_ptr() as u64;
        // The kernel writes at most data_len bytes to `data`.
        ioctl_plain(iommufd, nr::IOMMU_GET_HW_INFO, arg)
    }

    fn hwpt_invalidate(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_hwpt_invalidate,
        entries: &[u8],
    ) -> Result<(), Errno> {
        let need = (arg.entry_len as u64).saturating_mul(arg.entry_num as u64);
        if need > entries.len() as u64 {
            return Err(Errno::EFAULT);
        }
        arg.data_uptr = entries.as_ptr() as u64;
        // The kernel reads entry_len * entry_num bytes, which `entries` holds (checked).
        ioctl_plain(iommufd, nr::IOMMU_HWPT_INVALIDATE, arg)
    }

    fn viommu_alloc(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_viommu_alloc,
        data: &[u8],
    ) -> Result<(), Errno> {
        arg.data_len = arg.data_len.min(data.len() as u32);
        arg.data_uptr = if data.is_empty() {
            0
        } else {
            data.as_ptr() as u64
        };
        ioctl_plain(iommufd, nr::IOMMU_VIOMMU_ALLOC, arg)
    }

    fn vdevice_alloc(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_vdevice_alloc,
    ) -> Result<(), Errno> {
        ioctl_plain(iommufd, nr::IOMMU_VDEVICE_ALLOC, arg)
    }

    fn veventq_alloc(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_veventq_alloc,
    ) -> Result<KernelFd, Errno> {
        ioctl_plain(iommufd, nr::IOMMU_VEVENTQ_ALLOC, arg)?;
        Ok(KernelFd(arg.out_veventq_fd as i32))
    }

    fn device_bind(
        &self,
        device: KernelFd,
        iommufd: KernelFd,
        arg: &mut v::vfio_device_bind_iommufd,
    ) -> Result<(), Errno> {
        arg.iommufd = iommufd.0;
        ioctl_plain(device, nr::VFIO_DEVICE_BIND_IOMMUFD, arg)
    }

    fn device_attach(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_device_attach_iommufd_pt,
    ) -> Result<(), Errno> {
        ioctl_plain(device, nr::VFIO_DEVICE_ATTACH_IOMMUFD_PT, arg)
    }

    fn device_detach(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_device_detach_iommufd_pt,
    ) -> Result<(), Errno> {
        ioctl_plain(device, nr::VFIO_DEVICE_DETACH_IOMMUFD_PT, arg)
    }

    fn device_get_info(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_device_info,
    ) -> Result<(), Errno> {
        ioctl_plain(device, nr::VFIO_DEVICE_GET_INFO, arg)
    }

    fn device_get_region_info(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_region_info,
    ) -> Result<(), Errno> {
        ioctl_plain(device, nr::VFIO_DEVICE_GET_REGION_INFO, arg)
    }

    fn device_get_irq_info(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_irq_info,
    ) -> Result<(), Errno> {
        ioctl_plain(device, nr::VFIO_DEVICE_GET_IRQ_INFO, arg)
    }

    fn device_set_irqs(
        &self,
        device: KernelFd,
        header: &IrqSetHeader,
        data: IrqData<'_>,
    ) -> Result<u32, Errno> {
        const HDR: usize = size_of::<v::vfio_irq_set>();
        const STACK: usize = HDR + 8 * SET_IRQS_STACK_ENTRIES;
        let len = HDR + data.entry_size() * data.len();
        // u64 storage keeps the header 8-byte aligned, as the kernel's struct is.
        let mut stack = [0u64; STACK.div_ceil(8)];
        let mut heap = Vec::new();
        let words: &mut [u64] = if len <= STACK {
            &mut stack
        } else {
            heap.resize(len.div_ceil(8), 0u64);
            &mut heap
        };
        let buf = as_bytes_mut(words);
        buf[0..4].copy_from_slice(&(len as u32).to_ne_bytes());
        buf[4..8].copy_from_slice(&header.flags.to_ne_bytes());
        buf[8..12].copy_from_slice(&header.index.to_ne_bytes());
        buf[12..16].copy_from_slice(&header.start.to_ne_bytes());
        buf[16..20].copy_from_slice(&header.count.to_ne_bytes());
        let payload = &mut buf[HDR..len];
        match data {
            IrqData::None => {}
            IrqData::Bool(b) => payload.copy_from_slice(b),
            IrqData::Eventfds(fds) => {
                for (chunk, fd) in payload.chunks_exact_mut(4).zip(fds) {
                    let raw = fd.map_or(-1, |f| f.as_raw_fd());
                    chunk.copy_from_slice(&raw.to_ne_bytes());
                }
            }
            IrqData::MsiIovas(iovas) => {
                for (chunk, iova) in payload.chunks_exact_mut(8).zip(iovas) {
                    chunk.copy_from_slice(&iova.to_ne_bytes());
                }
            }
        }
        // SAFETY: `buf` holds a complete vfio_irq_set of `len` bytes (argsz = len), alive and
        // exclusively borrowed for the call; the kernel reads argsz bytes and writes nothing.
        let r = unsafe { libc::ioctl(device.0, nr::VFIO_DEVICE_SET_IRQS as _, buf.as_mut_ptr()) };
        Errno::result(r).map(|n| n as u32)
    }

    fn device_reset(&self, device: KernelFd) -> Result<(), Errno> {
        // SAFETY: VFIO_DEVICE_RESET takes no argument.
        let r = unsafe { libc::ioctl(device.0, nr::VFIO_DEVICE_RESET as _) };
        Errno::result(r).map(drop)
    }

    fn device_read(&self, device: KernelFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
        // SAFETY: buf is valid for writes of buf.len() bytes during the call.
        let r = unsafe {
            libc::pread(
                device.0,
                buf.as_mut_ptr().cast(),
                buf.len(),
                offset as libc::off_t,
            )
        };
        Errno::result(r).map(|n| n as usize)
    }

    fn device_write(&self, device: KernelFd, buf: &[u8], offset: u64) -> Result<usize, Errno> {
        // SAFETY: buf is valid for reads of buf.len() bytes during the call.
        let r = unsafe {
            libc::pwrite(
                device.0,
                buf.as_ptr().cast(),
                buf.len(),
                offset as libc::off_t,
            )
        };
        Errno::result(r).map(|n| n as usize)
    }

    fn device_mmap(&self, device: KernelFd, offset: u64, len: usize) -> Result<MmioRegion, Errno> {
        let map = MmapOptions::new()
            .offset(offset)
            .len(len)
            .map_raw(device.0)
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)))?;
        Ok(MmioRegion::host(map))
    }
}

fn as_bytes_mut(words: &mut [u64]) -> &mut [u8] {
    let len = size_of_val(words);
    // SAFETY: u8 has no alignment or validity requirements and the byte view covers exactly
    // the words' storage, borrowed exclusively for the same lifetime.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast(), len) }
}

/// `iommu_hw_info.in_data_type` / `out_data_type` (one union; both members are `u32`).
pub fn hw_info_data_type(arg: &i::iommu_hw_info) -> u32 {
    // SAFETY: both members of the union are u32 at offset 0 of it, so every bit pattern is a
    // valid value of the member read.
    unsafe { arg.__bindgen_anon_1.in_data_type }
}
