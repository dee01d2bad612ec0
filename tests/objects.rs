//! Object-level tests: every operation of the typed layer, error paths included.
//!
//! They run on Sim by default and, unchanged, on the real kernel inside the rig
//! (`VMSI_BACKEND=host`), which is what makes them worth something: each expectation is the
//! Linux 7.2 behaviour, checked against the real kernel on every CI run.

mod common;

use std::os::fd::AsFd;

use common::{borrowed, drain, env, eventfd, nested_envs, open_bound, wait_fired};

use vmsi::{Device, DmaMemory, Errno, Error, Feature, Hwpt, Iommufd, IovaRange, Prot, Ste, Viommu};
use vmsi_sys::iommufd as i;
use vmsi_sys::vfio as v;

const MSI: u32 = v::VFIO_PCI_MSI_IRQ_INDEX;
const MSIX: u32 = v::VFIO_PCI_MSIX_IRQ_INDEX;
const WINDOW: u64 = vmsi_sys::SMMUV3_SW_MSI_BASE;
const PAGE: u64 = 4096;

fn errno(r: Result<impl std::fmt::Debug, Error>) -> Errno {
    match r {
        Err(e) => e.errno().unwrap_or_else(|| panic!("no errno in {e}")),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[test]
fn ids_start_at_one_and_the_lowest_free_is_reused() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let a = fd.alloc_ioas().unwrap();
    let b = fd.alloc_ioas().unwrap();
    assert_eq!((a.id().0, b.id().0), (1, 2));
    a.destroy().unwrap();
    assert_eq!(fd.alloc_ioas().unwrap().id().0, 1);
}

#[test]
fn destroy_of_unknown_and_already_destroyed_ids_is_enoent() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let id = ioas.id().0;
    let destroy = |id| {
        let mut arg = i::iommu_destroy { size: 8, id };
        e.kernel.destroy(fd.fd(), &mut arg)
    };
    assert_eq!(destroy(77), Err(Errno::ENOENT));
    ioas.destroy().unwrap();
    assert_eq!(destroy(id), Err(Errno::ENOENT));
}

#[test]
fn map_unmap_round_trip_and_the_kernel_chooses_from_the_first_page() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let mem = DmaMemory::new(64 * 1024).unwrap();
    assert_eq!(
        ioas.map_memory(&mem, 0, 0x4000, Some(0x10_0000), Prot::ReadWrite)
            .unwrap(),
        0x10_0000
    );
    // Not fixed: the first hole from one page up, at the address's page alignment.
    assert_eq!(
        ioas.map_memory(&mem, 0x4000, 0x2000, None, Prot::Read)
            .unwrap(),
        0x1000
    );
    assert_eq!(ioas.unmap(0x10_0000, 0x4000).unwrap(), 0x4000);
    assert_eq!(errno(ioas.unmap(0x10_0000, 0x4000)), Errno::ENOENT);
    assert_eq!(ioas.unmap_all().unwrap(), 0x2000);
    // Unmapping everything from an empty IOAS is not an error.
    assert_eq!(ioas.unmap_all().unwrap(), 0);
}

#[test]
fn map_rejects_overlap_zero_length_and_missing_access() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let mem = DmaMemory::new(0x4000).unwrap();
    ioas.map_memory(&mem, 0, 0x2000, Some(0x20_0000), Prot::ReadWrite)
        .unwrap();
    assert_eq!(
        errno(ioas.map_memory(&mem, 0, 0x2000, Some(0x20_1000), Prot::ReadWrite)),
        Errno::EEXIST
    );
    assert_eq!(
        errno(ioas.map_memory(&mem, 0, 0, Some(0x40_0000), Prot::ReadWrite)),
        Errno::EINVAL
    );
    // Neither READABLE nor WRITEABLE.
    let mut arg = i::iommu_ioas_map {
        size: 40,
        flags: vmsi_sys::names::IOMMU_IOAS_MAP_FIXED_IOVA,
        ioas_id: ioas.id().0,
        length: 0x1000,
        iova: 0x50_0000,
        ..Default::default()
    };
    assert_eq!(
        e.kernel.ioas_map_memory(fd.fd(), &mut arg, &mem, 0),
        Err(Errno::EINVAL)
    );
    // Unknown flags are EOPNOTSUPP on iommufd.
    arg.flags |= 1 << 7;
    assert_eq!(
        e.kernel.ioas_map_memory(fd.fd(), &mut arg, &mem, 0),
        Err(Errno::EOPNOTSUPP)
    );
    // A size that claims more than the structure never reaches the kernel.
    arg.size = 48;
    assert_eq!(
        e.kernel.ioas_map_memory(fd.fd(), &mut arg, &mem, 0),
        Err(Errno::E2BIG)
    );
}

#[test]
fn unmap_of_a_range_cutting_an_area_fails_after_removing_the_areas_below() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let mem = DmaMemory::new(0x4000).unwrap();
    ioas.map_memory(&mem, 0, 0x1000, Some(0x10_0000), Prot::ReadWrite)
        .unwrap();
    ioas.map_memory(&mem, 0, 0x2000, Some(0x10_1000), Prot::ReadWrite)
        .unwrap();
    assert_eq!(errno(ioas.unmap(0x10_0000, 0x2000)), Errno::ENOENT);
    // The first area went, the second stayed.
    assert_eq!(errno(ioas.unmap(0x10_0000, 0x1000)), Errno::ENOENT);
    assert_eq!(ioas.unmap(0x10_1000, 0x2000).unwrap(), 0x2000);
}

#[test]
fn iova_ranges_lose_the_msi_window_while_a_device_is_attached() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    assert_eq!(
        ioas.iova_ranges().unwrap(),
        (
            vec![IovaRange {
                start: 0,
                last: u64::MAX
            }],
            1
        )
    );
    let dev = open_bound(&e, &fd, &e.nvme[0]);
    dev.attach_ioas(&ioas).unwrap();
    let (ranges, align) = ioas.iova_ranges().unwrap();
    assert_eq!(align, PAGE);
    assert_eq!(
        ranges,
        vec![
            IovaRange {
                start: 0,
                last: WINDOW - 1
            },
            IovaRange {
                start: WINDOW + 0x10_0000,
                last: (1 << 48) - 1
            }
        ]
    );
    // The allocation-free form reports the same.
    let mut out = [IovaRange::default(); 1];
    assert_eq!(ioas.iova_ranges_into(&mut out).unwrap(), (2, PAGE));
    assert_eq!(out[0], ranges[0]);
    dev.detach().unwrap();
    assert_eq!(
        ioas.iova_ranges().unwrap(),
        (
            vec![IovaRange {
                start: 0,
                last: u64::MAX
            }],
            1
        )
    );
}

#[test]
fn attach_fails_with_eaddrinuse_while_the_msi_window_is_mapped() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let mem = DmaMemory::new(0x1000).unwrap();
    ioas.map_memory(&mem, 0, 0x1000, Some(WINDOW), Prot::ReadWrite)
        .unwrap();
    let dev = open_bound(&e, &fd, &e.nvme[0]);
    assert_eq!(errno(dev.attach_ioas(&ioas)), Errno::EADDRINUSE);
    assert_eq!(dev.attached_hwpt(), None);
    ioas.unmap(WINDOW, 0x1000).unwrap();
    dev.attach_ioas(&ioas).unwrap();
    // Once attached, a fixed map into the window is refused (a reserved range: EINVAL) ...
    assert_eq!(
        errno(ioas.map_memory(&mem, 0, 0x1000, Some(WINDOW), Prot::ReadWrite)),
        Errno::EINVAL
    );
    // ... and IOVAs must be page aligned.
    assert_eq!(
        errno(ioas.map_memory(&mem, 0, 0x1000, Some(0x10_0800), Prot::ReadWrite)),
        Errno::EINVAL
    );
}

#[test]
fn a_second_device_on_the_same_ioas_shares_the_auto_hwpt() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let a = open_bound(&e, &fd, &e.nvme[0]);
    let b = open_bound(&e, &fd, &e.nvme[1]);
    let ha = a.attach_ioas(&ioas).unwrap();
    let hb = b.attach_ioas(&ioas).unwrap();
    assert_eq!(ha, hb);
    // The IOAS is held by its HWPT: the kernel refuses, and the typed layer says why first.
    let mut arg = i::iommu_destroy {
        size: 8,
        id: ioas.id().0,
    };
    assert_eq!(e.kernel.destroy(fd.fd(), &mut arg), Err(Errno::EBUSY));
    assert!(matches!(ioas.clone().destroy(), Err(Error::InUse(_))));
    // The auto HWPT is the kernel's: DESTROY is EBUSY while devices use it ...
    let mut arg = i::iommu_destroy { size: 8, id: ha.0 };
    assert_eq!(e.kernel.destroy(fd.fd(), &mut arg), Err(Errno::EBUSY));
    a.detach().unwrap();
    b.detach().unwrap();
    // ... and it is gone after the last detach.
    assert_eq!(e.kernel.destroy(fd.fd(), &mut arg), Err(Errno::ENOENT));
}

#[test]
fn copy_maps_the_same_pages_into_another_ioas() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let src = fd.alloc_ioas().unwrap();
    let dst = fd.alloc_ioas().unwrap();
    let mem = DmaMemory::new(0x3000).unwrap();
    src.map_memory(&mem, 0, 0x3000, Some(0x10_0000), Prot::Read)
        .unwrap();
    assert_eq!(
        src.copy_to(&dst, 0x10_1000, 0x1000, Some(0x90_0000), Prot::Read)
            .unwrap(),
        0x90_0000
    );
    // Writable copies of read-only pages are refused.
    assert_eq!(
        errno(src.copy_to(&dst, 0x10_0000, 0x1000, Some(0xa0_0000), Prot::ReadWrite)),
        Errno::EPERM
    );
    // Not covered by the source.
    assert_eq!(
        errno(src.copy_to(&dst, 0x20_0000, 0x1000, None, Prot::Read)),
        Errno::ENOENT
    );
    assert_eq!(dst.unmap_all().unwrap(), 0x1000);
}

#[test]
fn allowed_iovas_steer_allocation_and_may_not_cover_reserved_ranges() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let allowed = IovaRange {
        start: 0x4000_0000,
        last: 0x4fff_ffff,
    };
    ioas.allow_iovas(&[allowed]).unwrap();
    let mem = DmaMemory::new(0x1000).unwrap();
    let iova = ioas.map_memory(&mem, 0, 0x1000, None, Prot::Read).unwrap();
    assert!(allowed.contains(iova, 0x1000), "{iova:#x}");
    // A range with start == last is refused.
    assert_eq!(
        errno(ioas.allow_iovas(&[IovaRange { start: 5, last: 5 }])),
        Errno::EINVAL
    );
    ioas.allow_iovas(&[]).unwrap();
    let dev = open_bound(&e, &fd, &e.nvme[0]);
    dev.attach_ioas(&ioas).unwrap();
    let over_window = IovaRange {
        start: WINDOW,
        last: WINDOW + 0xfff,
    };
    assert_eq!(errno(ioas.allow_iovas(&[over_window])), Errno::EADDRINUSE);
}

#[test]
fn vfio_device_info_regions_and_irqs() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let edu = Device::open(e.kernel.clone(), &e.edu).unwrap();
    // Before bind every ioctl but BIND is EINVAL.
    assert_eq!(errno(edu.irq_info(MSI)), Errno::EINVAL);
    edu.bind(&fd).unwrap();
    // One bind per device.
    assert_eq!(errno(edu.bind(&fd)), Errno::EINVAL);
    let info = edu.info().unwrap();
    assert_eq!((info.num_regions, info.num_irqs), (9, 5));
    assert_ne!(info.flags & v::VFIO_DEVICE_FLAGS_PCI, 0);
    let msi = edu.irq_info(MSI).unwrap();
    assert_eq!(msi.count, 1);
    assert!(!msi.resizable());
    assert_eq!(edu.irq_info(MSIX).unwrap().count, 0);
    // edu is conventional PCI: no ERR index, 256 bytes of config space.
    assert_eq!(
        errno(edu.irq_info(v::VFIO_PCI_ERR_IRQ_INDEX)),
        Errno::EINVAL
    );
    assert_eq!(errno(edu.irq_info(5)), Errno::EINVAL);
    assert_eq!(
        edu.region_info(v::VFIO_PCI_CONFIG_REGION_INDEX)
            .unwrap()
            .size,
        256
    );
    let mut id = [0u8; 4];
    edu.read_config(0, &mut id).unwrap();
    assert_eq!(id, [0x34, 0x12, 0xe8, 0x11]);
    let bar0 = edu.region_info(0).unwrap();
    assert_eq!((bar0.offset, bar0.size), (0, 1 << 20));
    assert!(bar0.mappable());

    let nvme = open_bound(&e, &fd, &e.nvme[0]);
    let msix = nvme.irq_info(MSIX).unwrap();
    assert_eq!(msix.count, 65);
    // The GICv3 ITS cannot grow MSI-X while it is enabled.
    assert!(!msix.resizable());
    assert_eq!(nvme.irq_info(v::VFIO_PCI_ERR_IRQ_INDEX).unwrap().count, 1);
    assert_eq!(
        nvme.region_info(v::VFIO_PCI_CONFIG_REGION_INDEX)
            .unwrap()
            .size,
        4096
    );
}

#[test]
fn hw_info_reports_an_smmuv3_that_can_nest() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let dev = open_bound(&e, &fd, &e.nvme[0]);
    let hw = dev.hw_info().unwrap();
    assert_eq!(hw.data_type, vmsi_sys::names::IOMMU_HW_INFO_TYPE_ARM_SMMUV3);
    let s = hw.smmuv3.expect("SMMUv3 registers");
    assert!(s.nesting() && s.coherent());
    assert_eq!(s.ttf(), 2);
    assert!(!hw.ats());
    assert_eq!(hw.max_pasid_log2, 0);
}

#[test]
fn paging_and_nest_parent_hwpts_attach_and_are_held_while_in_use() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = open_bound(&e, &fd, &e.nvme[0]);
    let s1 = Hwpt::alloc_paging(&ioas, &dev, false).unwrap();
    let s2 = Hwpt::alloc_paging(&ioas, &dev, true).unwrap();
    assert!(s2.is_nest_parent() && !s1.is_nest_parent());
    // A manual HWPT is a domain on the IOAS: the alignment becomes the page size, and the
    // aperture is reserved, even before anything attaches.
    let (ranges, align) = ioas.iova_ranges().unwrap();
    assert_eq!((ranges.len(), align), (1, PAGE));
    dev.attach_hwpt(&s2).unwrap();
    assert_eq!(dev.attached_hwpt(), Some(s2.id()));
    let mut arg = i::iommu_destroy {
        size: 8,
        id: s2.id().0,
    };
    assert_eq!(e.kernel.destroy(fd.fd(), &mut arg), Err(Errno::EBUSY));
    assert!(matches!(s2.clone().destroy(), Err(Error::InUse(_))));
    // Replace: attach while attached moves the device.
    dev.attach_hwpt(&s1).unwrap();
    dev.detach().unwrap();
    s2.destroy().unwrap();
    s1.destroy().unwrap();
    ioas.destroy().unwrap();
}

#[test]
fn the_nested_path_works_only_where_the_smmu_may_nest() {
    for e in nested_envs() {
        let fd = Iommufd::open(e.kernel.clone()).unwrap();
        let ioas = fd.alloc_ioas().unwrap();
        let dev = open_bound(&e, &fd, &e.nvme[0]);
        let parent = Hwpt::alloc_paging(&ioas, &dev, true).unwrap();
        let viommu = Viommu::alloc(&parent, &dev);
        if !e.nested {
            // No CANWBS and no S2FWB: the kernel refuses the vIOMMU, and says so typed.
            match viommu {
                Err(Error::Unsupported {
                    feature: Feature::Viommu,
                    errno: Errno::EOPNOTSUPP,
                    ..
                }) => continue,
                other => panic!("expected vIOMMU to be unsupported, got {other:?}"),
            }
        }
        let viommu = viommu.unwrap();
        // A translating STE needs the device's vDEVICE first: allocation works, attach not.
        let s1 = Hwpt::alloc_nested(&viommu, &dev, Ste::s1(0x30_0000, 0).unwrap()).unwrap();
        assert_eq!(errno(dev.attach_hwpt(&s1)), Errno::ENOENT);
        let vdev = viommu.alloc_vdevice(&dev, 0x8).unwrap();
        assert_eq!(vdev.vsid(), 0x8);
        assert_eq!(errno(viommu.alloc_vdevice(&dev, 0x9)), Errno::EEXIST);
        let bypass = Hwpt::alloc_nested(&viommu, &dev, Ste::bypass()).unwrap();
        let abort = Hwpt::alloc_nested(&viommu, &dev, Ste::abort()).unwrap();
        dev.attach_hwpt(&bypass).unwrap();
        dev.attach_hwpt(&abort).unwrap();
        dev.attach_hwpt(&s1).unwrap();
        // Bits the guest may not set are EIO.
        assert_eq!(
            errno(Hwpt::alloc_nested(&viommu, &dev, Ste([0x9, 1 << 40]))),
            Errno::EIO
        );
        // Guest invalidations: TLBI_NH_ASID and CFGI_CD for the vSID are handled; CMD_SYNC is not.
        let tlbi_nh_asid = [0x11u64, 0];
        let cfgi_cd = [0x05 | (0x8u64 << 32), 0];
        assert_eq!(viommu.invalidate(&[tlbi_nh_asid, cfgi_cd]).unwrap(), 2);
        match viommu.invalidate(&[tlbi_nh_asid, [0x46, 0]]) {
            Err(Error::Invalidate {
                handled: 1,
                requested: 2,
                errno: Errno::EIO,
            }) => {}
            other => panic!("expected a partial invalidation, got {other:?}"),
        }
        let q = viommu.alloc_veventq(64).unwrap();
        assert_eq!(q.read().unwrap(), None);
        assert_eq!(errno(viommu.alloc_veventq(64)), Errno::EEXIST);
        dev.detach().unwrap();
    }
}

#[test]
fn msi_and_msix_vectors_each_fire_their_own_eventfd() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let edu = open_bound(&e, &fd, &e.edu);
    edu.attach_ioas(&ioas).unwrap();
    let efd = eventfd();
    edu.enable_irqs(MSI, &[Some(efd.as_fd())]).unwrap();
    edu.trigger_vector(MSI, 0).unwrap();
    assert_eq!(wait_fired(&efd), 1);

    let nvme = open_bound(&e, &fd, &e.nvme[0]);
    nvme.attach_ioas(&ioas).unwrap();
    let fds: Vec<_> = (0..4).map(|_| eventfd()).collect();
    nvme.enable_irqs(MSIX, &borrowed(&fds)).unwrap();
    // MSI is off limits while MSI-X is on.
    assert_eq!(errno(nvme.enable_irqs(MSI, &[None])), Errno::EINVAL);
    for k in 0..4 {
        nvme.trigger_vector(MSIX, k).unwrap();
        let counts: Vec<u64> = fds.iter().map(drain).collect();
        let want: Vec<u64> = (0..4).map(|j| (j == k) as u64).collect();
        assert_eq!(counts, want, "vector {k}");
    }
    // One vector's eventfd can be swapped without touching the others.
    let other = eventfd();
    nvme.set_vector_eventfd(MSIX, 2, Some(other.as_fd()))
        .unwrap();
    nvme.trigger_vector(MSIX, 2).unwrap();
    assert_eq!((drain(&fds[2]), drain(&other)), (0, 1));
    // ITS vectors are allocated once: a vector past those enabled is refused.
    assert_eq!(
        errno(nvme.set_vector_eventfd(MSIX, 10, Some(other.as_fd()))),
        Errno::EINVAL
    );
    nvme.disable_irqs(MSIX).unwrap();
    // Disabling an idle index is an error.
    assert_eq!(errno(nvme.disable_irqs(MSIX)), Errno::EINVAL);
}

#[test]
fn host_msix_messages_use_the_msi_window_and_the_its_event_id() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let nvme = open_bound(&e, &fd, &e.nvme[0]);
    nvme.attach_ioas(&ioas).unwrap();
    let fds: Vec<_> = (0..4).map(|_| eventfd()).collect();
    nvme.enable_irqs(MSIX, &borrowed(&fds)).unwrap();
    let cap = vmsi::pci::MsixCapability::read(&nvme)
        .unwrap()
        .expect("nvme has MSI-X");
    assert_eq!(cap.vectors, 65);
    let bar = nvme.map_region(cap.table_bar).unwrap();
    for k in 0..4usize {
        let entry = cap.table_offset as usize + 16 * k;
        // The doorbell page is the first one of the window; 0x40 is GITS_TRANSLATER's
        // offset in its page, kept by the kernel.
        assert_eq!(
            bar.read_u64(entry).unwrap(),
            WINDOW + 0x40,
            "vector {k} address"
        );
        assert_eq!(
            bar.read_u32(entry + 8).unwrap(),
            k as u32,
            "vector {k} data"
        );
    }
}

#[test]
fn bad_set_irqs_requests_are_refused() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let edu = open_bound(&e, &fd, &e.edu);
    // Bound but not attached: the typed layer refuses before asking the kernel, which would
    // answer ENOSPC and leave the device unable to enable MSI until the host reboots.
    let efd = eventfd();
    assert!(matches!(
        edu.enable_irqs(MSI, &[Some(efd.as_fd())]),
        Err(Error::InvalidArgument(_))
    ));
    edu.attach_ioas(&ioas).unwrap();
    // More vectors than the device has: the kernel enables nothing and says how many.
    assert_eq!(errno(edu.enable_irqs(MSI, &[None, None])), Errno::EINVAL);
    // A file that is not an eventfd.
    let mem = DmaMemory::new(4096).unwrap();
    assert_eq!(
        errno(edu.enable_irqs(MSI, &[Some(mem.file())])),
        Errno::EINVAL
    );
    // MASK on MSI is not supported by vfio-pci.
    let header = vmsi::seam::IrqSetHeader {
        flags: v::VFIO_IRQ_SET_DATA_NONE | v::VFIO_IRQ_SET_ACTION_MASK,
        index: MSI,
        start: 0,
        count: 1,
    };
    assert_eq!(
        errno(edu.set_irqs(&header, vmsi::seam::IrqData::None)),
        Errno::ENOTTY
    );
    // And nothing was left enabled by the failures.
    edu.enable_irqs(MSI, &[Some(efd.as_fd())]).unwrap();
    edu.trigger_vector(MSI, 0).unwrap();
    assert_eq!(wait_fired(&efd), 1);
}

#[test]
fn closing_everything_leaves_nothing_behind() {
    let e = env();
    {
        let fd = Iommufd::open(e.kernel.clone()).unwrap();
        let ioas = fd.alloc_ioas().unwrap();
        let mem = DmaMemory::new(0x1000).unwrap();
        ioas.map_memory(&mem, 0, 0x1000, Some(0x10_0000), Prot::ReadWrite)
            .unwrap();
        let dev = open_bound(&e, &fd, &e.nvme[0]);
        let hwpt = Hwpt::alloc_paging(&ioas, &dev, true).unwrap();
        dev.attach_hwpt(&hwpt).unwrap();
        let efd = eventfd();
        dev.enable_irqs(MSIX, &[Some(efd.as_fd())]).unwrap();
        // Dropped in an unhelpful order on purpose: the objects keep each other alive.
        drop(fd);
        drop(ioas);
        drop(hwpt);
        drop(dev);
    }
    if let Some(sim) = &e.sim {
        let st = sim.stats();
        assert_eq!(
            (
                st.open_files,
                st.live_objects,
                st.live_areas,
                st.live_triggers
            ),
            (0, 0, 0, 0),
            "{st:?}"
        );
    }
    // The device can be used again from scratch: nothing of the old binding survived.
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let dev = open_bound(&e, &fd, &e.nvme[0]);
    assert_eq!(dev.attached_hwpt(), None);
}

#[test]
fn map_file_maps_a_memfd() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = open_bound(&e, &fd, &e.nvme[0]);
    // With a domain attached, the kernel pins the memfd's pages at map time.
    dev.attach_ioas(&ioas).unwrap();
    let mem = DmaMemory::new(0x4000).unwrap();
    let iova = ioas
        .map_file(mem.file(), 0x1000, 0x2000, Some(0x40_0000), Prot::ReadWrite)
        .unwrap();
    assert_eq!(iova, 0x40_0000);
    assert_eq!(
        errno(ioas.map_file(mem.file(), 0, 0x1000, Some(0x40_1000), Prot::Read)),
        Errno::EEXIST
    );
    assert_eq!(
        errno(ioas.map_file(mem.file(), 0, 0, Some(0x50_0000), Prot::Read)),
        Errno::EINVAL
    );
    assert_eq!(ioas.unmap(0x40_0000, 0x2000).unwrap(), 0x2000);
}

#[test]
fn a_vmm_can_hand_in_the_fds_it_already_has() {
    let e = env();
    let open = |p: &str| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .map(std::os::fd::OwnedFd::from)
    };
    match &e.sim {
        // The model has no real files: adopting one is refused, typed.
        Some(_) => {
            let any = std::fs::File::open("/proc/self/stat").unwrap().into();
            match Iommufd::from_fd(e.kernel.clone(), any) {
                Err(Error::Kernel {
                    op: vmsi::Op::OpenIommufd,
                    errno: Errno::EBADF,
                }) => {}
                other => panic!("{other:?}"),
            }
        }
        None => {
            let fd = Iommufd::from_fd(e.kernel.clone(), open("/dev/iommu").unwrap()).unwrap();
            let ioas = fd.alloc_ioas().unwrap();
            let dev = Device::from_fd(e.kernel.clone(), open(e.nvme[0].to_str().unwrap()).unwrap())
                .unwrap();
            assert_eq!(dev.path(), None);
            dev.bind(&fd).unwrap();
            dev.attach_ioas(&ioas).unwrap();
            assert_eq!(dev.irq_info(MSIX).unwrap().count, 65);
        }
    }
}
