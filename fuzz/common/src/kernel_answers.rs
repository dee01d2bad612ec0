//! Target `kernel_answers`: what comes back from the kernel, made hostile.
//!
//! [`Hostile`] is a [`Kernel`] that runs everything on a [`Sim`] but answers some calls from
//! the fuzz input instead: `IOMMU_GET_HW_INFO` (data type, capabilities, PASID bits, the
//! SMMUv3 register bytes), `IOMMU_IOAS_IOVA_RANGES` (errno, counts, ranges, alignment, as a
//! script of successive answers), `read(2)` on a vEVENTQ (records of any length and content),
//! `VFIO_DEVICE_GET_IRQ_INFO`, PCI config space reads, and `SET_IRQS`'s return value. The
//! typed layer then decodes them: `Device::hw_info` (`HwInfo::decode`), `Ioas::iova_ranges`,
//! `iova_holes`, `Veventq::read`, `MsiDevice::bring_up` (table size, MSI-X capability).
//!
//! Invariants: no panic or abort; every failure is a typed error naming the operation, with
//! the errno the kernel answered; every decoded value is what the bytes say; and after
//! dropping everything, Sim shows no open file, object, mapping or trigger.

use std::collections::VecDeque;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use vmsi::msi::{Composer, Domain, DoorbellMap, HostAddressing, HostMessage, IrqIndex, MsiDevice};
use vmsi::seam::{IrqData, IrqSetHeader, Kernel, KernelFd, Sim, SimConfig};
use vmsi::{Device, DmaMemory, Errno, Error, Hwpt, Iommufd, IovaRange, MmioRegion, Op, Viommu};
use vmsi_sys::iommufd as i;
use vmsi_sys::vfio as v;

use errno_from as errno;

/// An errno from the input: 1..=133 (Linux's range), so every value is a real errno.
pub fn errno_from(raw: i32) -> Errno {
    Errno::from_raw(raw.rem_euclid(133) + 1)
}

/// `IOMMU_GET_HW_INFO`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HwInfoAnswer {
    /// Fail with this errno instead.
    pub errno: Option<i32>,
    /// `out_data_type`.
    pub data_type: u32,
    /// `out_capabilities`.
    pub capabilities: u64,
    /// `out_max_pasid_log2`.
    pub max_pasid_log2: u8,
    /// Driver data (as much as fits is copied out).
    pub data: Vec<u8>,
}

/// One `IOMMU_IOAS_IOVA_RANGES` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangesAnswer {
    /// Fail with this errno (e.g. `EMSGSIZE`, 90) after filling in what fits.
    pub errno: Option<i32>,
    /// The count the kernel claims.
    pub num_iovas: u32,
    /// The ranges written (as many as fit).
    pub ranges: Vec<(u64, u64)>,
    /// `out_iova_alignment`.
    pub alignment: u64,
}

/// One `read(2)` answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadAnswer {
    /// Fail with this errno.
    pub errno: Option<i32>,
    /// The bytes (as many as fit in the caller's buffer are copied).
    pub bytes: Vec<u8>,
}

/// The whole input: the answers, and which paths to drive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// Sim with CANWBS (vIOMMU and vEVENTQ possible).
    pub nested: bool,
    /// `hw_info`'s answer (`None`: Sim's own).
    pub hw_info: Option<HwInfoAnswer>,
    /// Successive `iova_ranges` answers (then Sim's own).
    pub ranges: Vec<RangesAnswer>,
    /// Length of the slice `iova_ranges_into` fills (at most 64 are used).
    pub into_len: u8,
    /// Successive vEVENTQ reads (at most 16 are made).
    pub events: Vec<ReadAnswer>,
    /// `GET_IRQ_INFO`'s answer as (flags, count).
    pub irq_info: Option<(u32, u32)>,
    /// Config space bytes (read with `pread` at region 7).
    pub config: Option<Vec<u8>>,
    /// `SET_IRQS`'s answer: `Ok(n)` as the ioctl's value, `Err(errno)`.
    pub set_irqs: Option<Result<u32, i32>>,
    /// Bring up MSI-X (the nvme) rather than MSI (edu).
    pub msix: bool,
}

#[derive(Debug, Default)]
struct Script {
    hw_info: Option<HwInfoAnswer>,
    ranges: VecDeque<RangesAnswer>,
    events: VecDeque<ReadAnswer>,
    irq_info: Option<(u32, u32)>,
    config: Option<Vec<u8>>,
    set_irqs: Option<Result<u32, i32>>,
}

/// A kernel that runs on `Sim` and lies where its script says.
#[derive(Debug)]
pub struct Hostile {
    sim: Arc<Sim>,
    script: Mutex<Script>,
}

impl Hostile {
    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|p| p.into_inner())
    }
}

const CONFIG_REGION: u64 = (v::VFIO_PCI_CONFIG_REGION_INDEX as u64) << 40;

impl Kernel for Hostile {
    fn name(&self) -> &'static str {
        "hostile"
    }
    fn open_iommufd(&self) -> Result<KernelFd, Errno> {
        self.sim.open_iommufd()
    }
    fn open_device(&self, path: &Path) -> Result<KernelFd, Errno> {
        self.sim.open_device(path)
    }
    fn adopt(&self, fd: OwnedFd) -> Result<KernelFd, Errno> {
        self.sim.adopt(fd)
    }
    fn close(&self, fd: KernelFd) {
        self.sim.close(fd)
    }
    fn read(&self, fd: KernelFd, buf: &mut [u8]) -> Result<usize, Errno> {
        let Some(a) = self.script().events.pop_front() else {
            return self.sim.read(fd, buf);
        };
        if let Some(e) = a.errno {
            return Err(errno(e));
        }
        let n = a.bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&a.bytes[..n]);
        Ok(n)
    }
    fn destroy(&self, fd: KernelFd, arg: &mut i::iommu_destroy) -> Result<(), Errno> {
        self.sim.destroy(fd, arg)
    }
    fn ioas_alloc(&self, fd: KernelFd, arg: &mut i::iommu_ioas_alloc) -> Result<(), Errno> {
        self.sim.ioas_alloc(fd, arg)
    }
    fn ioas_map_memory(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_ioas_map,
        mem: &DmaMemory,
        offset: usize,
    ) -> Result<(), Errno> {
        self.sim.ioas_map_memory(fd, arg, mem, offset)
    }
    // The trait's signature is `unsafe fn`; this body does nothing unsafe (it refuses), so
    // the fuzz crates stay free of unsafe operations.
    #[allow(unsafe_code)]
    unsafe fn ioas_map_user(&self, _: KernelFd, _: &mut i::iommu_ioas_map) -> Result<(), Errno> {
        Err(Errno::ENOSYS)
    }
    fn ioas_map_file(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_ioas_map_file,
        file: BorrowedFd<'_>,
    ) -> Result<(), Errno> {
        self.sim.ioas_map_file(fd, arg, file)
    }
    fn ioas_unmap(&self, fd: KernelFd, arg: &mut i::iommu_ioas_unmap) -> Result<(), Errno> {
        self.sim.ioas_unmap(fd, arg)
    }
    fn ioas_copy(&self, fd: KernelFd, arg: &mut i::iommu_ioas_copy) -> Result<(), Errno> {
        self.sim.ioas_copy(fd, arg)
    }
    fn ioas_iova_ranges(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_ioas_iova_ranges,
        out: &mut [i::iommu_iova_range],
    ) -> Result<(), Errno> {
        let Some(a) = self.script().ranges.pop_front() else {
            return self.sim.ioas_iova_ranges(fd, arg, out);
        };
        let room = out.len().min(arg.num_iovas as usize);
        for (o, &(start, last)) in out.iter_mut().zip(a.ranges.iter().take(room)) {
            *o = i::iommu_iova_range { start, last };
        }
        arg.num_iovas = a.num_iovas;
        arg.out_iova_alignment = a.alignment;
        a.errno.map_or(Ok(()), |e| Err(errno(e)))
    }
    fn ioas_allow_iovas(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_ioas_allow_iovas,
        ranges: &[i::iommu_iova_range],
    ) -> Result<(), Errno> {
        self.sim.ioas_allow_iovas(fd, arg, ranges)
    }
    fn option(&self, fd: KernelFd, arg: &mut i::iommu_option) -> Result<(), Errno> {
        self.sim.option(fd, arg)
    }
    fn hwpt_alloc(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_hwpt_alloc,
        data: &[u8],
    ) -> Result<(), Errno> {
        self.sim.hwpt_alloc(fd, arg, data)
    }
    fn get_hw_info(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_hw_info,
        data: &mut [u8],
    ) -> Result<(), Errno> {
        let Some(a) = self.script().hw_info.take() else {
            return self.sim.get_hw_info(fd, arg, data);
        };
        if let Some(e) = a.errno {
            return Err(errno(e));
        }
        let n = a.data.len().min(data.len());
        data[..n].copy_from_slice(&a.data[..n]);
        arg.data_len = a.data.len() as u32;
        arg.__bindgen_anon_1.out_data_type = a.data_type;
        arg.out_capabilities = a.capabilities;
        arg.out_max_pasid_log2 = a.max_pasid_log2;
        Ok(())
    }
    fn hwpt_invalidate(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_hwpt_invalidate,
        entries: &[u8],
    ) -> Result<(), Errno> {
        self.sim.hwpt_invalidate(fd, arg, entries)
    }
    fn viommu_alloc(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_viommu_alloc,
        data: &[u8],
    ) -> Result<(), Errno> {
        self.sim.viommu_alloc(fd, arg, data)
    }
    fn vdevice_alloc(&self, fd: KernelFd, arg: &mut i::iommu_vdevice_alloc) -> Result<(), Errno> {
        self.sim.vdevice_alloc(fd, arg)
    }
    fn veventq_alloc(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_veventq_alloc,
    ) -> Result<KernelFd, Errno> {
        self.sim.veventq_alloc(fd, arg)
    }
    fn device_bind(
        &self,
        device: KernelFd,
        iommufd: KernelFd,
        arg: &mut v::vfio_device_bind_iommufd,
    ) -> Result<(), Errno> {
        self.sim.device_bind(device, iommufd, arg)
    }
    fn device_attach(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_device_attach_iommufd_pt,
    ) -> Result<(), Errno> {
        self.sim.device_attach(device, arg)
    }
    fn device_detach(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_device_detach_iommufd_pt,
    ) -> Result<(), Errno> {
        self.sim.device_detach(device, arg)
    }
    fn device_get_info(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_device_info,
    ) -> Result<(), Errno> {
        self.sim.device_get_info(device, arg)
    }
    fn device_get_region_info(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_region_info,
    ) -> Result<(), Errno> {
        self.sim.device_get_region_info(device, arg)
    }
    fn device_get_irq_info(
        &self,
        device: KernelFd,
        arg: &mut v::vfio_irq_info,
    ) -> Result<(), Errno> {
        let answer = self.script().irq_info.take();
        let r = self.sim.device_get_irq_info(device, arg);
        if let Some((flags, count)) = answer {
            arg.flags = flags;
            arg.count = count;
        }
        r
    }
    fn device_set_irqs(
        &self,
        device: KernelFd,
        header: &IrqSetHeader,
        data: IrqData<'_>,
    ) -> Result<u32, Errno> {
        match self.script().set_irqs.take() {
            Some(Ok(n)) => Ok(n),
            Some(Err(e)) => Err(errno(e)),
            None => self.sim.device_set_irqs(device, header, data),
        }
    }
    fn device_reset(&self, device: KernelFd) -> Result<(), Errno> {
        self.sim.device_reset(device)
    }
    fn device_read(&self, device: KernelFd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
        let config = match offset.checked_sub(CONFIG_REGION) {
            Some(o) if o < 1 << 40 => self.script().config.clone().map(|c| (c, o as usize)),
            _ => None,
        };
        let Some((c, o)) = config else {
            return self.sim.device_read(device, buf, offset);
        };
        let src = c.get(o..).unwrap_or(&[]);
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }
    fn device_write(&self, device: KernelFd, buf: &[u8], offset: u64) -> Result<usize, Errno> {
        self.sim.device_write(device, buf, offset)
    }
    fn device_mmap(&self, device: KernelFd, offset: u64, len: usize) -> Result<MmioRegion, Errno> {
        self.sim.device_mmap(device, offset, len)
    }
}

/// Asserts `r` failed as the kernel answered: a kernel error naming `op` with `errno`.
fn failed_as<T: std::fmt::Debug>(r: &Result<T, Error>, op: Op, errno: Errno) {
    match r {
        Err(Error::Kernel { op: o, errno: e }) if *o == op && *e == errno => {}
        other => panic!("expected {op} to fail with {errno}, got {other:?}"),
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    for (k, x) in w.iter_mut().enumerate() {
        *x = b.get(at + k).copied().unwrap_or(0);
    }
    u32::from_le_bytes(w)
}

fn check_hw_info(device: &Device, a: Option<&HwInfoAnswer>) {
    let r = device.hw_info();
    let Some(a) = a else {
        r.expect("Sim's own hw_info");
        return;
    };
    if let Some(e) = a.errno {
        failed_as(&r, Op::GetHwInfo, errno(e));
        return;
    }
    let info = r.expect("a successful answer decodes");
    assert_eq!(
        (info.data_type, info.capabilities, info.max_pasid_log2),
        (a.data_type, a.capabilities, a.max_pasid_log2)
    );
    let _ = info.ats();
    let smmu = vmsi_sys::names::IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
    assert_eq!(info.smmuv3.is_some(), a.data_type == smmu);
    if let Some(s) = info.smmuv3 {
        // Only the first 40 bytes fit; the rest of the buffer stays zero.
        let data = &a.data[..a.data.len().min(40)];
        for k in 0..6 {
            assert_eq!(s.idr[k], le32(data, 8 + 4 * k), "IDR{k}");
        }
        assert_eq!((s.iidr, s.aidr), (le32(data, 32), le32(data, 36)));
        crate::firmware::fuzz(&crate::firmware::input(
            crate::firmware::Parser::Smmuv3,
            &data[8.min(data.len())..],
        ));
    }
}

fn check_ranges(ioas: &vmsi::Ioas, answers: &[RangesAnswer], into_len: usize) {
    let answered: Vec<Errno> = answers.iter().filter_map(|a| a.errno.map(errno)).collect();
    let failed = |e: &Error| {
        crate::typed(e);
        assert!(
            matches!(e, Error::Kernel { op: Op::IoasIovaRanges, errno } if answered.contains(errno)),
            "iova_ranges failed with something nobody answered: {e:?}"
        );
    };
    match ioas.iova_ranges() {
        // Whatever the answers said, holes are computed or refused, never a panic.
        Ok((ranges, _align)) => match vmsi::msi::firmware::iova_holes(&ranges) {
            Ok(_) => crate::firmware::holes(&ranges),
            Err(e) => crate::typed(&e),
        },
        Err(e) => failed(&e),
    }
    let mut out = vec![IovaRange::default(); into_len.min(64)];
    if let Err(e) = ioas.iova_ranges_into(&mut out) {
        failed(&e);
    }
}

fn check_events(q: &vmsi::Veventq, events: &[ReadAnswer]) {
    const HDR: usize = 8;
    const REC: usize = HDR + 32;
    for a in events.iter().take(16) {
        let r = q.read();
        if let Some(e) = a.errno {
            failed_as(&r, Op::Read, errno(e));
            continue;
        }
        let got = r.expect("a successful read decodes");
        let b = &a.bytes[..a.bytes.len().min(REC)];
        if b.is_empty() {
            assert_eq!(got, None, "an empty read is an empty queue");
            continue;
        }
        let ev = got.expect("a non-empty read is a record");
        let ne32 = |k: usize| {
            let mut w = [0u8; 4];
            for (j, x) in w.iter_mut().enumerate() {
                *x = b.get(k + j).copied().unwrap_or(0);
            }
            u32::from_ne_bytes(w)
        };
        let lost = vmsi_sys::names::IOMMU_VEVENTQ_FLAG_LOST_EVENTS;
        assert_eq!(ev.lost_before, ne32(0) & lost != 0);
        assert_eq!(ev.sequence, ne32(4));
        for (k, e) in ev.evt.iter().enumerate() {
            let want = if b.len() >= REC {
                u64::from_le_bytes(b[HDR + 8 * k..HDR + 8 * k + 8].try_into().unwrap())
            } else {
                // A short record carries no event words.
                0
            };
            assert_eq!(*e, want, "event word {k}");
        }
    }
}

fn check_bring_up(device: &Device, input: &Input) {
    let index = if input.msix {
        IrqIndex::Msix
    } else {
        IrqIndex::Msi
    };
    let composer = Composer {
        domain: Domain::Paging,
        host: HostAddressing::Window {
            address: 0x800_0040,
        },
        doorbells: DoorbellMap::paging(&[0x0809_0040]).expect("one doorbell"),
        devid: 0,
    };
    match MsiDevice::bring_up(device.clone(), index, composer) {
        Ok(m) => {
            if let Some((_, count)) = input.irq_info {
                assert_eq!(m.table().len(), count, "the table is sized by GET_IRQ_INFO");
            }
            assert!(m.eventfd(m.table().len()).is_err());
            let mut out = [(0u64, 0u32); 4];
            match m.read_host_messages(&mut out) {
                Ok(n) => assert!(n <= out.len()),
                Err(e) => crate::typed(&e),
            }
            if let Err(e) = m.validate_host_address(HostMessage {
                address: 0x800_0040,
            }) {
                crate::typed(&e);
            }
        }
        Err(e) => {
            crate::typed(&e);
            let ok = match &e {
                Error::Kernel { op, .. } => matches!(
                    op,
                    Op::DeviceGetIrqInfo | Op::DeviceRegionRead | Op::DeviceSetIrqs
                ),
                Error::InvalidArgument(_) => true,
                _ => false,
            };
            assert!(ok, "bring_up failed untyped: {e:?}");
        }
    }
}

/// Runs one input, panicking on a broken invariant.
pub fn run(input: &Input) {
    let sim = Sim::new(if input.nested {
        SimConfig::nested()
    } else {
        SimConfig::default()
    });
    let hostile = Arc::new(Hostile {
        sim: sim.clone(),
        script: Mutex::new(Script {
            hw_info: input.hw_info.clone(),
            ranges: input.ranges.iter().take(8).cloned().collect(),
            events: input.events.iter().take(16).cloned().collect(),
            irq_info: input.irq_info,
            config: input.config.clone(),
            set_irqs: input.set_irqs,
        }),
    });
    let kernel: Arc<dyn Kernel> = hostile.clone();
    {
        let fd = Iommufd::open(kernel.clone()).expect("Sim opens /dev/iommu");
        let ioas = fd.alloc_ioas().expect("IOAS");
        let path = if input.msix {
            "/dev/vfio/devices/vfio1"
        } else {
            "/dev/vfio/devices/vfio0"
        };
        let device = Device::open(kernel.clone(), path).expect("open");
        device.bind(&fd).expect("bind");
        device.attach_ioas(&ioas).expect("attach");
        check_hw_info(&device, input.hw_info.as_ref());
        let ranges: Vec<_> = input.ranges.iter().take(8).cloned().collect();
        check_ranges(&ioas, &ranges, usize::from(input.into_len));
        // The rest of the range script must not leak into the next calls.
        hostile.script().ranges.clear();
        if input.nested {
            let parent = Hwpt::alloc_paging(&ioas, &device, true).expect("nest parent");
            device.attach_hwpt(&parent).expect("attach nest parent");
            let viommu = Viommu::alloc(&parent, &device).expect("vIOMMU with CANWBS");
            let q = viommu.alloc_veventq(16).expect("vEVENTQ");
            let events: Vec<_> = input.events.iter().take(16).cloned().collect();
            check_events(&q, &events);
        }
        check_bring_up(&device, input);
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
        "leaked after dropping everything: {st:?}"
    );
}

/// Decodes and runs one input.
pub fn fuzz(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(&input);
    }
}

/// Seeds: the rig's real answers (QEMU's SMMUv3 registers, the ranges after attach), and
/// the kinds of lies worth starting from.
pub fn seeds() -> Vec<(&'static str, Input)> {
    let smmu_data = {
        let regs: [u32; 10] = [0, 0, 0x0d44_101b, 0x0273_0010, 0, 0x1414, 0, 0x74, 0, 1];
        regs.iter()
            .flat_map(|r| r.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    let base = Input {
        nested: false,
        hw_info: None,
        ranges: Vec::new(),
        into_len: 4,
        events: Vec::new(),
        irq_info: None,
        config: None,
        set_irqs: None,
        msix: true,
    };
    let mut record = vec![0u8; 40];
    record[0] = 1; // lost events before this one
    record[4] = 7; // sequence
    record[8] = 0x10; // event id
    vec![
        ("sim-answers-msix", base.clone()),
        (
            "sim-answers-msi",
            Input {
                msix: false,
                ..base.clone()
            },
        ),
        (
            "hw-info-rig-smmu",
            Input {
                hw_info: Some(HwInfoAnswer {
                    errno: None,
                    data_type: 2,
                    capabilities: 8,
                    max_pasid_log2: 0,
                    data: smmu_data,
                }),
                ..base.clone()
            },
        ),
        (
            "ranges-emsgsize-then-more",
            Input {
                ranges: vec![
                    RangesAnswer {
                        errno: Some(89), // EMSGSIZE - 1: the input adds one
                        num_iovas: 12,
                        ranges: vec![(0, 0x7ff_ffff)],
                        alignment: 4096,
                    },
                    RangesAnswer {
                        errno: None,
                        num_iovas: 2,
                        ranges: vec![(0x810_0000, (1 << 48) - 1), (0, 0x7ff_ffff)],
                        alignment: 4096,
                    },
                ],
                ..base.clone()
            },
        ),
        (
            "vevent-records",
            Input {
                nested: true,
                events: vec![
                    ReadAnswer {
                        errno: None,
                        bytes: record.clone(),
                    },
                    ReadAnswer {
                        errno: None,
                        bytes: record[..6].to_vec(),
                    },
                    ReadAnswer {
                        errno: Some(10), // EAGAIN - 1
                        bytes: Vec::new(),
                    },
                    ReadAnswer {
                        errno: None,
                        bytes: Vec::new(),
                    },
                ],
                ..base.clone()
            },
        ),
        (
            "irq-info-and-config-lies",
            Input {
                irq_info: Some((0, 2049)),
                config: Some(vec![0xff; 256]),
                set_irqs: Some(Ok(3)),
                ..base.clone()
            },
        ),
        (
            "set-irqs-fails",
            Input {
                set_irqs: Some(Err(27)),
                ..base
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_run_clean() {
        for (_, s) in seeds() {
            run(&s);
        }
    }

    #[test]
    fn a_huge_claimed_range_count_is_refused_not_allocated() {
        // Regression (fuzz/regressions/kernel_answers/iova-ranges-huge-count): EMSGSIZE
        // claiming 2^32 - 1 ranges made Ioas::iova_ranges ask for a 64 GiB buffer.
        let base = seeds().remove(0).1;
        run(&Input {
            ranges: vec![RangesAnswer {
                errno: Some(89),
                num_iovas: u32::MAX,
                ranges: Vec::new(),
                alignment: 0,
            }],
            ..base
        });
    }

    #[test]
    fn errnos_from_the_input_are_real() {
        assert_eq!(errno(0), Errno::EPERM);
        assert_eq!(errno(89), Errno::EMSGSIZE);
        assert_eq!(errno(-1), Errno::from_raw(133));
    }
}
