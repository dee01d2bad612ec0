//! Trap emulation: guest accesses to the MSI-X table and PBA (MMIO) and to the MSI-X and MSI
//! capabilities (config space) become table updates.
//!
//! Rules (PCI Local Bus 3.0 §6.8 and the ways guests really behave):
//! * MSI-X table and PBA: aligned 4- or 8-byte accesses only; anything else is
//!   [`Error::BadAccess`] and changes nothing.
//! * Writes to a masked entry only change what the guest reads back; the message takes
//!   effect when the entry is unmasked (the coalescing point: Linux masks, writes address,
//!   data, then unmasks). An 8-byte write is one update.
//! * Writes to an unmasked entry take effect at once (the spec calls that undefined; doing
//!   it at once is what a device would do). A message that does not compose is refused.
//! * Interrupts that arrive while a vector or the function is masked set the pending bit
//!   and are delivered on unmask: never lost.
//! * The PBA is read-only.

use super::table::{MsiRegs, State};
use super::{Effect, GuestMessage, IrqIndex, VectorTable};
use crate::error::{Error, Result};

/// Length of the MSI capability this module emulates (64-bit address and per-vector
/// masking: id, next, control, address low/high, data, reserved, mask, pending).
pub const MSI_CAP_LEN: usize = 24;

/// Which MSI-X structure a guest MMIO access hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsixRegion {
    /// The vector table (16 bytes per vector).
    Table,
    /// The pending-bit array (one bit per vector, in 64-bit words).
    Pba,
}

/// MSI-X Message Control: MSI-X Enable.
pub const MSIX_CONTROL_ENABLE: u16 = 1 << 15;
/// MSI-X Message Control: Function Mask.
pub const MSIX_CONTROL_FUNCTION_MASK: u16 = 1 << 14;
const CTRL_ENABLE: u16 = MSIX_CONTROL_ENABLE;
const CTRL_FUNCTION_MASK: u16 = MSIX_CONTROL_FUNCTION_MASK;
const ENTRY_MASK_BIT: u32 = 1;

fn sized(offset: u64, size: u8, len: u64) -> Result<()> {
    let ok = (size == 4 || size == 8)
        && offset % size as u64 == 0
        && offset.checked_add(size as u64).is_some_and(|e| e <= len);
    if ok {
        Ok(())
    } else {
        Err(Error::BadAccess { offset, size })
    }
}

impl VectorTable {
    fn require(&self, index: IrqIndex, offset: u64, size: u8) -> Result<()> {
        if self.index() == index {
            Ok(())
        } else {
            Err(Error::BadAccess { offset, size })
        }
    }

    /// Bytes of the MSI-X table.
    pub fn msix_table_len(&self) -> u64 {
        16 * self.len() as u64
    }

    /// Bytes of the MSI-X PBA.
    pub fn msix_pba_len(&self) -> u64 {
        8 * self.len().div_ceil(64) as u64
    }

    /// A guest read of `size` bytes at `offset` in the MSI-X table or PBA.
    pub fn msix_read(&self, region: MsixRegion, offset: u64, size: u8) -> Result<u64> {
        self.require(IrqIndex::Msix, offset, size)?;
        let s = self.lock();
        let dword = |k: u64| -> u32 {
            match region {
                MsixRegion::Table => s.slots[(k / 4) as usize].raw[(k % 4) as usize],
                MsixRegion::Pba => {
                    let first = (k * 32) as usize;
                    (0..32)
                        .filter(|b| first + b < s.pending.len() && s.pending[first + b])
                        .fold(0, |w, b| w | 1 << b)
                }
            }
        };
        let len = match region {
            MsixRegion::Table => self.msix_table_len(),
            MsixRegion::Pba => self.msix_pba_len(),
        };
        sized(offset, size, len)?;
        let k = offset / 4;
        Ok(if size == 4 {
            dword(k) as u64
        } else {
            dword(k) as u64 | ((dword(k + 1) as u64) << 32)
        })
    }

    /// A guest write of `size` bytes of `value` at `offset` in the MSI-X table or PBA.
    pub fn msix_write(
        &self,
        region: MsixRegion,
        offset: u64,
        size: u8,
        value: u64,
    ) -> Result<Effect> {
        self.require(IrqIndex::Msix, offset, size)?;
        if region == MsixRegion::Pba {
            // Read-only: refuse, so that a guest bug shows up instead of vanishing.
            return Err(Error::BadAccess { offset, size });
        }
        sized(offset, size, self.msix_table_len())?;
        let v = (offset / 16) as usize;
        let word = ((offset % 16) / 4) as usize;
        let mut s = self.lock();
        let mut raw = s.slots[v].raw;
        raw[word] = value as u32;
        if size == 8 {
            raw[word + 1] = (value >> 32) as u32;
        }
        write_entry(&mut s, v, raw)
    }

    /// The MSI-X capability's Message Control as the guest reads it.
    pub fn msix_control(&self) -> u16 {
        let s = self.lock();
        let mut c = (self.len() - 1) as u16;
        if s.index_enabled {
            c |= CTRL_ENABLE;
        }
        if s.function_masked {
            c |= CTRL_FUNCTION_MASK;
        }
        c
    }

    /// A guest write of the MSI-X capability's Message Control (Enable, Function Mask; the
    /// table size is read-only).
    pub fn msix_control_write(&self, value: u16) -> Result<Effect> {
        self.require(IrqIndex::Msix, 2, 2)?;
        let mut s = self.lock();
        set_open(
            &mut s,
            value & CTRL_ENABLE != 0,
            value & CTRL_FUNCTION_MASK != 0,
        )
    }

    /// A guest read of `size` (1, 2 or 4) bytes at `offset` inside the MSI capability.
    pub fn msi_config_read(&self, offset: u64, size: u8) -> Result<u32> {
        self.require(IrqIndex::Msi, offset, size)?;
        config_sized(offset, size)?;
        let s = self.lock();
        let m = s.msi.as_ref().ok_or(Error::BadAccess { offset, size })?;
        let mut bytes = m.bytes;
        // The pending bits live in the table's bitmap.
        let pending = (0..self.len() as usize)
            .filter(|&v| s.pending[v])
            .fold(0u32, |w, v| w | 1 << v);
        bytes[0x14..0x18].copy_from_slice(&pending.to_le_bytes());
        let o = offset as usize;
        Ok((0..size as usize).fold(0, |w, k| w | (bytes[o + k] as u32) << (8 * k)))
    }

    /// A guest write of `size` (1, 2 or 4) bytes at `offset` inside the MSI capability.
    pub fn msi_config_write(&self, offset: u64, size: u8, value: u32) -> Result<Effect> {
        self.require(IrqIndex::Msi, offset, size)?;
        config_sized(offset, size)?;
        let mut s = self.lock();
        let mut regs = *s.msi.as_ref().ok_or(Error::BadAccess { offset, size })?;
        let old = regs;
        let o = offset as usize;
        for k in 0..size as usize {
            let at = o + k;
            let byte = (value >> (8 * k)) as u8;
            match at {
                // id, next pointer, reserved, pending bits: read-only.
                0 | 1 | 0x0e | 0x0f | 0x14..=0x17 => {}
                // Message Control low byte: only Enable (bit 0) and MME (bits 6:4).
                2 => regs.bytes[2] = (regs.bytes[2] & !0x71) | (byte & 0x71),
                // Message Control high byte: read-only capability bits.
                3 => {}
                _ => regs.bytes[at] = byte,
            }
        }
        let ctrl = u16::from_le_bytes([regs.bytes[2], regs.bytes[3]]);
        let mmc = (ctrl >> 1) & 7;
        let mme = (ctrl >> 4) & 7;
        if mme > mmc {
            // More vectors than the device has: refuse rather than guess.
            return Err(Error::BadAccess { offset, size });
        }
        apply_msi(&mut s, regs, old)
    }
}

fn config_sized(offset: u64, size: u8) -> Result<()> {
    let ok = matches!(size, 1 | 2 | 4)
        && offset % size as u64 == 0
        && offset
            .checked_add(size as u64)
            .is_some_and(|e| e <= MSI_CAP_LEN as u64);
    if ok {
        Ok(())
    } else {
        Err(Error::BadAccess { offset, size })
    }
}

/// Puts an MSI-X entry's new words in force. Masked or not: the guest reads back what it
/// wrote; an unmasked entry (or one being unmasked) is composed, and if that fails nothing
/// changes.
fn write_entry(s: &mut State, v: usize, raw: [u32; 4]) -> Result<Effect> {
    let was_masked = s.masked[v];
    let masked = raw[3] & ENTRY_MASK_BIT != 0;
    let old = s.slots[v].raw;
    if masked {
        s.slots[v].raw = raw;
        s.masked.set(v, true);
        return Ok(if was_masked {
            Effect::None
        } else {
            Effect::Masked { vector: v as u32 }
        });
    }
    let guest = GuestMessage {
        address: raw[0] as u64 | ((raw[1] as u64) << 32),
        data: raw[2],
    };
    let message_same = old[..3] == raw[..3];
    if !was_masked && message_same && s.enabled[v] {
        // Only reserved control bits changed (or an identical rewrite): nothing to do.
        s.slots[v].raw = raw;
        return Ok(Effect::None);
    }
    s.masked.set(v, false);
    match s.apply(v as u32, guest) {
        Ok(effect) => {
            s.slots[v].raw = raw;
            Ok(effect)
        }
        Err(e) => {
            s.masked.set(v, was_masked);
            Err(e)
        }
    }
}

/// MSI-X Enable / Function Mask changes.
fn set_open(s: &mut State, enable: bool, function_mask: bool) -> Result<Effect> {
    let was_open = s.index_enabled && !s.function_masked;
    s.index_enabled = enable;
    s.function_masked = function_mask;
    let open = enable && !function_mask;
    Ok(match (was_open, open) {
        (false, true) => Effect::Opened {
            pending: s.deliverable_pending(),
        },
        (true, false) => Effect::Closed,
        _ => Effect::None,
    })
}

impl MsiRegs {
    fn ctrl(&self) -> u16 {
        u16::from_le_bytes([self.bytes[2], self.bytes[3]])
    }

    /// Vectors the guest enabled (2^MME).
    fn enabled_vectors(&self) -> u32 {
        1 << ((self.ctrl() >> 4) & 7)
    }

    fn mask_bits(&self) -> u32 {
        u32::from_le_bytes([
            self.bytes[0x10],
            self.bytes[0x11],
            self.bytes[0x12],
            self.bytes[0x13],
        ])
    }

    /// The message of `vector`: the shared address, and the data with its low bits
    /// replaced by the vector number (PCI MSI multiple messages).
    pub(super) fn message(&self, vector: u32) -> GuestMessage {
        let b = &self.bytes;
        let lo = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as u64;
        let hi = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as u64;
        let data = u16::from_le_bytes([b[0x0c], b[0x0d]]) as u32;
        let n = self.enabled_vectors();
        GuestMessage {
            address: lo | (hi << 32),
            data: (data & !(n - 1)) | (vector & (n - 1)),
        }
    }
}

/// Puts new MSI registers in force (enable, masks, message), all or nothing.
fn apply_msi(s: &mut State, regs: MsiRegs, old: MsiRegs) -> Result<Effect> {
    let enable = regs.ctrl() & 1 != 0;
    let was_enabled = s.index_enabled;
    let len = s.slots.len();
    let n = (regs.enabled_vectors() as usize).min(len);
    // Vectors past the enabled count are masked too.
    let masked_now = |v: usize| v >= n || regs.mask_bits() & (1 << v) != 0;
    if enable {
        // Compose every enabled vector first: if any fails, nothing changes.
        for v in 0..n {
            let provided = s.provided[v].then_some(s.slots[v].msi_address);
            s.composer
                .compose(v as u32, regs.message(v as u32), provided)?;
        }
    }
    let message_changed =
        old.message(0) != regs.message(0) || old.enabled_vectors() != regs.enabled_vectors();
    // The usual single-vector MSI gets a precise answer; several vectors changing at once
    // are reported as one Opened, with pending interrupts left for take_pending.
    let single = n == 1 && len == 1 && was_enabled == enable;
    s.msi = Some(regs);
    s.index_enabled = enable;
    let mut result = Effect::None;
    let mut any = false;
    for v in 0..len {
        let was_masked = s.masked[v];
        s.masked.set(v, masked_now(v));
        s.slots[v].raw[3] = masked_now(v) as u32;
        if was_masked != masked_now(v) {
            any = true;
            if masked_now(v) && single {
                result = Effect::Masked { vector: v as u32 };
            }
        }
        let due = message_changed || !s.enabled[v] || (was_masked && !masked_now(v));
        if enable && v < n && !masked_now(v) && due {
            // Validated above, so this does not fail.
            let e = s.apply_with(v as u32, regs.message(v as u32), single)?;
            any = true;
            if single {
                result = e;
            }
        }
    }
    Ok(match (was_enabled, enable) {
        (false, true) => Effect::Opened {
            pending: s.deliverable_pending(),
        },
        (true, false) => Effect::Closed,
        _ if single => result,
        _ if any => Effect::Opened {
            pending: s.deliverable_pending(),
        },
        _ => Effect::None,
    })
}
