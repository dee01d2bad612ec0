//! Device DMA through the SMMU on the real kernel, driven by QEMU's `edu` DMA engine:
//! with a paging domain the data lands exactly at the memory the IOAS maps at the IOVA and
//! nowhere else; where the host allows a vIOMMU (the rig's ACPI + CANWBS mode), a nested
//! domain bypasses, aborts, or translates through a guest-owned stage 1 that follows the
//! guest's invalidations.
//!
//! The device tests are `#[ignore]`d: they need the rig (`tests/rig/run.sh`), which runs
//! them with `--include-ignored` and `VMSI_BACKEND=host`.

mod common;
mod support;

use common::{Env, open_bound, rig};
use support::edu::{self, Edu};
use support::pci;
use support::s1::{Attr, S1Error, Stage1};
use vmsi::{Device, DmaMemory, Error, Feature, Hwpt, Ioas, Iommufd, Prot, Ste, Vdevice, Viommu};

const PAGE: usize = 4096;
/// Bytes per transfer: enough to tell a pattern from leftovers, well inside edu's buffer.
const LEN: usize = 256;
/// Bytes per transfer that is meant to fault: QEMU's SMMU reports a fault per 4-byte
/// access, so short transfers keep the kernel log readable.
const FAULT_LEN: usize = 16;
const WINDOW: u64 = vmsi_sys::SMMUV3_SW_MSI_BASE;

/// `LEN` bytes, none zero, different for each seed.
fn pattern(seed: u8) -> Vec<u8> {
    (0..LEN)
        .map(|k| (k as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

fn read(mem: &DmaMemory, offset: usize, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    mem.read(offset, &mut b).expect("read DMA memory");
    b
}

fn zeros(len: usize) -> Vec<u8> {
    vec![0; len]
}

/// Maps `mem` whole at `iova`, readable and writable by the device.
fn map(ioas: &Ioas, mem: &DmaMemory, iova: u64) {
    ioas.map_memory(mem, 0, mem.len() as u64, Some(iova), Prot::ReadWrite)
        .expect("IOAS map");
}

#[test]
#[ignore = "needs the rig's real devices"]
fn paging_dma_lands_at_the_memory_the_ioas_maps_at_the_iova() {
    let e = rig();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = open_bound(&e, &fd, &e.edu);
    dev.attach_ioas(&ioas).unwrap();
    let edu = Edu::new(&dev).expect("edu");
    assert_eq!(edu.id().unwrap(), edu::ID);
    edu.check_alive(0x5a5a_0001).expect("edu answers");

    // Two separate buffers at two IOVAs: whatever lands in one came through its IOVA.
    const A: u64 = 0x10_0000;
    const B: u64 = 0x20_0000;
    let a = DmaMemory::new(PAGE).unwrap();
    let b = DmaMemory::new(PAGE).unwrap();
    map(&ioas, &a, A);
    map(&ioas, &b, B);

    // Memory -> device -> memory, from A to B at an offset: the device read what the CPU
    // wrote at A, and its write landed byte-exact at B + 0x80.
    let p1 = pattern(1);
    a.write(0, &p1).unwrap();
    edu.dma_to_device(A, 0, LEN).unwrap();
    edu.dma_to_ram(0, B + 0x80, LEN).unwrap();
    assert_eq!(read(&b, 0x80, LEN), p1, "A -> edu -> B");
    assert_eq!(read(&b, 0, 0x80), zeros(0x80), "nothing before B + 0x80");
    assert_eq!(
        read(&b, 0x80 + LEN, PAGE - 0x80 - LEN),
        zeros(PAGE - 0x80 - LEN),
        "nothing after it"
    );
    assert_eq!(read(&a, 0, LEN), p1, "the source is untouched");

    // And the other way, through another part of edu's buffer.
    let p2 = pattern(2);
    b.write(0x400, &p2).unwrap();
    edu.dma_to_device(B + 0x400, 0x800, LEN).unwrap();
    edu.dma_to_ram(0x800, A + 0x200, LEN).unwrap();
    assert_eq!(read(&a, 0x200, LEN), p2, "B -> edu -> A");
    assert_eq!(read(&a, 0, LEN), p1, "A's first bytes are untouched");
}

#[test]
#[ignore = "needs the rig's real devices"]
fn paging_dma_to_an_unmapped_iova_does_not_land() {
    let e = rig();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = open_bound(&e, &fd, &e.edu);
    dev.attach_ioas(&ioas).unwrap();
    let edu = Edu::new(&dev).expect("edu");

    const SRC: u64 = 0x10_0000;
    const VICTIM: u64 = 0x30_0000;
    let src = DmaMemory::new(PAGE).unwrap();
    let victim = DmaMemory::new(PAGE).unwrap();
    map(&ioas, &src, SRC);
    map(&ioas, &victim, VICTIM);

    // While mapped, the device writes the victim page.
    let p1 = pattern(11);
    src.write(0, &p1).unwrap();
    edu.dma_to_device(SRC, 0, LEN).unwrap();
    edu.dma_to_ram(0, VICTIM, LEN).unwrap();
    assert_eq!(read(&victim, 0, LEN), p1);

    // Unmapped, the same write goes nowhere. edu's DMA engine has no error status: the
    // transfer "completes" (the SMMU dropped the write and logged a translation fault).
    assert_eq!(ioas.unmap(VICTIM, PAGE as u64).unwrap(), PAGE as u64);
    let p2 = pattern(12);
    src.write(0, &p2).unwrap();
    edu.dma_to_device(SRC, 0, LEN).unwrap();
    edu.dma_to_ram(0, VICTIM, FAULT_LEN)
        .expect("edu completes the transfer without error");
    assert_eq!(
        read(&victim, 0, LEN),
        p1,
        "the write to the unmapped IOVA did not land"
    );

    // Nor can the device read memory that is no longer mapped: what reaches its buffer is
    // not the page's content (QEMU's bus returns zeros for a faulting read).
    let secret = pattern(13);
    victim.write(0, &secret).unwrap();
    edu.dma_to_device(VICTIM, 0, FAULT_LEN).unwrap();
    edu.dma_to_ram(0, SRC + 0x800, FAULT_LEN).unwrap();
    let got = read(&src, 0x800, FAULT_LEN);
    assert_ne!(got, secret[..FAULT_LEN], "the device read an unmapped IOVA");
    assert_eq!(got, zeros(FAULT_LEN), "a faulting device read yields zeros");
}

/// IPA of the nested tests' data pages in the IOAS (the nest parent's stage 2).
const DATA_IPA: u64 = 0x10_0000;
const DATA_PAGES: usize = 4;
/// IPA of the stage-1 tables.
const S1_IPA: u64 = 0x30_0000;
const S1_PAGES: usize = 8;
/// Where the guest's stage 1 puts the data: a VA that neither the IOAS nor a bypassing
/// stage 1 would make reachable.
const VA: u64 = 0x100_0000;
const ASID: u16 = 7;

/// edu on a nest-parent stage 2 with a vIOMMU and its vDEVICE. Fields drop in order: the
/// driver first, the iommufd last.
struct Nested {
    edu: Edu,
    _vdev: Vdevice,
    viommu: Viommu,
    data: DmaMemory,
    ioas: Ioas,
    dev: Device,
    vsid: u64,
    _fd: Iommufd,
}

impl Nested {
    /// The byte at `offset` of data page `page`, as the device sees it: its IPA.
    fn ipa(page: usize, offset: usize) -> u64 {
        DATA_IPA + (page * PAGE + offset) as u64
    }

    fn page(&self, page: usize) -> Vec<u8> {
        read(&self.data, page * PAGE, LEN)
    }
}

/// Sets edu up on a nest parent and checks DMA through stage 2 alone (which works in
/// every mode), then makes the vIOMMU. In device-tree mode the host has neither CANWBS nor
/// S2FWB: that `Viommu::alloc` says so, typed, is asserted and the answer is `None`.
fn nested_edu(e: &Env) -> Option<Nested> {
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = open_bound(e, &fd, &e.edu);
    let parent = Hwpt::alloc_paging(&ioas, &dev, true).expect("nest parent");
    dev.attach_hwpt(&parent).unwrap();
    let data = DmaMemory::new(DATA_PAGES * PAGE).unwrap();
    map(&ioas, &data, DATA_IPA);
    let edu = Edu::new(&dev).expect("edu");

    let p = pattern(21);
    data.write(0, &p).unwrap();
    edu.dma_to_device(DATA_IPA, 0, LEN).unwrap();
    edu.dma_to_ram(0, Nested::ipa(3, 0), LEN).unwrap();
    assert_eq!(read(&data, 3 * PAGE, LEN), p, "DMA through the nest parent");
    data.write(3 * PAGE, &zeros(LEN)).unwrap();
    data.write(0, &zeros(LEN)).unwrap();

    let viommu = match Viommu::alloc(&parent, &dev) {
        Ok(v) => {
            assert!(e.nested, "a vIOMMU in {} mode", common::rig_mode());
            v
        }
        Err(Error::Unsupported {
            feature: Feature::Viommu,
            ..
        }) if !e.nested => return None,
        Err(other) => panic!("vIOMMU in {} mode: {other:?}", common::rig_mode()),
    };
    let bdf = pci::bdf_of(&e.edu).expect("edu's PCI address");
    let vsid = pci::rid(&bdf).expect("a requester id") as u64;
    let vdev = viommu.alloc_vdevice(&dev, vsid).expect("vDEVICE");
    Some(Nested {
        edu,
        _vdev: vdev,
        viommu,
        data,
        ioas,
        dev,
        vsid,
        _fd: fd,
    })
}

#[test]
#[ignore = "needs the rig's real devices"]
fn nested_bypass_lands_at_the_ipa_and_abort_blocks_dma() {
    let e = rig();
    let Some(n) = nested_edu(&e) else { return };
    let bypass = Hwpt::alloc_nested(&n.viommu, &n.dev, Ste::bypass()).unwrap();
    let abort = Hwpt::alloc_nested(&n.viommu, &n.dev, Ste::abort()).unwrap();

    // Stage-1 bypass: the device address is the IPA, translated by stage 2 only.
    n.dev.attach_hwpt(&bypass).unwrap();
    let p1 = pattern(31);
    n.data.write(0, &p1).unwrap();
    n.edu.dma_to_device(Nested::ipa(0, 0), 0, LEN).unwrap();
    n.edu.dma_to_ram(0, Nested::ipa(1, 0), LEN).unwrap();
    assert_eq!(n.page(1), p1, "bypass: DMA lands at IPA = IOVA");

    // Abort: neither writes nor reads get through.
    n.dev.attach_hwpt(&abort).unwrap();
    n.edu.dma_to_ram(0, Nested::ipa(2, 0), FAULT_LEN).unwrap();
    assert_eq!(n.page(2), zeros(LEN), "abort: the write did not land");
    let p2 = pattern(32);
    n.data.write(0, &p2).unwrap();
    n.edu
        .dma_to_device(Nested::ipa(0, 0), 0, FAULT_LEN)
        .unwrap();
    // Back on bypass, see what the aborted read left in edu's buffer.
    n.dev.attach_hwpt(&bypass).unwrap();
    n.edu.dma_to_ram(0, Nested::ipa(3, 0), FAULT_LEN).unwrap();
    assert_ne!(
        read(&n.data, 3 * PAGE, FAULT_LEN),
        p2[..FAULT_LEN],
        "abort: the device read memory"
    );
    assert_eq!(n.page(1), p1, "nothing else changed");
}

#[test]
#[ignore = "needs the rig's real devices"]
fn nested_stage1_translates_the_va_to_the_ipa_it_maps_and_faults_the_rest() {
    let e = rig();
    let Some(n) = nested_edu(&e) else { return };
    let mut s1 = Stage1::new(&n.ioas, S1_IPA, S1_PAGES, ASID).expect("stage 1");
    s1.map(VA, Nested::ipa(0, 0), Attr::Normal).unwrap();
    s1.map(VA + PAGE as u64, Nested::ipa(1, 0), Attr::Normal)
        .unwrap();
    let hwpt = Hwpt::alloc_nested(&n.viommu, &n.dev, s1.ste()).unwrap();
    n.dev.attach_hwpt(&hwpt).unwrap();

    // VA -> IPA -> memory, both ways: read at VA (page 0), written at VA + 4 KiB (page 1).
    let p = pattern(41);
    n.data.write(0, &p).unwrap();
    n.edu.dma_to_device(VA, 0, LEN).unwrap();
    n.edu.dma_to_ram(0, VA + PAGE as u64 + 0x10, LEN).unwrap();
    assert_eq!(
        read(&n.data, PAGE + 0x10, LEN),
        p,
        "the write to VA + 0x1010 landed at IPA {:#x}",
        Nested::ipa(1, 0x10)
    );
    assert_eq!(n.page(2), zeros(LEN), "and nowhere else");
    assert_eq!(n.page(3), zeros(LEN), "and nowhere else");

    // A VA the stage 1 does not map faults, even where stage 2 maps the same number as an
    // IPA: the stage 1 really is in the path (a bypass would have landed in page 2).
    n.edu.dma_to_ram(0, Nested::ipa(2, 0), FAULT_LEN).unwrap();
    assert_eq!(n.page(2), zeros(LEN), "an unmapped VA did not land");
    n.edu
        .dma_to_ram(0, VA + 2 * PAGE as u64, FAULT_LEN)
        .unwrap();
    assert_eq!(n.page(2), zeros(LEN), "the next, unmapped VA did not land");
    assert_eq!(n.page(3), zeros(LEN));
}

#[test]
#[ignore = "needs the rig's real devices"]
fn nested_dma_follows_the_stage1_after_a_guest_invalidation() {
    let e = rig();
    let Some(n) = nested_edu(&e) else { return };
    let mut s1 = Stage1::new(&n.ioas, S1_IPA, S1_PAGES, ASID).expect("stage 1");
    // VA + 4 KiB is the source (page 1); VA is the destination, first page 2.
    s1.map(VA + PAGE as u64, Nested::ipa(1, 0), Attr::Normal)
        .unwrap();
    s1.map(VA, Nested::ipa(2, 0), Attr::Normal).unwrap();
    let hwpt = Hwpt::alloc_nested(&n.viommu, &n.dev, s1.ste()).unwrap();
    n.dev.attach_hwpt(&hwpt).unwrap();

    let p1 = pattern(51);
    n.data.write(PAGE, &p1).unwrap();
    n.edu.dma_to_device(VA + PAGE as u64, 0, LEN).unwrap();
    n.edu.dma_to_ram(0, VA, LEN).unwrap();
    assert_eq!(n.page(2), p1, "before: VA -> page 2");

    // The guest moves VA to page 3 and invalidates as a guest driver does; the commands
    // reach the physical SMMU through the vIOMMU.
    s1.map(VA, Nested::ipa(3, 0), Attr::Normal).unwrap();
    assert_eq!(
        n.viommu.invalidate(&s1.invalidation(n.vsid)).unwrap(),
        2,
        "TLBI_NH_ASID + CFGI_CD handled"
    );
    let p2 = pattern(52);
    n.data.write(PAGE, &p2).unwrap();
    n.edu.dma_to_device(VA + PAGE as u64, 0, LEN).unwrap();
    n.edu.dma_to_ram(0, VA, LEN).unwrap();
    assert_eq!(n.page(3), p2, "after: VA -> page 3");
    assert_eq!(n.page(2), p1, "page 2 no longer receives");
}

#[test]
#[ignore = "needs the rig's real devices"]
fn a_stage1_fault_reaches_the_guest_through_the_veventq() {
    let e = rig();
    let Some(n) = nested_edu(&e) else { return };
    let queue = n.viommu.alloc_veventq(64).unwrap();
    let mut s1 = Stage1::new(&n.ioas, S1_IPA, S1_PAGES, ASID).expect("stage 1");
    s1.map(VA, Nested::ipa(0, 0), Attr::Normal).unwrap();
    let hwpt = Hwpt::alloc_nested(&n.viommu, &n.dev, s1.ste()).unwrap();
    n.dev.attach_hwpt(&hwpt).unwrap();
    assert_eq!(queue.read().unwrap(), None, "nothing has faulted yet");
    // A DMA to a VA the guest's stage 1 does not map: the SMMU reports a stage-1
    // translation fault, which the kernel hands to the guest's queue with the vSID.
    n.edu
        .dma_to_ram(0, VA + 8 * PAGE as u64, FAULT_LEN)
        .unwrap();
    let event = support::poll_until(std::time::Duration::from_secs(5), || queue.read())
        .expect("reading the vEVENTQ")
        .expect("an event within the deadline");
    const F_TRANSLATION: u64 = 0x10;
    assert_eq!(event.evt[0] & 0xff, F_TRANSLATION, "{event:x?}");
    assert_eq!(
        event.evt[0] >> 32,
        n.vsid,
        "the StreamID is the guest's vSID: {event:x?}"
    );
    // The faulting input address is the VA (event record word 2).
    assert_eq!(event.evt[2] & !0xfff, VA + 8 * PAGE as u64, "{event:x?}");
    assert!(!event.lost_before);
}

/// The stage-1 builder itself (no device): its CD and descriptors match the reference
/// probe's, and its own table walk finds what it mapped. Runs on Sim and on the rig.
#[test]
fn stage1_builder_writes_the_probe_s_context_and_walks_its_tables() {
    let e = common::env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let mut s1 = Stage1::new(&ioas, S1_IPA, S1_PAGES, ASID).unwrap();
    // shared/rig/probe.c: T0SZ 25, IR0/OR0 WBWA, SH0 ISH, EPD1, V, IPS 40-bit, AA64, R, A,
    // ASET, ASID 7; TTB0 = the level-1 table right after the CD; MAIR 0x00ff.
    assert_eq!(
        s1.cd_words()[..4],
        [0x0007_e202_c000_3519, S1_IPA + 0x1000, 0, 0xff]
    );
    assert_eq!(s1.ste().0, [0x30_000b, 0xd4]);
    // The IOAS holds the tables where the SMMU will look.
    assert_eq!(
        ioas.unmap(S1_IPA, s1.len()).unwrap(),
        (S1_PAGES * PAGE) as u64
    );

    s1.map(VA, DATA_IPA, Attr::Normal).unwrap();
    s1.identity(WINDOW, PAGE as u64, Attr::Device).unwrap();
    // The probe's leaf (AF, inner shareable, RW at EL0/1, page) plus nG for TLBI by ASID.
    assert_eq!(s1.descriptor(VA).unwrap(), DATA_IPA | 0xf43);
    assert_eq!(s1.descriptor(WINDOW).unwrap(), WINDOW | 0xf43 | (1 << 2));
    assert_eq!(s1.translate(VA + 0x123).unwrap(), Some(DATA_IPA + 0x123));
    assert_eq!(s1.translate(WINDOW + 0x40).unwrap(), Some(WINDOW + 0x40));
    assert_eq!(s1.translate(VA + PAGE as u64).unwrap(), None);
    assert_eq!(s1.translate(0).unwrap(), None);
    assert!(s1.unmap(WINDOW).unwrap());
    assert!(!s1.unmap(WINDOW).unwrap());
    assert_eq!(s1.translate(WINDOW + 0x40).unwrap(), None);
    assert_eq!(
        s1.invalidation(0x8),
        [[0x11 | (7 << 48), 0], [0x05 | (0x8 << 32), 1]]
    );

    assert!(matches!(
        s1.map(VA + 1, DATA_IPA, Attr::Normal),
        Err(S1Error::Unaligned(_))
    ));
    assert!(matches!(
        s1.map(1 << 39, DATA_IPA, Attr::Normal),
        Err(S1Error::VaTooLarge(_))
    ));
    // Only the CD and the level-1 table fit: no room for a level-2 table.
    let ioas2 = fd.alloc_ioas().unwrap();
    let mut tiny = Stage1::new(&ioas2, S1_IPA, 2, ASID).unwrap();
    assert!(matches!(
        tiny.map(VA, DATA_IPA, Attr::Normal),
        Err(S1Error::OutOfTables)
    ));
}
