//! Hardware page tables: paging (stage 1 or a nest-parent stage 2) and nested stage 1.

use std::sync::Arc;

use vmsi_sys::iommufd as i;
use vmsi_sys::names as n;

use super::iommufd::{Ctx, Object, destroy_last};
use super::{Device, Ioas, Ste, Viommu};
use crate::error::{Error, Feature, Op, Result};
use crate::ids::HwptId;

/// A hardware page table. Cloning gives another handle to the same HWPT.
#[derive(Clone, Debug)]
pub struct Hwpt {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    obj: Object,
    kind: Kind,
}

/// What the HWPT is built on; held so it outlives the HWPT.
#[derive(Debug)]
enum Kind {
    Paging { _ioas: Ioas, nest_parent: bool },
    Nested { _viommu: Viommu, ste: Ste },
}

impl Hwpt {
    /// A paging HWPT over `ioas` for `device`'s IOMMU. With `nest_parent` it is a stage 2
    /// that nested stage 1s can sit on; a kernel or SMMU that cannot nest answers
    /// [`Error::Unsupported`] with [`Feature::NestParent`].
    pub fn alloc_paging(ioas: &Ioas, device: &Device, nest_parent: bool) -> Result<Hwpt> {
        let dev_id = device.require_id()?;
        let mut arg = i::iommu_hwpt_alloc {
            size: size_of::<i::iommu_hwpt_alloc>() as u32,
            flags: if nest_parent {
                n::IOMMU_HWPT_ALLOC_NEST_PARENT
            } else {
                0
            },
            dev_id: dev_id.0,
            pt_id: ioas.id().0,
            data_type: n::IOMMU_HWPT_DATA_NONE,
            ..Default::default()
        };
        let c = ioas.ctx();
        c.kernel.hwpt_alloc(c.fd, &mut arg, &[]).map_err(|errno| {
            if nest_parent {
                Error::kernel_or_unsupported(Op::HwptAlloc, errno, Feature::NestParent)
            } else {
                Error::Kernel {
                    op: Op::HwptAlloc,
                    errno,
                }
            }
        })?;
        Ok(Hwpt {
            inner: Arc::new(Inner {
                obj: Object::new(c.clone(), arg.out_hwpt_id),
                kind: Kind::Paging {
                    _ioas: ioas.clone(),
                    nest_parent,
                },
            }),
        })
    }

    /// A nested stage 1 under `viommu` described by the guest's STE words for `device`.
    /// A `Ste::s1` entry can be attached only once `device` has a vDEVICE on `viommu`.
    pub fn alloc_nested(viommu: &Viommu, device: &Device, ste: Ste) -> Result<Hwpt> {
        let dev_id = device.require_id()?;
        let data = ste.to_bytes();
        let mut arg = i::iommu_hwpt_alloc {
            size: size_of::<i::iommu_hwpt_alloc>() as u32,
            dev_id: dev_id.0,
            pt_id: viommu.id().0,
            data_type: n::IOMMU_HWPT_DATA_ARM_SMMUV3,
            data_len: data.len() as u32,
            ..Default::default()
        };
        let c = viommu.ctx();
        c.kernel
            .hwpt_alloc(c.fd, &mut arg, &data)
            .map_err(|errno| {
                Error::kernel_or_unsupported(Op::HwptAlloc, errno, Feature::NestedHwpt)
            })?;
        Ok(Hwpt {
            inner: Arc::new(Inner {
                obj: Object::new(c.clone(), arg.out_hwpt_id),
                kind: Kind::Nested {
                    _viommu: viommu.clone(),
                    ste,
                },
            }),
        })
    }

    /// The kernel's id.
    pub fn id(&self) -> HwptId {
        HwptId(self.inner.obj.id)
    }

    pub(crate) fn ctx(&self) -> &Arc<Ctx> {
        &self.inner.obj.ctx
    }

    /// Whether this is a nest-parent stage 2.
    pub fn is_nest_parent(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::Paging {
                nest_parent: true,
                ..
            }
        )
    }

    /// The guest STE of a nested HWPT.
    pub fn ste(&self) -> Option<Ste> {
        match self.inner.kind {
            Kind::Nested { ste, .. } => Some(ste),
            Kind::Paging { .. } => None,
        }
    }

    /// Destroys the HWPT now; [`Error::InUse`] while devices, vIOMMUs or other handles hold it.
    pub fn destroy(self) -> Result<()> {
        destroy_last(self.inner, "HWPT", |i| &i.obj)
    }
}
