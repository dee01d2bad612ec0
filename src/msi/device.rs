//! `MsiDevice`: a passed-through device's vectors, brought up once, with the guest-facing
//! table and the host-facing eventfds side by side.

use std::os::fd::{AsFd, BorrowedFd};

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::{Composer, HostMessage, IrqIndex, VectorTable};
use crate::error::{Error, Op, Result};
use crate::objects::Device;
use crate::pci::MsixCapability;

/// One device's MSI or MSI-X vectors: the [`VectorTable`] the guest programs, and one
/// eventfd per vector that the host kernel signals.
///
/// Bring-up enables every vector at once with a single `VFIO_DEVICE_SET_IRQS` (the GICv3
/// ITS cannot grow an enabled MSI-X index, and one call is the cheapest anyway); after that,
/// under a window strategy, no guest write needs a kernel call.
#[derive(Debug)]
pub struct MsiDevice {
    device: Device,
    table: VectorTable,
    eventfds: Box<[EventFd]>,
    msix: Option<MsixCapability>,
}

impl MsiDevice {
    /// Sizes the table from `VFIO_DEVICE_GET_IRQ_INFO`, makes one eventfd per vector and
    /// enables all of them. `device` must be bound and attached.
    pub fn bring_up(device: Device, index: IrqIndex, composer: Composer) -> Result<Self> {
        let info = device.irq_info(index.vfio_index())?;
        Self::enable(device, index, composer, info, |_| Ok(()))
    }

    /// Per-vector bring-up (the [`super::Strategy::PerVector`] strategy): vector k's MSI
    /// writes `msi_iovas[k]` plus `doorbell_offset` ([`crate::DoorbellPage`]), where the
    /// caller placed the doorbell page with [`crate::Ioas::map_msi_doorbell`], or its guest's
    /// stage 1 maps it for a nested domain. The IOVAs reach the kernel before any vector is
    /// enabled, and become each vector's provided address in the table. On failure the
    /// device is left without IOVAs, as it was.
    #[cfg(feature = "proposed-uapi")]
    pub fn bring_up_per_vector(
        device: Device,
        index: IrqIndex,
        composer: Composer,
        msi_iovas: &[u64],
        doorbell_offset: u32,
    ) -> Result<Self> {
        if composer.host != super::HostAddressing::PerVector {
            return Err(Error::InvalidArgument(
                "a per-vector bring-up composes with HostAddressing::PerVector",
            ));
        }
        let info = device.irq_info(index.vfio_index())?;
        if msi_iovas.len() != info.count as usize {
            return Err(Error::InvalidArgument("one MSI IOVA per vector"));
        }
        let vfio_index = index.vfio_index();
        device.prepare_msi_iovas(vfio_index, 0, msi_iovas)?;
        let offset = u64::from(doorbell_offset);
        let provide = |table: &VectorTable| {
            (0..).zip(msi_iovas).try_for_each(|(k, iova)| {
                table.provide_msi_address(k, Some(iova + offset)).map(drop)
            })
        };
        let clear = device.clone();
        Self::enable(device, index, composer, info, provide).inspect_err(|_| {
            // Back to no IOVAs; the first error is the one to report.
            let _ = clear.clear_msi_iovas(vfio_index, 0, 0);
        })
    }

    /// The table, the eventfds, and every vector enabled with one `SET_IRQS`; `prepare`
    /// fills the table first.
    fn enable(
        device: Device,
        index: IrqIndex,
        composer: Composer,
        info: crate::objects::IrqInfo,
        prepare: impl FnOnce(&VectorTable) -> Result<()>,
    ) -> Result<Self> {
        let table = match index {
            IrqIndex::Msix => VectorTable::msix(info.count, composer)?,
            IrqIndex::Msi => VectorTable::msi(info.count, composer)?,
        };
        prepare(&table)?;
        let msix = match index {
            IrqIndex::Msix => Some(
                MsixCapability::read(&device)?
                    .ok_or(Error::InvalidArgument("the device has no MSI-X capability"))?,
            ),
            IrqIndex::Msi => None,
        };
        let eventfds = (0..info.count)
            .map(|_| EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK))
            .collect::<std::result::Result<Box<[_]>, _>>()
            .map_err(|errno| Error::Kernel {
                op: Op::DeviceSetIrqs,
                errno,
            })?;
        let fds: Vec<Option<BorrowedFd<'_>>> = eventfds.iter().map(|e| Some(e.as_fd())).collect();
        device.enable_irqs(index.vfio_index(), &fds)?;
        Ok(MsiDevice {
            device,
            table,
            eventfds,
            msix,
        })
    }

    /// The guest-facing table.
    pub fn table(&self) -> &VectorTable {
        &self.table
    }

    /// The device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The eventfd the host kernel signals for `vector`.
    pub fn eventfd(&self, vector: u32) -> Result<BorrowedFd<'_>> {
        let len = self.table.len();
        self.eventfds
            .get(vector as usize)
            .map(|e| e.as_fd())
            .ok_or(Error::VectorOutOfRange { vector, len })
    }

    /// The vectors' eventfds as KVM irqfds take them (duplicates of the ones VFIO
    /// signals), for [`crate::kvm::KvmRoutes::add_device`].
    #[cfg(feature = "kvm")]
    pub fn kvm_eventfds(&self) -> Result<std::sync::Arc<[crate::kvm::EventFd]>> {
        self.eventfds.iter().map(crate::seam::vmm_eventfd).collect()
    }

    /// The host messages the kernel programmed into the physical MSI-X table, read back
    /// through the BAR, as (address, data) per vector, written into `out` (one per vector,
    /// up to its length). Returns how many were read.
    pub fn read_host_messages(&self, out: &mut [(u64, u32)]) -> Result<usize> {
        let cap = self
            .msix
            .ok_or(Error::InvalidArgument("only MSI-X tables can be read back"))?;
        let bar = self.device.map_region(cap.table_bar)?;
        let n = out.len().min(self.table.len() as usize);
        for (k, slot) in out.iter_mut().take(n).enumerate() {
            let entry = cap.table_offset as usize + 16 * k;
            *slot = (bar.read_u64(entry)?, bar.read_u32(entry + 8)?);
        }
        Ok(n)
    }

    /// Checks that every vector's physical message address is the one provided for it
    /// ([`MsiDevice::bring_up_per_vector`]); the first vector that differs is reported.
    pub fn validate_provided_addresses(&self) -> Result<()> {
        let mut got = vec![(0u64, 0u32); self.table.len() as usize];
        let n = self.read_host_messages(&mut got)?;
        for (k, (address, _)) in (0..).zip(&got[..n]) {
            if self.table.vector(k)?.msi_address != Some(*address) {
                return Err(Error::InvalidArgument(
                    "a vector's host MSI address differs from the one provided for it",
                ));
            }
        }
        Ok(())
    }

    /// Checks that every vector's physical message address is `expected` (the
    /// [`super::KernelWindow`] prediction); the first vector that differs is reported.
    pub fn validate_host_address(&self, expected: HostMessage) -> Result<()> {
        let mut got = vec![(0u64, 0u32); self.table.len() as usize];
        let n = self.read_host_messages(&mut got)?;
        match got[..n].iter().position(|(a, _)| *a != expected.address) {
            None => Ok(()),
            Some(_) => Err(Error::InvalidArgument(
                "a vector's host MSI address differs from the prediction",
            )),
        }
    }
}

impl Drop for MsiDevice {
    fn drop(&mut self) {
        // Disable before the eventfds go; the device may be gone already, nothing to report.
        let _ = self.device.disable_irqs(self.table.index().vfio_index());
    }
}
