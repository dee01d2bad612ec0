//! Just enough of an NVMe guest driver to make the controller raise a chosen MSI-X vector:
//! admin queues, I/O queue pairs each created with its own interrupt vector, Identify and
//! Flush. A small copy of the tests' driver (`tests/support/nvme.rs`), with its queues in
//! guest RAM. Completions are found by polling, so the driver never depends on the
//! interrupts the launcher is checking; every wait is bounded.

use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

use vmsi::{Device, MmioRegion};

use super::guest::GuestRam;

const ENTRIES: u16 = 16;
const PAGE: u64 = 4096;
const SQE: u64 = 64;
const CQE: u64 = 16;

// Controller registers (BAR0).
const REG_CAP: usize = 0x00;
const REG_CC: usize = 0x14;
const REG_CSTS: usize = 0x1c;
const REG_AQA: usize = 0x24;
const REG_ASQ: usize = 0x28;
const REG_ACQ: usize = 0x30;
const DOORBELLS: usize = 0x1000;
// CC: enable, with 64-byte submission and 16-byte completion entries.
const CC_ENABLE: u32 = 1 | (6 << 16) | (4 << 20);
const CSTS_READY: u32 = 1;

const ADMIN_CREATE_SQ: u32 = 0x01;
const ADMIN_CREATE_CQ: u32 = 0x05;
const ADMIN_IDENTIFY: u32 = 0x06;
const NVM_FLUSH: u32 = 0x00;

/// How long a command may take on the rig's TCG machine.
const COMMAND_DEADLINE: Duration = Duration::from_secs(5);

/// PCI_COMMAND: memory decode and bus mastering. VFIO clears bus mastering on open; without
/// it the device's DMA, and its MSI writes (DMA too), go nowhere.
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY_MASTER: u16 = (1 << 1) | (1 << 2);

/// A doorbell write that submits what was prepared: `tail` to BAR0 offset `doorbell`.
#[derive(Clone, Copy, Debug)]
pub struct Ring {
    /// Offset of the submission queue's tail doorbell in BAR0.
    pub doorbell: usize,
    /// The new tail.
    pub tail: u32,
}

/// One queue pair's place in guest RAM, and the driver's cursor in it.
#[derive(Clone, Copy)]
struct Queue {
    /// Offset of its three pages (SQ, CQ, data) from the queue area.
    offset: u64,
    tail: u16,
    head: u16,
    phase: bool,
}

impl Queue {
    fn new(qid: u16) -> Self {
        Queue {
            offset: 3 * PAGE * qid as u64,
            tail: 0,
            head: 0,
            phase: true,
        }
    }
}

/// An NVMe controller driven from the launcher, playing the guest's driver.
pub struct Nvme<'r> {
    bar: MmioRegion,
    ram: &'r GuestRam,
    /// GPA of the queue area, and the address the device reaches it at (the same GPA in
    /// paging mode, a guest IOVA under the guest's stage 1).
    area_gpa: u64,
    area_dma: u64,
    stride: usize,
    queues: Vec<Queue>,
    next_cid: u16,
}

impl<'r> Nvme<'r> {
    /// Bytes of guest RAM the queue area needs for `io_queues` I/O queue pairs.
    pub fn area_len(io_queues: u16) -> u64 {
        3 * PAGE * (io_queues as u64 + 1)
    }

    /// Takes over `device`; its queues go to guest RAM at `area_gpa`, which the device
    /// reaches at `area_dma`.
    pub fn new(
        device: &Device,
        ram: &'r GuestRam,
        area_gpa: u64,
        area_dma: u64,
        io_queues: u16,
    ) -> Result<Self, String> {
        let bar = device.map_region(0).map_err(|e| format!("BAR0: {e}"))?;
        let mut cmd = [0u8; 2];
        device
            .read_config(PCI_COMMAND, &mut cmd)
            .map_err(|e| format!("PCI command: {e}"))?;
        let cmd = u16::from_le_bytes(cmd) | PCI_COMMAND_MEMORY_MASTER;
        device
            .write_config(PCI_COMMAND, &cmd.to_le_bytes())
            .map_err(|e| format!("PCI command: {e}"))?;
        let cap = bar.read_u64(REG_CAP).map_err(|e| format!("CAP: {e}"))?;
        ram.zero(area_gpa, Self::area_len(io_queues) as usize)
            .map_err(|e| format!("queue memory: {e}"))?;
        Ok(Nvme {
            bar,
            ram,
            area_gpa,
            area_dma,
            stride: 4 << ((cap >> 32) & 0xf),
            queues: (0..=io_queues).map(Queue::new).collect(),
            next_cid: 1,
        })
    }

    #[cfg_attr(not(all(feature = "kvm", target_arch = "aarch64")), allow(dead_code))]
    /// BAR0's length.
    pub fn bar_len(&self) -> usize {
        self.bar.len()
    }

    fn reg(&self, offset: usize, value: u32) -> Result<(), String> {
        self.bar
            .write_u32(offset, value)
            .map_err(|e| format!("register {offset:#x}: {e}"))
    }

    /// Resets the controller and enables it with empty admin queues.
    pub fn enable(&mut self) -> Result<(), String> {
        self.reg(REG_CC, 0)?;
        self.wait_ready(false)?;
        let n = (ENTRIES - 1) as u32;
        self.reg(REG_AQA, n | (n << 16))?;
        let sq = self.area_dma;
        let cq = self.area_dma + PAGE;
        self.reg(REG_ASQ, sq as u32)?;
        self.reg(REG_ASQ + 4, (sq >> 32) as u32)?;
        self.reg(REG_ACQ, cq as u32)?;
        self.reg(REG_ACQ + 4, (cq >> 32) as u32)?;
        self.reg(REG_CC, CC_ENABLE)?;
        self.wait_ready(true)
    }

    fn wait_ready(&self, ready: bool) -> Result<(), String> {
        let deadline = Instant::now() + COMMAND_DEADLINE;
        loop {
            let csts = self.bar.read_u32(REG_CSTS).map_err(|e| e.to_string())?;
            if (csts & CSTS_READY != 0) == ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("controller not ready={ready} (CSTS {csts:#x})"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Creates I/O completion queue `qid` raising MSI-X `vector`, and its submission queue.
    pub fn create_io_queue_pair(&mut self, qid: u16, vector: u16) -> Result<(), String> {
        let q = self.queues[qid as usize];
        let size = (ENTRIES as u32 - 1) << 16;
        let cq = self.area_dma + q.offset + PAGE;
        let sq = self.area_dma + q.offset;
        // CDW11: physically contiguous, interrupts enabled, interrupt vector.
        let cq_flags = 1 | 2 | ((vector as u32) << 16);
        self.execute(0, [ADMIN_CREATE_CQ, 0], cq, qid as u32 | size, cq_flags)?;
        // CDW11: physically contiguous, the completion queue's id.
        let sq_flags = 1 | ((qid as u32) << 16);
        self.execute(0, [ADMIN_CREATE_SQ, 0], sq, qid as u32 | size, sq_flags)
    }

    /// Identify Controller on the admin queue, whose completions raise vector 0.
    pub fn identify(&mut self) -> Result<(), String> {
        let data = self.area_dma + 2 * PAGE;
        self.execute(0, [ADMIN_IDENTIFY, 0], data, 1, 0)
    }

    /// Flush of namespace 1 on I/O queue `qid`.
    pub fn flush(&mut self, qid: u16) -> Result<(), String> {
        self.execute(qid, [NVM_FLUSH, 1], 0, 0, 0)
    }

    /// Submits one command (`[opcode, nsid]`, PRP1, CDW10, CDW11) on queue `qid` and waits
    /// for its successful completion.
    fn execute(
        &mut self,
        qid: u16,
        command: [u32; 2],
        prp1: u64,
        cdw10: u32,
        cdw11: u32,
    ) -> Result<(), String> {
        let ring = self.prepare(qid, command, prp1, cdw10, cdw11)?;
        self.reg(ring.doorbell, ring.tail)?;
        self.finish(qid, command[0])
    }

    /// Writes one command into queue `qid`'s next submission slot in guest RAM without
    /// telling the device; returns the doorbell write that submits it.
    fn prepare(
        &mut self,
        qid: u16,
        [opcode, nsid]: [u32; 2],
        prp1: u64,
        cdw10: u32,
        cdw11: u32,
    ) -> Result<Ring, String> {
        let q = *self
            .queues
            .get(qid as usize)
            .ok_or_else(|| format!("no queue {qid}"))?;
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1).max(1);
        let mut words = [0u32; 16];
        words[0] = opcode | ((cid as u32) << 16);
        words[1] = nsid;
        words[6] = prp1 as u32;
        words[7] = (prp1 >> 32) as u32;
        words[10] = cdw10;
        words[11] = cdw11;
        let slot = self.area_gpa + q.offset + q.tail as u64 * SQE;
        for (k, w) in words.iter().enumerate() {
            self.ram
                .write_u32(slot + 4 * k as u64, *w)
                .map_err(|e| e.to_string())?;
        }
        let tail = (q.tail + 1) % ENTRIES;
        self.queues[qid as usize].tail = tail;
        // The entry must be in memory before the device hears of it.
        fence(Ordering::SeqCst);
        Ok(Ring {
            doorbell: self.doorbell(qid, false),
            tail: tail as u32,
        })
    }

    /// Waits (bounded) for the completion of the command submitted last on `qid` and
    /// checks its status.
    fn finish(&mut self, qid: u16, opcode: u32) -> Result<(), String> {
        let status = self.complete(qid, opcode)?;
        if status != 0 {
            return Err(format!(
                "opcode {opcode:#x} on queue {qid}: status {status:#x}"
            ));
        }
        Ok(())
    }

    #[cfg_attr(not(all(feature = "kvm", target_arch = "aarch64")), allow(dead_code))]
    /// Prepares the command that makes the device raise `vector` (Identify on the admin
    /// queue for vector 0, Flush on I/O queue `vector` otherwise) for a guest to submit
    /// with the returned doorbell write; [`Nvme::reap`] then consumes its completion.
    pub fn prepare_for_vector(&mut self, vector: u16) -> Result<Ring, String> {
        match vector {
            0 => {
                let data = self.area_dma + 2 * PAGE;
                self.prepare(0, [ADMIN_IDENTIFY, 0], data, 1, 0)
            }
            q => self.prepare(q, [NVM_FLUSH, 1], 0, 0, 0),
        }
    }

    #[cfg_attr(not(all(feature = "kvm", target_arch = "aarch64")), allow(dead_code))]
    /// Consumes the completion of the command [`Nvme::prepare_for_vector`] prepared.
    pub fn reap(&mut self, vector: u16) -> Result<(), String> {
        let opcode = if vector == 0 {
            ADMIN_IDENTIFY
        } else {
            NVM_FLUSH
        };
        self.finish(vector, opcode)
    }

    #[cfg_attr(not(all(feature = "kvm", target_arch = "aarch64")), allow(dead_code))]
    /// Writes a submission doorbell on a guest's behalf: `offset` must be the submission
    /// tail doorbell of one of the queues and `value` a slot index (a guest's MMIO write
    /// is hostile, so anything else is refused).
    pub fn forward_doorbell(&self, offset: u64, value: u64) -> Result<(), String> {
        let qid = (0..self.queues.len() as u16)
            .find(|&q| self.doorbell(q, false) as u64 == offset)
            .ok_or_else(|| format!("BAR0 offset {offset:#x} is no submission doorbell"))?;
        let tail = u32::try_from(value)
            .ok()
            .filter(|&t| t < ENTRIES as u32)
            .ok_or_else(|| format!("queue {qid} has no slot {value:#x}"))?;
        self.reg(offset as usize, tail)
    }

    fn doorbell(&self, qid: u16, completion: bool) -> usize {
        DOORBELLS + (2 * qid as usize + completion as usize) * self.stride
    }

    /// Waits (bounded) for the next completion on `qid`, consumes it and returns its status.
    fn complete(&mut self, qid: u16, opcode: u32) -> Result<u16, String> {
        let q = self.queues[qid as usize];
        let slot = self.area_gpa + q.offset + PAGE + q.head as u64 * CQE;
        let deadline = Instant::now() + COMMAND_DEADLINE;
        let dw3 = loop {
            let dw3 = self.ram.read_u32(slot + 12).map_err(|e| e.to_string())?;
            if (dw3 >> 16) & 1 == q.phase as u32 {
                break dw3;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no completion for opcode {opcode:#x} on queue {qid}"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let head = (q.head + 1) % ENTRIES;
        let q = &mut self.queues[qid as usize];
        q.head = head;
        if head == 0 {
            q.phase = !q.phase;
        }
        self.reg(self.doorbell(qid, true), head as u32)?;
        Ok((dw3 >> 17) as u16)
    }
}

impl Drop for Nvme<'_> {
    fn drop(&mut self) {
        // Stop the controller's DMA before guest RAM goes away; VFIO resets it on close too.
        let _ = self.bar.write_u32(REG_CC, 0);
    }
}
