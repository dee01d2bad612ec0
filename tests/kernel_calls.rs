//! How many kernel calls the MSI path really costs, counted on the real kernel in the rig
//! (and on Sim elsewhere): bring-up is one VFIO_DEVICE_SET_IRQS, and a Linux guest's whole
//! MSI-X programming sequence afterwards is none under KernelWindow.

mod common;

use std::sync::Arc;

use vmsi::msi::{
    Composer, Domain, DoorbellMap, Effect, HostAddressing, IrqIndex, MsiDevice, MsixRegion,
};
use vmsi::seam::Counting;
use vmsi::{Device, Iommufd, Op};

const VITS: u64 = 0x0809_0040;

#[test]
fn a_linux_guest_msix_sequence_costs_no_kernel_call_after_bring_up() {
    let e = common::env();
    let k = Arc::new(Counting::new(e.kernel.clone()));
    let fd = Iommufd::open(k.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = Device::open(k.clone(), &e.nvme[0]).unwrap();
    dev.bind(&fd).unwrap();
    dev.attach_ioas(&ioas).unwrap();
    let composer = Composer {
        domain: Domain::Paging,
        host: HostAddressing::Window {
            address: 0x800_0040,
        },
        doorbells: DoorbellMap::paging(&[VITS]).unwrap(),
        devid: 0x10,
    };
    let msi = MsiDevice::bring_up(dev, IrqIndex::Msix, composer).unwrap();
    assert_eq!(
        k.count(Op::DeviceSetIrqs),
        1,
        "bring-up: every vector in one call"
    );
    let t = msi.table();
    let (mut writes, mut changes) = (0u64, 0u64);
    let mut w = |offset: u64, size: u8, value: u64| {
        writes += 1;
        if let Ok(Effect::Routed { changed: true, .. }) =
            t.msix_write(MsixRegion::Table, offset, size, value)
        {
            changes += 1;
        }
    };
    // What Linux's pci_msix_* does at probe time: function masked, then per vector mask,
    // address low/high, data, unmask; then an affinity change rewrites a few vectors.
    t.msix_control_write(0xc000).unwrap();
    for v in 0..65u64 {
        let e = 16 * v;
        w(e + 12, 4, 1);
        w(e, 4, VITS & 0xffff_ffff);
        w(e + 4, 4, VITS >> 32);
        w(e + 8, 4, v);
        w(e + 12, 4, 0);
    }
    t.msix_control_write(0x8000).unwrap();
    for v in [3u64, 7, 7, 40] {
        let e = 16 * v;
        w(e + 12, 4, 1);
        w(e + 8, 4, v + 100);
        w(e + 12, 4, 0);
        // A redundant rewrite of the same message.
        w(e + 8, 4, v + 100);
    }
    assert_eq!(writes, 65 * 5 + 4 * 4);
    // Routes changed (a KVM commit would be owed for each) ...
    assert_eq!(changes, 65 + 3);
    // ... but the host side never did: no VFIO call at all.
    assert_eq!(k.count(Op::DeviceSetIrqs), 1);
    // And the vectors are live in the kernel: vector 40's eventfd is signalled.
    msi.device()
        .trigger_vector(IrqIndex::Msix.vfio_index(), 40)
        .unwrap();
    let mut b = [0u8; 8];
    assert_eq!(nix::unistd::read(msi.eventfd(40).unwrap(), &mut b), Ok(8));
    assert_eq!(
        k.count(Op::DeviceSetIrqs),
        2,
        "the trigger itself is one more call"
    );
}
