//! IO address spaces.

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use vmsi_sys::iommufd as i;
use vmsi_sys::names as n;

use super::iommufd::{Ctx, Object, destroy_last};
use crate::error::{Op, Result};
use crate::ids::IoasId;
use crate::seam::DmaMemory;

/// An inclusive IOVA range, as the kernel reports and takes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IovaRange {
    /// First IOVA.
    pub start: u64,
    /// Last IOVA (inclusive).
    pub last: u64,
}

impl IovaRange {
    /// The range `[start, start + len)`; `None` if empty or wrapping.
    pub fn from_len(start: u64, len: u64) -> Option<Self> {
        Some(IovaRange {
            start,
            last: start.checked_add(len.checked_sub(1)?)?,
        })
    }

    /// Whether `[start, start + len)` lies inside.
    pub fn contains(&self, start: u64, len: u64) -> bool {
        len > 0 && start >= self.start && start.checked_add(len - 1).is_some_and(|l| l <= self.last)
    }
}

impl From<i::iommu_iova_range> for IovaRange {
    fn from(r: i::iommu_iova_range) -> Self {
        IovaRange {
            start: r.start,
            last: r.last,
        }
    }
}

impl From<IovaRange> for i::iommu_iova_range {
    fn from(r: IovaRange) -> Self {
        i::iommu_iova_range {
            start: r.start,
            last: r.last,
        }
    }
}

/// Access a device gets to a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prot {
    /// Device reads only.
    Read,
    /// Device reads and writes.
    ReadWrite,
}

impl Prot {
    fn flags(self) -> u32 {
        match self {
            Prot::Read => n::IOMMU_IOAS_MAP_READABLE,
            Prot::ReadWrite => n::IOMMU_IOAS_MAP_READABLE | n::IOMMU_IOAS_MAP_WRITEABLE,
        }
    }
}

fn fixed(iova: Option<u64>) -> u32 {
    if iova.is_some() {
        n::IOMMU_IOAS_MAP_FIXED_IOVA
    } else {
        0
    }
}

/// The most usable IOVA ranges [`Ioas::iova_ranges`] makes room for. Each range is a gap
/// between reserved regions or allowed ranges, so a kernel answer beyond this is refused as
/// `EMSGSIZE` rather than trusted with the allocation (the kernel_answers fuzz target found
/// a claimed 2^27 ranges asking for a 2 GiB buffer).
const MAX_IOVA_RANGES: u32 = 1 << 16;

/// An IO address space: the IOVA -> memory map that paging HWPTs are built from.
/// Cloning gives another handle to the same IOAS.
#[derive(Clone, Debug)]
pub struct Ioas {
    obj: Arc<Object>,
}

impl Ioas {
    pub(crate) fn from_object(obj: Object) -> Self {
        Ioas { obj: Arc::new(obj) }
    }

    pub(crate) fn ctx(&self) -> &Arc<Ctx> {
        &self.obj.ctx
    }

    /// The kernel's id.
    pub fn id(&self) -> IoasId {
        IoasId(self.obj.id)
    }

    /// Maps `len` bytes of `mem` from `offset` at `iova` (or where the kernel chooses, with
    /// `None`); returns the IOVA.
    pub fn map_memory(
        &self,
        mem: &DmaMemory,
        offset: usize,
        len: u64,
        iova: Option<u64>,
        prot: Prot,
    ) -> Result<u64> {
        let mut arg = i::iommu_ioas_map {
            size: size_of::<i::iommu_ioas_map>() as u32,
            flags: fixed(iova) | prot.flags(),
            ioas_id: self.obj.id,
            length: len,
            iova: iova.unwrap_or(0),
            ..Default::default()
        };
        let c = self.ctx();
        c.kernel
            .ioas_map_memory(c.fd, &mut arg, mem, offset)
            .map_err(Ctx::err(Op::IoasMap))?;
        Ok(arg.iova)
    }

    /// Maps `len` bytes of a memfd (or VFIO dma-buf) from byte `start`; returns the IOVA.
    pub fn map_file(
        &self,
        file: BorrowedFd<'_>,
        start: u64,
        len: u64,
        iova: Option<u64>,
        prot: Prot,
    ) -> Result<u64> {
        let mut arg = i::iommu_ioas_map_file {
            size: size_of::<i::iommu_ioas_map_file>() as u32,
            flags: fixed(iova) | prot.flags(),
            ioas_id: self.obj.id,
            start,
            length: len,
            iova: iova.unwrap_or(0),
            ..Default::default()
        };
        let c = self.ctx();
        c.kernel
            .ioas_map_file(c.fd, &mut arg, file)
            .map_err(Ctx::err(Op::IoasMapFile))?;
        Ok(arg.iova)
    }

    /// Unmaps every area inside `[iova, iova + len)`; returns the bytes unmapped. An area
    /// that sticks out of the range fails the call with `ENOENT` (areas before it in IOVA
    /// order are already gone, as in the kernel).
    pub fn unmap(&self, iova: u64, len: u64) -> Result<u64> {
        let mut arg = i::iommu_ioas_unmap {
            size: size_of::<i::iommu_ioas_unmap>() as u32,
            ioas_id: self.obj.id,
            iova,
            length: len,
        };
        let c = self.ctx();
        c.kernel
            .ioas_unmap(c.fd, &mut arg)
            .map_err(Ctx::err(Op::IoasUnmap))?;
        Ok(arg.length)
    }

    /// Unmaps everything; returns the bytes unmapped.
    pub fn unmap_all(&self) -> Result<u64> {
        self.unmap(0, u64::MAX)
    }

    /// Maps the pages behind `[src_iova, src_iova + len)` of this IOAS into `dst` as well
    /// (`IOMMU_IOAS_COPY`); returns the destination IOVA.
    pub fn copy_to(
        &self,
        dst: &Ioas,
        src_iova: u64,
        len: u64,
        dst_iova: Option<u64>,
        prot: Prot,
    ) -> Result<u64> {
        let mut arg = i::iommu_ioas_copy {
            size: size_of::<i::iommu_ioas_copy>() as u32,
            flags: fixed(dst_iova) | prot.flags(),
            dst_ioas_id: dst.obj.id,
            src_ioas_id: self.obj.id,
            length: len,
            dst_iova: dst_iova.unwrap_or(0),
            src_iova,
        };
        let c = self.ctx();
        c.kernel
            .ioas_copy(c.fd, &mut arg)
            .map_err(Ctx::err(Op::IoasCopy))?;
        Ok(arg.dst_iova)
    }

    /// The usable IOVA ranges, written into `out`; returns how many there are (which may be
    /// more than `out` holds: then only the first `out.len()` are written) and the IOVA
    /// alignment. Allocates nothing.
    pub fn iova_ranges_into(&self, out: &mut [IovaRange]) -> Result<(usize, u64)> {
        const CHUNK: usize = 16;
        let mut raw = [i::iommu_iova_range::default(); CHUNK];
        let mut arg = i::iommu_ioas_iova_ranges {
            size: size_of::<i::iommu_ioas_iova_ranges>() as u32,
            ioas_id: self.obj.id,
            num_iovas: CHUNK as u32,
            ..Default::default()
        };
        let c = self.ctx();
        match c.kernel.ioas_iova_ranges(c.fd, &mut arg, &mut raw) {
            Ok(()) => {}
            // More ranges than the chunk: report the count, fill what fits.
            Err(crate::Errno::EMSGSIZE) => {}
            Err(e) => return Err(Ctx::err(Op::IoasIovaRanges)(e)),
        }
        let total = arg.num_iovas as usize;
        for (o, r) in out.iter_mut().zip(raw.iter().take(total.min(CHUNK))) {
            *o = (*r).into();
        }
        Ok((total, arg.out_iova_alignment))
    }

    /// The usable IOVA ranges and the IOVA alignment.
    pub fn iova_ranges(&self) -> Result<(Vec<IovaRange>, u64)> {
        let mut cap = 8;
        loop {
            let mut raw = vec![i::iommu_iova_range::default(); cap];
            let mut arg = i::iommu_ioas_iova_ranges {
                size: size_of::<i::iommu_ioas_iova_ranges>() as u32,
                ioas_id: self.obj.id,
                num_iovas: cap as u32,
                ..Default::default()
            };
            let c = self.ctx();
            match c.kernel.ioas_iova_ranges(c.fd, &mut arg, &mut raw) {
                Ok(()) => {
                    raw.truncate(arg.num_iovas as usize);
                    return Ok((
                        raw.into_iter().map(Into::into).collect(),
                        arg.out_iova_alignment,
                    ));
                }
                Err(crate::Errno::EMSGSIZE)
                    if arg.num_iovas as usize > cap && arg.num_iovas <= MAX_IOVA_RANGES =>
                {
                    cap = arg.num_iovas as usize
                }
                Err(e) => return Err(Ctx::err(Op::IoasIovaRanges)(e)),
            }
        }
    }

    /// Restricts where the kernel may place IOVAs it allocates (and where fixed mappings may
    /// go) to `ranges`; an empty slice lifts the restriction.
    pub fn allow_iovas(&self, ranges: &[IovaRange]) -> Result<()> {
        let raw: Vec<i::iommu_iova_range> = ranges.iter().map(|r| (*r).into()).collect();
        let mut arg = i::iommu_ioas_allow_iovas {
            size: size_of::<i::iommu_ioas_allow_iovas>() as u32,
            ioas_id: self.obj.id,
            num_iovas: raw.len() as u32,
            ..Default::default()
        };
        let c = self.ctx();
        c.kernel
            .ioas_allow_iovas(c.fd, &mut arg, &raw)
            .map_err(Ctx::err(Op::IoasAllowIovas))
    }

    /// Destroys the IOAS now. [`crate::Error::InUse`] while other handles (or HWPTs or
    /// devices attached to it) still hold it.
    pub fn destroy(self) -> Result<()> {
        destroy_last(self.obj, "IOAS", |o| o)
    }
}
