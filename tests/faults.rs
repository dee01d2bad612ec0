//! Fail-nth sweeps over the library's full device setup on Sim.
//!
//! The setup is what a VMM does to pass a device through: open the iommufd, allocate an
//! IOAS, open, bind and attach the device, then (nested) a nest-parent HWPT, a vIOMMU, a
//! vDEVICE and a nested HWPT, then `SET_IRQS` through `Device::enable_irqs` and
//! `MsiDevice::bring_up`. For every n until the setup succeeds, the n-th kernel call fails:
//! the setup must stop with a typed error that names the call of the step that failed and
//! keeps the injected errno; dropping what was built must leave nothing behind in Sim; and
//! the same setup without a fault must then succeed. Sim's `fail_nth` counts verb calls,
//! so every kernel call of the setup is a point. `tests/fail_nth.rs` does the same on the
//! real kernel with its allocation-level fail-nth.

mod common;
#[path = "support/sweep.rs"]
mod sweep;

use sweep::{Built, Step, at, composer, objects};

use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;

use common::{eventfd, sim_env};
use vmsi::msi::{IrqIndex, MsiDevice};
use vmsi::seam::{Kernel, Sim, SimConfig};
use vmsi::{Device, Errno, Error, Iommufd, Op};

/// The full setup of the device at `path` (MSI-X if `msix`, else MSI), nested if `nested`.
fn setup(
    kernel: &Arc<dyn Kernel>,
    path: &Path,
    msix: bool,
    nested: bool,
    b: &mut Built,
) -> Result<(), (Step, Error)> {
    objects(kernel, path, nested, b)?;
    let dev = b.device.as_ref().expect("objects() opened the device");
    let index = if msix { IrqIndex::Msix } else { IrqIndex::Msi };
    let fds = [eventfd(), eventfd()];
    let borrowed = [Some(fds[0].as_fd()), Some(fds[1].as_fd())];
    let n = if msix { 2 } else { 1 };
    dev.enable_irqs(index.vfio_index(), &borrowed[..n])
        .map_err(at(Step::EnableIrqs))?;
    dev.disable_irqs(index.vfio_index())
        .map_err(at(Step::DisableIrqs))?;
    let msi = MsiDevice::bring_up(dev.clone(), index, composer()).map_err(at(Step::BringUp))?;
    b.msi = Some(msi);
    Ok(())
}

/// Kernel calls Sim has entered (each can be the n-th of a fail-nth).
fn entered(sim: &Sim) -> u64 {
    let s = sim.stats();
    s.calls.values().sum::<u64>() - s.count("close")
}

fn assert_nothing_left(sim: &Sim, what: &str) {
    let st = sim.stats();
    assert_eq!(
        (
            st.open_files,
            st.live_objects,
            st.live_areas,
            st.live_triggers
        ),
        (0, 0, 0, 0),
        "{what}: left behind {st:?}"
    );
}

/// What a sweep saw.
#[derive(Debug)]
struct Sweep {
    /// Kernel calls of a clean setup (= fault points).
    points: u64,
    /// Steps that failed, in call order, one per point.
    failed_steps: Vec<Step>,
}

/// Fails the n-th kernel call of the setup for n = 1, 2, ... until the setup succeeds.
fn sweep(config: SimConfig, nvme: bool, errno: Errno) -> Sweep {
    let env = sim_env(config.clone());
    let sim = env.sim.clone().expect("a Sim environment");
    let path = if nvme {
        env.nvme[0].clone()
    } else {
        env.edu.clone()
    };
    let nested = config.canwbs;
    // A clean run first: how many kernel calls the setup makes.
    let before = entered(&sim);
    let mut b = Built::default();
    setup(&env.kernel, &path, nvme, nested, &mut b).expect("the setup works without faults");
    let points = entered(&sim) - before;
    b.drop_in(false);
    assert_nothing_left(&sim, "the clean run");

    let mut failed_steps = Vec::new();
    for n in 1..=points + 1 {
        sim.fail_nth(n, errno);
        let mut b = Built::default();
        let r = setup(&env.kernel, &path, nvme, nested, &mut b);
        let fired = !sim.clear_fault();
        match r {
            Ok(()) => {
                assert!(!fired, "n={n}: the injected {errno} was swallowed");
                assert_eq!(n, points + 1, "the setup made fewer calls than counted");
            }
            Err((step, e)) => {
                assert!(fired, "n={n}: {step:?} failed without a fault: {e}");
                assert_eq!(e.errno(), Some(errno), "n={n}: {step:?}: {e:?}");
                match &e {
                    Error::Kernel { op, .. } | Error::Unsupported { op, .. } => assert!(
                        step.ops().contains(op),
                        "n={n}: {step:?} failed naming {op}"
                    ),
                    other => panic!("n={n}: {step:?} failed untyped: {other:?}"),
                }
                assert!(!e.to_string().is_empty());
                failed_steps.push(step);
            }
        }
        b.drop_in(n % 2 == 0);
        assert_nothing_left(&sim, &format!("n={n}"));
        // The same setup without a fault works: the failure left no stuck state.
        let mut b = Built::default();
        setup(&env.kernel, &path, nvme, nested, &mut b)
            .unwrap_or_else(|(s, e)| panic!("n={n}: the retry failed at {s:?}: {e}"));
        b.drop_in(n % 2 == 1);
        assert_nothing_left(&sim, &format!("n={n}, after the retry"));
    }
    assert_eq!(failed_steps.len() as u64, points);
    // For the README's figures (`cargo test --test faults -- --nocapture`).
    eprintln!(
        "fail-nth on Sim ({}, {}, {errno}): {points} points",
        if nested { "nested" } else { "paging" },
        if nvme { "nvme MSI-X" } else { "edu MSI" }
    );
    Sweep {
        points,
        failed_steps,
    }
}

/// Every step of `want` was failed at least once.
fn covers(s: &Sweep, want: &[Step]) {
    for step in want {
        assert!(
            s.failed_steps.contains(step),
            "{step:?} never failed: {:?}",
            s.failed_steps
        );
    }
}

const PAGING_STEPS: [Step; 8] = [
    Step::OpenIommufd,
    Step::AllocIoas,
    Step::OpenDevice,
    Step::Bind,
    Step::AttachIoas,
    Step::EnableIrqs,
    Step::DisableIrqs,
    Step::BringUp,
];

#[test]
fn every_fault_point_of_the_msix_setup_is_typed_leak_free_and_retryable() {
    for errno in [Errno::ENOMEM, Errno::EFAULT, Errno::EINTR] {
        let s = sweep(SimConfig::default(), true, errno);
        covers(&s, &PAGING_STEPS);
        // GET_IRQ_INFO, the config read of the MSI-X capability, SET_IRQS.
        let bring_up = s
            .failed_steps
            .iter()
            .filter(|&&x| x == Step::BringUp)
            .count();
        assert_eq!(bring_up, 3, "{s:?}");
    }
}

#[test]
fn every_fault_point_of_the_msi_setup_is_typed_leak_free_and_retryable() {
    let s = sweep(SimConfig::default(), false, Errno::ENOMEM);
    covers(&s, &PAGING_STEPS);
    // MSI reads no MSI-X capability: GET_IRQ_INFO and SET_IRQS only.
    let bring_up = s
        .failed_steps
        .iter()
        .filter(|&&x| x == Step::BringUp)
        .count();
    assert_eq!(bring_up, 2, "{s:?}");
}

#[test]
fn every_fault_point_of_the_nested_setup_is_typed_leak_free_and_retryable() {
    for errno in [Errno::ENOMEM, Errno::EOPNOTSUPP] {
        let s = sweep(SimConfig::nested(), true, errno);
        covers(&s, &PAGING_STEPS);
        covers(
            &s,
            &[
                Step::NestParent,
                Step::AttachNestParent,
                Step::Viommu,
                Step::Vdevice,
                Step::NestedHwpt,
                Step::AttachNested,
            ],
        );
        assert_eq!(s.points, s.failed_steps.len() as u64);
    }
}

#[test]
fn an_unsupported_answer_keeps_the_op_and_the_errno() {
    // EOPNOTSUPP from the vIOMMU allocation is Error::Unsupported, still naming the call.
    let env = sim_env(SimConfig::nested());
    let sim = env.sim.clone().unwrap();
    let mut b = Built::default();
    // The vIOMMU is the 8th kernel call: open, IOAS, open, bind, attach, HWPT, attach, vIOMMU.
    sim.fail_nth(8, Errno::EOPNOTSUPP);
    let (step, e) = setup(&env.kernel, &env.nvme[0], true, true, &mut b).unwrap_err();
    assert_eq!(step, Step::Viommu);
    assert!(
        matches!(
            e,
            Error::Unsupported {
                op: Op::ViommuAlloc,
                errno: Errno::EOPNOTSUPP,
                ..
            }
        ),
        "{e:?}"
    );
    b.drop_in(true);
    assert_nothing_left(&sim, "after the unsupported vIOMMU");
}

// Regressions found by the fuzzers (fuzz/regressions/). This one runs on the real kernel in
// the rig too (common::env()), which is what says Sim's answers are the kernel's.

#[test]
fn reads_past_the_end_of_config_space_or_a_bar_are_errnos_as_in_vfio_pci() {
    // kernel_verbs found Sim slicing past the end of config space (a panic).
    let e = common::env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let dev = Device::open(e.kernel.clone(), &e.nvme[0]).unwrap();
    dev.bind(&fd).unwrap();
    let mut buf = [0u8; 4];
    // nvme is PCI Express: 4 KiB of config space. vfio_pci_config_rw_single: EFAULT.
    for offset in [4096, 0x8_0000] {
        match dev.read_config(offset, &mut buf) {
            Err(Error::Kernel {
                op: Op::DeviceRegionRead,
                errno: Errno::EFAULT,
            }) => {}
            other => panic!("config read at {offset:#x}: {other:?}"),
        }
        match dev.write_config(offset, &buf) {
            Err(Error::Kernel {
                op: Op::DeviceRegionWrite,
                errno: Errno::EFAULT,
            }) => {}
            other => panic!("config write at {offset:#x}: {other:?}"),
        }
    }
    // A BAR read at its end: vfio_pci_bar_rw's EINVAL.
    let bar = dev.region_info(0).unwrap();
    assert_eq!(
        e.kernel
            .device_read(dev.fd(), &mut buf, bar.offset + bar.size),
        Err(Errno::EINVAL)
    );
    // Nothing to read is 0 bytes wherever it is.
    assert_eq!(
        e.kernel
            .device_read(dev.fd(), &mut [], bar.offset + bar.size),
        Ok(0)
    );
    // Reads inside still work: the vendor id of QEMU's nvme.
    dev.read_config(0, &mut buf).unwrap();
    assert_eq!(u16::from_le_bytes([buf[0], buf[1]]), 0x1b36);
}

#[test]
fn the_kernel_window_counts_whole_pages_only() {
    // The firmware fuzz target found KernelWindow::pages() at 0 for a one-page window of
    // 1-byte pages, and counting a partial last page, whose host message then fell outside
    // the window.
    use vmsi::IovaRange;
    use vmsi::msi::KernelWindow;
    let w = |start: u64, last: u64, page: u64| {
        KernelWindow::new(IovaRange { start, last }, page).expect("a valid window")
    };
    assert_eq!(w(0, 0, 1).pages(), 1);
    assert_eq!(w(0x800_0000, 0x80f_ffff, 4096).pages(), 256);
    // One and a half pages hold one doorbell page.
    let half = w(0x800_0000, 0x800_17ff, 4096);
    assert_eq!(half.pages(), 1);
    assert!(half.host_message(0x0809_0040, 1).is_err());
    assert_eq!(
        half.host_message(0x0809_0040, 0).unwrap().address,
        0x800_0040
    );
    // A window ending at the top of the address space.
    let top = w(u64::MAX - 0x1fff, u64::MAX, 4096);
    assert_eq!(top.pages(), 2);
    assert_eq!(
        top.host_message(0x0809_0040, 1).unwrap().address,
        u64::MAX - 0xfff + 0x40
    );
}
