//! Step 4: the device fires each vector, and the launcher follows the interrupt from the
//! device's MSI write to its eventfd and on to the route the guest's virtual ITS gets.

use std::io::Write;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use vmsi::msi::{Delivery, IrqIndex, Route};

use super::args::Options;
use super::guest::QUEUES_OFFSET;
use super::launch::{Backend, EXIT_FAILED, Failure, Vectors, Vm, hex};
use super::nvme::Nvme;

/// How long an interrupt that must arrive may take on the rig's TCG machine.
const IRQ_DEADLINE: Duration = Duration::from_secs(3);

/// What makes the device raise a vector.
enum Source<'r> {
    /// Sim's device model raises it on request (Sim models no DMA).
    Sim(&'r vmsi::seam::Sim),
    /// A real NVMe controller: a completion on the queue created with that vector.
    Nvme(Nvme<'r>),
}

impl Source<'_> {
    /// Makes the device raise `vector`; returns what was done, for the report.
    fn fire(&mut self, vm: &Vm, vector: u32) -> Result<String, Failure> {
        let index = IrqIndex::Msix.vfio_index();
        let fail = |e: String| Failure::new(EXIT_FAILED, format!("vector {vector}: {e}"));
        match self {
            Source::Sim(sim) => {
                sim.raise_irq(&vm.path, index, vector);
                Ok("Sim raises it".into())
            }
            // The admin queue's completions raise vector 0.
            Source::Nvme(nvme) if vector == 0 => {
                nvme.identify().map_err(fail)?;
                Ok("NVMe Identify completes on the admin queue".into())
            }
            Source::Nvme(nvme) => {
                nvme.flush(vector as u16).map_err(fail)?;
                Ok(format!("NVMe Flush completes on I/O queue {vector}"))
            }
        }
    }
}

/// Fires every vector in turn; returns those that reached their eventfd and were routed.
pub fn fire_all(
    vm: &Vm,
    vectors: &Vectors,
    opts: &Options,
    backend: &Backend,
    out: &mut dyn Write,
) -> Result<Vec<u32>, Failure> {
    let mut source = match backend {
        Backend::Sim(sim) => {
            writeln!(
                out,
                "Sim's device model raises each vector (Sim models no DMA)"
            )?;
            Source::Sim(sim)
        }
        Backend::Host => Source::Nvme(start_nvme(vm, opts, out)?),
    };
    settle(vectors, opts.vectors);
    let mut delivered = Vec::new();
    for vector in 0..opts.vectors {
        let efd = vectors
            .msi
            .eventfd(vector)
            .map_err(|e| Failure::new(EXIT_FAILED, format!("vector {vector}: {e}")))?;
        // Nothing earlier may pass for this vector's interrupt.
        drain(efd);
        let what = source.fire(vm, vector)?;
        let count = wait_fired(efd, IRQ_DEADLINE);
        if count == 0 {
            writeln!(
                out,
                "vector {vector}: {what}; eventfd {vector} did NOT fire within {} s",
                IRQ_DEADLINE.as_secs()
            )?;
            continue;
        }
        // Each vector has its own eventfd: the others stay quiet.
        let others: Vec<u32> = (0..opts.vectors)
            .filter(|&other| other != vector)
            .filter(|&other| vectors.msi.eventfd(other).is_ok_and(|fd| drain(fd) > 0))
            .collect();
        if !others.is_empty() {
            writeln!(
                out,
                "vector {vector}: {what}; eventfds {others:?} fired as well"
            )?;
            continue;
        }
        // The eventfd fired: in a VMM, KVM's irqfd would inject the vector's route now.
        let route = match vectors.msi.table().host_interrupt(vector) {
            Ok(Delivery::Deliver(route)) => route,
            other => {
                writeln!(
                    out,
                    "vector {vector}: eventfd fired but not routed: {other:?}"
                )?;
                continue;
            }
        };
        writeln!(
            out,
            "vector {vector}: {what}; eventfd {vector} fired (count {count}), no other did"
        )?;
        let (device_side, host_side) = path(vm, vectors, vector, route);
        writeln!(out, "  path: {device_side}")?;
        writeln!(out, "     -> {host_side}")?;
        delivered.push(vector);
    }
    report(&delivered, opts.vectors, out)?;
    Ok(delivered)
}

/// The stand-in guest NVMe driver: controller enabled, I/O queue k raising vector k.
pub(super) fn start_nvme<'r>(
    vm: &'r Vm,
    opts: &Options,
    out: &mut dyn Write,
) -> Result<Nvme<'r>, Failure> {
    let io_queues = (opts.vectors - 1) as u16;
    let fail = |e: String| Failure::new(EXIT_FAILED, format!("the guest's NVMe driver: {e}"));
    let area = vm.ram.gpa() + QUEUES_OFFSET;
    let mut nvme = Nvme::new(&vm.device, &vm.ram, area, vm.queue_dma(), io_queues).map_err(fail)?;
    nvme.enable().map_err(fail)?;
    for q in 1..=io_queues {
        nvme.create_io_queue_pair(q, q).map_err(fail)?;
    }
    writeln!(
        out,
        "guest NVMe driver: queues in guest RAM at GPA {area:#x}, device address {:#x}; \
         admin queue raises vector 0, I/O queue k vector k (k = 1..={io_queues})",
        vm.queue_dma()
    )?;
    Ok(nvme)
}

/// Waits (at most 2 s) until the vectors' eventfds stay quiet for 100 ms. Every admin
/// command of the NVMe setup raised vector 0, and under TCG the host takes a while to turn
/// the last of those MSIs into an eventfd signal; it must not pass for vector 0's own.
pub(super) fn settle(vectors: &Vectors, count: u32) {
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let fired = (0..count).filter(|&v| vectors.msi.eventfd(v).is_ok_and(|fd| drain(fd) > 0));
        if fired.count() == 0 {
            return;
        }
    }
}

/// The journey of vector `vector`'s MSI: the device's write through the SMMU to the ITS,
/// then the host interrupt to the guest's route.
fn path(vm: &Vm, vectors: &Vectors, vector: u32, route: Route) -> (String, String) {
    let data = vectors.host[vector as usize].1;
    let host_side = format!(
        "host IRQ (ITS EventID {data:#x}) -> eventfd {vector} -> route to the vITS: \
         GPA {:#x}, EventID {}, devid {:#x}",
        route.doorbell_gpa, route.data, route.devid
    );
    (device_path(vm, vectors, vector), host_side)
}

/// The device's half of vector `vector`'s MSI: its write, through the guest's stage 1 when
/// it has one, and the VM's stage 2, to the physical ITS doorbell.
pub(super) fn device_path(vm: &Vm, vectors: &Vectors, vector: u32) -> String {
    let (address, data) = vectors.host[vector as usize];
    let mut hops = vec![format!("device writes {data:#x} to {address:#x}")];
    let ipa = match &vm.nested {
        Some(n) => {
            let ipa = n.stage1.translate(&vm.ram, address).ok().flatten();
            hops.push(format!("stage 1: gIOVA {address:#x} -> IPA {}", hex(ipa)));
            ipa
        }
        None => Some(address),
    };
    hops.push(format!(
        "stage 2: IPA {} -> {}",
        hex(ipa),
        stage2(vectors, ipa)
    ));
    hops.join(" -> ")
}

/// Where the VM's stage 2 takes `ipa`: the page that holds the ITS doorbell (window page 0,
/// mapped by the kernel; or under PerVector the page the launcher mapped at the vITS
/// doorbell page's GPA).
fn stage2(vectors: &Vectors, ipa: Option<u64>) -> String {
    let at = vectors.in_stage2;
    match ipa {
        Some(ipa) if ipa >= at.iova && ipa - at.iova < at.len => {
            let pa = (vectors.doorbell & !(at.len - 1)) | (ipa - at.iova);
            format!("PA {pa:#x} (the ITS doorbell; page mapped by {})", at.by)
        }
        _ => "no doorbell".into(),
    }
}

fn report(delivered: &[u32], vectors: u32, out: &mut dyn Write) -> Result<(), Failure> {
    writeln!(
        out,
        "{} of {vectors} vectors delivered to their eventfds and routed",
        delivered.len()
    )?;
    if delivered.len() == vectors as usize {
        return Ok(());
    }
    let missing: Vec<u32> = (0..vectors).filter(|v| !delivered.contains(v)).collect();
    Err(Failure::new(
        EXIT_FAILED,
        format!("vectors {missing:?} did not reach their eventfds"),
    ))
}

/// Reads and clears an eventfd's counter; 0 when it has not fired.
fn drain(fd: BorrowedFd<'_>) -> u64 {
    let mut b = [0u8; 8];
    match nix::unistd::read(fd, &mut b) {
        Ok(8) => u64::from_ne_bytes(b),
        _ => 0,
    }
}

/// Waits up to `timeout` for a non-blocking eventfd to fire; returns (and clears) its
/// count, 0 if it did not fire in time.
fn wait_fired(fd: BorrowedFd<'_>, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let count = drain(fd);
        if count > 0 {
            return count;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return 0;
        }
        let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        // EINTR or a spurious wakeup goes round again until the deadline.
        let _ = poll(&mut fds, PollTimeout::from(ms));
    }
}
