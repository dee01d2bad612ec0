//! The kernel's own fault injection over the library's full device setup, in the rig.
//!
//! The protocol is the one of `tools/testing/selftests/iommu/iommufd_fail_nth.c`: writing N
//! to `/proc/thread-self/fail-nth` makes the N-th fault-injection point this thread passes
//! from then on fail (`should_fail_ex` counts down `current->fail_nth` at every slab
//! allocation (failslab), page allocation (fail_page_alloc) and user copy (fail_usercopy)
//! and fails the one where it reaches 0). Reading it back gives what is left: 0 means the
//! N-th point was reached inside the setup; anything else means the setup took fewer points,
//! so it ran without a fault, and the sweep is over. As the selftest does, the test first
//! lets every kind fail any allocation (`ignore-gfp-wait=N`; `min-order=0` too, so IOMMU
//! page-table pages count) and silences the per-failure stack dump (`verbose=0`), which the
//! rig would otherwise count as a kernel warning. Allocations made under the generic IRQ
//! layer are left out with a stack-trace filter: Linux 7.2 mishandles failures there (see
//! [`genirq_text`]; `REJECT_GENIRQ = false` shows it).
//!
//! For each N: the setup (iommufd, IOAS, bind, attach; nest parent, vIOMMU, vDEVICE and a
//! nested HWPT in acpi-canwbs mode; SET_IRQS through `Device::enable_irqs`, then
//! `MsiDevice::bring_up`) either absorbs the failure or stops with a typed error naming a
//! call of the step that failed; after dropping everything the process has the file
//! descriptors it had before; the same setup without a fault then succeeds (no stuck
//! state); and the kernel log has no warning. `tests/faults.rs` runs the same sweep on Sim.
//!
//! The tests are `#[ignore]`d: they need the rig (`tests/rig/run.sh`), which runs them with
//! `--include-ignored --test-threads=1` and `VMSI_BACKEND=host`.

mod common;
#[path = "support/sweep.rs"]
mod sweep;

use sweep::{Built, Step, at, composer, objects};

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

use common::{env, eventfd, on_host, rig_mode};
use nix::sys::eventfd::EventFd;
use vmsi::msi::{IrqIndex, MsiDevice};
use vmsi::{Device, Errno, Error};

/// A bound on each part's sweep (the selftest's is 1000; the rig's setup takes about 600).
const MAX_POINTS: u64 = 20_000;

/// The interrupt part: `SET_IRQS` through `Device::enable_irqs` (and disable), then
/// `MsiDevice::bring_up`. `fds` are made before the fault is armed: the test's own eventfds
/// are not what is under test (bring-up's are).
fn irqs(
    dev: &Device,
    index: IrqIndex,
    fds: &[Option<BorrowedFd<'_>>],
    msi: &mut Option<MsiDevice>,
) -> Result<(), (Step, Error)> {
    dev.enable_irqs(index.vfio_index(), fds)
        .map_err(at(Step::EnableIrqs))?;
    dev.disable_irqs(index.vfio_index())
        .map_err(at(Step::DisableIrqs))?;
    *msi = Some(MsiDevice::bring_up(dev.clone(), index, composer()).map_err(at(Step::BringUp))?);
    Ok(())
}

fn write_knob(path: &str, value: &str) -> bool {
    std::fs::write(path, value).is_ok()
}

const DEBUGFS: &str = "/sys/kernel/debug";

/// Keep injected failures out of the generic IRQ layer (see [`genirq_text`]). Set it to
/// false to watch Linux 7.2 WARN and wedge the device's MSI, as described there.
const REJECT_GENIRQ: bool = true;

/// Functions of the generic IRQ layer (kernel/irq: irqdesc.c first, msi.c last in link
/// order) on every path by which VFIO allocates, requests and frees interrupt vectors.
const GENIRQ: [&str; 8] = [
    "irq_to_desc",
    "request_threaded_irq",
    "irq_activate",
    "__irq_domain_alloc_irqs",
    "irq_domain_alloc_irqs_parent",
    "register_irq_proc",
    "msi_domain_alloc_irqs_all_locked",
    "msi_domain_free_irqs_all_locked",
];

/// The text of the generic IRQ layer, `[start, end)`, from `/proc/kallsyms`.
///
/// Linux 7.2 mishandles allocation failures there, in ways that are not the library's to
/// handle: `its_irq_domain_alloc` returns without freeing the events it took when
/// `iommu_dma_prepare_msi` fails, so the device's ITS table stays full and every later MSI
/// enable fails with ENOSPC until reboot; and `register_irq_proc` ignores a failed
/// `proc_create`, so freeing the vector WARNs in `remove_proc_entry` ("name
/// 'smp_affinity'"). Both were found by this test; with the reject range below the sweep
/// skips every allocation made under these functions (they then count for nothing) and
/// covers the rest: iommufd, VFIO, the SMMUv3 driver, eventfds, files, user copies.
fn genirq_text() -> (u64, u64) {
    let syms = std::fs::read_to_string("/proc/kallsyms").expect("/proc/kallsyms");
    let mut text: Vec<(u64, &str)> = syms
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (addr, kind, name) = (f.next()?, f.next()?, f.next()?);
            let text = matches!(kind, "t" | "T");
            Some((u64::from_str_radix(addr, 16).ok()?, name)).filter(|_| text)
        })
        .collect();
    text.sort_unstable();
    let found: Vec<usize> = GENIRQ
        .iter()
        .filter_map(|g| text.iter().position(|(_, n)| n == g))
        .collect();
    assert!(
        found.len() >= 6,
        "kernel/irq anchors in /proc/kallsyms: {found:?}"
    );
    assert!(
        text[0].0 != 0,
        "/proc/kallsyms hides addresses (kptr_restrict)"
    );
    let first = *found.iter().min().unwrap();
    let last = *found.iter().max().unwrap();
    let (start, end) = (text[first].0, text[last + 1].0);
    // The range must not hide what is under test.
    let ours = ["vfio", "iommufd", "iommu_", "arm_smmu", "its_", "eventfd"];
    for (_, name) in &text[first..=last] {
        assert!(
            !ours.iter().any(|p| name.starts_with(p)),
            "{name} lies inside the kernel/irq range {start:#x}..{end:#x}"
        );
    }
    (start, end)
}

/// Lets every fault-injection kind fail any allocation outside the generic IRQ layer and
/// keeps failures quiet, as `iommufd_fail_nth.c`'s `setup_fault_injection` does (plus the
/// reject range). Returns the kinds found.
fn setup_fault_injection() -> Vec<String> {
    const D: &str = DEBUGFS;
    assert!(
        write_knob(&format!("{D}/failslab/ignore-gfp-wait"), "N"),
        "failslab is in the rig's kernel (CONFIG_FAILSLAB) and /init mounts debugfs"
    );
    // Absent without CONFIG_FAIL_PAGE_ALLOC: then only slab and user copies count.
    write_knob(&format!("{D}/fail_page_alloc/ignore-gfp-wait"), "N");
    // Order-0 pages are where IOMMU page tables live. User pages (highmem flag) stay out:
    // the test's own page faults are not what is under test.
    write_knob(&format!("{D}/fail_page_alloc/min-order"), "0");
    let (start, end) = genirq_text();
    let mut kinds = Vec::new();
    for e in std::fs::read_dir(D).expect("debugfs").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("fail") || !e.path().join("verbose").exists() {
            continue;
        }
        // A stack dump per injected failure would read as a kernel warning.
        assert!(write_knob(&format!("{D}/{name}/verbose"), "0"), "{name}");
        // CONFIG_FAULT_INJECTION_STACKTRACE_FILTER: skip the generic IRQ layer.
        let filtered = !REJECT_GENIRQ
            || write_knob(&format!("{D}/{name}/reject-start"), &format!("{start:#x}"))
                && write_knob(&format!("{D}/{name}/reject-end"), &format!("{end:#x}"))
                && write_knob(&format!("{D}/{name}/stacktrace-depth"), "32");
        assert!(
            filtered,
            "{name}: no stack trace filter in the rig's kernel"
        );
        kinds.push(name);
    }
    kinds.sort();
    kinds
}

/// `/proc/thread-self/fail-nth` of the test's thread.
struct FailNth(File);

impl FailNth {
    fn open() -> Self {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/thread-self/fail-nth")
            .expect("fail-nth (CONFIG_FAULT_INJECTION)");
        FailNth(f)
    }

    fn arm(&self, n: u64) {
        let s = n.to_string();
        assert_eq!(
            self.0.write_at(s.as_bytes(), 0).expect("arm fail-nth"),
            s.len()
        );
    }

    /// Disarms; whether the armed point was reached before this call.
    fn disarm(&self) -> bool {
        let mut buf = [0u8; 32];
        let fired = match self.0.read_at(&mut buf, 0) {
            Ok(n) => std::str::from_utf8(&buf[..n]).map(str::trim) == Ok("0"),
            // The read's own copy-out was the point: the setup never reached it.
            Err(e) if e.raw_os_error() == Some(Errno::EFAULT as i32) => false,
            Err(e) => panic!("reading fail-nth: {e}"),
        };
        // Writing can take the point too (its copy-in); then the second write works.
        if self.0.write_at(b"0", 0).is_err() {
            self.0.write_at(b"0", 0).expect("disarm fail-nth");
        }
        fired
    }
}

/// Open file descriptors of the process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc").count()
}

/// New kernel log lines that the rig would count as warnings.
struct Kmsg(File);

impl Kmsg {
    fn open() -> Self {
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open("/dev/kmsg")
            .expect("/dev/kmsg");
        f.seek(SeekFrom::End(0))
            .expect("seek to the end of the log");
        Kmsg(f)
    }

    fn warnings(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        // One record per read; bounded so a flood cannot keep the test here.
        for _ in 0..10_000 {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    let msg = rec.split_once(';').map_or(&*rec, |(_, m)| m).trim_end();
                    let bad = ["WARNING", "BUG:", "BUG ", "Oops", "Call trace"];
                    if bad.iter().any(|p| msg.contains(p)) {
                        out.push(msg.to_owned());
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                // Records were overwritten before being read: keep going.
                Err(e) if e.raw_os_error() == Some(Errno::EPIPE as i32) => continue,
                Err(e) => panic!("reading /dev/kmsg: {e}"),
            }
        }
        out
    }
}

/// What one sweep saw.
#[derive(Debug, Default)]
struct Report {
    /// Fault points of the object part and of the interrupt part.
    points: [u64; 2],
    /// Points whose failure the setup absorbed (it succeeded anyway).
    absorbed: u64,
    /// Failures, by step and errno number.
    failures: BTreeMap<(Step, i32), u64>,
}

impl Report {
    fn failed(&mut self, n: u64, step: Step, err: &Error) {
        match err {
            Error::Kernel { op, errno } | Error::Unsupported { op, errno, .. } => {
                assert!(
                    step.ops().contains(op),
                    "n={n}: {step:?} failed naming {op}: {err}"
                );
                *self.failures.entry((step, *errno as i32)).or_default() += 1;
            }
            other => panic!("n={n}: {step:?} failed untyped: {other:?}"),
        }
    }
}

/// The per-iteration checks: no warning in the kernel log, the files of before.
struct Checks {
    fail: FailNth,
    kmsg: Kmsg,
}

impl Checks {
    fn after(&mut self, n: u64, what: &str, fds: usize) {
        assert_eq!(open_fds(), fds, "n={n} ({what}): files left open");
        let warnings = self.kmsg.warnings();
        assert!(
            warnings.is_empty(),
            "n={n} ({what}): the kernel warned: {warnings:#?}"
        );
    }
}

fn describe(r: &Result<(), (Step, Error)>) -> String {
    match r {
        Ok(()) => "absorbed".to_owned(),
        Err((s, err)) => format!("failed at {s:?}: {err}"),
    }
}

/// Fails the n-th fault-injection point of the setup, for n = 1, 2, ... until it succeeds.
///
/// In two parts, as the selftest's `fail_nth_enable()` does, so that the interrupt part's
/// many points do not each reopen the device (which costs an FLR reset of the nvme): the
/// object part with the fault armed from the first call, then, on a device set up without
/// a fault, the interrupt part armed from its first call. Together they fail every point
/// of the full setup once.
fn sweep(path: &Path, msix: bool, nested: bool) -> Report {
    let kinds = setup_fault_injection();
    let e = env();
    let index = if msix { IrqIndex::Msix } else { IrqIndex::Msi };
    let eventfds: Vec<EventFd> = (0..2).map(|_| eventfd()).collect();
    let fds: Vec<Option<BorrowedFd<'_>>> = eventfds[..if msix { 2 } else { 1 }]
        .iter()
        .map(|f| Some(f.as_fd()))
        .collect();
    let mut c = Checks {
        fail: FailNth::open(),
        kmsg: Kmsg::open(),
    };
    // A clean run first: it must work, and afterwards the heap has what the setup needs,
    // so the injected failure lands in the kernel's paths, not in malloc growing the heap.
    let baseline = open_fds();
    let full = |b: &mut Built| -> Result<(), (Step, Error)> {
        objects(&e.kernel, path, nested, b)?;
        let dev = b.device.clone().expect("opened");
        irqs(&dev, index, &fds, &mut b.msi)
    };
    let mut b = Built::default();
    full(&mut b)
        .unwrap_or_else(|(s, err)| panic!("the setup fails without a fault at {s:?}: {err}"));
    b.drop_all();
    c.after(0, "clean run", baseline);

    let t0 = Instant::now();
    let mut report = Report::default();
    // The object part.
    for n in 1..=MAX_POINTS {
        let mut b = Built::default();
        c.fail.arm(n);
        let r = objects(&e.kernel, path, nested, &mut b);
        let fired = c.fail.disarm();
        let what = describe(&r);
        if !fired {
            r.unwrap_or_else(|(s, err)| panic!("n={n}: no fault, yet {s:?} failed: {err}"));
            b.drop_all();
            report.points[0] = n - 1;
            break;
        }
        match &r {
            Ok(()) => report.absorbed += 1,
            Err((step, err)) => report.failed(n, *step, err),
        }
        b.drop_all();
        c.after(n, &what, baseline);
        // No stuck state: the same, without a fault, works.
        let mut again = Built::default();
        objects(&e.kernel, path, nested, &mut again).unwrap_or_else(|(s, err)| {
            panic!("n={n} ({what}): the retry without a fault failed at {s:?}: {err}")
        });
        again.drop_all();
        c.after(n, "retry", baseline);
    }
    // The interrupt part, on objects made without a fault.
    let mut held = Built::default();
    objects(&e.kernel, path, nested, &mut held).unwrap_or_else(|(s, err)| panic!("{s:?}: {err}"));
    let dev = held.device.clone().expect("opened");
    let with_objects = open_fds();
    for n in 1..=MAX_POINTS {
        let mut msi = None;
        c.fail.arm(n);
        let r = irqs(&dev, index, &fds, &mut msi);
        let fired = c.fail.disarm();
        let what = describe(&r);
        if !fired {
            r.unwrap_or_else(|(s, err)| panic!("n={n}: no fault, yet {s:?} failed: {err}"));
            drop(msi);
            report.points[1] = n - 1;
            break;
        }
        match &r {
            Ok(()) => report.absorbed += 1,
            Err((step, err)) => report.failed(n, *step, err),
        }
        // Dropping an MsiDevice disables the index; after a failure the VMM disables it
        // (a failed SET_IRQS may have left it enabled, e.g. when DisableIrqs failed).
        drop(msi);
        match dev.disable_irqs(index.vfio_index()) {
            // EINVAL: the index was not enabled (vfio_pci_set_msi_trigger).
            Ok(())
            | Err(Error::Kernel {
                errno: Errno::EINVAL,
                ..
            }) => {}
            Err(err) => panic!("n={n} ({what}): disable: {err}"),
        }
        c.after(n, &what, with_objects);
        let mut again = None;
        irqs(&dev, index, &fds, &mut again).unwrap_or_else(|(s, err)| {
            panic!("n={n} ({what}): the retry without a fault failed at {s:?}: {err}")
        });
        drop(again);
        c.after(n, "retry", with_objects);
    }
    drop(dev);
    held.drop_all();
    c.after(0, "the end", baseline);
    let total = report.points[0] + report.points[1];
    assert!(
        report.points.iter().all(|&p| p > 0) && total < 2 * MAX_POINTS,
        "{report:?}"
    );
    // Written past libtest's capture, so the rig's console log has the figures of passing
    // runs too (the README's Reliability section quotes them).
    let mut text = format!(
        "fail-nth on Linux ({}, {}, {}): {} points ({} objects + {} interrupts), {} absorbed, \
         kinds {:?}, {:.1} s\n",
        rig_mode(),
        path.display(),
        if nested { "nested" } else { "paging" },
        total,
        report.points[0],
        report.points[1],
        report.absorbed,
        kinds,
        t0.elapsed().as_secs_f64()
    );
    for ((step, errno), k) in &report.failures {
        text += &format!("  {step:?}: {} x{k}\n", Errno::from_raw(*errno));
    }
    let _ = std::io::stderr().write_all(text.as_bytes());
    report
}

fn require_rig() {
    assert!(on_host(), "runs inside the rig (VMSI_BACKEND=host)");
}

#[test]
#[ignore = "needs the rig's real kernel"]
fn every_failed_kernel_allocation_in_the_msi_setup_is_typed_and_leaves_nothing() {
    require_rig();
    let e = env();
    let r = sweep(&e.edu, false, false);
    // Every step of the paging setup allocates in the kernel, so each failed at least once.
    for step in [
        Step::OpenIommufd,
        Step::AllocIoas,
        Step::OpenDevice,
        Step::Bind,
        Step::AttachIoas,
        Step::EnableIrqs,
        Step::BringUp,
    ] {
        assert!(
            r.failures.keys().any(|(s, _)| *s == step),
            "{step:?} never failed: {r:?}"
        );
    }
}

#[test]
#[ignore = "needs the rig's real kernel"]
fn every_failed_kernel_allocation_in_the_msix_setup_is_typed_and_leaves_nothing() {
    require_rig();
    let e = env();
    // In acpi-canwbs the nvme goes through the nested path: vIOMMU, vDEVICE, nested HWPT.
    let r = sweep(&e.nvme[1], true, e.nested);
    let mut want = vec![
        Step::Bind,
        Step::AttachIoas,
        Step::EnableIrqs,
        Step::BringUp,
    ];
    if e.nested {
        want.extend([
            Step::NestParent,
            Step::Viommu,
            Step::Vdevice,
            Step::NestedHwpt,
        ]);
    }
    for step in want {
        assert!(
            r.failures.keys().any(|(s, _)| *s == step),
            "{step:?} never failed: {r:?}"
        );
    }
}
