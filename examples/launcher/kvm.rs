//! Step 3 with an arm64 KVM: the VM, its vGICv3 and virtual ITS, one irqfd route per
//! vector, and a guest (`payload.rs`) that receives each vector as the LPI it mapped.
//!
//! The MSI path this proves, per vector: the NVMe controller writes its host message ->
//! [the guest's stage 1 ->] the VM's stage 2 -> the physical ITS -> the host IRQ -> the
//! vector's eventfd -> KVM's irqfd -> the route (vITS doorbell GPA, EventID, devid) -> the
//! vITS translates it through the tables the guest gave it -> LPI pending on the vCPU ->
//! the guest's `ICC_IAR1_EL1` returns it.
//!
//! The guest's view of the device: its BAR0 at [`BAR0_GPA`] and its config space's MSI-X
//! Message Control through ECAM at [`ECAM_BASE`]; neither has a memory slot, so every access
//! exits to the launcher (`KVM_EXIT_MMIO`). MSI-X table writes go to the library's trap
//! emulation, whose routes [`KvmRoutes`] commits. Submission doorbell writes are forwarded
//! to the real BAR. A fast VMM would give the doorbell page its own memory slot over the
//! VFIO BAR mapping (the MSI-X table shares BAR0 on QEMU's NVMe, so only that page could be
//! mapped); one doorbell write per vector is not worth it here, and forwarding keeps every
//! guest access checked.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kvm_bindings::{
    KVM_DEV_ARM_VGIC_CTRL_INIT, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_DEV_ARM_VGIC_GRP_CTRL,
    KVM_REG_ARM_CORE, KVM_REG_ARM64, KVM_REG_SIZE_U64, KVM_VGIC_ITS_ADDR_TYPE,
    KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST, kvm_device_attr,
    kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_ITS as VGIC_ITS,
    kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3 as VGIC_V3,
};
use kvm_ioctls::VcpuExit;
use nix::sys::pthread::{Pthread, pthread_kill, pthread_self};
use nix::sys::signal::Signal;
use vmsi::kvm::{DeviceKey, KvmRoutes, RoutesConfig};
use vmsi::msi::{Effect, MsixRegion};
use vmsi::pci::MsixCapability;
use vmsi::seam::KvmMachine;
use vmsi::{Errno, Error};

use super::args::Options;
use super::delivery;
use super::guest::{GUEST_RID, VITS_BASE, VITS_DOORBELL};
use super::launch::{self, EXIT_FAILED, EXIT_USAGE, Failure, Vectors, Vm};
use super::nvme::Nvme;
use super::payload::{self, CMDQ_PAGES, FIRST_LPI, ITT_EVENT_BITS, LPI_ID_BITS, Mailbox, Params};

// The guest's memory map puts things where QEMU's `virt` machine has them.
/// The vGICv3 distributor.
pub const GICD_BASE: u64 = 0x0800_0000;
/// The vCPU's vGICv3 redistributor (RD_base; SGI_base follows at +64 KiB).
pub const GICR_BASE: u64 = 0x080a_0000;
/// The device's BAR0, at the start of the PCI MMIO window.
pub const BAR0_GPA: u64 = 0x1000_0000;
/// The PCI ECAM window: the device's config space is at `GUEST_RID << 12` in it.
pub const ECAM_BASE: u64 = 0x3f00_0000;
/// The launcher's mailbox, where the payload reports ([`Mailbox`]).
pub const MAILBOX_GPA: u64 = 0x0c00_0000;

/// Offsets in guest RAM of the payload and its data, all below the stage-1 tables (1 MiB).
/// KVM's vITS wants its tables and command queue 64 KiB-aligned.
struct Layout;

impl Layout {
    const CODE: u64 = 0x0;
    const PARAMS: u64 = 0x8000;
    const ITS_DEVICES: u64 = 0x1_0000;
    const ITS_COLLECTIONS: u64 = 0x2_0000;
    const ITS_CMDQ: u64 = 0x3_0000;
    const ITT: u64 = 0x4_0000;
    const LPI_PENDING: u64 = 0x5_0000;
    /// One byte per LPI 8192..65535: 56 KiB.
    const LPI_PROPERTIES: u64 = 0x6_0000;
}

/// How long the guest may go without exiting to the launcher before the launcher stops
/// it: covers the wait for one interrupt on the rig's TCG machine, with room to spare.
const QUIET_LIMIT: Duration = Duration::from_secs(10);

fn kernel(what: &'static str) -> impl FnOnce(Error) -> Failure {
    move |e| Failure::new(EXIT_FAILED, format!("{what}: {e}"))
}

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Failure {
    move |e| {
        let errno = Errno::from_raw(e.errno());
        Failure::new(EXIT_FAILED, format!("{what}: {errno}"))
    }
}

/// What the guest did, as far as the launcher can tell: its vectors, in order, with the
/// INTID each arrived as.
#[derive(Debug)]
pub struct GuestReport {
    /// (vector, INTID the guest acknowledged).
    pub lpis: Vec<(u32, u32)>,
}

/// Step 3: creates the VM, runs the payload, follows every vector into the guest. Returns
/// the vectors whose interrupt arrived in the guest as the LPI the guest mapped.
pub fn run(
    vm: &Vm,
    vectors: &Vectors,
    opts: &Options,
    start: Instant,
    out: &mut dyn Write,
) -> Result<Vec<u32>, Failure> {
    let cap = MsixCapability::read(&vm.device)
        .map_err(kernel("reading config space"))?
        .ok_or_else(|| Failure::new(EXIT_USAGE, "the device lost its MSI-X capability"))?;
    if cap.table_bar != 0 {
        return Err(Failure::new(
            EXIT_USAGE,
            "the KVM guest maps BAR0 only, and this device's MSI-X table is in another BAR",
        ));
    }
    let machine = machine(vm, out)?;
    // Dropped before the machine: the routes use its VM.
    let mut routes =
        KvmRoutes::new(&machine, RoutesConfig::default()).map_err(kernel("the route table"))?;
    let eventfds = vectors.msi.kvm_eventfds().map_err(kernel("the eventfds"))?;
    let key = routes
        .add_device(eventfds)
        .map_err(kernel("the route table"))?;

    // The rest of the guest's NVMe driver: controller on, queues created, and per vector
    // one command waiting in its queue for the payload to submit.
    let mut nvme = delivery::start_nvme(vm, opts, out)?;
    delivery::settle(vectors, opts.vectors);
    let mut rings = Vec::new();
    for vector in 0..opts.vectors {
        let ring = nvme
            .prepare_for_vector(vector as u16)
            .map_err(|e| Failure::new(EXIT_FAILED, format!("vector {vector}: {e}")))?;
        rings.push((BAR0_GPA + ring.doorbell as u64, ring.tail as u64));
    }
    load_payload(vm, &cap, opts.vectors, &rings, out)?;
    machine
        .with_vcpu(0, |v| {
            let entry = vm.ram.gpa() + Layout::CODE;
            let params = vm.ram.gpa() + Layout::PARAMS;
            v.set_one_reg(core_reg(PC), &entry.to_le_bytes())?;
            v.set_one_reg(core_reg(X0), &params.to_le_bytes())
        })
        .ok_or_else(|| Failure::new(EXIT_FAILED, "no vCPU 0"))?
        .map_err(ioctl("KVM_SET_ONE_REG"))?;

    writeln!(out, "running the guest:")?;
    let mut guest = Guest {
        vm,
        vectors,
        cap,
        routes,
        key,
        nvme,
        start,
        lpis: Vec::new(),
        out,
    };
    let report = run_vcpu(&machine, &mut guest)?;
    let out = guest.out;
    let delivered = report
        .lpis
        .iter()
        .filter(|&&(vector, intid)| intid == FIRST_LPI + vector)
        .map(|&(vector, _)| vector)
        .collect::<Vec<_>>();
    writeln!(
        out,
        "{} of {} vectors delivered into the guest as the LPIs it mapped",
        delivered.len(),
        opts.vectors
    )?;
    if delivered.len() != opts.vectors as usize {
        return Err(Failure::new(
            EXIT_FAILED,
            format!("the guest received {:?}", report.lpis),
        ));
    }
    Ok(delivered)
}

/// The VM: one vCPU, guest RAM as memory slot 0, a vGICv3 and a vITS.
fn machine(vm: &Vm, out: &mut dyn Write) -> Result<KvmMachine, Failure> {
    let mut machine = KvmMachine::create().map_err(kernel("creating the VM"))?;
    machine
        .add_memory(0, vm.ram.gpa(), vm.ram.memory())
        .map_err(kernel("guest RAM"))?;
    let vcpu = machine.create_vcpu(0).map_err(kernel("the vCPU"))?;
    let init = machine.preferred_target().map_err(kernel("the vCPU"))?;
    machine
        .with_vcpu(vcpu, |v| v.vcpu_init(&init))
        .ok_or_else(|| Failure::new(EXIT_FAILED, "no vCPU 0"))?
        .map_err(ioctl("KVM_ARM_VCPU_INIT"))?;
    // The vGICv3: where its distributor and redistributors are, then initialised (after
    // the vCPUs exist: it sizes the redistributors by them).
    let gic = machine
        .create_device(VGIC_V3)
        .map_err(kernel("the vGICv3"))?;
    set_addr(
        &machine,
        gic,
        KVM_VGIC_V3_ADDR_TYPE_DIST,
        GICD_BASE,
        "vGICv3 distributor",
    )?;
    set_addr(
        &machine,
        gic,
        KVM_VGIC_V3_ADDR_TYPE_REDIST,
        GICR_BASE,
        "vGICv3 redistributor",
    )?;
    init_device(&machine, gic, "vGICv3")?;
    // The vITS: its base, then initialised. From now on MSI routes need a device id.
    let its = machine
        .create_device(VGIC_ITS)
        .map_err(kernel("the vITS"))?;
    set_addr(&machine, its, KVM_VGIC_ITS_ADDR_TYPE, VITS_BASE, "vITS")?;
    init_device(&machine, its, "vITS")?;
    writeln!(
        out,
        "VM: 1 vCPU; guest RAM (the same memfd as the IOAS's) as memory slot 0 at GPA {:#x}; \
         vGICv3 distributor {GICD_BASE:#x}, redistributor {GICR_BASE:#x}; vITS {VITS_BASE:#x} \
         (doorbell {VITS_DOORBELL:#x})",
        vm.ram.gpa()
    )?;
    Ok(machine)
}

fn set_addr(
    machine: &KvmMachine,
    device: usize,
    attr: u32,
    gpa: u64,
    what: &'static str,
) -> Result<(), Failure> {
    let attr = kvm_device_attr {
        flags: 0,
        group: KVM_DEV_ARM_VGIC_GRP_ADDR,
        attr: attr as u64,
        // KVM reads the address from here during the call.
        addr: &gpa as *const u64 as u64,
    };
    let fd = machine
        .device(device)
        .ok_or_else(|| Failure::new(EXIT_FAILED, format!("{what}: no such device")))?;
    fd.set_device_attr(&attr)
        .map_err(ioctl("KVM_SET_DEVICE_ATTR (address)"))
        .map_err(|f| Failure::new(f.code, format!("{what}: {}", f.message)))
}

fn init_device(machine: &KvmMachine, device: usize, what: &'static str) -> Result<(), Failure> {
    let attr = kvm_device_attr {
        flags: 0,
        group: KVM_DEV_ARM_VGIC_GRP_CTRL,
        attr: KVM_DEV_ARM_VGIC_CTRL_INIT as u64,
        addr: 0,
    };
    let fd = machine
        .device(device)
        .ok_or_else(|| Failure::new(EXIT_FAILED, format!("{what}: no such device")))?;
    fd.set_device_attr(&attr)
        .map_err(ioctl("KVM_SET_DEVICE_ATTR (init)"))
        .map_err(|f| Failure::new(f.code, format!("{what}: {}", f.message)))
}

// Core register ids: offsets in `struct kvm_regs` (user_pt_regs), in 32-bit words.
const X0: u64 = 0;
const PC: u64 = 32 * 8;

fn core_reg(offset: u64) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE as u64 | (offset / 4)
}

/// Writes the payload's code and parameter block into guest RAM, and zeroes the tables it
/// hands the vGIC.
fn load_payload(
    vm: &Vm,
    cap: &MsixCapability,
    vectors: u32,
    rings: &[(u64, u64)],
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let code = payload::program().map_err(|e| Failure::new(EXIT_FAILED, format!("{e:?}")))?;
    if vectors > 1 << ITT_EVENT_BITS || Layout::PARAMS + Params::len(vectors) > Layout::ITS_DEVICES
    {
        return Err(Failure::new(
            EXIT_USAGE,
            format!(
                "the guest payload handles at most {} vectors",
                1 << ITT_EVENT_BITS
            ),
        ));
    }
    let ram = &vm.ram;
    let at = |offset: u64| ram.gpa() + offset;
    let fail = |e: Error| Failure::new(EXIT_FAILED, format!("loading the payload: {e}"));
    for (offset, len) in [
        (Layout::ITS_DEVICES, 0x1_0000),
        (Layout::ITS_COLLECTIONS, 0x1_0000),
        (Layout::ITS_CMDQ, CMDQ_PAGES * 4096),
        (Layout::ITT, 0x1_0000),
        (Layout::LPI_PENDING, 0x1_0000),
        (
            Layout::LPI_PROPERTIES,
            (1 << LPI_ID_BITS) - FIRST_LPI as u64,
        ),
    ] {
        ram.zero(at(offset), len as usize).map_err(fail)?;
    }
    for (k, word) in code.iter().enumerate() {
        ram.write_u32(at(Layout::CODE) + 4 * k as u64, *word)
            .map_err(fail)?;
    }
    // Valid, and the table's size in 64 KiB pages minus one (one page each).
    let valid = 1u64 << 63;
    let ptz = 1u64 << 62;
    let fields = [
        (Params::GICD, GICD_BASE),
        (Params::GICR, GICR_BASE),
        (Params::ITS, VITS_BASE),
        (
            Params::PROPBASER,
            at(Layout::LPI_PROPERTIES) | (LPI_ID_BITS as u64 - 1),
        ),
        (Params::PENDBASER, at(Layout::LPI_PENDING) | ptz),
        (Params::PROP_FIRST, at(Layout::LPI_PROPERTIES)),
        (Params::BASER_DEVICES, at(Layout::ITS_DEVICES) | valid),
        (
            Params::BASER_COLLECTIONS,
            at(Layout::ITS_COLLECTIONS) | valid,
        ),
        (
            Params::CBASER,
            at(Layout::ITS_CMDQ) | valid | (CMDQ_PAGES - 1),
        ),
        (Params::CMDQ, at(Layout::ITS_CMDQ)),
        (Params::ITT, at(Layout::ITT)),
        (Params::DEVID, GUEST_RID as u64),
        (Params::FIRST_LPI, FIRST_LPI as u64),
        (Params::VECTORS, vectors as u64),
        (Params::MSIX_TABLE, BAR0_GPA + cap.table_offset),
        (Params::MSIX_CONTROL, msix_control_gpa(cap)),
        (Params::MSI_ADDRESS, vm.guest_msi),
        (Params::MAILBOX, MAILBOX_GPA),
    ];
    for (offset, value) in fields {
        ram.write_u64(at(Layout::PARAMS) + offset as u64, value)
            .map_err(fail)?;
    }
    for (k, &(doorbell, tail)) in rings.iter().enumerate() {
        let slot = at(Layout::PARAMS) + Params::RINGS as u64 + 16 * k as u64;
        ram.write_u64(slot, doorbell).map_err(fail)?;
        ram.write_u64(slot + 8, tail).map_err(fail)?;
    }
    writeln!(
        out,
        "guest payload: {} instructions at GPA {:#x}, parameters at {:#x}; it maps devid \
         {GUEST_RID:#x} EventID k -> LPI {FIRST_LPI} + k in its vITS",
        code.len(),
        at(Layout::CODE),
        at(Layout::PARAMS)
    )?;
    Ok(())
}

/// The MSI-X Message Control register in ECAM: the device's config space, then the
/// capability's second half-word.
fn msix_control_gpa(cap: &MsixCapability) -> u64 {
    ECAM_BASE + ((GUEST_RID as u64) << 12) + cap.offset as u64 + 2
}

/// Everything the launcher needs while the guest runs.
struct Guest<'a> {
    vm: &'a Vm,
    vectors: &'a Vectors,
    cap: MsixCapability,
    routes: KvmRoutes<&'a KvmMachine>,
    key: DeviceKey,
    nvme: Nvme<'a>,
    start: Instant,
    lpis: Vec<(u32, u32)>,
    out: &'a mut dyn Write,
}

/// A vCPU exit, taken out of the run structure.
enum Exit {
    /// A store of `size` bytes to an address no memory slot backs.
    Write { gpa: u64, size: u8, value: u64 },
    /// A load from such an address (the payload makes none).
    Read { gpa: u64 },
    /// Anything else.
    Other(String),
}

/// A guest access the launcher refuses. Guests are hostile: nothing they write panics the
/// launcher or reaches the device unchecked.
#[derive(Debug)]
enum GuestFault {
    Size(u64, usize),
    Read(u64),
    Unmapped(u64, u8),
    Msix(Error),
    Doorbell(String),
    Report(u64),
    ItsStalled(u64),
    Exit(String),
}

impl std::fmt::Display for GuestFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestFault::Size(gpa, n) => write!(f, "a {n}-byte access at GPA {gpa:#x}"),
            GuestFault::Read(gpa) => write!(f, "a read of GPA {gpa:#x}, where nothing is"),
            GuestFault::Unmapped(gpa, n) => write!(f, "a {n}-byte write to GPA {gpa:#x}"),
            GuestFault::Msix(e) => write!(f, "an MSI-X access the trap emulation refused: {e}"),
            GuestFault::Doorbell(e) => write!(f, "a BAR0 write the launcher refused: {e}"),
            GuestFault::Report(v) => write!(f, "a report {v:#x} for a vector it does not have"),
            GuestFault::ItsStalled(w) => {
                write!(f, "its vITS stopped reading commands (GITS_CWRITER {w:#x})")
            }
            GuestFault::Exit(why) => write!(f, "an exit the launcher does not handle: {why}"),
        }
    }
}

/// What a guest write is to.
enum Target {
    MsixTable(u64),
    MsixControl,
    Bar0(u64),
    Report,
    Done,
    ItsStalled,
}

impl Guest<'_> {
    fn classify(&self, gpa: u64, size: u8) -> Option<Target> {
        let table = BAR0_GPA + self.cap.table_offset;
        let table_len = 16 * self.vectors.msi.table().len() as u64;
        let bar_len = self.nvme.bar_len() as u64;
        Some(match (gpa, size) {
            (g, _) if (table..table + table_len).contains(&g) => Target::MsixTable(g - table),
            (g, 2) if g == msix_control_gpa(&self.cap) => Target::MsixControl,
            (g, _) if (BAR0_GPA..BAR0_GPA + bar_len).contains(&g) => Target::Bar0(g - BAR0_GPA),
            (g, 8) if g == MAILBOX_GPA + Mailbox::REPORT => Target::Report,
            (g, 8) if g == MAILBOX_GPA + Mailbox::DONE => Target::Done,
            (g, 8) if g == MAILBOX_GPA + Mailbox::ITS_STALLED => Target::ItsStalled,
            _ => return None,
        })
    }

    /// Handles one guest write; `Ok(true)` when the guest says it is done.
    fn write(&mut self, gpa: u64, size: u8, value: u64) -> Result<bool, Failure> {
        let fault = |f: GuestFault| Failure::new(EXIT_FAILED, format!("the guest made {f}"));
        let table = self.vectors.msi.table();
        match self
            .classify(gpa, size)
            .ok_or(GuestFault::Unmapped(gpa, size))
            .map_err(fault)?
        {
            Target::MsixTable(offset) => {
                let effect = table
                    .msix_write(MsixRegion::Table, offset, size, value)
                    .map_err(|e| fault(GuestFault::Msix(e)))?;
                self.effect(effect)?;
            }
            Target::MsixControl => {
                let effect = table
                    .msix_control_write(value as u16)
                    .map_err(|e| fault(GuestFault::Msix(e)))?;
                writeln!(
                    self.out,
                    "  guest: MSI-X Message Control {value:#06x} (trapped)"
                )?;
                self.effect(effect)?;
            }
            Target::Bar0(offset) => {
                self.nvme
                    .forward_doorbell(offset, value)
                    .map_err(|e| fault(GuestFault::Doorbell(e)))?;
            }
            Target::Report => self.report(value)?,
            Target::Done => return Ok(true),
            Target::ItsStalled => return Err(fault(GuestFault::ItsStalled(value))),
        }
        Ok(false)
    }

    /// Acts on what a trapped MSI-X write did: routes into KVM.
    fn effect(&mut self, effect: Effect) -> Result<(), Failure> {
        let committed = self
            .routes
            .update(self.key, self.vectors.msi.table(), &effect)
            .map_err(kernel("updating the KVM routes"))?;
        match effect {
            Effect::Routed {
                vector,
                route,
                host,
                ..
            } => {
                // What the guest wrote, as the trap emulation keeps it.
                let guest = self
                    .vectors
                    .msi
                    .table()
                    .vector(vector)
                    .map_err(kernel("the vector table"))?
                    .guest;
                let gsi = self
                    .routes
                    .gsi(self.key, vector)
                    .map_or_else(|| "none".to_string(), |g| g.to_string());
                writeln!(
                    self.out,
                    "  guest: mask, address, data, unmask (trapped): {}, GSI {gsi}",
                    launch::message_line(vector, guest.address, guest.data, host.address, route)
                )?
            }
            Effect::Opened { .. } if committed => {
                let n = self.routes.len();
                writeln!(
                    self.out,
                    "  function mask cleared: one KVM_SET_GSI_ROUTING with {n} MSI routes \
                     (KVM_MSI_VALID_DEVID), then one KVM_IRQFD per vector from its VFIO eventfd"
                )?;
                writeln!(
                    self.out,
                    "start-up: {:.1} ms from start to all {} vectors routed into the guest",
                    self.start.elapsed().as_secs_f64() * 1e3,
                    self.vectors.msi.table().len().min(n as u32)
                )?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The payload reports `vector << 32 | INTID`: the interrupt it acknowledged.
    fn report(&mut self, value: u64) -> Result<(), Failure> {
        let (vector, intid) = ((value >> 32) as u32, value as u32);
        let expected = self.lpis.len() as u32;
        if vector != expected {
            return Err(Failure::new(
                EXIT_FAILED,
                format!("the guest made {}", GuestFault::Report(value)),
            ));
        }
        self.lpis.push((vector, intid));
        // The command the payload submitted completed too: consume it.
        self.nvme
            .reap(vector as u16)
            .map_err(|e| Failure::new(EXIT_FAILED, format!("vector {vector}: {e}")))?;
        let how = match vector {
            0 => "Identify on the admin queue".to_string(),
            k => format!("Flush on I/O queue {k}"),
        };
        let mapped = FIRST_LPI + vector;
        let verdict = if intid == mapped {
            format!("the one it mapped for EventID {vector}")
        } else {
            format!("NOT LPI {mapped}, the one it mapped for EventID {vector}")
        };
        writeln!(
            self.out,
            "vector {vector}: the guest submitted {how} (doorbell trapped, forwarded); \
             it acknowledged LPI {intid}, {verdict}"
        )?;
        let gsi = self
            .routes
            .gsi(self.key, vector)
            .map_or_else(|| "none".to_string(), |g| g.to_string());
        let data = self.vectors.host[vector as usize].1;
        writeln!(
            self.out,
            "  path: {}",
            delivery::device_path(self.vm, self.vectors, vector)
        )?;
        writeln!(
            self.out,
            "     -> host IRQ (ITS EventID {data:#x}) -> eventfd {vector} -> irqfd (GSI {gsi}) \
             -> vITS {VITS_DOORBELL:#x} devid {GUEST_RID:#x} EventID {vector} -> guest LPI {intid}"
        )?;
        Ok(())
    }
}

/// Runs vCPU 0 until the guest is done, handling its exits. A watchdog kicks the vCPU out
/// of `KVM_RUN` (a signal: `EINTR`) when the guest has gone [`QUIET_LIMIT`] without an exit,
/// for instance waiting for an interrupt that never comes.
fn run_vcpu(machine: &KvmMachine, guest: &mut Guest<'_>) -> Result<GuestReport, Failure> {
    // An empty handler: its only job is to make KVM_RUN return EINTR (no SA_RESTART).
    extern "C" fn kick(_: i32, _: *mut nix::libc::siginfo_t, _: *mut std::ffi::c_void) {}
    vmm_sys_util::signal::register_signal_handler(Signal::SIGUSR1 as i32, kick)
        .map_err(|e| Failure::new(EXIT_FAILED, format!("the vCPU's kick signal: {e}")))?;
    let begun = Instant::now();
    let last_exit = AtomicU64::new(0);
    let done = AtomicBool::new(false);
    let expired = AtomicBool::new(false);
    // This thread, as a number: a pthread_t is a pointer on musl, which cannot cross threads.
    let vcpu_thread = pthread_self() as usize;
    std::thread::scope(|s| {
        s.spawn(|| watchdog(vcpu_thread as Pthread, begun, &last_exit, &done, &expired));
        let result = vcpu_loop(machine, guest, begun, &last_exit, &expired);
        done.store(true, Ordering::SeqCst);
        result
    })
}

fn watchdog(
    vcpu: Pthread,
    begun: Instant,
    last_exit: &AtomicU64,
    done: &AtomicBool,
    expired: &AtomicBool,
) {
    while !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
        let now = begun.elapsed().as_millis() as u64;
        let quiet = now.saturating_sub(last_exit.load(Ordering::SeqCst));
        if quiet > QUIET_LIMIT.as_millis() as u64 {
            expired.store(true, Ordering::SeqCst);
            // Again every 50 ms: a signal that lands just before KVM_RUN is not lost, the
            // next one interrupts it.
            let _ = pthread_kill(vcpu, Signal::SIGUSR1);
        }
    }
}

fn vcpu_loop(
    machine: &KvmMachine,
    guest: &mut Guest<'_>,
    begun: Instant,
    last_exit: &AtomicU64,
    expired: &AtomicBool,
) -> Result<GuestReport, Failure> {
    loop {
        let exit = machine.run_vcpu(0, |exit| match exit {
            VcpuExit::MmioWrite(gpa, data) => match le_value(data) {
                Some(value) => Exit::Write {
                    gpa,
                    size: data.len() as u8,
                    value,
                },
                None => Exit::Other(GuestFault::Size(gpa, data.len()).to_string()),
            },
            VcpuExit::MmioRead(gpa, data) => {
                // All ones, as a read of nothing on a bus returns; the launcher then stops.
                data.fill(0xff);
                Exit::Read { gpa }
            }
            other => Exit::Other(format!("{other:?}")),
        });
        last_exit.store(begun.elapsed().as_millis() as u64, Ordering::SeqCst);
        let guest_fault = |f: GuestFault| Failure::new(EXIT_FAILED, format!("the guest made {f}"));
        match exit {
            Ok(Exit::Write { gpa, size, value }) => {
                if guest.write(gpa, size, value)? {
                    return Ok(GuestReport {
                        lpis: std::mem::take(&mut guest.lpis),
                    });
                }
            }
            Ok(Exit::Read { gpa }) => return Err(guest_fault(GuestFault::Read(gpa))),
            Ok(Exit::Other(why)) => return Err(guest_fault(GuestFault::Exit(why))),
            Err(Errno::EINTR) if expired.load(Ordering::SeqCst) => {
                let got = guest.lpis.len();
                return Err(Failure::new(
                    EXIT_FAILED,
                    format!(
                        "the guest stopped making progress: no exit for {} s after {got} of \
                         its vectors arrived (vector {got}'s LPI did not)",
                        QUIET_LIMIT.as_secs()
                    ),
                ));
            }
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => {}
            Err(errno) => {
                return Err(Failure::new(EXIT_FAILED, format!("KVM_RUN: {errno}")));
            }
        }
    }
}

/// A little-endian MMIO value of 1, 2, 4 or 8 bytes.
fn le_value(data: &[u8]) -> Option<u64> {
    match data.len() {
        1 | 2 | 4 | 8 => {
            let mut b = [0u8; 8];
            b[..data.len()].copy_from_slice(data);
            Some(u64::from_le_bytes(b))
        }
        _ => None,
    }
}
