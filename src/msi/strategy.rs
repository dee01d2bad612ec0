//! MSI strategies: who places the doorbell page, and whether each vector has its own address.
//!
//! Chosen at runtime by probing the running kernel, never by guessing: a kernel without the
//! proposed uAPI answers the probe with `EINVAL` / `EOPNOTSUPP` / `ENOTTY`, and the library
//! falls back to [`Strategy::KernelWindow`] and says why.

use std::fmt;

use vmsi_sys::names as n;

use super::HostMessage;
use crate::error::{Errno, Error, Result};
use crate::ids::DeviceId;
use crate::objects::{Device, Iommufd, IovaRange};
use crate::seam::{IrqData, IrqSetHeader};

/// How the MSI doorbell reaches the device's DMA space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Stock kernels (6.15+): the kernel maps each ITS page into its software MSI window
    /// (page order = first use per iommufd); every vector of a device writes the same
    /// address there. The library predicts, validates and reports it.
    KernelWindow,
    /// Proposed `IOMMU_OPTION_SW_MSI_START/SIZE`: the kernel still places the pages, in a
    /// window userspace chose before attach.
    UserWindow,
    /// Proposed per-vector uAPI: userspace maps the doorbell page and gives each vector its
    /// own MSI IOVA.
    PerVector,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::KernelWindow => "KernelWindow",
            Strategy::UserWindow => "UserWindow",
            Strategy::PerVector => "PerVector",
        })
    }
}

/// Why a strategy is or is not available.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The strategy.
    pub strategy: Strategy,
    /// Whether the running kernel supports it.
    pub available: bool,
    /// What the probe saw.
    pub reason: String,
}

/// The outcome of probing: the strategy chosen and what was found for each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrategyReport {
    /// The best available strategy (PerVector over UserWindow over KernelWindow).
    pub chosen: Strategy,
    /// One finding per strategy, best first.
    pub findings: Vec<Finding>,
}

impl StrategyReport {
    /// What the probe found for `strategy`.
    pub fn finding(&self, strategy: Strategy) -> Option<&Finding> {
        self.findings.iter().find(|f| f.strategy == strategy)
    }

    /// `Ok` when `strategy` is available; otherwise [`Error::Unsupported`] with the feature
    /// it needs, for a caller that asked for that strategy explicitly.
    pub fn require(&self, strategy: Strategy) -> Result<()> {
        match self.finding(strategy) {
            Some(f) if f.available => Ok(()),
            _ => {
                let (op, feature) = match strategy {
                    Strategy::PerVector => {
                        (crate::Op::DeviceSetIrqs, crate::Feature::PerVectorMsiIova)
                    }
                    Strategy::UserWindow => (crate::Op::Option, crate::Feature::SwMsiWindow),
                    Strategy::KernelWindow => (crate::Op::OpenIommufd, crate::Feature::Iommufd),
                };
                Err(Error::Unsupported {
                    op,
                    feature,
                    errno: Errno::EOPNOTSUPP,
                })
            }
        }
    }
}

impl fmt::Display for StrategyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "MSI strategy: {}", self.chosen)?;
        for x in &self.findings {
            writeln!(
                f,
                "  {:<12} {:<11} {}",
                x.strategy.to_string(),
                if x.available {
                    "available"
                } else {
                    "unavailable"
                },
                x.reason
            )?;
        }
        Ok(())
    }
}

/// Probes the kernel behind `iommufd` with a bound, not yet attached, `device`.
///
/// The probes leave no trace on a device that has no MSI IOVAs and no moved window: an
/// option *get*, a `SET_IRQS` that clears every (no) MSI IOVA, and an `IOMMU_IOAS_MAP_MSI`
/// too short to be executed. What a kernel without the uAPI answers (`ENOTTY`, `EINVAL`,
/// `EOPNOTSUPP`) is reported; any other failure is returned.
pub fn probe(iommufd: &Iommufd, device: &Device) -> Result<StrategyReport> {
    let dev_id = device.id().ok_or(Error::InvalidArgument(
        "the device is not bound to an iommufd",
    ))?;
    let per_vector = probe_per_vector(iommufd, device)?;
    let user_window = probe_user_window(iommufd, dev_id)?;
    let kernel_window = Finding {
        strategy: Strategy::KernelWindow,
        available: true,
        reason: "iommufd maps the ITS page into the driver's software MSI window (Linux 6.15+)"
            .into(),
    };
    let findings = vec![per_vector, user_window, kernel_window];
    let chosen = findings
        .iter()
        .find(|f| f.available)
        .map_or(Strategy::KernelWindow, |f| f.strategy);
    Ok(StrategyReport { chosen, findings })
}

/// What a kernel without a proposed call answers.
fn absent(errno: Errno) -> bool {
    matches!(errno, Errno::EINVAL | Errno::ENOTTY | Errno::EOPNOTSUPP)
}

/// `VFIO_IRQ_SET_ACTION_PREPARE` (stock kernels reject the unknown action bit with
/// `EINVAL`) and `IOMMU_IOAS_MAP_MSI` (stock: `ENOTTY`).
fn probe_per_vector(iommufd: &Iommufd, device: &Device) -> Result<Finding> {
    // DATA_NONE | ACTION_PREPARE with count 0 clears all MSI IOVAs (there are none yet).
    const PREPARE: u32 = 1 << 7;
    let header = IrqSetHeader {
        flags: vmsi_sys::vfio::VFIO_IRQ_SET_DATA_NONE | PREPARE,
        index: vmsi_sys::vfio::VFIO_PCI_MSIX_IRQ_INDEX,
        start: 0,
        count: 0,
    };
    let finding = |available, reason: String| Finding {
        strategy: Strategy::PerVector,
        available,
        reason,
    };
    match device.set_irqs(&header, IrqData::None) {
        Ok(()) => {}
        // The action exists; enabled vectors keep their IOVAs.
        Err(e) if e.errno() == Some(Errno::EBUSY) => {}
        Err(e) => match e.errno() {
            Some(errno) if absent(errno) => {
                let why =
                    format!("VFIO_IRQ_SET_ACTION_PREPARE refused ({errno}): not in this kernel");
                return Ok(finding(false, why));
            }
            _ => return Err(e),
        },
    }
    probe_map_msi(iommufd).map(|(available, reason)| finding(available, reason))
}

#[cfg(feature = "proposed-uapi")]
fn probe_map_msi(iommufd: &Iommufd) -> Result<(bool, String)> {
    // A declared size of 0 is below the command's minimum: the kernel refuses it with
    // EINVAL before reading anything, and a kernel without the command says ENOTTY.
    let mut arg = vmsi_sys::proposed::iommu_ioas_map_msi::default();
    match iommufd.kernel().ioas_map_msi(iommufd.fd(), &mut arg) {
        Err(Errno::EINVAL) => Ok((
            true,
            "VFIO_IRQ_SET_ACTION_PREPARE and IOMMU_IOAS_MAP_MSI are supported".into(),
        )),
        Err(Errno::ENOTTY) => Ok((
            false,
            "VFIO_IRQ_SET_ACTION_PREPARE is accepted, but IOMMU_IOAS_MAP_MSI is not in this kernel (ENOTTY)".into(),
        )),
        Err(errno) => Err(Error::Kernel {
            op: crate::Op::IoasMapMsi,
            errno,
        }),
        Ok(()) => Err(Error::InvalidArgument(
            "IOMMU_IOAS_MAP_MSI accepted a zero-sized argument",
        )),
    }
}

#[cfg(not(feature = "proposed-uapi"))]
fn probe_map_msi(_iommufd: &Iommufd) -> Result<(bool, String)> {
    Ok((
        false,
        "the kernel accepts VFIO_IRQ_SET_ACTION_PREPARE; build vmsi with the proposed-uapi feature to use it".into(),
    ))
}

/// `IOMMU_OPTION_SW_MSI_START` get (stock kernels: `EOPNOTSUPP`).
fn probe_user_window(iommufd: &Iommufd, dev_id: DeviceId) -> Result<Finding> {
    const SW_MSI_START: u32 = 2;
    let (available, reason) =
        match iommufd.option(n::IOMMU_OPTION_OP_GET, SW_MSI_START, dev_id.0, 0) {
            Ok(start) if cfg!(feature = "proposed-uapi") => (
                true,
                format!("IOMMU_OPTION_SW_MSI_START is supported (current start {start:#x})"),
            ),
            Ok(_) => (
                false,
                "the kernel has IOMMU_OPTION_SW_MSI_START; build vmsi with the proposed-uapi feature to use it".into(),
            ),
            Err(e) => match e.errno() {
                Some(errno) if absent(errno) => (
                    false,
                    format!("IOMMU_OPTION_SW_MSI_START refused ({errno}): not in this kernel"),
                ),
                _ => return Err(e),
            },
        };
    Ok(Finding {
        strategy: Strategy::UserWindow,
        available,
        reason,
    })
}

/// Where the kernel puts doorbells for a device under [`Strategy::KernelWindow`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelWindow {
    /// The software MSI window (inclusive range), from `reserved_regions` or the IOVA hole.
    pub window: IovaRange,
    /// The host page size.
    pub page_size: u64,
}

impl KernelWindow {
    /// The window of an IOAS a device is attached to: the one hole in its usable IOVA
    /// ranges below the top of the aperture (the kernel reserves it on attach).
    pub fn from_ioas(ioas: &crate::objects::Ioas) -> Result<Self> {
        let (ranges, _) = ioas.iova_ranges()?;
        match super::firmware::iova_holes(&ranges)?.as_slice() {
            [window] => KernelWindow::new(*window, crate::seam::page_size() as u64),
            [] => Err(Error::InvalidArgument(
                "no MSI window: is a device attached to the IOAS?",
            )),
            _ => Err(Error::InvalidArgument(
                "several IOVA holes: the MSI window is ambiguous",
            )),
        }
    }

    /// The window, after checking that it can hold at least one page and the page size is
    /// a power of two.
    pub fn new(window: IovaRange, page_size: u64) -> Result<Self> {
        let len = window
            .last
            .checked_sub(window.start)
            .and_then(|l| l.checked_add(1));
        if !page_size.is_power_of_two()
            || window.start % page_size != 0
            || len.is_none_or(|l| l < page_size)
        {
            return Err(Error::InvalidArgument(
                "an MSI window must hold at least one aligned page",
            ));
        }
        Ok(KernelWindow { window, page_size })
    }

    /// Pages the window holds: the most ITS doorbell pages one iommufd can use.
    pub fn pages(&self) -> u64 {
        // Whole pages in the last - start + 1 bytes (a partial last page holds no doorbell
        // page), computed without overflowing at u64::MAX. The firmware fuzz target found
        // div_ceil(last - start) giving 0 pages for a one-page window of 1-byte pages and
        // counting a partial last page.
        let span = self.window.last - self.window.start;
        span / self.page_size + u64::from(span % self.page_size == self.page_size - 1)
    }

    /// The host message of every vector whose MSIs go to the physical doorbell `doorbell`
    /// when its page is the `page_index`-th doorbell page this iommufd used (0 on a
    /// single-ITS host): window + index * page size + the doorbell's offset in its page.
    pub fn host_message(&self, doorbell: u64, page_index: u64) -> Result<HostMessage> {
        if page_index >= self.pages() {
            return Err(Error::InvalidArgument(
                "more doorbell pages than the MSI window holds",
            ));
        }
        Ok(HostMessage {
            address: self.window.start
                + page_index * self.page_size
                + (doorbell & (self.page_size - 1)),
        })
    }

    /// Checks that guest RAM (GPA ranges, mapped 1:1 into the stage 2) stays out of the
    /// window: a nested guest's RAM there would collide with the kernel's doorbell mapping.
    pub fn check_guest_ram(&self, ram: &[IovaRange]) -> Result<()> {
        match ram
            .iter()
            .find(|r| r.start <= self.window.last && self.window.start <= r.last)
        {
            Some(_) => Err(Error::InvalidArgument(
                "guest RAM overlaps the kernel's MSI window",
            )),
            None => Ok(()),
        }
    }

    /// The IORT RMR a nested guest's firmware needs so that its stage 1 maps the window 1:1.
    pub fn rmr(&self) -> Rmr {
        Rmr {
            base: self.window.start,
            length: self.window.last - self.window.start + 1,
        }
    }
}

/// An IORT Reserved Memory Range node's one memory range, covering a device's whole RID
/// span (what QEMU's `arm-smmuv3,accel=on` emits: flags 0, no remap, Device-nGnRnE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rmr {
    /// Base address (identity mapped by the guest's stage 1).
    pub base: u64,
    /// Length in bytes.
    pub length: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicts_the_window_address_and_refuses_ram_inside_it() {
        let w = KernelWindow::new(
            IovaRange {
                start: 0x800_0000,
                last: 0x80f_ffff,
            },
            4096,
        )
        .unwrap();
        assert_eq!(w.pages(), 256);
        assert_eq!(w.host_message(0x0809_0040, 0).unwrap().address, 0x800_0040);
        assert_eq!(w.host_message(0x0a09_0040, 1).unwrap().address, 0x800_1040);
        assert!(w.host_message(0x0809_0040, 256).is_err());
        // 64 KiB pages keep the same 0x40 offset of GITS_TRANSLATER in its page.
        let w64 = KernelWindow::new(
            IovaRange {
                start: 0x800_0000,
                last: 0x80f_ffff,
            },
            65536,
        )
        .unwrap();
        assert_eq!(
            w64.host_message(0x0809_0040, 1).unwrap().address,
            0x801_0040
        );
        assert!(
            w.check_guest_ram(&[IovaRange {
                start: 0x4000_0000,
                last: 0x7fff_ffff
            }])
            .is_ok()
        );
        assert!(
            w.check_guest_ram(&[IovaRange {
                start: 0,
                last: 0x0800_0000
            }])
            .is_err()
        );
        assert_eq!(
            w.rmr(),
            Rmr {
                base: 0x800_0000,
                length: 0x10_0000
            }
        );
        assert!(
            KernelWindow::new(
                IovaRange {
                    start: 0x800_0000,
                    last: 0x800_0fff
                },
                3000
            )
            .is_err()
        );
        assert!(
            KernelWindow::new(
                IovaRange {
                    start: 0x800_0000,
                    last: 0x800_0000
                },
                4096
            )
            .is_err()
        );
    }
}
