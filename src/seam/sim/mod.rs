//! `Sim`: an in-process model of Linux 7.2 iommufd + VFIO cdev on an ARM SMMUv3 + GICv3 ITS
//! host, for tests and fuzzing.
//!
//! What it models is what the library relies on, errno for errno: object ids (lowest free id
//! from 1), IOAS areas with the kernel's alignment, overlap and reserved-region rules, the
//! SMMUv3 software MSI window that narrows the IOVA ranges on attach, HWPT / vIOMMU / vDEVICE
//! rules (EOPNOTSUPP without nesting or CANWBS), destroy ordering (EBUSY), VFIO MSI and MSI-X
//! triggers with eventfds (dynamic MSI-X, fd -1, DATA_NONE disable) and the host MSI message
//! each enabled vector gets. The rig runs the same call sequences on the real kernel and
//! compares (`tests/sim_vs_host.rs`).
//!
//! Deliberate limits: no DMA (a mapped IOVA is bookkeeping only), no stage-1 table walks
//! (an interrupt raised on a vector is delivered unless the device's STE aborts), IOVA
//! allocation follows the kernel's first-fit rule but without transparent huge pages.

mod iommufd;
mod vfio;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Errno;

use super::KernelFd;

/// The machine Sim pretends to be. The default matches the rig: QEMU `virt` with one ITS at
/// 0x0808_0000, an SMMUv3 with stage 1 and 2, 4 KiB pages, 48-bit input addresses.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Host page size (the IOAS alignment).
    pub page_size: u64,
    /// Stage-1 input address bits: a stage-1 domain's aperture is `[0, 2^ias_bits)`.
    pub ias_bits: u32,
    /// Output address bits (IDR5.OAS): a stage-2 (nest parent) domain's aperture is
    /// `[0, 2^oas_bits)`.
    pub oas_bits: u32,
    /// The SMMU driver's software MSI window (base, length).
    pub sw_msi_window: (u64, u64),
    /// Stage 1 + stage 2 (FEAT_NESTING): nest-parent HWPTs can be allocated.
    pub nesting: bool,
    /// The root complex can enforce write-back cacheability (IORT CANWBS) or the SMMU has
    /// S2FWB: vIOMMUs can be allocated.
    pub canwbs: bool,
    /// Model the proposed per-device SW_MSI options and per-vector MSI IOVAs.
    pub proposed_uapi: bool,
    /// Physical address of each ITS's `GITS_TRANSLATER`.
    pub its_doorbells: Vec<u64>,
    /// `IOMMU_GET_HW_INFO` SMMUv3 IDR0..5, IIDR, AIDR (the rig's QEMU values by default).
    pub smmu_idr: [u32; 8],
    /// Passed-through devices.
    pub devices: Vec<SimDevice>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            page_size: 4096,
            ias_bits: 48,
            oas_bits: 44,
            sw_msi_window: (vmsi_sys::SMMUV3_SW_MSI_BASE, vmsi_sys::SMMUV3_SW_MSI_LENGTH),
            nesting: true,
            canwbs: false,
            proposed_uapi: false,
            its_doorbells: vec![0x0808_0000 + vmsi_sys::GITS_TRANSLATER_OFFSET],
            smmu_idr: [
                0x0d44_101b,
                0x0273_0010,
                0,
                0x0000_1414,
                0,
                0x0000_0074,
                0,
                1,
            ],
            devices: vec![
                SimDevice::edu("/dev/vfio/devices/vfio0"),
                SimDevice::nvme("/dev/vfio/devices/vfio1", 65),
            ],
        }
    }
}

impl SimConfig {
    /// The default machine with CANWBS set, as the rig's ACPI mode with a patched IORT.
    pub fn nested() -> Self {
        SimConfig {
            canwbs: true,
            ..SimConfig::default()
        }
    }
}

/// A PCI device behind the SMMU, passed through with vfio-pci.
#[derive(Clone, Debug)]
pub struct SimDevice {
    /// Its cdev path.
    pub path: PathBuf,
    /// PCI vendor id.
    pub vendor: u16,
    /// PCI device id.
    pub device: u16,
    /// MSI vectors (0: no MSI capability).
    pub msi_vectors: u32,
    /// MSI-X vectors (0: no MSI-X capability).
    pub msix_vectors: u32,
    /// Whether MSI-X can grow while enabled (the kernel clears NORESIZE then).
    pub dynamic_msix: bool,
    /// PCI Express (4 KiB config space and an ERR IRQ index) rather than conventional PCI.
    pub pcie: bool,
    /// BAR sizes (0: absent).
    pub bars: [u64; 6],
    /// MSI-X table location (BAR, offset); the PBA follows in the same BAR at the next
    /// 4 KiB boundary, as in QEMU's nvme.
    pub msix_table: (u32, u64),
}

impl SimDevice {
    /// Offset of the MSI-X pending-bit array in the table's BAR.
    pub fn msix_pba_offset(&self) -> u64 {
        (self.msix_table.1 + 16 * self.msix_vectors as u64).next_multiple_of(0x1000)
    }

    /// QEMU's `edu`: MSI with one vector, a 1 MiB BAR0, conventional PCI (no ERR index).
    pub fn edu(path: impl AsRef<Path>) -> Self {
        SimDevice {
            path: path.as_ref().into(),
            vendor: 0x1234,
            device: 0x11e8,
            msi_vectors: 1,
            msix_vectors: 0,
            dynamic_msix: false,
            pcie: false,
            bars: [1 << 20, 0, 0, 0, 0, 0],
            msix_table: (0, 0),
        }
    }

    /// QEMU's `nvme` with `vectors` MSI-X vectors, table at BAR0 + 0x2000.
    pub fn nvme(path: impl AsRef<Path>, vectors: u32) -> Self {
        // QEMU's nvme_mbar_size: registers and doorbells, then the table and the PBA, each
        // 4 KiB aligned, rounded up to a power of two.
        let table = 0x2000u64;
        let pba = (table + 16 * vectors as u64).next_multiple_of(0x1000);
        let bar0 = (pba + 8 * vectors.div_ceil(64) as u64).next_power_of_two();
        SimDevice {
            path: path.as_ref().into(),
            vendor: 0x1b36,
            device: 0x0010,
            msi_vectors: 0,
            msix_vectors: vectors,
            // The GICv3 ITS MSI parent has no MSI_FLAG_PCI_MSIX_ALLOC_DYN.
            dynamic_msix: false,
            pcie: true,
            bars: [bar0, 0, 0, 0, 0, 0],
            msix_table: (0, table),
        }
    }
}

/// What Sim counts, for leak checks and for "how many kernel calls did that take".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Verb calls, by uAPI name.
    pub calls: BTreeMap<&'static str, u64>,
    /// Files open now (iommufds, devices, vEVENTQs).
    pub open_files: usize,
    /// iommufd objects alive now, across all iommufds.
    pub live_objects: usize,
    /// IOAS areas mapped now, across all IOASes.
    pub live_areas: usize,
    /// Vectors with an eventfd now, across all devices.
    pub live_triggers: usize,
}

impl SimStats {
    /// Calls of one verb.
    pub fn count(&self, name: &str) -> u64 {
        self.calls.get(name).copied().unwrap_or(0)
    }
}

/// The model. Cheap to share: clone the `Arc` you wrap it in.
#[derive(Debug)]
pub struct Sim {
    pub(super) config: SimConfig,
    pub(super) state: Mutex<State>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    next_fd: i32,
    files: HashMap<i32, File>,
    /// Per configured device: its open/bound/IRQ state.
    pub(super) devices: Vec<vfio::DeviceState>,
    calls: u64,
    fail_at: Option<(u64, Errno)>,
    pub(super) stats: BTreeMap<&'static str, u64>,
}

#[derive(Debug)]
pub(super) enum File {
    Iommufd(iommufd::Ctx),
    /// Index into `State::devices`.
    Device(usize),
    /// A vEVENTQ of (iommufd file, object id).
    Veventq(i32, u32),
}

impl Sim {
    /// A model of the machine `config` describes.
    pub fn new(config: SimConfig) -> Arc<Sim> {
        let devices = config.devices.iter().map(vfio::DeviceState::new).collect();
        let state = State {
            next_fd: 1000,
            devices,
            ..State::default()
        };
        Arc::new(Sim {
            config,
            state: Mutex::new(state),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Makes the `n`-th verb call from now (1 = the next one) fail with `errno`, changing
    /// nothing, as the kernel's fail-nth fault injection does for allocations.
    pub fn fail_nth(&self, n: u64, errno: Errno) {
        let mut s = self.state.lock();
        s.fail_at = Some((s.calls + n, errno));
    }

    /// Clears a pending [`Sim::fail_nth`]. Returns whether it had not fired yet.
    pub fn clear_fault(&self) -> bool {
        self.state.lock().fail_at.take().is_some()
    }

    /// Counters for leak checks and call counting.
    pub fn stats(&self) -> SimStats {
        let s = self.state.lock();
        let mut st = SimStats {
            calls: s.stats.clone(),
            open_files: s.files.len(),
            ..SimStats::default()
        };
        for f in s.files.values() {
            if let File::Iommufd(ctx) = f {
                st.live_objects += ctx.objects.len();
                st.live_areas += ctx.area_count();
            }
        }
        st.live_triggers = s.devices.iter().map(|d| d.trigger_count()).sum();
        st
    }

    /// The device raises vector `vector` of IRQ index `index` (as edu's raise register or an
    /// NVMe completion would). Returns whether an eventfd was signalled.
    pub fn raise_irq(&self, device: &Path, index: u32, vector: u32) -> bool {
        let s = self.state.lock();
        let Some(d) = s.devices.iter().find(|d| d.config.path == device) else {
            return false;
        };
        if !s.delivers_msi(d) {
            return false;
        }
        d.signal(index, vector)
    }

    /// Counts a call and applies fault injection; every verb starts here.
    pub(super) fn enter(&self, s: &mut State, name: &'static str) -> Result<(), Errno> {
        s.calls += 1;
        *s.stats.entry(name).or_default() += 1;
        match s.fail_at {
            Some((at, errno)) if at == s.calls => {
                s.fail_at = None;
                Err(errno)
            }
            _ => Ok(()),
        }
    }
}

impl State {
    pub(super) fn new_fd(&mut self, f: File) -> KernelFd {
        self.next_fd += 1;
        self.files.insert(self.next_fd, f);
        KernelFd(self.next_fd)
    }

    /// The iommufd behind a file the caller names (a closed one is EBADF, another kind of
    /// file ENOTTY).
    pub(super) fn ctx(&self, fd: KernelFd) -> Result<&iommufd::Ctx, Errno> {
        match self.files.get(&fd.0) {
            Some(File::Iommufd(ctx)) if ctx.closed => Err(Errno::EBADF),
            Some(File::Iommufd(ctx)) => Ok(ctx),
            Some(_) => Err(Errno::ENOTTY),
            None => Err(Errno::EBADF),
        }
    }

    /// The iommufd a bound device holds, even after its file was closed.
    pub(super) fn held_ctx(&self, fd: i32) -> Result<&iommufd::Ctx, Errno> {
        match self.files.get(&fd) {
            Some(File::Iommufd(ctx)) => Ok(ctx),
            _ => Err(Errno::EBADF),
        }
    }

    /// As [`State::held_ctx`], mutable.
    pub(super) fn held_ctx_mut(&mut self, fd: i32) -> Result<&mut iommufd::Ctx, Errno> {
        match self.files.get_mut(&fd) {
            Some(File::Iommufd(ctx)) => Ok(ctx),
            _ => Err(Errno::EBADF),
        }
    }

    pub(super) fn ctx_mut(&mut self, fd: KernelFd) -> Result<&mut iommufd::Ctx, Errno> {
        match self.files.get_mut(&fd.0) {
            Some(File::Iommufd(ctx)) if ctx.closed => Err(Errno::EBADF),
            Some(File::Iommufd(ctx)) => Ok(ctx),
            Some(_) => Err(Errno::ENOTTY),
            None => Err(Errno::EBADF),
        }
    }

    /// A vEVENTQ's file was closed: its object may now be destroyed.
    pub(super) fn veventq_closed(&mut self, ctx: i32, id: u32) {
        if let Some(File::Iommufd(c)) = self.files.get_mut(&ctx) {
            c.veventq_file_closed(id);
        }
    }

    pub(super) fn device_index(&self, fd: KernelFd) -> Result<usize, Errno> {
        match self.files.get(&fd.0) {
            Some(File::Device(i)) => Ok(*i),
            Some(_) => Err(Errno::ENOTTY),
            None => Err(Errno::EBADF),
        }
    }
}

/// A dup of a caller's eventfd that Sim keeps to signal later.
pub(super) type Trigger = OwnedFd;

impl super::Kernel for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn open_iommufd(&self) -> Result<KernelFd, Errno> {
        self.open_iommufd_impl()
    }

    fn open_device(&self, path: &Path) -> Result<KernelFd, Errno> {
        self.open_device_impl(path)
    }

    fn adopt(&self, _fd: OwnedFd) -> Result<KernelFd, Errno> {
        // A real file means nothing to the model.
        Err(Errno::EBADF)
    }

    fn close(&self, fd: KernelFd) {
        let mut s = self.state.lock();
        *s.stats.entry("close").or_default() += 1;
        match s.files.remove(&fd.0) {
            Some(File::Iommufd(ctx)) => Sim::close_iommufd(&mut s, fd.0, ctx),
            Some(File::Device(dev)) => Sim::close_device(&mut s, fd.0, dev),
            // Closing a vEVENTQ's file lets its object be destroyed.
            Some(File::Veventq(ctx, id)) => s.veventq_closed(ctx, id),
            None => {}
        }
    }

    fn read(&self, fd: KernelFd, _buf: &mut [u8]) -> Result<usize, Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "read")?;
        match s.files.get(&fd.0) {
            // No modelled event source reports faults: the queue stays empty.
            Some(File::Veventq(..)) => Ok(0),
            Some(_) => Err(Errno::EINVAL),
            None => Err(Errno::EBADF),
        }
    }

    fn destroy(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_destroy,
    ) -> Result<(), Errno> {
        self.destroy_impl(iommufd, arg)
    }

    fn ioas_alloc(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_ioas_alloc,
    ) -> Result<(), Errno> {
        self.ioas_alloc_impl(iommufd, arg)
    }

    fn ioas_map_memory(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_ioas_map,
        mem: &super::DmaMemory,
        offset: usize,
    ) -> Result<(), Errno> {
        let in_bounds = offset
            .checked_add(arg.length as usize)
            .is_some_and(|end| end <= mem.len());
        if !in_bounds {
            return Err(Errno::EFAULT);
        }
        arg.user_va = mem.addr() + offset as u64;
        self.ioas_map_impl(iommufd, arg)
    }

    unsafe fn ioas_map_user(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_ioas_map,
    ) -> Result<(), Errno> {
        self.ioas_map_impl(iommufd, arg)
    }

    fn ioas_map_file(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_ioas_map_file,
        _file: std::os::fd::BorrowedFd<'_>,
    ) -> Result<(), Errno> {
        self.ioas_map_file_impl(iommufd, arg)
    }

    fn ioas_unmap(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_ioas_unmap,
    ) -> Result<(), Errno> {
        self.ioas_unmap_impl(iommufd, arg)
    }

    fn ioas_copy(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_ioas_copy,
    ) -> Result<(), Errno> {
        self.ioas_copy_impl(iommufd, arg)
    }

    fn ioas_iova_ranges(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_ioas_iova_ranges,
        out: &mut [vmsi_sys::iommufd::iommu_iova_range],
    ) -> Result<(), Errno> {
        self.ioas_iova_ranges_impl(iommufd, arg, out)
    }

    fn ioas_allow_iovas(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_ioas_allow_iovas,
        ranges: &[vmsi_sys::iommufd::iommu_iova_range],
    ) -> Result<(), Errno> {
        self.ioas_allow_iovas_impl(iommufd, arg, ranges)
    }

    #[cfg(feature = "proposed-uapi")]
    fn ioas_map_msi(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::proposed::iommu_ioas_map_msi,
    ) -> Result<(), Errno> {
        self.ioas_map_msi_impl(iommufd, arg)
    }

    fn option(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_option,
    ) -> Result<(), Errno> {
        self.option_impl(iommufd, arg)
    }

    fn hwpt_alloc(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_hwpt_alloc,
        data: &[u8],
    ) -> Result<(), Errno> {
        self.hwpt_alloc_impl(iommufd, arg, data)
    }

    fn get_hw_info(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_hw_info,
        data: &mut [u8],
    ) -> Result<(), Errno> {
        self.get_hw_info_impl(iommufd, arg, data)
    }

    fn hwpt_invalidate(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_hwpt_invalidate,
        entries: &[u8],
    ) -> Result<(), Errno> {
        self.hwpt_invalidate_impl(iommufd, arg, entries)
    }

    fn viommu_alloc(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_viommu_alloc,
        data: &[u8],
    ) -> Result<(), Errno> {
        self.viommu_alloc_impl(iommufd, arg, data)
    }

    fn vdevice_alloc(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_vdevice_alloc,
    ) -> Result<(), Errno> {
        self.vdevice_alloc_impl(iommufd, arg)
    }

    fn veventq_alloc(
        &self,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::iommufd::iommu_veventq_alloc,
    ) -> Result<KernelFd, Errno> {
        self.veventq_alloc_impl(iommufd, arg)
    }

    fn device_bind(
        &self,
        device: KernelFd,
        iommufd: KernelFd,
        arg: &mut vmsi_sys::vfio::vfio_device_bind_iommufd,
    ) -> Result<(), Errno> {
        self.device_bind_impl(device, iommufd, arg)
    }

    fn device_attach(
        &self,
        device: KernelFd,
        arg: &mut vmsi_sys::vfio::vfio_device_attach_iommufd_pt,
    ) -> Result<(), Errno> {
        self.device_attach_impl(device, arg)
    }

    fn device_detach(
        &self,
        device: KernelFd,
        arg: &mut vmsi_sys::vfio::vfio_device_detach_iommufd_pt,
    ) -> Result<(), Errno> {
        self.device_detach_impl(device, arg)
    }

    fn device_get_info(
        &self,
        device: KernelFd,
        arg: &mut vmsi_sys::vfio::vfio_device_info,
    ) -> Result<(), Errno> {
        self.device_get_info_impl(device, arg)
    }

    fn device_get_region_info(
        &self,
        device: KernelFd,
        arg: &mut vmsi_sys::vfio::vfio_region_info,
    ) -> Result<(), Errno> {
        self.device_get_region_info_impl(device, arg)
    }

    fn device_get_irq_info(
        &self,
        device: KernelFd,
        arg: &mut vmsi_sys::vfio::vfio_irq_info,
    ) -> Result<(), Errno> {
        self.device_get_irq_info_impl(device, arg)
    }

    fn device_set_irqs(
        &self,
        device: KernelFd,
        header: &super::IrqSetHeader,
        data: super::IrqData<'_>,
    ) -> Result<u32, Errno> {
        self.device_set_irqs_impl(device, header, data)
    }

    fn device_reset(&self, device: KernelFd) -> Result<(), Errno> {
        self.device_reset_impl(device)
    }

    fn device_read(&self, device: KernelFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
        self.device_read_impl(device, buf, offset)
    }

    fn device_write(&self, device: KernelFd, buf: &[u8], offset: u64) -> Result<usize, Errno> {
        self.device_write_impl(device, buf, offset)
    }

    fn device_mmap(
        &self,
        device: KernelFd,
        offset: u64,
        len: usize,
    ) -> Result<super::MmioRegion, Errno> {
        self.device_mmap_impl(device, offset, len)
    }
}
