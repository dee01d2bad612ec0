//! PCI facts from sysfs and config space: which device a cdev is, its requester id, and its
//! physical MSI message.

use std::path::{Path, PathBuf};

use vmsi::Device;
use vmsi::pci::{CAP_ID_MSI, MsiCapability, find_capability};

/// PCI_COMMAND and the two bits a device needs to DMA: memory decode and bus mastering.
const COMMAND: u64 = 0x04;
const COMMAND_MEMORY: u16 = 1 << 1;
const COMMAND_MASTER: u16 = 1 << 2;

/// The PCI address (`0000:00:01.0`) of a VFIO cdev (`/dev/vfio/devices/vfioN`), from
/// `/sys/class/vfio-dev/vfioN/device`, a link to the PCI device.
pub fn bdf_of(cdev: &Path) -> std::io::Result<String> {
    let name = cdev
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} has no file name", cdev.display())))?;
    let link = PathBuf::from("/sys/class/vfio-dev")
        .join(name)
        .join("device");
    let target = std::fs::read_link(&link)?;
    target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| std::io::Error::other(format!("{} points nowhere", link.display())))
}

/// The requester id (bus << 8 | device << 3 | function) of `0000:bb:dd.f`: the stream id
/// the SMMU sees, and what a VMM would give the guest as the device's virtual stream id.
pub fn rid(bdf: &str) -> Option<u16> {
    let mut parts = bdf.rsplitn(3, ':');
    let devfn = parts.next()?;
    let bus = u16::from_str_radix(parts.next()?, 16).ok()?;
    let (dev, func) = devfn.split_once('.')?;
    let dev = u16::from_str_radix(dev, 16).ok()?;
    let func = u16::from_str_radix(func, 16).ok()?;
    (bus < 256 && dev < 32 && func < 8).then_some((bus << 8) | (dev << 3) | func)
}

/// The device's config space as the host reads it from the hardware, through sysfs. Unlike
/// VFIO's view, which virtualizes the MSI message fields, this shows what the kernel
/// actually programmed.
pub fn physical_config(bdf: &str) -> std::io::Result<Vec<u8>> {
    std::fs::read(format!("/sys/bus/pci/devices/{bdf}/config"))
}

/// An MSI capability's message and enable bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiMessage {
    /// MSI Enable (control bit 0).
    pub enabled: bool,
    /// Message address (both halves when the capability is 64-bit).
    pub address: u64,
    /// Message data.
    pub data: u16,
}

/// Decodes the MSI capability in `config` (at least 256 bytes); `None` without one.
pub fn msi_message(config: &[u8]) -> Option<MsiMessage> {
    let cap = MsiCapability::parse(config)?;
    let at = find_capability(config, CAP_ID_MSI)?;
    let u16_at = |k: usize| Some(u16::from_le_bytes([*config.get(k)?, *config.get(k + 1)?]));
    let u32_at = |k: usize| Some(u32::from_le_bytes(config.get(k..k + 4)?.try_into().ok()?));
    let enabled = u16_at(at + 2)? & 1 != 0;
    let lo = u32_at(at + 4)? as u64;
    let (address, data) = if cap.addr64 {
        (lo | (u32_at(at + 8)? as u64) << 32, u16_at(at + 12)?)
    } else {
        (lo, u16_at(at + 8)?)
    };
    Some(MsiMessage {
        enabled,
        address,
        data,
    })
}

/// Turns on memory decoding and bus mastering through VFIO's config space. VFIO clears bus
/// mastering whenever the device is opened or closed; without it the device's DMA, and its
/// MSI writes (which are DMA too), go nowhere.
pub fn enable_bus_master(device: &Device) -> vmsi::Result<()> {
    let mut b = [0u8; 2];
    device.read_config(COMMAND, &mut b)?;
    let cmd = u16::from_le_bytes(b) | COMMAND_MEMORY | COMMAND_MASTER;
    device.write_config(COMMAND, &cmd.to_le_bytes())
}
