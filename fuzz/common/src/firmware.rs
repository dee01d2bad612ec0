//! Target `firmware`: the pure parsers of what firmware, sysfs and the kernel hand over.
//!
//! The input is raw bytes: the first byte picks the parser, the rest is what it parses
//! (raw bytes are what these parsers read, so libFuzzer's byte-level mutations apply as is).
//! Invariants: no panic; errors are typed and display; and what each parser returns is
//! consistent with its input:
//! * device tree and MADT: every ITS's doorbell is its base + `GITS_TRANSLATER`;
//! * `reserved_regions`: one region per line, each `start <= last`, and printing the regions
//!   the way the kernel does parses back to the same regions;
//! * `iova_holes`: holes are ordered, disjoint from every range, and ranges plus holes cover
//!   every IOVA from 0 to the highest range end without a gap;
//! * PCI config space: capability offsets and vector counts are within the PCI limits;
//! * SMMUv3 ID registers, doorbell pages, the kernel MSI window, STE words: each decoded
//!   field stays in its encoding's range, and predicted host messages stay in the window.

use vmsi::msi::KernelWindow;
use vmsi::msi::firmware::{
    GITS_TRANSLATER, ItsSource, RegionKind, ReservedRegion, doorbell_page, iova_holes, msi_window,
    parse_fdt_its, parse_madt_its, parse_reserved_regions,
};
use vmsi::pci::{CAP_ID_MSIX, MsiCapability, MsixCapability, find_capability};
use vmsi::{Error, HwInfo, IovaRange, Smmuv3Info, Ste};

/// Which parser the first byte selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Parser {
    /// `parse_fdt_its` on the bytes.
    Fdt = 0,
    /// `parse_madt_its` on the bytes.
    Madt = 1,
    /// `parse_madt_its` after fixing the length field and checksum (to get past them).
    MadtFixed = 2,
    /// `parse_reserved_regions` (+ `msi_window`) on the text.
    ReservedRegions = 3,
    /// `iova_holes` on 16-byte `(start, last)` little-endian pairs.
    IovaHoles = 4,
    /// PCI capability parsing on config space bytes.
    PciConfig = 5,
    /// SMMUv3 ID registers (8 little-endian words) and the hw_info flags.
    Smmuv3 = 6,
    /// Doorbell pages and the kernel MSI window: little-endian words.
    Window = 7,
    /// Nested STE words from a CD table address and size.
    Ste = 8,
}

const PARSERS: [Parser; 9] = [
    Parser::Fdt,
    Parser::Madt,
    Parser::MadtFixed,
    Parser::ReservedRegions,
    Parser::IovaHoles,
    Parser::PciConfig,
    Parser::Smmuv3,
    Parser::Window,
    Parser::Ste,
];

/// A fuzz input for `parser`.
pub fn input(parser: Parser, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![parser as u8];
    v.extend_from_slice(payload);
    v
}

/// Runs one input.
pub fn fuzz(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match PARSERS[usize::from(which) % PARSERS.len()] {
        Parser::Fdt => fdt(rest),
        Parser::Madt => madt(rest),
        Parser::MadtFixed => madt(&fix_acpi(rest)),
        Parser::ReservedRegions => reserved(&String::from_utf8_lossy(rest)),
        Parser::IovaHoles => holes(&pairs(rest)),
        Parser::PciConfig => pci(rest),
        Parser::Smmuv3 => smmuv3(rest),
        Parser::Window => window(rest),
        Parser::Ste => ste(rest),
    }
}

fn word(b: &[u8], k: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(8 * k..) {
        let n = s.len().min(8);
        w[..n].copy_from_slice(&s[..n]);
    }
    u64::from_le_bytes(w)
}

fn pairs(b: &[u8]) -> Vec<IovaRange> {
    (0..(b.len() / 16).min(256))
        .map(|k| IovaRange {
            start: word(b, 2 * k),
            last: word(b, 2 * k + 1),
        })
        .collect()
}

/// Sets an ACPI table's length field to the data length and fixes its checksum.
pub fn fix_acpi(b: &[u8]) -> Vec<u8> {
    let mut t = b.to_vec();
    if t.len() >= 36 {
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t[9] = 0;
        let sum = t.iter().fold(0u8, |s, &x| s.wrapping_add(x));
        t[9] = 0u8.wrapping_sub(sum);
    }
    t
}

fn its_ok(base: u64, doorbell: u64) {
    assert_eq!(base.checked_add(GITS_TRANSLATER), Some(doorbell));
}

fn fdt(blob: &[u8]) {
    match parse_fdt_its(blob) {
        Ok(found) => {
            assert!(found.its.len() + found.skipped.len() <= 256);
            for its in &found.its {
                its_ok(its.base, its.doorbell);
                let ItsSource::DeviceTree { path } = &its.source else {
                    panic!("{its:?} from a device tree");
                };
                assert!(path.starts_with('/'), "{path}");
                let p = its.doorbell_page(4096).expect("4K is a page size");
                assert_eq!(p.page + p.offset, its.doorbell);
            }
            for s in &found.skipped {
                assert!(!s.reason.to_string().is_empty());
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn madt(table: &[u8]) {
    match parse_madt_its(table) {
        Ok(its) => {
            assert!(its.len() <= table.len().saturating_sub(44) / 20);
            for i in &its {
                its_ok(i.base, i.doorbell);
                assert!(matches!(i.source, ItsSource::AcpiMadt { .. }), "{i:?}");
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn kind_name(k: &RegionKind) -> &str {
    match k {
        RegionKind::Direct => "direct",
        RegionKind::DirectRelaxable => "direct-relaxable",
        RegionKind::Msi => "msi",
        RegionKind::Reserved => "reserved",
        RegionKind::Other(s) => s,
    }
}

/// Prints regions the way the kernel's `iommu_group_show_resv_regions` does.
pub fn print_regions(regions: &[ReservedRegion]) -> String {
    regions
        .iter()
        .map(|r| {
            format!(
                "0x{:016x} 0x{:016x} {}\n",
                r.range.start,
                r.range.last,
                kind_name(&r.kind)
            )
        })
        .collect()
}

fn reserved(text: &str) {
    match parse_reserved_regions(text) {
        Ok(regions) => {
            assert_eq!(regions.len(), text.lines().count());
            for r in &regions {
                assert!(r.range.start <= r.range.last, "{r:?}");
            }
            let again = parse_reserved_regions(&print_regions(&regions))
                .expect("the kernel's own format parses");
            assert_eq!(again, regions, "print and parse again");
            let msi: Vec<_> = regions
                .iter()
                .filter(|r| r.kind == RegionKind::Msi)
                .collect();
            match msi_window(&regions) {
                Ok(None) => assert!(msi.is_empty()),
                Ok(Some(w)) => assert!(msi.len() == 1 && msi[0].range == w),
                Err(e) => {
                    assert!(msi.len() >= 2);
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// Checks `iova_holes` against `ranges`.
pub fn holes(ranges: &[IovaRange]) {
    let bad = ranges.iter().any(|r| r.last < r.start);
    let holes = match iova_holes(ranges) {
        Ok(h) => {
            assert!(!bad, "a backwards range was accepted");
            h
        }
        Err(e) => {
            assert!(bad, "valid ranges refused: {e}");
            assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
            return;
        }
    };
    for w in holes.windows(2) {
        assert!(
            w[0].last < w[1].start,
            "holes out of order or overlapping: {w:?}"
        );
    }
    for h in &holes {
        assert!(h.start <= h.last);
        for r in ranges {
            assert!(
                h.last < r.start || r.last < h.start,
                "hole {h:?} overlaps {r:?}"
            );
        }
    }
    // Ranges and holes together cover 0 ..= the highest range end, with no gap.
    let mut all: Vec<IovaRange> = ranges.iter().chain(holes.iter()).copied().collect();
    all.sort_unstable_by_key(|r| r.start);
    let mut next = Some(0u64);
    for r in &all {
        let Some(n) = next else { break };
        assert!(
            r.start <= n,
            "IOVAs {n:#x}..{:#x} are in no range and no hole",
            r.start
        );
        if r.last >= n {
            next = r.last.checked_add(1);
        }
    }
    if let Some(t) = ranges.iter().map(|r| r.last).max() {
        assert_eq!(next, t.checked_add(1), "coverage ends at the highest range");
    }
}

fn pci(config: &[u8]) {
    let mut padded = config.to_vec();
    if padded.len() < 256 {
        padded.resize(256, 0);
    }
    for c in [config, &padded[..]] {
        if let Some(m) = MsixCapability::parse(c) {
            assert_eq!(find_capability(c, CAP_ID_MSIX), Some(m.offset));
            assert!((0x40..=0xfc).contains(&m.offset) && m.offset % 4 == 0);
            assert!((1..=2048).contains(&m.vectors));
            assert!(m.table_bar < 8 && m.pba_bar < 8);
            assert!(m.table_offset % 8 == 0 && m.pba_offset % 8 == 0);
        }
        if let Some(m) = MsiCapability::parse(c) {
            assert!(m.vectors.is_power_of_two() && m.vectors <= 32, "{m:?}");
            assert!((0x40..=0xfc).contains(&m.offset));
        }
    }
}

fn smmuv3(b: &[u8]) {
    let w32 = |k: usize| word(b, k / 2).wrapping_shr(32 * (k as u32 % 2)) as u32;
    let s = Smmuv3Info {
        idr: [w32(0), w32(1), w32(2), w32(3), w32(4), w32(5)],
        iidr: w32(6),
        aidr: w32(7),
    };
    assert_eq!(s.nesting(), s.stage1() && s.stage2());
    assert!(s.ttf() <= 3 && s.st_level() <= 3 && s.bbml() <= 3);
    assert!(s.sid_bits() <= 63 && s.ssid_bits() <= 31);
    assert!([32, 36, 40, 42, 44, 48, 52].contains(&s.oas_bits()));
    let _ = (s.coherent(), s.ats(), s.asid16(), s.msi(), s.vmid16());
    let _ = (s.had(), s.fwb(), s.ril(), s.granules());
    let info = HwInfo {
        data_type: w32(8),
        capabilities: word(b, 5),
        max_pasid_log2: b.get(48).copied().unwrap_or(0),
        smmuv3: Some(s),
    };
    let ats_off = u64::from(vmsi_sys::names::IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);
    assert_eq!(info.ats(), info.capabilities & ats_off == 0);
}

fn window(b: &[u8]) {
    let (doorbell, page_size) = (word(b, 0), word(b, 1));
    match doorbell_page(doorbell, page_size) {
        Ok(p) => {
            assert!(page_size.is_power_of_two());
            assert_eq!(p.page % page_size, 0);
            assert!(p.offset < page_size);
            assert_eq!(p.page | p.offset, doorbell);
        }
        Err(e) => {
            assert!(!page_size.is_power_of_two());
            assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        }
    }
    let w = IovaRange {
        start: word(b, 2),
        last: word(b, 3),
    };
    let Ok(kw) = KernelWindow::new(w, page_size) else {
        return;
    };
    assert!(page_size.is_power_of_two() && w.start.is_multiple_of(page_size) && w.start <= w.last);
    let len = (w.last - w.start)
        .checked_add(1)
        .expect("new() refuses a full range");
    assert!(len >= page_size);
    let pages = kw.pages();
    assert!(pages >= 1);
    let index = word(b, 4);
    match kw.host_message(doorbell, index) {
        Ok(m) => {
            assert!(index < pages);
            // The device writes the doorbell's offset inside a whole page of the window.
            let page_start = m.address - (m.address & (page_size - 1));
            assert!(
                w.start <= page_start
                    && page_start
                        .checked_add(page_size - 1)
                        .is_some_and(|e| e <= w.last),
                "host message {:#x} of page {index} is not in a whole page of {w:?} ({pages} pages of {page_size:#x})",
                m.address
            );
            assert_eq!(m.address & (page_size - 1), doorbell & (page_size - 1));
        }
        Err(e) => {
            assert!(index >= pages, "{e}");
        }
    }
    let ram = pairs(b.get(40..).unwrap_or(&[]));
    let overlaps = ram.iter().any(|r| r.start <= w.last && w.start <= r.last);
    assert_eq!(kw.check_guest_ram(&ram).is_err(), overlaps);
    let rmr = kw.rmr();
    assert_eq!((rmr.base, rmr.length), (w.start, len));
}

fn ste(b: &[u8]) {
    let (cd_table, bits) = (word(b, 0), word(b, 1) as u32);
    let valid = cd_table & 0x3f == 0 && cd_table >> 52 == 0 && bits <= 20;
    match Ste::s1(cd_table, bits) {
        Some(s) => {
            assert!(valid);
            let w0 = s.0[0];
            assert_eq!((w0 & 1, (w0 >> 1) & 7), (1, 5));
            assert_eq!(w0 & ((1 << 52) - 0x40), cd_table);
            assert_eq!((w0 >> 59) as u32, bits);
            let bytes = s.to_bytes();
            assert_eq!(u64::from_le_bytes(bytes[..8].try_into().unwrap()), w0);
            assert_eq!(u64::from_le_bytes(bytes[8..].try_into().unwrap()), s.0[1]);
        }
        None => assert!(!valid),
    }
}

/// Seeds: QEMU `virt`'s device trees and MADT (the repository's fixtures), the rig's
/// `reserved_regions`, IOVA ranges as the rig's kernel reports them, the rig's SMMU, the
/// kernel window.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    const DTB: &[u8] = include_bytes!("../../../tests/fixtures/firmware/qemu-virt-gicv3-its.dtb");
    const ACPI_DTB: &[u8] =
        include_bytes!("../../../tests/fixtures/firmware/qemu-virt-acpi-fdt.dtb");
    const MADT: &[u8] = include_bytes!("../../../tests/fixtures/firmware/qemu-virt-madt.bin");
    let le = |ws: &[u64]| ws.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    let mut config = vec![0u8; 256];
    config[6] = 0x10;
    config[0x34] = 0x40;
    config[0x40..0x44].copy_from_slice(&[0x05, 0x50, 0x80, 0x01]);
    config[0x50..0x5c].copy_from_slice(&[0x11, 0, 64, 0, 0x00, 0x20, 0, 0, 0x00, 0x30, 0, 0]);
    let smmu = [
        0x0273_0010_0d44_101b,
        0x0000_1414_0000_0000,
        0x0000_0074_0000_0000,
        0x0000_0001_0000_0000,
        2,
        0,
    ];
    vec![
        ("fdt-qemu-virt", input(Parser::Fdt, DTB)),
        ("fdt-qemu-virt-acpi", input(Parser::Fdt, ACPI_DTB)),
        ("madt-qemu-virt", input(Parser::Madt, MADT)),
        ("madt-qemu-virt-fixed", input(Parser::MadtFixed, MADT)),
        (
            "reserved-regions-rig",
            input(
                Parser::ReservedRegions,
                b"0x0000000008000000 0x00000000080fffff msi\n",
            ),
        ),
        (
            "reserved-regions-mixed",
            input(
                Parser::ReservedRegions,
                b"0x0000000000000000 0x0000000000000fff direct\n\
                  0x0000000008000000 0x00000000080fffff msi\n\
                  0x00000000fee00000 0x00000000feefffff reserved\n",
            ),
        ),
        (
            "iova-ranges-attached",
            input(
                Parser::IovaHoles,
                &le(&[0, 0x7ff_ffff, 0x810_0000, (1 << 48) - 1]),
            ),
        ),
        (
            "iova-ranges-full",
            input(Parser::IovaHoles, &le(&[0, u64::MAX])),
        ),
        ("pci-config-nvme", input(Parser::PciConfig, &config)),
        ("smmuv3-rig", input(Parser::Smmuv3, &le(&smmu))),
        (
            "kernel-window-rig",
            input(
                Parser::Window,
                &le(&[
                    0x0809_0040,
                    4096,
                    0x800_0000,
                    0x80f_ffff,
                    0,
                    0x4000_0000,
                    0x7fff_ffff,
                ]),
            ),
        ),
        ("ste-s1", input(Parser::Ste, &le(&[0x30_0000, 0]))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_run_clean() {
        for (name, s) in seeds() {
            fuzz(&s);
            assert!(!name.is_empty());
        }
    }

    #[test]
    fn the_madt_fixture_parses_after_fixing_and_a_truncation_does_not() {
        let s = seeds();
        let madt = &s.iter().find(|(n, _)| *n == "madt-qemu-virt").unwrap().1[1..];
        assert_eq!(parse_madt_its(&fix_acpi(madt)).unwrap().len(), 1);
        assert!(parse_madt_its(&madt[..40]).is_err());
    }

    #[test]
    fn holes_checks_find_the_msi_window() {
        let r = [
            IovaRange {
                start: 0,
                last: 0x7ff_ffff,
            },
            IovaRange {
                start: 0x810_0000,
                last: (1 << 48) - 1,
            },
        ];
        holes(&r);
        assert_eq!(
            iova_holes(&r).unwrap(),
            vec![IovaRange {
                start: 0x800_0000,
                last: 0x80f_ffff
            }]
        );
    }
}
