//! A userspace driver for QEMU's `edu` device (hw/misc/edu.c) over a VFIO cdev: the
//! identity and liveness registers, the DMA engine, and the interrupt logic behind its MSI.

use std::os::fd::BorrowedFd;
use std::time::Duration;

use vmsi::{Device, MmioRegion};
use vmsi_sys::vfio as v;

use super::{DEADLINE, pci, poll_until};

/// What register 0x00 reads: version 1.0 of the edu device.
pub const ID: u32 = 0x0100_00ed;
/// The device-internal address of edu's 4 KiB DMA buffer.
pub const BUFFER: u64 = 0x4_0000;
/// Size of that buffer.
pub const BUFFER_LEN: usize = 4096;
/// edu's default DMA mask (28 bits): it silently clamps any address above it.
pub const DMA_MASK: u64 = (1 << 28) - 1;
/// The interrupt status bit edu sets when a DMA asked to interrupt on completion.
pub const DMA_IRQ: u32 = 0x100;

const REG_ID: usize = 0x00;
const REG_LIVENESS: usize = 0x04;
const REG_IRQ_STATUS: usize = 0x24;
const REG_IRQ_RAISE: usize = 0x60;
const REG_IRQ_ACK: usize = 0x64;
const REG_DMA_SRC: usize = 0x80;
const REG_DMA_DST: usize = 0x88;
const REG_DMA_COUNT: usize = 0x90;
const REG_DMA_CMD: usize = 0x98;

const CMD_RUN: u32 = 1;
const CMD_TO_RAM: u32 = 2;
const CMD_IRQ: u32 = 4;

/// Why an edu operation failed.
#[derive(Debug)]
pub enum EduError {
    /// A VFIO call failed.
    Vmsi(vmsi::Error),
    /// Register 0x00 does not hold edu's id: not an edu, or BAR0 is not its registers.
    NotEdu {
        /// What it held.
        id: u32,
    },
    /// The liveness register did not return the complement of what was written.
    Dead {
        /// Written.
        wrote: u32,
        /// Read back (should be `!wrote`).
        read: u32,
    },
    /// Refused before touching the device: edu would clamp the address or overrun its
    /// buffer (QEMU only logs that, then copies out of bounds of its own buffer).
    OutOfRange(&'static str),
    /// The DMA engine still ran after the deadline.
    Timeout(&'static str),
}

impl From<vmsi::Error> for EduError {
    fn from(e: vmsi::Error) -> Self {
        EduError::Vmsi(e)
    }
}

/// An edu device bound to an iommufd, its BAR0 mapped.
pub struct Edu {
    device: Device,
    bar: MmioRegion,
}

impl Edu {
    /// Maps BAR0, checks edu's id, turns on bus mastering, and brings the device to a
    /// known state: no DMA running, no interrupt status left over from an earlier user (edu
    /// has no reset VFIO could use, so its state survives from one open to the next).
    pub fn new(device: &Device) -> Result<Edu, EduError> {
        let bar = device.map_region(v::VFIO_PCI_BAR0_REGION_INDEX)?;
        let id = bar.read_u32(REG_ID)?;
        if id != ID {
            return Err(EduError::NotEdu { id });
        }
        pci::enable_bus_master(device)?;
        let edu = Edu {
            device: device.clone(),
            bar,
        };
        edu.wait_idle()?;
        edu.ack()?;
        Ok(edu)
    }

    /// The VFIO device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Register 0x00.
    pub fn id(&self) -> Result<u32, EduError> {
        Ok(self.bar.read_u32(REG_ID)?)
    }

    /// Writes `value` to the liveness register and checks it reads back inverted: proof
    /// that writes reach the device and reads come from it.
    pub fn check_alive(&self, value: u32) -> Result<(), EduError> {
        self.bar.write_u32(REG_LIVENESS, value)?;
        let read = self.bar.read_u32(REG_LIVENESS)?;
        if read == !value {
            Ok(())
        } else {
            Err(EduError::Dead { wrote: value, read })
        }
    }

    fn check(iova: u64, offset: usize, len: usize) -> Result<(), EduError> {
        if len == 0 || offset.checked_add(len).is_none_or(|end| end > BUFFER_LEN) {
            return Err(EduError::OutOfRange("outside edu's 4 KiB buffer"));
        }
        match iova.checked_add(len as u64 - 1) {
            Some(last) if last <= DMA_MASK => Ok(()),
            _ => Err(EduError::OutOfRange("above edu's 28-bit DMA mask")),
        }
    }

    /// Copies `len` bytes of memory at device address `iova` into the buffer at `offset`
    /// (the device reads memory), and waits for the engine to finish.
    pub fn dma_to_device(&self, iova: u64, offset: usize, len: usize) -> Result<(), EduError> {
        Self::check(iova, offset, len)?;
        self.run(iova, BUFFER + offset as u64, len, 0)
    }

    /// Copies `len` bytes of the buffer at `offset` to memory at device address `iova`
    /// (the device writes memory), and waits for the engine to finish.
    pub fn dma_to_ram(&self, offset: usize, iova: u64, len: usize) -> Result<(), EduError> {
        Self::check(iova, offset, len)?;
        self.run(BUFFER + offset as u64, iova, len, CMD_TO_RAM)
    }

    /// As [`Edu::dma_to_ram`], and the device raises its interrupt ([`DMA_IRQ`]) when done.
    pub fn dma_to_ram_then_interrupt(
        &self,
        offset: usize,
        iova: u64,
        len: usize,
    ) -> Result<(), EduError> {
        Self::check(iova, offset, len)?;
        self.run(BUFFER + offset as u64, iova, len, CMD_TO_RAM | CMD_IRQ)
    }

    fn run(&self, src: u64, dst: u64, len: usize, cmd: u32) -> Result<(), EduError> {
        self.wait_idle()?;
        // Every address is below 2^28 (checked), and a 32-bit write replaces the whole
        // 64-bit register in edu, so the high halves never need writing.
        self.bar.write_u32(REG_DMA_SRC, src as u32)?;
        self.bar.write_u32(REG_DMA_DST, dst as u32)?;
        self.bar.write_u32(REG_DMA_COUNT, len as u32)?;
        self.bar.write_u32(REG_DMA_CMD, cmd | CMD_RUN)?;
        self.wait_idle()
    }

    /// Waits until the DMA engine is not running (edu runs a transfer 100 ms of virtual
    /// time after it is started).
    fn wait_idle(&self) -> Result<(), EduError> {
        let idle = poll_until(DEADLINE, || -> Result<_, EduError> {
            Ok((self.bar.read_u32(REG_DMA_CMD)? & CMD_RUN == 0).then_some(()))
        })?;
        idle.ok_or(EduError::Timeout("edu DMA still running"))
    }

    /// Enables MSI (one vector) with `eventfd` through VFIO, which programs the device's
    /// MSI capability with the host's message.
    pub fn enable_msi(&self, eventfd: BorrowedFd<'_>) -> Result<(), EduError> {
        Ok(self
            .device
            .enable_irqs(v::VFIO_PCI_MSI_IRQ_INDEX, &[Some(eventfd)])?)
    }

    /// Disables MSI.
    pub fn disable_msi(&self) -> Result<(), EduError> {
        Ok(self.device.disable_irqs(v::VFIO_PCI_MSI_IRQ_INDEX)?)
    }

    /// Makes the device raise its interrupt: it ORs `bits` into its status and, with MSI
    /// enabled, writes its MSI message (a DMA write through the SMMU to the ITS).
    pub fn raise(&self, bits: u32) -> Result<(), EduError> {
        if bits == 0 {
            return Err(EduError::OutOfRange("edu raises nothing for 0"));
        }
        Ok(self.bar.write_u32(REG_IRQ_RAISE, bits)?)
    }

    /// The interrupt status register.
    pub fn irq_status(&self) -> Result<u32, EduError> {
        Ok(self.bar.read_u32(REG_IRQ_STATUS)?)
    }

    /// Acknowledges every pending interrupt reason, as a driver's handler does; returns the
    /// status it acknowledged.
    pub fn ack(&self) -> Result<u32, EduError> {
        let status = self.irq_status()?;
        if status != 0 {
            self.bar.write_u32(REG_IRQ_ACK, status)?;
        }
        Ok(status)
    }

    /// Polls the interrupt status until `bits` are set (bounded).
    pub fn wait_status(&self, bits: u32, timeout: Duration) -> Result<u32, EduError> {
        let s = poll_until(timeout, || -> Result<_, EduError> {
            let s = self.irq_status()?;
            Ok((s & bits == bits).then_some(s))
        })?;
        s.ok_or(EduError::Timeout("edu interrupt status never set"))
    }
}
