//! The guest's SMMUv3 stage 1, built in guest RAM the way a guest's SMMU driver builds it:
//! one Context Descriptor and AArch64 4 KiB-granule page tables (39-bit input, three
//! levels). The SMMU finds them at their GPA through the VM's stage 2.
//!
//! A small copy of the tests' builder (`tests/support/s1.rs`), with the values the rig's
//! QEMU SMMU walks: T0SZ 25, write-back walks, inner shareable, 40-bit IPS, MAIR attr0 =
//! normal write-back, attr1 = Device-nGnRnE.

use vmsi::Ste;

use super::guest::GuestRam;

const PAGE: u64 = 4096;
const VA_BITS: u32 = 39;
const VALID: u64 = 1;
const TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_INDEX_SHIFT: u64 = 2;
const AP_RW_ANY_EL: u64 = 1 << 6;
const SH_INNER: u64 = 3 << 8;
const AF: u64 = 1 << 10;
// Non-global: the entries belong to the CD's ASID, so TLBI by ASID covers them.
const NG: u64 = 1 << 11;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
/// SMMUv3 commands a guest sends after changing a context: TLBI_NH_ASID and CFGI_CD.
const CMD_TLBI_NH_ASID: u64 = 0x11;
const CMD_CFGI_CD: u64 = 0x05;

/// Memory type of a mapping (an index into the CD's MAIR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attr {
    /// Normal write-back memory: DMA buffers.
    Normal,
    /// Device-nGnRnE: what a guest maps an MSI doorbell as.
    Device,
}

/// A stage-1 context in guest RAM: page 0 of its area holds the CD, page 1 the level-1
/// table; later pages become level-2 and level-3 tables as mappings need them.
pub struct Stage1 {
    /// GPA of the area (and of the CD).
    base: u64,
    pages: u64,
    asid: u16,
    next_table: u64,
}

impl Stage1 {
    /// Writes a valid CD with `asid` and an empty level-1 table into the `pages` pages of
    /// guest RAM at `base`: everything faults until mapped.
    pub fn new(ram: &GuestRam, base: u64, pages: u64, asid: u16) -> vmsi::Result<Self> {
        if base % PAGE != 0 || pages < 2 {
            return Err(vmsi::Error::InvalidArgument(
                "stage-1 tables need two aligned pages",
            ));
        }
        ram.zero(base, (pages * PAGE) as usize)?;
        let s1 = Stage1 {
            base,
            pages,
            asid,
            next_table: 2,
        };
        for (k, word) in s1.cd_words().iter().enumerate() {
            ram.write_u64(base + 8 * k as u64, *word)?;
        }
        Ok(s1)
    }

    /// The eight words of the Context Descriptor.
    fn cd_words(&self) -> [u64; 8] {
        let t0sz = 64 - VA_BITS as u64;
        // TG0 (bits 7:6) stays 0: 4 KiB granule.
        let word0 = t0sz
            | (1 << 8) // IR0: write-back, read/write-allocate
            | (1 << 10) // OR0: likewise
            | (3 << 12) // SH0: inner shareable
            | (1 << 30) // EPD1: no TTB1 walks
            | (1 << 31) // V
            | (2 << 32) // IPS: 40-bit
            | (1 << 41) // AA64
            | (1 << 45) // R: record faults
            | (1 << 46) // A: abort (not stall) on faults
            | (1 << 47) // ASET: the ASID is not shared with a CPU
            | ((self.asid as u64) << 48);
        let ttb0 = (self.base + PAGE) & 0x000f_ffff_ffff_fff0;
        // MAIR: attr0 = 0xff (normal write-back), attr1 = 0x00 (Device-nGnRnE).
        [word0, ttb0, 0, 0x00ff, 0, 0, 0, 0]
    }

    /// GPA of the CD table.
    pub fn cd_table(&self) -> u64 {
        self.base
    }

    /// The guest STE for the device: stage 1 through this one CD.
    pub fn ste(&self) -> vmsi::Result<Ste> {
        Ste::s1(self.base, 0).ok_or(vmsi::Error::InvalidArgument(
            "the CD table is not 64-byte aligned",
        ))
    }

    /// The commands the guest sends after changing this context, for the device at
    /// virtual stream id `vsid`: TLBI_NH_ASID, then CFGI_CD (leaf).
    pub fn invalidation(&self, vsid: u32) -> [[u64; 2]; 2] {
        [
            [CMD_TLBI_NH_ASID | ((self.asid as u64) << 48), 0],
            [CMD_CFGI_CD | ((vsid as u64) << 32), 1],
        ]
    }

    fn index(va: u64, level: u32) -> u64 {
        (va >> (12 + 9 * (3 - level))) & 511
    }

    fn owns(&self, gpa: u64) -> bool {
        gpa >= self.base && gpa < self.base + self.pages * PAGE
    }

    /// The table the entry at `entry` points to, made (zeroed) if the entry is empty.
    fn next_table(&mut self, ram: &GuestRam, entry: u64) -> vmsi::Result<u64> {
        let desc = ram.read_u64(entry)?;
        if desc & VALID != 0 {
            return Ok(desc & ADDR_MASK);
        }
        if self.next_table >= self.pages {
            return Err(vmsi::Error::InvalidArgument("out of stage-1 table pages"));
        }
        let table = self.base + self.next_table * PAGE;
        self.next_table += 1;
        ram.zero(table, PAGE as usize)?;
        ram.write_u64(entry, table | TABLE_OR_PAGE | VALID)?;
        Ok(table)
    }

    fn check_va(va: u64) -> vmsi::Result<()> {
        if va % PAGE != 0 || va >> VA_BITS != 0 {
            return Err(vmsi::Error::InvalidArgument(
                "stage-1 VA unaligned or past 39 bits",
            ));
        }
        Ok(())
    }

    /// GPA of the level-3 entry for `va`, making the tables on the way.
    fn make_leaf(&mut self, ram: &GuestRam, va: u64) -> vmsi::Result<u64> {
        Self::check_va(va)?;
        let mut table = self.base + PAGE;
        for level in 1..3 {
            table = self.next_table(ram, table + 8 * Self::index(va, level))?;
        }
        Ok(table + 8 * Self::index(va, 3))
    }

    /// GPA of the level-3 entry for `va`, if the tables on the way exist.
    fn find_leaf(&self, ram: &GuestRam, va: u64) -> vmsi::Result<Option<u64>> {
        Self::check_va(va)?;
        let mut table = self.base + PAGE;
        for level in 1..3 {
            let desc = ram.read_u64(table + 8 * Self::index(va, level))?;
            if desc & VALID == 0 || !self.owns(desc & ADDR_MASK) {
                return Ok(None);
            }
            table = desc & ADDR_MASK;
        }
        Ok(Some(table + 8 * Self::index(va, 3)))
    }

    /// Maps `len` bytes from `va` onto `ipa`, page by page, readable and writable.
    pub fn map(
        &mut self,
        ram: &GuestRam,
        va: u64,
        ipa: u64,
        len: u64,
        attr: Attr,
    ) -> vmsi::Result<()> {
        let index = match attr {
            Attr::Normal => 0,
            Attr::Device => 1,
        };
        for page in (0..len).step_by(PAGE as usize) {
            let leaf = self.make_leaf(ram, va + page)?;
            let desc = ((ipa + page) & ADDR_MASK)
                | (index << ATTR_INDEX_SHIFT)
                | AP_RW_ANY_EL
                | SH_INNER
                | AF
                | NG
                | TABLE_OR_PAGE
                | VALID;
            ram.write_u64(leaf, desc)?;
        }
        Ok(())
    }

    /// Walks the tables in software: the IPA `va` translates to, if mapped. What the SMMU
    /// finds, for the launcher's report.
    pub fn translate(&self, ram: &GuestRam, va: u64) -> vmsi::Result<Option<u64>> {
        let Some(leaf) = self.find_leaf(ram, va & !(PAGE - 1))? else {
            return Ok(None);
        };
        let desc = ram.read_u64(leaf)?;
        Ok((desc & VALID != 0).then_some((desc & ADDR_MASK) | (va & (PAGE - 1))))
    }
}
