//! The vector table and trap emulator: guest programming sequences, hostile accesses, and a
//! property test of arbitrary access sequences against a plain reference model.

use proptest::prelude::*;
use vmsi::Error;
use vmsi::msi::{
    Composer, Delivery, Domain, DoorbellMap, Effect, HostAddressing, MsixRegion, Route, VectorTable,
};

const VITS: u64 = 0x0809_0040;
const WINDOW: u64 = 0x0800_0040;
const DEVID: u32 = 0x10;

fn composer() -> Composer {
    Composer {
        domain: Domain::Paging,
        host: HostAddressing::Window { address: WINDOW },
        doorbells: DoorbellMap::paging(&[VITS]).unwrap(),
        devid: DEVID,
    }
}

fn route(data: u32) -> Route {
    Route {
        doorbell_gpa: VITS,
        data,
        devid: DEVID,
    }
}

/// What Linux's pci_msix_write_msg does for one vector: mask, address, data, unmask.
fn program(t: &VectorTable, v: u32, address: u64, data: u32) -> Result<Effect, Error> {
    let e = 16 * v as u64;
    t.msix_write(MsixRegion::Table, e + 12, 4, 1)?;
    t.msix_write(MsixRegion::Table, e, 4, address & 0xffff_ffff)?;
    t.msix_write(MsixRegion::Table, e + 4, 4, address >> 32)?;
    t.msix_write(MsixRegion::Table, e + 8, 4, data as u64)?;
    t.msix_write(MsixRegion::Table, e + 12, 4, 0)
}

#[test]
fn a_linux_style_sequence_routes_each_vector_once_on_unmask() {
    let t = VectorTable::msix(65, composer()).unwrap();
    assert_eq!(t.msix_control_write(0x8000 | 0x4000).unwrap(), Effect::None);
    for v in 0..4 {
        match program(&t, v, VITS, 100 + v).unwrap() {
            Effect::Routed {
                vector,
                route: r,
                host,
                changed: true,
                deliver_pending: false,
            } => {
                assert_eq!((vector, r, host.address), (v, route(100 + v), WINDOW));
            }
            other => panic!("vector {v}: {other:?}"),
        }
    }
    // The guest reads back what it wrote, and the table size from the control word.
    assert_eq!(t.msix_read(MsixRegion::Table, 16 * 2 + 8, 4).unwrap(), 102);
    assert_eq!(t.msix_read(MsixRegion::Table, 16 * 2, 8).unwrap(), VITS);
    assert_eq!(t.msix_control() & 0x7ff, 64);
    // Function still masked: everything is held.
    assert_eq!(t.host_interrupt(1).unwrap(), Delivery::Held);
    assert_eq!(
        t.msix_control_write(0x8000).unwrap(),
        Effect::Opened { pending: 1 }
    );
    assert_eq!(t.take_pending(), Some((1, route(101))));
    assert_eq!(t.take_pending(), None);
    assert_eq!(t.host_interrupt(2).unwrap(), Delivery::Deliver(route(102)));
    // Rewriting the same message is not a change: no kernel call is owed.
    assert!(matches!(
        program(&t, 2, VITS, 102).unwrap(),
        Effect::Routed { changed: false, .. }
    ));
}

#[test]
fn an_interrupt_held_while_masked_is_delivered_on_unmask_exactly_once() {
    let t = VectorTable::msix(8, composer()).unwrap();
    t.msix_control_write(0x8000).unwrap();
    program(&t, 3, VITS, 7).unwrap();
    assert_eq!(
        t.msix_write(MsixRegion::Table, 3 * 16 + 12, 4, 1).unwrap(),
        Effect::Masked { vector: 3 }
    );
    assert_eq!(t.host_interrupt(3).unwrap(), Delivery::Held);
    assert_eq!(t.host_interrupt(3).unwrap(), Delivery::Held);
    // The PBA shows it.
    assert_eq!(t.msix_read(MsixRegion::Pba, 0, 8).unwrap(), 1 << 3);
    match t.msix_write(MsixRegion::Table, 3 * 16 + 12, 4, 0).unwrap() {
        Effect::Routed {
            deliver_pending: true,
            changed: false,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(t.msix_read(MsixRegion::Pba, 0, 8).unwrap(), 0);
    assert_eq!(t.take_pending(), None);
}

#[test]
fn hostile_accesses_are_refused_and_change_nothing() {
    let t = VectorTable::msix(4, composer()).unwrap();
    t.msix_control_write(0x8000).unwrap();
    program(&t, 0, VITS, 1).unwrap();
    let before = t.vector(0).unwrap();
    let bad = [
        (MsixRegion::Table, 2, 4),  // misaligned
        (MsixRegion::Table, 0, 2),  // too small
        (MsixRegion::Table, 4, 8),  // misaligned 8-byte
        (MsixRegion::Table, 64, 4), // past the table
        (MsixRegion::Table, u64::MAX - 3, 4),
        (MsixRegion::Pba, 0, 8), // read-only
    ];
    for (region, offset, size) in bad {
        let r = t.msix_write(region, offset, size, u64::MAX);
        assert!(
            matches!(r, Err(Error::BadAccess { .. })),
            "{region:?} {offset:#x}/{size}: {r:?}"
        );
    }
    assert!(matches!(
        t.msix_read(MsixRegion::Pba, 8, 8),
        Err(Error::BadAccess { .. })
    ));
    // An address that is not a declared doorbell, on a live vector: refused, old route kept.
    let r = t.msix_write(MsixRegion::Table, 0, 8, 0xdead_0000);
    assert!(
        matches!(
            r,
            Err(Error::NotADoorbell {
                address: 0xdead_0000
            })
        ),
        "{r:?}"
    );
    // ... and on unmask of a masked vector: stays masked.
    t.msix_write(MsixRegion::Table, 16 + 12, 4, 1).unwrap();
    t.msix_write(MsixRegion::Table, 16, 8, 0xdead_0000).unwrap();
    assert!(t.msix_write(MsixRegion::Table, 16 + 12, 4, 0).is_err());
    assert!(t.vector(1).unwrap().masked);
    assert_eq!(t.vector(0).unwrap(), before);
    assert!(matches!(
        t.host_interrupt(4),
        Err(Error::VectorOutOfRange { vector: 4, len: 4 })
    ));
    // The other index's accessors refuse.
    assert!(t.msi_config_write(2, 2, 1).is_err());
}

#[test]
fn msi_capability_writes_route_every_enabled_vector() {
    let t = VectorTable::msi(4, composer()).unwrap();
    // Multiple Message Capable = 4 vectors, 64-bit, maskable.
    assert_eq!(t.msi_config_read(2, 2).unwrap() & 0x18e, 0x184);
    t.msi_config_write(4, 4, VITS as u32).unwrap();
    t.msi_config_write(8, 4, 0).unwrap();
    t.msi_config_write(0x0c, 2, 0x20).unwrap();
    // Enable with MME = 2 (4 vectors): vector k gets data 0x20 | k.
    assert_eq!(
        t.msi_config_write(2, 2, 0x21).unwrap(),
        Effect::Opened { pending: 0 }
    );
    for v in 0..4 {
        assert_eq!(t.vector(v).unwrap().route, Some(route(0x20 | v)));
    }
    // MME above MMC is refused and changes nothing.
    assert!(t.msi_config_write(2, 2, 0x31).is_err());
    assert_eq!(t.msi_config_read(2, 2).unwrap() & 0x71, 0x21);
    // Per-vector mask on vector 2: held, then delivered when unmasked.
    t.msi_config_write(0x10, 4, 1 << 2).unwrap();
    assert_eq!(t.host_interrupt(2).unwrap(), Delivery::Held);
    assert_eq!(t.msi_config_read(0x14, 4).unwrap(), 1 << 2);
    assert_eq!(
        t.msi_config_write(0x10, 4, 0).unwrap(),
        Effect::Opened { pending: 1 }
    );
    assert_eq!(t.take_pending(), Some((2, route(0x22))));
    // Read-only bytes stay.
    t.msi_config_write(0, 1, 0xff).unwrap();
    assert_eq!(t.msi_config_read(0, 1).unwrap(), 0x05);
    assert!(t.msi_config_write(1, 2, 0).is_err());
    assert!(t.msi_config_write(24, 1, 0).is_err());
}

#[test]
fn table_sizes_are_checked() {
    assert!(VectorTable::msix(0, composer()).is_err());
    assert!(VectorTable::msix(2049, composer()).is_err());
    assert!(VectorTable::msix(2048, composer()).is_ok());
    assert!(VectorTable::msi(3, composer()).is_err());
    assert!(VectorTable::msi(64, composer()).is_err());
}

#[test]
fn per_vector_addresses_compose_into_the_host_message() {
    let c = Composer {
        host: HostAddressing::PerVector,
        ..composer()
    };
    let t = VectorTable::msix(4, c).unwrap();
    t.msix_control_write(0x8000).unwrap();
    // Without a provided address the vector cannot be routed.
    assert!(matches!(
        program(&t, 1, VITS, 5),
        Err(Error::NoMsiAddress { vector: 1 })
    ));
    t.provide_msi_address(1, Some(0x4000_0040)).unwrap();
    match t.msix_write(MsixRegion::Table, 16 + 12, 4, 0).unwrap() {
        Effect::Routed { host, .. } => assert_eq!(host.address, 0x4000_0040),
        other => panic!("{other:?}"),
    }
    match t.provide_msi_address(1, Some(0x5000_0040)).unwrap() {
        Effect::Routed {
            host,
            changed: true,
            ..
        } => assert_eq!(host.address, 0x5000_0040),
        other => panic!("{other:?}"),
    }
    // Clearing it on a live vector is refused: the vector would have no host address.
    assert!(t.provide_msi_address(1, None).is_err());
    assert_eq!(t.vector(1).unwrap().msi_address, Some(0x5000_0040));
}

// ---- property test against a reference model ----------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Write { offset: u64, size: u8, value: u64 },
    Read { pba: bool, offset: u64, size: u8 },
    Control(u16),
    Interrupt(u32),
    TakePending,
}

fn op(n: u32) -> impl Strategy<Value = Op> {
    let table = 16 * n as u64;
    // Mostly well-formed writes of plausible values to one word of one vector, so that
    // program / mask / interrupt / unmask sequences happen often; some raw noise too.
    let word_write =
        (0..n, 0..4u64, any::<u32>(), any::<bool>()).prop_map(|(v, w, r, plausible)| {
            let value = match (w, plausible) {
                (0, true) => VITS & 0xffff_ffff,
                (1, true) => VITS >> 32,
                (2, _) => (r % 4) as u64,
                (3, true) => (r % 2) as u64,
                _ => r as u64,
            };
            Op::Write {
                offset: 16 * v as u64 + 4 * w,
                size: 4,
                value,
            }
        });
    let qword_write = (0..n, any::<bool>(), any::<u64>()).prop_map(|(v, hi, r)| {
        let value = if hi {
            (r % 4) | (((r >> 32) % 2) << 32)
        } else if r % 3 == 0 {
            r
        } else {
            VITS
        };
        Op::Write {
            offset: 16 * v as u64 + if hi { 8 } else { 0 },
            size: 8,
            value,
        }
    });
    let noise = (
        (0..table + 16),
        prop_oneof![Just(1u8), Just(2u8), Just(4u8), Just(8u8)],
        any::<u64>(),
    )
        .prop_map(|(offset, size, value)| Op::Write {
            offset,
            size,
            value,
        });
    prop_oneof![
        6 => word_write,
        2 => qword_write,
        1 => noise,
        1 => ((0..table + 8), any::<bool>(), prop_oneof![Just(4u8), Just(8u8)])
            .prop_map(|(offset, pba, size)| Op::Read { pba, offset: offset & !3, size }),
        1 => prop_oneof![Just(0x8000u16), Just(0xc000u16), Just(0u16)].prop_map(Op::Control),
        3 => (0..n + 1).prop_map(Op::Interrupt),
        1 => Just(Op::TakePending),
    ]
}

/// The plain model: the guest-visible table as words, and the rules spelled out directly.
struct Model {
    words: Vec<u32>,
    routed: Vec<Option<Route>>,
    pending: Vec<bool>,
    enabled: bool,
    fmask: bool,
    /// Interrupts delivered, immediately or later.
    delivered: u64,
    raised: u64,
}

impl Model {
    fn new(n: u32) -> Self {
        let mut words = vec![0u32; 4 * n as usize];
        for v in 0..n as usize {
            words[4 * v + 3] = 1;
        }
        Model {
            words,
            routed: vec![None; n as usize],
            pending: vec![false; n as usize],
            enabled: false,
            fmask: false,
            delivered: 0,
            raised: 0,
        }
    }
    fn masked(&self, v: usize) -> bool {
        self.words[4 * v + 3] & 1 != 0
    }
    fn deliverable(&self, v: usize) -> bool {
        self.enabled && !self.fmask && !self.masked(v) && self.routed[v].is_some()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_trap_emulator_agrees_with_the_model((n, ops) in (1u32..12).prop_flat_map(|n| (Just(n), prop::collection::vec(op(n), 1..160)))) {
        let t = VectorTable::msix(n, composer()).unwrap();
        let mut m = Model::new(n);
        let table_len = 16 * n as u64;
        for op in ops {
            match op {
                Op::Write { offset, size, value } => {
                    let r = t.msix_write(MsixRegion::Table, offset, size, value);
                    let ok_access = (size == 4 || size == 8) && offset % size as u64 == 0 && offset + size as u64 <= table_len;
                    if !ok_access {
                        prop_assert!(matches!(r, Err(Error::BadAccess { .. })), "{:?}", r);
                        continue;
                    }
                    let v = (offset / 16) as usize;
                    let mut w = [m.words[4 * v], m.words[4 * v + 1], m.words[4 * v + 2], m.words[4 * v + 3]];
                    let k = ((offset % 16) / 4) as usize;
                    w[k] = value as u32;
                    if size == 8 { w[k + 1] = (value >> 32) as u32; }
                    let masked = w[3] & 1 != 0;
                    let address = w[0] as u64 | (w[1] as u64) << 32;
                    let same = w[..3] == [m.words[4 * v], m.words[4 * v + 1], m.words[4 * v + 2]];
                    if masked || (!m.masked(v) && same && m.routed[v].is_some()) {
                        prop_assert!(r.is_ok(), "{:?}", r);
                        m.words[4 * v..4 * v + 4].copy_from_slice(&w);
                    } else if address != VITS {
                        prop_assert!(matches!(r, Err(Error::NotADoorbell { .. })), "{:?}", r);
                    } else {
                        m.words[4 * v..4 * v + 4].copy_from_slice(&w);
                        m.routed[v] = Some(route(w[2]));
                        let claim = m.pending[v] && m.deliverable(v);
                        if claim { m.pending[v] = false; m.delivered += 1; }
                        match r {
                            Ok(Effect::Routed { vector, route: got, deliver_pending, .. }) => {
                                prop_assert_eq!(vector as usize, v);
                                prop_assert_eq!(got, route(w[2]));
                                prop_assert_eq!(deliver_pending, claim);
                            }
                            other => prop_assert!(false, "expected Routed, got {:?}", other),
                        }
                    }
                }
                Op::Read { pba, offset, size } => {
                    let region = if pba { MsixRegion::Pba } else { MsixRegion::Table };
                    let len = if pba { 8 * n.div_ceil(64) as u64 } else { table_len };
                    let r = t.msix_read(region, offset, size);
                    if offset % size as u64 != 0 || offset + size as u64 > len {
                        prop_assert!(r.is_err());
                        continue;
                    }
                    let word = |k: usize| -> u64 {
                        if pba {
                            (0..32).filter(|b| 32 * k + b < n as usize && m.pending[32 * k + b]).fold(0u64, |w, b| w | 1 << b)
                        } else {
                            m.words[k] as u64
                        }
                    };
                    let k = (offset / 4) as usize;
                    let want = if size == 4 { word(k) } else { word(k) | word(k + 1) << 32 };
                    prop_assert_eq!(r.unwrap(), want);
                }
                Op::Control(c) => {
                    let was_open = m.enabled && !m.fmask;
                    m.enabled = c & 0x8000 != 0;
                    m.fmask = c & 0x4000 != 0;
                    let e = t.msix_control_write(c).unwrap();
                    let open = m.enabled && !m.fmask;
                    let want = match (was_open, open) {
                        (false, true) => Effect::Opened { pending: (0..n as usize).filter(|&v| m.pending[v] && m.deliverable(v)).count() as u32 },
                        (true, false) => Effect::Closed,
                        _ => Effect::None,
                    };
                    prop_assert_eq!(e, want);
                }
                Op::Interrupt(v) => {
                    let r = t.host_interrupt(v);
                    if v >= n {
                        prop_assert!(matches!(r, Err(Error::VectorOutOfRange { .. })), "{:?}", r);
                        continue;
                    }
                    m.raised += 1;
                    let v = v as usize;
                    if m.deliverable(v) {
                        m.delivered += 1;
                        prop_assert_eq!(r.unwrap(), Delivery::Deliver(m.routed[v].unwrap()));
                    } else {
                        // A second interrupt on an already pending vector merges into it,
                        // as a level of pending does on real hardware.
                        if m.pending[v] { m.raised -= 1; }
                        m.pending[v] = true;
                        prop_assert_eq!(r.unwrap(), Delivery::Held);
                    }
                }
                Op::TakePending => {
                    let want = (0..n as usize).find(|&v| m.pending[v] && m.deliverable(v));
                    let got = t.take_pending();
                    prop_assert_eq!(got.map(|(v, _)| v as usize), want);
                    if let Some(v) = want {
                        prop_assert_eq!(got.unwrap().1, m.routed[v].unwrap());
                        m.pending[v] = false;
                        m.delivered += 1;
                    }
                }
            }
            // Never lose an interrupt: each one raised is delivered or still pending.
            let held = m.pending.iter().filter(|p| **p).count() as u64;
            prop_assert_eq!(m.raised, m.delivered + held);
            for v in 0..n {
                let s = t.vector(v).unwrap();
                prop_assert_eq!(s.pending, m.pending[v as usize]);
                prop_assert_eq!(s.masked, m.masked(v as usize));
                prop_assert_eq!(s.route, m.routed[v as usize]);
            }
        }
    }
}
