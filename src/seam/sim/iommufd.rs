//! The iommufd half of the model: objects, IOAS areas and reserved regions, HWPTs, vIOMMUs.

use std::collections::BTreeMap;

use vmsi_sys::iommufd as i;
use vmsi_sys::names as n;

use super::{File, Sim, State};
use crate::error::Errno;
use crate::seam::KernelFd;

/// One iommufd file: its objects by id.
#[derive(Debug, Default)]
pub(in crate::seam) struct Ctx {
    pub(super) objects: BTreeMap<u32, Obj>,
    /// The file was closed while devices still held the context (the kernel keeps it until
    /// they unbind); ioctls on the closed fd see EBADF.
    pub(super) closed: bool,
}

#[derive(Debug)]
pub(super) enum Obj {
    Ioas(Ioas),
    Hwpt(Hwpt),
    /// A bound device (`idev`); index into `State::devices`.
    Device(usize),
    Viommu {
        hwpt: u32,
    },
    Vdevice {
        viommu: u32,
        idev: u32,
        virt_id: u64,
    },
    /// A vDEVICE destroyed by its device's unbind: the id stays taken until close.
    Tombstone,
    Veventq {
        viommu: u32,
        fd: i32,
    },
}

#[derive(Debug, Default)]
pub(super) struct Ioas {
    /// Areas by first IOVA: (last IOVA, user address, writable).
    areas: BTreeMap<u64, (u64, u64, bool)>,
    /// `IOMMU_IOAS_ALLOW_IOVAS` ranges (inclusive); empty allows everything.
    allowed: Vec<(u64, u64)>,
}

#[derive(Debug)]
pub(super) enum Hwpt {
    Paging {
        ioas: u32,
        nest_parent: bool,
        auto: bool,
    },
    Nested {
        viommu: u32,
        ste: [u64; 2],
    },
}

/// SMMUv3 STE word 0 fields a nested stage 1 may set (`arm_smmu_validate_vste`).
const STE0_V: u64 = 1;
const STE0_CFG_SHIFT: u32 = 1;
const STE0_CFG_MASK: u64 = 0x7 << STE0_CFG_SHIFT;
const STE_CFG_ABORT: u64 = 0;
const STE_CFG_BYPASS: u64 = 4;
const STE_CFG_S1: u64 = 5;
/// V, Cfg, S1Fmt, S1ContextPtr, S1CDMax.
const STE0_ALLOWED: u64 =
    STE0_V | STE0_CFG_MASK | (0x3 << 4) | (((1u64 << 50) - 1) & !0x3f) | (0x1f << 59);
/// S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS.
const STE1_ALLOWED: u64 = 0x3 | (0x3 << 2) | (0x3 << 4) | (0x3 << 6) | (1 << 27) | (0x3 << 28);

impl Ctx {
    pub(super) fn veventq_file_closed(&mut self, id: u32) {
        if let Some(Obj::Veventq { fd, .. }) = self.objects.get_mut(&id) {
            *fd = -1;
        }
    }

    pub(super) fn area_count(&self) -> usize {
        self.objects
            .values()
            .map(|o| {
                if let Obj::Ioas(a) = o {
                    a.areas.len()
                } else {
                    0
                }
            })
            .sum()
    }

    /// The kernel's `XA_FLAGS_ALLOC1` xarray: the lowest free id from 1.
    fn insert(&mut self, obj: Obj) -> u32 {
        let mut id = 1;
        for k in self.objects.keys() {
            if *k != id {
                break;
            }
            id += 1;
        }
        self.objects.insert(id, obj);
        id
    }

    fn ioas(&self, id: u32) -> Result<&Ioas, Errno> {
        match self.objects.get(&id) {
            Some(Obj::Ioas(a)) => Ok(a),
            _ => Err(Errno::ENOENT),
        }
    }

    fn ioas_mut(&mut self, id: u32) -> Result<&mut Ioas, Errno> {
        match self.objects.get_mut(&id) {
            Some(Obj::Ioas(a)) => Ok(a),
            _ => Err(Errno::ENOENT),
        }
    }

    /// The IOAS whose page table backs `hwpt` (a nested HWPT's parent's IOAS).
    pub(super) fn paging_ioas(&self, hwpt: u32) -> Option<u32> {
        match self.objects.get(&hwpt)? {
            Obj::Hwpt(Hwpt::Paging { ioas, .. }) => Some(*ioas),
            Obj::Hwpt(Hwpt::Nested { viommu, .. }) => match self.objects.get(viommu)? {
                Obj::Viommu { hwpt } => self.paging_ioas(*hwpt),
                _ => None,
            },
            _ => None,
        }
    }

    /// Ids of objects that hold `id` (the kernel's `users` refcount, minus its own).
    fn users(&self, id: u32, s: &State, fd: i32) -> usize {
        let mut n = 0;
        for obj in self.objects.values() {
            n += match obj {
                Obj::Hwpt(Hwpt::Paging { ioas, .. }) => (*ioas == id) as usize,
                Obj::Hwpt(Hwpt::Nested { viommu, .. }) => (*viommu == id) as usize,
                Obj::Viommu { hwpt } => (*hwpt == id) as usize,
                Obj::Vdevice { viommu, idev, .. } => (*viommu == id || *idev == id) as usize,
                Obj::Veventq { viommu, .. } => (*viommu == id) as usize,
                _ => 0,
            };
        }
        // Devices attached to a HWPT hold it.
        n += s
            .devices
            .iter()
            .filter(|d| d.attached_in(fd) == Some(id))
            .count();
        n
    }
}

/// Reserved ranges (inclusive) of an IOAS: outside the aperture of any HWPT on it, and each
/// attached device's software MSI window.
fn reserved(sim: &Sim, s: &State, fd: i32, ctx: &Ctx, ioas: u32) -> Vec<(u64, u64)> {
    let mut r = Vec::new();
    // Each domain on the IOAS reserves what lies past its aperture.
    for o in ctx.objects.values() {
        if let Obj::Hwpt(Hwpt::Paging {
            ioas: a,
            nest_parent,
            ..
        }) = o
        {
            if *a == ioas && aperture_end(sim, *nest_parent) != u64::MAX {
                r.push((aperture_end(sim, *nest_parent) + 1, u64::MAX));
            }
        }
    }
    for d in &s.devices {
        if let Some(h) = d.attached_in(fd) {
            if ctx.paging_ioas(h) == Some(ioas) {
                let (base, len) = d.sw_msi_window(&sim.config);
                r.push((base, base + len - 1));
            }
        }
    }
    r
}

/// Last IOVA a domain translates: stage 1 takes `ias_bits`, a stage-2 nest parent the
/// SMMU's output size (`arm_smmu_domain_finalise`).
fn aperture_end(sim: &Sim, nest_parent: bool) -> u64 {
    let bits = if nest_parent {
        sim.config.oas_bits
    } else {
        sim.config.ias_bits
    };
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// `iopt->iova_alignment`: 1 until a domain (any paging HWPT) exists on the IOAS, then the
/// SMMU's smallest page.
fn iova_alignment(sim: &Sim, ctx: &Ctx, ioas: u32) -> u64 {
    let has_domain = ctx
        .objects
        .values()
        .any(|o| matches!(o, Obj::Hwpt(Hwpt::Paging { ioas: a, .. }) if *a == ioas));
    if has_domain { sim.config.page_size } else { 1 }
}

/// MAP, MAP_FILE and COPY: unknown flags (or a reserved field set) are EOPNOTSUPP.
fn check_map_flags(flags: u32, reserved: bool) -> Result<(), Errno> {
    let known =
        n::IOMMU_IOAS_MAP_FIXED_IOVA | n::IOMMU_IOAS_MAP_WRITEABLE | n::IOMMU_IOAS_MAP_READABLE;
    if flags & !known != 0 || reserved {
        Err(Errno::EOPNOTSUPP)
    } else {
        Ok(())
    }
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

/// The holes between `taken` ranges within `[lo, hi]`, in order.
fn holes(mut taken: Vec<(u64, u64)>, lo: u64, hi: u64) -> Vec<(u64, u64)> {
    taken.sort_unstable();
    let mut out = Vec::new();
    let mut cur = lo;
    let mut done = false;
    for (a, b) in taken {
        if b < cur || done {
            continue;
        }
        if a > cur {
            out.push((cur, a - 1));
        }
        if b >= hi {
            done = true;
        } else {
            cur = cur.max(b + 1);
        }
    }
    if !done && cur <= hi {
        out.push((cur, hi));
    }
    out
}

/// The seam's size rule (`UapiArg`), then the kernel's minimum size.
fn check_size(size: u32, min: usize, full: usize) -> Result<(), Errno> {
    if size as usize > full {
        Err(Errno::E2BIG)
    } else if (size as usize) < min {
        Err(Errno::EINVAL)
    } else {
        Ok(())
    }
}

macro_rules! min_size {
    ($t:ty, $last:ident) => {
        std::mem::offset_of!($t, $last) + size_of_val(&<$t>::default().$last)
    };
}

impl Sim {
    pub(super) fn open_iommufd_impl(&self) -> Result<KernelFd, Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "open(/dev/iommu)")?;
        Ok(s.new_fd(File::Iommufd(Ctx::default())))
    }

    /// Closing an iommufd destroys everything in it once nothing else holds the context:
    /// bound devices keep it alive (closed to ioctls) until they unbind.
    pub(super) fn close_iommufd(s: &mut State, fd: i32, mut ctx: Ctx) {
        if s.devices.iter().any(|d| d.bound_to(fd)) {
            ctx.closed = true;
            s.files.insert(fd, File::Iommufd(ctx));
        }
    }

    /// Frees a closed context that its last device just left.
    pub(super) fn release_if_orphan(s: &mut State, fd: i32) {
        let orphan = matches!(s.files.get(&fd), Some(File::Iommufd(c)) if c.closed);
        if orphan && !s.devices.iter().any(|d| d.bound_to(fd)) {
            s.files.remove(&fd);
        }
    }

    pub(super) fn destroy_impl(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_destroy,
    ) -> Result<(), Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_DESTROY")?;
        check_size(
            arg.size,
            min_size!(i::iommu_destroy, id),
            size_of::<i::iommu_destroy>(),
        )?;
        let s = &mut *s;
        let ctx = s.ctx_mut(fd)?;
        let obj = ctx.objects.get(&arg.id).ok_or(Errno::ENOENT)?;
        match obj {
            Obj::Tombstone => return Err(Errno::ENOENT),
            // A bound device is held by VFIO.
            Obj::Device(_) => return Err(Errno::EBUSY),
            // The queue's open file holds it.
            Obj::Veventq { fd: q, .. } if *q >= 0 => return Err(Errno::EBUSY),
            _ => {}
        }
        let ctx = s.ctx(fd)?;
        if ctx.users(arg.id, s, fd.0) > 0 {
            return Err(Errno::EBUSY);
        }
        s.ctx_mut(fd)?.objects.remove(&arg.id);
        Ok(())
    }

    pub(super) fn ioas_alloc_impl(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_ioas_alloc,
    ) -> Result<(), Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_IOAS_ALLOC")?;
        check_size(
            arg.size,
            min_size!(i::iommu_ioas_alloc, out_ioas_id),
            size_of::<i::iommu_ioas_alloc>(),
        )?;
        if arg.flags != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        arg.out_ioas_id = s.ctx_mut(fd)?.insert(Obj::Ioas(Ioas::default()));
        Ok(())
    }

    /// `IOMMU_IOAS_MAP` / `MAP_FILE` / `COPY` after their own argument checks
    /// (`iopt_map_common`: alignment, then the fixed-IOVA checks or the allocator).
    #[allow(clippy::too_many_arguments)]
    fn map_area(
        &self,
        s: &mut State,
        fd: KernelFd,
        ioas: u32,
        flags: u32,
        iova: &mut u64,
        length: u64,
        addr: u64,
    ) -> Result<(), Errno> {
        let page = self.config.page_size;
        let ctx = s.ctx(fd)?;
        let a = ctx.ioas(ioas)?;
        let align = iova_alignment(self, ctx, ioas);
        if length == 0 || length % align != 0 {
            return Err(Errno::EINVAL);
        }
        let resv = reserved(self, s, fd.0, ctx, ioas);
        let areas: Vec<(u64, u64)> = a.areas.iter().map(|(s, (l, _, _))| (*s, *l)).collect();
        if flags & n::IOMMU_IOAS_MAP_FIXED_IOVA != 0 {
            // iopt_check_iova; the allowed list does not apply to fixed IOVAs.
            if *iova & (align - 1) != 0 {
                return Err(Errno::EINVAL);
            }
            let last = iova.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
            if resv.iter().any(|r| overlaps(*r, (*iova, last))) {
                return Err(Errno::EINVAL);
            }
            if areas.iter().any(|r| overlaps(*r, (*iova, last))) {
                return Err(Errno::EEXIST);
            }
        } else {
            *iova = alloc_iova(page, align, &resv, &areas, &a.allowed, addr, length)?;
        }
        // iopt_insert_area: the offset into the first page must be IOVA-aligned.
        if (addr % page) & (align - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let last = *iova + length - 1;
        let writable = flags & n::IOMMU_IOAS_MAP_WRITEABLE != 0;
        let ctx = s.ctx_mut(fd)?;
        ctx.ioas_mut(ioas)?
            .areas
            .insert(*iova, (last, addr, writable));
        Ok(())
    }

    pub(super) fn ioas_map_impl(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_ioas_map,
    ) -> Result<(), Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_IOAS_MAP")?;
        check_size(
            arg.size,
            min_size!(i::iommu_ioas_map, iova),
            size_of::<i::iommu_ioas_map>(),
        )?;
        check_map_flags(arg.flags, arg.__reserved != 0)?;
        if arg.iova == u64::MAX || arg.length == u64::MAX {
            return Err(Errno::EOVERFLOW);
        }
        if arg.flags & (n::IOMMU_IOAS_MAP_WRITEABLE | n::IOMMU_IOAS_MAP_READABLE) == 0 {
            return Err(Errno::EINVAL);
        }
        s.ctx_mut(fd)?.ioas(arg.ioas_id)?;
        // iopt_alloc_user_pages
        if arg.user_va.checked_add(arg.length).is_none() {
            return Err(Errno::EOVERFLOW);
        }
        if arg.length == 0 || arg.length > u64::MAX - self.config.page_size {
            return Err(Errno::EINVAL);
        }
        let mut iova = arg.iova;
        self.map_area(
            &mut s,
            fd,
            arg.ioas_id,
            arg.flags,
            &mut iova,
            arg.length,
            arg.user_va,
        )?;
        arg.iova = iova;
        Ok(())
    }

    pub(super) fn ioas_map_file_impl(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_ioas_map_file,
    ) -> Result<(), Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_IOAS_MAP_FILE")?;
        check_size(
            arg.size,
            min_size!(i::iommu_ioas_map_file, iova),
            size_of::<i::iommu_ioas_map_file>(),
        )?;
        check_map_flags(arg.flags, false)?;
        if arg.iova == u64::MAX || arg.length == u64::MAX {
            return Err(Errno::EOVERFLOW);
        }
        if arg.flags & (n::IOMMU_IOAS_MAP_WRITEABLE | n::IOMMU_IOAS_MAP_READABLE) == 0 {
            return Err(Errno::EINVAL);
        }
        s.ctx_mut(fd)?.ioas(arg.ioas_id)?;
        if arg.length == 0 {
            return Err(Errno::EINVAL);
        }
        if arg.start.checked_add(arg.length - 1).is_none() {
            return Err(Errno::EOVERFLOW);
        }
        let mut iova = arg.iova;
        // A file mapping behaves as an address mapping whose "address" is the file offset.
        self.map_area(
            &mut s,
            fd,
            arg.ioas_id,
            arg.flags,
            &mut iova,
            arg.length,
            arg.start,
        )?;
        arg.iova = iova;
        Ok(())
    }

    /// `IOMMU_IOAS_MAP_MSI` (the rig's reference kernel, iommufd_ioas_map_msi): the page of
    /// the device's ITS doorbell as a fixed-IOVA area.
    #[cfg(feature = "proposed-uapi")]
    pub(super) fn ioas_map_msi_impl(
        &self,
        fd: KernelFd,
        arg: &mut vmsi_sys::proposed::iommu_ioas_map_msi,
    ) -> Result<(), Errno> {
        if !self.config.proposed_uapi {
            return Err(Errno::ENOTTY);
        }
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_IOAS_MAP_MSI")?;
        check_size(
            arg.size,
            min_size!(vmsi_sys::proposed::iommu_ioas_map_msi, __reserved),
            size_of::<vmsi_sys::proposed::iommu_ioas_map_msi>(),
        )?;
        if arg.flags != 0 || arg.__reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if arg.iova == u64::MAX {
            return Err(Errno::EOVERFLOW);
        }
        let page = self.config.page_size;
        if arg.iova % page != 0 {
            return Err(Errno::EINVAL);
        }
        match s.ctx(fd)?.objects.get(&arg.dev_id) {
            Some(Obj::Device(_)) => {}
            _ => return Err(Errno::ENOENT),
        }
        let doorbell = *self.config.its_doorbells.first().ok_or(Errno::EOPNOTSUPP)?;
        s.ctx(fd)?.ioas(arg.ioas_id)?;
        let mut iova = arg.iova;
        let flags =
            n::IOMMU_IOAS_MAP_FIXED_IOVA | n::IOMMU_IOAS_MAP_READABLE | n::IOMMU_IOAS_MAP_WRITEABLE;
        let page_addr = doorbell & !(page - 1);
        self.map_area(&mut s, fd, arg.ioas_id, flags, &mut iova, page, page_addr)?;
        arg.length = page;
        arg.doorbell_offset = (doorbell & (page - 1)) as u32;
        Ok(())
    }

    pub(super) fn ioas_unmap_impl(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_ioas_unmap,
    ) -> Result<(), Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_IOAS_UNMAP")?;
        check_size(
            arg.size,
            min_size!(i::iommu_ioas_unmap, length),
            size_of::<i::iommu_ioas_unmap>(),
        )?;
        let a = s.ctx_mut(fd)?.ioas_mut(arg.ioas_id)?;
        let (first, last) = if arg.iova == 0 && arg.length == u64::MAX {
            (0, u64::MAX)
        } else {
            if arg.iova == u64::MAX || arg.length == u64::MAX {
                return Err(Errno::EOVERFLOW);
            }
            if arg.length == 0 {
                return Err(Errno::EINVAL);
            }
            (
                arg.iova,
                arg.iova
                    .checked_add(arg.length - 1)
                    .ok_or(Errno::EOVERFLOW)?,
            )
        };
        // Areas are removed in order until one sticks out of the range: like the kernel, the
        // areas before it stay unmapped and the call fails with ENOENT.
        let hit: Vec<(u64, u64)> = a
            .areas
            .range(..=last)
            .filter(|(s, (l, _, _))| **s <= last && *l >= first)
            .map(|(s, (l, _, _))| (*s, *l))
            .collect();
        let mut unmapped = 0u64;
        for (start, end) in hit {
            if start < first || end > last {
                return Err(Errno::ENOENT);
            }
            a.areas.remove(&start);
            unmapped += end - start + 1;
        }
        if unmapped == 0 && !(arg.iova == 0 && arg.length == u64::MAX) {
            return Err(Errno::ENOENT);
        }
        arg.length = unmapped;
        Ok(())
    }

    pub(super) fn ioas_copy_impl(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_ioas_copy,
    ) -> Result<(), Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_IOAS_COPY")?;
        check_size(
            arg.size,
            min_size!(i::iommu_ioas_copy, src_iova),
            size_of::<i::iommu_ioas_copy>(),
        )?;
        check_map_flags(arg.flags, false)?;
        if arg.length == u64::MAX || arg.src_iova == u64::MAX || arg.dst_iova == u64::MAX {
            return Err(Errno::EOVERFLOW);
        }
        if arg.flags & (n::IOMMU_IOAS_MAP_WRITEABLE | n::IOMMU_IOAS_MAP_READABLE) == 0 {
            return Err(Errno::EINVAL);
        }
        s.ctx_mut(fd)?.ioas(arg.src_ioas_id)?;
        if arg.length == 0 {
            return Err(Errno::EINVAL);
        }
        let src_last = arg
            .src_iova
            .checked_add(arg.length - 1)
            .ok_or(Errno::EOVERFLOW)?;
        // The source range must be covered by areas, contiguously, with no area sticking out.
        let src = s.ctx_mut(fd)?.ioas(arg.src_ioas_id)?;
        let mut at = arg.src_iova;
        let mut addr = None;
        let mut writable = true;
        for (start, (last, va, w)) in src.areas.range(..=src_last) {
            if *last < arg.src_iova {
                continue;
            }
            if *start > at {
                return Err(Errno::ENOENT);
            }
            addr.get_or_insert(va + (arg.src_iova - start));
            writable &= *w;
            at = last.saturating_add(1);
        }
        if addr.is_none() || at <= src_last {
            return Err(Errno::ENOENT);
        }
        s.ctx_mut(fd)?.ioas(arg.dst_ioas_id)?;
        if arg.flags & n::IOMMU_IOAS_MAP_WRITEABLE != 0 && !writable {
            return Err(Errno::EPERM);
        }
        let mut iova = arg.dst_iova;
        self.map_area(
            &mut s,
            fd,
            arg.dst_ioas_id,
            arg.flags,
            &mut iova,
            arg.length,
            addr.unwrap_or(0),
        )?;
        arg.dst_iova = iova;
        Ok(())
    }

    pub(super) fn ioas_iova_ranges_impl(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_ioas_iova_ranges,
        out: &mut [i::iommu_iova_range],
    ) -> Result<(), Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_IOAS_IOVA_RANGES")?;
        check_size(
            arg.size,
            min_size!(i::iommu_ioas_iova_ranges, out_iova_alignment),
            size_of::<i::iommu_ioas_iova_ranges>(),
        )?;
        if arg.__reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let ctx = s.ctx(fd)?;
        ctx.ioas(arg.ioas_id)?;
        let ranges = holes(reserved(self, &s, fd.0, ctx, arg.ioas_id), 0, u64::MAX);
        let max = arg.num_iovas.min(out.len() as u32) as usize;
        for (k, (a, b)) in ranges.iter().enumerate().take(max) {
            out[k] = i::iommu_iova_range {
                start: *a,
                last: *b,
            };
        }
        arg.num_iovas = ranges.len() as u32;
        arg.out_iova_alignment = iova_alignment(self, ctx, arg.ioas_id);
        if ranges.len() > max {
            Err(Errno::EMSGSIZE)
        } else {
            Ok(())
        }
    }

    pub(super) fn ioas_allow_iovas_impl(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_ioas_allow_iovas,
        ranges: &[i::iommu_iova_range],
    ) -> Result<(), Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_IOAS_ALLOW_IOVAS")?;
        check_size(
            arg.size,
            min_size!(i::iommu_ioas_allow_iovas, allowed_iovas),
            size_of::<i::iommu_ioas_allow_iovas>(),
        )?;
        if arg.__reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if (arg.num_iovas as usize) > ranges.len() {
            return Err(Errno::EFAULT);
        }
        let ctx = s.ctx(fd)?;
        ctx.ioas(arg.ioas_id)?;
        let want: Vec<(u64, u64)> = ranges
            .iter()
            .take(arg.num_iovas as usize)
            .map(|r| (r.start, r.last))
            .collect();
        for (k, r) in want.iter().enumerate() {
            if r.0 >= r.1 || want[..k].iter().any(|o| overlaps(*o, *r)) {
                return Err(Errno::EINVAL);
            }
        }
        // Allowed ranges may not cover reserved ones; existing areas are not checked.
        let resv = reserved(self, &s, fd.0, ctx, arg.ioas_id);
        if want.iter().any(|w| resv.iter().any(|r| overlaps(*w, *r))) {
            return Err(Errno::EADDRINUSE);
        }
        s.ctx_mut(fd)?.ioas_mut(arg.ioas_id)?.allowed = want;
        Ok(())
    }

    pub(super) fn option_impl(&self, fd: KernelFd, arg: &mut i::iommu_option) -> Result<(), Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_OPTION")?;
        check_size(
            arg.size,
            min_size!(i::iommu_option, val64),
            size_of::<i::iommu_option>(),
        )?;
        if arg.__reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let set = match arg.op {
            x if x as u32 == n::IOMMU_OPTION_OP_SET => true,
            x if x as u32 == n::IOMMU_OPTION_OP_GET => false,
            _ => return Err(Errno::EOPNOTSUPP),
        };
        let s = &mut *s;
        let ctx = s.ctx_mut(fd)?;
        match arg.option_id {
            x if x == n::IOMMU_OPTION_RLIMIT_MODE => {
                if arg.object_id != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                if set {
                    // Changing the accounting mode needs CAP_SYS_RESOURCE; Sim grants it.
                    if !ctx.objects.is_empty() {
                        return Err(Errno::EBUSY);
                    }
                    if arg.val64 > 1 {
                        return Err(Errno::EINVAL);
                    }
                } else {
                    arg.val64 = 0;
                }
                Ok(())
            }
            x if x == n::IOMMU_OPTION_HUGE_PAGES => {
                ctx.ioas(arg.object_id)?;
                if set {
                    if arg.val64 > 1 {
                        Err(Errno::EINVAL)
                    } else {
                        Ok(())
                    }
                } else {
                    arg.val64 = 1;
                    Ok(())
                }
            }
            2 | 3 if self.config.proposed_uapi => {
                let dev = match ctx.objects.get(&arg.object_id) {
                    Some(Obj::Device(d)) => *d,
                    _ => return Err(Errno::ENOENT),
                };
                s.devices[dev].sw_msi_option(arg, set, &self.config)
            }
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    pub(super) fn hwpt_alloc_impl(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_hwpt_alloc,
        data: &[u8],
    ) -> Result<(), Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_HWPT_ALLOC")?;
        check_size(
            arg.size,
            min_size!(i::iommu_hwpt_alloc, __reserved),
            size_of::<i::iommu_hwpt_alloc>(),
        )?;
        if arg.__reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let none = arg.data_type == n::IOMMU_HWPT_DATA_NONE;
        if none == (arg.data_len != 0) {
            return Err(Errno::EINVAL);
        }
        let data = &data[..(arg.data_len as usize).min(data.len())];
        let s = &mut *s;
        let ctx = s.ctx_mut(fd)?;
        if !matches!(ctx.objects.get(&arg.dev_id), Some(Obj::Device(_))) {
            return Err(Errno::ENOENT);
        }
        const FAULT_ID_VALID: u32 = 1 << 2;
        const PASID: u32 = 1 << 3;
        let hwpt = match ctx.objects.get(&arg.pt_id) {
            None => return Err(Errno::EINVAL),
            Some(Obj::Ioas(_)) => {
                let known = n::IOMMU_HWPT_ALLOC_NEST_PARENT
                    | n::IOMMU_HWPT_ALLOC_DIRTY_TRACKING
                    | FAULT_ID_VALID
                    | PASID;
                if arg.flags & !known != 0 {
                    return Err(Errno::EOPNOTSUPP);
                }
                // QEMU's SMMUv3 has no HTTU (dirty tracking) and no PASID; SMMUv3 takes no
                // driver data for a paging domain.
                let nest_parent = arg.flags == n::IOMMU_HWPT_ALLOC_NEST_PARENT;
                if !(arg.flags == 0 || nest_parent)
                    || !none
                    || (nest_parent && !self.config.nesting)
                {
                    return Err(Errno::EOPNOTSUPP);
                }
                // iopt_table_add_domain: the aperture is reserved and the alignment becomes
                // the page size; existing areas must fit both.
                let a = ctx.ioas(arg.pt_id)?;
                let end = aperture_end(self, nest_parent);
                let page = self.config.page_size;
                if a.areas.iter().any(|(s, (l, va, _))| {
                    *l > end || s % page != 0 || (l + 1) % page != 0 || va % page != 0
                }) || a.allowed.iter().any(|r| r.1 > end)
                {
                    return Err(Errno::EADDRINUSE);
                }
                Hwpt::Paging {
                    ioas: arg.pt_id,
                    nest_parent,
                    auto: false,
                }
            }
            // SMMUv3 nests only through a vIOMMU (no domain_alloc_nested).
            Some(Obj::Hwpt(Hwpt::Paging { .. })) => return Err(Errno::EOPNOTSUPP),
            Some(Obj::Viommu { .. }) => {
                if arg.flags & !(FAULT_ID_VALID | PASID) != 0
                    || data.is_empty()
                    || arg.flags & PASID != 0
                {
                    return Err(Errno::EOPNOTSUPP);
                }
                if arg.data_type != n::IOMMU_HWPT_DATA_ARM_SMMUV3 || data.len() != 16 {
                    return Err(Errno::EINVAL);
                }
                let w = |k: usize| {
                    u64::from_le_bytes(data[k * 8..k * 8 + 8].try_into().unwrap_or([0; 8]))
                };
                let mut ste = [w(0), w(1)];
                if ste[0] & STE0_V == 0 {
                    // An invalid STE is accepted and zeroed: it aborts.
                    ste = [0, 0];
                } else {
                    let cfg = (ste[0] & STE0_CFG_MASK) >> STE0_CFG_SHIFT;
                    let eats = (ste[1] >> 28) & 0x3;
                    if ste[0] & !STE0_ALLOWED != 0
                        || ste[1] & !STE1_ALLOWED != 0
                        || ![STE_CFG_ABORT, STE_CFG_BYPASS, STE_CFG_S1].contains(&cfg)
                        || eats > 1
                    {
                        return Err(Errno::EIO);
                    }
                }
                Hwpt::Nested {
                    viommu: arg.pt_id,
                    ste,
                }
            }
            Some(_) => return Err(Errno::EINVAL),
        };
        if arg.flags & FAULT_ID_VALID != 0 {
            // No fault queues are modelled.
            return Err(Errno::ENOENT);
        }
        arg.out_hwpt_id = s.ctx_mut(fd)?.insert(Obj::Hwpt(hwpt));
        Ok(())
    }

    pub(super) fn get_hw_info_impl(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_hw_info,
        data: &mut [u8],
    ) -> Result<(), Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_GET_HW_INFO")?;
        check_size(
            arg.size,
            min_size!(i::iommu_hw_info, __reserved),
            size_of::<i::iommu_hw_info>(),
        )?;
        const INPUT_TYPE: u32 = 1;
        if arg.flags & !INPUT_TYPE != 0 || arg.__reserved != [0; 3] {
            return Err(Errno::EOPNOTSUPP);
        }
        let in_type = if arg.flags & INPUT_TYPE != 0 {
            crate::seam::host::hw_info_data_type(arg)
        } else {
            0
        };
        let ctx = s.ctx_mut(fd)?;
        if !matches!(ctx.objects.get(&arg.dev_id), Some(Obj::Device(_))) {
            return Err(Errno::ENOENT);
        }
        if in_type != 0 && in_type != n::IOMMU_HW_INFO_TYPE_ARM_SMMUV3 {
            return Err(Errno::EOPNOTSUPP);
        }
        // struct iommu_hw_info_arm_smmuv3: flags, reserved, idr[6], iidr, aidr.
        let mut info = [0u8; 40];
        for (k, v) in self.config.smmu_idr.iter().enumerate() {
            info[8 + 4 * k..12 + 4 * k].copy_from_slice(&v.to_le_bytes());
        }
        let n = (arg.data_len as usize).min(data.len()).min(info.len());
        data[..n].copy_from_slice(&info[..n]);
        // The kernel zero-fills what the user asked for beyond the driver's structure.
        let asked = (arg.data_len as usize).min(data.len());
        data[n..asked].fill(0);
        arg.data_len = info.len() as u32;
        arg.__bindgen_anon_1.out_data_type = n::IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
        if arg.size as usize >= size_of::<i::iommu_hw_info>() {
            arg.out_capabilities = n::IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED as u64;
        }
        arg.out_max_pasid_log2 = 0;
        Ok(())
    }

    pub(super) fn hwpt_invalidate_impl(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_hwpt_invalidate,
        entries: &[u8],
    ) -> Result<(), Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_HWPT_INVALIDATE")?;
        check_size(
            arg.size,
            min_size!(i::iommu_hwpt_invalidate, __reserved),
            size_of::<i::iommu_hwpt_invalidate>(),
        )?;
        // The structure is written back on every path: entry_num is the number handled.
        let requested = arg.entry_num;
        arg.entry_num = 0;
        if arg.__reserved != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if requested != 0
            && (arg.entry_len == 0
                || arg.entry_len as u64 > self.config.page_size
                || requested > 1 << 19)
        {
            return Err(Errno::EINVAL);
        }
        let ctx = s.ctx_mut(fd)?;
        match ctx.objects.get(&arg.hwpt_id) {
            Some(Obj::Viommu { .. }) => {}
            Some(Obj::Hwpt(Hwpt::Nested { .. })) => return Err(Errno::EOPNOTSUPP),
            Some(_) => return Err(Errno::EINVAL),
            None => return Err(Errno::ENOENT),
        }
        // arm_vsmmu_cache_invalidate
        if arg.data_type != n::IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 || requested == 0 {
            return Err(Errno::EINVAL);
        }
        let len = arg.entry_len as usize;
        if (requested as usize).saturating_mul(len) > entries.len() {
            return Err(Errno::EFAULT);
        }
        let vsids: Vec<u64> = ctx
            .objects
            .values()
            .filter_map(|o| match o {
                Obj::Vdevice {
                    viommu, virt_id, ..
                } if *viommu == arg.hwpt_id => Some(*virt_id),
                _ => None,
            })
            .collect();
        for k in 0..requested as usize {
            let e = &entries[k * len..(k + 1) * len];
            // copy_struct_from_user: shorter entries are zero-extended, longer ones must be
            // zero past 16 bytes.
            if e.len() > 16 && e[16..].iter().any(|b| *b != 0) {
                return Err(Errno::E2BIG);
            }
            let mut cmd = [0u8; 8];
            let n = e.len().min(8);
            cmd[..n].copy_from_slice(&e[..n]);
            let cmd0 = u64::from_le_bytes(cmd);
            // TLBI_NH_ALL/ASID/VA/VAA and NSNH_ALL carry no SID; CFGI_CD(_ALL) and ATC_INV
            // carry a vSID that must belong to a vDEVICE of this vIOMMU.
            let ok = match cmd0 & 0xff {
                0x10..=0x13 | 0x30 => true,
                0x05 | 0x06 | 0x40 => vsids.contains(&(cmd0 >> 32)),
                _ => false,
            };
            if !ok {
                return Err(Errno::EIO);
            }
            arg.entry_num += 1;
        }
        Ok(())
    }

    pub(super) fn viommu_alloc_impl(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_viommu_alloc,
        _data: &[u8],
    ) -> Result<(), Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_VIOMMU_ALLOC")?;
        check_size(
            arg.size,
            min_size!(i::iommu_viommu_alloc, out_viommu_id),
            size_of::<i::iommu_viommu_alloc>(),
        )?;
        if arg.flags != 0 || arg.type_ == 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        let ctx = s.ctx_mut(fd)?;
        if !matches!(ctx.objects.get(&arg.dev_id), Some(Obj::Device(_))) {
            return Err(Errno::ENOENT);
        }
        // arm_smmu_get_viommu_size: nesting, and CANWBS or S2FWB, for the SMMUv3 type only.
        if arg.type_ != n::IOMMU_VIOMMU_TYPE_ARM_SMMUV3
            || !self.config.nesting
            || !self.config.canwbs
        {
            return Err(Errno::EOPNOTSUPP);
        }
        match ctx.objects.get(&arg.hwpt_id) {
            Some(Obj::Hwpt(Hwpt::Paging {
                nest_parent: true, ..
            })) => {}
            Some(Obj::Hwpt(Hwpt::Paging { .. })) => return Err(Errno::EINVAL),
            _ => return Err(Errno::ENOENT),
        }
        arg.out_viommu_id = ctx.insert(Obj::Viommu { hwpt: arg.hwpt_id });
        Ok(())
    }

    pub(super) fn vdevice_alloc_impl(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_vdevice_alloc,
    ) -> Result<(), Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_VDEVICE_ALLOC")?;
        check_size(
            arg.size,
            min_size!(i::iommu_vdevice_alloc, virt_id),
            size_of::<i::iommu_vdevice_alloc>(),
        )?;
        let ctx = s.ctx_mut(fd)?;
        if !matches!(ctx.objects.get(&arg.viommu_id), Some(Obj::Viommu { .. })) {
            return Err(Errno::ENOENT);
        }
        if !matches!(ctx.objects.get(&arg.dev_id), Some(Obj::Device(_))) {
            return Err(Errno::ENOENT);
        }
        let vdevs = || {
            ctx.objects.values().filter_map(|o| match o {
                Obj::Vdevice {
                    viommu,
                    idev,
                    virt_id,
                } => Some((*viommu, *idev, *virt_id)),
                _ => None,
            })
        };
        if vdevs().any(|(_, idev, _)| idev == arg.dev_id)
            || vdevs().any(|(v, _, virt)| v == arg.viommu_id && virt == arg.virt_id)
        {
            return Err(Errno::EEXIST);
        }
        arg.out_vdevice_id = ctx.insert(Obj::Vdevice {
            viommu: arg.viommu_id,
            idev: arg.dev_id,
            virt_id: arg.virt_id,
        });
        Ok(())
    }

    pub(super) fn veventq_alloc_impl(
        &self,
        fd: KernelFd,
        arg: &mut i::iommu_veventq_alloc,
    ) -> Result<KernelFd, Errno> {
        let mut s = self.state.lock();
        self.enter(&mut s, "IOMMU_VEVENTQ_ALLOC")?;
        check_size(
            arg.size,
            min_size!(i::iommu_veventq_alloc, __reserved),
            size_of::<i::iommu_veventq_alloc>(),
        )?;
        if arg.flags != 0 || arg.__reserved != 0 || arg.type_ == 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        if arg.veventq_depth == 0 || arg.veventq_depth > 1 << 19 {
            return Err(Errno::EINVAL);
        }
        let ctx = s.ctx_mut(fd)?;
        if !matches!(ctx.objects.get(&arg.viommu_id), Some(Obj::Viommu { .. })) {
            return Err(Errno::ENOENT);
        }
        // One queue per type per vIOMMU (unknown types are accepted and never fire).
        if ctx
            .objects
            .values()
            .any(|o| matches!(o, Obj::Veventq { viommu, .. } if *viommu == arg.viommu_id))
        {
            return Err(Errno::EEXIST);
        }
        let qfd = s.new_fd(File::Veventq(fd.0, 0));
        let ctx = s.ctx_mut(fd)?;
        let id = ctx.insert(Obj::Veventq {
            viommu: arg.viommu_id,
            fd: qfd.0,
        });
        s.files.insert(qfd.0, File::Veventq(fd.0, id));
        arg.out_veventq_id = id;
        arg.out_veventq_fd = qfd.0 as u32;
        Ok(qfd)
    }

    /// Binds `dev` into iommufd `fd`: a new device object.
    pub(super) fn bind_object(s: &mut State, fd: KernelFd, dev: usize) -> Result<u32, Errno> {
        Ok(s.ctx_mut(fd)?.insert(Obj::Device(dev)))
    }

    /// Attaches device `dev` (object `idev`) to `pt_id` in iommufd `fd`; returns the HWPT id.
    pub(super) fn attach(
        &self,
        s: &mut State,
        fd: i32,
        dev: usize,
        pt_id: u32,
    ) -> Result<u32, Errno> {
        let ctx = s.held_ctx(fd)?;
        let (hwpt, ioas, new_auto) = match ctx.objects.get(&pt_id) {
            Some(Obj::Ioas(_)) => {
                // Reuse an auto HWPT on this IOAS (same SMMU), else create one.
                let found = ctx.objects.iter().find_map(|(id, o)| match o {
                    Obj::Hwpt(Hwpt::Paging {
                        ioas, auto: true, ..
                    }) if *ioas == pt_id => Some(*id),
                    _ => None,
                });
                (found, pt_id, found.is_none())
            }
            Some(Obj::Hwpt(Hwpt::Paging { ioas, .. })) => (Some(pt_id), *ioas, false),
            Some(Obj::Hwpt(Hwpt::Nested { ste, .. })) => {
                let cfg = (ste[0] & STE0_CFG_MASK) >> STE0_CFG_SHIFT;
                let idev = ctx
                    .objects
                    .iter()
                    .find_map(|(id, o)| matches!(o, Obj::Device(d) if *d == dev).then_some(*id));
                let has_vdev = ctx
                    .objects
                    .values()
                    .any(|o| matches!(o, Obj::Vdevice { idev: i, .. } if Some(*i) == idev));
                if ste[0] & STE0_V != 0 && cfg == STE_CFG_S1 && !has_vdev {
                    return Err(Errno::ENOENT);
                }
                (
                    Some(pt_id),
                    ctx.paging_ioas(pt_id).ok_or(Errno::ENOENT)?,
                    false,
                )
            }
            Some(_) => return Err(Errno::EINVAL),
            None => return Err(Errno::ENOENT),
        };
        // The device's MSI window becomes reserved in the IOAS: existing areas must not
        // overlap it (iopt_table_enforce_dev_resv_regions).
        let (base, len) = s.devices[dev].sw_msi_window(&self.config);
        let win = (base, base + len - 1);
        let ctx = s.held_ctx_mut(fd)?;
        let a = ctx.ioas(ioas)?;
        // A new auto domain (stage 1) must also cover the areas already mapped.
        let end = if new_auto {
            aperture_end(self, false)
        } else {
            u64::MAX
        };
        if a.areas
            .iter()
            .any(|(s, (l, _, _))| overlaps((*s, *l), win) || *l > end)
        {
            return Err(Errno::EADDRINUSE);
        }
        if a.allowed.iter().any(|r| overlaps(*r, win)) {
            return Err(Errno::EADDRINUSE);
        }
        let id = match hwpt {
            Some(h) => h,
            None => ctx.insert(Obj::Hwpt(Hwpt::Paging {
                ioas,
                nest_parent: false,
                auto: new_auto,
            })),
        };
        Ok(id)
    }

    /// Detaches `dev` from HWPT `hwpt`: an auto HWPT no device uses any more is destroyed.
    pub(super) fn detach(s: &mut State, fd: i32, hwpt: u32) {
        let others = s
            .devices
            .iter()
            .filter(|d| d.attached_in(fd) == Some(hwpt))
            .count();
        if let Some(File::Iommufd(ctx)) = s.files.get_mut(&fd) {
            if others == 0
                && matches!(
                    ctx.objects.get(&hwpt),
                    Some(Obj::Hwpt(Hwpt::Paging { auto: true, .. }))
                )
            {
                ctx.objects.remove(&hwpt);
            }
        }
    }

    /// Removes a device's objects from its iommufd when its file is closed (unbind).
    pub(super) fn unbind(s: &mut State, fd: i32, dev: usize) {
        if let Some(File::Iommufd(ctx)) = s.files.get_mut(&fd) {
            let vdevs: Vec<u32> = ctx
                .objects
                .iter()
                .filter(|(_, o)| matches!(o, Obj::Vdevice { idev, .. } if matches!(ctx.objects.get(idev), Some(Obj::Device(d)) if *d == dev)))
                .map(|(id, _)| *id)
                .collect();
            for id in vdevs {
                ctx.objects.insert(id, Obj::Tombstone);
            }
            ctx.objects
                .retain(|_, o| !matches!(o, Obj::Device(d) if *d == dev));
        }
    }

    /// The STE config of the nested HWPT a device is attached to (None: not nested).
    pub(super) fn nested_cfg(s: &State, fd: i32, hwpt: u32) -> Option<u64> {
        match s.files.get(&fd) {
            Some(File::Iommufd(ctx)) => match ctx.objects.get(&hwpt) {
                Some(Obj::Hwpt(Hwpt::Nested { ste, .. })) => Some(if ste[0] & STE0_V == 0 {
                    STE_CFG_ABORT
                } else {
                    (ste[0] & STE0_CFG_MASK) >> STE0_CFG_SHIFT
                }),
                _ => None,
            },
            _ => None,
        }
    }
}

impl State {
    /// Whether the device's MSI writes reach the ITS: attached, and not through an aborting
    /// nested STE.
    pub(super) fn delivers_msi(&self, d: &super::vfio::DeviceState) -> bool {
        match d.attachment() {
            Some((fd, hwpt)) => Sim::nested_cfg(self, fd, hwpt) != Some(STE_CFG_ABORT),
            None => false,
        }
    }
}

/// `iopt_alloc_iova`: the lowest hole (from one page up) that fits `length` at the
/// alignment the user address already has (capped at a page without huge pages).
fn alloc_iova(
    page: u64,
    iova_alignment: u64,
    resv: &[(u64, u64)],
    areas: &[(u64, u64)],
    allowed: &[(u64, u64)],
    addr: u64,
    length: u64,
) -> Result<u64, Errno> {
    if length == 0 || length >= u64::MAX / 2 {
        return Err(Errno::EOVERFLOW);
    }
    let page_offset = addr % page;
    let mut align = length.next_power_of_two();
    if addr != 0 {
        align = align.min(1 << addr.trailing_zeros());
    }
    align = align.min(page);
    if align < iova_alignment {
        return Err(Errno::EINVAL);
    }
    let spans = if allowed.is_empty() {
        vec![(page, u64::MAX - page)]
    } else {
        allowed.to_vec()
    };
    let mut used: Vec<(u64, u64)> = resv.iter().chain(areas).copied().collect();
    used.sort_unstable();
    for (lo, hi) in spans {
        let lo = lo.max(page);
        let hi = hi.min(u64::MAX - page);
        if lo > hi {
            continue;
        }
        for (hs, he) in holes(used.clone(), lo, hi) {
            let start = (hs.saturating_add(align - 1) & !(align - 1)) | page_offset;
            if start >= hs && start.checked_add(length - 1).is_some_and(|end| end <= he) {
                return Ok(start);
            }
        }
    }
    Err(Errno::ENOSPC)
}

#[cfg(test)]
mod tests {
    use super::holes;

    #[test]
    fn holes_between_taken_ranges() {
        assert_eq!(holes(vec![], 0, u64::MAX), vec![(0, u64::MAX)]);
        assert_eq!(
            holes(
                vec![(0x800_0000, 0x80f_ffff), (1 << 48, u64::MAX)],
                0,
                u64::MAX
            ),
            vec![(0, 0x7ff_ffff), (0x810_0000, (1 << 48) - 1)]
        );
        assert_eq!(holes(vec![(0, 9), (5, 20)], 0, 30), vec![(21, 30)]);
    }
}
