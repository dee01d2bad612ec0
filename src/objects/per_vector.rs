//! The proposed per-vector MSI uAPI, as the rig's kernel implements it
//! (`tests/rig/kernel/patches/README.md`): a device's own software MSI window
//! (`IOMMU_OPTION_SW_MSI_START/SIZE`), its vectors' MSI IOVAs (`VFIO_DEVICE_SET_IRQS` with
//! `ACTION_PREPARE`), and its doorbell page placed by userspace (`IOMMU_IOAS_MAP_MSI`).
//!
//! A stock kernel refuses each of these; [`crate::msi::probe`] finds out which exist before a
//! VMM relies on them.

use vmsi_sys::names as n;
use vmsi_sys::proposed as p;
use vmsi_sys::vfio as v;

use super::{Device, Ioas};
use crate::error::{Errno, Error, Feature, Op, Result};
use crate::seam::{IrqData, IrqSetHeader};

const MIB: u64 = 1 << 20;

/// The doorbell page [`Ioas::map_msi_doorbell`] mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoorbellPage {
    /// Where the page is in the IOAS.
    pub iova: u64,
    /// Bytes mapped: one host page.
    pub len: u64,
    /// The doorbell register's offset in its page (0x40 for a GICv3 ITS `GITS_TRANSLATER`).
    pub doorbell_offset: u32,
}

impl DoorbellPage {
    /// The MSI address a vector writes when its IOVA is this page: page + doorbell offset.
    pub fn msi_address(&self) -> u64 {
        self.iova + u64::from(self.doorbell_offset)
    }
}

/// A device's software MSI window: where the kernel maps doorbells under the
/// [`crate::msi::Strategy::UserWindow`] and [`crate::msi::Strategy::KernelWindow`] strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwMsiWindow {
    /// First IOVA, 1 MiB aligned.
    pub start: u64,
    /// Size in bytes, a multiple of 1 MiB.
    pub size: u64,
}

/// `ENOTTY` (no such command) means the kernel lacks the feature.
fn unsupported_if_absent(op: Op, feature: Feature) -> impl Fn(Errno) -> Error {
    move |errno| match errno {
        Errno::ENOTTY => Error::Unsupported { op, feature, errno },
        _ => Error::Kernel { op, errno },
    }
}

impl Ioas {
    /// Maps the page holding `device`'s own MSI doorbell at the page-aligned `iova`. The
    /// kernel finds the page from the device's interrupt controller: no caller can name a
    /// physical address. Remove it with [`Ioas::unmap`]. For a nested guest, map it into the
    /// IOAS of the nest-parent stage 2 at the virtual ITS doorbell page's GPA.
    pub fn map_msi_doorbell(&self, device: &Device, iova: u64) -> Result<DoorbellPage> {
        let dev_id = device.require_id()?;
        let mut arg = p::iommu_ioas_map_msi {
            size: size_of::<p::iommu_ioas_map_msi>() as u32,
            ioas_id: self.id().0,
            dev_id: dev_id.0,
            iova,
            ..Default::default()
        };
        let c = self.ctx();
        c.kernel
            .ioas_map_msi(c.fd, &mut arg)
            .map_err(unsupported_if_absent(
                Op::IoasMapMsi,
                Feature::PerVectorMsiIova,
            ))?;
        Ok(DoorbellPage {
            iova,
            len: arg.length,
            doorbell_offset: arg.doorbell_offset,
        })
    }
}

impl Device {
    /// Gives vectors `start..start + iovas.len()` of MSI or MSI-X `index` their MSI IOVAs
    /// (page-aligned; each vector's MSI address becomes its IOVA plus the doorbell offset).
    /// From the first IOVA on, the device is in per-vector mode: enabling a vector without
    /// one fails with `ENOENT`. Vectors must not be enabled yet (`EBUSY`).
    pub fn prepare_msi_iovas(&self, index: u32, start: u32, iovas: &[u64]) -> Result<()> {
        let header = IrqSetHeader {
            flags: p::VFIO_IRQ_SET_DATA_MSI_IOVA | p::VFIO_IRQ_SET_ACTION_PREPARE,
            index,
            start,
            count: u32::try_from(iovas.len())
                .map_err(|_| Error::InvalidArgument("more MSI IOVAs than vectors"))?,
        };
        self.set_irqs(&header, IrqData::MsiIovas(iovas))
    }

    /// Clears the MSI IOVAs of vectors `start..start + count`; `count` 0 clears all of them
    /// and leaves per-vector mode.
    pub fn clear_msi_iovas(&self, index: u32, start: u32, count: u32) -> Result<()> {
        let header = IrqSetHeader {
            flags: v::VFIO_IRQ_SET_DATA_NONE | p::VFIO_IRQ_SET_ACTION_PREPARE,
            index,
            start,
            count,
        };
        self.set_irqs(&header, IrqData::None)
    }

    fn sw_msi_option(&self, op: u32, option_id: u32, val64: u64) -> Result<u64> {
        let (ctx, id) = self.binding()?;
        ctx.option(op, option_id, id.0, val64)
    }

    /// The device's software MSI window: the driver's, or the one set with
    /// [`Device::set_sw_msi_window`].
    pub fn sw_msi_window(&self) -> Result<SwMsiWindow> {
        let get = n::IOMMU_OPTION_OP_GET;
        let start = self.sw_msi_option(get, p::IOMMU_OPTION_SW_MSI_START, 0)?;
        let mib = self.sw_msi_option(get, p::IOMMU_OPTION_SW_MSI_SIZE, 0)?;
        Ok(SwMsiWindow {
            start,
            size: mib.saturating_mul(MIB),
        })
    }

    /// Moves the device's software MSI window to `window` (1 MiB aligned, a whole number of
    /// MiB). Only before the device is attached: the kernel reserves the window in the IOAS
    /// on attach (`EBUSY` after).
    pub fn set_sw_msi_window(&self, window: SwMsiWindow) -> Result<()> {
        if window.size == 0 || window.size % MIB != 0 {
            return Err(Error::InvalidArgument(
                "an MSI window is a non-zero whole number of MiB",
            ));
        }
        let set = n::IOMMU_OPTION_OP_SET;
        self.sw_msi_option(set, p::IOMMU_OPTION_SW_MSI_START, window.start)?;
        if let Err(e) = self.sw_msi_option(set, p::IOMMU_OPTION_SW_MSI_SIZE, window.size / MIB) {
            // No half-moved window: size 0 is "the driver's window" again.
            let _ = self.sw_msi_option(set, p::IOMMU_OPTION_SW_MSI_SIZE, 0);
            return Err(e);
        }
        Ok(())
    }
}
