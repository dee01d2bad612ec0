//! Target `kernel_verbs`: every `Kernel` verb on `Sim` with arbitrary argument structures.
//!
//! The public entry points that take a raw ioctl argument structure are the [`Kernel`]
//! trait's verbs (and `hw_info_data_type`). Each call here fills every field of the
//! structure from the input (sizes too, unless `fix_size` asks for the right one), passes
//! arbitrary slices beside it, and targets an iommufd, a device, a vEVENTQ or a made-up
//! file number. Invariants:
//! * no panic: every answer is `Ok` or an errno;
//! * a declared size larger than the structure never succeeds: it is `E2BIG`, or an error
//!   the kernel gives before reading the structure (bad file, wrong file type, bad buffer);
//! * after closing every file the sequence opened, Sim holds no file, object, mapping or
//!   trigger (the model's bookkeeping stays consistent whatever it was asked).
//!
//! `ioas_map_user` is left out: it is `unsafe` (the caller vouches for a user address
//! range); `ioas_map_memory` reaches the same model code with the same structure.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::eventfd::{EfdFlags, EventFd};
use serde::{Deserialize, Serialize};
use vmsi::seam::{
    IrqData, IrqSetHeader, Kernel, KernelFd, Sim, SimConfig, UapiArg, hw_info_data_type,
};
use vmsi::{DmaMemory, Errno};
use vmsi_sys::iommufd as i;
use vmsi_sys::vfio as v;

/// At most this many calls of one input run.
pub const MAX_CALLS: usize = 128;

/// Which file a call goes to. Slots are taken modulo the files of that kind opened so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fd {
    /// An iommufd the sequence opened.
    Iommufd(u8),
    /// A device the sequence opened.
    Device(u8),
    /// A vEVENTQ the sequence allocated.
    Queue(u8),
    /// Any number.
    Raw(i32),
}

/// `VFIO_DEVICE_SET_IRQS` payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// `DATA_NONE`.
    None,
    /// `DATA_BOOL`.
    Bool(Vec<u8>),
    /// `DATA_EVENTFD`: `true` is an eventfd, `false` is -1.
    Eventfds(Vec<bool>),
    /// Proposed `DATA_MSI_IOVA`.
    MsiIovas(Vec<u64>),
}

/// A verb and its out-of-structure arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum Verb {
    OpenIommufd,
    /// Device 0..=2 exist (edu, nvme, nvme), others do not.
    OpenDevice(u8),
    Close,
    Read {
        len: u16,
    },
    Destroy,
    IoasAlloc,
    IoasMapMemory {
        offset: u64,
    },
    IoasMapFile,
    IoasUnmap,
    IoasCopy,
    IoasIovaRanges {
        out_len: u8,
    },
    IoasAllowIovas,
    Option,
    HwptAlloc,
    GetHwInfo {
        data_len: u8,
    },
    HwptInvalidate,
    ViommuAlloc,
    VdeviceAlloc,
    VeventqAlloc,
    DeviceBind {
        iommufd: Fd,
    },
    DeviceAttach,
    DeviceDetach,
    DeviceGetInfo,
    DeviceGetRegionInfo,
    DeviceGetIrqInfo,
    DeviceSetIrqs(Payload),
    DeviceReset,
    DeviceRead {
        offset: u64,
        len: u16,
    },
    DeviceWrite {
        offset: u64,
    },
    DeviceMmap {
        offset: u64,
        len: u64,
    },
    /// Proposed `IOMMU_IOAS_MAP_MSI` (last, so that older inputs decode unchanged).
    IoasMapMsi,
}

/// One call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The verb.
    pub verb: Verb,
    /// The file.
    pub fd: Fd,
    /// Set the declared size to the structure's size (to get past the size checks).
    pub fix_size: bool,
    /// The structure's fields, in declaration order (the first is the declared size).
    pub w: [u64; 8],
    /// Byte slice beside the structure (driver data, entries, written bytes).
    pub bytes: Vec<u8>,
    /// IOVA ranges beside the structure.
    pub ranges: Vec<(u64, u64)>,
}

/// The whole input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// Sim with CANWBS.
    pub nested: bool,
    /// Sim with the proposed uAPI.
    pub proposed: bool,
    /// The calls.
    pub calls: Vec<Call>,
}

/// What happened, for tests and the README's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls made.
    pub calls: u64,
    /// Calls answered with an errno.
    pub errnos: u64,
    /// Calls with an oversized declared size (all refused).
    pub oversized: u64,
}

struct W<'a>(&'a [u64; 8]);

impl W<'_> {
    fn d(&self, k: usize) -> u64 {
        self.0[k]
    }
    fn u(&self, k: usize) -> u32 {
        self.0[k] as u32
    }
    fn h(&self, k: usize) -> u16 {
        self.0[k] as u16
    }
}

struct Files {
    iommufds: Vec<KernelFd>,
    devices: Vec<KernelFd>,
    queues: Vec<KernelFd>,
    /// Devices bound to an iommufd (an unbound cdev refuses ioctls with EINVAL first).
    bound: Vec<KernelFd>,
}

impl Files {
    fn resolve(&self, fd: Fd) -> KernelFd {
        let pick = |v: &[KernelFd], k: u8| {
            if v.is_empty() {
                KernelFd(-1)
            } else {
                v[usize::from(k) % v.len()]
            }
        };
        match fd {
            Fd::Iommufd(k) => pick(&self.iommufds, k),
            Fd::Device(k) => pick(&self.devices, k),
            Fd::Queue(k) => pick(&self.queues, k),
            Fd::Raw(n) => KernelFd(n),
        }
    }
}

struct Runner {
    sim: Arc<Sim>,
    files: Files,
    mem: Option<DmaMemory>,
    eventfds: Vec<EventFd>,
    stats: Stats,
}

/// Sets the declared size, and reports whether it is larger than the structure.
fn sized<T: UapiArg>(arg: &mut T, fix: bool, set: impl FnOnce(&mut T, u32)) -> bool {
    if fix {
        set(arg, size_of::<T>() as u32);
    }
    arg.declared_size() as usize > size_of::<T>()
}

impl Runner {
    fn call(&mut self, c: &Call) {
        let k: &dyn Kernel = &*self.sim;
        let fd = self.files.resolve(c.fd);
        let w = W(&c.w);
        let fix = c.fix_size;
        let bytes = &c.bytes[..c.bytes.len().min(4096)];
        let ranges: Vec<i::iommu_iova_range> = c
            .ranges
            .iter()
            .take(64)
            .map(|&(start, last)| i::iommu_iova_range { start, last })
            .collect();
        let (r, oversized): (Result<(), Errno>, bool) = match c.verb {
            Verb::OpenIommufd => {
                let r = k.open_iommufd();
                self.files.iommufds.extend(r.ok());
                (r.map(drop), false)
            }
            Verb::OpenDevice(d) => {
                let r = k.open_device(&PathBuf::from(format!("/dev/vfio/devices/vfio{d}")));
                self.files.devices.extend(r.ok());
                (r.map(drop), false)
            }
            Verb::Close => {
                k.close(fd);
                (Ok(()), false)
            }
            Verb::Read { len } => {
                let mut buf = vec![0u8; usize::from(len % 4097)];
                let r = k.read(fd, &mut buf);
                if let Ok(n) = r {
                    assert!(n <= buf.len(), "read claims {n} bytes into {}", buf.len());
                }
                (r.map(drop), false)
            }
            Verb::Destroy => {
                let mut a = i::iommu_destroy {
                    size: w.u(0),
                    id: w.u(1),
                };
                let o = sized(&mut a, fix, |a, s| a.size = s);
                (k.destroy(fd, &mut a), o)
            }
            Verb::IoasAlloc => {
                let mut a = i::iommu_ioas_alloc {
                    size: w.u(0),
                    flags: w.u(1),
                    out_ioas_id: w.u(2),
                };
                let o = sized(&mut a, fix, |a, s| a.size = s);
                let r = k.ioas_alloc(fd, &mut a);
                if r.is_ok() {
                    assert_ne!(a.out_ioas_id, 0, "object ids start at 1");
                }
                (r, o)
            }
            Verb::IoasMapMemory { offset } => {
                let mem = self
                    .mem
                    .get_or_insert_with(|| DmaMemory::new(1 << 16).expect("64 KiB"));
                let mut a = map(&w);
                let o = sized(&mut a, fix, |a, s| a.size = s);
                let off = usize::try_from(offset).unwrap_or(usize::MAX);
                (k.ioas_map_memory(fd, &mut a, mem, off), o)
            }
            Verb::IoasMapFile => {
                let mem = self
                    .mem
                    .get_or_insert_with(|| DmaMemory::new(1 << 16).expect("64 KiB"));
                let mut a = i::iommu_ioas_map_file {
                    size: w.u(0),
                    flags: w.u(1),
                    ioas_id: w.u(2),
                    fd: w.d(2).wrapping_shr(32) as i32,
                    start: w.d(3),
                    length: w.d(4),
                    iova: w.d(5),
                };
                let o = sized(&mut a, fix, |a, s| a.size = s);
                (k.ioas_map_file(fd, &mut a, mem.file()), o)
            }
            Verb::IoasUnmap => {
                let mut a = i::iommu_ioas_unmap {
                    size: w.u(0),
                    ioas_id: w.u(1),
                    iova: w.d(2),
                    length: w.d(3),
                };
                let o = sized(&mut a, fix, |a, s| a.size = s);
                (k.ioas_unmap(fd, &mut a), o)
            }
            Verb::IoasCopy => {
                let mut a = i::iommu_ioas_copy {
                    size: w.u(0),
                    flags: w.u(1),
                    dst_ioas_id: w.u(2),
                    src_ioas_id: w.u(3),
                    length: w.d(4),
                    dst_iova: w.d(5),
                    src_iova: w.d(6),
                };
                let o = sized(&mut a, fix, |a, s| a.size = s);
                (k.ioas_copy(fd, &mut a), o)
            }
            Verb::IoasIovaRanges { out_len } => {
                let mut out = vec![i::iommu_iova_range::default(); usize::from(out_len)];
                let mut a = i::iommu_ioas_iova_ranges {
                    size: w.u(0),
                    ioas_id: w.u(1),
                    num_iovas: w.u(2),
                    __reserved: w.u(3),
                    allowed_iovas: w.d(4),
                    out_iova_alignment: w.d(5),
                };
                let o = sized(&mut a, fix, |a, s| a.size = s);
                (k.ioas_iova_ranges(fd, &mut a, &mut out), o)
            }
            Verb::IoasAllowIovas => {
                let mut a = i::iommu_ioas_allow_iovas {
                    size: w.u(0),
                    ioas_id: w.u(1),
                    num_iovas: w.u(2),
                    __reserved: w.u(3),
                    allowed_iovas: w.d(4),
                };
                let o = sized(&mut a, fix, |a, s| a.size = s);
                (k.ioas_allow_iovas(fd, &mut a, &ranges), o)
            }
            Verb::Option => {
                let mut a = i::iommu_option {
                    size: w.u(0),
                    option_id: w.u(1),
                    op: w.h(2),
                    __reserved: w.h(3),
                    object_id: w.u(4),
                    val64: w.d(5),
                };
                let o = sized(&mut a, fix, |a, s| a.size = s);
                (k.option(fd, &mut a), o)
            }
            Verb::HwptAlloc => {
                let mut a = i::iommu_hwpt_alloc {
                    size: w.u(0),
                    flags: w.u(1),
                    dev_id: w.u(2),
                    pt_id: w.u(3),
                    out_hwpt_id: w.u(4),
                    __reserved: w.d(4).wrapping_shr(32) as u32,
                    data_type: w.u(5),
                    data_len: w.d(5).wrapping_shr(32) as u32,
                    data_uptr: w.d(6),
                    fault_id: w.u(7),
                    __reserved2: w.d(7).wrapping_shr(32) as u32,
                };
                let o = sized(&mut a, fix, |a, s| a.size = s);
                (k.hwpt_alloc(fd, &mut a, bytes), o)
            }
            Verb::GetHwInfo { data_len } => {
                let mut data = vec![0u8; usize::from(data_len)];
                let mut a = i::iommu_hw_info {
                    size: w.u(0),
                    flags: w.u(1),
                    dev_id: w.u(2),
                    data_len: w.u(3),
                    data_uptr: w.d(4),
                    out_max_pasid_log2: w.d(5) as u8,
                    out_capabilities: w.d(6),
                    ..Default::default()
                };
                a.__bindgen_anon_1.in_data_type = w.u(7);
                let o = sized(&mut a, fix, |a, s| a.size = s);
                let r = k.get_hw_info(fd, &mut a, &mut data);
                let _ = hw_info_data_type(&a);
                (r, o)
            }
            Verb::HwptInvalidate => {
                let mut a = i::iommu_hwpt_invalidate {
                    size: w.u(0),
                    hwpt_id: w.u(1),
                    data_uptr: w.d(2),
                    data_type: w.u(3),
                    entry_len: w.u(4),
                    entry_num: w.u(5),
                    __reserved: w.u(6),
                };
                let requested = a.entry_num;
                let o = sized(&mut a, fix, |a, s| a.size = s);
                let r = k.hwpt_invalidate(fd, &mut a, bytes);
                assert!(a.entry_num <= requested, "handled more entries than passed");
                (r, o)
            }
            Verb::ViommuAlloc => {
                let mut a = i::iommu_viommu_alloc {
                    size: w.u(0),
                    flags: w.u(1),
                    type_: w.u(2),
                    dev_id: w.u(3),
                    hwpt_id: w.u(4),
                    out_viommu_id: w.u(5),
                    data_len: w.u(6),
                    __reserved: w.d(6).wrapping_shr(32) as u32,
                    data_uptr: w.d(7),
                };
                let o = sized(&mut a, fix, |a, s| a.size = s);
                (k.viommu_alloc(fd, &mut a, bytes), o)
            }
            Verb::VdeviceAlloc => {
                let mut a = i::iommu_vdevice_alloc {
                    size: w.u(0),
                    viommu_id: w.u(1),
                    dev_id: w.u(2),
                    out_vdevice_id: w.u(3),
                    virt_id: w.d(4),
                };
                let o = sized(&mut a, fix, |a, s| a.size = s);
                (k.vdevice_alloc(fd, &mut a), o)
            }
            Verb::VeventqAlloc => {
                let mut a = i::iommu_veventq_alloc {
                    size: w.u(0),
                    flags: w.u(1),
                    viommu_id: w.u(2),
                    type_: w.u(3),
                    veventq_depth: w.u(4),
                    out_veventq_id: w.u(5),
                    out_veventq_fd: w.u(6),
                    __reserved: w.u(7),
                };
                let o = sized(&mut a, fix, |a, s| a.size = s);
                let r = k.veventq_alloc(fd, &mut a);
                if let Ok(q) = r {
                    assert_eq!(a.out_veventq_fd, q.0 as u32);
                    self.files.queues.push(q);
                }
                (r.map(drop), o)
            }
            Verb::DeviceBind { iommufd } => {
                let ictx = self.files.resolve(iommufd);
                let mut a = v::vfio_device_bind_iommufd {
                    argsz: w.u(0),
                    flags: w.u(1),
                    iommufd: w.u(2) as i32,
                    out_devid: w.u(3),
                    token_uuid_ptr: w.d(4),
                };
                let o = sized(&mut a, fix, |a, s| a.argsz = s);
                let r = k.device_bind(fd, ictx, &mut a);
                if r.is_ok() {
                    self.files.bound.push(fd);
                }
                (r, o)
            }
            Verb::DeviceAttach => {
                let mut a = v::vfio_device_attach_iommufd_pt {
                    argsz: w.u(0),
                    flags: w.u(1),
                    pt_id: w.u(2),
                    pasid: w.u(3),
                };
                let o = sized(&mut a, fix, |a, s| a.argsz = s);
                (k.device_attach(fd, &mut a), o)
            }
            Verb::DeviceDetach => {
                let mut a = v::vfio_device_detach_iommufd_pt {
                    argsz: w.u(0),
                    flags: w.u(1),
                    pasid: w.u(2),
                };
                let o = sized(&mut a, fix, |a, s| a.argsz = s);
                (k.device_detach(fd, &mut a), o)
            }
            Verb::DeviceGetInfo => {
                let mut a = v::vfio_device_info {
                    argsz: w.u(0),
                    flags: w.u(1),
                    num_regions: w.u(2),
                    num_irqs: w.u(3),
                    cap_offset: w.u(4),
                    pad: w.u(5),
                };
                let o = sized(&mut a, fix, |a, s| a.argsz = s);
                (k.device_get_info(fd, &mut a), o)
            }
            Verb::DeviceGetRegionInfo => {
                let mut a = v::vfio_region_info {
                    argsz: w.u(0),
                    flags: w.u(1),
                    index: w.u(2),
                    cap_offset: w.u(3),
                    size: w.d(4),
                    offset: w.d(5),
                };
                let o = sized(&mut a, fix, |a, s| a.argsz = s);
                (k.device_get_region_info(fd, &mut a), o)
            }
            Verb::DeviceGetIrqInfo => {
                let mut a = v::vfio_irq_info {
                    argsz: w.u(0),
                    flags: w.u(1),
                    index: w.u(2),
                    count: w.u(3),
                };
                let o = sized(&mut a, fix, |a, s| a.argsz = s);
                (k.device_get_irq_info(fd, &mut a), o)
            }
            Verb::DeviceSetIrqs(ref p) => {
                let h = IrqSetHeader {
                    flags: w.u(0),
                    index: w.u(1),
                    start: w.u(2),
                    count: w.u(3),
                };
                let r = match p {
                    Payload::None => k.device_set_irqs(fd, &h, IrqData::None),
                    Payload::Bool(b) => {
                        k.device_set_irqs(fd, &h, IrqData::Bool(&b[..b.len().min(4096)]))
                    }
                    Payload::MsiIovas(a) => {
                        k.device_set_irqs(fd, &h, IrqData::MsiIovas(&a[..a.len().min(4096)]))
                    }
                    Payload::Eventfds(which) => {
                        let n = which.len().min(2100);
                        while self.eventfds.len() < 4 {
                            self.eventfds.push(
                                EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                                    .expect("eventfd"),
                            );
                        }
                        let fds: Vec<Option<BorrowedFd<'_>>> = which[..n]
                            .iter()
                            .enumerate()
                            .map(|(j, &on)| on.then(|| self.eventfds[j % 4].as_fd()))
                            .collect();
                        k.device_set_irqs(fd, &h, IrqData::Eventfds(&fds))
                    }
                };
                (r.map(drop), false)
            }
            Verb::DeviceReset => (k.device_reset(fd), false),
            Verb::DeviceRead { offset, len } => {
                let mut buf = vec![0u8; usize::from(len % 4097)];
                let r = k.device_read(fd, &mut buf, offset);
                if let Ok(n) = r {
                    assert!(n <= buf.len());
                }
                (r.map(drop), false)
            }
            Verb::DeviceWrite { offset } => {
                let r = k.device_write(fd, bytes, offset);
                if let Ok(n) = r {
                    assert!(n <= bytes.len());
                }
                (r.map(drop), false)
            }
            Verb::DeviceMmap { offset, len } => {
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                let r = k.device_mmap(fd, offset, len);
                if let Ok(bar) = &r {
                    // Accesses through the mapping are bounds-checked: typed errors only.
                    let _ = bar.read_u32(w.d(6) as usize);
                    let _ = bar.read_u64(w.d(7) as usize);
                    let _ = bar.write_u32(w.d(5) as usize, w.u(4));
                }
                (r.map(drop), false)
            }
            Verb::IoasMapMsi => {
                let mut a = vmsi_sys::proposed::iommu_ioas_map_msi {
                    size: w.u(0),
                    flags: w.u(1),
                    ioas_id: w.u(2),
                    dev_id: w.d(2).wrapping_shr(32) as u32,
                    iova: w.d(3),
                    length: w.d(4),
                    doorbell_offset: w.u(5),
                    __reserved: w.d(5).wrapping_shr(32) as u32,
                };
                let o = sized(&mut a, fix, |a, s| a.size = s);
                (k.ioas_map_msi(fd, &mut a), o)
            }
        };
        self.stats.calls += 1;
        if let Err(e) = r {
            self.stats.errnos += 1;
            assert_ne!(e as i32, 0, "an error without an errno");
        }
        if oversized {
            self.stats.oversized += 1;
            let unbound = self.files.devices.contains(&fd) && !self.files.bound.contains(&fd);
            assert!(
                matches!(
                    r,
                    Err(Errno::E2BIG | Errno::EBADF | Errno::ENOTTY | Errno::EFAULT)
                ) || (unbound && r == Err(Errno::EINVAL)),
                "{:?} with an oversized structure answered {r:?}",
                c.verb
            );
        }
    }
}

fn map(w: &W<'_>) -> i::iommu_ioas_map {
    i::iommu_ioas_map {
        size: w.u(0),
        flags: w.u(1),
        ioas_id: w.u(2),
        __reserved: w.u(3),
        user_va: w.d(4),
        length: w.d(5),
        iova: w.d(6),
    }
}

/// Runs one input, panicking on a broken invariant.
pub fn run(input: &Input) -> Stats {
    let sim = Sim::new(SimConfig {
        proposed_uapi: input.proposed,
        ..if input.nested {
            SimConfig::nested()
        } else {
            SimConfig::default()
        }
    });
    let mut r = Runner {
        sim: sim.clone(),
        files: Files {
            iommufds: Vec::new(),
            devices: Vec::new(),
            queues: Vec::new(),
            bound: Vec::new(),
        },
        mem: None,
        eventfds: Vec::new(),
        stats: Stats::default(),
    };
    for c in input.calls.iter().take(MAX_CALLS) {
        r.call(c);
    }
    let f = &r.files;
    for fd in f.queues.iter().chain(&f.devices).chain(&f.iommufds) {
        sim.close(*fd);
    }
    let st = sim.stats();
    assert_eq!(
        (
            st.open_files,
            st.live_objects,
            st.live_areas,
            st.live_triggers
        ),
        (0, 0, 0, 0),
        "Sim holds state after every file was closed: {st:?}"
    );
    r.stats
}

/// Decodes and runs one input.
pub fn fuzz(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(&input);
    }
}

fn call(verb: Verb, fd: Fd, w: [u64; 8]) -> Call {
    Call {
        verb,
        fd,
        fix_size: true,
        w,
        bytes: Vec::new(),
        ranges: Vec::new(),
    }
}

/// Seeds: the calls the object layer makes for a full setup (with the right sizes), then
/// the same structures with wrong sizes, flags and ids.
pub fn seeds() -> Vec<(&'static str, Input)> {
    use Fd::*;
    let setup = vec![
        call(Verb::OpenIommufd, Raw(0), [0; 8]),
        call(Verb::OpenDevice(1), Raw(0), [0; 8]),
        call(Verb::IoasAlloc, Iommufd(0), [0; 8]),
        call(
            Verb::DeviceBind {
                iommufd: Iommufd(0),
            },
            Device(0),
            [0; 8],
        ),
        call(Verb::DeviceAttach, Device(0), [0, 0, 1, 0, 0, 0, 0, 0]),
        call(
            Verb::IoasMapMemory { offset: 0 },
            Iommufd(0),
            [0, 7, 1, 0, 0, 0x4000, 0x10_0000, 0],
        ),
        call(
            Verb::IoasIovaRanges { out_len: 4 },
            Iommufd(0),
            [0, 1, 4, 0, 0, 0, 0, 0],
        ),
        call(Verb::HwptAlloc, Iommufd(0), [0, 1, 2, 1, 0, 0, 0, 0]),
        call(Verb::ViommuAlloc, Iommufd(0), [0, 0, 1, 2, 3, 0, 0, 0]),
        call(Verb::VdeviceAlloc, Iommufd(0), [0, 4, 2, 0, 0x10, 0, 0, 0]),
        call(Verb::VeventqAlloc, Iommufd(0), [0, 0, 4, 1, 16, 0, 0, 0]),
        call(Verb::Read { len: 40 }, Queue(0), [0; 8]),
        call(
            Verb::GetHwInfo { data_len: 40 },
            Iommufd(0),
            [0, 0, 2, 40, 0, 0, 0, 0],
        ),
        call(Verb::DeviceGetIrqInfo, Device(0), [0, 0, 2, 0, 0, 0, 0, 0]),
        call(
            Verb::DeviceSetIrqs(Payload::Eventfds(vec![true; 4])),
            Device(0),
            [0x24, 2, 0, 4, 0, 0, 0, 0],
        ),
        call(
            Verb::DeviceSetIrqs(Payload::None),
            Device(0),
            [0x21, 2, 0, 0, 0, 0, 0, 0],
        ),
        call(
            Verb::DeviceRead {
                offset: 7 << 40,
                len: 256,
            },
            Device(0),
            [0; 8],
        ),
        call(
            Verb::DeviceMmap {
                offset: 0,
                len: 0x4000,
            },
            Device(0),
            [0; 8],
        ),
        // The doorbell page of device 1 (bound as object 2) at IOVA 0x1000_0000 of IOAS 1.
        call(
            Verb::IoasMapMsi,
            Iommufd(0),
            [0, 0, 1 | (2 << 32), 0x1000_0000, 0, 0, 0, 0],
        ),
        call(Verb::IoasUnmap, Iommufd(0), [0, 1, 0, u64::MAX, 0, 0, 0, 0]),
        call(Verb::Destroy, Iommufd(0), [0, 1, 0, 0, 0, 0, 0, 0]),
    ];
    let hostile: Vec<Call> = setup
        .iter()
        .map(|c| Call {
            fix_size: false,
            w: [
                u64::from(u32::MAX),
                u64::MAX,
                0,
                u64::MAX,
                1 << 63,
                3,
                u64::MAX,
                7,
            ],
            bytes: vec![0xff; 64],
            ranges: vec![(5, 1), (0, u64::MAX)],
            ..c.clone()
        })
        .collect();
    let mut mixed = setup.clone();
    mixed.extend(hostile.iter().cloned());
    vec![
        (
            "setup-dt",
            Input {
                nested: false,
                proposed: false,
                calls: setup.clone(),
            },
        ),
        (
            "setup-canwbs-proposed",
            Input {
                nested: true,
                proposed: true,
                calls: setup,
            },
        ),
        (
            "setup-then-hostile",
            Input {
                nested: true,
                proposed: false,
                calls: mixed,
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_past_a_region_end_are_errnos() {
        // Regression (fuzz/regressions/kernel_verbs/device-read-past-config-end): Sim
        // sliced past the end of config space and panicked.
        let c = |verb| call(verb, Fd::Device(0), [0; 8]);
        let mut calls = vec![
            call(Verb::OpenIommufd, Fd::Raw(0), [0; 8]),
            call(Verb::OpenDevice(1), Fd::Raw(0), [0; 8]),
            c(Verb::DeviceBind {
                iommufd: Fd::Iommufd(0),
            }),
        ];
        for offset in [(7 << 40) + 0x8_0000, (7 << 40) + 4096, 1 << 39] {
            calls.push(c(Verb::DeviceRead { offset, len: 4 }));
            calls.push(Call {
                bytes: vec![1, 2, 3, 4],
                ..c(Verb::DeviceWrite { offset })
            });
        }
        let st = run(&Input {
            nested: false,
            proposed: false,
            calls,
        });
        assert_eq!(st.errnos, 6, "{st:?}");
    }

    #[test]
    fn seeds_run_clean_and_the_setup_mostly_succeeds() {
        for (name, s) in seeds() {
            let st = run(&s);
            assert!(st.calls > 0, "{name}");
            if name == "setup-canwbs-proposed" {
                assert!(st.errnos < st.calls / 2, "{name}: {st:?}");
            }
            if name == "setup-then-hostile" {
                assert!(st.oversized > 0, "{st:?}");
            }
        }
    }
}
