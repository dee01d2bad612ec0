//! KernelWindow on the real kernel: the library's prediction of every vector's host MSI
//! address equals what the kernel programmed into the physical MSI-X table.

mod common;

use vmsi::msi::{Composer, Domain, DoorbellMap, HostAddressing, IrqIndex, KernelWindow, MsiDevice};
use vmsi::{Device, Iommufd, IovaRange};

/// The physical ITS doorbell: the rig's firmware discovery, or Sim's machine.
fn its_doorbell(e: &common::Env) -> u64 {
    match &e.sim {
        Some(sim) => sim.config().its_doorbells[0],
        None => vmsi::msi::firmware::discover_its()
            .expect("discovery")
            .doorbells()[0],
    }
}

#[test]
fn every_nvme_vector_writes_the_predicted_window_address() {
    let e = common::env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = Device::open(e.kernel.clone(), &e.nvme[0]).unwrap();
    dev.bind(&fd).unwrap();
    dev.attach_ioas(&ioas).unwrap();
    let kw = KernelWindow::from_ioas(&ioas).unwrap();
    assert_eq!(
        kw.window,
        IovaRange {
            start: 0x800_0000,
            last: 0x80f_ffff
        }
    );
    let doorbell = its_doorbell(&e);
    assert_eq!(doorbell, 0x0809_0040, "QEMU virt's ITS at 0x08080000");
    let predicted = kw.host_message(doorbell, 0).unwrap();
    let composer = Composer {
        domain: Domain::Paging,
        host: HostAddressing::Window {
            address: predicted.address,
        },
        doorbells: DoorbellMap::paging(&[doorbell]).unwrap(),
        devid: 0x10,
    };
    let msi = MsiDevice::bring_up(dev, IrqIndex::Msix, composer).unwrap();
    assert_eq!(msi.table().len(), 65);
    msi.validate_host_address(predicted).unwrap();
    let mut got = [(0u64, 0u32); 65];
    assert_eq!(msi.read_host_messages(&mut got).unwrap(), 65);
    for (k, (address, data)) in got.iter().enumerate() {
        assert_eq!(*address, 0x800_0040, "vector {k}");
        // The EventID is the host kernel's: distinct per vector, never invented here.
        assert_eq!(*data, k as u32, "vector {k}");
    }
    // The vectors' eventfds are live: the kernel signals each one.
    for k in [0u32, 31, 64] {
        msi.device()
            .trigger_vector(IrqIndex::Msix.vfio_index(), k)
            .unwrap();
        let efd = msi.eventfd(k).unwrap();
        let mut b = [0u8; 8];
        assert_eq!(nix::unistd::read(efd, &mut b), Ok(8), "vector {k}");
    }
}
