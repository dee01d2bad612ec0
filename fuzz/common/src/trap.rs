//! Target `trap`: guest MMIO and config-space sequences into the trap emulator.
//!
//! A [`VectorTable`] (MSI-X or MSI, any size, any composer) takes a sequence of guest
//! accesses to the MSI-X table, PBA and Message Control, the MSI capability, and host
//! interrupts. Invariants checked after every step:
//! * no panic; every error is one of the emulator's typed errors;
//! * an access the PCI rules allow is accepted (reads always; writes unless the message does
//!   not compose), one they forbid is `BadAccess`;
//! * a rejected access, and every read, changes nothing: every vector's snapshot, Enable,
//!   Function Mask and Message Control are the same before and after;
//! * a read returns what the snapshots say (table words, PBA bits, MSI pending bits);
//! * no interrupt is lost or invented: a reference model of the pending bits matches the
//!   table after every step, every delivery of a held interrupt clears a held one, and at
//!   the end `raised == delivered + pending + coalesced` (a PCI pending bit is one bit, so a
//!   second interrupt on a vector that is already pending coalesces with it).

use serde::{Deserialize, Serialize};
use vmsi::Error;
use vmsi::msi::{
    Composer, Delivery, Domain, DoorbellMap, Effect, HostAddressing, MSI_CAP_LEN, MsixRegion,
    VectorState, VectorTable,
};

/// At most this many operations of one input run (keeps one execution short).
pub const MAX_OPS: usize = 256;

/// How to build the table's [`Composer`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComposerSpec {
    /// Nested domain (guest IOVAs through `windows`) rather than paging.
    pub nested: bool,
    /// Per-vector host addresses rather than one window address.
    pub per_vector: bool,
    /// The window address (when not per-vector).
    pub window: u64,
    /// Virtual ITS doorbells (at most 8 are used).
    pub doorbells: Vec<u64>,
    /// Nested windows `(iova, len, gpa)` (at most 8 are used).
    pub windows: Vec<(u64, u64, u64)>,
    /// The guest's device id.
    pub devid: u32,
}

impl ComposerSpec {
    /// The rig's paging setup: the vITS doorbell at 0x0809_0040, the kernel window.
    pub fn paging() -> Self {
        ComposerSpec {
            nested: false,
            per_vector: false,
            window: 0x0800_0040,
            doorbells: vec![0x0809_0040],
            windows: Vec::new(),
            devid: 0x10,
        }
    }

    /// A nested guest whose stage 1 maps IOVA 0xeeee_0000 onto the vITS page, per-vector.
    pub fn nested() -> Self {
        ComposerSpec {
            nested: true,
            per_vector: true,
            window: 0,
            doorbells: vec![0x0809_0040],
            windows: vec![(0xeeee_0000, 0x1000, 0x0809_0000)],
            devid: 0x10,
        }
    }

    fn build(&self) -> Result<Composer, Error> {
        let doorbells = &self.doorbells[..self.doorbells.len().min(8)];
        let windows = &self.windows[..self.windows.len().min(8)];
        let map = if self.nested {
            DoorbellMap::nested(doorbells, windows)?
        } else {
            DoorbellMap::paging(doorbells)?
        };
        Ok(Composer {
            domain: if self.nested {
                Domain::Nested
            } else {
                Domain::Paging
            },
            host: if self.per_vector {
                HostAddressing::PerVector
            } else {
                HostAddressing::Window {
                    address: self.window,
                }
            },
            doorbells: map,
            devid: self.devid,
        })
    }
}

/// One guest access or host event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// MMIO write to the MSI-X table (or PBA).
    MsixWrite {
        /// PBA rather than table.
        pba: bool,
        /// Byte offset.
        offset: u64,
        /// Access size.
        size: u8,
        /// Value (low `size` bytes).
        value: u64,
    },
    /// MMIO read of the MSI-X table (or PBA).
    MsixRead {
        /// PBA rather than table.
        pba: bool,
        /// Byte offset.
        offset: u64,
        /// Access size.
        size: u8,
    },
    /// Config write of the MSI-X Message Control.
    MsixControl(u16),
    /// Config write inside the MSI capability.
    MsiWrite {
        /// Offset in the capability.
        offset: u64,
        /// Access size.
        size: u8,
        /// Value.
        value: u32,
    },
    /// Config read inside the MSI capability.
    MsiRead {
        /// Offset in the capability.
        offset: u64,
        /// Access size.
        size: u8,
    },
    /// The device raised a vector.
    Interrupt(u32),
    /// The VMM asks for the next held interrupt it can deliver.
    TakePending,
    /// The VMM provides (or clears) a vector's MSI address.
    Provide {
        /// The vector.
        vector: u32,
        /// Its address.
        address: Option<u64>,
    },
    /// The VMM replaces the composer.
    SetComposer(ComposerSpec),
    /// Linux's `pci_msix_write_msg` for one vector: mask, address low, high, data, unmask
    /// (expanded into five checked table writes).
    Program {
        /// The vector.
        vector: u32,
        /// Address.
        address: u64,
        /// Data.
        data: u32,
    },
}

/// The whole input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// MSI-X rather than MSI.
    pub msix: bool,
    /// Vectors (any value: out-of-range counts must be refused).
    pub vectors: u32,
    /// The composer the table starts with.
    pub composer: ComposerSpec,
    /// The sequence.
    pub ops: Vec<Op>,
}

/// What the harness saw, for tests and the README's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Operations run.
    pub ops: u64,
    /// Operations refused with a typed error.
    pub rejected: u64,
    /// Interrupts the device raised.
    pub raised: u64,
    /// Interrupts delivered at once.
    pub delivered_direct: u64,
    /// Held interrupts delivered later (unmask or `take_pending`).
    pub delivered_held: u64,
    /// Interrupts that coalesced with one already pending.
    pub coalesced: u64,
    /// Vectors still pending at the end.
    pub pending_at_end: u64,
}

/// Decodes and runs one input.
pub fn fuzz(data: &[u8]) {
    if let Some(input) = crate::decode::<Input>(data) {
        run(&input);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Snapshot {
    vectors: Vec<VectorState>,
    enabled: bool,
    function_masked: bool,
    control: u16,
}

impl Snapshot {
    fn of(t: &VectorTable) -> Self {
        Snapshot {
            vectors: (0..t.len())
                .map(|v| t.vector(v).expect("in range"))
                .collect(),
            enabled: t.index_enabled(),
            function_masked: t.function_masked(),
            control: t.msix_control(),
        }
    }

    fn deliverable(&self, v: usize) -> bool {
        let s = &self.vectors[v];
        self.enabled && !self.function_masked && !s.masked && s.route.is_some()
    }

    fn deliverable_pending(&self) -> u32 {
        (0..self.vectors.len())
            .filter(|&v| self.vectors[v].pending && self.deliverable(v))
            .count() as u32
    }
}

struct Harness<'a> {
    t: &'a VectorTable,
    msix: bool,
    held: Vec<bool>,
    stats: Stats,
}

fn msix_access_ok(offset: u64, size: u8, len: u64) -> bool {
    (size == 4 || size == 8)
        && offset.is_multiple_of(u64::from(size))
        && offset
            .checked_add(u64::from(size))
            .is_some_and(|e| e <= len)
}

fn msi_access_ok(offset: u64, size: u8) -> bool {
    matches!(size, 1 | 2 | 4)
        && offset.is_multiple_of(u64::from(size))
        && offset
            .checked_add(u64::from(size))
            .is_some_and(|e| e <= MSI_CAP_LEN as u64)
}

/// The errors a trap-emulator call may give.
fn emulator_error(e: &Error) {
    crate::typed(e);
    assert!(
        matches!(
            e,
            Error::BadAccess { .. }
                | Error::VectorOutOfRange { .. }
                | Error::NotADoorbell { .. }
                | Error::NoMsiAddress { .. }
        ),
        "unexpected error from the trap emulator: {e:?}"
    );
}

impl Harness<'_> {
    /// Checks an effect against the table after it, and claims held interrupts it delivers.
    fn effect(&mut self, effect: Effect, after: &Snapshot) {
        match effect {
            Effect::None => {}
            Effect::Routed {
                vector,
                route,
                host,
                deliver_pending,
                ..
            } => {
                let v = &after.vectors[vector as usize];
                assert_eq!(v.route, Some(route), "vector {vector}: reported route");
                assert_eq!(v.host, Some(host), "vector {vector}: reported host");
                if deliver_pending {
                    assert!(
                        self.held[vector as usize],
                        "vector {vector}: delivered a held interrupt that was never raised"
                    );
                    self.held[vector as usize] = false;
                    self.stats.delivered_held += 1;
                }
            }
            Effect::Masked { vector } => {
                assert!(after.vectors[vector as usize].masked, "vector {vector}");
            }
            Effect::Opened { pending } => {
                assert_eq!(pending, after.deliverable_pending(), "Opened's count");
            }
            Effect::Closed => {
                assert!(
                    (0..after.vectors.len()).all(|v| !after.deliverable(v)),
                    "Closed, yet a vector is deliverable"
                );
            }
        }
    }

    fn write(&mut self, before: &Snapshot, r: Result<Effect, Error>, allowed: bool) {
        let after = Snapshot::of(self.t);
        match r {
            Ok(effect) => {
                assert!(allowed, "a forbidden access was accepted");
                self.effect(effect, &after);
            }
            Err(e) => {
                emulator_error(&e);
                if !allowed {
                    assert!(matches!(e, Error::BadAccess { .. }), "{e:?}");
                }
                self.stats.rejected += 1;
                assert_eq!(before, &after, "a rejected access changed the table ({e})");
            }
        }
    }

    fn read(&mut self, before: &Snapshot, r: Result<u64, Error>, allowed: bool) -> Option<u64> {
        assert_eq!(before, &Snapshot::of(self.t), "a read changed the table");
        match r {
            Ok(v) => {
                assert!(allowed, "a forbidden read was accepted");
                Some(v)
            }
            Err(e) => {
                emulator_error(&e);
                assert!(!allowed, "an allowed read was refused: {e:?}");
                self.stats.rejected += 1;
                None
            }
        }
    }

    fn table_word(before: &Snapshot, k: u64) -> u32 {
        let s = &before.vectors[(k / 4) as usize];
        match k % 4 {
            0 => s.guest.address as u32,
            1 => (s.guest.address >> 32) as u32,
            2 => s.guest.data,
            _ => s.control,
        }
    }

    fn pba_word(before: &Snapshot, k: u64) -> u32 {
        (0..32u64)
            .filter(|b| {
                before
                    .vectors
                    .get((k * 32 + b) as usize)
                    .is_some_and(|v| v.pending)
            })
            .fold(0, |w, b| w | 1 << b)
    }

    fn step(&mut self, op: &Op) {
        self.stats.ops += 1;
        let t = self.t;
        let len = t.len();
        let before = Snapshot::of(t);
        match *op {
            Op::MsixWrite {
                pba,
                offset,
                size,
                value,
            } => {
                let region = if pba {
                    MsixRegion::Pba
                } else {
                    MsixRegion::Table
                };
                let allowed = self.msix && !pba && msix_access_ok(offset, size, t.msix_table_len());
                let r = t.msix_write(region, offset, size, value);
                self.write(&before, r, allowed);
            }
            Op::MsixRead { pba, offset, size } => {
                let (region, region_len) = if pba {
                    (MsixRegion::Pba, t.msix_pba_len())
                } else {
                    (MsixRegion::Table, t.msix_table_len())
                };
                let allowed = self.msix && msix_access_ok(offset, size, region_len);
                let r = t.msix_read(region, offset, size);
                if let Some(value) = self.read(&before, r, allowed) {
                    let word = |k| {
                        if pba {
                            Self::pba_word(&before, k)
                        } else {
                            Self::table_word(&before, k)
                        }
                    };
                    let k = offset / 4;
                    let want = if size == 4 {
                        u64::from(word(k))
                    } else {
                        u64::from(word(k)) | u64::from(word(k + 1)) << 32
                    };
                    assert_eq!(value, want, "read of {size} bytes at {offset:#x}");
                }
            }
            Op::MsixControl(value) => {
                let r = t.msix_control_write(value);
                self.write(&before, r, self.msix);
                if self.msix {
                    let c = t.msix_control();
                    assert_eq!(c & 0xc000, value & 0xc000, "Enable / Function Mask");
                    assert_eq!(u32::from(c & 0x7ff), len - 1, "table size is read-only");
                }
            }
            Op::MsiWrite {
                offset,
                size,
                value,
            } => {
                let r = t.msi_config_write(offset, size, value);
                // A legal write can still be refused (more vectors enabled than capable, or
                // a message that does not compose): only forbidden shapes must fail.
                let allowed = !self.msix && msi_access_ok(offset, size);
                self.write(&before, r, allowed);
            }
            Op::MsiRead { offset, size } => {
                let allowed = !self.msix && msi_access_ok(offset, size);
                let r = t.msi_config_read(offset, size).map(u64::from);
                if let Some(value) = self.read(&before, r, allowed) {
                    // The pending bits (0x14..0x18) come from the table's bitmap.
                    let pending = Self::pba_word(&before, 0);
                    for k in 0..u64::from(size) {
                        let at = offset + k;
                        if (0x14..0x18).contains(&at) {
                            let want = (pending >> (8 * (at - 0x14))) as u8;
                            assert_eq!((value >> (8 * k)) as u8, want, "MSI pending byte {at}");
                        }
                    }
                }
            }
            Op::Interrupt(vector) => match t.host_interrupt(vector) {
                Err(e) => {
                    assert!(
                        matches!(e, Error::VectorOutOfRange { vector: v, len: l } if v == vector && l == len),
                        "{e:?}"
                    );
                    assert!(vector >= len);
                    assert_eq!(before, Snapshot::of(t));
                }
                Ok(d) => {
                    assert!(vector < len, "interrupt on vector {vector} of {len}");
                    self.stats.raised += 1;
                    let v = vector as usize;
                    match d {
                        Delivery::Deliver(route) => {
                            assert!(before.deliverable(v), "delivered while masked");
                            assert_eq!(Some(route), before.vectors[v].route);
                            self.stats.delivered_direct += 1;
                        }
                        Delivery::Held => {
                            assert!(!before.deliverable(v), "held while deliverable");
                            if self.held[v] {
                                self.stats.coalesced += 1;
                            } else {
                                self.held[v] = true;
                            }
                        }
                    }
                }
            },
            Op::TakePending => match t.take_pending() {
                Some((vector, route)) => {
                    let v = vector as usize;
                    assert!(self.held[v], "vector {vector} handed out, never held");
                    assert!(
                        before.deliverable(v),
                        "vector {vector} handed out while masked"
                    );
                    assert_eq!(Some(route), before.vectors[v].route);
                    self.held[v] = false;
                    self.stats.delivered_held += 1;
                }
                None => assert_eq!(before.deliverable_pending(), 0, "a deliverable was kept"),
            },
            Op::Provide { vector, address } => {
                let r = t.provide_msi_address(vector, address);
                if vector >= len {
                    assert!(matches!(r, Err(Error::VectorOutOfRange { .. })), "{r:?}");
                }
                let after_ok = r.is_ok();
                self.write(&before, r, true);
                if after_ok {
                    assert_eq!(t.vector(vector).expect("in range").msi_address, address);
                }
            }
            Op::SetComposer(ref spec) => {
                if let Ok(c) = spec.build() {
                    let r = t.set_composer(c).map(|()| Effect::None);
                    self.write(&before, r, true);
                }
            }
            Op::Program {
                vector,
                address,
                data,
            } => {
                let e = 16 * u64::from(vector);
                for (k, value) in [
                    (12, 1),
                    (0, address & 0xffff_ffff),
                    (4, address >> 32),
                    (8, u64::from(data)),
                    (12, 0),
                ] {
                    self.step(&Op::MsixWrite {
                        pba: false,
                        offset: e.wrapping_add(k),
                        size: 4,
                        value,
                    });
                }
            }
        }
        let after = Snapshot::of(t);
        for (v, s) in after.vectors.iter().enumerate() {
            assert_eq!(
                s.pending, self.held[v],
                "vector {v}: pending bit vs interrupts held"
            );
        }
    }
}

/// Runs one input, panicking on a broken invariant.
pub fn run(input: &Input) -> Stats {
    let Ok(composer) = input.composer.build() else {
        return Stats::default();
    };
    let table = if input.msix {
        VectorTable::msix(input.vectors, composer)
    } else {
        VectorTable::msi(input.vectors, composer)
    };
    let valid = if input.msix {
        (1..=2048).contains(&input.vectors)
    } else {
        (1..=32).contains(&input.vectors) && input.vectors.is_power_of_two()
    };
    let t = match table {
        Ok(t) => {
            assert!(valid, "a table of {} vectors was made", input.vectors);
            t
        }
        Err(e) => {
            assert!(
                !valid,
                "a table of {} vectors was refused: {e}",
                input.vectors
            );
            assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
            return Stats::default();
        }
    };
    let mut h = Harness {
        t: &t,
        msix: input.msix,
        held: vec![false; input.vectors as usize],
        stats: Stats::default(),
    };
    for op in input.ops.iter().take(MAX_OPS) {
        h.step(op);
    }
    let s = &mut h.stats;
    s.pending_at_end = h.held.iter().filter(|&&b| b).count() as u64;
    assert_eq!(
        s.raised,
        s.delivered_direct + s.delivered_held + s.pending_at_end + s.coalesced,
        "an interrupt was lost: {s:?}"
    );
    h.stats
}

/// Seeds: the ways Linux and QEMU guests program MSI-X and MSI, with interrupts arriving
/// while masked, hostile accesses, and a nested guest.
pub fn seeds() -> Vec<(&'static str, Input)> {
    const VITS: u64 = 0x0809_0040;
    let mut out = Vec::new();
    // nvme: 65 MSI-X vectors; enable with the function masked, program, unmask.
    let mut ops = vec![Op::MsixControl(0xc000)];
    for v in 0..4 {
        ops.push(Op::Program {
            vector: v,
            address: VITS,
            data: 100 + v,
        });
    }
    ops.extend([
        Op::Interrupt(0),
        Op::Interrupt(1),
        Op::MsixControl(0x8000),
        Op::TakePending,
        Op::TakePending,
        Op::Interrupt(2),
        Op::MsixRead {
            pba: true,
            offset: 0,
            size: 8,
        },
        Op::MsixRead {
            pba: false,
            offset: 16 * 2 + 8,
            size: 4,
        },
    ]);
    out.push((
        "msix-linux-sequence",
        Input {
            msix: true,
            vectors: 65,
            composer: ComposerSpec::paging(),
            ops,
        },
    ));
    // A vector masked while interrupts arrive, then unmasked: delivered on unmask.
    out.push((
        "msix-masked-pending",
        Input {
            msix: true,
            vectors: 65,
            composer: ComposerSpec::paging(),
            ops: vec![
                Op::MsixControl(0x8000),
                Op::Program {
                    vector: 64,
                    address: VITS,
                    data: 7,
                },
                Op::MsixWrite {
                    pba: false,
                    offset: 16 * 64 + 12,
                    size: 4,
                    value: 1,
                },
                Op::Interrupt(64),
                Op::Interrupt(64),
                Op::MsixWrite {
                    pba: false,
                    offset: 16 * 64 + 12,
                    size: 4,
                    value: 0,
                },
                Op::MsixWrite {
                    pba: false,
                    offset: 16 * 64,
                    size: 8,
                    value: VITS,
                },
            ],
        },
    ));
    // Hostile accesses: misaligned, wrong size, past the end, the PBA, a bad doorbell.
    out.push((
        "msix-hostile",
        Input {
            msix: true,
            vectors: 2048,
            composer: ComposerSpec::paging(),
            ops: vec![
                Op::MsixWrite {
                    pba: false,
                    offset: 2,
                    size: 4,
                    value: 1,
                },
                Op::MsixWrite {
                    pba: false,
                    offset: 16 * 2048,
                    size: 4,
                    value: 1,
                },
                Op::MsixWrite {
                    pba: true,
                    offset: 0,
                    size: 8,
                    value: u64::MAX,
                },
                Op::MsixRead {
                    pba: false,
                    offset: u64::MAX - 3,
                    size: 4,
                },
                Op::Program {
                    vector: 5,
                    address: VITS + 4,
                    data: 1,
                },
                Op::Interrupt(2048),
                Op::Provide {
                    vector: u32::MAX,
                    address: Some(1),
                },
            ],
        },
    ));
    // MSI: Linux's msi_setup (address, data, mask bits, enable with MME), edu's one vector.
    let msi_enable = |mme: u32| Op::MsiWrite {
        offset: 2,
        size: 2,
        value: 1 | (mme << 4),
    };
    out.push((
        "msi-edu",
        Input {
            msix: false,
            vectors: 1,
            composer: ComposerSpec::paging(),
            ops: vec![
                Op::MsiWrite {
                    offset: 4,
                    size: 4,
                    value: VITS as u32,
                },
                Op::MsiWrite {
                    offset: 8,
                    size: 4,
                    value: 0,
                },
                Op::MsiWrite {
                    offset: 0x0c,
                    size: 2,
                    value: 0x21,
                },
                msi_enable(0),
                Op::Interrupt(0),
                Op::MsiWrite {
                    offset: 0x10,
                    size: 4,
                    value: 1,
                },
                Op::Interrupt(0),
                Op::MsiRead {
                    offset: 0x14,
                    size: 4,
                },
                Op::MsiWrite {
                    offset: 0x10,
                    size: 4,
                    value: 0,
                },
                Op::MsiRead { offset: 0, size: 4 },
            ],
        },
    ));
    // MSI with 32 vectors, multiple-message enable, and an MME beyond MMC.
    out.push((
        "msi-multi",
        Input {
            msix: false,
            vectors: 32,
            composer: ComposerSpec::paging(),
            ops: vec![
                Op::MsiWrite {
                    offset: 4,
                    size: 4,
                    value: VITS as u32,
                },
                Op::MsiWrite {
                    offset: 0x10,
                    size: 4,
                    value: 0xffff_ffff,
                },
                msi_enable(5),
                Op::Interrupt(31),
                Op::MsiWrite {
                    offset: 0x10,
                    size: 4,
                    value: 0,
                },
                Op::TakePending,
                msi_enable(7),
                Op::MsiWrite {
                    offset: 3,
                    size: 1,
                    value: 0xff,
                },
            ],
        },
    ));
    // A nested guest: per-vector addresses provided, guest IOVAs through its stage 1.
    out.push((
        "msix-nested-per-vector",
        Input {
            msix: true,
            vectors: 8,
            composer: ComposerSpec::nested(),
            ops: vec![
                Op::MsixControl(0x8000),
                Op::Program {
                    vector: 0,
                    address: 0xeeee_0040,
                    data: 1,
                },
                Op::Provide {
                    vector: 0,
                    address: Some(0xeeee_0040),
                },
                Op::Program {
                    vector: 0,
                    address: 0xeeee_0040,
                    data: 1,
                },
                Op::Provide {
                    vector: 0,
                    address: None,
                },
                Op::SetComposer(ComposerSpec::paging()),
                Op::Interrupt(0),
            ],
        },
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_run_clean_and_exercise_every_kind_of_delivery() {
        let mut total = Stats::default();
        for (name, input) in seeds() {
            let s = run(&input);
            assert!(s.ops > 0, "{name}");
            total.raised += s.raised;
            total.delivered_direct += s.delivered_direct;
            total.delivered_held += s.delivered_held;
            total.coalesced += s.coalesced;
            total.rejected += s.rejected;
        }
        assert!(
            total.delivered_direct > 0 && total.delivered_held > 0,
            "{total:?}"
        );
        assert!(total.coalesced > 0 && total.rejected > 0, "{total:?}");
    }

    #[test]
    fn the_harness_catches_a_forbidden_read() {
        // A fake "allowed" answer for a misaligned read must trip the check.
        let t = VectorTable::msix(1, ComposerSpec::paging().build().unwrap()).unwrap();
        let mut h = Harness {
            t: &t,
            msix: true,
            held: vec![false],
            stats: Stats::default(),
        };
        let before = Snapshot::of(&t);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            h.read(&before, Ok(0), false);
        }));
        assert!(r.is_err());
    }

    #[test]
    fn bad_table_sizes_are_refused() {
        for (msix, vectors) in [(true, 0), (true, 2049), (false, 3), (false, 64)] {
            let s = run(&Input {
                msix,
                vectors,
                composer: ComposerSpec::paging(),
                ops: vec![Op::Interrupt(0)],
            });
            assert_eq!(s.ops, 0);
        }
    }
}
