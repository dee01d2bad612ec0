//! Memory shared with devices: DMA buffers and BAR mappings.
//!
//! Both are touched by something other than this thread (a device's DMA, or the device's
//! registers), so every access is a bounds-checked volatile copy; no Rust reference into
//! them is ever handed out.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};
use nix::sys::memfd::{MFdFlags, memfd_create};
use parking_lot::Mutex;

use crate::error::{Errno, Error, Op, Result};

/// Page-aligned memory backed by a memfd, for DMA and for guest RAM.
///
/// It can be mapped into an IOAS by address ([`crate::Ioas::map_memory`]) or by file
/// ([`crate::Ioas::map_file`]); the library reads and writes it only with volatile copies.
#[derive(Debug)]
pub struct DmaMemory {
    file: OwnedFd,
    map: MmapRaw,
}

impl DmaMemory {
    /// Allocates `len` bytes (rounded up to the page size), zero-filled.
    pub fn new(len: usize) -> Result<Self> {
        if len == 0 {
            return Err(Error::InvalidArgument("DMA memory length is 0"));
        }
        let page = page_size();
        let len = len.div_ceil(page) * page;
        let sys = |errno| Error::Kernel {
            op: Op::Mmap,
            errno,
        };
        let file = memfd_create(c"vmsi-dma", MFdFlags::MFD_CLOEXEC).map_err(sys)?;
        nix::unistd::ftruncate(&file, len as i64).map_err(sys)?;
        let map = MmapOptions::new()
            .len(len)
            .map_raw(&file)
            .map_err(io_errno)
            .map_err(sys)?;
        Ok(DmaMemory { file, map })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: empty DMA memory cannot be created.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The process address of the first byte (what `IOMMU_IOAS_MAP` calls `user_va`).
    pub fn addr(&self) -> u64 {
        self.map.as_ptr() as u64
    }

    /// The backing memfd, for `IOMMU_IOAS_MAP_FILE` or to share with a VMM.
    pub fn file(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(Error::InvalidArgument("access past the end of DMA memory")),
        }
    }

    /// Copies `buf.len()` bytes out, starting at `offset`.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        for (k, b) in buf.iter_mut().enumerate() {
            // SAFETY: offset + k < len was checked above and the mapping lives as long as
            // self; a volatile read of one byte of shared memory has no aliasing
            // requirements (devices may write it concurrently).
            *b = unsafe { self.map.as_ptr().add(offset + k).read_volatile() };
        }
        Ok(())
    }

    /// Copies `buf` in, starting at `offset`.
    pub fn write(&self, offset: usize, buf: &[u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        for (k, b) in buf.iter().enumerate() {
            // SAFETY: in bounds as checked; the mapping is writable (MAP_SHARED, PROT_WRITE)
            // and no Rust reference to it exists.
            unsafe { self.map.as_mut_ptr().add(offset + k).write_volatile(*b) };
        }
        Ok(())
    }

    /// Fills `len` bytes from `offset` with `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<()> {
        self.check(offset, len)?;
        for k in 0..len {
            // SAFETY: in bounds as checked; the mapping is writable and never referenced.
            unsafe { self.map.as_mut_ptr().add(offset + k).write_volatile(byte) };
        }
        Ok(())
    }

    /// Reads a little-endian u64 at `offset`.
    pub fn read_u64(&self, offset: usize) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(offset, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian u64 at `offset`.
    pub fn write_u64(&self, offset: usize, value: u64) -> Result<()> {
        self.write(offset, &value.to_le_bytes())
    }

    /// Reads a little-endian u32 at `offset`.
    pub fn read_u32(&self, offset: usize) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Writes a little-endian u32 at `offset`.
    pub fn write_u32(&self, offset: usize, value: u32) -> Result<()> {
        self.write(offset, &value.to_le_bytes())
    }
}

fn io_errno(e: std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32))
}

/// Orders this thread's earlier writes to DMA memory before its later writes to DMA memory
/// as a device sees them (Linux's `dma_wmb`). Register writes through [`MmioRegion`] order
/// themselves after earlier memory writes already.
pub fn dma_write_barrier() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a data memory barrier takes no operands and touches no memory.
    unsafe {
        std::arch::asm!("dmb oshst", options(nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

/// Orders every earlier memory write before a following device register write (Linux's
/// `__iowmb` in `writel`): a doorbell write must not overtake the descriptors it announces.
fn io_write_barrier() {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a data synchronization barrier takes no operands and touches no memory.
    unsafe {
        std::arch::asm!("dsb st", options(nostack, preserves_flags))
    };
    #[cfg(not(target_arch = "aarch64"))]
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
}

/// The system page size.
pub fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as usize)
}

/// A mapped device region (a BAR), read and written with aligned volatile 32/64-bit accesses.
#[derive(Debug, Clone)]
pub struct MmioRegion {
    backing: Backing,
}

#[derive(Debug, Clone)]
enum Backing {
    Host(Arc<MmapRaw>),
    Sim(Arc<Mutex<Vec<u8>>>),
}

impl MmioRegion {
    pub(crate) fn host(map: MmapRaw) -> Self {
        MmioRegion {
            backing: Backing::Host(Arc::new(map)),
        }
    }

    pub(crate) fn sim(mem: Arc<Mutex<Vec<u8>>>) -> Self {
        MmioRegion {
            backing: Backing::Sim(mem),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        match &self.backing {
            Backing::Host(m) => m.len(),
            Backing::Sim(m) => m.lock().len(),
        }
    }

    /// True for a zero-length region.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self, offset: usize, size: usize) -> Result<()> {
        let ok = offset % size == 0 && offset.checked_add(size).is_some_and(|e| e <= self.len());
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(
                "unaligned or out-of-range MMIO access",
            ))
        }
    }

    /// 32-bit read at `offset` (4-byte aligned).
    pub fn read_u32(&self, offset: usize) -> Result<u32> {
        self.check(offset, 4)?;
        Ok(match &self.backing {
            // SAFETY: aligned and in bounds (checked); device memory must be read with a
            // single volatile access of the register's width.
            Backing::Host(m) => unsafe { (m.as_ptr().add(offset) as *const u32).read_volatile() },
            Backing::Sim(m) => {
                let m = m.lock();
                u32::from_le_bytes([m[offset], m[offset + 1], m[offset + 2], m[offset + 3]])
            }
        })
    }

    /// 32-bit write at `offset` (4-byte aligned), ordered after every earlier memory write.
    pub fn write_u32(&self, offset: usize, value: u32) -> Result<()> {
        self.check(offset, 4)?;
        io_write_barrier();
        match &self.backing {
            // SAFETY: aligned and in bounds (checked); the BAR is mapped writable.
            Backing::Host(m) => unsafe {
                (m.as_mut_ptr().add(offset) as *mut u32).write_volatile(value)
            },
            Backing::Sim(m) => m.lock()[offset..offset + 4].copy_from_slice(&value.to_le_bytes()),
        }
        Ok(())
    }

    /// 64-bit write as two 32-bit writes, low half first.
    pub fn write_u64(&self, offset: usize, value: u64) -> Result<()> {
        self.check(offset, 8)?;
        self.write_u32(offset, value as u32)?;
        self.write_u32(offset + 4, (value >> 32) as u32)
    }

    /// 64-bit read as two 32-bit reads, low half first (the order PCI MSI-X tables need).
    pub fn read_u64(&self, offset: usize) -> Result<u64> {
        self.check(offset, 8)?;
        let lo = self.read_u32(offset)? as u64;
        let hi = self.read_u32(offset + 4)? as u64;
        Ok(lo | (hi << 32))
    }
}
