//! Guest MSI-X programming sequences, modelled on what Linux's PCI MSI code writes (not a
//! recording): `msix_capability_init` + `request_irq` on probe, and
//! `__pci_restore_msix_state` on resume. Shared by `benches/kvm_routes.rs` and
//! `tests/kvm_routes.rs`.

#![allow(dead_code)] // each user takes a part

use vmsi::msi::{
    Composer, Domain, DoorbellMap, Effect, HostAddressing, MsixRegion, Route, VectorTable,
};

/// The virtual ITS doorbell (`GITS_TRANSLATER`) the guest programs.
pub const VITS: u64 = 0x0809_0040;
/// The host window address every vector writes (KernelWindow).
pub const WINDOW: u64 = 0x0800_0040;

/// MSI-X Message Control: Enable.
pub const ENABLE: u16 = 1 << 15;
/// MSI-X Message Control: Function Mask.
pub const MASKALL: u16 = 1 << 14;

/// One guest access to a device's MSI-X structures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A write to the MSI-X table.
    Table {
        /// Byte offset in the table.
        offset: u64,
        /// 4 or 8.
        size: u8,
        /// The value written.
        value: u64,
    },
    /// A write of the capability's Message Control.
    Control(u16),
}

/// A paging-domain composer for a device the guest's ITS knows as `devid`.
pub fn composer(devid: u32) -> Composer {
    Composer {
        domain: Domain::Paging,
        host: HostAddressing::Window { address: WINDOW },
        doorbells: DoorbellMap::paging(&[VITS]).expect("one doorbell"),
        devid,
    }
}

/// An MSI-X table of `n` vectors for device `devid`.
pub fn table(n: u32, devid: u32) -> VectorTable {
    VectorTable::msix(n, composer(devid)).expect("a valid table")
}

/// The route vector data `data` gets on device `devid`.
pub fn route(devid: u32, data: u32) -> Route {
    Route {
        doorbell_gpa: VITS,
        data,
        devid,
    }
}

/// Performs one access; a refused access is a bug in the sequence.
pub fn perform(t: &VectorTable, a: Access) -> Effect {
    match a {
        Access::Table {
            offset,
            size,
            value,
        } => t.msix_write(MsixRegion::Table, offset, size, value),
        Access::Control(c) => t.msix_control_write(c),
    }
    .expect("the sequence only makes valid accesses")
}

fn ctrl(v: u32, masked: bool) -> Access {
    Access::Table {
        offset: 16 * v as u64 + 12,
        size: 4,
        value: masked as u64,
    }
}

/// `pci_write_msg_msix`: address low, address high, data, as three 4-byte writes.
fn message(out: &mut Vec<Access>, v: u32, address: u64, data: u32) {
    let e = 16 * v as u64;
    out.push(Access::Table {
        offset: e,
        size: 4,
        value: address & 0xffff_ffff,
    });
    out.push(Access::Table {
        offset: e + 4,
        size: 4,
        value: address >> 32,
    });
    out.push(Access::Table {
        offset: e + 8,
        size: 4,
        value: data as u64,
    });
}

/// A driver's life on `n` vectors as Linux writes it, redundant and masked writes
/// included:
///
/// 1. probe: Enable + Function Mask; every entry masked again (they come out of reset
///    masked); every message written while masked (arm64 ITS activates early); Function
///    Mask cleared; every vector unmasked by `request_irq`;
/// 2. every message rewritten unchanged, masked around it (`pci_write_msg_msix` on an
///    unmasked entry masks it first);
/// 3. a quarter of the vectors get a new EventID, written twice while masked;
/// 4. an eighth of the vectors are rewritten unmasked with identical data;
/// 5. an eighth are masked and unmasked (`disable_irq`/`enable_irq` of a non-lazy chip);
/// 6. the function is masked and unmasked (`pci_msix_clear_and_set_ctrl` around a reset).
pub fn linux_probe_and_life(n: u32) -> Vec<Access> {
    let mut s = Vec::new();
    s.push(Access::Control(ENABLE | MASKALL));
    for v in 0..n {
        s.push(ctrl(v, true));
    }
    for v in 0..n {
        message(&mut s, v, VITS, v);
    }
    s.push(Access::Control(ENABLE));
    for v in 0..n {
        s.push(ctrl(v, false));
    }
    for v in 0..n {
        s.push(ctrl(v, true));
        message(&mut s, v, VITS, v);
        s.push(ctrl(v, false));
    }
    for v in (0..n).step_by(4) {
        s.push(ctrl(v, true));
        message(&mut s, v, VITS, v + n);
        message(&mut s, v, VITS, v + n);
        s.push(ctrl(v, false));
    }
    for v in (1..n).step_by(8) {
        // Odd vectors kept their EventID.
        s.push(Access::Table {
            offset: 16 * v as u64 + 8,
            size: 4,
            value: v as u64,
        });
    }
    for v in (2..n).step_by(8) {
        s.push(ctrl(v, true));
        s.push(ctrl(v, false));
    }
    s.push(Access::Control(ENABLE | MASKALL));
    s.push(Access::Control(ENABLE));
    s
}

/// Bring-up of an `n`-entry table whose first `used` vectors are in use, as Linux's
/// `__pci_restore_msix_state` (resume, reset recovery) and a VMM restoring a migrated
/// device write it: Enable + Function Mask, each entry's message and vector control, then
/// the Function Mask cleared.
pub fn restore(n: u32, used: u32) -> Vec<Access> {
    let mut s = Vec::with_capacity(5 * n as usize + 2);
    s.push(Access::Control(ENABLE | MASKALL));
    for v in 0..n {
        message(&mut s, v, VITS, v);
        s.push(ctrl(v, v >= used));
    }
    s.push(Access::Control(ENABLE));
    s
}

/// Counts the effective route changes of a sequence: the times a vector's route in force
/// becomes different from the one before (a first route counts), found by replaying it on
/// a fresh table of `n` vectors.
pub fn effective_route_changes(n: u32, seq: &[Access]) -> u64 {
    let t = table(n, 1);
    let mut last: Vec<Option<Route>> = vec![None; n as usize];
    let mut changes = 0;
    for &a in seq {
        if let Effect::Routed { vector, route, .. } = perform(&t, a) {
            let slot = &mut last[vector as usize];
            if *slot != Some(route) {
                changes += 1;
                *slot = Some(route);
            }
        }
    }
    changes
}
