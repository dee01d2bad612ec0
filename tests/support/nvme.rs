//! A minimal NVMe controller driver over a VFIO cdev: admin queues in DMA memory, Identify,
//! I/O queue pairs each with its own MSI-X vector, and Flush / one-block Read and Write.
//!
//! Completions are found by polling the completion queue's phase bit, so the driver never
//! depends on interrupts; tests check the interrupts (the MSI-X eventfds) separately.

use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use vmsi::{Device, DmaMemory, MmioRegion};
use vmsi_sys::vfio as v;

use nix::sys::eventfd::{EfdFlags, EventFd};
use std::os::fd::{AsFd, BorrowedFd};

use super::{DEADLINE, IRQ_DEADLINE, counts, fired_within, pci, poll_until};

/// Entries in every queue (admin and I/O).
pub const QUEUE_ENTRIES: u16 = 16;
const PAGE: usize = 4096;
const SQE: usize = 64;
const CQE: usize = 16;

// Controller registers (BAR0).
const REG_CAP: usize = 0x00;
const REG_CC: usize = 0x14;
const REG_CSTS: usize = 0x1c;
const REG_AQA: usize = 0x24;
const REG_ASQ: usize = 0x28;
const REG_ACQ: usize = 0x30;
const DOORBELLS: usize = 0x1000;

const CC_EN: u32 = 1;
// IOSQES = 6 (64-byte entries), IOCQES = 4 (16-byte entries): the only sizes QEMU takes.
const CC_QUEUE_ENTRY_SIZES: u32 = (6 << 16) | (4 << 20);
const CSTS_RDY: u32 = 1;
const CSTS_CFS: u32 = 2;

// Opcodes.
const ADMIN_CREATE_SQ: u8 = 0x01;
const ADMIN_CREATE_CQ: u8 = 0x05;
const ADMIN_IDENTIFY: u8 = 0x06;
const NVM_FLUSH: u8 = 0x00;
const NVM_WRITE: u8 = 0x01;
const NVM_READ: u8 = 0x02;

/// Why an NVMe operation failed.
#[derive(Debug)]
pub enum NvmeError {
    /// A VFIO call failed.
    Vmsi(vmsi::Error),
    /// Misuse of the driver (unknown queue, memory too small, ...); nothing was sent.
    Invalid(&'static str),
    /// The controller did not reach the wanted state in time.
    NotReady {
        /// Whether it was being enabled (true) or disabled.
        enabling: bool,
        /// CSTS at the deadline.
        csts: u32,
    },
    /// CSTS.CFS: the controller reported a fatal status.
    Fatal {
        /// CSTS.
        csts: u32,
    },
    /// No completion arrived in time.
    Timeout {
        /// The queue waited on.
        qid: u16,
        /// The command's opcode.
        opcode: u8,
    },
    /// A completion for some other command arrived.
    WrongCompletion {
        /// The command id waited for.
        expected: u16,
        /// What arrived.
        got: Completion,
    },
    /// The command completed with a non-zero status.
    Status {
        /// The command's opcode.
        opcode: u8,
        /// Status field (SCT << 8 | SC, plus the DNR/More bits above).
        status: u16,
    },
}

impl From<vmsi::Error> for NvmeError {
    fn from(e: vmsi::Error) -> Self {
        NvmeError::Vmsi(e)
    }
}

/// One completion queue entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Dword 0, command specific.
    pub result: u32,
    /// How far the controller has consumed the submission queue.
    pub sq_head: u16,
    /// The submission queue the command came from.
    pub sq_id: u16,
    /// The command id.
    pub cid: u16,
    /// Status field without the phase bit; 0 is success.
    pub status: u16,
}

/// What Identify Controller says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerIdentity {
    /// PCI vendor id.
    pub vid: u16,
    /// Serial number, trimmed.
    pub serial: String,
    /// Model number, trimmed.
    pub model: String,
}

#[derive(Clone, Copy, Debug)]
struct Queue {
    qid: u16,
    /// Offsets in the driver's memory.
    sq: usize,
    cq: usize,
    data: usize,
    tail: u16,
    head: u16,
    phase: bool,
    outstanding: u16,
}

impl Queue {
    fn new(qid: u16) -> Self {
        let page = 3 * qid as usize;
        Queue {
            qid,
            sq: page * PAGE,
            cq: (page + 1) * PAGE,
            data: (page + 2) * PAGE,
            tail: 0,
            head: 0,
            phase: true,
            outstanding: 0,
        }
    }
}

/// A 64-byte submission queue entry being built.
#[derive(Clone, Copy, Debug)]
pub struct Command([u32; 16]);

impl Command {
    /// An empty command with `opcode` for namespace `nsid`.
    pub fn new(opcode: u8, nsid: u32) -> Self {
        let mut c = [0u32; 16];
        c[0] = opcode as u32;
        c[1] = nsid;
        Command(c)
    }

    /// Sets PRP entry 1 (the data pointer; one page is all this driver transfers).
    pub fn prp1(mut self, addr: u64) -> Self {
        self.0[6] = addr as u32;
        self.0[7] = (addr >> 32) as u32;
        self
    }

    /// Sets command dword `n` (10..=15).
    pub fn dw(mut self, n: usize, value: u32) -> Self {
        self.0[n] = value;
        self
    }

    fn opcode(&self) -> u8 {
        self.0[0] as u8
    }
}

/// An NVMe controller driven from userspace, with its queues in `DmaMemory` that the
/// caller mapped where the device can reach it.
pub struct Nvme {
    device: Device,
    bar: MmioRegion,
    mem: DmaMemory,
    base: u64,
    doorbell_stride: usize,
    ready_timeout: Duration,
    admin: Queue,
    io: Vec<Option<Queue>>,
    next_cid: u16,
    io_queues: u16,
}

impl Nvme {
    /// Bytes of DMA memory the driver needs for `io_queues` I/O queue pairs: a submission
    /// queue, a completion queue and a data page for the admin queue and for each pair.
    pub fn memory_len(io_queues: u16) -> usize {
        3 * (io_queues as usize + 1) * PAGE
    }

    /// Takes over `device` with `mem` (at least [`Nvme::memory_len`]), which the device
    /// reaches at device address `base` (an IOVA, or a stage-1 VA under nesting). MSI-X
    /// must already be enabled through VFIO for I/O queues to get vectors other than 0.
    pub fn new(
        device: &Device,
        mem: DmaMemory,
        base: u64,
        io_queues: u16,
    ) -> Result<Self, NvmeError> {
        if mem.len() < Self::memory_len(io_queues) {
            return Err(NvmeError::Invalid("DMA memory too small for the queues"));
        }
        if base % PAGE as u64 != 0 {
            return Err(NvmeError::Invalid("queue memory must be page aligned"));
        }
        let bar = device.map_region(v::VFIO_PCI_BAR0_REGION_INDEX)?;
        pci::enable_bus_master(device)?;
        let cap = bar.read_u64(REG_CAP)?;
        let mqes = (cap & 0xffff) as u16;
        if mqes < QUEUE_ENTRIES - 1 {
            return Err(NvmeError::Invalid("the controller's queues are too short"));
        }
        // CAP.TO is in 500 ms units; a second on top for TCG.
        let ready_timeout = Duration::from_millis(((cap >> 24) & 0xff) * 500 + 1000);
        Ok(Nvme {
            device: device.clone(),
            bar,
            mem,
            base,
            doorbell_stride: 4 << ((cap >> 32) & 0xf),
            ready_timeout,
            admin: Queue::new(0),
            io: vec![None; io_queues as usize],
            next_cid: 1,
            io_queues,
        })
    }

    /// The VFIO device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The driver's DMA memory (queues and data pages).
    pub fn memory(&self) -> &DmaMemory {
        &self.mem
    }

    fn csts(&self) -> Result<u32, NvmeError> {
        Ok(self.bar.read_u32(REG_CSTS)?)
    }

    fn wait_ready(&self, enabling: bool) -> Result<(), NvmeError> {
        let done = poll_until(self.ready_timeout, || -> Result<_, NvmeError> {
            let csts = self.csts()?;
            if enabling && csts & CSTS_CFS != 0 {
                return Err(NvmeError::Fatal { csts });
            }
            Ok(((csts & CSTS_RDY != 0) == enabling).then_some(()))
        })?;
        match done {
            Some(()) => Ok(()),
            None => Err(NvmeError::NotReady {
                enabling,
                csts: self.csts()?,
            }),
        }
    }

    /// Resets the controller (CC.EN = 0) and enables it with fresh admin queues.
    pub fn enable(&mut self) -> Result<(), NvmeError> {
        self.disable()?;
        // Stale entries with a set phase bit would read as completions.
        for off in (0..Self::memory_len(self.io_queues)).step_by(8) {
            self.mem.write_u64(off, 0)?;
        }
        self.admin = Queue::new(0);
        self.io.iter_mut().for_each(|q| *q = None);
        let n = (QUEUE_ENTRIES - 1) as u32;
        self.bar.write_u32(REG_AQA, n | (n << 16))?;
        let asq = self.base + self.admin.sq as u64;
        let acq = self.base + self.admin.cq as u64;
        self.bar.write_u32(REG_ASQ, asq as u32)?;
        self.bar.write_u32(REG_ASQ + 4, (asq >> 32) as u32)?;
        self.bar.write_u32(REG_ACQ, acq as u32)?;
        self.bar.write_u32(REG_ACQ + 4, (acq >> 32) as u32)?;
        self.bar.write_u32(REG_CC, CC_QUEUE_ENTRY_SIZES | CC_EN)?;
        self.wait_ready(true)
    }

    /// CC.EN = 0 and wait for CSTS.RDY = 0: the controller drops its queues and stops DMA.
    pub fn disable(&mut self) -> Result<(), NvmeError> {
        self.bar.write_u32(REG_CC, 0)?;
        self.wait_ready(false)
    }

    fn queue(&mut self, qid: u16) -> Result<&mut Queue, NvmeError> {
        if qid == 0 {
            return Ok(&mut self.admin);
        }
        self.io
            .get_mut(qid as usize - 1)
            .and_then(|q| q.as_mut())
            .ok_or(NvmeError::Invalid("no such I/O queue"))
    }

    fn doorbell(&self, qid: u16, completion: bool) -> usize {
        DOORBELLS + (2 * qid as usize + completion as usize) * self.doorbell_stride
    }

    /// Puts `cmd` on submission queue `qid` and rings its doorbell; returns the command id.
    pub fn submit(&mut self, qid: u16, cmd: Command) -> Result<u16, NvmeError> {
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1).max(1);
        let q = *self.queue(qid)?;
        if q.outstanding >= QUEUE_ENTRIES - 1 {
            return Err(NvmeError::Invalid("submission queue full"));
        }
        let mut words = cmd.0;
        words[0] = (words[0] & 0xffff) | ((cid as u32) << 16);
        let slot = q.sq + q.tail as usize * SQE;
        for (k, w) in words.iter().enumerate() {
            self.mem.write_u32(slot + 4 * k, *w)?;
        }
        let tail = (q.tail + 1) % QUEUE_ENTRIES;
        {
            let q = self.queue(qid)?;
            q.tail = tail;
            q.outstanding += 1;
        }
        // The entry must be in memory before the device hears of it.
        fence(Ordering::SeqCst);
        self.bar.write_u32(self.doorbell(qid, false), tail as u32)?;
        Ok(cid)
    }

    /// Waits (bounded) for the next completion on queue `qid`, consumes it and rings the
    /// completion queue's head doorbell.
    pub fn next_completion(&mut self, qid: u16, opcode: u8) -> Result<Completion, NvmeError> {
        let q = *self.queue(qid)?;
        let slot = q.cq + q.head as usize * CQE;
        let dw3 = poll_until(DEADLINE, || -> Result<_, NvmeError> {
            let dw3 = self.mem.read_u32(slot + 12)?;
            Ok(((dw3 >> 16) & 1 == q.phase as u32).then_some(dw3))
        })?
        .ok_or(NvmeError::Timeout { qid, opcode })?;
        // The rest of the entry is read only after its phase bit says it is complete.
        fence(Ordering::SeqCst);
        let dw2 = self.mem.read_u32(slot + 8)?;
        let c = Completion {
            result: self.mem.read_u32(slot)?,
            sq_head: dw2 as u16,
            sq_id: (dw2 >> 16) as u16,
            cid: dw3 as u16,
            status: (dw3 >> 17) as u16,
        };
        let head = (q.head + 1) % QUEUE_ENTRIES;
        {
            let q = self.queue(qid)?;
            q.head = head;
            if head == 0 {
                q.phase = !q.phase;
            }
            q.outstanding = q.outstanding.saturating_sub(1);
        }
        self.bar.write_u32(self.doorbell(qid, true), head as u32)?;
        Ok(c)
    }

    /// Submits `cmd` on queue `qid` and waits for its successful completion.
    pub fn execute(&mut self, qid: u16, cmd: Command) -> Result<Completion, NvmeError> {
        let cid = self.submit(qid, cmd)?;
        let c = self.next_completion(qid, cmd.opcode())?;
        if c.cid != cid || c.sq_id != qid {
            return Err(NvmeError::WrongCompletion {
                expected: cid,
                got: c,
            });
        }
        if c.status != 0 {
            return Err(NvmeError::Status {
                opcode: cmd.opcode(),
                status: c.status,
            });
        }
        Ok(c)
    }

    fn data_addr(&self, qid: u16) -> u64 {
        self.base + Queue::new(qid).data as u64
    }

    /// Offset in [`Nvme::memory`] of queue `qid`'s data page (what Read fills and Write
    /// sends).
    pub fn data_offset(&self, qid: u16) -> usize {
        Queue::new(qid).data
    }

    fn string(&self, at: usize, len: usize) -> Result<String, NvmeError> {
        let mut b = vec![0u8; len];
        self.mem.read(at, &mut b)?;
        Ok(String::from_utf8_lossy(&b).trim_end().to_owned())
    }

    /// Identify Controller (CNS 1) into the admin data page.
    pub fn identify_controller(&mut self) -> Result<ControllerIdentity, NvmeError> {
        let data = self.admin.data;
        self.mem.write(data, &[0u8; PAGE])?;
        let cmd = Command::new(ADMIN_IDENTIFY, 0)
            .prp1(self.data_addr(0))
            .dw(10, 1);
        self.execute(0, cmd)?;
        let mut vid = [0u8; 2];
        self.mem.read(data, &mut vid)?;
        Ok(ControllerIdentity {
            vid: u16::from_le_bytes(vid),
            serial: self.string(data + 4, 20)?,
            model: self.string(data + 24, 40)?,
        })
    }

    /// Identify Namespace (CNS 0) for `nsid`; returns its formatted LBA size in bytes.
    pub fn lba_size(&mut self, nsid: u32) -> Result<usize, NvmeError> {
        let data = self.admin.data;
        let cmd = Command::new(ADMIN_IDENTIFY, nsid).prp1(self.data_addr(0));
        self.execute(0, cmd)?;
        let mut flbas = [0u8; 1];
        self.mem.read(data + 26, &mut flbas)?;
        let format = (flbas[0] & 0xf) as usize;
        let lbaf = self.mem.read_u32(data + 128 + 4 * format)?;
        let shift = (lbaf >> 16) & 0xff;
        if !(9..=12).contains(&shift) {
            return Err(NvmeError::Invalid("LBA size outside 512..=4096"));
        }
        Ok(1 << shift)
    }

    /// Creates I/O completion queue `qid` raising MSI-X `vector`, then I/O submission
    /// queue `qid` completing into it.
    pub fn create_io_queue_pair(&mut self, qid: u16, vector: u16) -> Result<(), NvmeError> {
        if qid == 0 || qid > self.io_queues {
            return Err(NvmeError::Invalid("I/O queue id out of range"));
        }
        let q = Queue::new(qid);
        let size = (QUEUE_ENTRIES as u32 - 1) << 16;
        // CDW11: physically contiguous, interrupts enabled, IV.
        let cq = Command::new(ADMIN_CREATE_CQ, 0)
            .prp1(self.base + q.cq as u64)
            .dw(10, qid as u32 | size)
            .dw(11, 1 | 2 | ((vector as u32) << 16));
        self.execute(0, cq)?;
        // CDW11: physically contiguous, CQID.
        let sq = Command::new(ADMIN_CREATE_SQ, 0)
            .prp1(self.base + q.sq as u64)
            .dw(10, qid as u32 | size)
            .dw(11, 1 | ((qid as u32) << 16));
        self.execute(0, sq)?;
        self.io[qid as usize - 1] = Some(q);
        Ok(())
    }

    /// NVM Flush of namespace 1 on I/O queue `qid`.
    pub fn flush(&mut self, qid: u16) -> Result<Completion, NvmeError> {
        self.execute(qid, Command::new(NVM_FLUSH, 1))
    }

    /// Submits a Flush on `qid` without waiting, for callers that wait themselves.
    pub fn submit_flush(&mut self, qid: u16) -> Result<u16, NvmeError> {
        self.submit(qid, Command::new(NVM_FLUSH, 1))
    }

    /// Writes one block of namespace 1 at `lba` from queue `qid`'s data page.
    pub fn write_block(&mut self, qid: u16, lba: u64) -> Result<Completion, NvmeError> {
        let cmd = Command::new(NVM_WRITE, 1)
            .prp1(self.data_addr(qid))
            .dw(10, lba as u32)
            .dw(11, (lba >> 32) as u32);
        self.execute(qid, cmd)
    }

    /// Reads one block of namespace 1 at `lba` into queue `qid`'s data page.
    pub fn read_block(&mut self, qid: u16, lba: u64) -> Result<Completion, NvmeError> {
        let cmd = Command::new(NVM_READ, 1)
            .prp1(self.data_addr(qid))
            .dw(10, lba as u32)
            .dw(11, (lba >> 32) as u32);
        self.execute(qid, cmd)
    }
}

impl Drop for Nvme {
    fn drop(&mut self) {
        // Stop the controller's DMA before its queue memory goes away; VFIO resets the
        // function on close as well, so a failure here is harmless.
        let _ = self.bar.write_u32(REG_CC, 0);
    }
}

/// Eventfds for MSI-X vectors 1..=`n`, the I/O queues' vectors; vector 0 gets none (see
/// [`msix_set`]).
pub fn io_vector_eventfds(n: u16) -> Vec<EventFd> {
    (0..n)
        .map(|_| {
            EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC).expect("eventfd")
        })
        .collect()
}

/// `[None, fd1, .., fdN]`: vector 0 (the admin queue's) allocated but without an eventfd.
/// The kernel leaves it masked, so an admin completion's MSI stays pending in the device
/// instead of arriving late while the I/O vectors are checked one by one.
pub fn msix_set(io: &[EventFd]) -> Vec<Option<BorrowedFd<'_>>> {
    std::iter::once(None)
        .chain(io.iter().map(|f| Some(f.as_fd())))
        .collect()
}

/// A completion on I/O queue `q` (`1..=io.len()`, vector q) fires `io[q - 1]` and no
/// other eventfd.
pub fn assert_only_vector_fires(nvme: &mut Nvme, io: &[EventFd], q: u16, why: &str) {
    assert_eq!(counts(io), vec![0; io.len()], "{why}: quiet before");
    nvme.flush(q)
        .unwrap_or_else(|e| panic!("{why}: flush on queue {q}: {e:?}"));
    assert!(
        fired_within(&io[q as usize - 1], IRQ_DEADLINE) >= 1,
        "{why}: vector {q} fired"
    );
    assert_eq!(counts(io), vec![0; io.len()], "{why}: no other vector");
}
