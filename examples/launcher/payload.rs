//! The guest payload: a tiny bare-metal program the launcher runs on the VM's one vCPU
//! (EL1, MMU off), doing what a guest kernel's GIC, ITS and PCI drivers do to receive a
//! passed-through device's MSIs as LPIs. `x0` holds the GPA of its parameter block
//! ([`Params`]); every address it uses comes from there.
//!
//! 1. GIC CPU interface on: system registers, priority mask open, group 1 enabled.
//! 2. Distributor: group 1 enabled (LPIs are group 1, and KVM delivers nothing while it is
//!    off).
//! 3. Redistributor: a configuration byte per LPI (priority 0xa0, enabled) in the property
//!    table, the property and pending tables (`GICR_PROPBASER`, `GICR_PENDBASER`), then
//!    `GICR_CTLR.EnableLPIs`.
//! 4. Virtual ITS: device and collection tables (`GITS_BASER0/1`), the command queue
//!    (`GITS_CBASER`), enable; then `MAPD` (the device, its ITT), `MAPC` (collection 0 ->
//!    this vCPU), per vector `MAPTI` (EventID k -> LPI `first_lpi + k`) and `INV`, and a
//!    `SYNC`.
//! 5. The device's MSI-X table, as Linux programs it: Message Control = enable + function
//!    mask (a config write through ECAM), per vector mask, address, data = EventID k,
//!    unmask, then the function mask cleared. Every one of these writes traps to the
//!    launcher, which feeds it to the library's trap emulation and commits the routes.
//! 6. Per vector k: ring the NVMe submission doorbell of the queue whose completion raises
//!    vector k (the launcher prepared the command in guest RAM, standing in for the rest of
//!    the guest's NVMe driver), `WFI` until an interrupt is pending, acknowledge it
//!    (`ICC_IAR1_EL1`, skipping the spurious 1023), end it (`ICC_EOIR1_EL1`), and report
//!    `k << 32 | INTID` to the launcher's mailbox. Then report done and idle.
//!
//! The launcher sees only the trapped writes (MSI-X table, Message Control, doorbells,
//! mailbox): the GIC and ITS registers are emulated inside KVM.
//!
//! With its MMU off the payload's data accesses are Device memory: aligned, uncached. KVM's
//! vITS reads the command queue through the host's cached mapping, so each command is
//! cleaned to the point of coherency (`DC CIVAC`) before `GITS_CWRITER` announces it; on a
//! TCG machine that is a no-op, on hardware it matters.
#![cfg_attr(not(all(feature = "kvm", target_arch = "aarch64")), allow(dead_code))]

use super::asm::{
    Asm, AsmError, Cond, ICC_EOIR1_EL1, ICC_IAR1_EL1, ICC_IGRPEN1_EL1, ICC_PMR_EL1, ICC_SRE_EL1,
    Size, X, XZR,
};

/// The first LPI INTID.
pub const FIRST_LPI: u32 = 8192;
/// INTID bits the guest's LPI tables cover (`GICR_PROPBASER.IDbits` + 1): LPIs 8192..65535.
pub const LPI_ID_BITS: u32 = 16;
/// EventID bits of the device's ITT: 256 events, more than the 65 vectors an NVMe has.
pub const ITT_EVENT_BITS: u32 = 8;
/// ITS command queue size: 16 pages of 4 KiB, 2048 commands (3 + 2 per vector are used).
pub const CMDQ_PAGES: u64 = 16;
/// What `ICC_IAR1_EL1` reads when nothing is pending.
pub const SPURIOUS: u32 = 1023;

/// The parameter block, in guest RAM: one u64 per field, at these offsets.
pub struct Params;

impl Params {
    /// Distributor base GPA.
    pub const GICD: u32 = 0x00;
    /// This vCPU's redistributor (RD_base) GPA.
    pub const GICR: u32 = 0x08;
    /// Virtual ITS base GPA.
    pub const ITS: u32 = 0x10;
    /// `GICR_PROPBASER` value (table GPA | IDbits - 1).
    pub const PROPBASER: u32 = 0x18;
    /// `GICR_PENDBASER` value (table GPA | PTZ: the table is zero).
    pub const PENDBASER: u32 = 0x20;
    /// GPA of the first LPI's configuration byte.
    pub const PROP_FIRST: u32 = 0x28;
    /// `GITS_BASER0` value (device table).
    pub const BASER_DEVICES: u32 = 0x30;
    /// `GITS_BASER1` value (collection table).
    pub const BASER_COLLECTIONS: u32 = 0x38;
    /// `GITS_CBASER` value (command queue).
    pub const CBASER: u32 = 0x40;
    /// Command queue GPA.
    pub const CMDQ: u32 = 0x48;
    /// The device's ITT GPA (256-byte aligned).
    pub const ITT: u32 = 0x50;
    /// The device id the vITS knows the device by (its requester id).
    pub const DEVID: u32 = 0x58;
    /// The LPI of EventID 0.
    pub const FIRST_LPI: u32 = 0x60;
    /// Vectors to program and fire.
    pub const VECTORS: u32 = 0x68;
    /// GPA of the device's MSI-X table, in its BAR as the guest sees it.
    pub const MSIX_TABLE: u32 = 0x70;
    /// GPA of the MSI-X Message Control register, through ECAM.
    pub const MSIX_CONTROL: u32 = 0x78;
    /// The MSI address the guest programs (the vITS doorbell as the device sees it).
    pub const MSI_ADDRESS: u32 = 0x80;
    /// The launcher's mailbox GPA (see [`Mailbox`]).
    pub const MAILBOX: u32 = 0x88;
    /// Per vector k, at `RINGS + 16 k`: the doorbell GPA and the value to write there.
    pub const RINGS: u32 = 0x90;

    /// Bytes the block takes for `vectors` vectors.
    pub fn len(vectors: u32) -> u64 {
        (Self::RINGS + 16 * vectors) as u64
    }
}

/// The launcher's mailbox: writes there trap to the launcher (no memory slot backs it).
pub struct Mailbox;

impl Mailbox {
    /// u64 `k << 32 | INTID`: vector k's interrupt arrived as INTID.
    pub const REPORT: u64 = 0x00;
    /// u64 vectors: all done.
    pub const DONE: u64 = 0x08;
    /// u64 `GITS_CWRITER` value: the vITS did not process a command.
    pub const ITS_STALLED: u64 = 0x10;
}

// GIC register offsets (GICv3 architecture specification).
const GICD_CTLR: u32 = 0x0;
const GICD_CTLR_ARE_NS_ENABLE_G1: u64 = (1 << 4) | (1 << 1);
const GICR_CTLR: u32 = 0x0;
const GICR_CTLR_ENABLE_LPIS: u64 = 1;
const GICR_PROPBASER: u32 = 0x70;
const GICR_PENDBASER: u32 = 0x78;
const GITS_CTLR: u32 = 0x0;
const GITS_CTLR_ENABLED: u64 = 1;
const GITS_CBASER: u32 = 0x80;
const GITS_CWRITER: u32 = 0x88;
const GITS_CREADR: u32 = 0x90;
const GITS_BASER0: u32 = 0x100;
const GITS_BASER1: u32 = 0x108;
// ITS command numbers.
const ITS_SYNC: u64 = 0x05;
const ITS_MAPD: u64 = 0x08;
const ITS_MAPC: u64 = 0x09;
const ITS_MAPTI: u64 = 0x0a;
const ITS_INV: u64 = 0x0c;
const VALID: u64 = 1 << 63;
/// LPI configuration byte: priority 0xa0 (below the 0xff mask), enabled.
const LPI_CONFIG: u64 = 0xa0 | 1;
// MSI-X Message Control and entry layout (PCI spec).
const MSIX_ENABLE_MASKALL: u64 = 0xc000;
const MSIX_ENABLE: u64 = 0x8000;
const ENTRY_ADDR_LO: u32 = 0;
const ENTRY_ADDR_HI: u32 = 4;
const ENTRY_DATA: u32 = 8;
const ENTRY_CONTROL: u32 = 12;
/// CREADR polls before the payload gives up on the vITS (KVM processes commands
/// synchronously on the CWRITER write, so the first poll already matches).
const ITS_POLLS: u64 = 1 << 16;

// Registers that hold one value for the whole program.
const PARAMS: X = X(19);
const GICR: X = X(20);
const ITS: X = X(21);
const CMDQ: X = X(22);
const CWRITER: X = X(23);
const DEVID: X = X(24);
const LPI0: X = X(25);
const VECTORS: X = X(26);
const K: X = X(27);
const MAILBOX: X = X(28);

/// The payload's instructions.
pub fn program() -> Result<Vec<u32>, AsmError> {
    let (x0, x1, x2, x3, x4, x5) = (X(0), X(1), X(2), X(3), X(4), X(5));
    let (x9, x10, x11) = (X(9), X(10), X(11));
    let mut a = Asm::default();
    let its_cmd = a.label();
    let idle = a.label();

    // 0. Parameters into callee-saved registers.
    a.orr(PARAMS, XZR, x0, 0);
    a.ldr(Size::X, GICR, PARAMS, Params::GICR);
    a.ldr(Size::X, ITS, PARAMS, Params::ITS);
    a.ldr(Size::X, CMDQ, PARAMS, Params::CMDQ);
    a.mov(CWRITER, 0);
    a.ldr(Size::X, DEVID, PARAMS, Params::DEVID);
    a.ldr(Size::X, LPI0, PARAMS, Params::FIRST_LPI);
    a.ldr(Size::X, VECTORS, PARAMS, Params::VECTORS);
    a.ldr(Size::X, MAILBOX, PARAMS, Params::MAILBOX);

    // 1. CPU interface: system register access (SRE, DFB, DIB), all priorities, group 1.
    a.mov(x0, 0b111);
    a.msr(ICC_SRE_EL1, x0);
    a.isb();
    a.mov(x0, 0xff);
    a.msr(ICC_PMR_EL1, x0);
    a.mov(x0, 1);
    a.msr(ICC_IGRPEN1_EL1, x0);
    a.isb();

    // 2. Distributor: affinity routing, group 1 enabled.
    a.ldr(Size::X, x1, PARAMS, Params::GICD);
    a.mov(x0, GICD_CTLR_ARE_NS_ENABLE_G1);
    a.str(Size::W, x0, x1, GICD_CTLR);

    // 3. Redistributor: enable each LPI in the property table, then the tables, then LPIs.
    a.ldr(Size::X, x1, PARAMS, Params::PROP_FIRST);
    a.mov(x0, LPI_CONFIG);
    a.mov(K, 0);
    let config = a.label();
    a.place(config);
    a.add(x2, x1, K, 0);
    a.str(Size::B, x0, x2, 0);
    a.add_imm(K, K, 1);
    a.cmp(K, VECTORS);
    a.b_cond(Cond::Ne, config);
    a.dsb_sy();
    a.ldr(Size::X, x0, PARAMS, Params::PROPBASER);
    a.str(Size::X, x0, GICR, GICR_PROPBASER);
    a.ldr(Size::X, x0, PARAMS, Params::PENDBASER);
    a.str(Size::X, x0, GICR, GICR_PENDBASER);
    a.mov(x0, GICR_CTLR_ENABLE_LPIS);
    a.str(Size::W, x0, GICR, GICR_CTLR);

    // 4. Virtual ITS: tables, command queue, enable; then map the device's events.
    a.ldr(Size::X, x0, PARAMS, Params::BASER_DEVICES);
    a.str(Size::X, x0, ITS, GITS_BASER0);
    a.ldr(Size::X, x0, PARAMS, Params::BASER_COLLECTIONS);
    a.str(Size::X, x0, ITS, GITS_BASER1);
    a.ldr(Size::X, x0, PARAMS, Params::CBASER);
    a.str(Size::X, x0, ITS, GITS_CBASER);
    a.str(Size::X, XZR, ITS, GITS_CWRITER);
    a.mov(x0, GITS_CTLR_ENABLED);
    a.str(Size::W, x0, ITS, GITS_CTLR);
    // MAPD DeviceID, ITT address, EventID bits - 1, valid.
    a.mov(x0, ITS_MAPD);
    a.orr(x0, x0, DEVID, 32);
    a.mov(x1, (ITT_EVENT_BITS - 1) as u64);
    a.ldr(Size::X, x2, PARAMS, Params::ITT);
    a.mov(x3, VALID);
    a.orr(x2, x2, x3, 0);
    a.mov(x3, 0);
    a.bl(its_cmd);
    // MAPC collection 0 -> redistributor 0 (GITS_TYPER.PTA = 0: a vCPU number), valid.
    a.mov(x0, ITS_MAPC);
    a.mov(x1, 0);
    a.mov(x2, VALID);
    a.mov(x3, 0);
    a.bl(its_cmd);
    // Per vector: MAPTI DeviceID, EventID k -> LPI first + k, collection 0; INV.
    a.mov(K, 0);
    let map = a.label();
    a.place(map);
    a.mov(x0, ITS_MAPTI);
    a.orr(x0, x0, DEVID, 32);
    a.add(x4, LPI0, K, 0);
    a.orr(x1, K, x4, 32);
    a.mov(x2, 0);
    a.mov(x3, 0);
    a.bl(its_cmd);
    a.mov(x0, ITS_INV);
    a.orr(x0, x0, DEVID, 32);
    a.orr(x1, XZR, K, 0);
    a.mov(x2, 0);
    a.bl(its_cmd);
    a.add_imm(K, K, 1);
    a.cmp(K, VECTORS);
    a.b_cond(Cond::Ne, map);
    // SYNC redistributor 0: every mapping above is in force.
    a.mov(x0, ITS_SYNC);
    a.mov(x1, 0);
    a.mov(x2, 0);
    a.bl(its_cmd);

    // 5. MSI-X, in Linux's order. Each write traps to the launcher.
    a.ldr(Size::X, x5, PARAMS, Params::MSIX_CONTROL);
    a.mov(x0, MSIX_ENABLE_MASKALL);
    a.str(Size::H, x0, x5, 0);
    a.ldr(Size::X, x1, PARAMS, Params::MSIX_TABLE);
    a.ldr(Size::X, x3, PARAMS, Params::MSI_ADDRESS);
    a.lsr(x4, x3, 32);
    a.mov(K, 0);
    let program_entry = a.label();
    a.place(program_entry);
    a.add(x2, x1, K, 4); // entry k: table + 16 k
    a.mov(x0, 1);
    a.str(Size::W, x0, x2, ENTRY_CONTROL); // mask
    a.str(Size::W, x3, x2, ENTRY_ADDR_LO);
    a.str(Size::W, x4, x2, ENTRY_ADDR_HI);
    a.str(Size::W, K, x2, ENTRY_DATA); // data = EventID k
    a.str(Size::W, XZR, x2, ENTRY_CONTROL); // unmask
    a.add_imm(K, K, 1);
    a.cmp(K, VECTORS);
    a.b_cond(Cond::Ne, program_entry);
    a.mov(x0, MSIX_ENABLE);
    a.str(Size::H, x0, x5, 0);

    // 6. Per vector: make the device raise it, wait for the LPI, acknowledge, report.
    a.mov(K, 0);
    let fire = a.label();
    let wait = a.label();
    a.place(fire);
    a.add(x2, PARAMS, K, 4);
    a.ldr(Size::X, x3, x2, Params::RINGS);
    a.ldr(Size::X, x4, x2, Params::RINGS + 8);
    a.str(Size::W, x4, x3, 0); // the NVMe doorbell (trapped, forwarded)
    a.place(wait);
    a.wfi();
    a.mrs(x0, ICC_IAR1_EL1);
    a.cmp_imm(x0, SPURIOUS);
    a.b_cond(Cond::Eq, wait);
    a.msr(ICC_EOIR1_EL1, x0);
    a.orr(x0, x0, K, 32);
    a.str(Size::X, x0, MAILBOX, Mailbox::REPORT as u32);
    a.add_imm(K, K, 1);
    a.cmp(K, VECTORS);
    a.b_cond(Cond::Ne, fire);
    a.str(Size::X, VECTORS, MAILBOX, Mailbox::DONE as u32);
    a.place(idle);
    a.wfi();
    a.b(idle);

    // its_cmd(x0..x3): queue one command, tell the vITS, wait until it has read it.
    a.place(its_cmd);
    a.add(x9, CMDQ, CWRITER, 0);
    a.str(Size::X, x0, x9, 0);
    a.str(Size::X, x1, x9, 8);
    a.str(Size::X, x2, x9, 16);
    a.str(Size::X, x3, x9, 24);
    a.dc_civac(x9);
    a.dsb_sy();
    a.add_imm(CWRITER, CWRITER, 32);
    a.str(Size::X, CWRITER, ITS, GITS_CWRITER);
    a.mov(x10, ITS_POLLS);
    let poll = a.label();
    let read = a.label();
    a.place(poll);
    a.ldr(Size::X, x11, ITS, GITS_CREADR);
    a.cmp(x11, CWRITER);
    a.b_cond(Cond::Eq, read);
    a.sub_imm(x10, x10, 1);
    a.cbnz(x10, poll);
    a.str(Size::X, CWRITER, MAILBOX, Mailbox::ITS_STALLED as u32);
    a.b(idle);
    a.place(read);
    a.ret();

    a.finish()
}
