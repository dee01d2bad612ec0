//! Virtual IOMMUs, the devices inside them, and their event queues.

use std::sync::Arc;

use vmsi_sys::iommufd as i;
use vmsi_sys::names as n;

use super::iommufd::{Ctx, Object, destroy_last};
use super::{Device, Hwpt};
use crate::error::{Error, Feature, Op, Result};
use crate::ids::{VdeviceId, VeventqId, ViommuId};
use crate::seam::KernelFd;

/// A virtual SMMUv3 on a nest-parent stage 2: the guest's view of the host SMMU, through
/// which its invalidations go and its nested stage 1s are made.
#[derive(Clone, Debug)]
pub struct Viommu {
    inner: Arc<ViommuInner>,
}

#[derive(Debug)]
struct ViommuInner {
    obj: Object,
    _parent: Hwpt,
}

impl Viommu {
    /// `IOMMU_VIOMMU_ALLOC` of an ARM SMMUv3 vIOMMU on `parent` (a nest parent) for the
    /// SMMU `device` sits behind. Hosts whose SMMU cannot nest, or that have neither CANWBS
    /// nor S2FWB, answer [`Error::Unsupported`] with [`Feature::Viommu`].
    pub fn alloc(parent: &Hwpt, device: &Device) -> Result<Viommu> {
        let dev_id = device.require_id()?;
        let mut arg = i::iommu_viommu_alloc {
            size: size_of::<i::iommu_viommu_alloc>() as u32,
            type_: n::IOMMU_VIOMMU_TYPE_ARM_SMMUV3,
            dev_id: dev_id.0,
            hwpt_id: parent.id().0,
            ..Default::default()
        };
        let c = parent.ctx();
        c.kernel
            .viommu_alloc(c.fd, &mut arg, &[])
            .map_err(|errno| {
                Error::kernel_or_unsupported(Op::ViommuAlloc, errno, Feature::Viommu)
            })?;
        Ok(Viommu {
            inner: Arc::new(ViommuInner {
                obj: Object::new(c.clone(), arg.out_viommu_id),
                _parent: parent.clone(),
            }),
        })
    }

    /// The kernel's id.
    pub fn id(&self) -> ViommuId {
        ViommuId(self.inner.obj.id)
    }

    pub(crate) fn ctx(&self) -> &Arc<Ctx> {
        &self.inner.obj.ctx
    }

    /// Passes guest SMMUv3 commands (two little-endian words each) to the host SMMU;
    /// returns how many the kernel handled. When it stops part way the error is
    /// [`Error::Invalidate`] with the count that took effect.
    pub fn invalidate(&self, commands: &[[u64; 2]]) -> Result<u32> {
        let mut bytes = Vec::with_capacity(commands.len() * 16);
        for c in commands {
            bytes.extend_from_slice(&c[0].to_le_bytes());
            bytes.extend_from_slice(&c[1].to_le_bytes());
        }
        let mut arg = i::iommu_hwpt_invalidate {
            size: size_of::<i::iommu_hwpt_invalidate>() as u32,
            hwpt_id: self.inner.obj.id,
            data_type: n::IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3,
            entry_len: 16,
            entry_num: commands.len() as u32,
            ..Default::default()
        };
        let c = self.ctx();
        match c.kernel.hwpt_invalidate(c.fd, &mut arg, &bytes) {
            Ok(()) => Ok(arg.entry_num),
            Err(errno) => Err(Error::Invalidate {
                handled: arg.entry_num,
                requested: commands.len() as u32,
                errno,
            }),
        }
    }

    /// `IOMMU_VDEVICE_ALLOC`: `device` appears in this vIOMMU with virtual stream id `vsid`.
    pub fn alloc_vdevice(&self, device: &Device, vsid: u64) -> Result<Vdevice> {
        let dev_id = device.require_id()?;
        let mut arg = i::iommu_vdevice_alloc {
            size: size_of::<i::iommu_vdevice_alloc>() as u32,
            viommu_id: self.inner.obj.id,
            dev_id: dev_id.0,
            virt_id: vsid,
            ..Default::default()
        };
        let c = self.ctx();
        c.kernel
            .vdevice_alloc(c.fd, &mut arg)
            .map_err(Ctx::err(Op::VdeviceAlloc))?;
        Ok(Vdevice {
            obj: Object::new(c.clone(), arg.out_vdevice_id),
            vsid,
            _viommu: self.clone(),
            _device: device.clone(),
        })
    }

    /// `IOMMU_VEVENTQ_ALLOC` of an SMMUv3 event queue holding up to `depth` events.
    pub fn alloc_veventq(&self, depth: u32) -> Result<Veventq> {
        let mut arg = i::iommu_veventq_alloc {
            size: size_of::<i::iommu_veventq_alloc>() as u32,
            viommu_id: self.inner.obj.id,
            type_: n::IOMMU_VEVENTQ_TYPE_ARM_SMMUV3,
            veventq_depth: depth,
            ..Default::default()
        };
        let c = self.ctx();
        let fd = c
            .kernel
            .veventq_alloc(c.fd, &mut arg)
            .map_err(Ctx::err(Op::VeventqAlloc))?;
        Ok(Veventq {
            file: QueueFile { ctx: c.clone(), fd },
            obj: Object::new(c.clone(), arg.out_veventq_id),
            _viommu: self.clone(),
        })
    }

    /// Destroys the vIOMMU now; [`Error::InUse`] while nested HWPTs, vDEVICEs, queues or
    /// other handles hold it.
    pub fn destroy(self) -> Result<()> {
        destroy_last(self.inner, "vIOMMU", |i| &i.obj)
    }
}

/// A device's identity (virtual stream id) inside a vIOMMU.
#[derive(Debug)]
pub struct Vdevice {
    obj: Object,
    vsid: u64,
    _viommu: Viommu,
    _device: Device,
}

impl Vdevice {
    /// The kernel's id.
    pub fn id(&self) -> VdeviceId {
        VdeviceId(self.obj.id)
    }

    /// The virtual stream id the guest uses for the device.
    pub fn vsid(&self) -> u64 {
        self.vsid
    }
}

/// One SMMUv3 event from a vEVENTQ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vevent {
    /// The queue's sequence number of this record.
    pub sequence: u32,
    /// Events were dropped before this record (the queue overflowed).
    pub lost_before: bool,
    /// The event record (StreamID field = the vSID); all zero for a lost-events marker.
    pub evt: [u64; 4],
}

/// A vIOMMU's event queue: stage-1 faults and other events for the guest.
/// Field order matters: the file closes before the object is destroyed (the kernel refuses
/// to destroy a queue whose file is open).
#[derive(Debug)]
pub struct Veventq {
    file: QueueFile,
    obj: Object,
    _viommu: Viommu,
}

#[derive(Debug)]
struct QueueFile {
    ctx: Arc<Ctx>,
    fd: KernelFd,
}

impl Drop for QueueFile {
    fn drop(&mut self) {
        self.ctx.kernel.close(self.fd);
    }
}

impl Veventq {
    /// The kernel's id.
    pub fn id(&self) -> VeventqId {
        VeventqId(self.obj.id)
    }

    /// The queue's file, to poll for readability.
    pub fn fd(&self) -> KernelFd {
        self.file.fd
    }

    /// Reads the next record into a stack buffer, without allocating; `None` when empty.
    pub fn read(&self) -> Result<Option<Vevent>> {
        const HDR: usize = size_of::<i::iommufd_vevent_header>();
        const EVT: usize = size_of::<i::iommu_vevent_arm_smmuv3>();
        // Exactly one full record fits, so each read returns at most one.
        let mut buf = [0u8; HDR + EVT];
        let n = self
            .file
            .ctx
            .kernel
            .read(self.file.fd, &mut buf)
            .map_err(Ctx::err(Op::Read))?;
        if n == 0 {
            return Ok(None);
        }
        let u32_at = |k: usize| u32::from_ne_bytes([buf[k], buf[k + 1], buf[k + 2], buf[k + 3]]);
        let flags = u32_at(0);
        let mut evt = [0u64; 4];
        if n >= HDR + EVT {
            for (k, e) in evt.iter_mut().enumerate() {
                let at = HDR + 8 * k;
                *e = u64::from_le_bytes(buf[at..at + 8].try_into().unwrap_or([0; 8]));
            }
        }
        Ok(Some(Vevent {
            sequence: u32_at(4),
            lost_before: flags & n::IOMMU_VEVENTQ_FLAG_LOST_EVENTS != 0,
            evt,
        }))
    }
}
