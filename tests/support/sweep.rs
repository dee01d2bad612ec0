//! What the fault-injection sweeps share (`tests/faults.rs` on Sim, `tests/fail_nth.rs` on
//! the real kernel): the setup's steps, the kernel calls each may fail in, and what the
//! setup built so far.

#![allow(dead_code)] // each sweep uses its own drop order

use std::path::Path;
use std::sync::Arc;

use vmsi::msi::{Composer, Domain, DoorbellMap, HostAddressing, MsiDevice};
use vmsi::seam::Kernel;
use vmsi::{Device, Error, Hwpt, Ioas, Iommufd, Op, Ste, Vdevice, Viommu};

/// One step of the setup and the kernel calls it may fail in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    OpenIommufd,
    AllocIoas,
    OpenDevice,
    Bind,
    AttachIoas,
    NestParent,
    AttachNestParent,
    Viommu,
    Vdevice,
    NestedHwpt,
    AttachNested,
    EnableIrqs,
    DisableIrqs,
    BringUp,
}

impl Step {
    /// The calls a failure in this step may name.
    pub fn ops(self) -> &'static [Op] {
        match self {
            Step::OpenIommufd => &[Op::OpenIommufd],
            Step::AllocIoas => &[Op::IoasAlloc],
            Step::OpenDevice => &[Op::OpenDevice],
            Step::Bind => &[Op::DeviceBind],
            Step::AttachIoas | Step::AttachNestParent | Step::AttachNested => &[Op::DeviceAttach],
            Step::NestParent | Step::NestedHwpt => &[Op::HwptAlloc],
            Step::Viommu => &[Op::ViommuAlloc],
            Step::Vdevice => &[Op::VdeviceAlloc],
            Step::EnableIrqs | Step::DisableIrqs => &[Op::DeviceSetIrqs],
            // GET_IRQ_INFO, the MSI-X capability read, the eventfds, SET_IRQS.
            Step::BringUp => &[
                Op::DeviceGetIrqInfo,
                Op::DeviceRegionRead,
                Op::DeviceSetIrqs,
            ],
        }
    }
}

/// Everything the setup built, dropped in a chosen order.
#[derive(Default)]
pub struct Built {
    pub iommufd: Option<Iommufd>,
    pub ioas: Option<Ioas>,
    pub device: Option<Device>,
    pub parent: Option<Hwpt>,
    pub viommu: Option<Viommu>,
    pub vdevice: Option<Vdevice>,
    pub nested: Option<Hwpt>,
    pub msi: Option<MsiDevice>,
}

impl Built {
    /// Drops everything, leaves first.
    pub fn drop_all(mut self) {
        drop((self.msi.take(), self.nested.take(), self.vdevice.take()));
        drop((self.viommu.take(), self.parent.take(), self.device.take()));
        drop((self.ioas.take(), self.iommufd.take()));
    }

    /// Drops everything, the iommufd and device first or last.
    pub fn drop_in(mut self, handles_first: bool) {
        if handles_first {
            drop((self.iommufd.take(), self.device.take(), self.ioas.take()));
        }
        drop((self.msi.take(), self.nested.take(), self.vdevice.take()));
        drop((self.viommu.take(), self.parent.take()));
    }
}

/// A paging composer for the rig's ITS; the sweeps need one, not a particular one.
pub fn composer() -> Composer {
    Composer {
        domain: Domain::Paging,
        host: HostAddressing::Window {
            address: 0x800_0040,
        },
        doorbells: DoorbellMap::paging(&[0x0809_0040]).expect("one doorbell"),
        devid: 0,
    }
}

pub fn at(step: Step) -> impl FnOnce(Error) -> (Step, Error) {
    move |e| (step, e)
}

/// The object part of the setup: iommufd, IOAS, device bound and attached (and the nested
/// objects, attached to the nested HWPT).
pub fn objects(
    kernel: &Arc<dyn Kernel>,
    path: &Path,
    nested: bool,
    b: &mut Built,
) -> Result<(), (Step, Error)> {
    let fd = b
        .iommufd
        .insert(Iommufd::open(kernel.clone()).map_err(at(Step::OpenIommufd))?);
    let ioas = b.ioas.insert(fd.alloc_ioas().map_err(at(Step::AllocIoas))?);
    let dev = b
        .device
        .insert(Device::open(kernel.clone(), path).map_err(at(Step::OpenDevice))?);
    dev.bind(fd).map_err(at(Step::Bind))?;
    dev.attach_ioas(ioas).map_err(at(Step::AttachIoas))?;
    if nested {
        let parent = Hwpt::alloc_paging(ioas, dev, true).map_err(at(Step::NestParent))?;
        let parent = b.parent.insert(parent);
        dev.attach_hwpt(parent)
            .map_err(at(Step::AttachNestParent))?;
        let viommu = b
            .viommu
            .insert(Viommu::alloc(parent, dev).map_err(at(Step::Viommu))?);
        b.vdevice = Some(viommu.alloc_vdevice(dev, 0x10).map_err(at(Step::Vdevice))?);
        let s1 = Hwpt::alloc_nested(viommu, dev, Ste::bypass()).map_err(at(Step::NestedHwpt))?;
        dev.attach_hwpt(b.nested.insert(s1))
            .map_err(at(Step::AttachNested))?;
    }
    Ok(())
}
