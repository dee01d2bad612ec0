//! MSI delivery on the real kernel, raised by the devices themselves: each MSI is a DMA
//! write of the vector's message through the SMMU to the GICv3 ITS, which the host turns
//! into the vector's eventfd. edu raises its one MSI on request; nvme raises MSI-X vector
//! k when a command completes on an I/O queue created with interrupt vector k. Under a
//! guest-owned nested stage 1 the MSI arrives only while the guest's stage 1 maps the
//! doorbell page (as a guest does for an IORT RMR).
//!
//! The tests are `#[ignore]`d: they need the rig (`tests/rig/run.sh`), which runs them
//! with `--include-ignored` and `VMSI_BACKEND=host`.

mod common;
mod support;

use std::os::fd::AsFd;
use std::path::Path;

use common::{eventfd, open_bound, rig};
use support::edu::{self, Edu};
use support::nvme::{Nvme, assert_only_vector_fires, io_vector_eventfds, msix_set};
use support::pci::{self, MsiMessage};
use support::s1::{Attr, Stage1};
use support::{IRQ_DEADLINE, NO_IRQ_WAIT, counts, drain, fired_within};
use vmsi::pci::MsixCapability;
use vmsi::{DmaMemory, Error, Feature, Hwpt, Iommufd, Prot, Viommu};
use vmsi_sys::vfio as v;

const MSIX: u32 = v::VFIO_PCI_MSIX_IRQ_INDEX;
const PAGE: u64 = 4096;
const WINDOW: u64 = vmsi_sys::SMMUV3_SW_MSI_BASE;
/// The host message address of every vector: the ITS doorbell page the kernel maps at the
/// start of the SMMU's software MSI window, plus GITS_TRANSLATER's offset in that page.
const DOORBELL: u64 = WINDOW + 0x40;

fn physical_msi(cdev: &Path) -> MsiMessage {
    let bdf = pci::bdf_of(cdev).expect("PCI address of the cdev");
    let config = pci::physical_config(&bdf).expect("sysfs config");
    pci::msi_message(&config).expect("an MSI capability")
}

#[test]
#[ignore = "needs the rig's real devices"]
fn edu_msi_raised_by_the_device_reaches_its_eventfd() {
    let e = rig();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = open_bound(&e, &fd, &e.edu);
    dev.attach_ioas(&ioas).unwrap();
    let edu = Edu::new(&dev).expect("edu");
    let efd = eventfd();
    edu.enable_msi(efd.as_fd()).unwrap();

    // What the kernel wrote into the device: the doorbell in the software MSI window, and
    // the ITS EventID of edu's only vector.
    assert_eq!(
        physical_msi(&e.edu),
        MsiMessage {
            enabled: true,
            address: DOORBELL,
            data: 0
        }
    );

    // The device raises, the eventfd fires; after the handler's ack, again.
    for round in 0..3 {
        let reason = 1 << round;
        assert_eq!(
            drain(&efd),
            0,
            "round {round}: nothing pending before the raise"
        );
        edu.raise(reason).unwrap();
        assert!(fired_within(&efd, IRQ_DEADLINE) >= 1, "round {round}: MSI");
        assert_eq!(edu.ack().unwrap(), reason, "round {round}: status");
    }

    // An interrupt on DMA completion travels the same way, after the data.
    let mem = DmaMemory::new(PAGE as usize).unwrap();
    ioas.map_memory(&mem, 0, PAGE, Some(0x10_0000), Prot::ReadWrite)
        .unwrap();
    edu.dma_to_ram_then_interrupt(0, 0x10_0000, 64).unwrap();
    assert!(fired_within(&efd, IRQ_DEADLINE) >= 1, "DMA-completion MSI");
    assert_eq!(edu.ack().unwrap(), edu::DMA_IRQ);

    edu.disable_msi().unwrap();
    assert!(!physical_msi(&e.edu).enabled, "MSI off in the device");
}

#[test]
#[ignore = "needs the rig's real devices"]
fn nvme_msix_vectors_each_fire_from_a_completion_on_their_own_queue() {
    const QUEUES: u16 = 4;
    const QUEUE_IOVA: u64 = 0x20_0000;
    let e = rig();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = open_bound(&e, &fd, &e.nvme[0]);
    dev.attach_ioas(&ioas).unwrap();
    let io = io_vector_eventfds(QUEUES);
    dev.enable_irqs(MSIX, &msix_set(&io)).unwrap();

    // The host messages in the device's MSI-X table: one doorbell, data = EventID.
    let cap = MsixCapability::read(&dev).unwrap().expect("nvme has MSI-X");
    let table = dev.map_region(cap.table_bar).unwrap();
    for k in 1..=QUEUES as usize {
        let entry = cap.table_offset as usize + 16 * k;
        assert_eq!(
            table.read_u64(entry).unwrap(),
            DOORBELL,
            "vector {k} address"
        );
        assert_eq!(
            table.read_u32(entry + 8).unwrap(),
            k as u32,
            "vector {k} data"
        );
        assert_eq!(
            table.read_u32(entry + 12).unwrap() & 1,
            0,
            "vector {k} unmasked"
        );
    }

    let mem = DmaMemory::new(Nvme::memory_len(QUEUES)).unwrap();
    ioas.map_memory(&mem, 0, mem.len() as u64, Some(QUEUE_IOVA), Prot::ReadWrite)
        .unwrap();
    let mut nvme = Nvme::new(&dev, mem, QUEUE_IOVA, QUEUES).expect("nvme");
    nvme.enable().expect("controller ready");
    let id = nvme.identify_controller().expect("identify");
    assert_eq!((id.vid, id.serial.as_str()), (0x1b36, "vmsi-rig-0"));
    for q in 1..=QUEUES {
        nvme.create_io_queue_pair(q, q)
            .unwrap_or_else(|e| panic!("queue pair {q}: {e:?}"));
    }
    assert_eq!(
        counts(&io),
        vec![0; io.len()],
        "admin completions use vector 0"
    );

    for q in 1..=QUEUES {
        assert_only_vector_fires(&mut nvme, &io, q, "flush");
    }

    // Data moves through the same queues: a block written from queue 1 reads back on the
    // last one, and each completion raises its own queue's vector.
    let lba = nvme.lba_size(1).expect("namespace 1");
    let block: Vec<u8> = (0..lba).map(|k| (k as u8) ^ 0xa5).collect();
    nvme.memory().write(nvme.data_offset(1), &block).unwrap();
    nvme.write_block(1, 7).expect("write");
    assert!(
        fired_within(&io[0], IRQ_DEADLINE) >= 1,
        "write raised vector 1"
    );
    let last = QUEUES;
    nvme.read_block(last, 7).expect("read");
    assert!(
        fired_within(&io[last as usize - 1], IRQ_DEADLINE) >= 1,
        "read raised vector {last}"
    );
    let mut got = vec![0u8; lba];
    nvme.memory()
        .read(nvme.data_offset(last), &mut got)
        .unwrap();
    assert_eq!(got, block, "the block read back");
    assert_eq!(counts(&io), vec![0; io.len()]);

    // Vector 0 gets an eventfd on the live device; the admin queue's next completion fires
    // it (and, once unmasked, whatever it had pending), and no I/O vector.
    let admin = eventfd();
    dev.set_vector_eventfd(MSIX, 0, Some(admin.as_fd()))
        .unwrap();
    nvme.identify_controller().expect("identify");
    assert!(fired_within(&admin, IRQ_DEADLINE) >= 1, "vector 0");
    assert_eq!(counts(&io), vec![0; io.len()], "no I/O vector");
}

#[test]
#[ignore = "needs the rig's real devices"]
fn nested_nvme_msix_needs_the_guest_stage1_to_map_the_doorbell() {
    const QUEUES: u16 = 2;
    /// IPA (and, identity-mapped, stage-1 VA) of the queues and data pages.
    const QUEUE_IPA: u64 = 0x40_0000;
    const S1_IPA: u64 = 0x30_0000;
    let e = rig();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = open_bound(&e, &fd, &e.nvme[0]);
    let parent = Hwpt::alloc_paging(&ioas, &dev, true).expect("nest parent");
    dev.attach_hwpt(&parent).unwrap();
    let viommu = match Viommu::alloc(&parent, &dev) {
        Ok(v) => {
            assert!(e.nested, "a vIOMMU in {} mode", common::rig_mode());
            v
        }
        Err(Error::Unsupported {
            feature: Feature::Viommu,
            ..
        }) if !e.nested => return,
        Err(other) => panic!("vIOMMU in {} mode: {other:?}", common::rig_mode()),
    };
    let bdf = pci::bdf_of(&e.nvme[0]).expect("PCI address");
    let vsid = pci::rid(&bdf).expect("requester id") as u64;
    let _vdev = viommu.alloc_vdevice(&dev, vsid).expect("vDEVICE");

    let io = io_vector_eventfds(QUEUES);
    dev.enable_irqs(MSIX, &msix_set(&io)).unwrap();
    let mem = DmaMemory::new(Nvme::memory_len(QUEUES)).unwrap();
    let len = mem.len() as u64;
    ioas.map_memory(&mem, 0, len, Some(QUEUE_IPA), Prot::ReadWrite)
        .unwrap();

    // The guest's stage 1: its queue memory identity-mapped, and the doorbell page of the
    // MSI window identity-mapped as device memory (what a guest does for an IORT RMR).
    let mut s1 = Stage1::new(&ioas, S1_IPA, 8, 9).expect("stage 1");
    s1.identity(QUEUE_IPA, len, Attr::Normal).unwrap();
    s1.identity(WINDOW, PAGE, Attr::Device).unwrap();
    let nested = Hwpt::alloc_nested(&viommu, &dev, s1.ste()).expect("nested S1");
    dev.attach_hwpt(&nested).unwrap();

    let mut nvme = Nvme::new(&dev, mem, QUEUE_IPA, QUEUES).expect("nvme");
    nvme.enable().expect("controller ready through stage 1");
    let id = nvme
        .identify_controller()
        .expect("identify through stage 1");
    assert_eq!(id.vid, 0x1b36);
    for q in 1..=QUEUES {
        nvme.create_io_queue_pair(q, q)
            .unwrap_or_else(|e| panic!("queue pair {q}: {e:?}"));
    }
    for q in 1..=QUEUES {
        assert_only_vector_fires(&mut nvme, &io, q, "doorbell mapped");
    }

    // The guest unmaps its doorbell page and invalidates: the command still completes (its
    // queue is mapped) but the MSI write faults in stage 1 and never arrives.
    assert!(s1.unmap(WINDOW).unwrap());
    assert_eq!(viommu.invalidate(&s1.invalidation(vsid)).unwrap(), 2);
    for q in 1..=QUEUES {
        nvme.flush(q).expect("flush completes without its MSI");
        assert_eq!(
            fired_within(&io[q as usize - 1], NO_IRQ_WAIT),
            0,
            "vector {q} arrived through an unmapped doorbell"
        );
        assert_eq!(counts(&io), vec![0; io.len()]);
    }

    // Mapped again and invalidated, each vector arrives again.
    s1.identity(WINDOW, PAGE, Attr::Device).unwrap();
    assert_eq!(viommu.invalidate(&s1.invalidation(vsid)).unwrap(), 2);
    for q in 1..=QUEUES {
        assert_only_vector_fires(&mut nvme, &io, q, "doorbell mapped again");
    }
}
