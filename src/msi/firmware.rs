//! Where the GICv3 ITS doorbells are, and where the kernel's software MSI window is.
//!
//! * [`parse_fdt_its`]: the ITSes a flattened device tree (`/sys/firmware/fdt`) describes, with
//!   each one's physical base translated the way the kernel's OF code translates it.
//! * [`parse_madt_its`]: the GIC ITS structures of the ACPI MADT
//!   (`/sys/firmware/acpi/tables/APIC`).
//! * [`discover_its`]: reads whichever of the two the running kernel booted from.
//! * [`parse_reserved_regions`] and [`msi_window`]: an IOMMU group's `reserved_regions`, and
//!   the `msi` region in it (the SMMUv3 software MSI window, 0x8000000..=0x80fffff).
//! * [`iova_holes`]: the gaps between an IOAS's usable IOVA ranges, where the MSI window shows
//!   up once a device is attached.
//! * [`doorbell_page`]: the page that holds a doorbell, and the doorbell's offset inside it
//!   (the host's page size is `vmsi::seam::page_size()`).
//!
//! The parsers are pure functions over bytes or text, so they can be fuzzed. Firmware and
//! sysfs contents are treated as hostile: every read is bounds-checked, every loop advances
//! through its input or is capped, and a malformed input gets a [`FirmwareError`] that says
//! where, never a panic.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::{Error, IovaRange, Result};

/// Offset of the ITS doorbell register, `GITS_TRANSLATER`, from the ITS base.
pub const GITS_TRANSLATER: u64 = 0x10040;

/// The compatible string of a GICv3 ITS device tree node.
const ITS_COMPATIBLE: &[u8] = b"arm,gic-v3-its";

/// Where the kernel exposes the device tree it booted from.
const FDT_PATH: &str = "sys/firmware/fdt";
/// Where the kernel exposes the ACPI MADT; present only when the kernel runs on ACPI.
const MADT_PATH: &str = "sys/firmware/acpi/tables/APIC";

/// One GICv3 ITS: its physical base and doorbell, and the firmware entry that described it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ItsInfo {
    /// Physical base address of the ITS (its control frame).
    pub base: u64,
    /// Physical address of its `GITS_TRANSLATER`: `base + 0x10040`.
    pub doorbell: u64,
    /// The firmware entry it comes from.
    pub source: ItsSource,
}

impl ItsInfo {
    /// `None` when `base` is so high that the doorbell address would not fit in 64 bits.
    fn new(base: u64, source: ItsSource) -> Option<Self> {
        Some(ItsInfo {
            base,
            doorbell: base.checked_add(GITS_TRANSLATER)?,
            source,
        })
    }

    /// The page that holds this ITS's doorbell, for pages of `page_size` bytes.
    pub fn doorbell_page(&self, page_size: u64) -> Result<DoorbellPage> {
        doorbell_page(self.doorbell, page_size)
    }
}

/// The firmware entry an [`ItsInfo`] comes from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ItsSource {
    /// A device tree node.
    DeviceTree {
        /// The node's full path, e.g. `/intc@8000000/its@8080000`.
        path: String,
    },
    /// A GIC ITS structure (type 0x0F) of the ACPI MADT.
    AcpiMadt {
        /// Its GIC ITS ID (the `translation_id` IORT ITS groups refer to).
        its_id: u32,
    },
}

/// A firmware description of the machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Firmware {
    /// The flattened device tree, `/sys/firmware/fdt`.
    DeviceTree,
    /// The ACPI MADT, `/sys/firmware/acpi/tables/APIC`.
    AcpiMadt,
}

/// What [`parse_fdt_its`] found: the ITSes the kernel would use, and the ITS nodes it would not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceTreeIts {
    /// ITSes with a translatable base, in device tree order.
    pub its: Vec<ItsInfo>,
    /// `arm,gic-v3-its` nodes the kernel would ignore, and why.
    pub skipped: Vec<SkippedIts>,
}

/// An `arm,gic-v3-its` node that does not yield an ITS.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SkippedIts {
    /// The node's full path.
    pub path: String,
    /// Why it yields no ITS.
    pub reason: SkipReason,
}

/// Why an `arm,gic-v3-its` node yields no ITS. Each case is one the kernel's ITS probe
/// (`its_of_probe`, `of_address_to_resource`) also gives up on, or one this parser does not
/// translate; the `at` fields name the node where the walk stopped.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// `status` is present and neither `okay` nor `ok`.
    Disabled,
    /// No `msi-controller` property: the kernel ignores such an ITS.
    NoMsiController,
    /// The node is the root, so it sits on no bus.
    IsRoot,
    /// No `reg` property.
    NoReg,
    /// `reg` holds fewer cells than one address and size need.
    RegTooShort {
        /// Cells in `reg`.
        cells: usize,
        /// `#address-cells + #size-cells` of the parent.
        needed: usize,
    },
    /// A bus node on the way to the root has no `#address-cells`, so the kernel matches no
    /// bus type for it and cannot translate addresses below it.
    NotABus {
        /// The node without `#address-cells`.
        at: String,
    },
    /// A bus on the way to the root is a PCI, ISA or 3-cell "default-flags" bus; their address
    /// formats carry flags this parser does not translate.
    UnsupportedBus {
        /// The bus node.
        at: String,
        /// Which kind of bus.
        bus: &'static str,
    },
    /// `#address-cells` outside 1..=4 or `#size-cells` 0 (the kernel's `OF_CHECK_COUNTS`).
    BadCellCount {
        /// The node whose children use these counts.
        at: String,
        /// Its `#address-cells`.
        address_cells: u32,
        /// Its `#size-cells`.
        size_cells: u32,
    },
    /// A bus on the way to the root has no `ranges`: its children's addresses are not CPU
    /// addresses.
    NoRanges {
        /// The bus node.
        at: String,
    },
    /// No entry of a bus's `ranges` covers the address.
    OutsideRanges {
        /// The bus node.
        at: String,
    },
    /// The base is so high that base + 0x10040 does not fit in 64 bits.
    DoorbellOverflow,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Disabled => f.write_str("status is not \"okay\""),
            SkipReason::NoMsiController => f.write_str("no msi-controller property"),
            SkipReason::IsRoot => f.write_str("the node is the root"),
            SkipReason::NoReg => f.write_str("no reg property"),
            SkipReason::RegTooShort { cells, needed } => {
                write!(f, "reg has {cells} cells, one entry needs {needed}")
            }
            SkipReason::NotABus { at } => write!(f, "{at} has no #address-cells"),
            SkipReason::UnsupportedBus { at, bus } => write!(f, "{at} is a {bus} bus"),
            SkipReason::BadCellCount {
                at,
                address_cells,
                size_cells,
            } => write!(
                f,
                "{at} has #address-cells {address_cells}, #size-cells {size_cells}"
            ),
            SkipReason::NoRanges { at } => write!(f, "{at} has no ranges property"),
            SkipReason::OutsideRanges { at } => write!(f, "no ranges entry of {at} covers it"),
            SkipReason::DoorbellOverflow => f.write_str("base + 0x10040 overflows"),
        }
    }
}

/// A malformed firmware table or sysfs file: what is wrong and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FirmwareError {
    /// The device tree blob is malformed.
    #[error("{reason} (byte {offset:#x} of the blob)")]
    DeviceTree {
        /// Byte offset in the blob.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The MADT is malformed.
    #[error("{reason} (byte {offset:#x} of the table)")]
    Madt {
        /// Byte offset in the table.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The MADT's bytes do not sum to 0 modulo 256.
    #[error("ACPI MADT: bad checksum (bytes sum to {sum:#04x}, not 0)")]
    MadtChecksum {
        /// What the bytes sum to.
        sum: u8,
    },
    /// A line of `reserved_regions` is malformed.
    #[error("{reason} (line {line})")]
    ReservedRegions {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// More than one `msi` region: the file cannot tell the software MSI window from
    /// hardware MSI regions.
    #[error("reserved_regions: {count} msi regions, the software MSI window is ambiguous")]
    AmbiguousMsiWindow {
        /// How many `msi` regions.
        count: usize,
    },
}

// ---------------------------------------------------------------------------------------------
// Device tree

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_HEADER_LEN: usize = 40;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
/// Deepest node nesting accepted (the kernel's unflattener drops nodes nested 63 deep).
const FDT_MAX_DEPTH: usize = 64;
/// Most `arm,gic-v3-its` nodes accepted. Real machines have a handful; the cap bounds the
/// translation work (each ITS walks its ancestors' `ranges`) on hostile blobs.
const FDT_MAX_ITS_NODES: usize = 256;
/// Largest `#address-cells` the kernel translates (`OF_MAX_ADDR_CELLS`).
const OF_MAX_ADDR_CELLS: usize = 4;
/// The kernel's `#address-cells`/`#size-cells` when no ancestor has one (non-SPARC).
const OF_ROOT_NODE_CELLS_DEFAULT: u32 = 1;

/// One device tree node, with the properties this module reads (the first of each name,
/// as the kernel's property lookup finds the first).
#[derive(Default)]
struct DtNode<'a> {
    name: &'a [u8],
    parent: Option<usize>,
    /// Byte offset of its FDT_BEGIN_NODE token in the blob.
    offset: usize,
    has_children: bool,
    address_cells: Option<&'a [u8]>,
    size_cells: Option<&'a [u8]>,
    ranges: Option<&'a [u8]>,
    reg: Option<&'a [u8]>,
    compatible: Option<&'a [u8]>,
    status: Option<&'a [u8]>,
    device_type: Option<&'a [u8]>,
    msi_controller: bool,
}

impl<'a> DtNode<'a> {
    fn set_property(&mut self, name: &[u8], value: &'a [u8]) {
        let slot = match name {
            b"#address-cells" => &mut self.address_cells,
            b"#size-cells" => &mut self.size_cells,
            b"ranges" => &mut self.ranges,
            b"reg" => &mut self.reg,
            b"compatible" => &mut self.compatible,
            b"status" => &mut self.status,
            b"device_type" => &mut self.device_type,
            b"msi-controller" => {
                self.msi_controller = true;
                return;
            }
            _ => return,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }

    /// The node name without its unit address (`its@8080000` -> `its`).
    fn base_name(&self) -> &[u8] {
        self.name.split(|&b| b == b'@').next().unwrap_or(self.name)
    }

    fn is_its(&self) -> bool {
        self.compatible.is_some_and(|list| {
            list.split(|&b| b == 0)
                .any(|c| c.eq_ignore_ascii_case(ITS_COMPATIBLE))
        })
    }

    /// The kernel's `of_device_is_available`: no `status`, or `okay`/`ok` before its NUL.
    fn is_available(&self) -> bool {
        match self.status {
            None => true,
            Some(value) => match value.iter().position(|&b| b == 0) {
                Some(nul) => matches!(value.get(..nul), Some(b"okay" | b"ok")),
                None => false,
            },
        }
    }
}

/// A parsed device tree: nodes in blob order, each pointing to its parent.
struct DeviceTree<'a> {
    nodes: Vec<DtNode<'a>>,
}

fn fdt_error(offset: usize, reason: &'static str) -> FirmwareError {
    FirmwareError::DeviceTree { offset, reason }
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(field.try_into().ok()?))
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    let field = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(field.try_into().ok()?))
}

fn le64(bytes: &[u8], at: usize) -> Option<u64> {
    let field = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(field.try_into().ok()?))
}

/// The kernel's `of_read_number`: big-endian cells folded into a u64; cells beyond the last
/// two shift out of the top, as they do in the kernel.
fn read_number(cells: &[u8]) -> u64 {
    cells
        .chunks_exact(4)
        .fold(0, |acc, c| (acc << 32) | u64::from(be32(c, 0).unwrap_or(0)))
}

/// The first cell of a property, if it has one (the kernel's `of_property_read_u32`).
fn first_cell(value: Option<&[u8]>) -> Option<u32> {
    value.and_then(|v| be32(v, 0))
}

impl<'a> DeviceTree<'a> {
    /// Parses the structure block of an FDT blob into nodes.
    fn parse(blob: &'a [u8]) -> Result<Self, FirmwareError> {
        if blob.len() < FDT_HEADER_LEN {
            return Err(fdt_error(
                0,
                "device tree: shorter than the 40-byte FDT header",
            ));
        }
        let header = |at| be32(blob, at).unwrap_or(0);
        if header(0) != FDT_MAGIC {
            return Err(fdt_error(0, "device tree: bad magic (not 0xd00dfeed)"));
        }
        let total = header(4) as usize;
        if total < FDT_HEADER_LEN || total > blob.len() {
            return Err(fdt_error(4, "device tree: totalsize outside the blob"));
        }
        let blob = blob.get(..total).unwrap_or_default();
        let version = header(20);
        if version < 16 {
            return Err(fdt_error(20, "device tree: FDT version older than 16"));
        }
        if header(24) > 17 {
            return Err(fdt_error(
                24,
                "device tree: last compatible version newer than 17",
            ));
        }
        let struct_start = header(8) as usize;
        let struct_len = if version >= 17 {
            header(36) as usize
        } else {
            // Version 16 has no structure size: the block may run to the end of the blob.
            total.saturating_sub(struct_start)
        };
        let structure = struct_start
            .checked_add(struct_len)
            .and_then(|end| blob.get(struct_start..end))
            .ok_or(fdt_error(
                8,
                "device tree: structure block outside the blob",
            ))?;
        let strings_start = header(12) as usize;
        let strings = strings_start
            .checked_add(header(32) as usize)
            .and_then(|end| blob.get(strings_start..end))
            .ok_or(fdt_error(12, "device tree: strings block outside the blob"))?;

        let mut nodes: Vec<DtNode<'a>> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        let mut root_closed = false;
        let mut pos = 0usize;
        // Every pass consumes at least one 4-byte token and every read is bounds-checked, so
        // the loop ends within struct_len / 4 passes.
        loop {
            let at = struct_start.saturating_add(pos);
            let token = be32(structure, pos).ok_or(fdt_error(
                at,
                "device tree: structure block ends before FDT_END",
            ))?;
            pos += 4;
            match token {
                FDT_BEGIN_NODE => {
                    if root_closed {
                        return Err(fdt_error(at, "device tree: a second root node"));
                    }
                    if open.len() >= FDT_MAX_DEPTH {
                        return Err(fdt_error(at, "device tree: nodes nested deeper than 64"));
                    }
                    let rest = structure.get(pos..).unwrap_or_default();
                    let name_len = rest.iter().position(|&b| b == 0).ok_or(fdt_error(
                        at,
                        "device tree: node name runs past the structure block",
                    ))?;
                    let name = rest.get(..name_len).unwrap_or_default();
                    pos = align4(pos + name_len + 1);
                    let parent = open.last().copied();
                    if let Some(p) = parent.and_then(|p| nodes.get_mut(p)) {
                        p.has_children = true;
                    }
                    open.push(nodes.len());
                    nodes.push(DtNode {
                        name,
                        parent,
                        offset: at,
                        ..DtNode::default()
                    });
                }
                FDT_END_NODE => {
                    open.pop()
                        .ok_or(fdt_error(at, "device tree: FDT_END_NODE outside any node"))?;
                    root_closed = open.is_empty();
                }
                FDT_PROP => {
                    let node = open
                        .last()
                        .and_then(|&n| nodes.get_mut(n))
                        .ok_or(fdt_error(at, "device tree: property outside any node"))?;
                    if node.has_children {
                        return Err(fdt_error(at, "device tree: property after a subnode"));
                    }
                    let (len, name_offset) = be32(structure, pos)
                        .zip(be32(structure, pos + 4))
                        .ok_or(fdt_error(
                            at,
                            "device tree: property header runs past the structure block",
                        ))?;
                    pos += 8;
                    let value = pos
                        .checked_add(len as usize)
                        .and_then(|end| structure.get(pos..end))
                        .ok_or(fdt_error(
                            at,
                            "device tree: property value runs past the structure block",
                        ))?;
                    pos = align4(pos + value.len());
                    let name = strings
                        .get(name_offset as usize..)
                        .and_then(|tail| tail.get(..tail.iter().position(|&b| b == 0)?))
                        .ok_or(fdt_error(
                            at,
                            "device tree: property name outside the strings block",
                        ))?;
                    node.set_property(name, value);
                }
                FDT_NOP => {}
                FDT_END => {
                    if !open.is_empty() {
                        return Err(fdt_error(at, "device tree: FDT_END inside a node"));
                    }
                    if nodes.is_empty() {
                        return Err(fdt_error(at, "device tree: no root node"));
                    }
                    return Ok(DeviceTree { nodes });
                }
                _ => return Err(fdt_error(at, "device tree: unknown structure token")),
            }
        }
    }

    fn node(&self, index: usize) -> Option<&DtNode<'a>> {
        self.nodes.get(index)
    }

    /// The node's full path, e.g. `/intc@8000000/its@8080000`.
    fn path(&self, index: usize) -> String {
        let mut names = Vec::new();
        let mut at = Some(index);
        // Parents always come earlier in the node list, so this walk ends; the cap is the
        // nesting limit enforced while parsing.
        for _ in 0..=FDT_MAX_DEPTH {
            let Some(node) = at.and_then(|i| self.node(i)) else {
                break;
            };
            if node.parent.is_some() {
                names.push(String::from_utf8_lossy(node.name));
            }
            at = node.parent;
        }
        if names.is_empty() {
            return "/".into();
        }
        names.iter().rev().fold(String::new(), |mut path, name| {
            path.push('/');
            path.push_str(name);
            path
        })
    }

    /// The kernel's `of_bus_n_addr_cells`/`of_bus_n_size_cells`: the first of `node` and its
    /// ancestors with a readable value, else the root default. Unlike the DT specification
    /// (no inheritance, default 2 address cells) the kernel inherits, and defaults to 1.
    fn inherited_cells(&self, index: usize, which: fn(&DtNode<'a>) -> Option<&'a [u8]>) -> u32 {
        let mut at = Some(index);
        for _ in 0..=FDT_MAX_DEPTH {
            let Some(node) = at.and_then(|i| self.node(i)) else {
                break;
            };
            if let Some(cells) = first_cell(which(node)) {
                return cells;
            }
            at = node.parent;
        }
        OF_ROOT_NODE_CELLS_DEFAULT
    }

    /// The `(#address-cells, #size-cells)` that children of bus node `bus` use, checked the
    /// way the kernel's `OF_CHECK_COUNTS` checks them (cell counts are C `int`s there).
    fn child_cells(&self, bus: usize) -> Result<(usize, usize), SkipReason> {
        let address_cells = self.inherited_cells(bus, |n| n.address_cells);
        let size_cells = self.inherited_cells(bus, |n| n.size_cells);
        let na = address_cells as usize;
        if (1..=OF_MAX_ADDR_CELLS).contains(&na) && (1..=i32::MAX as u32).contains(&size_cells) {
            Ok((na, size_cells as usize))
        } else {
            Err(SkipReason::BadCellCount {
                at: self.path(bus),
                address_cells,
                size_cells,
            })
        }
    }

    /// The kernel's `of_match_bus` for the bus node `bus`: only the plain "default" bus is
    /// translated here; PCI, ISA and 3-cell buses carry flag cells.
    fn check_default_bus(&self, bus: usize) -> Result<(), SkipReason> {
        let Some(node) = self.node(bus) else {
            return Err(SkipReason::IsRoot);
        };
        let device_type = node
            .device_type
            .and_then(|t| t.split(|&b| b == 0).next())
            .unwrap_or_default();
        let unsupported = |kind| {
            Err(SkipReason::UnsupportedBus {
                at: self.path(bus),
                bus: kind,
            })
        };
        if matches!(device_type, b"pci" | b"pciex" | b"vci" | b"ht") || node.base_name() == b"pcie"
        {
            return unsupported("PCI");
        }
        if node.base_name() == b"isa" {
            return unsupported("ISA");
        }
        if node.address_cells.is_none() {
            return Err(SkipReason::NotABus { at: self.path(bus) });
        }
        if self.inherited_cells(bus, |n| n.address_cells) == 3 {
            return unsupported("3-cell default-flags");
        }
        Ok(())
    }

    /// The CPU physical address of the first `reg` entry of node `index`, as the kernel's
    /// `of_address_to_resource(node, 0, ..)` computes it.
    fn translate_reg(&self, index: usize) -> Result<u64, SkipReason> {
        let node = self.node(index).ok_or(SkipReason::IsRoot)?;
        let mut bus = node.parent.ok_or(SkipReason::IsRoot)?;
        self.check_default_bus(bus)?;
        let reg = node.reg.ok_or(SkipReason::NoReg)?;
        let (mut na, mut ns) = self.child_cells(bus)?;
        let cells = reg.len() / 4;
        if cells < na + ns {
            return Err(SkipReason::RegTooShort {
                cells,
                needed: na + ns,
            });
        }
        // The address being translated, in the current bus's cells (at most 4 of them).
        let mut addr = [0u8; 4 * OF_MAX_ADDR_CELLS];
        copy_cells(&mut addr, reg, na);
        for _ in 0..=FDT_MAX_DEPTH {
            let Some(grandparent) = self.node(bus).and_then(|b| b.parent) else {
                // `bus` is the root: its address space is the CPU's.
                return Ok(read_number(addr.get(..4 * na).unwrap_or_default()));
            };
            self.check_default_bus(grandparent)?;
            let (pna, pns) = self.child_cells(grandparent)?;
            self.translate_one(bus, &mut addr, na, ns, pna)?;
            na = pna;
            ns = pns;
            bus = grandparent;
        }
        // Unreachable: the parser caps nesting at FDT_MAX_DEPTH.
        Err(SkipReason::NotABus { at: self.path(bus) })
    }

    /// The kernel's `of_translate_one` for a default bus: maps `addr` (`na` cells, in the
    /// address space of `bus`'s children) into `bus`'s parent's space (`pna` cells) through
    /// `bus`'s `ranges`.
    fn translate_one(
        &self,
        bus: usize,
        addr: &mut [u8; 4 * OF_MAX_ADDR_CELLS],
        na: usize,
        ns: usize,
        pna: usize,
    ) -> Result<(), SkipReason> {
        let ranges = self
            .node(bus)
            .and_then(|b| b.ranges)
            .ok_or_else(|| SkipReason::NoRanges { at: self.path(bus) })?;
        let child = read_number(addr.get(..4 * na).unwrap_or_default());
        let (offset, parent_base): (u64, &[u8]) = if ranges.is_empty() {
            // Empty `ranges`: a 1:1 translation.
            (child, &[])
        } else {
            // Each entry is (child base: na cells, parent base: pna cells, size: ns cells);
            // a trailing partial entry is ignored, as the kernel ignores it.
            let entry_len = na
                .checked_add(pna)
                .and_then(|n| n.checked_add(ns))
                .and_then(|n| n.checked_mul(4))
                .unwrap_or(usize::MAX);
            let mut hit = None;
            for entry in ranges.chunks_exact(entry_len) {
                let (Some(child_base), Some(parent_base), Some(size)) = (
                    entry.get(..4 * na),
                    entry.get(4 * na..4 * (na + pna)),
                    entry.get(4 * (na + pna)..),
                ) else {
                    continue;
                };
                let child_base = read_number(child_base);
                // `child_base + size` wraps as the kernel's u64 arithmetic does.
                let end = child_base.wrapping_add(read_number(size));
                if child >= child_base && child < end {
                    hit = Some((child - child_base, parent_base));
                    break;
                }
            }
            hit.ok_or_else(|| SkipReason::OutsideRanges { at: self.path(bus) })?
        };
        // The kernel's `of_bus_default_translate`: parent base + offset, written back as the
        // low two cells (at most) of a `pna`-cell address.
        let mut parent = [0u8; 4 * OF_MAX_ADDR_CELLS];
        copy_cells(&mut parent, parent_base, pna);
        let translated =
            read_number(parent.get(..4 * pna).unwrap_or_default()).wrapping_add(offset);
        let low_cells = pna.min(2);
        *addr = [0; 4 * OF_MAX_ADDR_CELLS];
        if let (Some(dst), Some(src)) = (
            addr.get_mut(4 * (pna - low_cells)..4 * pna),
            translated.to_be_bytes().get(8 - 4 * low_cells..),
        ) {
            dst.copy_from_slice(src);
        }
        Ok(())
    }
}

/// Copies the first `cells` cells of `from` (fewer if it is shorter) into `to`.
fn copy_cells(to: &mut [u8; 4 * OF_MAX_ADDR_CELLS], from: &[u8], cells: usize) {
    let len = (4 * cells).min(from.len()).min(to.len());
    if let (Some(dst), Some(src)) = (to.get_mut(..len), from.get(..len)) {
        dst.copy_from_slice(src);
    }
}

fn align4(pos: usize) -> usize {
    pos.saturating_add(3) & !3
}

/// The GICv3 ITSes described by a flattened device tree blob (`/sys/firmware/fdt`).
///
/// A node is an ITS when one of its `compatible` strings is `arm,gic-v3-its` (compared
/// ignoring ASCII case, as the kernel does). Like the kernel's `its_of_probe` it must be
/// available (`status` absent, `okay` or `ok`), have `msi-controller`, and have a first `reg`
/// entry that translates to a CPU address: the parent's `#address-cells`/`#size-cells`
/// (inherited from ancestors, default 1, as the kernel reads them) size the entry, and every
/// ancestor bus's `ranges` maps it one level up (empty `ranges` = identity, no `ranges` = not
/// translatable). Nodes that fail any of this are listed in [`DeviceTreeIts::skipped`].
pub fn parse_fdt_its(blob: &[u8]) -> Result<DeviceTreeIts, FirmwareError> {
    let tree = DeviceTree::parse(blob)?;
    let mut found = DeviceTreeIts::default();
    let mut its_nodes = 0usize;
    for (index, node) in tree.nodes.iter().enumerate() {
        if !node.is_its() {
            continue;
        }
        its_nodes += 1;
        if its_nodes > FDT_MAX_ITS_NODES {
            return Err(fdt_error(
                node.offset,
                "device tree: more than 256 arm,gic-v3-its nodes",
            ));
        }
        let path = tree.path(index);
        let base = if !node.is_available() {
            Err(SkipReason::Disabled)
        } else if !node.msi_controller {
            Err(SkipReason::NoMsiController)
        } else {
            tree.translate_reg(index)
        };
        let its = base.and_then(|base| {
            ItsInfo::new(base, ItsSource::DeviceTree { path: path.clone() })
                .ok_or(SkipReason::DoorbellOverflow)
        });
        match its {
            Ok(its) => found.its.push(its),
            Err(reason) => found.skipped.push(SkippedIts { path, reason }),
        }
    }
    Ok(found)
}

// ---------------------------------------------------------------------------------------------
// ACPI MADT

const ACPI_HEADER_LEN: usize = 36;
/// The ACPI header plus the MADT's local interrupt controller address and flags.
const MADT_HEADER_LEN: usize = ACPI_HEADER_LEN + 8;
const MADT_TYPE_GIC_ITS: u8 = 0x0f;
const MADT_GIC_ITS_LEN: usize = 20;

fn madt_error(offset: usize, reason: &'static str) -> FirmwareError {
    FirmwareError::Madt { offset, reason }
}

/// The GIC ITS structures (type 0x0F) of an ACPI MADT (`/sys/firmware/acpi/tables/APIC`).
///
/// Checks the signature, the length field against the data, the checksum, and every
/// interrupt controller structure's length: a structure shorter than its 2-byte header
/// (which would never advance) or running past the table end is an error.
pub fn parse_madt_its(table: &[u8]) -> Result<Vec<ItsInfo>, FirmwareError> {
    if table.len() < ACPI_HEADER_LEN {
        return Err(madt_error(
            0,
            "ACPI MADT: shorter than the 36-byte table header",
        ));
    }
    if table.get(..4) != Some(b"APIC") {
        return Err(madt_error(0, "ACPI MADT: signature is not APIC"));
    }
    let len = le32(table, 4).unwrap_or(0) as usize;
    if len < MADT_HEADER_LEN {
        return Err(madt_error(
            4,
            "ACPI MADT: length field shorter than the MADT header",
        ));
    }
    let table = table
        .get(..len)
        .ok_or(madt_error(4, "ACPI MADT: length field runs past the data"))?;
    let sum = table.iter().fold(0u8, |sum, &b| sum.wrapping_add(b));
    if sum != 0 {
        return Err(FirmwareError::MadtChecksum { sum });
    }
    let mut its = Vec::new();
    let mut at = MADT_HEADER_LEN;
    // Each pass advances by the structure's length, which is checked to be at least 2.
    while at < len {
        let (kind, struct_len) = match table.get(at..at + 2) {
            Some(&[kind, struct_len]) => (kind, usize::from(struct_len)),
            _ => {
                return Err(madt_error(
                    at,
                    "ACPI MADT: structure header cut off by the table end",
                ));
            }
        };
        if struct_len < 2 {
            return Err(madt_error(
                at,
                "ACPI MADT: structure length shorter than its header",
            ));
        }
        let structure = table.get(at..at + struct_len).ok_or(madt_error(
            at,
            "ACPI MADT: structure runs past the table end",
        ))?;
        if kind == MADT_TYPE_GIC_ITS {
            if struct_len < MADT_GIC_ITS_LEN {
                return Err(madt_error(
                    at,
                    "ACPI MADT: GIC ITS structure shorter than 20 bytes",
                ));
            }
            let its_id = le32(structure, 4).unwrap_or(0);
            let base = le64(structure, 8).unwrap_or(0);
            its.push(
                ItsInfo::new(base, ItsSource::AcpiMadt { its_id }).ok_or(madt_error(
                    at,
                    "ACPI MADT: GIC ITS base leaves no room for GITS_TRANSLATER",
                ))?,
            );
        }
        at += struct_len;
    }
    Ok(its)
}

// ---------------------------------------------------------------------------------------------
// Discovery

/// Where [`discover_its`] found the ITSes, or that it found none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// The firmware the kernel booted from describes at least one usable ITS.
    Found {
        /// Which firmware description.
        firmware: Firmware,
        /// The ITSes, in firmware order.
        its: Vec<ItsInfo>,
        /// Each firmware file and what came of it.
        looked_at: Vec<SourceReport>,
    },
    /// No usable ITS is described: the host has no ITS, or none the kernel could use.
    NoIts {
        /// Each firmware file and what came of it.
        looked_at: Vec<SourceReport>,
    },
}

impl Discovery {
    /// The ITSes found; empty for [`Discovery::NoIts`].
    pub fn its(&self) -> &[ItsInfo] {
        match self {
            Discovery::Found { its, .. } => its,
            Discovery::NoIts { .. } => &[],
        }
    }

    /// The physical doorbell (`GITS_TRANSLATER`) address of each ITS found, in firmware order.
    pub fn doorbells(&self) -> Vec<u64> {
        self.its().iter().map(|its| its.doorbell).collect()
    }

    /// Each firmware file and what came of it.
    pub fn looked_at(&self) -> &[SourceReport] {
        match self {
            Discovery::Found { looked_at, .. } | Discovery::NoIts { looked_at } => looked_at,
        }
    }
}

/// One firmware file [`discover_its`] considered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceReport {
    /// Which firmware description.
    pub firmware: Firmware,
    /// The file.
    pub path: PathBuf,
    /// What came of it.
    pub outcome: SourceOutcome,
}

/// What came of one firmware file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceOutcome {
    /// The file does not exist.
    Absent,
    /// The file exists but the kernel runs on ACPI, so the device tree (typically the EFI
    /// stub's, with no devices) was not read.
    NotInUse,
    /// Read and parsed.
    Parsed {
        /// Usable ITSes in it.
        its: usize,
        /// Device tree ITS nodes the kernel would not use, and why (empty for ACPI).
        skipped: Vec<SkippedIts>,
    },
}

/// Finds the running host's GICv3 ITSes from its firmware tables.
///
/// The kernel publishes `/sys/firmware/acpi/tables/APIC` only when it runs on ACPI, so if
/// that file exists the MADT is read and the device tree is not; otherwise `/sys/firmware/fdt`
/// is read. Both files are readable by root only. A host whose firmware describes no usable
/// ITS gets [`Discovery::NoIts`]; an unreadable or malformed table the kernel uses is an error.
pub fn discover_its() -> Result<Discovery> {
    discover_its_under(Path::new("/"))
}

/// [`discover_its`] with the files looked up under `root` instead of `/` (for tests, or a
/// copy of another machine's `/sys/firmware`).
pub fn discover_its_under(root: &Path) -> Result<Discovery> {
    let madt_path = root.join(MADT_PATH);
    let fdt_path = root.join(FDT_PATH);
    let report = |firmware, path: &Path, outcome| SourceReport {
        firmware,
        path: path.to_path_buf(),
        outcome,
    };
    let (firmware, its, looked_at) = if let Some(table) = read_if_present(&madt_path)? {
        let its = parse_madt_its(&table)?;
        let madt = SourceOutcome::Parsed {
            its: its.len(),
            skipped: Vec::new(),
        };
        let dt = if fdt_path.exists() {
            SourceOutcome::NotInUse
        } else {
            SourceOutcome::Absent
        };
        let looked_at = vec![
            report(Firmware::AcpiMadt, &madt_path, madt),
            report(Firmware::DeviceTree, &fdt_path, dt),
        ];
        (Firmware::AcpiMadt, its, looked_at)
    } else {
        let (its, dt) = match read_if_present(&fdt_path)? {
            Some(blob) => {
                let found = parse_fdt_its(&blob)?;
                let dt = SourceOutcome::Parsed {
                    its: found.its.len(),
                    skipped: found.skipped,
                };
                (found.its, dt)
            }
            None => (Vec::new(), SourceOutcome::Absent),
        };
        let looked_at = vec![
            report(Firmware::AcpiMadt, &madt_path, SourceOutcome::Absent),
            report(Firmware::DeviceTree, &fdt_path, dt),
        ];
        (Firmware::DeviceTree, its, looked_at)
    };
    Ok(if its.is_empty() {
        Discovery::NoIts { looked_at }
    } else {
        Discovery::Found {
            firmware,
            its,
            looked_at,
        }
    })
}

/// The file's bytes, or `None` if it does not exist.
fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// reserved_regions

/// The type of a reserved region, as `reserved_regions` names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RegionKind {
    /// `direct`: must be identity-mapped (e.g. an IORT RMR).
    Direct,
    /// `direct-relaxable`: identity-mapped, but may be relaxed for device assignment.
    DirectRelaxable,
    /// `msi`: an MSI window, software (the IOMMU driver's) or hardware; the file does not
    /// tell which.
    Msi,
    /// `reserved`: must not be mapped.
    Reserved,
    /// A type this module does not know, as printed.
    Other(String),
}

/// One line of an IOMMU group's `reserved_regions`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReservedRegion {
    /// The IOVAs, both ends inclusive.
    pub range: IovaRange,
    /// What the region is for.
    pub kind: RegionKind,
}

fn region_error(line: usize, reason: &'static str) -> FirmwareError {
    FirmwareError::ReservedRegions { line, reason }
}

/// A `0x`-prefixed hex number of 1 to 16 digits, as the kernel's `0x%016llx` prints.
fn parse_hex_u64(field: &str) -> Option<u64> {
    let digits = field.strip_prefix("0x")?;
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// Parses the text of `/sys/kernel/iommu_groups/<N>/reserved_regions`: one region per line,
/// `0x<start> 0x<end> <type>` with an inclusive end. Any malformed line (a blank one too) is
/// an error naming its 1-based line number; an unknown type is kept as [`RegionKind::Other`].
pub fn parse_reserved_regions(text: &str) -> Result<Vec<ReservedRegion>, FirmwareError> {
    let mut regions = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let mut fields = line.split_ascii_whitespace();
        let (Some(start), Some(end), Some(kind), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(region_error(
                number,
                "reserved_regions: a line is not exactly 3 fields (start end type)",
            ));
        };
        let start = parse_hex_u64(start).ok_or(region_error(
            number,
            "reserved_regions: start is not a 0x-prefixed hex number",
        ))?;
        let last = parse_hex_u64(end).ok_or(region_error(
            number,
            "reserved_regions: end is not a 0x-prefixed hex number",
        ))?;
        if last < start {
            return Err(region_error(
                number,
                "reserved_regions: a region ends before it starts",
            ));
        }
        let kind = match kind {
            "direct" => RegionKind::Direct,
            "direct-relaxable" => RegionKind::DirectRelaxable,
            "msi" => RegionKind::Msi,
            "reserved" => RegionKind::Reserved,
            other if other.bytes().all(|b| b.is_ascii_graphic()) => {
                RegionKind::Other(other.to_owned())
            }
            _ => {
                return Err(region_error(
                    number,
                    "reserved_regions: region type is not printable ASCII",
                ));
            }
        };
        regions.push(ReservedRegion {
            range: IovaRange { start, last },
            kind,
        });
    }
    Ok(regions)
}

/// The `msi` region among `regions`: on SMMUv3 the software MSI window, 0x8000000..=0x80fffff.
/// `None` if there is none; an error if there are several (hardware MSI regions print as
/// `msi` too, so the window cannot be told apart).
pub fn msi_window(regions: &[ReservedRegion]) -> Result<Option<IovaRange>, FirmwareError> {
    let mut msi = regions.iter().filter(|r| r.kind == RegionKind::Msi);
    match (msi.next(), msi.next()) {
        (None, _) => Ok(None),
        (Some(window), None) => Ok(Some(window.range)),
        (Some(_), Some(_)) => Err(FirmwareError::AmbiguousMsiWindow {
            count: 2 + msi.count(),
        }),
    }
}

/// Reads and parses a `reserved_regions` file.
pub fn read_reserved_regions(path: &Path) -> Result<Vec<ReservedRegion>> {
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = std::fs::read(path).map_err(io_error)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| io_error(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    Ok(parse_reserved_regions(&text)?)
}

/// Reads and parses `/sys/kernel/iommu_groups/<group>/reserved_regions`.
pub fn reserved_regions(group: u32) -> Result<Vec<ReservedRegion>> {
    read_reserved_regions(Path::new(&format!(
        "/sys/kernel/iommu_groups/{group}/reserved_regions"
    )))
}

// ---------------------------------------------------------------------------------------------
// IOVA holes and doorbell pages

/// The holes in an IOAS's usable IOVA ranges (as `Ioas::iova_ranges` reports them): every
/// IOVA from 0 up to the highest usable one that no range covers, as inclusive ranges in
/// ascending order. Once a device is attached the kernel reserves its MSI window, so on
/// SMMUv3 it shows up as the hole 0x8000000..=0x80fffff.
///
/// The ranges may come in any order and may overlap; a range that ends before it starts is
/// an invalid argument.
pub fn iova_holes(ranges: &[IovaRange]) -> Result<Vec<IovaRange>> {
    if ranges.iter().any(|r| r.last < r.start) {
        return Err(Error::InvalidArgument("IOVA range ends before it starts"));
    }
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable_by_key(|r| r.start);
    let mut holes = Vec::new();
    // The lowest IOVA not yet covered; `None` once everything up to u64::MAX is.
    let mut uncovered = Some(0u64);
    for range in sorted {
        let Some(next) = uncovered else {
            break;
        };
        if range.start > next {
            holes.push(IovaRange {
                start: next,
                last: range.start - 1,
            });
        }
        if range.last >= next {
            uncovered = range.last.checked_add(1);
        }
    }
    Ok(holes)
}

/// The page holding a doorbell, and the doorbell's offset inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DoorbellPage {
    /// Address of the page: `doorbell & !(page_size - 1)`.
    pub page: u64,
    /// Offset of the doorbell in the page: `doorbell & (page_size - 1)`.
    pub offset: u64,
}

/// The page of `page_size` bytes that holds `doorbell`. An ITS's translation frame is 64 KiB
/// aligned, so `GITS_TRANSLATER` sits at offset 0x40 of its page for 4K, 16K and 64K pages.
/// A page size that is not a power of two is an invalid argument.
pub fn doorbell_page(doorbell: u64, page_size: u64) -> Result<DoorbellPage> {
    if !page_size.is_power_of_two() {
        return Err(Error::InvalidArgument("page size is not a power of two"));
    }
    let mask = page_size - 1;
    Ok(DoorbellPage {
        page: doorbell & !mask,
        offset: doorbell & mask,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // --- A tiny FDT builder, so test trees read like the .dts they stand for. ---------------

    #[derive(Default)]
    struct Fdt {
        structure: Vec<u8>,
        strings: Vec<u8>,
    }

    impl Fdt {
        fn token(&mut self, token: u32) -> &mut Self {
            self.structure.extend_from_slice(&token.to_be_bytes());
            self
        }

        fn pad(&mut self) {
            while self.structure.len() % 4 != 0 {
                self.structure.push(0);
            }
        }

        /// A node with `body` inside it.
        fn node(&mut self, name: &str, body: impl FnOnce(&mut Self)) -> &mut Self {
            self.token(FDT_BEGIN_NODE);
            self.structure.extend_from_slice(name.as_bytes());
            self.structure.push(0);
            self.pad();
            body(self);
            self.token(FDT_END_NODE)
        }

        fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
            let name_offset = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            self.token(FDT_PROP);
            self.structure
                .extend_from_slice(&(value.len() as u32).to_be_bytes());
            self.structure.extend_from_slice(&name_offset.to_be_bytes());
            self.structure.extend_from_slice(value);
            self.pad();
            self
        }

        fn cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
            let value: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
            self.prop(name, &value)
        }

        fn string(&mut self, name: &str, value: &str) -> &mut Self {
            self.prop(name, format!("{value}\0").as_bytes())
        }

        /// `#address-cells` and `#size-cells`.
        fn bus(&mut self, address_cells: u32, size_cells: u32) -> &mut Self {
            self.cells("#address-cells", &[address_cells])
                .cells("#size-cells", &[size_cells])
        }

        /// A usable ITS node body: compatible, msi-controller and `reg`.
        fn its(&mut self, reg: &[u32]) -> &mut Self {
            self.string("compatible", "arm,gic-v3-its")
                .prop("msi-controller", &[])
                .cells("reg", reg)
        }

        /// The blob: header, empty memory reservation map, structure, strings.
        fn blob(&mut self) -> Vec<u8> {
            self.token(FDT_END);
            let reserve_map = FDT_HEADER_LEN;
            let structure = reserve_map + 16;
            let strings = structure + self.structure.len();
            let total = strings + self.strings.len();
            let header = [
                FDT_MAGIC,
                total as u32,
                structure as u32,
                strings as u32,
                reserve_map as u32,
                17,
                16,
                0,
                self.strings.len() as u32,
                self.structure.len() as u32,
            ];
            let mut blob: Vec<u8> = header.iter().flat_map(|w| w.to_be_bytes()).collect();
            blob.extend_from_slice(&[0; 16]);
            blob.extend_from_slice(&self.structure);
            blob.extend_from_slice(&self.strings);
            blob
        }
    }

    /// QEMU `virt` with GICv3 and ITS, as its generated device tree has it.
    fn qemu_virt() -> Vec<u8> {
        let mut fdt = Fdt::default();
        fdt.node("", |root| {
            root.bus(2, 2).string("compatible", "linux,dummy-virt");
            root.node("intc@8000000", |gic| {
                gic.cells(
                    "reg",
                    &[0, 0x0800_0000, 0, 0x1_0000, 0, 0x080a_0000, 0, 0xf6_0000],
                )
                .string("compatible", "arm,gic-v3")
                .prop("ranges", &[])
                .bus(2, 2);
                gic.node("its@8080000", |its| {
                    its.its(&[0, 0x0808_0000, 0, 0x2_0000]);
                });
            });
        });
        fdt.blob()
    }

    fn dt_its(path: &str, base: u64) -> ItsInfo {
        ItsInfo {
            base,
            doorbell: base + GITS_TRANSLATER,
            source: ItsSource::DeviceTree { path: path.into() },
        }
    }

    /// The skip reason of the only ITS node, when it has one.
    fn only_skip(blob: &[u8]) -> SkipReason {
        let found = parse_fdt_its(blob).unwrap();
        assert_eq!(found.its, vec![], "no usable ITS expected");
        assert_eq!(found.skipped.len(), 1, "{found:?}");
        found.skipped[0].reason.clone()
    }

    /// The reason string of a device tree parse error.
    fn fdt_fault(blob: &[u8]) -> &'static str {
        match parse_fdt_its(blob) {
            Err(FirmwareError::DeviceTree { reason, .. }) => reason,
            other => panic!("expected a device tree error, got {other:?}"),
        }
    }

    // --- Device tree: translation ------------------------------------------------------------

    #[test]
    fn qemu_virt_its_under_the_gic_with_empty_ranges() {
        let found = parse_fdt_its(&qemu_virt()).unwrap();
        assert_eq!(
            found.its,
            vec![dt_its("/intc@8000000/its@8080000", 0x0808_0000)]
        );
        assert_eq!(found.its[0].doorbell, 0x0809_0040);
        assert!(found.skipped.is_empty());
    }

    #[test]
    fn nested_buses_translate_through_every_ranges() {
        // /soc maps its 1-cell space 0..256M to 0x4000_0000 (2 parent cells); /soc/gic maps
        // its 0..1M to soc's 0x10_0000; the ITS sits at gic's 0x4_0000.
        let mut fdt = Fdt::default();
        fdt.node("", |root| {
            root.bus(2, 2);
            root.node("soc", |soc| {
                soc.bus(1, 1)
                    .cells("ranges", &[0x0, 0x0, 0x4000_0000, 0x1000_0000]);
                soc.node("interrupt-controller@100000", |gic| {
                    gic.bus(1, 1).cells("ranges", &[0x0, 0x10_0000, 0x10_0000]);
                    gic.node("msi-controller@40000", |its| {
                        its.its(&[0x4_0000, 0x2_0000]);
                    });
                });
            });
        });
        let found = parse_fdt_its(&fdt.blob()).unwrap();
        assert_eq!(
            found.its,
            vec![dt_its(
                "/soc/interrupt-controller@100000/msi-controller@40000",
                0x4014_0000
            )]
        );
    }

    #[test]
    fn a_ranges_entry_can_move_an_its_above_4g() {
        // Two ranges entries; the second maps the child window 0x1000_0000.. to 0x10_0000_0000.
        let mut fdt = Fdt::default();
        fdt.node("", |root| {
            root.bus(2, 2);
            root.node("bus", |bus| {
                bus.bus(1, 1).cells(
                    "ranges",
                    &[
                        0x0,
                        0x0,
                        0x0,
                        0x1000_0000,
                        0x1000_0000,
                        0x10,
                        0x0,
                        0x100_0000,
                    ],
                );
                bus.node("its@10020000", |its| {
                    its.its(&[0x1002_0000, 0x2_0000]);
                });
            });
        });
        let found = parse_fdt_its(&fdt.blob()).unwrap();
        assert_eq!(found.its, vec![dt_its("/bus/its@10020000", 0x10_0002_0000)]);
    }

    #[test]
    fn one_cell_addresses_at_the_root() {
        let mut fdt = Fdt::default();
        fdt.node("", |root| {
            root.bus(1, 1);
            root.node("gic", |gic| {
                gic.bus(1, 1).prop("ranges", &[]);
                gic.node("its@2f020000", |its| {
                    its.its(&[0x2f02_0000, 0x2_0000]);
                });
            });
        });
        let found = parse_fdt_its(&fdt.blob()).unwrap();
        assert_eq!(found.its, vec![dt_its("/gic/its@2f020000", 0x2f02_0000)]);
    }

    #[test]
    fn two_its_in_tree_order_and_matching_ignores_case_and_list_position() {
        let mut fdt = Fdt::default();
        fdt.node("", |root| {
            root.bus(2, 2);
            root.node("gic", |gic| {
                gic.bus(2, 2).prop("ranges", &[]);
                gic.node("its@2f020000", |its| {
                    its.prop("compatible", b"vendor,its\0ARM,GIC-V3-ITS\0")
                        .prop("msi-controller", &[])
                        .cells("reg", &[0, 0x2f02_0000, 0, 0x2_0000]);
                });
                gic.node("its@2f040000", |its| {
                    its.its(&[0, 0x2f04_0000, 0, 0x2_0000])
                        .string("status", "okay");
                });
                // A prefix of the compatible string is a different device.
                gic.node("not-its", |n| {
                    n.string("compatible", "arm,gic-v3-its-like")
                        .prop("msi-controller", &[])
                        .cells("reg", &[0, 0x1000, 0, 0x1000]);
                });
            });
        });
        let found = parse_fdt_its(&fdt.blob()).unwrap();
        assert_eq!(
            found.its,
            vec![
                dt_its("/gic/its@2f020000", 0x2f02_0000),
                dt_its("/gic/its@2f040000", 0x2f04_0000),
            ]
        );
        assert!(found.skipped.is_empty());
    }

    #[test]
    fn nodes_the_kernel_would_not_probe_are_skipped_with_a_reason() {
        let mut fdt = Fdt::default();
        fdt.node("", |root| {
            root.bus(2, 2);
            root.node("gic", |gic| {
                gic.bus(2, 2).prop("ranges", &[]);
                gic.node("no-reg", |n| {
                    n.string("compatible", "arm,gic-v3-its")
                        .prop("msi-controller", &[]);
                });
                gic.node("not-msi", |n| {
                    n.string("compatible", "arm,gic-v3-its")
                        .cells("reg", &[0, 0x1000, 0, 0x1000]);
                });
                gic.node("disabled", |n| {
                    n.its(&[0, 0x2000, 0, 0x1000]).string("status", "disabled");
                });
                gic.node("short-reg", |n| {
                    n.its(&[0, 0x3000, 0]);
                });
                gic.node("too-high", |n| {
                    n.its(&[0xffff_ffff, 0xffff_0000, 0, 0x2_0000]);
                });
            });
        });
        let found = parse_fdt_its(&fdt.blob()).unwrap();
        assert!(found.its.is_empty());
        let reasons: Vec<(&str, &SkipReason)> = found
            .skipped
            .iter()
            .map(|s| (s.path.as_str(), &s.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                ("/gic/no-reg", &SkipReason::NoReg),
                ("/gic/not-msi", &SkipReason::NoMsiController),
                ("/gic/disabled", &SkipReason::Disabled),
                (
                    "/gic/short-reg",
                    &SkipReason::RegTooShort {
                        cells: 3,
                        needed: 4
                    }
                ),
                ("/gic/too-high", &SkipReason::DoorbellOverflow),
            ]
        );
    }

    #[test]
    fn a_bus_without_ranges_is_not_translatable() {
        let mut fdt = Fdt::default();
        fdt.node("", |root| {
            root.bus(2, 2);
            root.node("gic", |gic| {
                gic.bus(2, 2);
                gic.node("its", |its| {
                    its.its(&[0, 0x0808_0000, 0, 0x2_0000]);
                });
            });
        });
        assert_eq!(
            only_skip(&fdt.blob()),
            SkipReason::NoRanges { at: "/gic".into() }
        );
    }

    #[test]
    fn an_address_outside_every_ranges_entry_is_not_translatable() {
        let mut fdt = Fdt::default();
        fdt.node("", |root| {
            root.bus(1, 1);
            root.node("soc", |soc| {
                soc.bus(1, 1).cells("ranges", &[0x0, 0x4000_0000, 0x1000]);
                soc.node("its", |its| {
                    its.its(&[0x1000, 0x2_0000]);
                });
            });
        });
        assert_eq!(
            only_skip(&fdt.blob()),
            SkipReason::OutsideRanges { at: "/soc".into() }
        );
    }

    #[test]
    fn a_parent_without_address_cells_is_no_bus_for_the_kernel() {
        // The DT spec would default to 2/1 here; Linux 7.2 matches no bus type and gives up.
        let mut fdt = Fdt::default();
        fdt.node("", |root| {
            root.bus(2, 2);
            root.node("gic", |gic| {
                gic.prop("ranges", &[]);
                gic.node("its", |its| {
                    its.its(&[0, 0x0808_0000, 0x2_0000]);
                });
            });
        });
        assert_eq!(
            only_skip(&fdt.blob()),
            SkipReason::NotABus { at: "/gic".into() }
        );
    }

    #[test]
    fn a_missing_size_cells_is_inherited_from_an_ancestor() {
        // The DT spec would default #size-cells to 1 (so 3 reg cells are one entry); the
        // kernel inherits the root's 2, so 3 cells are too few.
        let mut fdt = Fdt::default();
        fdt.node("", |root| {
            root.bus(2, 2);
            root.node("gic", |gic| {
                gic.cells("#address-cells", &[2]).prop("ranges", &[]);
                gic.node("its", |its| {
                    its.its(&[0, 0x0808_0000, 0x2_0000]);
                });
            });
        });
        assert_eq!(
            only_skip(&fdt.blob()),
            SkipReason::RegTooShort {
                cells: 3,
                needed: 4
            }
        );
    }

    #[test]
    fn size_cells_zero_and_too_many_address_cells_are_bad_counts() {
        for (address_cells, size_cells) in [(2, 0), (5, 1), (0, 1)] {
            let mut fdt = Fdt::default();
            fdt.node("", |root| {
                root.bus(2, 2);
                root.node("gic", |gic| {
                    gic.bus(address_cells, size_cells).prop("ranges", &[]);
                    gic.node("its", |its| {
                        its.its(&[0; 8]);
                    });
                });
            });
            assert_eq!(
                only_skip(&fdt.blob()),
                SkipReason::BadCellCount {
                    at: "/gic".into(),
                    address_cells,
                    size_cells
                }
            );
        }
    }

    #[test]
    fn pci_and_three_cell_buses_are_not_translated() {
        let mut pci = Fdt::default();
        pci.node("", |root| {
            root.bus(2, 2);
            root.node("pcie@10000000", |bus| {
                bus.bus(3, 2)
                    .string("device_type", "pci")
                    .prop("ranges", &[]);
                bus.node("its", |its| {
                    its.its(&[0; 5]);
                });
            });
        });
        assert_eq!(
            only_skip(&pci.blob()),
            SkipReason::UnsupportedBus {
                at: "/pcie@10000000".into(),
                bus: "PCI"
            }
        );
        let mut flags = Fdt::default();
        flags.node("", |root| {
            root.bus(2, 2);
            root.node("bus", |bus| {
                bus.bus(3, 1).prop("ranges", &[]);
                bus.node("its", |its| {
                    its.its(&[0x200, 0, 0x0808_0000, 0x2_0000]);
                });
            });
        });
        assert_eq!(
            only_skip(&flags.blob()),
            SkipReason::UnsupportedBus {
                at: "/bus".into(),
                bus: "3-cell default-flags"
            }
        );
    }

    #[test]
    fn an_its_node_at_the_root_has_no_bus() {
        let mut fdt = Fdt::default();
        fdt.node("", |root| {
            root.its(&[0, 0x0808_0000, 0, 0x2_0000]);
        });
        assert_eq!(only_skip(&fdt.blob()), SkipReason::IsRoot);
    }

    #[test]
    fn a_root_without_address_cells_stops_translation_at_the_top() {
        let mut fdt = Fdt::default();
        fdt.node("", |root| {
            root.node("gic", |gic| {
                gic.bus(1, 1).prop("ranges", &[]);
                gic.node("its", |its| {
                    its.its(&[0x0808_0000, 0x2_0000]);
                });
            });
        });
        assert_eq!(
            only_skip(&fdt.blob()),
            SkipReason::NotABus { at: "/".into() }
        );
    }

    // --- Device tree: hostile blobs ---------------------------------------------------------

    #[test]
    fn every_truncation_of_a_blob_is_an_error() {
        let blob = qemu_virt();
        for len in 0..blob.len() {
            assert!(
                parse_fdt_its(&blob[..len]).is_err(),
                "a blob cut to {len} bytes parsed"
            );
        }
    }

    #[test]
    fn header_fields_that_point_outside_the_blob_are_errors() {
        let blob = qemu_virt();
        let with = |at: usize, value: u32| {
            let mut b = blob.clone();
            b[at..at + 4].copy_from_slice(&value.to_be_bytes());
            b
        };
        assert_eq!(
            fdt_fault(&with(0, 0xfeed_d00d)),
            "device tree: bad magic (not 0xd00dfeed)"
        );
        assert_eq!(
            fdt_fault(&with(4, blob.len() as u32 + 1)),
            "device tree: totalsize outside the blob"
        );
        assert_eq!(
            fdt_fault(&with(36, 0xffff_fff0)),
            "device tree: structure block outside the blob"
        );
        assert_eq!(
            fdt_fault(&with(8, 0xffff_fff0)),
            "device tree: structure block outside the blob"
        );
        assert_eq!(
            fdt_fault(&with(32, 0x10_0000)),
            "device tree: strings block outside the blob"
        );
        assert_eq!(
            fdt_fault(&with(20, 3)),
            "device tree: FDT version older than 16"
        );
        assert_eq!(
            fdt_fault(&with(24, 18)),
            "device tree: last compatible version newer than 17"
        );
        // Version 16 has no structure size field: the walk runs to FDT_END.
        let v16 = {
            let mut b = with(20, 16);
            b[36..40].copy_from_slice(&[0xff; 4]);
            b
        };
        assert_eq!(parse_fdt_its(&v16).unwrap().its[0].base, 0x0808_0000);
        // A structure block that ends before its FDT_END token.
        let struct_len = u32::from_be_bytes(blob[36..40].try_into().unwrap());
        assert_eq!(
            fdt_fault(&with(36, struct_len - 4)),
            "device tree: structure block ends before FDT_END"
        );
    }

    #[test]
    fn a_property_length_past_the_end_or_wrapping_the_cursor_is_an_error() {
        for len in [0x1000u32, 0xffff_fffc, 0xffff_ffff] {
            let mut fdt = Fdt::default();
            fdt.node("", |root| {
                root.bus(2, 2);
            });
            let mut blob = fdt.blob();
            // The first property's length field sits after the root's BEGIN_NODE, its empty
            // name (padded to 4) and the FDT_PROP token.
            let at = FDT_HEADER_LEN + 16 + 12;
            blob[at..at + 4].copy_from_slice(&len.to_be_bytes());
            assert_eq!(
                fdt_fault(&blob),
                "device tree: property value runs past the structure block"
            );
        }
    }

    #[test]
    fn malformed_structure_blocks_are_errors() {
        let blob_of = |build: &dyn Fn(&mut Fdt)| {
            let mut fdt = Fdt::default();
            build(&mut fdt);
            fdt.blob()
        };
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                blob_of(&|f| {
                    f.token(FDT_END_NODE);
                }),
                "device tree: FDT_END_NODE outside any node",
            ),
            (
                blob_of(&|f| {
                    f.prop("x", &[]);
                }),
                "device tree: property outside any node",
            ),
            (
                blob_of(&|f| {
                    f.token(FDT_BEGIN_NODE).token(0);
                }),
                "device tree: FDT_END inside a node",
            ),
            (
                blob_of(&|f| {
                    f.token(FDT_NOP);
                }),
                "device tree: no root node",
            ),
            (
                blob_of(&|f| {
                    f.node("", |_| {}).node("", |_| {});
                }),
                "device tree: a second root node",
            ),
            (
                blob_of(&|f| {
                    f.node("", |root| {
                        root.node("child", |_| {}).prop("late", &[]);
                    });
                }),
                "device tree: property after a subnode",
            ),
            (
                blob_of(&|f| {
                    f.token(7);
                }),
                "device tree: unknown structure token",
            ),
        ];
        for (blob, reason) in cases {
            assert_eq!(fdt_fault(&blob), reason);
        }
        // A node name with no NUL before the structure block ends (the FDT_END token, whose
        // zero bytes would end the name, overwritten).
        let mut unterminated = blob_of(&|f| {
            f.token(FDT_BEGIN_NODE);
            f.structure.extend_from_slice(b"name");
        });
        let end = FDT_HEADER_LEN + 16 + 8;
        unterminated[end..end + 4].copy_from_slice(b"more");
        assert_eq!(
            fdt_fault(&unterminated),
            "device tree: node name runs past the structure block"
        );
        // A property name offset past the strings block.
        let mut fdt = Fdt::default();
        fdt.node("", |root| {
            root.bus(2, 2);
        });
        let mut blob = fdt.blob();
        let at = FDT_HEADER_LEN + 16 + 16;
        blob[at..at + 4].copy_from_slice(&0x100u32.to_be_bytes());
        assert_eq!(
            fdt_fault(&blob),
            "device tree: property name outside the strings block"
        );
    }

    #[test]
    fn nesting_deeper_than_the_cap_is_an_error() {
        fn nest(fdt: &mut Fdt, depth: usize) {
            if depth > 0 {
                fdt.node("n", |inner| nest(inner, depth - 1));
            }
        }
        let mut ok = Fdt::default();
        nest(&mut ok, FDT_MAX_DEPTH);
        assert!(parse_fdt_its(&ok.blob()).is_ok());
        let mut deep = Fdt::default();
        nest(&mut deep, FDT_MAX_DEPTH + 1);
        assert_eq!(
            fdt_fault(&deep.blob()),
            "device tree: nodes nested deeper than 64"
        );
    }

    #[test]
    fn too_many_its_nodes_is_an_error_and_the_cap_bounds_the_work() {
        // 256 ITS nodes under one bus whose `ranges` has 4096 entries, none matching until the
        // last: the worst case the cap allows still finishes quickly.
        let build = |count: usize| {
            let mut ranges = Vec::new();
            for i in 0..4096u32 {
                ranges.extend_from_slice(&[0x8000_0000 + i, 0, 0x1]);
            }
            ranges.extend_from_slice(&[0, 0, 0x1000_0000]);
            let mut fdt = Fdt::default();
            fdt.node("", |root| {
                root.bus(1, 1);
                root.node("bus", |bus| {
                    bus.bus(1, 1).cells("ranges", &ranges);
                    for i in 0..count {
                        bus.node(&format!("its@{i:x}"), |its| {
                            its.its(&[0x2_0000 * i as u32, 0x2_0000]);
                        });
                    }
                });
            });
            fdt.blob()
        };
        let started = std::time::Instant::now();
        let found = parse_fdt_its(&build(FDT_MAX_ITS_NODES)).unwrap();
        assert_eq!(found.its.len(), FDT_MAX_ITS_NODES);
        assert_eq!(found.its[3].base, 0x6_0000);
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert_eq!(
            fdt_fault(&build(FDT_MAX_ITS_NODES + 1)),
            "device tree: more than 256 arm,gic-v3-its nodes"
        );
    }

    // --- ACPI MADT ----------------------------------------------------------------------------

    /// A MADT with the given interrupt controller structures and a correct checksum.
    fn madt(structures: &[Vec<u8>]) -> Vec<u8> {
        let mut table = b"APIC".to_vec();
        table.extend_from_slice(&[0; 4]); // length, below
        table.extend_from_slice(&[4, 0]); // revision, checksum (below)
        table.extend_from_slice(b"BOCHS BXPC    ");
        table.extend_from_slice(&[1, 0, 0, 0]);
        table.extend_from_slice(b"BXPC");
        table.extend_from_slice(&[1, 0, 0, 0]);
        table.extend_from_slice(&[0; 8]); // local interrupt controller address, flags
        for s in structures {
            table.extend_from_slice(s);
        }
        let len = table.len() as u32;
        table[4..8].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut table);
        table
    }

    fn fix_checksum(table: &mut [u8]) {
        table[9] = 0;
        let sum = table.iter().fold(0u8, |s, &b| s.wrapping_add(b));
        table[9] = 0u8.wrapping_sub(sum);
    }

    fn gic_its(its_id: u32, base: u64) -> Vec<u8> {
        let mut s = vec![MADT_TYPE_GIC_ITS, 20, 0, 0];
        s.extend_from_slice(&its_id.to_le_bytes());
        s.extend_from_slice(&base.to_le_bytes());
        s.extend_from_slice(&[0; 4]);
        s
    }

    /// A structure of another type (a GICD, type 0x0C, 24 bytes).
    fn gicd() -> Vec<u8> {
        let mut s = vec![0x0c, 24];
        s.resize(24, 0);
        s
    }

    fn madt_fault(table: &[u8]) -> (usize, &'static str) {
        match parse_madt_its(table) {
            Err(FirmwareError::Madt { offset, reason }) => (offset, reason),
            other => panic!("expected a MADT error, got {other:?}"),
        }
    }

    #[test]
    fn madt_with_one_its_at_the_qemu_virt_base() {
        let table = madt(&[gicd(), gic_its(0, 0x0808_0000)]);
        assert_eq!(
            parse_madt_its(&table).unwrap(),
            vec![ItsInfo {
                base: 0x0808_0000,
                doorbell: 0x0809_0040,
                source: ItsSource::AcpiMadt { its_id: 0 },
            }]
        );
    }

    #[test]
    fn madt_with_two_its_or_none() {
        let two = madt(&[gic_its(7, 0x2f02_0000), gicd(), gic_its(9, 0x2f04_0000)]);
        let bases: Vec<(u64, ItsSource)> = parse_madt_its(&two)
            .unwrap()
            .into_iter()
            .map(|i| (i.base, i.source))
            .collect();
        assert_eq!(
            bases,
            vec![
                (0x2f02_0000, ItsSource::AcpiMadt { its_id: 7 }),
                (0x2f04_0000, ItsSource::AcpiMadt { its_id: 9 }),
            ]
        );
        assert_eq!(parse_madt_its(&madt(&[gicd()])).unwrap(), vec![]);
    }

    #[test]
    fn madt_bad_checksum_is_an_error() {
        let mut table = madt(&[gic_its(0, 0x0808_0000)]);
        table[9] = table[9].wrapping_add(1);
        assert_eq!(
            parse_madt_its(&table),
            Err(FirmwareError::MadtChecksum { sum: 1 })
        );
    }

    #[test]
    fn madt_zero_length_structure_stops_with_an_error() {
        let table = madt(&[gicd(), vec![MADT_TYPE_GIC_ITS, 0, 0, 0], gic_its(0, 0x1000)]);
        assert_eq!(
            madt_fault(&table),
            (
                MADT_HEADER_LEN + 24,
                "ACPI MADT: structure length shorter than its header"
            )
        );
    }

    #[test]
    fn madt_structure_longer_than_the_table_is_an_error() {
        let mut long = gic_its(0, 0x0808_0000);
        long[1] = 40;
        let table = madt(&[gicd(), long]);
        assert_eq!(
            madt_fault(&table),
            (
                MADT_HEADER_LEN + 24,
                "ACPI MADT: structure runs past the table end"
            )
        );
    }

    #[test]
    fn madt_header_and_structure_faults() {
        let good = madt(&[gic_its(0, 0x0808_0000)]);
        assert_eq!(
            madt_fault(&good[..30]),
            (0, "ACPI MADT: shorter than the 36-byte table header")
        );
        let mut facp = good.clone();
        facp[..4].copy_from_slice(b"FACP");
        assert_eq!(madt_fault(&facp), (0, "ACPI MADT: signature is not APIC"));
        assert_eq!(
            madt_fault(&good[..good.len() - 1]),
            (4, "ACPI MADT: length field runs past the data")
        );
        let mut short = good.clone();
        short[4..8].copy_from_slice(&40u32.to_le_bytes());
        fix_checksum(&mut short);
        assert_eq!(
            madt_fault(&short),
            (4, "ACPI MADT: length field shorter than the MADT header")
        );
        let cut_header = madt(&[vec![0x0c]]);
        assert_eq!(
            madt_fault(&cut_header),
            (
                MADT_HEADER_LEN,
                "ACPI MADT: structure header cut off by the table end"
            )
        );
        let mut small_its = gic_its(0, 0x0808_0000);
        small_its.truncate(12);
        small_its[1] = 12;
        assert_eq!(
            madt_fault(&madt(&[small_its])),
            (
                MADT_HEADER_LEN,
                "ACPI MADT: GIC ITS structure shorter than 20 bytes"
            )
        );
        assert_eq!(
            madt_fault(&madt(&[gic_its(0, u64::MAX - 0x1000)])),
            (
                MADT_HEADER_LEN,
                "ACPI MADT: GIC ITS base leaves no room for GITS_TRANSLATER"
            )
        );
        // Bytes past the length field are not part of the table.
        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0xff; 7]);
        assert_eq!(parse_madt_its(&trailing).unwrap().len(), 1);
    }

    // --- reserved_regions -------------------------------------------------------------------

    const RIG_LINE: &str = "0x0000000008000000 0x00000000080fffff msi\n";

    #[test]
    fn the_rig_reserved_regions_line() {
        let regions = parse_reserved_regions(RIG_LINE).unwrap();
        let window = IovaRange {
            start: 0x800_0000,
            last: 0x80f_ffff,
        };
        assert_eq!(
            regions,
            vec![ReservedRegion {
                range: window,
                kind: RegionKind::Msi
            }]
        );
        assert_eq!(msi_window(&regions), Ok(Some(window)));
    }

    #[test]
    fn every_region_type_parses() {
        let text = "0x0000000000000000 0x0000000000000fff direct\n\
                    0x0000000000001000 0x0000000000001fff direct-relaxable\n\
                    0x0000000008000000 0x00000000080fffff msi\n\
                    0x00000000fee00000 0x00000000feefffff reserved\n\
                    0x0000000100000000 0x00000001ffffffff future-kind\n";
        let kinds: Vec<RegionKind> = parse_reserved_regions(text)
            .unwrap()
            .into_iter()
            .map(|r| r.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                RegionKind::Direct,
                RegionKind::DirectRelaxable,
                RegionKind::Msi,
                RegionKind::Reserved,
                RegionKind::Other("future-kind".into()),
            ]
        );
    }

    #[test]
    fn no_regions_means_no_msi_window_and_two_are_ambiguous() {
        assert_eq!(parse_reserved_regions(""), Ok(vec![]));
        assert_eq!(msi_window(&[]), Ok(None));
        let direct = parse_reserved_regions("0x0 0xfff direct").unwrap();
        assert_eq!(msi_window(&direct), Ok(None));
        let two = format!("{RIG_LINE}0x0000000008100000 0x000000000810ffff msi\n");
        assert_eq!(
            msi_window(&parse_reserved_regions(&two).unwrap()),
            Err(FirmwareError::AmbiguousMsiWindow { count: 2 })
        );
    }

    #[test]
    fn malformed_reserved_regions_lines_name_the_line() {
        let cases = [
            ("0x0000000008000000 0x00000000080fffff", "3 fields"),
            (
                "0x0000000008000000 0x00000000080fffff msi extra",
                "3 fields",
            ),
            ("", "3 fields"),
            ("0000000008000000 0x00000000080fffff msi", "start is not"),
            ("0x+000000008000000 0x00000000080fffff msi", "start is not"),
            ("0x 0x00000000080fffff msi", "start is not"),
            ("0x00000000080000000 0x00000000080fffff msi", "start is not"),
            ("0x0000000008000000 0x00000000080fffzz msi", "end is not"),
            ("0x0000000008000000 0x0000000007ffffff msi", "ends before"),
            (
                "0x0000000008000000 0x00000000080fffff m\u{e9}si",
                "not printable",
            ),
        ];
        for (bad, expected) in cases {
            let text = format!("{RIG_LINE}{RIG_LINE}{bad}\n{RIG_LINE}");
            match parse_reserved_regions(&text) {
                Err(FirmwareError::ReservedRegions { line: 3, reason }) => {
                    assert!(reason.contains(expected), "{bad:?}: {reason}")
                }
                other => panic!("{bad:?}: expected an error on line 3, got {other:?}"),
            }
        }
    }

    // --- IOVA holes and doorbell pages -----------------------------------------------------

    fn range(start: u64, last: u64) -> IovaRange {
        IovaRange { start, last }
    }

    #[test]
    fn the_rig_ioas_shows_the_msi_window_as_its_only_hole() {
        let ranges = [range(0, 0x7ff_ffff), range(0x810_0000, 0xffff_ffff_ffff)];
        assert_eq!(
            iova_holes(&ranges).unwrap(),
            vec![range(0x800_0000, 0x80f_ffff)]
        );
    }

    #[test]
    fn holes_cover_what_no_range_covers_below_the_top() {
        assert_eq!(iova_holes(&[]).unwrap(), vec![]);
        assert_eq!(iova_holes(&[range(0, u64::MAX)]).unwrap(), vec![]);
        // Unsorted, overlapping, touching and starting above 0.
        let ranges = [
            range(0x5000, u64::MAX),
            range(0x1000, 0x1fff),
            range(0x1800, 0x2fff),
            range(0x3000, 0x3fff),
        ];
        assert_eq!(
            iova_holes(&ranges).unwrap(),
            vec![range(0, 0xfff), range(0x4000, 0x4fff)]
        );
        assert!(matches!(
            iova_holes(&[range(2, 1)]),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn the_doorbell_is_at_offset_0x40_for_4k_16k_and_64k_pages() {
        let its = dt_its("/its", 0x0808_0000);
        for page_size in [0x1000, 0x4000, 0x1_0000] {
            assert_eq!(
                its.doorbell_page(page_size).unwrap(),
                DoorbellPage {
                    page: 0x0809_0000,
                    offset: 0x40
                }
            );
        }
        assert_eq!(
            doorbell_page(0x1234_5678, 0x1000).unwrap(),
            DoorbellPage {
                page: 0x1234_5000,
                offset: 0x678
            }
        );
        for bad in [0, 3, 0x3000, u64::MAX] {
            assert!(matches!(
                doorbell_page(0x0809_0040, bad),
                Err(Error::InvalidArgument(_))
            ));
        }
    }

    // --- Discovery over a directory tree ---------------------------------------------------

    /// A scratch root with the given firmware files, removed on drop.
    struct Root(PathBuf);

    impl Root {
        fn new(tag: &str, fdt: Option<&[u8]>, madt: Option<&[u8]>) -> Root {
            let dir =
                std::env::temp_dir().join(format!("vmsi-firmware-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            for (path, bytes) in [(FDT_PATH, fdt), (MADT_PATH, madt)] {
                if let Some(bytes) = bytes {
                    let file = dir.join(path);
                    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                    std::fs::write(file, bytes).unwrap();
                }
            }
            std::fs::create_dir_all(&dir).unwrap();
            Root(dir)
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn outcomes(d: &Discovery) -> Vec<(Firmware, SourceOutcome)> {
        d.looked_at()
            .iter()
            .map(|r| (r.firmware, r.outcome.clone()))
            .collect()
    }

    #[test]
    fn discovery_reads_the_device_tree_when_there_is_no_acpi() {
        let root = Root::new("dt", Some(&qemu_virt()), None);
        let d = discover_its_under(&root.0).unwrap();
        assert_eq!(d.doorbells(), vec![0x0809_0040]);
        let Discovery::Found { firmware, its, .. } = &d else {
            panic!("expected an ITS, got {d:?}");
        };
        assert_eq!(*firmware, Firmware::DeviceTree);
        assert_eq!(its, &vec![dt_its("/intc@8000000/its@8080000", 0x0808_0000)]);
        assert_eq!(
            outcomes(&d),
            vec![
                (Firmware::AcpiMadt, SourceOutcome::Absent),
                (
                    Firmware::DeviceTree,
                    SourceOutcome::Parsed {
                        its: 1,
                        skipped: vec![]
                    }
                ),
            ]
        );
        assert_eq!(d.looked_at()[1].path, root.0.join("sys/firmware/fdt"));
    }

    #[test]
    fn discovery_prefers_acpi_and_leaves_the_stub_device_tree_alone() {
        // The device tree here is garbage: it must not be read when ACPI is in use.
        let table = madt(&[gic_its(0, 0x0808_0000)]);
        let root = Root::new("acpi", Some(b"not a device tree"), Some(&table));
        let d = discover_its_under(&root.0).unwrap();
        assert_eq!(d.its().len(), 1);
        assert_eq!(d.its()[0].source, ItsSource::AcpiMadt { its_id: 0 });
        assert!(matches!(
            d,
            Discovery::Found {
                firmware: Firmware::AcpiMadt,
                ..
            }
        ));
        assert_eq!(
            outcomes(&d),
            vec![
                (
                    Firmware::AcpiMadt,
                    SourceOutcome::Parsed {
                        its: 1,
                        skipped: vec![]
                    }
                ),
                (Firmware::DeviceTree, SourceOutcome::NotInUse),
            ]
        );
    }

    #[test]
    fn discovery_without_any_its_is_a_typed_answer() {
        let none = Root::new("none", None, None);
        let d = discover_its_under(&none.0).unwrap();
        assert_eq!(
            d,
            Discovery::NoIts {
                looked_at: vec![
                    SourceReport {
                        firmware: Firmware::AcpiMadt,
                        path: none.0.join(MADT_PATH),
                        outcome: SourceOutcome::Absent
                    },
                    SourceReport {
                        firmware: Firmware::DeviceTree,
                        path: none.0.join(FDT_PATH),
                        outcome: SourceOutcome::Absent
                    },
                ]
            }
        );
        assert!(d.its().is_empty());
        assert!(d.doorbells().is_empty());

        let acpi_without_its = Root::new("gicv2m", None, Some(&madt(&[gicd()])));
        assert!(matches!(
            discover_its_under(&acpi_without_its.0).unwrap(),
            Discovery::NoIts { .. }
        ));

        let mut fdt = Fdt::default();
        fdt.node("", |root| {
            root.bus(2, 2);
            root.node("gic", |gic| {
                gic.bus(2, 2);
                gic.node("its", |its| {
                    its.its(&[0, 0x0808_0000, 0, 0x2_0000]);
                });
            });
        });
        let untranslatable = Root::new("noranges", Some(&fdt.blob()), None);
        let d = discover_its_under(&untranslatable.0).unwrap();
        assert_eq!(
            outcomes(&d)[1].1,
            SourceOutcome::Parsed {
                its: 0,
                skipped: vec![SkippedIts {
                    path: "/gic/its".into(),
                    reason: SkipReason::NoRanges { at: "/gic".into() }
                }]
            }
        );
        assert!(matches!(d, Discovery::NoIts { .. }));
    }

    #[test]
    fn discovery_reports_a_malformed_table_in_use_as_an_error() {
        let mut table = madt(&[gic_its(0, 0x0808_0000)]);
        table[9] ^= 0xff;
        let root = Root::new("badsum", Some(&qemu_virt()), Some(&table));
        assert!(matches!(
            discover_its_under(&root.0),
            Err(Error::Firmware(FirmwareError::MadtChecksum { .. }))
        ));
        let root = Root::new("baddt", Some(&qemu_virt()[..100]), None);
        assert!(matches!(
            discover_its_under(&root.0),
            Err(Error::Firmware(FirmwareError::DeviceTree {
                reason: "device tree: totalsize outside the blob",
                ..
            }))
        ));
    }

    // --- Property tests: hostile input never panics, and what is returned is consistent ----

    fn check_fdt(blob: &[u8]) {
        if let Ok(found) = parse_fdt_its(blob) {
            assert!(found.its.len() + found.skipped.len() <= FDT_MAX_ITS_NODES);
            for its in &found.its {
                assert_eq!(its.doorbell, its.base + GITS_TRANSLATER);
                assert!(
                    matches!(&its.source, ItsSource::DeviceTree { path } if path.starts_with('/'))
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn fdt_parser_survives_arbitrary_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..512)
        ) {
            check_fdt(&bytes);
            // The same bytes behind a valid header, so the structure walk sees them: structure
            // and strings blocks both start right after the header and overlap.
            let len = bytes.len() as u32;
            let start = FDT_HEADER_LEN as u32;
            let header = [FDT_MAGIC, start + len, start, start, 0, 17, 16, 0, len / 2, len];
            let mut blob: Vec<u8> = header.iter().flat_map(|w| w.to_be_bytes()).collect();
            blob.extend_from_slice(&bytes);
            check_fdt(&blob);
        }

        #[test]
        fn fdt_parser_survives_corrupted_trees(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
        ) {
            let mut blob = qemu_virt();
            for (at, byte) in edits {
                let at = at.index(blob.len());
                blob[at] = byte;
            }
            check_fdt(&blob);
        }

        #[test]
        fn madt_parser_survives_arbitrary_bytes(
            body in proptest::collection::vec(any::<u8>(), 0..512),
            keep_length in any::<bool>(),
        ) {
            let _ = parse_madt_its(&body);
            // Past the header checks (signature, length, checksum) into the structure walk.
            let mut table = madt(&[]);
            table.extend_from_slice(&body);
            if keep_length {
                let len = table.len() as u32;
                table[4..8].copy_from_slice(&len.to_le_bytes());
            }
            fix_checksum(&mut table);
            if let Ok(its) = parse_madt_its(&table) {
                prop_assert!(its.len() * MADT_GIC_ITS_LEN <= table.len());
                for i in its {
                    prop_assert_eq!(i.doorbell, i.base + GITS_TRANSLATER);
                }
            }
        }

        #[test]
        fn reserved_regions_parser_survives_arbitrary_text(text in "\\PC{0,300}") {
            if let Ok(regions) = parse_reserved_regions(&text) {
                prop_assert!(regions.len() <= text.lines().count());
                for r in regions {
                    prop_assert!(r.range.start <= r.range.last);
                }
            }
        }

        #[test]
        fn reserved_regions_parser_survives_near_valid_lines(
            lines in proptest::collection::vec(
                "(0x[0-9a-fA-F+ ]{0,18}|[0-9x]{0,4}) {1,2}(0x[0-9a-f]{0,17})?( [a-z-]{0,18})?( x)?",
                0..8,
            )
        ) {
            let text = lines.join("\n");
            match parse_reserved_regions(&text) {
                Ok(regions) => prop_assert_eq!(regions.len(), lines.len()),
                Err(FirmwareError::ReservedRegions { line, .. }) => {
                    prop_assert!(line >= 1 && line <= lines.len())
                }
                Err(other) => prop_assert!(false, "unexpected error {:?}", other),
            }
        }

        #[test]
        fn holes_and_ranges_partition_the_space_below_the_top(
            raw in proptest::collection::vec((0u64..1 << 12, 0u64..1 << 8), 0..12)
        ) {
            let ranges: Vec<IovaRange> =
                raw.iter().map(|&(start, len)| range(start, start + len)).collect();
            let holes = iova_holes(&ranges).unwrap();
            let top = ranges.iter().map(|r| r.last).max();
            for h in &holes {
                prop_assert!(h.start <= h.last && Some(h.last) < top);
                for r in &ranges {
                    prop_assert!(h.last < r.start || h.start > r.last, "{:?} overlaps {:?}", h, r);
                }
            }
            // Every IOVA below the top is in a range or a hole: the sizes add up.
            let mut covered = std::collections::BTreeSet::new();
            for r in &ranges {
                covered.extend(r.start..=r.last);
            }
            let hole_size: u64 = holes.iter().map(|h| h.last - h.start + 1).sum();
            if let Some(top) = top {
                prop_assert_eq!(covered.len() as u64 + hole_size, top + 1);
            }
        }
    }
}
