//! The iommufd file and the object core every iommufd object shares.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vmsi_sys::iommufd as i;
use vmsi_sys::names as n;

use super::Ioas;
use crate::error::{Errno, Error, Feature, Op, Result};
use crate::ids::IoasId;
use crate::seam::{Host, Kernel, KernelFd};

/// An open `/dev/iommu`: the context every IOAS, HWPT and vIOMMU lives in.
#[derive(Clone, Debug)]
pub struct Iommufd {
    pub(crate) ctx: Arc<Ctx>,
}

/// The shared iommufd file; closed when the last object that uses it is gone.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) kernel: Arc<dyn Kernel>,
    pub(crate) fd: KernelFd,
}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.kernel.close(self.fd);
    }
}

impl Ctx {
    pub(crate) fn err(op: Op) -> impl Fn(Errno) -> Error {
        move |errno| Error::Kernel { op, errno }
    }

    /// A raw `IOMMU_OPTION` call on this file; returns `val64`.
    pub(crate) fn option(
        &self,
        op: u32,
        option_id: u32,
        object_id: u32,
        val64: u64,
    ) -> Result<u64> {
        let mut arg = i::iommu_option {
            size: size_of::<i::iommu_option>() as u32,
            option_id,
            op: op as u16,
            __reserved: 0,
            object_id,
            val64,
        };
        self.kernel
            .option(self.fd, &mut arg)
            .map_err(Ctx::err(Op::Option))?;
        Ok(arg.val64)
    }
}

/// One iommufd object id and the file it lives in; destroyed on drop unless it already was.
#[derive(Debug)]
pub(crate) struct Object {
    pub(crate) ctx: Arc<Ctx>,
    pub(crate) id: u32,
    live: AtomicBool,
}

impl Object {
    pub(crate) fn new(ctx: Arc<Ctx>, id: u32) -> Self {
        Object {
            ctx,
            id,
            live: AtomicBool::new(true),
        }
    }

    fn destroy_now(&self) -> Result<()> {
        let mut arg = i::iommu_destroy {
            size: size_of::<i::iommu_destroy>() as u32,
            id: self.id,
        };
        self.ctx
            .kernel
            .destroy(self.ctx.fd, &mut arg)
            .map_err(Ctx::err(Op::Destroy))?;
        // The id may be reused from now on: never destroy it again.
        self.live.store(false, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for Object {
    fn drop(&mut self) {
        if self.live.load(Ordering::Relaxed) {
            // Nothing to do on failure: the object goes with the iommufd file at the latest.
            let _ = self.destroy_now();
        }
    }
}

/// Destroys the object behind the last handle, reporting the kernel's answer; with other
/// handles still alive it is [`Error::InUse`] and nothing changes.
pub(crate) fn destroy_last<T>(
    arc: Arc<T>,
    what: &'static str,
    obj: impl FnOnce(&T) -> &Object,
) -> Result<()> {
    let inner = Arc::try_unwrap(arc).map_err(|_| Error::InUse(what))?;
    obj(&inner).destroy_now()
}

impl Iommufd {
    /// Opens `/dev/iommu` on `kernel`. A kernel without iommufd gives
    /// [`Error::Unsupported`] with [`Feature::Iommufd`].
    pub fn open(kernel: Arc<dyn Kernel>) -> Result<Self> {
        let fd = kernel.open_iommufd().map_err(|errno| match errno {
            Errno::ENOENT | Errno::ENODEV | Errno::ENXIO => Error::Unsupported {
                op: Op::OpenIommufd,
                feature: Feature::Iommufd,
                errno,
            },
            _ => Error::Kernel {
                op: Op::OpenIommufd,
                errno,
            },
        })?;
        Ok(Iommufd {
            ctx: Arc::new(Ctx { kernel, fd }),
        })
    }

    /// Opens the running kernel's `/dev/iommu`.
    pub fn open_host() -> Result<Self> {
        Iommufd::open(Arc::new(Host))
    }

    /// Adopts an iommufd a VMM already has open (for instance through iommufd-ioctls).
    pub fn from_fd(kernel: Arc<dyn Kernel>, fd: OwnedFd) -> Result<Self> {
        let fd = kernel.adopt(fd).map_err(Ctx::err(Op::OpenIommufd))?;
        Ok(Iommufd {
            ctx: Arc::new(Ctx { kernel, fd }),
        })
    }

    /// The seam this iommufd runs on.
    pub fn kernel(&self) -> &Arc<dyn Kernel> {
        &self.ctx.kernel
    }

    /// The file, for raw seam calls.
    pub fn fd(&self) -> KernelFd {
        self.ctx.fd
    }

    /// `IOMMU_IOAS_ALLOC`.
    pub fn alloc_ioas(&self) -> Result<Ioas> {
        let mut arg = i::iommu_ioas_alloc {
            size: size_of::<i::iommu_ioas_alloc>() as u32,
            ..Default::default()
        };
        self.ctx
            .kernel
            .ioas_alloc(self.ctx.fd, &mut arg)
            .map_err(Ctx::err(Op::IoasAlloc))?;
        Ok(Ioas::from_object(Object::new(
            self.ctx.clone(),
            arg.out_ioas_id,
        )))
    }

    /// `IOMMU_OPTION` get of `IOMMU_OPTION_HUGE_PAGES` for an IOAS.
    pub fn huge_pages(&self, ioas: IoasId) -> Result<bool> {
        Ok(self.option(
            n::IOMMU_OPTION_OP_GET,
            n::IOMMU_OPTION_HUGE_PAGES,
            ioas.0,
            0,
        )? != 0)
    }

    /// `IOMMU_OPTION` set of `IOMMU_OPTION_HUGE_PAGES` for an IOAS.
    pub fn set_huge_pages(&self, ioas: IoasId, on: bool) -> Result<()> {
        self.option(
            n::IOMMU_OPTION_OP_SET,
            n::IOMMU_OPTION_HUGE_PAGES,
            ioas.0,
            on as u64,
        )
        .map(drop)
    }

    /// A raw `IOMMU_OPTION` call; returns `val64`.
    pub fn option(&self, op: u32, option_id: u32, object_id: u32, val64: u64) -> Result<u64> {
        self.ctx.option(op, option_id, object_id, val64)
    }
}
