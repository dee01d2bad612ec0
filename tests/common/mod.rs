//! What every integration test shares: which kernel to run on, and the devices it has.
//!
//! On a development machine the tests run on `Sim`, configured like the rig's QEMU machine.
//! Inside the rig (`VMSI_BACKEND=host`) the very same tests run on the real kernel, against
//! the edu and nvme devices the rig's init bound to vfio-pci.

#![allow(dead_code)] // each test binary uses a different part

use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};
use vmsi::seam::{Host, Kernel, Sim, SimConfig, SimDevice};

/// The machine a test runs against.
pub struct Env {
    pub kernel: Arc<dyn Kernel>,
    /// The Sim behind `kernel`, when it is one (for counters and fault injection).
    pub sim: Option<Arc<Sim>>,
    /// QEMU `edu`: MSI, one vector.
    pub edu: PathBuf,
    /// QEMU `nvme` devices: MSI-X, 65 vectors each.
    pub nvme: Vec<PathBuf>,
    /// Whether a vIOMMU can be allocated (ACPI with the CANWBS IORT).
    pub nested: bool,
}

const EDU: (&str, &str) = ("0x1234", "0x11e8");
const NVME: (&str, &str) = ("0x1b36", "0x0010");

pub fn on_host() -> bool {
    std::env::var("VMSI_BACKEND").as_deref() == Ok("host")
}

/// The rig's firmware mode: `dt` or `acpi-canwbs`.
pub fn rig_mode() -> String {
    std::env::var("VMSI_RIG_MODE").unwrap_or_else(|_| "dt".into())
}

/// PCI devices bound to vfio-pci with the given vendor and device ids, in BDF order.
fn host_devices(id: (&str, &str)) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/bus/pci/devices") else {
        return found;
    };
    let mut bdfs: Vec<String> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    bdfs.sort();
    for bdf in bdfs {
        let read = |f: &str| {
            std::fs::read_to_string(format!("/sys/bus/pci/devices/{bdf}/{f}")).unwrap_or_default()
        };
        if read("vendor").trim() == id.0 && read("device").trim() == id.1 {
            if let Ok(p) = vmsi::Device::cdev_path(&bdf) {
                found.push(p);
            }
        }
    }
    found
}

/// The environment for this test process, with a Sim in the default (device-tree) shape.
pub fn env() -> Env {
    if on_host() {
        let edu = host_devices(EDU)
            .into_iter()
            .next()
            .expect("the rig has an edu device bound to vfio-pci");
        let nvme = host_devices(NVME);
        assert!(
            nvme.len() >= 2,
            "the rig has two nvme devices bound to vfio-pci"
        );
        Env {
            kernel: Arc::new(Host),
            sim: None,
            edu,
            nvme,
            nested: rig_mode() == "acpi-canwbs",
        }
    } else {
        sim_env(SimConfig::default())
    }
}

/// A Sim-backed environment: the rig's devices on `config`'s machine.
pub fn sim_env(config: SimConfig) -> Env {
    let edu = PathBuf::from("/dev/vfio/devices/vfio0");
    let nvme = vec![
        PathBuf::from("/dev/vfio/devices/vfio1"),
        PathBuf::from("/dev/vfio/devices/vfio2"),
    ];
    let nested = config.canwbs;
    let config = SimConfig {
        devices: vec![
            SimDevice::edu(&edu),
            SimDevice::nvme(&nvme[0], 65),
            SimDevice::nvme(&nvme[1], 65),
        ],
        ..config
    };
    let sim = Sim::new(config);
    Env {
        kernel: sim.clone(),
        sim: Some(sim),
        edu,
        nvme,
        nested,
    }
}

/// Environments to run a nested-path test in: on the rig, the rig's own; on Sim, both the
/// device-tree shape (no vIOMMU) and the CANWBS shape.
pub fn nested_envs() -> Vec<Env> {
    if on_host() {
        vec![env()]
    } else {
        vec![sim_env(SimConfig::default()), sim_env(SimConfig::nested())]
    }
}

/// The environment of a test that drives the rig's real devices (edu's DMA engine, nvme
/// queues): outside the rig it fails, loudly, instead of passing without testing.
pub fn rig() -> Env {
    assert!(
        on_host(),
        "this test drives real devices: run it in the rig (tests/rig/run.sh)"
    );
    env()
}

/// Opens the cdev at `path` and binds it to `fd`.
pub fn open_bound(e: &Env, fd: &vmsi::Iommufd, path: &std::path::Path) -> vmsi::Device {
    let d = vmsi::Device::open(e.kernel.clone(), path).expect("open cdev");
    d.bind(fd).expect("bind");
    d
}

/// A non-blocking eventfd.
pub fn eventfd() -> EventFd {
    EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC).expect("eventfd")
}

/// Reads and clears an eventfd's counter; 0 when it has not fired.
pub fn drain(fd: &EventFd) -> u64 {
    let mut b = [0u8; 8];
    match nix::unistd::read(fd.as_fd(), &mut b) {
        Ok(8) => u64::from_ne_bytes(b),
        _ => 0,
    }
}

/// Waits (bounded, for the rig's slow TCG) until an eventfd fires; returns its count.
pub fn wait_fired(fd: &EventFd) -> u64 {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut fds, PollTimeout::from(2000u16));
    drain(fd)
}

pub fn borrowed(fds: &[EventFd]) -> Vec<Option<BorrowedFd<'_>>> {
    fds.iter().map(|f| Some(f.as_fd())).collect()
}
