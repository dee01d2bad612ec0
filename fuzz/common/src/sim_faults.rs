//! Target `sim_faults`: call sequences through the typed objects on `Sim`, with fail-nth
//! fault injection anywhere in them.
//!
//! The input is a sequence of object-layer operations (open, allocate, bind, attach,
//! vIOMMU, IRQs, mappings, destroy, drop, ...) over slots of live objects, interleaved with
//! `FailNth { n, errno }`, which makes the n-th kernel call from then on fail.
//! Invariants:
//! * no panic; every failure is a typed `vmsi::Error`;
//! * when an injected fault fires inside an operation, that operation fails, with the
//!   injected errno, naming one of the kernel calls it makes (only the operations that are
//!   documented to absorb a failure may succeed instead: drops, strategy probing);
//! * after dropping everything, in an order the input picks, `Sim::stats()` shows no open
//!   file, live object, mapping or trigger.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};
use serde::{Deserialize, Serialize};
use vmsi::msi::{Composer, Domain, DoorbellMap, HostAddressing, IrqIndex, MsiDevice};
use vmsi::seam::{Kernel, Sim, SimConfig, SimDevice};
use vmsi::{
    Device, DmaMemory, Errno, Error, Hwpt, Ioas, Iommufd, IovaRange, Op as KOp, Prot, Ste, Vdevice,
    Veventq, Viommu,
};

/// At most this many operations of one input run.
pub const MAX_OPS: usize = 128;

/// A kind of object slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// `Iommufd`.
    Iommufd,
    /// `Ioas`.
    Ioas,
    /// `Device`.
    Device,
    /// `Hwpt`.
    Hwpt,
    /// `Viommu`.
    Viommu,
    /// `Vdevice`.
    Vdevice,
    /// `Veventq`.
    Veventq,
    /// `MsiDevice`.
    MsiDevice,
    /// `DmaMemory`.
    Memory,
}

const KINDS: [Kind; 9] = [
    Kind::Iommufd,
    Kind::Ioas,
    Kind::Device,
    Kind::Hwpt,
    Kind::Viommu,
    Kind::Vdevice,
    Kind::Veventq,
    Kind::MsiDevice,
    Kind::Memory,
];

/// One operation. Slot numbers are taken modulo the number of live objects of the kind
/// (the operation is skipped when there is none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Op {
    OpenIommufd,
    AllocIoas {
        fd: u8,
    },
    /// Device 0 is edu (MSI), 1 and 2 are nvme (65 MSI-X), 3 does not exist.
    OpenDevice {
        dev: u8,
    },
    Bind {
        dev: u8,
        fd: u8,
    },
    AttachIoas {
        dev: u8,
        ioas: u8,
    },
    AttachHwpt {
        dev: u8,
        hwpt: u8,
    },
    Detach {
        dev: u8,
    },
    AllocPaging {
        ioas: u8,
        dev: u8,
        nest_parent: bool,
    },
    AllocViommu {
        hwpt: u8,
        dev: u8,
    },
    AllocVdevice {
        viommu: u8,
        dev: u8,
        vsid: u64,
    },
    /// `ste`: 0 abort, 1 bypass, else stage 1 with a CD table there.
    AllocNested {
        viommu: u8,
        dev: u8,
        ste: u64,
    },
    AllocVeventq {
        viommu: u8,
        depth: u32,
    },
    ReadVeventq {
        q: u8,
    },
    Invalidate {
        viommu: u8,
        cmds: Vec<(u64, u64)>,
    },
    EnableIrqs {
        dev: u8,
        msix: bool,
        count: u8,
        with_fds: bool,
    },
    SetVectorEventfd {
        dev: u8,
        msix: bool,
        vector: u32,
        some: bool,
    },
    DisableIrqs {
        dev: u8,
        msix: bool,
    },
    TriggerVector {
        dev: u8,
        msix: bool,
        vector: u32,
    },
    BringUp {
        dev: u8,
        msix: bool,
    },
    Raise {
        dev: u8,
        msix: bool,
        vector: u32,
    },
    NewMemory {
        pages: u8,
    },
    MapMemory {
        ioas: u8,
        mem: u8,
        pages: u8,
        iova: Option<u64>,
        write: bool,
    },
    MapFile {
        ioas: u8,
        mem: u8,
        start: u64,
        len: u64,
        iova: Option<u64>,
    },
    Unmap {
        ioas: u8,
        iova: u64,
        len: u64,
    },
    IovaRanges {
        ioas: u8,
    },
    AllowIovas {
        ioas: u8,
        ranges: Vec<(u64, u64)>,
    },
    CopyTo {
        src: u8,
        dst: u8,
        src_iova: u64,
        len: u64,
        dst_iova: Option<u64>,
    },
    HwInfo {
        dev: u8,
    },
    Info {
        dev: u8,
        index: u32,
    },
    ReadConfig {
        dev: u8,
        offset: u16,
        len: u8,
    },
    Reset {
        dev: u8,
    },
    HugePages {
        fd: u8,
        ioas: u8,
        set: Option<bool>,
    },
    Probe {
        fd: u8,
        dev: u8,
    },
    Destroy {
        kind: Kind,
        slot: u8,
    },
    Drop {
        kind: Kind,
        slot: u8,
    },
    FailNth {
        n: u8,
        errno: i32,
    },
    ClearFault,
}

/// The whole input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// Sim with CANWBS (vIOMMU possible).
    pub nested: bool,
    /// The sequence.
    pub ops: Vec<Op>,
    /// Which kind of slot is dropped first at the end (then the others in order).
    pub drop_first: u8,
}

/// What happened, for tests and the README's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Operations run (not skipped).
    pub ops: u64,
    /// Operations that failed with a typed error.
    pub failed: u64,
    /// Injected faults that fired.
    pub faults_fired: u64,
}

#[derive(Default)]
struct Slots {
    iommufds: Vec<Iommufd>,
    ioases: Vec<Ioas>,
    devices: Vec<Device>,
    hwpts: Vec<Hwpt>,
    viommus: Vec<Viommu>,
    vdevices: Vec<Vdevice>,
    veventqs: Vec<Veventq>,
    msi: Vec<MsiDevice>,
    memory: Vec<DmaMemory>,
}

fn pick<T>(v: &[T], slot: u8) -> Option<&T> {
    (!v.is_empty()).then(|| &v[usize::from(slot) % v.len()])
}

fn take<T>(v: &mut Vec<T>, slot: u8) -> Option<T> {
    (!v.is_empty()).then(|| v.remove(usize::from(slot) % v.len()))
}

impl Slots {
    fn drop_kind(&mut self, k: Kind) {
        match k {
            Kind::Iommufd => self.iommufds.clear(),
            Kind::Ioas => self.ioases.clear(),
            Kind::Device => self.devices.clear(),
            Kind::Hwpt => self.hwpts.clear(),
            Kind::Viommu => self.viommus.clear(),
            Kind::Vdevice => self.vdevices.clear(),
            Kind::Veventq => self.veventqs.clear(),
            Kind::MsiDevice => self.msi.clear(),
            Kind::Memory => self.memory.clear(),
        }
    }

    fn drop_one(&mut self, k: Kind, slot: u8) -> bool {
        match k {
            Kind::Iommufd => take(&mut self.iommufds, slot).is_some(),
            Kind::Ioas => take(&mut self.ioases, slot).is_some(),
            Kind::Device => take(&mut self.devices, slot).is_some(),
            Kind::Hwpt => take(&mut self.hwpts, slot).is_some(),
            Kind::Viommu => take(&mut self.viommus, slot).is_some(),
            Kind::Vdevice => take(&mut self.vdevices, slot).is_some(),
            Kind::Veventq => take(&mut self.veventqs, slot).is_some(),
            Kind::MsiDevice => take(&mut self.msi, slot).is_some(),
            Kind::Memory => take(&mut self.memory, slot).is_some(),
        }
    }
}

/// How an operation may treat an injected fault that fires inside it.
enum Expect {
    /// It must fail with the injected errno, naming one of these kernel calls.
    Fails(&'static [KOp]),
    /// It may absorb the failure (drops, probing).
    MayAbsorb,
}

fn msi_index(msix: bool) -> u32 {
    if msix {
        IrqIndex::Msix.vfio_index()
    } else {
        IrqIndex::Msi.vfio_index()
    }
}

fn device_paths() -> [PathBuf; 4] {
    [
        PathBuf::from("/dev/vfio/devices/vfio0"),
        PathBuf::from("/dev/vfio/devices/vfio1"),
        PathBuf::from("/dev/vfio/devices/vfio2"),
        PathBuf::from("/dev/vfio/devices/vfio9"),
    ]
}

/// The rig's three devices, on the default or the CANWBS machine.
pub fn sim(nested: bool) -> Arc<Sim> {
    let p = device_paths();
    Sim::new(SimConfig {
        devices: vec![
            SimDevice::edu(&p[0]),
            SimDevice::nvme(&p[1], 65),
            SimDevice::nvme(&p[2], 65),
        ],
        ..if nested {
            SimConfig::nested()
        } else {
            SimConfig::default()
        }
    })
}

fn composer() -> Composer {
    Composer {
        domain: Domain::Paging,
        host: HostAddressing::Window {
            address: 0x800_0040,
        },
        doorbells: DoorbellMap::paging(&[0x0809_0040]).expect("one doorbell"),
        devid: 0,
    }
}

/// Kernel calls Sim has entered (each can be the n-th of a fail-nth).
fn entered(sim: &Sim) -> u64 {
    let s = sim.stats();
    s.calls.values().sum::<u64>() - s.count("close")
}

struct Runner {
    sim: Arc<Sim>,
    kernel: Arc<dyn Kernel>,
    slots: Slots,
    eventfds: Vec<EventFd>,
    /// (the call count at which it fires, errno)
    armed: Option<(u64, Errno)>,
    stats: Stats,
}

type Outcome = (Result<(), Error>, Expect);

fn done<T>(r: Result<T, Error>, e: Expect) -> Option<Outcome> {
    Some((r.map(drop), e))
}

fn unit(r: Result<(), Error>, e: Expect) -> Option<Outcome> {
    Some((r, e))
}

impl Runner {
    fn eventfds(&mut self, n: usize) -> Vec<Option<BorrowedFd<'_>>> {
        while self.eventfds.len() < n {
            self.eventfds.push(
                EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                    .expect("eventfd"),
            );
        }
        self.eventfds[..n].iter().map(|e| Some(e.as_fd())).collect()
    }

    /// Runs one operation; `None` when it was skipped (no object in a slot it needs).
    fn op(&mut self, op: &Op) -> Option<Outcome> {
        use Expect::*;
        let s = &mut self.slots;
        match *op {
            Op::OpenIommufd => {
                let r = Iommufd::open(self.kernel.clone());
                let ok = r.as_ref().ok().cloned();
                s.iommufds.extend(ok);
                done(r, Fails(&[KOp::OpenIommufd]))
            }
            Op::AllocIoas { fd } => {
                let r = pick(&s.iommufds, fd)?.alloc_ioas();
                s.ioases.extend(r.as_ref().ok().cloned());
                done(r, Fails(&[KOp::IoasAlloc]))
            }
            Op::OpenDevice { dev } => {
                let path = &device_paths()[usize::from(dev) % 4];
                let r = Device::open(self.kernel.clone(), path);
                s.devices.extend(r.as_ref().ok().cloned());
                done(r, Fails(&[KOp::OpenDevice]))
            }
            Op::Bind { dev, fd } => {
                let d = pick(&s.devices, dev)?;
                done(d.bind(pick(&s.iommufds, fd)?), Fails(&[KOp::DeviceBind]))
            }
            Op::AttachIoas { dev, ioas } => {
                let d = pick(&s.devices, dev)?;
                done(
                    d.attach_ioas(pick(&s.ioases, ioas)?),
                    Fails(&[KOp::DeviceAttach]),
                )
            }
            Op::AttachHwpt { dev, hwpt } => {
                let d = pick(&s.devices, dev)?;
                unit(
                    d.attach_hwpt(pick(&s.hwpts, hwpt)?),
                    Fails(&[KOp::DeviceAttach]),
                )
            }
            Op::Detach { dev } => {
                unit(pick(&s.devices, dev)?.detach(), Fails(&[KOp::DeviceDetach]))
            }
            Op::AllocPaging {
                ioas,
                dev,
                nest_parent,
            } => {
                let r =
                    Hwpt::alloc_paging(pick(&s.ioases, ioas)?, pick(&s.devices, dev)?, nest_parent);
                s.hwpts.extend(r.as_ref().ok().cloned());
                done(r, Fails(&[KOp::HwptAlloc]))
            }
            Op::AllocViommu { hwpt, dev } => {
                let r = Viommu::alloc(pick(&s.hwpts, hwpt)?, pick(&s.devices, dev)?);
                s.viommus.extend(r.as_ref().ok().cloned());
                done(r, Fails(&[KOp::ViommuAlloc]))
            }
            // Checked in `step` (a Vdevice is not Clone).
            Op::AllocVdevice { .. } => None,
            Op::AllocNested { viommu, dev, ste } => {
                let ste = match ste {
                    0 => Ste::abort(),
                    1 => Ste::bypass(),
                    t => Ste::s1(t & !0x3f & ((1 << 52) - 1), 0).unwrap_or(Ste::abort()),
                };
                let r = Hwpt::alloc_nested(pick(&s.viommus, viommu)?, pick(&s.devices, dev)?, ste);
                s.hwpts.extend(r.as_ref().ok().cloned());
                done(r, Fails(&[KOp::HwptAlloc]))
            }
            Op::AllocVeventq { viommu, depth } => {
                let r = pick(&s.viommus, viommu)?.alloc_veventq(depth);
                match r {
                    Ok(q) => {
                        s.veventqs.push(q);
                        unit(Ok(()), Fails(&[KOp::VeventqAlloc]))
                    }
                    Err(e) => unit(Err(e), Fails(&[KOp::VeventqAlloc])),
                }
            }
            Op::ReadVeventq { q } => done(pick(&s.veventqs, q)?.read(), Fails(&[KOp::Read])),
            Op::Invalidate { viommu, ref cmds } => {
                let cmds: Vec<[u64; 2]> = cmds.iter().take(16).map(|&(a, b)| [a, b]).collect();
                let r = pick(&s.viommus, viommu)?.invalidate(&cmds);
                done(r, Fails(&[]))
            }
            Op::EnableIrqs {
                dev,
                msix,
                count,
                with_fds,
            } => {
                let d = pick(&self.slots.devices, dev)?.clone();
                let n = usize::from(count % 70);
                let fds = if with_fds {
                    self.eventfds(n)
                } else {
                    vec![None; n]
                };
                unit(
                    d.enable_irqs(msi_index(msix), &fds),
                    Fails(&[KOp::DeviceSetIrqs]),
                )
            }
            Op::SetVectorEventfd {
                dev,
                msix,
                vector,
                some,
            } => {
                let d = pick(&self.slots.devices, dev)?.clone();
                let fd = if some { self.eventfds(1)[0] } else { None };
                unit(
                    d.set_vector_eventfd(msi_index(msix), vector, fd),
                    Fails(&[KOp::DeviceSetIrqs]),
                )
            }
            Op::DisableIrqs { dev, msix } => unit(
                pick(&s.devices, dev)?.disable_irqs(msi_index(msix)),
                Fails(&[KOp::DeviceSetIrqs]),
            ),
            Op::TriggerVector { dev, msix, vector } => unit(
                pick(&s.devices, dev)?.trigger_vector(msi_index(msix), vector),
                Fails(&[KOp::DeviceSetIrqs]),
            ),
            Op::BringUp { dev, msix } => {
                let d = pick(&s.devices, dev)?.clone();
                let index = if msix { IrqIndex::Msix } else { IrqIndex::Msi };
                match MsiDevice::bring_up(d, index, composer()) {
                    Ok(m) => {
                        s.msi.push(m);
                        unit(Ok(()), Fails(&[]))
                    }
                    Err(e) => unit(
                        Err(e),
                        Fails(&[
                            KOp::DeviceGetIrqInfo,
                            KOp::DeviceRegionRead,
                            KOp::DeviceSetIrqs,
                        ]),
                    ),
                }
            }
            Op::Raise { dev, msix, vector } => {
                let d = pick(&s.devices, dev)?;
                let path = d.path()?;
                self.sim.raise_irq(path, msi_index(msix), vector);
                unit(Ok(()), Fails(&[]))
            }
            Op::NewMemory { pages } => {
                let m = DmaMemory::new(4096 * (usize::from(pages % 16) + 1)).expect("memory");
                s.memory.push(m);
                unit(Ok(()), Fails(&[]))
            }
            Op::MapMemory {
                ioas,
                mem,
                pages,
                iova,
                write,
            } => {
                let prot = if write { Prot::ReadWrite } else { Prot::Read };
                let len = 4096 * u64::from(pages % 17);
                let r =
                    pick(&s.ioases, ioas)?.map_memory(pick(&s.memory, mem)?, 0, len, iova, prot);
                done(r, Fails(&[KOp::IoasMap]))
            }
            Op::MapFile {
                ioas,
                mem,
                start,
                len,
                iova,
            } => {
                let m = pick(&s.memory, mem)?;
                let r = pick(&s.ioases, ioas)?.map_file(m.file(), start, len, iova, Prot::Read);
                done(r, Fails(&[KOp::IoasMapFile]))
            }
            Op::Unmap { ioas, iova, len } => done(
                pick(&s.ioases, ioas)?.unmap(iova, len),
                Fails(&[KOp::IoasUnmap]),
            ),
            Op::IovaRanges { ioas } => {
                let r = pick(&s.ioases, ioas)?.iova_ranges();
                if let Ok((ranges, _)) = &r {
                    crate::firmware::holes(ranges);
                }
                done(r, Fails(&[KOp::IoasIovaRanges]))
            }
            Op::AllowIovas { ioas, ref ranges } => {
                let ranges: Vec<IovaRange> = ranges
                    .iter()
                    .take(8)
                    .map(|&(start, last)| IovaRange { start, last })
                    .collect();
                unit(
                    pick(&s.ioases, ioas)?.allow_iovas(&ranges),
                    Fails(&[KOp::IoasAllowIovas]),
                )
            }
            Op::CopyTo {
                src,
                dst,
                src_iova,
                len,
                dst_iova,
            } => {
                let r = pick(&s.ioases, src)?.copy_to(
                    pick(&s.ioases, dst)?,
                    src_iova,
                    len,
                    dst_iova,
                    Prot::Read,
                );
                done(r, Fails(&[KOp::IoasCopy]))
            }
            Op::HwInfo { dev } => done(pick(&s.devices, dev)?.hw_info(), Fails(&[KOp::GetHwInfo])),
            Op::Info { dev, index } => {
                let d = pick(&s.devices, dev)?;
                let r = d
                    .info()
                    .and_then(|_| d.region_info(index % 10))
                    .and_then(|_| d.irq_info(index % 6));
                done(
                    r,
                    Fails(&[
                        KOp::DeviceGetInfo,
                        KOp::DeviceGetRegionInfo,
                        KOp::DeviceGetIrqInfo,
                    ]),
                )
            }
            Op::ReadConfig { dev, offset, len } => {
                let mut buf = [0u8; 64];
                let n = usize::from(len % 65);
                let r = pick(&s.devices, dev)?.read_config(u64::from(offset), &mut buf[..n]);
                unit(r, Fails(&[KOp::DeviceRegionRead]))
            }
            Op::Reset { dev } => unit(pick(&s.devices, dev)?.reset(), Fails(&[KOp::DeviceReset])),
            Op::HugePages { fd, ioas, set } => {
                let f = pick(&s.iommufds, fd)?;
                let id = pick(&s.ioases, ioas)?.id();
                let r = match set {
                    Some(on) => f.set_huge_pages(id, on),
                    None => f.huge_pages(id).map(drop),
                };
                unit(r, Fails(&[KOp::Option]))
            }
            Op::Probe { fd, dev } => {
                let r = vmsi::msi::probe(pick(&s.iommufds, fd)?, pick(&s.devices, dev)?);
                done(r, MayAbsorb)
            }
            Op::Destroy { kind, slot } => {
                let r = match kind {
                    Kind::Ioas => take(&mut s.ioases, slot)?.destroy(),
                    Kind::Hwpt => take(&mut s.hwpts, slot)?.destroy(),
                    Kind::Viommu => take(&mut s.viommus, slot)?.destroy(),
                    _ => return None,
                };
                unit(r, Fails(&[KOp::Destroy]))
            }
            Op::Drop { kind, slot } => {
                if !s.drop_one(kind, slot) {
                    return None;
                }
                unit(Ok(()), MayAbsorb)
            }
            Op::FailNth { n, errno } => {
                let n = u64::from(n) + 1;
                let errno = crate::kernel_answers::errno_from(errno);
                self.sim.fail_nth(n, errno);
                self.armed = Some((entered(&self.sim) + n, errno));
                None
            }
            Op::ClearFault => {
                self.sim.clear_fault();
                self.armed = None;
                None
            }
        }
    }

    fn step(&mut self, op: &Op) {
        // Vdevice is not Clone, so its allocation is checked here rather than in `op`.
        if let Op::AllocVdevice { viommu, dev, vsid } = *op {
            let s = &self.slots;
            let (Some(vi), Some(d)) = (pick(&s.viommus, viommu), pick(&s.devices, dev)) else {
                return;
            };
            let (vi, d) = (vi.clone(), d.clone());
            let before = entered(&self.sim);
            let r = vi.alloc_vdevice(&d, vsid);
            let r = match r {
                Ok(v) => {
                    self.slots.vdevices.push(v);
                    Ok(())
                }
                Err(e) => Err(e),
            };
            self.check(before, r, Expect::Fails(&[KOp::VdeviceAlloc]));
            return;
        }
        let before = entered(&self.sim);
        if let Some((r, expect)) = self.op(op) {
            self.check(before, r, expect);
        }
    }

    fn check(&mut self, before: u64, r: Result<(), Error>, expect: Expect) {
        self.stats.ops += 1;
        let after = entered(&self.sim);
        let fired = match self.armed {
            Some((at, errno)) if before < at && at <= after => {
                self.armed = None;
                self.stats.faults_fired += 1;
                Some(errno)
            }
            _ => None,
        };
        if let Err(e) = &r {
            crate::typed(e);
            self.stats.failed += 1;
        }
        let (Some(errno), Expect::Fails(ops)) = (fired, expect) else {
            return;
        };
        let e = match r {
            Ok(()) => panic!("an injected {errno} was swallowed"),
            Err(e) => e,
        };
        assert_eq!(e.errno(), Some(errno), "the injected errno is kept: {e:?}");
        match e {
            Error::Kernel { op, .. } | Error::Unsupported { op, .. } => {
                assert!(ops.contains(&op), "{e:?} names none of {ops:?}");
            }
            Error::Invalidate { .. } => {}
            other => panic!("an injected fault became {other:?}"),
        }
    }
}

/// Runs one input, panicking on a broken invariant.
pub fn run(input: &Input) -> Stats {
    let sim = sim(input.nested);
    let mut r = Runner {
        kernel: sim.clone(),
        sim: sim.clone(),
        slots: Slots::default(),
        eventfds: Vec::new(),
        armed: None,
        stats: Stats::default(),
    };
    for op in input.ops.iter().take(MAX_OPS) {
        r.step(op);
    }
    let first = usize::from(input.drop_first) % KINDS.len();
    for k in KINDS.iter().cycle().skip(first).take(KINDS.len()) {
        r.slots.drop_kind(*k);
    }
    let stats = r.stats;
    drop(r);
    sim.clear_fault();
    let st = sim.stats();
    assert_eq!(
        (
            st.open_files,
            st.live_objects,
            st.live_areas,
            st.live_triggers
        ),
        (0, 0, 0, 0),
        "leaked after dropping everything: {st:?}"
    );
    stats
}

/// Decodes and runs one input.
pub fn fuzz(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(&input);
    }
}

/// The library's full device setup as operations: iommufd, IOAS, the nvme bound and
/// attached, a nest parent, a vIOMMU, a vDEVICE, a nested HWPT attached, MSI-X brought up.
pub fn full_setup() -> Vec<Op> {
    vec![
        Op::OpenIommufd,
        Op::AllocIoas { fd: 0 },
        Op::OpenDevice { dev: 1 },
        Op::Bind { dev: 0, fd: 0 },
        Op::AttachIoas { dev: 0, ioas: 0 },
        Op::AllocPaging {
            ioas: 0,
            dev: 0,
            nest_parent: true,
        },
        Op::AttachHwpt { dev: 0, hwpt: 0 },
        Op::AllocViommu { hwpt: 0, dev: 0 },
        Op::AllocVdevice {
            viommu: 0,
            dev: 0,
            vsid: 0x10,
        },
        Op::AllocNested {
            viommu: 0,
            dev: 0,
            ste: 1,
        },
        Op::AttachHwpt { dev: 0, hwpt: 1 },
        Op::BringUp { dev: 0, msix: true },
        Op::Raise {
            dev: 0,
            msix: true,
            vector: 3,
        },
    ]
}

/// Seeds: the full setup with a fault at each of its first calls, on both machines; a
/// paging setup with mappings; IRQs on an unattached device.
pub fn seeds() -> Vec<(String, Input)> {
    let mut out = Vec::new();
    for nested in [false, true] {
        for n in [0u8, 2, 5, 8, 11] {
            let mut ops = vec![Op::FailNth { n, errno: 11 }];
            ops.extend(full_setup());
            out.push((
                format!(
                    "full-setup-{}-fail-{n}",
                    if nested { "canwbs" } else { "dt" }
                ),
                Input {
                    nested,
                    ops,
                    drop_first: n,
                },
            ));
        }
    }
    out.push((
        "paging-mappings".into(),
        Input {
            nested: false,
            ops: vec![
                Op::OpenIommufd,
                Op::AllocIoas { fd: 0 },
                Op::NewMemory { pages: 3 },
                Op::MapMemory {
                    ioas: 0,
                    mem: 0,
                    pages: 2,
                    iova: Some(0x10_0000),
                    write: true,
                },
                Op::OpenDevice { dev: 0 },
                Op::Bind { dev: 0, fd: 0 },
                Op::AttachIoas { dev: 0, ioas: 0 },
                Op::IovaRanges { ioas: 0 },
                Op::FailNth { n: 0, errno: 12 },
                Op::Unmap {
                    ioas: 0,
                    iova: 0x10_0000,
                    len: 0x2000,
                },
                Op::EnableIrqs {
                    dev: 0,
                    msix: false,
                    count: 1,
                    with_fds: true,
                },
                Op::Raise {
                    dev: 0,
                    msix: false,
                    vector: 0,
                },
                Op::Destroy {
                    kind: Kind::Ioas,
                    slot: 0,
                },
                Op::Probe { fd: 0, dev: 0 },
            ],
            drop_first: 2,
        },
    ));
    out.push((
        "irqs-unattached".into(),
        Input {
            nested: false,
            ops: vec![
                Op::OpenIommufd,
                Op::OpenDevice { dev: 2 },
                Op::Bind { dev: 0, fd: 0 },
                Op::EnableIrqs {
                    dev: 0,
                    msix: true,
                    count: 4,
                    with_fds: true,
                },
                Op::Drop {
                    kind: Kind::Iommufd,
                    slot: 0,
                },
                Op::HwInfo { dev: 0 },
            ],
            drop_first: 0,
        },
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_setup_succeeds_without_faults_on_both_machines() {
        for nested in [false, true] {
            let s = run(&Input {
                nested,
                ops: full_setup(),
                drop_first: 0,
            });
            assert_eq!(s.faults_fired, 0);
            // Without CANWBS the vIOMMU and what needs it fail (EOPNOTSUPP), typed.
            assert_eq!(s.failed > 0, !nested, "{s:?}");
        }
    }

    #[test]
    fn seeds_run_clean_and_faults_fire() {
        let fired: u64 = seeds().iter().map(|(_, i)| run(i).faults_fired).sum();
        assert!(fired >= 10, "{fired}");
    }
}
