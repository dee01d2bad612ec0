//! The launcher's steps, in the order a VMM takes them:
//!
//! 1. the host side of the VM: iommufd, the device, the VM's stage 2 with guest RAM in it,
//!    and for a nested guest the vIOMMU, the vDEVICE and the guest's STE and stage 1;
//! 2. MSI: the strategy, the doorbell, every vector's eventfd, and the guest's MSI-X
//!    programming trapped into the library's `VectorTable`;
//! 3. KVM, where there is an arm64 one (`kvm.rs`): the VM, its vGICv3 and vITS, an irqfd
//!    route per vector, and a guest that programs its vITS and the device's MSI-X table and
//!    receives each vector as an LPI;
//! 4. without KVM: the device fires each vector and the launcher follows the interrupt to
//!    its eventfd and to the route the guest's virtual ITS would get.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use vmsi::msi::firmware::{self, Discovery, ItsSource};
use vmsi::msi::{
    Composer, Domain, DoorbellMap, Effect, HostAddressing, HostMessage, IrqIndex, KernelWindow,
    MsiDevice, Strategy,
};
use vmsi::pci::MsixCapability;
use vmsi::seam::{Host, Kernel, Sim, SimConfig, SimDevice};
use vmsi::{Device, Errno, Error, Feature, Hwpt, Iommufd, IovaRange, Ste, Vdevice, Viommu};

use super::args::{Command, Options, USAGE};
use super::delivery;
use super::guest::{
    self, GUEST_ASID, GUEST_MSI_GIOVA, GUEST_RID, GuestRam, QUEUES_GIOVA, QUEUES_OFFSET,
    STAGE1_OFFSET, STAGE1_PAGES, VITS_BASE, VITS_DOORBELL, VITS_DOORBELL_PAGE,
};
use super::nvme::Nvme;
use super::stage1::{Attr, Stage1};
use super::strategy::{self, DoorbellInStage2};

/// Exit status: something on the machine failed (a kernel call, an interrupt that did not
/// arrive).
pub const EXIT_FAILED: u8 = 1;
/// Exit status: the command line names something the launcher cannot use.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the running kernel cannot do what was asked (a strategy, a vIOMMU).
pub const EXIT_UNSUPPORTED: u8 = 3;

/// Why the launcher stopped: the message for stderr and the exit status.
#[derive(Debug)]
pub struct Failure {
    /// Exit status.
    pub code: u8,
    /// What went wrong, for a person.
    pub message: String,
}

impl Failure {
    /// A failure with exit status `code`.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::new(EXIT_FAILED, format!("writing the report: {e}"))
    }
}

/// A library error during `what`: unsupported features exit with [`EXIT_UNSUPPORTED`].
pub(super) fn failed(what: &'static str) -> impl FnOnce(Error) -> Failure {
    move |e| {
        let code = match e {
            Error::Unsupported { .. } => EXIT_UNSUPPORTED,
            _ => EXIT_FAILED,
        };
        Failure::new(code, format!("{what}: {e}"))
    }
}

/// The kernel the launcher runs on.
pub enum Backend {
    /// The running kernel's iommufd and VFIO.
    Host,
    /// Sim, the in-process model of Linux 7.2.
    Sim(Arc<Sim>),
}

impl Backend {
    /// Sim with `--sim` or when the host has no iommufd; the host's kernel otherwise. Also
    /// says why, for the report.
    pub fn choose(opts: &Options) -> (Backend, &'static str) {
        if opts.sim_proposed_uapi {
            let why = "--sim-proposed-uapi: Sim with the reference kernel's proposed uAPI";
            (Backend::Sim(sim_machine_with(true)), why)
        } else if opts.sim {
            (Backend::Sim(sim_machine()), "--sim")
        } else if !Path::new("/dev/iommu").exists() {
            let why = "no /dev/iommu here: Sim, the in-process model of Linux 7.2";
            (Backend::Sim(sim_machine()), why)
        } else {
            (Backend::Host, "/dev/iommu")
        }
    }

    fn kernel(&self) -> Arc<dyn Kernel> {
        match self {
            Backend::Host => Arc::new(Host),
            Backend::Sim(sim) => sim.clone(),
        }
    }
}

/// Sim shaped like the rig's ACPI machine with the CANWBS IORT (so nested works): QEMU
/// `virt` with one ITS, an `edu` and two NVMe controllers with 65 MSI-X vectors each.
pub fn sim_machine() -> Arc<Sim> {
    sim_machine_with(false)
}

/// [`sim_machine`], on the rig's stock kernel or (`proposed_uapi`) its reference kernel
/// with the proposed per-vector MSI uAPI.
pub fn sim_machine_with(proposed_uapi: bool) -> Arc<Sim> {
    Sim::new(SimConfig {
        devices: vec![
            SimDevice::edu("/dev/vfio/devices/vfio0"),
            SimDevice::nvme("/dev/vfio/devices/vfio1", 65),
            SimDevice::nvme("/dev/vfio/devices/vfio2", 65),
        ],
        proposed_uapi,
        ..SimConfig::nested()
    })
}

/// What a launch achieved.
#[derive(Debug)]
pub struct Report {
    /// The vectors whose interrupt reached its eventfd and was routed to the guest.
    pub delivered: Vec<u32>,
}

/// The whole program: parses `args` (without the program name), runs, writes the report to
/// `out` and any failure to `err`; returns the exit status.
pub fn cli(args: impl IntoIterator<Item = String>, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let opts = match Options::parse(args) {
        Ok(Command::Run(opts)) => opts,
        Ok(Command::Help) => {
            let _ = writeln!(out, "{USAGE}");
            return 0;
        }
        Err(e) => {
            let _ = writeln!(err, "launcher: {e}\n{USAGE}");
            return EXIT_USAGE;
        }
    };
    let (backend, why) = Backend::choose(&opts);
    let result = writeln!(out, "backend: {} ({why})", backend.kernel().name())
        .map_err(Failure::from)
        .and_then(|()| run(&opts, &backend, out));
    match result {
        Ok(report) if report.delivered.len() == opts.vectors as usize => 0,
        Ok(_) => EXIT_FAILED,
        Err(f) => {
            let _ = writeln!(err, "launcher: {}", f.message);
            f.code
        }
    }
}

/// Launches on `backend` as `opts` say, reporting each step to `out`.
pub fn run(opts: &Options, backend: &Backend, out: &mut dyn Write) -> Result<Report, Failure> {
    let start = Instant::now();
    let path = device_path(opts, backend)?;
    let mode = if opts.nested { "nested" } else { "paging" };
    writeln!(
        out,
        "launching a {mode} VM: {} MSI-X vectors of {}, guest RAM {} MiB at GPA {:#x}",
        opts.vectors,
        path.display(),
        opts.ram_mib,
        opts.ram_gpa
    )?;
    writeln!(
        out,
        "\n== 1. host side: iommufd, device, stage 2, guest RAM"
    )?;
    let vm = Vm::build(opts, backend, &path, out)?;
    writeln!(
        out,
        "\n== 2. MSI: doorbell, vectors, the guest's MSI-X table"
    )?;
    let with_kvm = kvm_plan(backend, opts);
    let vectors = Vectors::bring_up(&vm, opts, backend, with_kvm.is_ok(), out)?;
    let startup = start.elapsed();
    let ready = match with_kvm {
        Ok(()) => "host side ready",
        Err(_) => "start-up",
    };
    writeln!(
        out,
        "{ready}: {:.1} ms from start to all {} vectors ready",
        startup.as_secs_f64() * 1e3,
        opts.vectors
    )?;
    writeln!(out, "\n== 3. KVM")?;
    if let Err(why) = with_kvm {
        writeln!(out, "{why}: stopping after host-side setup")?;
        writeln!(
            out,
            "(with KVM: KVM_CREATE_VM, a vGICv3 and a vITS at GPA {VITS_BASE:#x}, \
             KVM_SET_GSI_ROUTING with the {} routes above (KVM_MSI_VALID_DEVID), and one \
             KVM_IRQFD per vector from its eventfd)",
            opts.vectors
        )?;
        writeln!(out, "\n== 4. the device fires each vector")?;
        let delivered = delivery::fire_all(&vm, &vectors, opts, backend, out)?;
        return Ok(Report { delivered });
    }
    let delivered = with_kvm_guest(&vm, &vectors, opts, start, out)?;
    Ok(Report { delivered })
}

#[cfg(all(feature = "kvm", target_arch = "aarch64"))]
fn with_kvm_guest(
    vm: &Vm,
    vectors: &Vectors,
    opts: &Options,
    start: Instant,
    out: &mut dyn Write,
) -> Result<Vec<u32>, Failure> {
    super::kvm::run(vm, vectors, opts, start, out)
}

#[cfg(not(all(feature = "kvm", target_arch = "aarch64")))]
fn with_kvm_guest(
    _: &Vm,
    _: &Vectors,
    _: &Options,
    _: Instant,
    _: &mut dyn Write,
) -> Result<Vec<u32>, Failure> {
    Err(Failure::new(
        EXIT_FAILED,
        "this launcher was built without KVM",
    ))
}

/// Whether step 3 runs a KVM guest, or why not.
fn kvm_plan(backend: &Backend, opts: &Options) -> Result<(), &'static str> {
    if let Backend::Sim(_) = backend {
        return Err("Sim backend: the device is a model, with no VM to run it");
    }
    if opts.no_kvm {
        return Err("--no-kvm");
    }
    if cfg!(not(target_arch = "aarch64")) {
        return Err("not an arm64 host: no vGICv3 or vITS");
    }
    if cfg!(not(feature = "kvm")) {
        return Err("built without the kvm feature (cargo run --features kvm)");
    }
    if !Path::new("/dev/kvm").exists() {
        return Err("no /dev/kvm");
    }
    Ok(())
}

/// The cdev to use: the one named, or on Sim its first NVMe.
fn device_path(opts: &Options, backend: &Backend) -> Result<PathBuf, Failure> {
    match (&opts.device, backend) {
        (Some(path), _) => Ok(path.clone()),
        (None, Backend::Sim(_)) => Ok(PathBuf::from("/dev/vfio/devices/vfio1")),
        (None, Backend::Host) => Err(Failure::new(
            EXIT_USAGE,
            "name the device: --device /dev/vfio/devices/vfioN (an NVMe controller bound to vfio-pci)",
        )),
    }
}

/// Everything the VMM sets up for the VM before MSI: held for as long as the VM runs.
pub struct Vm {
    pub(super) path: PathBuf,
    pub(super) device: Device,
    /// The MSI strategy in force.
    pub(super) strategy: Strategy,
    /// The software MSI window the kernel reserved (moved, for UserWindow and PerVector).
    pub(super) window: KernelWindow,
    /// PerVector: the doorbell page the launcher mapped at the vITS doorbell page's GPA.
    pub(super) doorbell_page: Option<DoorbellInStage2>,
    /// The MSI address the guest programs in every vector: the vITS doorbell GPA (paging), or
    /// the guest IOVA its stage 1 maps onto that doorbell (nested).
    pub(super) guest_msi: u64,
    pub(super) ram: GuestRam,
    pub(super) nested: Option<Nested>,
    // Held so the stage 2 (and the IOAS it is built on) lives as long as the VM.
    _stage2: Hwpt,
}

/// The nested half: the vIOMMU, the device in it, and the guest's stage 1.
pub struct Nested {
    pub(super) stage1: Stage1,
    _viommu: Viommu,
    _vdevice: Vdevice,
    _hwpt: Hwpt,
}

impl Vm {
    fn build(
        opts: &Options,
        backend: &Backend,
        path: &Path,
        out: &mut dyn Write,
    ) -> Result<Vm, Failure> {
        let (iommufd, device) = open_device(backend, path, opts, out)?;
        let strategy = strategy::choose(&iommufd, &device, opts.strategy, out)?;
        let ram_range = IovaRange::from_len(opts.ram_gpa, opts.ram_mib << 20)
            .ok_or_else(|| Failure::new(EXIT_USAGE, "guest RAM wraps the address space"))?;
        let moved = strategy::move_window(&device, strategy, ram_range, out)?;
        let ioas = iommufd.alloc_ioas().map_err(failed("IOMMU_IOAS_ALLOC"))?;
        let stage2 =
            Hwpt::alloc_paging(&ioas, &device, opts.nested).map_err(failed("the VM's stage 2"))?;
        device
            .attach_hwpt(&stage2)
            .map_err(failed("attaching the stage 2"))?;
        let kind = if opts.nested { "nest-parent" } else { "paging" };
        writeln!(
            out,
            "stage 2: {kind} {} over {}, device attached",
            stage2.id(),
            ioas.id()
        )?;
        let window = msi_window(&ioas, out)?;
        if moved.is_some_and(|start| start != window.window.start) {
            return Err(Failure::new(
                EXIT_FAILED,
                format!(
                    "the kernel reserved its MSI window at {:#x}, not where it was moved",
                    window.window.start
                ),
            ));
        }
        let ram = guest_ram(opts, &window, out)?;
        ram.map_into(&ioas).map_err(failed("mapping guest RAM"))?;
        writeln!(
            out,
            "guest RAM: {} MiB memfd mapped by file at GPA {:#x}..={:#x} (IOMMU_IOAS_MAP_FILE)",
            opts.ram_mib,
            ram.range().start,
            ram.range().last
        )?;
        let doorbell_page = match strategy {
            Strategy::PerVector => Some(strategy::map_doorbell(
                &ioas,
                &device,
                ram.range(),
                window.page_size,
                out,
            )?),
            _ => None,
        };
        let nested = match opts.nested {
            true => Some(Nested::build(
                &stage2, &device, &ram, &window, strategy, opts, out,
            )?),
            false => None,
        };
        // What the guest's MSI-X entries will say; PerVector makes it the host address too.
        let guest_msi = match opts.nested {
            true => GUEST_MSI_GIOVA + (VITS_DOORBELL - VITS_DOORBELL_PAGE),
            false => VITS_DOORBELL,
        };
        Ok(Vm {
            path: path.to_path_buf(),
            device,
            strategy,
            window,
            doorbell_page,
            guest_msi,
            ram,
            nested,
            _stage2: stage2,
        })
    }

    /// The address the guest's NVMe driver gives the device for its queues: the GPA in a
    /// paging VM, the guest IOVA its stage 1 maps onto that GPA in a nested one.
    pub(super) fn queue_dma(&self) -> u64 {
        match self.nested {
            Some(_) => QUEUES_GIOVA,
            None => self.ram.gpa() + QUEUES_OFFSET,
        }
    }
}

/// Checks the path, opens the device, binds it to a new iommufd and checks it is a device
/// the launcher can drive.
fn open_device(
    backend: &Backend,
    path: &Path,
    opts: &Options,
    out: &mut dyn Write,
) -> Result<(Iommufd, Device), Failure> {
    check_cdev(backend, path)?;
    let kernel = backend.kernel();
    let iommufd = Iommufd::open(kernel.clone()).map_err(failed("opening /dev/iommu"))?;
    let device = Device::open(kernel, path).map_err(failed("opening the device"))?;
    let dev_id = device.bind(&iommufd).map_err(|e| bind_failure(path, e))?;
    writeln!(out, "{} bound to a new iommufd as {dev_id}", path.display())?;
    let cap = MsixCapability::read(&device)
        .map_err(failed("reading config space"))?
        .ok_or_else(|| {
            Failure::new(
                EXIT_USAGE,
                format!(
                    "{} has no MSI-X capability: the launcher drives MSI-X devices such as NVMe",
                    path.display()
                ),
            )
        })?;
    if opts.vectors > cap.vectors {
        return Err(Failure::new(
            EXIT_USAGE,
            format!(
                "--vectors {} asks for more than the {} MSI-X vectors {} has",
                opts.vectors,
                cap.vectors,
                path.display()
            ),
        ));
    }
    if let Backend::Host = backend {
        require_nvme(&device, path)?;
    }
    Ok((iommufd, device))
}

/// Refuses, with a clear reason, a path that is not a VFIO device cdev.
fn check_cdev(backend: &Backend, path: &Path) -> Result<(), Failure> {
    let not = |why: String| {
        Failure::new(
            EXIT_USAGE,
            format!(
                "{} is not a VFIO cdev (/dev/vfio/devices/vfioN): {why}",
                path.display()
            ),
        )
    };
    match backend {
        Backend::Sim(sim) => {
            let known: Vec<_> = sim.config().devices.iter().map(|d| &d.path).collect();
            if known.iter().any(|p| *p == path) {
                return Ok(());
            }
            let list: Vec<_> = known.iter().map(|p| p.display().to_string()).collect();
            Err(not(format!("the Sim machine has {}", list.join(", "))))
        }
        Backend::Host => {
            use std::os::unix::fs::FileTypeExt;
            let meta = std::fs::metadata(path).map_err(|e| not(e.to_string()))?;
            if !meta.file_type().is_char_device() {
                return Err(not("not a character device".into()));
            }
            let name = path.file_name().unwrap_or_default();
            let class = Path::new("/sys/class/vfio-dev").join(name);
            if !class.exists() {
                return Err(not(format!("no {}", class.display())));
            }
            Ok(())
        }
    }
}

/// The message for a failed `VFIO_DEVICE_BIND_IOMMUFD`: most often someone else has it.
fn bind_failure(path: &Path, e: Error) -> Failure {
    let path = path.display();
    match e.errno() {
        Some(Errno::EINVAL) => Failure::new(
            EXIT_USAGE,
            format!(
                "{path} is already bound to an iommufd (VFIO_DEVICE_BIND_IOMMUFD: EINVAL): \
                 another VMM or test is using it"
            ),
        ),
        Some(Errno::EBUSY) => Failure::new(
            EXIT_USAGE,
            format!(
                "{path} is already in use (VFIO_DEVICE_BIND_IOMMUFD: EBUSY): its IOMMU group \
                 is open through the legacy /dev/vfio/<group> interface"
            ),
        ),
        Some(Errno::ENOTTY) => Failure::new(
            EXIT_USAGE,
            format!("{path} is not a VFIO cdev: it does not know VFIO_DEVICE_BIND_IOMMUFD"),
        ),
        _ => failed("binding the device")(e),
    }
}

/// The launcher makes a real device fire by driving it, and it knows how to drive NVMe
/// (PCI class 01:08:02) only.
fn require_nvme(device: &Device, path: &Path) -> Result<(), Failure> {
    let mut id = [0u8; 4];
    device
        .read_config(0x08, &mut id)
        .map_err(failed("reading config space"))?;
    let class = u32::from_le_bytes(id) >> 8;
    if class == 0x01_08_02 {
        return Ok(());
    }
    Err(Failure::new(
        EXIT_USAGE,
        format!(
            "{} is PCI class {class:06x}, not an NVMe controller (010802): the launcher can \
             make only NVMe raise a chosen vector",
            path.display()
        ),
    ))
}

/// The kernel's MSI window, which it reserves in the IOAS on attach: the one hole in the
/// usable IOVA ranges.
fn msi_window(ioas: &vmsi::Ioas, out: &mut dyn Write) -> Result<KernelWindow, Failure> {
    let window = KernelWindow::from_ioas(ioas).map_err(failed("the MSI window"))?;
    let page = window.page_size;
    writeln!(
        out,
        "software MSI window (reserved by the kernel on attach): {:#x}..={:#x}, {} pages of {} KiB",
        window.window.start,
        window.window.last,
        window.pages(),
        page / 1024
    )?;
    Ok(window)
}

/// Guest RAM, once it is known to stay out of the MSI window.
fn guest_ram(
    opts: &Options,
    window: &KernelWindow,
    out: &mut dyn Write,
) -> Result<GuestRam, Failure> {
    let bytes = opts.ram_mib << 20;
    let range = IovaRange::from_len(opts.ram_gpa, bytes)
        .ok_or_else(|| Failure::new(EXIT_USAGE, "guest RAM wraps the address space"))?;
    if window.check_guest_ram(&[range]).is_err() {
        return Err(Failure::new(
            EXIT_USAGE,
            format!(
                "guest RAM {:#x}..={:#x} overlaps the kernel's MSI window {:#x}..={:#x}, \
                 which the kernel reserves in the VM's stage 2 (and a nested guest's IORT RMR \
                 in its stage 1): move RAM with --ram-gpa",
                range.start, range.last, window.window.start, window.window.last
            ),
        ));
    }
    if opts.ram_gpa % window.page_size != 0 {
        return Err(Failure::new(
            EXIT_USAGE,
            format!(
                "--ram-gpa {:#x} is not aligned to the host's {} KiB pages",
                opts.ram_gpa,
                window.page_size / 1024
            ),
        ));
    }
    let needed = QUEUES_OFFSET + Nvme::area_len(opts.vectors as u16 - 1);
    if bytes < needed {
        return Err(Failure::new(
            EXIT_USAGE,
            format!(
                "--ram-mib {} is too small for {} vectors' queues",
                opts.ram_mib, opts.vectors
            ),
        ));
    }
    writeln!(
        out,
        "guest RAM {:#x}..={:#x} stays out of the MSI window",
        range.start, range.last
    )?;
    GuestRam::new(opts.ram_gpa, opts.ram_mib).map_err(failed("allocating guest RAM"))
}

impl Nested {
    /// The vIOMMU and vDEVICE, the guest's STE at boot (bypass), then the stage 1 the
    /// guest's SMMU driver builds in its RAM, installed as a new STE and invalidated.
    fn build(
        stage2: &Hwpt,
        device: &Device,
        ram: &GuestRam,
        window: &KernelWindow,
        strategy: Strategy,
        opts: &Options,
        out: &mut dyn Write,
    ) -> Result<Nested, Failure> {
        let viommu = Viommu::alloc(stage2, device).map_err(|e| match e {
            Error::Unsupported {
                feature: Feature::Viommu,
                errno,
                ..
            } => Failure::new(
                EXIT_UNSUPPORTED,
                format!(
                    "nested: the vIOMMU is unsupported on this kernel (IOMMU_VIOMMU_ALLOC: \
                     {errno}): it needs an SMMUv3 with S2FWB or a CANWBS root complex; \
                     --paging runs without one"
                ),
            ),
            e => failed("IOMMU_VIOMMU_ALLOC")(e),
        })?;
        let vdevice = viommu
            .alloc_vdevice(device, GUEST_RID as u64)
            .map_err(failed("IOMMU_VDEVICE_ALLOC"))?;
        writeln!(
            out,
            "vIOMMU {}; the device is {} in it, virtual stream id {GUEST_RID:#x}",
            viommu.id(),
            vdevice.id()
        )?;
        let boot = Hwpt::alloc_nested(&viommu, device, Ste::bypass())
            .map_err(failed("the guest's boot STE"))?;
        device
            .attach_hwpt(&boot)
            .map_err(failed("attaching the boot STE"))?;
        writeln!(
            out,
            "guest STE at boot: bypass (its SMMU is off: stage 2 only), nested {}",
            boot.id()
        )?;
        let s1_err = |e| failed("building the guest's stage 1")(e);
        let mut stage1 = Stage1::new(ram, ram.gpa() + STAGE1_OFFSET, STAGE1_PAGES, GUEST_ASID)
            .map_err(&s1_err)?;
        // The window strategies: the device writes into the kernel's window whatever the
        // guest programs, so the guest's stage 1 must pass that window through unchanged,
        // which its firmware tells it with an IORT RMR. PerVector needs none: the device
        // writes only what the guest's own stage 1 maps.
        let rmr = match strategy {
            Strategy::PerVector => {
                writeln!(
                    out,
                    "no IORT RMR: under PerVector the device writes only the guest's own MSI IOVA"
                )?;
                None
            }
            _ => {
                let rmr = window.rmr();
                writeln!(
                    out,
                    "IORT RMR for the guest's firmware: base {:#x} length {:#x} (identity-mapped by the guest)",
                    rmr.base, rmr.length
                )?;
                stage1
                    .map(ram, rmr.base, rmr.base, rmr.length, Attr::Device)
                    .map_err(&s1_err)?;
                Some(rmr)
            }
        };
        // The guest's MSI doorbell, as its DMA layer maps it for a device behind its IOMMU.
        stage1
            .map(
                ram,
                GUEST_MSI_GIOVA,
                VITS_DOORBELL_PAGE,
                0x1000,
                Attr::Device,
            )
            .map_err(&s1_err)?;
        let queues = ram.gpa() + QUEUES_OFFSET;
        let len = Nvme::area_len(opts.vectors as u16 - 1);
        stage1
            .map(ram, QUEUES_GIOVA, queues, len, Attr::Normal)
            .map_err(&s1_err)?;
        let ste = stage1.ste().map_err(&s1_err)?;
        let hwpt =
            Hwpt::alloc_nested(&viommu, device, ste).map_err(failed("the guest's stage-1 STE"))?;
        device
            .attach_hwpt(&hwpt)
            .map_err(failed("attaching the stage-1 STE"))?;
        let handled = viommu
            .invalidate(&stage1.invalidation(GUEST_RID))
            .map_err(failed("the guest's invalidation"))?;
        let rmr_note = match rmr {
            Some(_) => "the RMR 1:1, ",
            None => "",
        };
        writeln!(
            out,
            "guest stage 1 in its RAM: CD at GPA {:#x}, ASID {GUEST_ASID}; maps {rmr_note}its \
             MSI gIOVA {GUEST_MSI_GIOVA:#x} -> the vITS doorbell page {VITS_DOORBELL_PAGE:#x} \
             (Device-nGnRnE) and its queues' gIOVA {QUEUES_GIOVA:#x} -> GPA {queues:#x}",
            stage1.cd_table()
        )?;
        writeln!(
            out,
            "guest STE: stage 1, nested {}; TLBI_NH_ASID + CFGI_CD: {handled} handled",
            hwpt.id()
        )?;
        Ok(Nested {
            stage1,
            _viommu: viommu,
            _vdevice: vdevice,
            _hwpt: hwpt,
        })
    }
}

/// The device's vectors, brought up, and what the host and the guest made of them.
pub struct Vectors {
    pub(super) msi: MsiDevice,
    /// Every vector's host message as read back from the device's MSI-X table.
    pub(super) host: Vec<(u64, u32)>,
    /// The physical ITS doorbell.
    pub(super) doorbell: u64,
    /// Where the VM's stage 2 holds the physical doorbell's page.
    pub(super) in_stage2: DoorbellInStage2,
}

impl Vectors {
    fn bring_up(
        vm: &Vm,
        opts: &Options,
        backend: &Backend,
        guest_programs: bool,
        out: &mut dyn Write,
    ) -> Result<Vectors, Failure> {
        let (doorbell, source) = its_doorbell(backend)?;
        writeln!(out, "physical ITS doorbell {doorbell:#x} ({source})")?;
        let page = vm.window.page_size;
        let (in_stage2, predicted) = match vm.doorbell_page {
            Some(mapped) => {
                writeln!(
                    out,
                    "PerVector: every vector's MSI IOVA is the page of the address the guest \
                     programs, so the device writes {:#x}, the guest's own MSI address",
                    vm.guest_msi
                )?;
                (mapped, vm.guest_msi)
            }
            None => {
                let predicted = vm
                    .window
                    .host_message(doorbell, 0)
                    .map_err(failed("predicting the host message"))?;
                writeln!(
                    out,
                    "{}: every vector will write {:#x} (window page 0 + the doorbell's offset), \
                     whatever the guest programs",
                    vm.strategy, predicted.address
                )?;
                let in_stage2 = DoorbellInStage2 {
                    iova: vm.window.window.start,
                    len: page,
                    offset: doorbell & (page - 1),
                    by: "the kernel, at window page 0",
                };
                (in_stage2, predicted.address)
            }
        };
        let composer = composer(vm, predicted)?;
        let msi = match vm.strategy {
            Strategy::PerVector => {
                strategy::bring_up_per_vector(&vm.device, composer, vm.guest_msi, &in_stage2)?
            }
            _ => MsiDevice::bring_up(vm.device.clone(), IrqIndex::Msix, composer)
                .map_err(failed("enabling MSI-X"))?,
        };
        let how = match vm.strategy {
            Strategy::PerVector => {
                "each given its MSI IOVA first (VFIO_IRQ_SET_ACTION_PREPARE), then all enabled"
            }
            _ => "all enabled",
        };
        writeln!(
            out,
            "{} MSI-X vectors, one eventfd each, {how} in one VFIO_DEVICE_SET_IRQS",
            msi.table().len()
        )?;
        if guest_programs {
            writeln!(
                out,
                "the guest programs its MSI-X table itself (step 3): address {:#x}, \
                 data = EventID",
                vm.guest_msi
            )?;
        } else {
            program_guest_table(vm, &msi, opts.vectors, out)?;
        }
        let host = read_back(vm, &msi, predicted, opts.vectors, out)?;
        Ok(Vectors {
            msi,
            host,
            doorbell,
            in_stage2,
        })
    }
}

/// The physical ITS doorbell and where it was found.
fn its_doorbell(backend: &Backend) -> Result<(u64, String), Failure> {
    if let Backend::Sim(sim) = backend {
        let doorbell = sim.config().its_doorbells[0];
        return Ok((doorbell, "Sim's machine".into()));
    }
    match firmware::discover_its().map_err(failed("finding the ITS"))? {
        Discovery::Found { its, .. } => {
            let source = match &its[0].source {
                ItsSource::DeviceTree { path } => format!("device tree {path}"),
                ItsSource::AcpiMadt { its_id } => format!("ACPI MADT, GIC ITS {its_id}"),
            };
            Ok((its[0].doorbell, source))
        }
        Discovery::NoIts { .. } => Err(Failure::new(
            EXIT_UNSUPPORTED,
            "the firmware describes no GICv3 ITS: the launcher needs an ARM GICv3 ITS host",
        )),
    }
}

/// The composer for the VM's domain. The guest may program one MSI address, the one the
/// launcher gave it ([`Vm::guest_msi`]): the vITS doorbell GPA in a paging VM, or in a nested
/// one the guest IOVA its stage 1 maps onto the vITS doorbell page. The trap emulation
/// refuses any other, so under PerVector the address the device writes (the IOVA prepared
/// before enabling) is always the one the guest programmed.
fn composer(vm: &Vm, predicted: u64) -> Result<Composer, Failure> {
    let (domain, doorbells) = match vm.nested {
        Some(_) => (
            Domain::Nested,
            DoorbellMap::nested(
                &[VITS_DOORBELL],
                &[(GUEST_MSI_GIOVA, 0x1000, VITS_DOORBELL_PAGE)],
            ),
        ),
        None => (Domain::Paging, DoorbellMap::paging(&[VITS_DOORBELL])),
    };
    let host = match vm.strategy {
        Strategy::PerVector => HostAddressing::PerVector,
        _ => HostAddressing::Window { address: predicted },
    };
    Ok(Composer {
        domain,
        host,
        doorbells: doorbells.map_err(failed("declaring the vITS doorbell"))?,
        devid: GUEST_RID,
    })
}

/// Plays the guest driver's MSI-X programming through the trap emulator and prints, per
/// vector, the guest's message, the host message and the route.
fn program_guest_table(
    vm: &Vm,
    msi: &MsiDevice,
    vectors: u32,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let address = vm.guest_msi;
    match &vm.nested {
        Some(n) => {
            let ipa = n.stage1.translate(&vm.ram, address).ok().flatten();
            writeln!(
                out,
                "the guest programs gIOVA {address:#x} (its stage 1 maps it to IPA {}: the vITS doorbell)",
                hex(ipa)
            )?;
        }
        None => writeln!(out, "the guest programs its vITS doorbell GPA {address:#x}")?,
    }
    let (programmed, opened) = guest::program_msix(msi.table(), vectors, address)
        .map_err(failed("the guest's MSI-X writes"))?;
    writeln!(
        out,
        "guest MSI-X writes (trapped): enable + function mask, then per vector mask, \
         address, data, unmask:"
    )?;
    for p in &programmed {
        match p.effect {
            Effect::Routed { route, host, .. } => writeln!(
                out,
                "  {}",
                message_line(p.vector, address, p.vector, host.address, route)
            )?,
            other => writeln!(out, "  vector {}: {other:?}", p.vector)?,
        }
    }
    writeln!(out, "function mask cleared: {opened:?}")?;
    Ok(())
}

/// One vector's three messages: what the guest programmed, what the device writes, and
/// where the guest's virtual ITS gets it.
pub(super) fn message_line(
    vector: u32,
    guest_address: u64,
    guest_data: u32,
    host_address: u64,
    route: vmsi::msi::Route,
) -> String {
    format!(
        "vector {vector}: guest message {guest_address:#x} data {guest_data} -> host message \
         {host_address:#x} data = the host's EventID -> route vITS {:#x} EventID {} devid {:#x}",
        route.doorbell_gpa, route.data, route.devid
    )
}

/// Reads every host message back through the BAR and checks it against the strategy's
/// prediction: the window address, or under PerVector the guest's own MSI address.
fn read_back(
    vm: &Vm,
    msi: &MsiDevice,
    predicted: u64,
    vectors: u32,
    out: &mut dyn Write,
) -> Result<Vec<(u64, u32)>, Failure> {
    let mut host = vec![(0, 0); msi.table().len() as usize];
    msi.read_host_messages(&mut host)
        .map_err(failed("reading the MSI-X table"))?;
    let what = match vm.strategy {
        Strategy::PerVector => "its own IOVA + the doorbell offset, the guest's address",
        _ => "the window's doorbell",
    };
    writeln!(
        out,
        "host messages read back from the device's MSI-X table (predicted: {predicted:#x}, {what}):"
    )?;
    for (k, (address, data)) in host.iter().take(vectors as usize).enumerate() {
        let verdict = if *address == predicted {
            "as predicted"
        } else {
            "NOT as predicted"
        };
        writeln!(
            out,
            "  vector {k}: address {address:#x} data {data:#x} (host ITS EventID), {verdict}"
        )?;
    }
    let checked = match vm.strategy {
        // The library's own check: each entry holds the address provided for it.
        Strategy::PerVector => msi
            .validate_provided_addresses()
            .and_then(|()| msi.validate_host_address(HostMessage { address: predicted })),
        _ => msi.validate_host_address(HostMessage { address: predicted }),
    };
    checked.map_err(|_| {
        Failure::new(
            EXIT_FAILED,
            format!("the kernel programmed a host address other than the predicted {predicted:#x}"),
        )
    })?;
    Ok(host)
}

/// `0x…`, or `unmapped`.
pub(super) fn hex(v: Option<u64>) -> String {
    v.map_or_else(|| "unmapped".into(), |v| format!("{v:#x}"))
}
