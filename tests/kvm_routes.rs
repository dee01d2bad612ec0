//! KVM routes (`vmsi::kvm`, feature `kvm`): a commit only when a route really changes, one
//! commit for a batch, GSIs taken on first unmask and given back on removal, the 4096-route
//! ceiling, and no allocation per update. The counting VM stands in for `/dev/kvm`; the
//! route image is checked byte for byte as the kernel would read it.

#![cfg(feature = "kvm")]

#[path = "../benches/support/guest.rs"]
mod guest;

use std::sync::Arc;

use guest::{Access, ENABLE, MASKALL, VITS};
use vmsi::Error;
use vmsi::kvm::{
    CountingVm, DeviceKey, EFD_NONBLOCK, EventFd, KVM_IRQ_ROUTING_MSI, KVM_MSI_VALID_DEVID,
    KvmCounts, KvmRoutes, RoutesConfig, is_routes_exhausted, kvm_irq_routing_entry,
};
use vmsi::msi::{Effect, MsixRegion, Route, VectorTable};
use vmsi::seam::CountingAllocator;
use zerocopy::IntoBytes;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

type Routes = KvmRoutes<Arc<CountingVm>>;

/// Lets this process open `n` files. The rig's guest runs the tests with the kernel's
/// default limits (1024 soft, 4096 hard) and the ceiling test alone needs 4097 eventfds:
/// root (the rig) raises both limits, anyone else the soft one as far as the hard one.
fn allow_open_files(n: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("RLIMIT_NOFILE");
    if soft >= n {
        return;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, n.max(hard), n.max(hard)).is_err() {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, n.min(hard), hard);
    }
}

fn eventfds(n: u32) -> Arc<[EventFd]> {
    allow_open_files(16384);
    (0..n)
        .map(|_| EventFd::new(EFD_NONBLOCK).unwrap())
        .collect()
}

fn vm() -> (Arc<CountingVm>, Routes) {
    let vm = Arc::new(CountingVm::new());
    let routes = KvmRoutes::new(vm.clone(), RoutesConfig::default()).unwrap();
    (vm, routes)
}

/// A device of `n` vectors: its table (the guest knows it as devid `devid`) and its key.
fn device(routes: &mut Routes, n: u32, devid: u32) -> (VectorTable, DeviceKey) {
    (
        guest::table(n, devid),
        routes.add_device(eventfds(n)).unwrap(),
    )
}

/// The guest access `a` on `t`, handled on the trap path.
fn trap(routes: &mut Routes, key: DeviceKey, t: &VectorTable, a: Access) -> bool {
    let e = guest::perform(t, a);
    routes.update(key, t, &e).unwrap()
}

fn run(routes: &mut Routes, key: DeviceKey, t: &VectorTable, seq: &[Access]) {
    for &a in seq {
        trap(routes, key, t, a);
    }
}

fn data_write(v: u32, data: u32) -> Access {
    Access::Table {
        offset: 16 * v as u64 + 8,
        size: 4,
        value: data as u64,
    }
}

fn ctrl(v: u32, masked: bool) -> Access {
    Access::Table {
        offset: 16 * v as u64 + 12,
        size: 4,
        value: masked as u64,
    }
}

/// An entry as the kernel reads it: (gsi, type, flags, address, data, devid).
fn decode(e: &kvm_irq_routing_entry) -> (u32, u32, u32, u64, u32, u32) {
    let b = e.as_bytes();
    assert_eq!(b.len(), 48);
    let w = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    (
        w(0),
        w(4),
        w(8),
        w(16) as u64 | (w(20) as u64) << 32,
        w(24),
        w(28),
    )
}

/// The image entry of `key`'s vector `v`, decoded.
fn entry_of(routes: &Routes, key: DeviceKey, v: u32) -> (u32, u32, u32, u64, u32, u32) {
    let gsi = routes.gsi(key, v).expect("routed");
    let e = routes
        .image()
        .as_slice()
        .iter()
        .find(|e| e.gsi == gsi)
        .expect("in the image");
    decode(e)
}

fn counts(vm: &CountingVm) -> KvmCounts {
    vm.counts()
}

#[test]
fn commits_happen_only_when_a_route_really_changes() {
    let (vm, mut routes) = vm();
    let (t, key) = device(&mut routes, 8, 0x10);
    run(&mut routes, key, &t, &guest::restore(8, 8));
    let c = counts(&vm);
    // The whole bring-up under the function mask: one commit, then one irqfd per vector.
    assert_eq!((c.commits, c.irqfd_assigns, c.last_routes), (1, 8, 8));
    assert_eq!(c.commit_bytes, 8 + 48 * 8);
    for v in 0..8 {
        assert!(routes.irqfd_registered(key, v));
        assert_eq!(
            entry_of(&routes, key, v),
            (
                routes.gsi(key, v).unwrap(),
                KVM_IRQ_ROUTING_MSI,
                KVM_MSI_VALID_DEVID,
                VITS,
                v,
                0x10
            )
        );
    }

    // Identical rewrites: unmasked (the trap emulator drops it), and masked around it.
    let before = counts(&vm);
    assert!(!trap(&mut routes, key, &t, data_write(3, 3)));
    for a in [ctrl(3, true), data_write(3, 3), ctrl(3, false)] {
        assert!(!trap(&mut routes, key, &t, a));
    }
    // A mask and unmask: no kernel call at all, the irqfd stays.
    assert!(!trap(&mut routes, key, &t, ctrl(5, true)));
    assert!(!trap(&mut routes, key, &t, ctrl(5, false)));
    assert_eq!(counts(&vm), before);
    assert!(routes.irqfd_registered(key, 5));

    // Writes to a masked entry wait for the unmask; then one commit, one entry changed in
    // place, the GSI kept.
    let gsi = routes.gsi(key, 2).unwrap();
    for a in [ctrl(2, true), data_write(2, 200), data_write(2, 201)] {
        assert!(!trap(&mut routes, key, &t, a));
    }
    assert_eq!(counts(&vm).commits, 1);
    assert!(trap(&mut routes, key, &t, ctrl(2, false)));
    assert_eq!(counts(&vm).commits, 2);
    assert_eq!(routes.gsi(key, 2), Some(gsi));
    assert_eq!(entry_of(&routes, key, 2).4, 201);
    assert_eq!(routes.len(), 8);

    // An unmasked entry's new data takes effect at once: one commit each.
    assert!(trap(&mut routes, key, &t, data_write(7, 700)));
    assert_eq!(entry_of(&routes, key, 7).4, 700);
    let c = counts(&vm).since(&before);
    assert_eq!((c.commits, c.irqfd_assigns, c.irqfd_deassigns), (2, 0, 0));
}

#[test]
fn one_commit_carries_a_batch_across_devices() {
    let (vm, mut routes) = vm();
    let devs: Vec<_> = (0..3).map(|k| device(&mut routes, 65, k + 1)).collect();
    for (t, key) in &devs {
        for a in guest::restore(65, 65) {
            let e = guest::perform(t, a);
            routes.apply(*key, t, &e).unwrap();
        }
    }
    // Staged only: nothing reached the kernel, no irqfd before its route exists.
    assert_eq!(counts(&vm), KvmCounts::default());
    assert!(routes.is_dirty());
    assert!(routes.commit().unwrap());
    let c = counts(&vm);
    assert_eq!((c.commits, c.last_routes, c.irqfd_assigns), (1, 195, 195));
    assert_eq!(c.commit_bytes, 8 + 48 * 195);
    // Nothing left to say.
    assert!(!routes.commit().unwrap());
    assert_eq!(counts(&vm).commits, 1);
    for (k, (_, key)) in devs.iter().enumerate() {
        assert_eq!(entry_of(&routes, *key, 64).5, k as u32 + 1, "devid");
    }
}

#[test]
fn gsis_are_taken_on_first_unmask_and_given_back_on_removal() {
    let (vm, mut routes) = vm();
    let (t, key) = device(&mut routes, 2048, 1);
    trap(&mut routes, key, &t, Access::Control(ENABLE));
    // Programmed but masked: no GSI, no route.
    for v in 0..2048 {
        trap(&mut routes, key, &t, data_write(v, v));
    }
    assert_eq!((routes.len(), routes.free_gsis()), (0, 4096));
    assert_eq!(routes.gsi(key, 0), None);
    for v in [100u32, 7, 2047] {
        let address = Access::Table {
            offset: 16 * v as u64,
            size: 8,
            value: VITS,
        };
        trap(&mut routes, key, &t, address);
        assert!(trap(&mut routes, key, &t, ctrl(v, false)));
    }
    // Lowest free GSIs, in unmask order; one commit and one irqfd per first unmask.
    assert_eq!(routes.gsi(key, 100), Some(0));
    assert_eq!(routes.gsi(key, 7), Some(1));
    assert_eq!(routes.gsi(key, 2047), Some(2));
    assert_eq!((routes.len(), routes.free_gsis()), (3, 4093));
    let c = counts(&vm);
    assert_eq!((c.commits, c.irqfd_assigns), (3, 3));

    // A second device reuses nothing yet; removing the first frees its GSIs.
    let (t2, key2) = device(&mut routes, 4, 2);
    run(&mut routes, key2, &t2, &guest::restore(4, 4));
    assert_eq!(routes.gsi(key2, 0), Some(3));
    routes.remove_device(key).unwrap();
    assert_eq!(counts(&vm).irqfd_deassigns, 3);
    assert_eq!((routes.len(), routes.free_gsis()), (4, 4092));
    assert!(routes.commit().unwrap());
    assert_eq!(counts(&vm).last_routes, 4);
    // The survivors' entries moved, their GSIs and routes did not.
    for v in 0..4 {
        assert_eq!(entry_of(&routes, key2, v).0, 3 + v);
        assert_eq!(entry_of(&routes, key2, v).4, v);
    }
    // The freed GSIs are handed out again, lowest first.
    let (t3, key3) = device(&mut routes, 2, 3);
    run(&mut routes, key3, &t3, &guest::restore(2, 2));
    assert_eq!(
        (routes.gsi(key3, 0), routes.gsi(key3, 1)),
        (Some(0), Some(1))
    );
    assert!(matches!(
        routes.remove_device(key),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn the_4097th_route_is_refused_and_changes_nothing() {
    let (vm, mut routes) = vm();
    let a = device(&mut routes, 2048, 1);
    let b = device(&mut routes, 2048, 2);
    for (t, key) in [&a, &b] {
        run(&mut routes, *key, t, &guest::restore(2048, 2048));
    }
    assert_eq!((routes.len(), routes.free_gsis()), (4096, 0));
    let before = counts(&vm);
    assert_eq!(before.last_routes, 4096);

    let (t, key) = device(&mut routes, 4, 3);
    trap(&mut routes, key, &t, Access::Control(ENABLE));
    trap(
        &mut routes,
        key,
        &t,
        Access::Table {
            offset: 0,
            size: 8,
            value: VITS,
        },
    );
    let e = guest::perform(&t, ctrl(0, false));
    assert!(matches!(e, Effect::Routed { vector: 0, .. }));
    let err = routes.update(key, &t, &e).unwrap_err();
    assert!(is_routes_exhausted(&err), "{err}");
    assert_eq!(routes.len(), 4096);
    assert_eq!(routes.gsi(key, 0), None);
    assert_eq!(counts(&vm), before);

    // Unplugging a device makes room; the refused vector routes on its next unmask.
    routes.remove_device(a.1).unwrap();
    routes.commit().unwrap();
    trap(&mut routes, key, &t, ctrl(0, true));
    assert!(trap(&mut routes, key, &t, ctrl(0, false)));
    assert_eq!(routes.gsi(key, 0), Some(0));
    assert_eq!(counts(&vm).last_routes, 2049);
}

#[test]
fn static_routes_lead_every_commit_and_keep_their_gsis() {
    let irqchip = |gsi: u32| kvm_irq_routing_entry {
        gsi,
        type_: kvm_bindings::KVM_IRQ_ROUTING_IRQCHIP,
        ..Default::default()
    };
    let vm = Arc::new(CountingVm::new());
    let config = RoutesConfig {
        static_routes: (0..32).map(irqchip).collect(),
        first_gsi: 32,
    };
    let mut routes = KvmRoutes::new(vm.clone(), config).unwrap();
    assert_eq!((routes.len(), routes.free_gsis()), (32, 4064));
    assert!(
        routes.is_dirty(),
        "the VMM's routes need their first commit"
    );
    let (t, key) = device(&mut routes, 4, 1);
    run(&mut routes, key, &t, &guest::restore(4, 4));
    assert_eq!(routes.gsi(key, 0), Some(32));
    let gsis: Vec<u32> = routes.image().as_slice().iter().map(|e| e.gsi).collect();
    assert_eq!(gsis, (0..36).collect::<Vec<_>>());
    assert_eq!(counts(&vm).last_routes, 36);

    let bad = |static_routes: Vec<kvm_irq_routing_entry>, first_gsi| {
        KvmRoutes::new(
            vm.clone(),
            RoutesConfig {
                static_routes,
                first_gsi,
            },
        )
        .is_err()
    };
    assert!(bad(vec![irqchip(3), irqchip(3)], 8), "a GSI used twice");
    assert!(bad(vec![irqchip(4096)], 0), "a GSI past the ceiling");
    assert!(bad(vec![], 4096), "no GSI left for MSI routes");
}

#[test]
fn updates_and_masks_allocate_nothing() {
    let (vm, mut routes) = vm();
    let devs: Vec<_> = (0..2).map(|k| device(&mut routes, 2048, k + 1)).collect();
    for (t, key) in &devs {
        run(&mut routes, *key, t, &guest::restore(2048, 2048));
    }
    assert_eq!(routes.len(), 4096);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let before = (CountingAllocator::thread_allocations(), counts(&vm));
    let mut changed = 0u64;
    for k in 0..100_000u64 {
        let r = next();
        let (t, key) = &devs[(r & 1) as usize];
        let v = ((r >> 8) % 2048) as u32;
        let e = if k % 1000 == 0 {
            // Now and then a mask and unmask instead.
            let m = t
                .msix_write(MsixRegion::Table, 16 * v as u64 + 12, 4, 1)
                .unwrap();
            routes.update(*key, t, &m).unwrap();
            t.msix_write(MsixRegion::Table, 16 * v as u64 + 12, 4, 0)
                .unwrap()
        } else {
            t.msix_write(MsixRegion::Table, 16 * v as u64 + 8, 4, (r >> 32) & 0xff)
                .unwrap()
        };
        if routes.update(*key, t, &e).unwrap() {
            changed += 1;
        }
    }
    let spent = CountingAllocator::thread_allocations() - before.0;
    let c = counts(&vm).since(&before.1);
    // Real work: most writes changed a route and each change was one commit.
    assert!(changed > 90_000, "{changed}");
    assert_eq!(c.commits, changed);
    assert_eq!(c.commit_bytes, changed * (8 + 48 * 4096));
    assert_eq!((c.irqfd_assigns, c.irqfd_deassigns), (0, 0));
    assert_eq!(spent, 0, "allocations in 100 000 route updates");
}

#[test]
fn a_linux_guest_commits_no_more_than_its_effective_route_changes() {
    let n = 2048;
    let seq = guest::linux_probe_and_life(n);
    let effective = guest::effective_route_changes(n, &seq);
    let (vm, mut routes) = vm();
    let (t, key) = device(&mut routes, n, 1);
    let mut routed_effects = 0u64;
    for &a in &seq {
        let e = guest::perform(&t, a);
        if matches!(e, Effect::Routed { .. }) {
            routed_effects += 1;
        }
        routes.update(key, &t, &e).unwrap();
    }
    let c = counts(&vm);
    // n first routes and n/4 new EventIDs; every redundant, masked or identical write
    // costs nothing.
    assert_eq!(effective, (n + n / 4) as u64);
    assert!(c.commits <= effective, "{} > {effective}", c.commits);
    assert_eq!(c.commits, effective);
    assert!(
        routed_effects > effective,
        "the sequence has redundant unmasks"
    );
    assert_eq!((c.irqfd_assigns, c.irqfd_deassigns), (n as u64, 0));
    for v in (0..n).step_by(4) {
        assert_eq!(entry_of(&routes, key, v).4, v + n);
    }
}

#[test]
fn interrupts_held_while_masked_are_injected_on_unmask() {
    let (vm, mut routes) = vm();
    let (t, key) = device(&mut routes, 4, 9);
    run(&mut routes, key, &t, &guest::restore(4, 4));
    // The vector is masked; the VMM sees the interrupt (diverted) and the table holds it.
    trap(&mut routes, key, &t, ctrl(1, true));
    assert_eq!(t.host_interrupt(1).unwrap(), vmsi::msi::Delivery::Held);
    let before = counts(&vm);
    assert!(!trap(&mut routes, key, &t, ctrl(1, false)));
    let c = counts(&vm).since(&before);
    assert_eq!((c.signals, c.commits), (1, 0));

    // Held across a function mask: injected when the function opens.
    trap(&mut routes, key, &t, Access::Control(ENABLE | MASKALL));
    t.host_interrupt(2).unwrap();
    t.host_interrupt(3).unwrap();
    trap(&mut routes, key, &t, Access::Control(ENABLE));
    let c = counts(&vm).since(&before);
    assert_eq!((c.signals, c.commits), (3, 0));
    assert!(!t.vector(2).unwrap().pending);
}

#[test]
fn a_failed_commit_stays_staged_and_the_next_one_retries() {
    let (vm, mut routes) = vm();
    let (t, key) = device(&mut routes, 4, 1);
    vm.fail_next_commit(vmsi::Errno::ENOMEM);
    let mut failed = None;
    for a in guest::restore(4, 4) {
        let e = guest::perform(&t, a);
        if let Err(err) = routes.update(key, &t, &e) {
            failed = Some(err);
        }
    }
    assert!(matches!(
        failed,
        Some(Error::Kernel {
            op: vmsi::Op::KvmSetGsiRouting,
            errno: vmsi::Errno::ENOMEM
        })
    ));
    // No irqfd for a route the kernel does not have.
    assert_eq!(counts(&vm).irqfd_assigns, 0);
    assert!(routes.is_dirty());
    assert!(routes.commit().unwrap());
    let c = counts(&vm);
    assert_eq!((c.commits, c.irqfd_assigns, c.last_routes), (1, 4, 4));
    let r = routes.route(key, 3).unwrap();
    assert_eq!(
        r,
        Route {
            doorbell_gpa: VITS,
            data: 3,
            devid: 1
        }
    );
}

#[test]
fn an_msi_capability_opening_several_vectors_routes_them_all_in_one_commit() {
    let (vm, mut routes) = vm();
    let t = VectorTable::msi(4, guest::composer(5)).unwrap();
    let key = routes.add_device(eventfds(4)).unwrap();
    for (offset, size, value) in [(4u64, 4u8, VITS as u32), (8, 4, 0), (0x0c, 2, 0x20)] {
        let e = t.msi_config_write(offset, size, value).unwrap();
        assert!(!routes.update(key, &t, &e).unwrap());
    }
    // Enable with 4 vectors: one write puts four routes in force and reports `Opened`.
    let e = t.msi_config_write(2, 2, 0x21).unwrap();
    assert!(matches!(e, Effect::Opened { .. }), "{e:?}");
    assert!(routes.update(key, &t, &e).unwrap());
    let c = counts(&vm);
    assert_eq!((c.commits, c.last_routes, c.irqfd_assigns), (1, 4, 4));
    for v in 0..4 {
        assert_eq!(
            entry_of(&routes, key, v).4,
            0x20 | v,
            "data carries the vector"
        );
    }
}

mod bring_up {
    //! The bring-up of a 2048-vector device on Sim: the VFIO side and the KVM side.

    use super::*;
    use vmsi::msi::{IrqIndex, MsiDevice};
    use vmsi::seam::{Sim, SimConfig, SimDevice};
    use vmsi::{Device, Iommufd};

    #[test]
    fn bring_up_of_2048_vectors_is_one_set_irqs_and_one_commit() {
        allow_open_files(16384);
        let path = "/dev/vfio/devices/vfio0";
        let sim = Sim::new(SimConfig {
            devices: vec![SimDevice::nvme(path, 2048)],
            ..SimConfig::default()
        });
        let fd = Iommufd::open(sim.clone()).unwrap();
        let ioas = fd.alloc_ioas().unwrap();
        let dev = Device::open(sim.clone(), path).unwrap();
        dev.bind(&fd).unwrap();
        dev.attach_ioas(&ioas).unwrap();
        let set_irqs = || sim.stats().count("VFIO_DEVICE_SET_IRQS");
        let before = set_irqs();
        let msi = MsiDevice::bring_up(dev, IrqIndex::Msix, guest::composer(1)).unwrap();
        assert_eq!(msi.table().len(), 2048);
        assert_eq!(set_irqs() - before, 1, "every vector enabled in one call");

        let (vm, mut routes) = vm();
        let key = routes.add_device(eventfds(2048)).unwrap();
        let t = msi.table();
        run(&mut routes, key, t, &guest::restore(2048, 2048));
        let c = counts(&vm);
        assert_eq!((c.commits, c.last_routes, c.irqfd_assigns), (1, 2048, 2048));
        assert_eq!(c.commit_bytes, 8 + 48 * 2048);
        // The guest's programming needed no VFIO call: the host side never changed.
        assert_eq!(set_irqs() - before, 1);
    }
}

/// The eventfds VFIO signals and the ones the irqfds watch are the same: an interrupt the
/// device raises on a vector is what KVM would see on that vector's GSI.
#[test]
fn an_msi_device_hands_its_own_eventfds_to_the_irqfds() {
    use vmsi::msi::{Composer, Domain, DoorbellMap, HostAddressing, IrqIndex, MsiDevice};
    use vmsi::seam::{Sim, SimConfig};

    let sim = Sim::new(SimConfig::default());
    let path = sim.config().devices[1].path.clone();
    let fd = vmsi::Iommufd::open(sim.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    let dev = vmsi::Device::open(sim.clone(), &path).unwrap();
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
    let (vm, mut routes) = vm();
    let key = routes.add_device(msi.kvm_eventfds().unwrap()).unwrap();
    let t = msi.table();
    t.msix_control_write(ENABLE).unwrap();
    for access in [
        Access::Table {
            offset: 16 * 5 + 12,
            size: 4,
            value: 1,
        },
        Access::Table {
            offset: 16 * 5,
            size: 8,
            value: VITS,
        },
        Access::Table {
            offset: 16 * 5 + 8,
            size: 4,
            value: 42,
        },
        Access::Table {
            offset: 16 * 5 + 12,
            size: 4,
            value: 0,
        },
    ] {
        trap(&mut routes, key, t, access);
    }
    assert!(routes.irqfd_registered(key, 5));
    assert_eq!(vm.counts().irqfd_assigns, 1);
    // The device raises vector 5: the eventfd KVM's irqfd watches is signalled.
    assert!(sim.raise_irq(&path, IrqIndex::Msix.vfio_index(), 5));
    assert_eq!(routes.eventfd(key, 5).unwrap().read().unwrap(), 1);
    // ... and no other vector's.
    assert!(routes.eventfd(key, 4).unwrap().read().is_err());
}

/// The same route table on the real KVM (in the rig's guest, which runs at EL2): the kernel
/// accepts the image byte for byte (`KVM_SET_GSI_ROUTING` checks every entry's type and
/// flags), holds one irqfd per vector (a second irqfd on the same eventfd is `EBUSY`), finds
/// the vITS at each route's doorbell GPA (`KVM_SIGNAL_MSI` reaches it there, and nowhere
/// else), and lets every irqfd go on removal.
#[cfg(target_arch = "aarch64")]
#[test]
#[ignore = "needs an arm64 /dev/kvm (the rig)"]
fn the_real_kvm_takes_the_image_the_irqfds_and_the_vits_routes() {
    use kvm_bindings::{
        KVM_DEV_ARM_VGIC_CTRL_INIT, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_DEV_ARM_VGIC_GRP_CTRL,
        KVM_VGIC_ITS_ADDR_TYPE, KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST,
        kvm_device_attr, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_ITS as VGIC_ITS,
        kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3 as VGIC_V3,
    };
    use vmsi::kvm::KvmVm;
    use vmsi::seam::{DmaMemory, KvmMachine};
    use vmsi::{Errno, Op};

    // QEMU virt's GIC layout; the vITS base puts its doorbell at VITS.
    let its_base = VITS - 0x1_0040;
    let mut m = KvmMachine::create().expect("an arm64 /dev/kvm");
    let ram = Arc::new(DmaMemory::new(1 << 20).unwrap());
    m.add_memory(0, 0x4000_0000, ram).unwrap();
    let vcpu = m.create_vcpu(0).unwrap();
    let init = m.preferred_target().unwrap();
    m.with_vcpu(vcpu, |v| v.vcpu_init(&init)).unwrap().unwrap();
    let set = |m: &KvmMachine, dev: usize, group: u32, attr: u32, value: Option<u64>| {
        let addr = value.as_ref().map_or(0, |v| v as *const u64 as u64);
        let attr = kvm_device_attr {
            flags: 0,
            group,
            attr: attr as u64,
            addr,
        };
        m.device(dev).unwrap().set_device_attr(&attr).unwrap();
    };
    let gic = m.create_device(VGIC_V3).unwrap();
    set(
        &m,
        gic,
        KVM_DEV_ARM_VGIC_GRP_ADDR,
        KVM_VGIC_V3_ADDR_TYPE_DIST,
        Some(0x0800_0000),
    );
    set(
        &m,
        gic,
        KVM_DEV_ARM_VGIC_GRP_ADDR,
        KVM_VGIC_V3_ADDR_TYPE_REDIST,
        Some(0x080a_0000),
    );
    set(
        &m,
        gic,
        KVM_DEV_ARM_VGIC_GRP_CTRL,
        KVM_DEV_ARM_VGIC_CTRL_INIT,
        None,
    );
    let its = m.create_device(VGIC_ITS).unwrap();
    set(
        &m,
        its,
        KVM_DEV_ARM_VGIC_GRP_ADDR,
        KVM_VGIC_ITS_ADDR_TYPE,
        Some(its_base),
    );
    set(
        &m,
        its,
        KVM_DEV_ARM_VGIC_GRP_CTRL,
        KVM_DEV_ARM_VGIC_CTRL_INIT,
        None,
    );

    let mut routes = KvmRoutes::new(&m, RoutesConfig::default()).unwrap();
    let t = guest::table(8, 0x10);
    let fds = eventfds(8);
    let key = routes.add_device(fds.clone()).unwrap();
    for a in guest::restore(8, 8) {
        let e = guest::perform(&t, a);
        routes.update(key, &t, &e).unwrap();
    }
    for v in 0..8 {
        assert!(routes.irqfd_registered(key, v));
        let eventfd = routes.eventfd(key, v).unwrap();
        assert_eq!(m.register_irqfd(eventfd, 100 + v), Err(Errno::EBUSY));
    }
    // A route update in place, committed: the kernel takes the changed image.
    let e = guest::perform(&t, data_write(7, 700));
    assert!(routes.update(key, &t, &e).unwrap());
    // The vITS is where the routes say: KVM_SIGNAL_MSI reaches it, and it refuses with
    // EBUSY because no guest has enabled it yet. Elsewhere (the distributor, or no device at
    // all) there is no ITS: EINVAL. (KVM takes any address in the ITS's 128 KiB frame as its
    // doorbell, not only GITS_TRANSLATER.)
    let signal = |route: &vmsi::msi::Route| match routes.signal(route) {
        Err(Error::Kernel {
            op: Op::KvmSignalMsi,
            errno,
        }) => errno,
        other => panic!("KVM_SIGNAL_MSI of {route:?}: {other:?}"),
    };
    assert_eq!(signal(&guest::route(0x10, 3)), Errno::EBUSY);
    for elsewhere in [0x0800_0040, VITS + 0x10_0000] {
        let route = vmsi::msi::Route {
            doorbell_gpa: elsewhere,
            ..guest::route(0x10, 3)
        };
        assert_eq!(signal(&route), Errno::EINVAL, "{elsewhere:#x}");
    }
    routes.remove_device(key).unwrap();
    assert!(routes.commit().unwrap());
    assert!(routes.is_empty());
    // The kernel let go of every irqfd: the eventfds can be assigned again.
    for (v, fd) in fds.iter().enumerate() {
        m.register_irqfd(fd, 100 + v as u32).unwrap();
    }
}
