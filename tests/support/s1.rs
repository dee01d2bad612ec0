//! A guest's SMMUv3 stage 1, built the way a guest driver builds it: one Context Descriptor
//! and AArch64 4 KiB-granule page tables (39-bit VA, three levels), all in memory mapped in
//! the IOAS at a known IPA, so the SMMU finds them through the nest parent's stage 2.
//!
//! The values follow the team's reference probe (shared/rig/probe.c), which the rig's
//! QEMU SMMU walks successfully: T0SZ 25, write-back walks, inner shareable, 40-bit IPS,
//! MAIR attr0 = normal write-back, attr1 = Device-nGnRnE.

use vmsi::{DmaMemory, Ioas, Prot, Ste};

const PAGE: u64 = 4096;
/// Page 0 holds the CD table, page 1 the level-1 table; the rest are handed out as level-2
/// and level-3 tables as mappings need them.
const L1_PAGE: usize = 1;
const VA_BITS: u32 = 39;

// Descriptor bits.
const VALID: u64 = 1;
const TABLE_OR_PAGE: u64 = 1 << 1;
const ATTR_INDEX_SHIFT: u64 = 2;
const AP_RW_ANY_EL: u64 = 1 << 6;
const SH_INNER: u64 = 3 << 8;
const AF: u64 = 1 << 10;
// Non-global: the entries belong to the CD's ASID, so TLBI by ASID covers them.
const NG: u64 = 1 << 11;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

/// SMMUv3 command opcodes a guest sends after changing its tables.
pub const CMD_TLBI_NH_ASID: u64 = 0x11;
/// Invalidate the cached CD of a stream.
pub const CMD_CFGI_CD: u64 = 0x05;

/// Memory type of a mapping, an index into the CD's MAIR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attr {
    /// Normal memory, write-back (MAIR attr0 = 0xff).
    Normal,
    /// Device-nGnRnE (MAIR attr1 = 0x00): what a guest maps an MSI doorbell as.
    Device,
}

/// Why a stage-1 change was refused.
#[derive(Debug)]
pub enum S1Error {
    /// Mapping the tables into the IOAS, or touching their memory, failed.
    Vmsi(vmsi::Error),
    /// A VA or IPA that is not page aligned.
    Unaligned(u64),
    /// A VA past the 39-bit input range of the CD.
    VaTooLarge(u64),
    /// The memory given for tables is used up.
    OutOfTables,
}

impl From<vmsi::Error> for S1Error {
    fn from(e: vmsi::Error) -> Self {
        S1Error::Vmsi(e)
    }
}

/// A stage-1 context (CD + page tables) in IOAS memory.
pub struct Stage1 {
    mem: DmaMemory,
    ipa: u64,
    asid: u16,
    next_table: usize,
}

impl Stage1 {
    /// Allocates `pages` pages (at least 2) for the CD and the tables, maps them in `ioas`
    /// at `ipa`, and writes a valid CD with `asid` and an empty level-1 table: everything
    /// faults until mapped.
    pub fn new(ioas: &Ioas, ipa: u64, pages: usize, asid: u16) -> Result<Self, S1Error> {
        if ipa % PAGE != 0 {
            return Err(S1Error::Unaligned(ipa));
        }
        if pages < 2 {
            return Err(S1Error::OutOfTables);
        }
        let mem = DmaMemory::new(pages * PAGE as usize)?;
        ioas.map_memory(&mem, 0, mem.len() as u64, Some(ipa), Prot::ReadWrite)?;
        let s1 = Stage1 {
            mem,
            ipa,
            asid,
            next_table: L1_PAGE + 1,
        };
        let cd = s1.cd_words();
        for (k, w) in cd.iter().enumerate() {
            s1.mem.write_u64(8 * k, *w)?;
        }
        Ok(s1)
    }

    /// The eight words of the Context Descriptor.
    pub fn cd_words(&self) -> [u64; 8] {
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
        let ttb0 = self.table_ipa(L1_PAGE) & 0x000f_ffff_ffff_fff0;
        // MAIR: attr0 = 0xff (normal write-back), attr1 = 0x00 (Device-nGnRnE).
        [word0, ttb0, 0, 0x00ff, 0, 0, 0, 0]
    }

    /// IPA of the CD table, for [`Ste::s1`].
    pub fn cd_table(&self) -> u64 {
        self.ipa
    }

    /// The guest STE for a device using this context (one CD, linear table).
    pub fn ste(&self) -> Ste {
        Ste::s1(self.cd_table(), 0).expect("the CD table is page aligned")
    }

    /// The context's ASID.
    pub fn asid(&self) -> u16 {
        self.asid
    }

    /// Bytes of IPA space the tables occupy from [`Stage1::cd_table`].
    pub fn len(&self) -> u64 {
        self.mem.len() as u64
    }

    /// Always false: there is at least the CD and the level-1 table.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The commands a guest sends after changing this context's tables, for the device
    /// with virtual stream id `vsid`: TLBI_NH_ASID for the ASID, then CFGI_CD (leaf).
    pub fn invalidation(&self, vsid: u64) -> [[u64; 2]; 2] {
        [
            [CMD_TLBI_NH_ASID | ((self.asid as u64) << 48), 0],
            [CMD_CFGI_CD | (vsid << 32), 1],
        ]
    }

    fn table_ipa(&self, page: usize) -> u64 {
        self.ipa + page as u64 * PAGE
    }

    fn table_offset(&self, ipa: u64) -> Option<usize> {
        let off = ipa.checked_sub(self.ipa)?;
        (off < self.len()).then_some(off as usize)
    }

    fn index(va: u64, level: u32) -> usize {
        ((va >> (12 + 9 * (3 - level))) & 511) as usize
    }

    /// The table the entry at byte `entry` points to, made (zeroed) if it is empty.
    fn next_table(&mut self, entry: usize) -> Result<usize, S1Error> {
        let desc = self.mem.read_u64(entry)?;
        if desc & VALID != 0 {
            return self
                .table_offset(desc & ADDR_MASK)
                .ok_or(S1Error::OutOfTables);
        }
        let page = self.next_table;
        if (page + 1) * PAGE as usize > self.mem.len() {
            return Err(S1Error::OutOfTables);
        }
        self.next_table += 1;
        let off = page * PAGE as usize;
        self.mem.write(off, &[0u8; PAGE as usize])?;
        self.mem
            .write_u64(entry, self.table_ipa(page) | TABLE_OR_PAGE | VALID)?;
        Ok(off)
    }

    /// Byte offset of the level-3 entry for `va`, making the tables on the way if `make`.
    fn leaf(&mut self, va: u64, make: bool) -> Result<Option<usize>, S1Error> {
        if va % PAGE != 0 {
            return Err(S1Error::Unaligned(va));
        }
        if va >> VA_BITS != 0 {
            return Err(S1Error::VaTooLarge(va));
        }
        let mut table = L1_PAGE * PAGE as usize;
        for level in 1..3 {
            let entry = table + 8 * Self::index(va, level);
            table = if make {
                self.next_table(entry)?
            } else {
                let desc = self.mem.read_u64(entry)?;
                if desc & VALID == 0 {
                    return Ok(None);
                }
                self.table_offset(desc & ADDR_MASK)
                    .ok_or(S1Error::OutOfTables)?
            };
        }
        Ok(Some(table + 8 * Self::index(va, 3)))
    }

    /// Maps the page at `va` to the page at `ipa`, readable and writable, replacing any
    /// earlier mapping of `va` (the caller invalidates, as a guest must).
    pub fn map(&mut self, va: u64, ipa: u64, attr: Attr) -> Result<(), S1Error> {
        if ipa % PAGE != 0 {
            return Err(S1Error::Unaligned(ipa));
        }
        let index = match attr {
            Attr::Normal => 0,
            Attr::Device => 1,
        };
        let leaf = self.leaf(va, true)?.ok_or(S1Error::OutOfTables)?;
        let desc = (ipa & ADDR_MASK)
            | (index << ATTR_INDEX_SHIFT)
            | AP_RW_ANY_EL
            | SH_INNER
            | AF
            | NG
            | TABLE_OR_PAGE
            | VALID;
        self.mem.write_u64(leaf, desc)?;
        Ok(())
    }

    /// Maps `[start, start + len)` to the same IPAs, page by page.
    pub fn identity(&mut self, start: u64, len: u64, attr: Attr) -> Result<(), S1Error> {
        let mut at = start;
        while at < start + len {
            self.map(at, at, attr)?;
            at += PAGE;
        }
        Ok(())
    }

    /// Removes the mapping of the page at `va`; returns whether there was one.
    pub fn unmap(&mut self, va: u64) -> Result<bool, S1Error> {
        let Some(leaf) = self.leaf(va, false)? else {
            return Ok(false);
        };
        let was = self.mem.read_u64(leaf)? & VALID != 0;
        self.mem.write_u64(leaf, 0)?;
        Ok(was)
    }

    /// Walks the tables in software: the IPA `va` translates to, if mapped. What the SMMU
    /// should find, for checking the builder.
    pub fn translate(&mut self, va: u64) -> Result<Option<u64>, S1Error> {
        let Some(leaf) = self.leaf(va & !(PAGE - 1), false)? else {
            return Ok(None);
        };
        let desc = self.mem.read_u64(leaf)?;
        Ok((desc & VALID != 0).then_some((desc & ADDR_MASK) | (va & (PAGE - 1))))
    }

    /// The raw level-3 descriptor for `va` (0 if none), for checking the encoding.
    pub fn descriptor(&mut self, va: u64) -> Result<u64, S1Error> {
        match self.leaf(va & !(PAGE - 1), false)? {
            Some(leaf) => Ok(self.mem.read_u64(leaf)?),
            None => Ok(0),
        }
    }
}
