//! Just enough of an AArch64 assembler for the guest payload (`payload.rs`), in safe Rust.
//!
//! Why not `global_asm!`: the launcher is safe code, and `global_asm!` is unsafe (whatever it
//! assembles is linked into the launcher itself). Here the instructions are only data: the
//! words are copied into guest RAM and run by the vCPU, never by the launcher. Each method
//! emits one instruction, named and operand-ordered as in the Arm ARM, so the payload reads
//! like the assembly it is. Only the forms the payload uses exist.
#![cfg_attr(not(all(feature = "kvm", target_arch = "aarch64")), allow(dead_code))]

/// A 64-bit general-purpose register, `X0`..`X30`; `XZR` is register 31 where it means zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct X(pub u32);

/// The zero register (in the forms that take it).
pub const XZR: X = X(31);

/// A system register, by its encoding (op0 = 3, op1, CRn, CRm, op2).
#[derive(Clone, Copy, Debug)]
pub struct SysReg {
    op1: u32,
    crn: u32,
    crm: u32,
    op2: u32,
}

const fn sysreg(op1: u32, crn: u32, crm: u32, op2: u32) -> SysReg {
    SysReg { op1, crn, crm, op2 }
}

/// GIC CPU interface: system register enable.
pub const ICC_SRE_EL1: SysReg = sysreg(0, 12, 12, 5);
/// GIC CPU interface: priority mask.
pub const ICC_PMR_EL1: SysReg = sysreg(0, 4, 6, 0);
/// GIC CPU interface: group 1 interrupts enable.
pub const ICC_IGRPEN1_EL1: SysReg = sysreg(0, 12, 12, 7);
/// GIC CPU interface: acknowledge (reading it returns the INTID, 1023 if none).
pub const ICC_IAR1_EL1: SysReg = sysreg(0, 12, 12, 0);
/// GIC CPU interface: end of interrupt.
pub const ICC_EOIR1_EL1: SysReg = sysreg(0, 12, 12, 1);

/// A branch condition (`B.cond`).
#[derive(Clone, Copy, Debug)]
pub enum Cond {
    /// Equal.
    Eq = 0,
    /// Not equal.
    Ne = 1,
}

/// A position in the program that branches refer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// Access size of a load or store.
#[derive(Clone, Copy, Debug)]
pub enum Size {
    /// 8 bits (`STRB`).
    B = 0,
    /// 16 bits (`STRH`).
    H = 1,
    /// 32 bits (`STR Wt`).
    W = 2,
    /// 64 bits (`STR Xt`).
    X = 3,
}

/// The program being assembled: words, label positions, and branches to patch.
#[derive(Debug, Default)]
pub struct Asm {
    words: Vec<u32>,
    labels: Vec<Option<usize>>,
    /// (instruction index, label, kind): patched when the program is finished.
    fixups: Vec<(usize, Label, Branch)>,
}

#[derive(Clone, Copy, Debug)]
enum Branch {
    B,
    Bl,
    BCond,
    Cbnz,
}

/// What can go wrong assembling: an operand that does not fit its field.
#[derive(Debug, PartialEq, Eq)]
pub struct AsmError(pub String);

impl Asm {
    /// The words, with every branch resolved.
    pub fn finish(mut self) -> Result<Vec<u32>, AsmError> {
        for &(at, label, kind) in &self.fixups {
            let target = self.labels[label.0]
                .ok_or_else(|| AsmError(format!("label {} never placed", label.0)))?;
            let delta = target as i64 - at as i64;
            let (bits, shift) = match kind {
                Branch::B | Branch::Bl => (26, 0),
                Branch::BCond | Branch::Cbnz => (19, 5),
            };
            let limit = 1i64 << (bits - 1);
            if !(-limit..limit).contains(&delta) {
                return Err(AsmError(format!("branch at {at} too far")));
            }
            let field = (delta as u32) & ((1 << bits) - 1);
            self.words[at] |= field << shift;
        }
        Ok(self.words)
    }

    /// A new label, placed later with [`Asm::place`].
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `label` at the next instruction.
    pub fn place(&mut self, label: Label) {
        self.labels[label.0] = Some(self.words.len());
    }

    fn emit(&mut self, word: u32) {
        self.words.push(word);
    }

    fn branch(&mut self, word: u32, label: Label, kind: Branch) {
        self.fixups.push((self.words.len(), label, kind));
        self.emit(word);
    }

    /// `MOV Xd, #imm` for any 64-bit value: `MOVZ` then a `MOVK` per non-zero half-word.
    pub fn mov(&mut self, d: X, imm: u64) {
        self.emit(0xd280_0000 | ((imm & 0xffff) as u32) << 5 | d.0);
        for hw in 1..4u32 {
            let part = ((imm >> (16 * hw)) & 0xffff) as u32;
            if part != 0 {
                self.emit(0xf280_0000 | hw << 21 | part << 5 | d.0);
            }
        }
    }

    /// `ADD Xd, Xn, #imm` (12-bit immediate).
    pub fn add_imm(&mut self, d: X, n: X, imm: u32) {
        assert!(imm < 4096, "ADD immediate {imm} does not fit 12 bits");
        self.emit(0x9100_0000 | imm << 10 | n.0 << 5 | d.0);
    }

    /// `SUB Xd, Xn, #imm` (12-bit immediate).
    pub fn sub_imm(&mut self, d: X, n: X, imm: u32) {
        assert!(imm < 4096, "SUB immediate {imm} does not fit 12 bits");
        self.emit(0xd100_0000 | imm << 10 | n.0 << 5 | d.0);
    }

    /// `LSR Xd, Xn, #shift` (`UBFM Xd, Xn, #shift, #63`).
    pub fn lsr(&mut self, d: X, n: X, shift: u32) {
        self.emit(0xd340_fc00 | (shift & 63) << 16 | n.0 << 5 | d.0);
    }

    /// `ADD Xd, Xn, Xm, LSL #shift`.
    pub fn add(&mut self, d: X, n: X, m: X, shift: u32) {
        self.emit(0x8b00_0000 | m.0 << 16 | (shift & 63) << 10 | n.0 << 5 | d.0);
    }

    /// `ORR Xd, Xn, Xm, LSL #shift`.
    pub fn orr(&mut self, d: X, n: X, m: X, shift: u32) {
        self.emit(0xaa00_0000 | m.0 << 16 | (shift & 63) << 10 | n.0 << 5 | d.0);
    }

    /// `CMP Xn, Xm`.
    pub fn cmp(&mut self, n: X, m: X) {
        self.emit(0xeb00_0000 | m.0 << 16 | n.0 << 5 | XZR.0);
    }

    /// `CMP Xn, #imm` (12-bit immediate).
    pub fn cmp_imm(&mut self, n: X, imm: u32) {
        assert!(imm < 4096, "CMP immediate {imm} does not fit 12 bits");
        self.emit(0xf100_0000 | imm << 10 | n.0 << 5 | XZR.0);
    }

    /// `STR{B,H,,} t, [Xn, #offset]` (unsigned offset, a multiple of the size).
    pub fn str(&mut self, size: Size, t: X, n: X, offset: u32) {
        self.emit(mem(0x3900_0000, size, t, n, offset));
    }

    /// `LDR{B,H,,} t, [Xn, #offset]` (unsigned offset, a multiple of the size).
    pub fn ldr(&mut self, size: Size, t: X, n: X, offset: u32) {
        self.emit(mem(0x3940_0000, size, t, n, offset));
    }

    /// `B label`.
    pub fn b(&mut self, label: Label) {
        self.branch(0x1400_0000, label, Branch::B);
    }

    /// `BL label`.
    pub fn bl(&mut self, label: Label) {
        self.branch(0x9400_0000, label, Branch::Bl);
    }

    /// `B.cond label`.
    pub fn b_cond(&mut self, cond: Cond, label: Label) {
        self.branch(0x5400_0000 | cond as u32, label, Branch::BCond);
    }

    /// `CBNZ Xt, label`.
    pub fn cbnz(&mut self, t: X, label: Label) {
        self.branch(0xb500_0000 | t.0, label, Branch::Cbnz);
    }

    /// `RET`.
    pub fn ret(&mut self) {
        self.emit(0xd65f_03c0);
    }

    /// `MSR sysreg, Xt`.
    pub fn msr(&mut self, r: SysReg, t: X) {
        self.emit(0xd518_0000 | r.op1 << 16 | r.crn << 12 | r.crm << 8 | r.op2 << 5 | t.0);
    }

    /// `MRS Xt, sysreg`.
    pub fn mrs(&mut self, t: X, r: SysReg) {
        self.emit(0xd538_0000 | r.op1 << 16 | r.crn << 12 | r.crm << 8 | r.op2 << 5 | t.0);
    }

    /// `ISB`.
    pub fn isb(&mut self) {
        self.emit(0xd503_3fdf);
    }

    /// `DSB SY`.
    pub fn dsb_sy(&mut self) {
        self.emit(0xd503_3f9f);
    }

    /// `DC CIVAC, Xt`: clean and invalidate the data cache line at Xt to the point of
    /// coherency.
    pub fn dc_civac(&mut self, t: X) {
        self.emit(0xd50b_7e20 | t.0);
    }

    /// `WFI`.
    pub fn wfi(&mut self) {
        self.emit(0xd503_207f);
    }
}

fn mem(base: u32, size: Size, t: X, n: X, offset: u32) -> u32 {
    let scale = size as u32;
    assert!(
        offset % (1 << scale) == 0 && offset >> scale < 4096,
        "offset {offset:#x} does not fit a {size:?} access"
    );
    base | scale << 30 | (offset >> scale) << 10 | n.0 << 5 | t.0
}
