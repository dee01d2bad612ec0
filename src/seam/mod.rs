//! The kernel seam: one trait of ioctl-level verbs and its two implementations, and the
//! rest of what touches the kernel's memory and files directly.
//!
//! * [`Host`] issues the real ioctls. The seam is the only part of the crate with `unsafe`:
//!   `Host`'s ioctls, the memory mappings in `mem` ([`DmaMemory`], [`MmioRegion`]), the
//!   counting allocator, and with feature `kvm` the eventfd hand-over and [`KvmMachine`]'s
//!   guest memory slots.
//! * [`Sim`] is an in-process model of Linux 7.2's iommufd and VFIO-cdev semantics (plus the
//!   proposed per-vector MSI uAPI), with deterministic fault injection. The rig checks that
//!   it answers like the real kernel.
//!
//! Verbs take the kernel's own argument structures, so the size, flag and reserved-field
//! checks happen exactly where the kernel does them (and can be fuzzed). Pointer fields in
//! those structures are ignored: the data travels in slices beside them, and [`Host`] points
//! the kernel at those slices for the duration of the call.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use vmsi_sys::iommufd as i;
use vmsi_sys::vfio as v;

use crate::error::{Errno, Result};

mod alloc_count;
mod counting;
mod host;
#[cfg(feature = "kvm")]
mod kvm_eventfd;
#[cfg(feature = "kvm")]
mod kvm_vm;
mod mem;
mod sim;

pub use alloc_count::CountingAllocator;
pub use counting::Counting;
pub use host::{Host, hw_info_data_type};
#[cfg(feature = "kvm")]
pub use kvm_eventfd::vmm_eventfd;
#[cfg(feature = "kvm")]
pub use kvm_vm::KvmMachine;
pub use mem::{DmaMemory, MmioRegion, dma_write_barrier, page_size};
pub use sim::{Sim, SimConfig, SimDevice, SimStats};

/// A file the seam opened (an iommufd, a VFIO device cdev or a vEVENTQ).
///
/// It is a handle, not an owner: the object layer closes it through [`Kernel::close`]. For
/// [`Host`] the number is a real file descriptor; for [`Sim`] it names a model file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelFd(pub i32);

/// What `VFIO_DEVICE_SET_IRQS` carries after its header.
#[derive(Clone, Copy, Debug)]
pub enum IrqData<'a> {
    /// `VFIO_IRQ_SET_DATA_NONE`.
    None,
    /// `VFIO_IRQ_SET_DATA_BOOL`, one byte per vector.
    Bool(&'a [u8]),
    /// `VFIO_IRQ_SET_DATA_EVENTFD`, one fd per vector; `None` is the kernel's `-1`.
    Eventfds(&'a [Option<BorrowedFd<'a>>]),
    /// Proposed `VFIO_IRQ_SET_DATA_MSI_IOVA`, one IOVA per vector.
    MsiIovas(&'a [u64]),
}

impl IrqData<'_> {
    /// Bytes of payload per vector.
    pub fn entry_size(&self) -> usize {
        match self {
            IrqData::None => 0,
            IrqData::Bool(_) => 1,
            IrqData::Eventfds(_) => 4,
            IrqData::MsiIovas(_) => 8,
        }
    }

    /// Number of entries carried.
    pub fn len(&self) -> usize {
        match self {
            IrqData::None => 0,
            IrqData::Bool(b) => b.len(),
            IrqData::Eventfds(f) => f.len(),
            IrqData::MsiIovas(a) => a.len(),
        }
    }

    /// True when no entries are carried.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The header of `VFIO_DEVICE_SET_IRQS` (`struct vfio_irq_set` without `argsz` and data;
/// `argsz` is computed from the data).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqSetHeader {
    /// `VFIO_IRQ_SET_DATA_*` | `VFIO_IRQ_SET_ACTION_*`.
    pub flags: u32,
    /// IRQ index (MSI = 1, MSI-X = 2 for PCI).
    pub index: u32,
    /// First vector.
    pub start: u32,
    /// Number of vectors.
    pub count: u32,
}

/// The ioctl-level verbs the library needs from a kernel.
///
/// Every verb returns the kernel's errno on failure (`Err(errno)`); the object layer names
/// the operation. The raw structures are in/out as in the uAPI: output fields are filled
/// on success.
pub trait Kernel: Send + Sync + std::fmt::Debug {
    /// A short name for reports ("host", "sim").
    fn name(&self) -> &'static str;

    /// Opens `/dev/iommu`.
    fn open_iommufd(&self) -> Result<KernelFd, Errno>;
    /// Opens a VFIO device cdev (`/dev/vfio/devices/vfioN`).
    fn open_device(&self, path: &Path) -> Result<KernelFd, Errno>;
    /// Takes ownership of a file the caller already opened (a VMM's iommufd or device fd).
    fn adopt(&self, fd: OwnedFd) -> Result<KernelFd, Errno>;
    /// Closes a file this seam opened or adopted.
    fn close(&self, fd: KernelFd);
    /// `read(2)`; for a vEVENTQ it returns whole records. `Ok(0)` means nothing is queued.
    fn read(&self, fd: KernelFd, buf: &mut [u8]) -> Result<usize, Errno>;

    /// `IOMMU_DESTROY`.
    fn destroy(&self, iommufd: KernelFd, arg: &mut i::iommu_destroy) -> Result<(), Errno>;
    /// `IOMMU_IOAS_ALLOC`.
    fn ioas_alloc(&self, iommufd: KernelFd, arg: &mut i::iommu_ioas_alloc) -> Result<(), Errno>;
    /// `IOMMU_IOAS_MAP` of `arg.length` bytes starting `offset` bytes into `mem`
    /// (`arg.user_va` is ignored: the seam points it into `mem`).
    ///
    /// Safe because [`DmaMemory`] is only ever accessed with volatile copies, and the pages a
    /// mapping pins stay the kernel's after `mem` is dropped.
    fn ioas_map_memory(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_ioas_map,
        mem: &DmaMemory,
        offset: usize,
    ) -> Result<(), Errno>;
    /// `IOMMU_IOAS_MAP` of an arbitrary user address range.
    ///
    /// # Safety
    /// The kernel pins `arg.user_va .. + arg.length` and devices may read and write it by DMA
    /// until it is unmapped: the caller guarantees that the range is mapped in this process
    /// and that no Rust reference to that memory relies on it not changing underneath.
    unsafe fn ioas_map_user(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_ioas_map,
    ) -> Result<(), Errno>;
    /// `IOMMU_IOAS_MAP_FILE` (a memfd, or a VFIO dma-buf).
    fn ioas_map_file(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_ioas_map_file,
        file: BorrowedFd<'_>,
    ) -> Result<(), Errno>;
    /// Proposed `IOMMU_IOAS_MAP_MSI`: map the page of the device's own MSI doorbell at
    /// `arg.iova`. A kernel without the command answers `ENOTTY`, which is also what a
    /// backend that does not implement it says.
    #[cfg(feature = "proposed-uapi")]
    fn ioas_map_msi(
        &self,
        _iommufd: KernelFd,
        _arg: &mut vmsi_sys::proposed::iommu_ioas_map_msi,
    ) -> Result<(), Errno> {
        Err(Errno::ENOTTY)
    }
    /// `IOMMU_IOAS_UNMAP`.
    fn ioas_unmap(&self, iommufd: KernelFd, arg: &mut i::iommu_ioas_unmap) -> Result<(), Errno>;
    /// `IOMMU_IOAS_COPY`.
    fn ioas_copy(&self, iommufd: KernelFd, arg: &mut i::iommu_ioas_copy) -> Result<(), Errno>;
    /// `IOMMU_IOAS_IOVA_RANGES`; ranges land in `out` (`arg.num_iovas` is capped at its
    /// length), and on `EMSGSIZE` `arg.num_iovas` says how many there are.
    fn ioas_iova_ranges(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_ioas_iova_ranges,
        out: &mut [i::iommu_iova_range],
    ) -> Result<(), Errno>;
    /// `IOMMU_IOAS_ALLOW_IOVAS` (`arg.num_iovas` is capped at `ranges.len()`).
    fn ioas_allow_iovas(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_ioas_allow_iovas,
        ranges: &[i::iommu_iova_range],
    ) -> Result<(), Errno>;
    /// `IOMMU_OPTION`.
    fn option(&self, iommufd: KernelFd, arg: &mut i::iommu_option) -> Result<(), Errno>;
    /// `IOMMU_HWPT_ALLOC`; `data` is the driver data (`arg.data_len` is capped at its length).
    fn hwpt_alloc(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_hwpt_alloc,
        data: &[u8],
    ) -> Result<(), Errno>;
    /// `IOMMU_GET_HW_INFO`; driver data lands in `data`.
    fn get_hw_info(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_hw_info,
        data: &mut [u8],
    ) -> Result<(), Errno>;
    /// `IOMMU_HWPT_INVALIDATE`; `entries` holds `arg.entry_num` entries of `arg.entry_len`
    /// bytes. On return `arg.entry_num` is the number handled, on failure too.
    fn hwpt_invalidate(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_hwpt_invalidate,
        entries: &[u8],
    ) -> Result<(), Errno>;
    /// `IOMMU_VIOMMU_ALLOC`; `data` is the driver data.
    fn viommu_alloc(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_viommu_alloc,
        data: &[u8],
    ) -> Result<(), Errno>;
    /// `IOMMU_VDEVICE_ALLOC`.
    fn vdevice_alloc(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_vdevice_alloc,
    ) -> Result<(), Errno>;
    /// `IOMMU_VEVENTQ_ALLOC`; returns the queue's file.
    fn veventq_alloc(
        &self,
        iommufd: KernelFd,
        arg: &mut i::iommu_veventq_alloc,
    ) -> Result<KernelFd, Errno>;

    /// `VFIO_DEVICE_BIND_IOMMUFD` (`arg.iommufd` is set from `iommufd`).
    fn device_bind(
        &self,
        device: KernelFd,
        iommufd: KernelFd,
        arg: &mut v::vfio_device_bind_iommufd,
    ) -> Result<(), Errno>;
    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`.
    fn device_attach(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_device_attach_iommufd_pt,
    ) -> Result<(), Errno>;
    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
    fn device_detach(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_device_detach_iommufd_pt,
    ) -> Result<(), Errno>;
    /// `VFIO_DEVICE_GET_INFO`.
    fn device_get_info(&self, device: KernelFd, arg: &mut v::vfio_device_info)
    -> Result<(), Errno>;
    /// `VFIO_DEVICE_GET_REGION_INFO`.
    fn device_get_region_info(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_region_info,
    ) -> Result<(), Errno>;
    /// `VFIO_DEVICE_GET_IRQ_INFO`.
    fn device_get_irq_info(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_irq_info,
    ) -> Result<(), Errno>;
    /// `VFIO_DEVICE_SET_IRQS`; returns the ioctl's value, which is not always 0: enabling
    /// more MSI vectors than the device can have returns how many it can, enabling none.
    /// The argument is built without heap allocation for up to [`SET_IRQS_STACK_ENTRIES`]
    /// entries.
    fn device_set_irqs(
        &self,
        device: KernelFd,
        header: &IrqSetHeader,
        data: IrqData<'_>,
    ) -> Result<u32, Errno>;
    /// `VFIO_DEVICE_RESET`.
    fn device_reset(&self, device: KernelFd) -> Result<(), Errno>;
    /// `pread(2)` on the device file (region offsets come from region info).
    fn device_read(&self, device: KernelFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno>;
    /// `pwrite(2)` on the device file.
    fn device_write(&self, device: KernelFd, buf: &[u8], offset: u64) -> Result<usize, Errno>;
    /// `mmap(2)` of `len` bytes of the device file at `offset` (a BAR).
    fn device_mmap(&self, device: KernelFd, offset: u64, len: usize) -> Result<MmioRegion, Errno>;
}

/// A uAPI argument structure whose first field is its declared size (`size` for iommufd,
/// `argsz` for VFIO).
///
/// Both backends refuse a declared size larger than the structure with `E2BIG` before the
/// kernel sees it: the kernel may read, and for some calls write, up to the declared size,
/// which must never reach past the caller's structure.
pub trait UapiArg {
    /// The size the structure declares.
    fn declared_size(&self) -> u32;

    /// `E2BIG` if the declared size exceeds the structure.
    fn check_declared_size(&self) -> Result<(), Errno>
    where
        Self: Sized,
    {
        if self.declared_size() as usize > size_of::<Self>() {
            Err(Errno::E2BIG)
        } else {
            Ok(())
        }
    }
}

macro_rules! uapi_arg {
    ($field:ident: $($t:ty),*) => {$(
        impl UapiArg for $t {
            fn declared_size(&self) -> u32 {
                self.$field
            }
        }
    )*};
}

uapi_arg!(size: i::iommu_destroy, i::iommu_ioas_alloc, i::iommu_ioas_map, i::iommu_ioas_map_file,
    i::iommu_ioas_unmap, i::iommu_ioas_copy, i::iommu_ioas_iova_ranges, i::iommu_ioas_allow_iovas,
    i::iommu_option, i::iommu_hwpt_alloc, i::iommu_hw_info, i::iommu_hwpt_invalidate,
    i::iommu_viommu_alloc, i::iommu_vdevice_alloc, i::iommu_veventq_alloc);
#[cfg(feature = "proposed-uapi")]
uapi_arg!(size: vmsi_sys::proposed::iommu_ioas_map_msi);
uapi_arg!(argsz: v::vfio_device_bind_iommufd, v::vfio_device_attach_iommufd_pt,
    v::vfio_device_detach_iommufd_pt, v::vfio_device_info, v::vfio_region_info, v::vfio_irq_info);

/// `VFIO_DEVICE_SET_IRQS` arguments with at most this many entries live on the stack.
pub const SET_IRQS_STACK_ENTRIES: usize = 32;
