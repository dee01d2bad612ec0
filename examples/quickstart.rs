//! Quick start: pass an MSI-X device to an IOAS and watch each vector reach its own eventfd.
//!
//! ```text
//! cargo run --example quickstart                              # Sim, when there is no /dev/iommu
//! cargo run --example quickstart -- /dev/vfio/devices/vfio1   # a real VFIO cdev
//! ```
//!
//! It opens an iommufd, binds the device, attaches it to a fresh IOAS, enables four MSI-X
//! vectors with an eventfd each, reads back the host MSI message the kernel programmed
//! into each table entry, and fires each vector.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};
use vmsi::pci::MsixCapability;
use vmsi::seam::{Host, Kernel, Sim, SimConfig};
use vmsi::{Device, Iommufd};

const MSIX: u32 = vmsi_sys::vfio::VFIO_PCI_MSIX_IRQ_INDEX;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = std::env::args().nth(1).map(PathBuf::from);
    let (kernel, path): (Arc<dyn Kernel>, PathBuf) = match arg {
        Some(path) => (Arc::new(Host), path),
        None if std::path::Path::new("/dev/iommu").exists() => {
            return Err(
                "this machine has /dev/iommu: name a VFIO cdev, e.g. /dev/vfio/devices/vfio0"
                    .into(),
            );
        }
        None => {
            let sim = Sim::new(SimConfig::default());
            let nvme = sim.config().devices[1].path.clone();
            println!("no /dev/iommu here: running on Sim, the in-process model of Linux 7.2");
            (sim, nvme)
        }
    };
    println!("backend: {}, device: {}", kernel.name(), path.display());

    let iommufd = Iommufd::open(kernel.clone())?;
    let ioas = iommufd.alloc_ioas()?;
    let device = Device::open(kernel, &path)?;
    let dev_id = device.bind(&iommufd)?;
    let hwpt = device.attach_ioas(&ioas)?;
    println!(
        "bound as {dev_id}, attached to {} through {hwpt}",
        ioas.id()
    );
    let (ranges, align) = ioas.iova_ranges()?;
    println!("usable IOVA ranges (alignment {align:#x}):");
    for r in &ranges {
        println!("  {:#014x} - {:#014x}", r.start, r.last);
    }

    let cap = MsixCapability::read(&device)?.ok_or("the device has no MSI-X capability")?;
    let eventfds: Vec<EventFd> = (0..4)
        .map(|_| EventFd::from_flags(EfdFlags::EFD_NONBLOCK))
        .collect::<Result<_, _>>()?;
    let fds: Vec<_> = eventfds.iter().map(|e| Some(e.as_fd())).collect();
    device.enable_irqs(MSIX, &fds)?;
    let table = device.map_region(cap.table_bar)?;
    println!(
        "MSI-X: {} vectors, table in BAR{} at {:#x}",
        cap.vectors, cap.table_bar, cap.table_offset
    );
    for (k, efd) in eventfds.iter().enumerate() {
        let entry = cap.table_offset as usize + 16 * k;
        let addr = table.read_u64(entry)?;
        let data = table.read_u32(entry + 8)?;
        device.trigger_vector(MSIX, k as u32)?;
        let mut count = [0u8; 8];
        let fired = nix::unistd::read(efd.as_fd(), &mut count).is_ok();
        println!(
            "  vector {k}: host message address {addr:#x} data {data:#x}, eventfd fired: {fired}"
        );
    }
    device.disable_irqs(MSIX)?;
    Ok(())
}
