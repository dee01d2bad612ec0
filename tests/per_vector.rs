//! The per-vector MSI uAPI of the rig's reference kernel (`tests/rig/kernel/patches/`):
//! per-device software MSI windows, per-vector MSI IOVAs and userspace-placed doorbell
//! pages, proven with real MSIs from the rig's nvme, in paging and nested domains.
//!
//! Where each test runs:
//! * the rig's `per-vector` mode (`VMSI_RIG_KERNEL=per-vector`): everything, on the kernel;
//! * the stock rig modes: the stock kernel must refuse each call as "not this kernel", and
//!   the library must fall back to the kernel's window;
//! * `cargo test` on a development machine: the uAPI tests on `Sim`, which models the
//!   reference kernel, so Sim is held to the kernel's answers by the same assertions.

mod common;
mod support;

use std::os::fd::AsFd;

use common::{Env, on_host, open_bound, rig, sim_env};
use nix::sys::eventfd::EventFd;
use support::edu::Edu;
use support::nvme::{Nvme, assert_only_vector_fires, io_vector_eventfds, msix_set};
use support::pci::{self, MsiMessage};
use support::s1::{Attr, Stage1};
use support::{IRQ_DEADLINE, fired_within};
use vmsi::msi::{
    Composer, Domain, DoorbellMap, HostAddressing, HostMessage, IrqIndex, MsiDevice, Strategy,
    probe,
};
use vmsi::pci::MsixCapability;
use vmsi::seam::SimConfig;
use vmsi::{
    Device, DmaMemory, Errno, Error, Feature, Hwpt, Ioas, Iommufd, Prot, SwMsiWindow, Viommu,
};
use vmsi_sys::vfio as v;

const MSIX: u32 = v::VFIO_PCI_MSIX_IRQ_INDEX;
const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;
/// The SMMUv3 driver's software MSI window.
const DRIVER_WINDOW: SwMsiWindow = SwMsiWindow {
    start: vmsi_sys::SMMUV3_SW_MSI_BASE,
    size: MIB,
};
/// GITS_TRANSLATER's offset in the ITS doorbell page.
const DOORBELL_OFFSET: u32 = 0x40;
/// Where these tests move the software MSI window: clear of everything they map.
const MOVED_WINDOW: SwMsiWindow = SwMsiWindow {
    start: 0x4000_0000,
    size: 2 * MIB,
};
/// IOVAs of the doorbell pages in the paging tests, one page per vector.
const MSI_IOVAS: u64 = 0x1000_0000;
/// Queue memory.
const QUEUE_IOVA: u64 = 0x20_0000;

/// The kernel under test has the per-vector uAPI: the rig's per-vector mode, or Sim.
fn reference_kernel() -> bool {
    !on_host() || std::env::var("VMSI_RIG_KERNEL").as_deref() == Ok("per-vector")
}

/// The environment: the rig's, or a Sim modelling the reference kernel.
fn uapi_env() -> Env {
    if on_host() {
        common::env()
    } else {
        sim_env(SimConfig {
            proposed_uapi: true,
            ..SimConfig::default()
        })
    }
}

fn errno(r: Result<impl std::fmt::Debug, Error>) -> Errno {
    match r {
        Err(e) => e.errno().unwrap_or_else(|| panic!("an errno, not {e:?}")),
        Ok(x) => panic!("expected an error, got {x:?}"),
    }
}

/// Each I/O queue `q` raises vector `q`: its eventfd fires, and no other.
fn each_vector_fires_alone(nvme: &mut Nvme, io: &[EventFd], why: &str) {
    for q in 1..=io.len() as u16 {
        assert_only_vector_fires(nvme, io, q, why);
    }
}

/// True on the reference kernel. On a stock kernel it checks that the kernel refuses each
/// part of the uAPI the calling test needs, so that the test proves something there too,
/// and returns false.
fn has_per_vector_uapi(ioas: &Ioas, dev: &Device) -> bool {
    if reference_kernel() {
        return true;
    }
    assert!(
        matches!(
            ioas.map_msi_doorbell(dev, MSI_IOVAS),
            Err(Error::Unsupported {
                errno: Errno::ENOTTY,
                ..
            })
        ),
        "a stock kernel has no IOMMU_IOAS_MAP_MSI"
    );
    assert_eq!(
        errno(dev.prepare_msi_iovas(MSIX, 0, &[MSI_IOVAS])),
        Errno::EINVAL
    );
    assert_eq!(errno(dev.sw_msi_window()), Errno::EOPNOTSUPP);
    false
}

/// A fresh iommufd with an IOAS, and the first nvme bound to it.
fn first_nvme(e: &Env) -> (Iommufd, Ioas, Device) {
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = open_bound(e, &fd, &e.nvme[0]);
    (fd, ioas, dev)
}

/// The address and data the kernel wrote into MSI-X entry `k` of `dev`.
fn msix_entry(dev: &Device, k: usize) -> (u64, u32) {
    let cap = MsixCapability::read(dev).unwrap().expect("MSI-X");
    let table = dev.map_region(cap.table_bar).unwrap();
    let entry = cap.table_offset as usize + 16 * k;
    (
        table.read_u64(entry).unwrap(),
        table.read_u32(entry + 8).unwrap(),
    )
}

/// Brings up nvme I/O queues 1..=`queues`, each on its own vector.
fn nvme_with_queues(dev: &Device, mem: DmaMemory, base: u64, queues: u16) -> Nvme {
    let mut nvme = Nvme::new(dev, mem, base, queues).expect("nvme");
    nvme.enable().expect("controller ready");
    for q in 1..=queues {
        nvme.create_io_queue_pair(q, q)
            .unwrap_or_else(|e| panic!("queue pair {q}: {e:?}"));
    }
    nvme
}

#[test]
fn the_probe_finds_the_per_vector_strategies_only_on_the_reference_kernel() {
    let e = uapi_env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let dev = open_bound(&e, &fd, &e.nvme[0]);
    let report = probe(&fd, &dev).unwrap();
    let available = |s| report.finding(s).expect("a finding").available;
    assert!(available(Strategy::KernelWindow));
    assert_eq!(
        available(Strategy::UserWindow),
        reference_kernel(),
        "{report}"
    );
    assert_eq!(
        available(Strategy::PerVector),
        reference_kernel(),
        "{report}"
    );
    let chosen = if reference_kernel() {
        Strategy::PerVector
    } else {
        Strategy::KernelWindow
    };
    assert_eq!(report.chosen, chosen, "{report}");
    // The probe changed nothing: the window is the driver's, no vector needs an IOVA.
    let ioas = fd.alloc_ioas().unwrap();
    dev.attach_ioas(&ioas).unwrap();
    let io = io_vector_eventfds(2);
    dev.enable_irqs(MSIX, &msix_set(&io)).unwrap();
}

#[test]
fn a_stock_kernel_refuses_each_call_as_absent() {
    if on_host() && reference_kernel() {
        return;
    }
    // The rig's stock kernel, or Sim without the proposed uAPI.
    let e = if on_host() {
        common::env()
    } else {
        sim_env(SimConfig::default())
    };
    let (_fd, ioas, dev) = first_nvme(&e);
    assert!(matches!(
        ioas.map_msi_doorbell(&dev, MSI_IOVAS),
        Err(Error::Unsupported {
            feature: Feature::PerVectorMsiIova,
            errno: Errno::ENOTTY,
            ..
        })
    ));
    assert_eq!(
        errno(dev.prepare_msi_iovas(MSIX, 0, &[MSI_IOVAS])),
        Errno::EINVAL
    );
    assert_eq!(errno(dev.sw_msi_window()), Errno::EOPNOTSUPP);
}

/// The uAPI's rules, with the errno of each refusal; on Sim and on the reference kernel.
#[test]
fn the_window_options_follow_the_reference_rules() {
    let e = uapi_env();
    let (_fd, ioas, dev) = first_nvme(&e);
    if !has_per_vector_uapi(&ioas, &dev) {
        return;
    }
    assert_eq!(dev.sw_msi_window().unwrap(), DRIVER_WINDOW);
    let unaligned = SwMsiWindow {
        start: MOVED_WINDOW.start + PAGE,
        ..MOVED_WINDOW
    };
    assert_eq!(errno(dev.set_sw_msi_window(unaligned)), Errno::EINVAL);
    assert_eq!(dev.sw_msi_window().unwrap(), DRIVER_WINDOW, "unchanged");
    dev.set_sw_msi_window(MOVED_WINDOW).unwrap();
    assert_eq!(dev.sw_msi_window().unwrap(), MOVED_WINDOW);

    // A window over memory already mapped in the IOAS: attach fails with EADDRINUSE.
    let mem = DmaMemory::new(PAGE as usize).unwrap();
    ioas.map_memory(
        &mem,
        0,
        PAGE,
        Some(MOVED_WINDOW.start + MIB),
        Prot::ReadWrite,
    )
    .unwrap();
    assert_eq!(errno(dev.attach_ioas(&ioas)), Errno::EADDRINUSE);
    ioas.unmap(MOVED_WINDOW.start + MIB, PAGE).unwrap();

    // Attached, the moved window is the IOAS's one hole, and it cannot move any more.
    dev.attach_ioas(&ioas).unwrap();
    let (ranges, _) = ioas.iova_ranges().unwrap();
    let holes = vmsi::msi::firmware::iova_holes(&ranges).unwrap();
    assert_eq!(holes.len(), 1, "{ranges:?}");
    assert_eq!(
        (holes[0].start, holes[0].last),
        (
            MOVED_WINDOW.start,
            MOVED_WINDOW.start + MOVED_WINDOW.size - 1
        )
    );
    assert_eq!(errno(dev.set_sw_msi_window(DRIVER_WINDOW)), Errno::EBUSY);
}

#[test]
fn msi_iovas_and_doorbell_maps_follow_the_reference_rules() {
    let e = uapi_env();
    let (_fd, ioas, dev) = first_nvme(&e);
    if !has_per_vector_uapi(&ioas, &dev) {
        return;
    }

    // Doorbell pages: page-aligned IOVAs only, never inside a reserved window, once.
    assert_eq!(
        errno(ioas.map_msi_doorbell(&dev, MSI_IOVAS + 0x40)),
        Errno::EINVAL
    );
    let page = ioas.map_msi_doorbell(&dev, MSI_IOVAS).unwrap();
    assert_eq!((page.len, page.doorbell_offset), (PAGE, DOORBELL_OFFSET));
    assert_eq!(errno(ioas.map_msi_doorbell(&dev, MSI_IOVAS)), Errno::EEXIST);
    // Only a device bound to this iommufd has a doorbell here.
    let other_fd = Iommufd::open(e.kernel.clone()).unwrap();
    let stranger = open_bound(&e, &other_fd, &e.nvme[1]);
    let _ = other_fd.alloc_ioas().unwrap();
    let r = ioas.map_msi_doorbell(&stranger, MSI_IOVAS + PAGE);
    assert!(
        matches!(errno(r), Errno::ENOENT),
        "a device of another iommufd"
    );
    dev.attach_ioas(&ioas).unwrap();
    assert_eq!(
        errno(ioas.map_msi_doorbell(&dev, DRIVER_WINDOW.start)),
        Errno::EINVAL,
        "inside the reserved software MSI window (iopt_check_iova)"
    );

    // MSI IOVAs: at least one, page aligned, and every enabled vector needs one.
    assert_eq!(errno(dev.prepare_msi_iovas(MSIX, 0, &[])), Errno::EINVAL);
    assert_eq!(
        errno(dev.prepare_msi_iovas(MSIX, 0, &[MSI_IOVAS, MSI_IOVAS + 8])),
        Errno::EINVAL
    );
    dev.prepare_msi_iovas(MSIX, 0, &[MSI_IOVAS, MSI_IOVAS])
        .unwrap();
    let io = io_vector_eventfds(3);
    assert_eq!(
        errno(dev.enable_irqs(MSIX, &msix_set(&io))),
        Errno::ENOENT,
        "vectors 2 and 3 have no IOVA"
    );
    // Nothing leaked: with IOVAs for all four the same device enables them.
    dev.prepare_msi_iovas(MSIX, 2, &[MSI_IOVAS, MSI_IOVAS])
        .unwrap();
    dev.enable_irqs(MSIX, &msix_set(&io)).unwrap();
    assert_eq!(
        errno(dev.prepare_msi_iovas(MSIX, 1, &[MSI_IOVAS])),
        Errno::EBUSY,
        "an enabled vector's IOVA is fixed"
    );
    assert_eq!(errno(dev.clear_msi_iovas(MSIX, 0, 0)), Errno::EBUSY);
    dev.disable_irqs(MSIX).unwrap();
    // Cleared, the device is back on the kernel's window.
    dev.clear_msi_iovas(MSIX, 0, 0).unwrap();
    dev.enable_irqs(MSIX, &msix_set(&io)).unwrap();
    ioas.unmap(MSI_IOVAS, PAGE).unwrap();
}

/// The library's PerVector bring-up: all 65 nvme vectors get their IOVAs before one
/// SET_IRQS enables them, and the kernel programs each vector's own address.
#[test]
fn msi_device_brings_up_every_vector_at_its_own_iova() {
    let e = uapi_env();
    let (_fd, ioas, dev) = first_nvme(&e);
    if !has_per_vector_uapi(&ioas, &dev) {
        return;
    }
    let vectors = dev.irq_info(MSIX).unwrap().count as u64;
    // Four doorbell pages, vector k on page k % 4.
    let pages: Vec<_> = (0..4)
        .map(|p| ioas.map_msi_doorbell(&dev, MSI_IOVAS + p * PAGE).unwrap())
        .collect();
    let iovas: Vec<u64> = (0..vectors).map(|k| pages[k as usize % 4].iova).collect();
    let composer = Composer {
        domain: Domain::Paging,
        host: HostAddressing::PerVector,
        doorbells: DoorbellMap::paging(&[0x0809_0040]).unwrap(),
        devid: 0,
    };
    let offset = pages[0].doorbell_offset;

    // Refused before attach (the library never enables an unattached device): the IOVAs
    // it gave the kernel are taken back, so a window bring-up afterwards is untouched.
    let r = MsiDevice::bring_up_per_vector(
        dev.clone(),
        IrqIndex::Msix,
        composer.clone(),
        &iovas,
        offset,
    );
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    assert!(matches!(
        MsiDevice::bring_up_per_vector(
            dev.clone(),
            IrqIndex::Msix,
            composer.clone(),
            &iovas[1..],
            offset
        ),
        Err(Error::InvalidArgument(_))
    ));
    dev.attach_ioas(&ioas).unwrap();
    let window = Composer {
        host: HostAddressing::Window {
            address: DRIVER_WINDOW.start + u64::from(offset),
        },
        ..composer.clone()
    };
    let msi = MsiDevice::bring_up(dev.clone(), IrqIndex::Msix, window).unwrap();
    msi.validate_host_address(HostMessage {
        address: DRIVER_WINDOW.start + u64::from(offset),
    })
    .unwrap();
    drop(msi);

    let msi =
        MsiDevice::bring_up_per_vector(dev, IrqIndex::Msix, composer, &iovas, offset).unwrap();
    msi.validate_provided_addresses().unwrap();
    let mut got = vec![(0, 0); vectors as usize];
    assert_eq!(msi.read_host_messages(&mut got).unwrap(), vectors as usize);
    for (k, (address, _)) in got.iter().enumerate() {
        assert_eq!(
            *address,
            MSI_IOVAS + (k as u64 % 4) * PAGE + u64::from(offset),
            "vector {k}"
        );
    }
}

#[test]
#[ignore = "needs the rig's real devices"]
fn paging_each_vector_writes_its_own_msi_iova_and_fires_its_own_eventfd() {
    const QUEUES: u16 = 4;
    let e = rig();
    let (_fd, ioas, dev) = first_nvme(&e);
    if !has_per_vector_uapi(&ioas, &dev) {
        return;
    }
    // One doorbell page per vector 0..=QUEUES, each at its own IOVA.
    let iovas: Vec<u64> = (0..=QUEUES as u64).map(|k| MSI_IOVAS + k * PAGE).collect();
    for &iova in &iovas {
        let page = ioas.map_msi_doorbell(&dev, iova).unwrap();
        assert_eq!(page.msi_address(), iova + u64::from(DOORBELL_OFFSET));
    }
    dev.prepare_msi_iovas(MSIX, 0, &iovas).unwrap();
    dev.attach_ioas(&ioas).unwrap();
    let io = io_vector_eventfds(QUEUES);
    dev.enable_irqs(MSIX, &msix_set(&io)).unwrap();

    for (k, &iova) in iovas.iter().enumerate() {
        assert_eq!(
            msix_entry(&dev, k),
            (iova + u64::from(DOORBELL_OFFSET), k as u32),
            "MSI-X entry {k}: its own address, EventID k"
        );
    }
    let mem = DmaMemory::new(Nvme::memory_len(QUEUES)).unwrap();
    ioas.map_memory(&mem, 0, mem.len() as u64, Some(QUEUE_IOVA), Prot::ReadWrite)
        .unwrap();
    let mut nvme = nvme_with_queues(&dev, mem, QUEUE_IOVA, QUEUES);
    each_vector_fires_alone(&mut nvme, &io, "per-vector IOVAs");

    // The doorbell page of vector 2 unmapped: its MSI faults in the SMMU and never
    // arrives; the others still do.
    ioas.unmap(iovas[2], PAGE).unwrap();
    nvme.flush(2)
        .expect("the command completes without its MSI");
    assert_eq!(fired_within(&io[1], support::NO_IRQ_WAIT), 0, "vector 2");
    nvme.flush(3).unwrap();
    assert!(fired_within(&io[2], IRQ_DEADLINE) >= 1, "vector 3");
    ioas.map_msi_doorbell(&dev, iovas[2]).unwrap();
    each_vector_fires_alone(&mut nvme, &io, "remapped");

    // Replaced by another paging HWPT on the same IOAS, the vectors keep their IOVAs.
    let hwpt = Hwpt::alloc_paging(&ioas, &dev, false).unwrap();
    dev.attach_hwpt(&hwpt).unwrap();
    each_vector_fires_alone(&mut nvme, &io, "after replace");
}

#[test]
#[ignore = "needs the rig's real devices"]
fn user_window_moves_the_kernels_doorbell_and_msi_still_arrives() {
    const QUEUES: u16 = 2;
    let e = rig();
    let (_fd, ioas, dev) = first_nvme(&e);
    if !has_per_vector_uapi(&ioas, &dev) {
        return;
    }
    dev.set_sw_msi_window(MOVED_WINDOW).unwrap();
    dev.attach_ioas(&ioas).unwrap();
    let io = io_vector_eventfds(QUEUES);
    dev.enable_irqs(MSIX, &msix_set(&io)).unwrap();
    for k in 0..=QUEUES as usize {
        assert_eq!(
            msix_entry(&dev, k).0,
            MOVED_WINDOW.start + u64::from(DOORBELL_OFFSET),
            "vector {k}: the kernel's doorbell at the moved window"
        );
    }
    // Guest RAM may now cover the driver's old window.
    let mem = DmaMemory::new(Nvme::memory_len(QUEUES)).unwrap();
    let old = DRIVER_WINDOW.start;
    ioas.map_memory(&mem, 0, mem.len() as u64, Some(old), Prot::ReadWrite)
        .unwrap();
    let mut nvme = nvme_with_queues(&dev, mem, old, QUEUES);
    each_vector_fires_alone(&mut nvme, &io, "moved window");
}

#[test]
#[ignore = "needs the rig's real devices"]
fn nested_each_guest_iova_reaches_the_doorbell_placed_at_the_virtual_its() {
    const QUEUES: u16 = 3;
    /// The guest's view: its queues identity-mapped at QUEUE_IPA, its stage-1 tables, the
    /// virtual ITS doorbell page at QEMU virt's GITS_TRANSLATER page, and one guest IOVA
    /// per vector that the guest's stage 1 maps onto that page.
    const QUEUE_IPA: u64 = 0x40_0000;
    const S1_IPA: u64 = 0x30_0000;
    const VITS_PAGE: u64 = 0x0809_0000;
    const GUEST_MSI_IOVAS: u64 = 0x7000_0000;
    let e = rig();
    let (_fd, ioas, dev) = first_nvme(&e);
    if !has_per_vector_uapi(&ioas, &dev) {
        return;
    }
    // The driver's window covers the virtual ITS's GPA: move it out of the guest's map.
    dev.set_sw_msi_window(MOVED_WINDOW).unwrap();
    let parent = Hwpt::alloc_paging(&ioas, &dev, true).expect("nest parent");
    dev.attach_hwpt(&parent).unwrap();
    let viommu = Viommu::alloc(&parent, &dev).expect("a vIOMMU in acpi-canwbs");
    let bdf = pci::bdf_of(&e.nvme[0]).expect("PCI address");
    let vsid = pci::rid(&bdf).expect("requester id") as u64;
    let _vdev = viommu.alloc_vdevice(&dev, vsid).expect("vDEVICE");

    // Stage 2: the physical doorbell page where the guest's virtual ITS is.
    let page = ioas.map_msi_doorbell(&dev, VITS_PAGE).unwrap();
    assert_eq!(page.doorbell_offset, DOORBELL_OFFSET);
    let mem = DmaMemory::new(Nvme::memory_len(QUEUES)).unwrap();
    let len = mem.len() as u64;
    ioas.map_memory(&mem, 0, len, Some(QUEUE_IPA), Prot::ReadWrite)
        .unwrap();
    // Stage 1, the guest's: each vector's guest IOVA onto the virtual ITS page.
    let gva: Vec<u64> = (0..=QUEUES as u64)
        .map(|k| GUEST_MSI_IOVAS + k * PAGE)
        .collect();
    let mut s1 = Stage1::new(&ioas, S1_IPA, 8, 9).expect("stage 1");
    s1.identity(QUEUE_IPA, len, Attr::Normal).unwrap();
    for &g in &gva {
        s1.map(g, VITS_PAGE, Attr::Device).unwrap();
    }
    let nested = Hwpt::alloc_nested(&viommu, &dev, s1.ste()).expect("nested S1");
    dev.attach_hwpt(&nested).unwrap();

    dev.prepare_msi_iovas(MSIX, 0, &gva).unwrap();
    let io = io_vector_eventfds(QUEUES);
    dev.enable_irqs(MSIX, &msix_set(&io)).unwrap();
    for (k, &g) in gva.iter().enumerate() {
        assert_eq!(
            msix_entry(&dev, k).0,
            g + u64::from(DOORBELL_OFFSET),
            "vector {k} writes its guest IOVA"
        );
    }
    let mut nvme = nvme_with_queues(&dev, mem, QUEUE_IPA, QUEUES);
    each_vector_fires_alone(&mut nvme, &io, "guest IOVA -> S1 -> vITS GPA -> S2 -> ITS");

    // The guest unmaps one vector's IOVA and invalidates: that MSI faults in stage 1, the
    // others still arrive.
    assert!(s1.unmap(gva[1]).unwrap());
    viommu.invalidate(&s1.invalidation(vsid)).unwrap();
    nvme.flush(1).unwrap();
    assert_eq!(
        fired_within(&io[0], support::NO_IRQ_WAIT),
        0,
        "vector 1 unmapped"
    );
    nvme.flush(2).unwrap();
    assert!(fired_within(&io[1], IRQ_DEADLINE) >= 1, "vector 2");
}

/// MSI (not MSI-X) uses entry 0 of the table: edu's one vector writes its own IOVA.
#[test]
#[ignore = "needs the rig's real devices"]
fn edu_msi_writes_the_iova_of_entry_0() {
    let e = rig();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = open_bound(&e, &fd, &e.edu);
    if !has_per_vector_uapi(&ioas, &dev) {
        return;
    }
    ioas.map_msi_doorbell(&dev, MSI_IOVAS).unwrap();
    dev.prepare_msi_iovas(v::VFIO_PCI_MSI_IRQ_INDEX, 0, &[MSI_IOVAS])
        .unwrap();
    dev.attach_ioas(&ioas).unwrap();
    let edu = Edu::new(&dev).expect("edu");
    let efd = common::eventfd();
    edu.enable_msi(efd.as_fd()).unwrap();
    let bdf = pci::bdf_of(&e.edu).expect("PCI address");
    let config = pci::physical_config(&bdf).expect("sysfs config");
    assert_eq!(
        pci::msi_message(&config),
        Some(MsiMessage {
            enabled: true,
            address: MSI_IOVAS + u64::from(DOORBELL_OFFSET),
            data: 0,
        })
    );
    edu.raise(1).unwrap();
    assert!(
        fired_within(&efd, IRQ_DEADLINE) >= 1,
        "edu's MSI at its own IOVA"
    );
    assert_eq!(edu.ack().unwrap(), 1);
    edu.disable_msi().unwrap();
}
