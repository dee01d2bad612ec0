//! PCI config space: finding a device's MSI and MSI-X capabilities.
//!
//! Config space comes from the device (through VFIO, which passes these capability fields
//! through unchanged) and is parsed defensively: a malformed capability list gives `None`,
//! never a panic or an endless walk.

use crate::error::Result;
use crate::objects::Device;

/// PCI capability id of MSI.
pub const CAP_ID_MSI: u8 = 0x05;
/// PCI capability id of MSI-X.
pub const CAP_ID_MSIX: u8 = 0x11;

/// Walks the capability list in `config` (at least the first 256 bytes of config space)
/// and returns the offset of the first capability with id `id`.
pub fn find_capability(config: &[u8], id: u8) -> Option<usize> {
    const STATUS_CAP_LIST: u8 = 0x10;
    if config.len() < 256 || config[6] & STATUS_CAP_LIST == 0 {
        return None;
    }
    let mut at = (config[0x34] & 0xfc) as usize;
    // At most 48 capabilities fit in 256 bytes past the header: bound the walk.
    for _ in 0..48 {
        if at < 0x40 || at + 2 > 256 {
            return None;
        }
        if config[at] == id {
            return Some(at);
        }
        at = (config[at + 1] & 0xfc) as usize;
    }
    None
}

/// The MSI-X capability: where the table and the pending-bit array live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixCapability {
    /// Offset of the capability in config space.
    pub offset: usize,
    /// Table size in vectors.
    pub vectors: u32,
    /// BAR holding the table.
    pub table_bar: u32,
    /// Table offset in that BAR.
    pub table_offset: u64,
    /// BAR holding the PBA.
    pub pba_bar: u32,
    /// PBA offset in that BAR.
    pub pba_offset: u64,
}

impl MsixCapability {
    /// Parses the MSI-X capability out of config space bytes.
    pub fn parse(config: &[u8]) -> Option<Self> {
        let at = find_capability(config, CAP_ID_MSIX)?;
        let u16_at = |k: usize| u16::from_le_bytes([config[k], config[k + 1]]);
        let u32_at =
            |k: usize| u32::from_le_bytes([config[k], config[k + 1], config[k + 2], config[k + 3]]);
        if at + 12 > config.len() {
            return None;
        }
        let table = u32_at(at + 4);
        let pba = u32_at(at + 8);
        Some(MsixCapability {
            offset: at,
            vectors: (u16_at(at + 2) & 0x7ff) as u32 + 1,
            table_bar: table & 7,
            table_offset: (table & !7) as u64,
            pba_bar: pba & 7,
            pba_offset: (pba & !7) as u64,
        })
    }

    /// Reads config space through VFIO and parses the MSI-X capability; `None` if the
    /// device has none.
    pub fn read(device: &Device) -> Result<Option<Self>> {
        let mut config = [0u8; 256];
        device.read_config(0, &mut config)?;
        Ok(Self::parse(&config))
    }
}

/// The MSI capability's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsiCapability {
    /// Offset of the capability in config space.
    pub offset: usize,
    /// Vectors the device can request (Multiple Message Capable, decoded).
    pub vectors: u32,
    /// 64-bit message addresses.
    pub addr64: bool,
    /// Per-vector masking.
    pub maskable: bool,
}

impl MsiCapability {
    /// Parses the MSI capability out of config space bytes.
    pub fn parse(config: &[u8]) -> Option<Self> {
        let at = find_capability(config, CAP_ID_MSI)?;
        let ctrl = u16::from_le_bytes([config[at + 2], config[at + 3]]);
        Some(MsiCapability {
            offset: at,
            vectors: 1 << ((ctrl >> 1) & 0x7).min(5),
            addr64: ctrl & (1 << 7) != 0,
            maskable: ctrl & (1 << 8) != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_looping_or_short_capability_list_ends() {
        let mut c = [0u8; 256];
        c[6] = 0x10;
        c[0x34] = 0x40;
        c[0x40] = 0x09;
        c[0x41] = 0x40; // points at itself
        assert_eq!(find_capability(&c, CAP_ID_MSIX), None);
        c[0x41] = 0xfe; // past the end
        assert_eq!(find_capability(&c, CAP_ID_MSIX), None);
        assert_eq!(find_capability(&c[..64], CAP_ID_MSIX), None);
    }

    #[test]
    fn parses_an_msix_capability() {
        let mut c = [0u8; 256];
        c[6] = 0x10;
        c[0x34] = 0x40;
        c[0x40..0x44].copy_from_slice(&[0x05, 0x50, 0x80, 0x00]);
        c[0x50..0x5c].copy_from_slice(&[0x11, 0, 64, 0, 0x00, 0x20, 0, 0, 0x00, 0x30, 0, 0]);
        let m = MsixCapability::parse(&c).expect("msix");
        assert_eq!(
            (
                m.offset,
                m.vectors,
                m.table_bar,
                m.table_offset,
                m.pba_offset
            ),
            (0x50, 65, 0, 0x2000, 0x3000)
        );
        let msi = MsiCapability::parse(&c).expect("msi");
        assert_eq!((msi.vectors, msi.addr64, msi.maskable), (1, true, false));
    }
}
