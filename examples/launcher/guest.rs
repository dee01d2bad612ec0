//! The guest's side of the machine: its RAM, its memory map, and the MSI-X programming
//! sequence its drivers perform (the launcher plays the guest, there being no real one).

use std::sync::Arc;

use vmsi::msi::{Effect, MSIX_CONTROL_ENABLE, MSIX_CONTROL_FUNCTION_MASK, MsixRegion, VectorTable};
use vmsi::{DmaMemory, Ioas, IovaRange, Prot};

/// The guest's virtual ITS, where QEMU's `virt` machine puts its ITS: its doorbell
/// (`GITS_TRANSLATER`, base + 0x10040) is the GPA a guest driver programs in paging mode.
pub const VITS_BASE: u64 = 0x0808_0000;
/// The virtual ITS's doorbell GPA.
pub const VITS_DOORBELL: u64 = VITS_BASE + vmsi::msi::firmware::GITS_TRANSLATER;

/// The guest IOVA a nested guest programs as its MSI address (plus the doorbell's offset):
/// its stage 1 maps this page onto the vITS doorbell page, as a guest's DMA layer maps the
/// doorbell of its interrupt controller for a device behind its IOMMU.
pub const GUEST_MSI_GIOVA: u64 = 0xffe0_0000;
/// The vITS doorbell's 4 KiB page (the guest's stage-1 granule).
pub const VITS_DOORBELL_PAGE: u64 = VITS_DOORBELL & !0xfff;

/// The requester id the guest sees the device at (bus 0, device 2, function 0). A VMM
/// chooses it; it is the virtual stream id in the vIOMMU and the device id in the vITS.
pub const GUEST_RID: u32 = 0x10;

/// Where in guest RAM the stand-in guest driver keeps its SMMU stage-1 tables...
pub const STAGE1_OFFSET: u64 = 0x10_0000;
/// ... how many 4 KiB pages it gives them ...
pub const STAGE1_PAGES: u64 = 16;
/// ... and where its NVMe queues live.
pub const QUEUES_OFFSET: u64 = 0x20_0000;
/// The guest IOVA the guest's DMA API hands out for those queues in nested mode (the top of
/// the 32-bit space, as Linux's iommu-dma does), which its stage 1 maps onto their GPA.
pub const QUEUES_GIOVA: u64 = 0xfff0_0000;
/// The ASID of the guest's stage-1 context.
pub const GUEST_ASID: u16 = 1;

/// Guest RAM: a memfd, mapped by file into the VM's stage 2 (the IOAS) at its GPA, and
/// accessed by the launcher (playing the guest) with volatile copies at guest physical
/// addresses.
pub struct GuestRam {
    // Shared with the KVM VM, which keeps it mapped for as long as its memory slot lives.
    mem: Arc<DmaMemory>,
    gpa: u64,
}

impl GuestRam {
    /// `mib` MiB of zeroed RAM at `gpa`.
    pub fn new(gpa: u64, mib: u64) -> vmsi::Result<Self> {
        Ok(GuestRam {
            mem: Arc::new(DmaMemory::new((mib << 20) as usize)?),
            gpa,
        })
    }

    /// The GPA range it covers.
    pub fn range(&self) -> IovaRange {
        IovaRange {
            start: self.gpa,
            last: self.gpa + self.mem.len() as u64 - 1,
        }
    }

    /// The memory itself, for a KVM memory slot.
    #[cfg_attr(not(all(feature = "kvm", target_arch = "aarch64")), allow(dead_code))]
    pub fn memory(&self) -> Arc<DmaMemory> {
        self.mem.clone()
    }

    /// First GPA.
    pub fn gpa(&self) -> u64 {
        self.gpa
    }

    /// Maps all of it into `ioas` at its GPA (`IOMMU_IOAS_MAP_FILE`): the device's DMA to a
    /// GPA then reaches the very pages the guest (here, this process) uses.
    pub fn map_into(&self, ioas: &Ioas) -> vmsi::Result<u64> {
        let len = self.mem.len() as u64;
        ioas.map_file(self.mem.file(), 0, len, Some(self.gpa), Prot::ReadWrite)
    }

    fn offset(&self, gpa: u64, len: usize) -> vmsi::Result<usize> {
        let inside = gpa >= self.gpa && self.range().contains(gpa, len as u64);
        if inside {
            Ok((gpa - self.gpa) as usize)
        } else {
            Err(vmsi::Error::InvalidArgument("GPA outside guest RAM"))
        }
    }

    /// Reads the little-endian u64 at `gpa`.
    pub fn read_u64(&self, gpa: u64) -> vmsi::Result<u64> {
        self.mem.read_u64(self.offset(gpa, 8)?)
    }

    /// Writes a little-endian u64 at `gpa`.
    pub fn write_u64(&self, gpa: u64, value: u64) -> vmsi::Result<()> {
        self.mem.write_u64(self.offset(gpa, 8)?, value)
    }

    /// Reads the little-endian u32 at `gpa`.
    pub fn read_u32(&self, gpa: u64) -> vmsi::Result<u32> {
        self.mem.read_u32(self.offset(gpa, 4)?)
    }

    /// Writes a little-endian u32 at `gpa`.
    pub fn write_u32(&self, gpa: u64, value: u32) -> vmsi::Result<()> {
        self.mem.write_u32(self.offset(gpa, 4)?, value)
    }

    /// Zeroes `len` bytes from `gpa`.
    pub fn zero(&self, gpa: u64, len: usize) -> vmsi::Result<()> {
        self.mem.fill(self.offset(gpa, len)?, len, 0)
    }
}

/// Vector Control's mask bit, the entry's last dword.
const ENTRY_MASKED: u64 = 1;

/// One vector as the guest driver left it.
pub struct Programmed {
    /// The vector.
    pub vector: u32,
    /// What the trap emulator answered to the unmask that put the message in force.
    pub effect: Effect,
}

/// The guest driver's MSI-X bring-up, as Linux performs it (`msix_capability_init`, then
/// `pci_write_msg_msix` and the unmask when the driver requests each IRQ), written into the
/// emulated table: enable with the function masked, then per vector mask, address low and
/// high, data, unmask; then clear the function mask. `address` is what the guest believes
/// its ITS doorbell is (a GPA, or a guest IOVA under its own stage 1); vector k's data is
/// the EventID the guest's ITS driver gave it, k.
pub fn program_msix(
    table: &VectorTable,
    vectors: u32,
    address: u64,
) -> vmsi::Result<(Vec<Programmed>, Effect)> {
    table.msix_control_write(MSIX_CONTROL_ENABLE | MSIX_CONTROL_FUNCTION_MASK)?;
    let mut programmed = Vec::new();
    for vector in 0..vectors {
        let entry = 16 * vector as u64;
        let write =
            |offset: u64, value: u64| table.msix_write(MsixRegion::Table, entry + offset, 4, value);
        write(12, ENTRY_MASKED)?;
        write(0, address & 0xffff_ffff)?;
        write(4, address >> 32)?;
        write(8, vector as u64)?;
        let effect = write(12, 0)?;
        programmed.push(Programmed { vector, effect });
    }
    let opened = table.msix_control_write(MSIX_CONTROL_ENABLE)?;
    Ok((programmed, opened))
}
