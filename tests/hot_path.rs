//! The hot path allocates nothing: a counting global allocator watches every guest write,
//! host interrupt and single-vector kernel call after setup.

mod common;

use std::os::fd::AsFd;

use vmsi::msi::{Composer, Domain, DoorbellMap, HostAddressing, MsixRegion, VectorTable};
use vmsi::seam::CountingAllocator;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    CountingAllocator::thread_allocations()
}

const VITS: u64 = 0x0809_0040;

#[test]
fn guest_writes_over_2048_vectors_allocate_nothing() {
    let composer = Composer {
        domain: Domain::Paging,
        host: HostAddressing::Window {
            address: 0x800_0040,
        },
        doorbells: DoorbellMap::paging(&[VITS]).unwrap(),
        devid: 8,
    };
    let t = VectorTable::msix(2048, composer).unwrap();
    t.msix_control_write(0x8000).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        // xorshift64: deterministic, allocation-free.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let before = allocations();
    let (mut routed, mut delivered, mut refused) = (0u64, 0u64, 0u64);
    for _ in 0..100_000 {
        let r = next();
        let v = r % 2048;
        let outcome = match (r >> 11) % 8 {
            0 => t.msix_write(MsixRegion::Table, 16 * v + 12, 4, 1),
            1 => t.msix_write(MsixRegion::Table, 16 * v, 8, VITS),
            2 => t.msix_write(MsixRegion::Table, 16 * v + 8, 4, r >> 32),
            3 => t.msix_write(MsixRegion::Table, 16 * v + 12, 4, 0),
            4 => t.msix_write(MsixRegion::Table, 16 * v, 8, r), // mostly not a doorbell
            5 => {
                if matches!(
                    t.host_interrupt(v as u32),
                    Ok(vmsi::msi::Delivery::Deliver(_))
                ) {
                    delivered += 1;
                }
                continue;
            }
            6 => {
                let _ = t.msix_read(MsixRegion::Pba, 8 * (v / 64), 8);
                if t.take_pending().is_some() {
                    delivered += 1;
                }
                continue;
            }
            _ => t.msix_write(MsixRegion::Table, 16 * v + 3, 4, r), // misaligned
        };
        match outcome {
            Ok(vmsi::msi::Effect::Routed { .. }) => routed += 1,
            Ok(_) => {}
            Err(_) => refused += 1,
        }
    }
    let spent = allocations() - before;
    // The run did real work on every path: routes, deliveries and refusals.
    assert!(
        routed > 1000 && delivered > 1000 && refused > 1000,
        "{routed} {delivered} {refused}"
    );
    assert_eq!(spent, 0, "allocations on the hot path");
}

#[test]
#[ignore = "needs the rig's real kernel: runs there"]
fn a_single_vector_set_irqs_allocates_nothing() {
    let e = common::env();
    let fd = vmsi::Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = vmsi::Device::open(e.kernel.clone(), &e.nvme[0]).unwrap();
    dev.bind(&fd).unwrap();
    dev.attach_ioas(&ioas).unwrap();
    let fds: Vec<_> = (0..4).map(|_| common::eventfd()).collect();
    dev.enable_irqs(
        vmsi_sys::vfio::VFIO_PCI_MSIX_IRQ_INDEX,
        &common::borrowed(&fds),
    )
    .unwrap();
    let other = common::eventfd();
    let before = allocations();
    for k in 0..100u32 {
        let fd = if k % 2 == 0 {
            other.as_fd()
        } else {
            fds[1].as_fd()
        };
        dev.set_vector_eventfd(vmsi_sys::vfio::VFIO_PCI_MSIX_IRQ_INDEX, 1, Some(fd))
            .unwrap();
    }
    let spent = allocations() - before;
    // The last assignment is live: the kernel signals the vector's new eventfd.
    dev.trigger_vector(vmsi_sys::vfio::VFIO_PCI_MSIX_IRQ_INDEX, 1)
        .unwrap();
    assert_eq!(common::wait_fired(&fds[1]), 1);
    assert_eq!(spent, 0, "allocations in 100 single-vector SET_IRQS");
}
