//! The MSI strategy: which one the launcher takes, and what each asks of the host.
//!
//! * `KernelWindow` (stock kernels): the kernel maps the ITS doorbell page at its software
//!   MSI window (`0x8000000` on SMMUv3) and every vector writes window + `0x40`; the guest's
//!   programmed address only chooses the route.
//! * `UserWindow` (proposed `IOMMU_OPTION_SW_MSI_START/SIZE`): the same, at a window the
//!   launcher moves, before attach, into a hole of the guest's memory map.
//! * `PerVector` (proposed `IOMMU_IOAS_MAP_MSI` + `VFIO_IRQ_SET_ACTION_PREPARE`): the launcher
//!   maps the device's doorbell page into the VM's stage 2 at the vITS doorbell page's GPA,
//!   so the device can write exactly the address the guest programs: the vITS doorbell GPA
//!   (paging), or a guest IOVA that the guest's stage 1 maps onto it (nested).
//!
//! PerVector needs every vector's IOVA before the vector is enabled, and an enabled
//! vector's IOVA cannot change; the rig's NVMe cannot resize its enabled MSI-X index either.
//! The launcher takes them from the guest's MSI layout, which it decides itself (it builds
//! the guest's stage 1 and writes the payload that programs the MSI-X table): every vector
//! gets the one address the guest will program ([`super::launch::Vm::guest_msi`]), and the
//! doorbell map declares only that address, so the trap emulation refuses any other the
//! guest might write. A VMM with an unknown guest would have to disable the index, prepare
//! the addresses the guest wrote and enable again after the guest's MSI-X writes, losing
//! whatever fired in between: more machinery than this example's guest needs.

use std::io::Write;

use vmsi::msi::{Strategy, probe};
use vmsi::{Device, Iommufd, IovaRange};

use super::args::StrategyRequest;
use super::guest::VITS_DOORBELL;
use super::launch::{EXIT_FAILED, EXIT_UNSUPPORTED, EXIT_USAGE, Failure, failed};

/// A hole in the guest's memory map (QEMU `virt`'s, between its secure memory at
/// `0x0e000000` and the PCI MMIO window at `0x10000000`): where the launcher moves the
/// kernel's software MSI window, away from guest RAM, the vGIC and the vITS.
pub const MSI_WINDOW_HOLE: u64 = 0x0f00_0000;
/// The moved window's size: what the driver's window has, room for 256 doorbell pages.
pub const MSI_WINDOW_SIZE: u64 = 1 << 20;

/// Probes what the kernel offers (before attach, where UserWindow has to be set up) and
/// settles on the strategy asked for, or the best one for `auto`, or says why not.
pub fn choose(
    iommufd: &Iommufd,
    device: &Device,
    request: StrategyRequest,
    out: &mut dyn Write,
) -> Result<Strategy, Failure> {
    let report = probe(iommufd, device).map_err(failed("probing MSI strategies"))?;
    for line in report.to_string().lines() {
        writeln!(out, "{line}")?;
    }
    let (strategy, how) = match request {
        StrategyRequest::Auto => (report.chosen, "auto: the best this kernel offers"),
        StrategyRequest::Named(wanted) => match report.finding(wanted) {
            Some(f) if f.available => (wanted, "as asked"),
            // The reason says whether the kernel or this build lacks it.
            Some(f) => {
                return Err(Failure::new(
                    EXIT_UNSUPPORTED,
                    format!("{wanted}: unavailable: {}", f.reason),
                ));
            }
            None => {
                return Err(Failure::new(
                    EXIT_UNSUPPORTED,
                    format!("{wanted}: the probe did not report it"),
                ));
            }
        },
    };
    writeln!(out, "chosen: {strategy} ({how})")?;
    Ok(strategy)
}

/// Where UserWindow and PerVector move the software MSI window: the hole in the guest's
/// memory map, or, when guest RAM was put over it, the first MiB above guest RAM.
pub fn moved_window(ram: IovaRange) -> Result<(u64, &'static str), Failure> {
    let hole_last = MSI_WINDOW_HOLE + MSI_WINDOW_SIZE - 1;
    if ram.last < MSI_WINDOW_HOLE || hole_last < ram.start {
        return Ok((
            MSI_WINDOW_HOLE,
            "a hole in the guest's memory map, clear of guest RAM, the vGIC and the vITS",
        ));
    }
    let above = ram
        .last
        .checked_add(1)
        .and_then(|end| end.checked_next_multiple_of(MSI_WINDOW_SIZE))
        .filter(|start| start.checked_add(MSI_WINDOW_SIZE).is_some())
        .ok_or_else(|| Failure::new(EXIT_USAGE, "no room for the MSI window above guest RAM"))?;
    Ok((
        above,
        "the first MiB above guest RAM, which covers the usual hole",
    ))
}

/// Before attach: moves the device's software MSI window out of the way, for UserWindow
/// (the kernel's doorbell goes there) and PerVector (the driver's window at `0x8000000`
/// covers the vITS doorbell page, where the launcher maps the doorbell, and the kernel
/// refuses to map anything inside a reserved window). KernelWindow leaves it.
pub fn move_window(
    device: &Device,
    strategy: Strategy,
    ram: IovaRange,
    out: &mut dyn Write,
) -> Result<Option<u64>, Failure> {
    if strategy == Strategy::KernelWindow {
        return Ok(None);
    }
    let (start, why) = moved_window(ram)?;
    set_window(device, start)?;
    let purpose = match strategy {
        Strategy::PerVector => format!(
            "out of the way of the vITS doorbell page {:#x}, where the doorbell goes",
            VITS_DOORBELL & !0xfff
        ),
        _ => "where the kernel will map the ITS doorbell page".into(),
    };
    writeln!(
        out,
        "software MSI window moved from the driver's 0x8000000 to {start:#x}..={:#x} ({why}), \
         {purpose} (IOMMU_OPTION_SW_MSI_START, before attach)",
        start + MSI_WINDOW_SIZE - 1
    )?;
    Ok(Some(start))
}

#[cfg(feature = "proposed-uapi")]
fn set_window(device: &Device, start: u64) -> Result<(), Failure> {
    let window = vmsi::SwMsiWindow {
        start,
        size: MSI_WINDOW_SIZE,
    };
    device
        .set_sw_msi_window(window)
        .map_err(failed("moving the software MSI window"))
}

#[cfg(not(feature = "proposed-uapi"))]
fn set_window(_: &Device, _: u64) -> Result<(), Failure> {
    Err(unbuilt())
}

/// The physical doorbell's page in the VM's stage 2, where it is reachable by the device.
#[derive(Clone, Copy, Debug)]
pub struct DoorbellInStage2 {
    /// The page's IOVA (a GPA: stage 2 is the guest's physical address space).
    pub iova: u64,
    /// Its length, one host page.
    pub len: u64,
    /// The doorbell's offset in it.
    pub offset: u64,
    /// Who mapped it there.
    pub by: &'static str,
}

/// After attach, PerVector only: maps the device's own doorbell page into the VM's stage 2
/// (the nest parent's IOAS when nested) at the vITS doorbell page's GPA
/// (`IOMMU_IOAS_MAP_MSI`). The guest-visible doorbell GPA then reaches the physical ITS.
pub fn map_doorbell(
    ioas: &vmsi::Ioas,
    device: &Device,
    ram: IovaRange,
    page_size: u64,
    out: &mut dyn Write,
) -> Result<DoorbellInStage2, Failure> {
    let page = VITS_DOORBELL & !(page_size - 1);
    if ram.start < page + page_size && page <= ram.last {
        return Err(Failure::new(
            EXIT_USAGE,
            format!("guest RAM covers the vITS doorbell page {page:#x}: move RAM with --ram-gpa"),
        ));
    }
    let mapped = map_msi(ioas, device, page)?;
    if mapped.iova + mapped.offset != VITS_DOORBELL {
        return Err(Failure::new(
            EXIT_FAILED,
            format!(
                "the physical doorbell sits at offset {:#x} of its page, the vITS's at {:#x}: \
                 the device cannot write the vITS doorbell address",
                mapped.offset,
                VITS_DOORBELL - page
            ),
        ));
    }
    writeln!(
        out,
        "doorbell page: the device's ITS doorbell page mapped at IOVA {:#x} ({} KiB, doorbell \
         at +{:#x}), the vITS doorbell page's GPA (IOMMU_IOAS_MAP_MSI)",
        mapped.iova,
        mapped.len / 1024,
        mapped.offset
    )?;
    Ok(mapped)
}

#[cfg(feature = "proposed-uapi")]
fn map_msi(ioas: &vmsi::Ioas, device: &Device, iova: u64) -> Result<DoorbellInStage2, Failure> {
    let page = ioas
        .map_msi_doorbell(device, iova)
        .map_err(failed("IOMMU_IOAS_MAP_MSI"))?;
    Ok(DoorbellInStage2 {
        iova: page.iova,
        len: page.len,
        offset: u64::from(page.doorbell_offset),
        by: "IOMMU_IOAS_MAP_MSI",
    })
}

#[cfg(not(feature = "proposed-uapi"))]
fn map_msi(_: &vmsi::Ioas, _: &Device, _: u64) -> Result<DoorbellInStage2, Failure> {
    Err(unbuilt())
}

/// PerVector bring-up: every vector gets `msi_address`'s page as its MSI IOVA before one
/// `SET_IRQS` enables them all.
#[cfg(feature = "proposed-uapi")]
pub fn bring_up_per_vector(
    device: &Device,
    composer: vmsi::msi::Composer,
    msi_address: u64,
    doorbell: &DoorbellInStage2,
) -> Result<vmsi::msi::MsiDevice, Failure> {
    use vmsi::msi::{IrqIndex, MsiDevice};
    let count = device
        .irq_info(IrqIndex::Msix.vfio_index())
        .map_err(failed("VFIO_DEVICE_GET_IRQ_INFO"))?
        .count;
    // The IOVA is the page: the kernel adds the doorbell's offset.
    let iova = msi_address - doorbell.offset;
    let iovas = vec![iova; count as usize];
    let offset = u32::try_from(doorbell.offset)
        .map_err(|_| Failure::new(EXIT_FAILED, "a doorbell offset past 4 GiB"))?;
    MsiDevice::bring_up_per_vector(device.clone(), IrqIndex::Msix, composer, &iovas, offset)
        .map_err(failed("enabling MSI-X at per-vector IOVAs"))
}

#[cfg(not(feature = "proposed-uapi"))]
pub fn bring_up_per_vector(
    _: &Device,
    _: vmsi::msi::Composer,
    _: u64,
    _: &DoorbellInStage2,
) -> Result<vmsi::msi::MsiDevice, Failure> {
    Err(unbuilt())
}

/// Unreachable in practice: without the feature the probe reports both proposed strategies
/// unavailable, and `choose` stops there.
#[cfg(not(feature = "proposed-uapi"))]
fn unbuilt() -> Failure {
    Failure::new(
        EXIT_UNSUPPORTED,
        "this launcher was built without the proposed-uapi feature",
    )
}
