//! `VectorTable`: the per-device, per-index table of vectors.

use bitvec::vec::BitVec;
use parking_lot::{Mutex, MutexGuard};

use super::{Composer, GuestMessage, HostMessage, IrqIndex, Route};
use crate::error::{Error, Result};

/// What a guest access or a host event did, for the caller to act on. `Copy`, so handing it
/// back allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing the caller needs to do (a masked entry was edited, a read-only bit written, ...).
    None,
    /// A vector's message took effect: the guest's virtual ITS gets `route`, the device
    /// writes `host`. `changed` is false when both equal what was in force before, so the
    /// caller can skip any kernel call; `deliver_pending` asks the caller to inject one
    /// interrupt now that was held while the vector was masked.
    Routed {
        /// The vector.
        vector: u32,
        /// The route now in force.
        route: Route,
        /// The host message now in force.
        host: HostMessage,
        /// Whether route or host message differ from before.
        changed: bool,
        /// Whether an interrupt held while masked must be delivered now.
        deliver_pending: bool,
    },
    /// The vector is masked: interrupts for it are held as pending from now on.
    Masked {
        /// The vector.
        vector: u32,
    },
    /// The index was enabled or the function unmasked; `pending` vectors hold interrupts
    /// to deliver ([`VectorTable::take_pending`]).
    Opened {
        /// How many vectors have an interrupt to deliver.
        pending: u32,
    },
    /// The index was disabled or the function masked: everything is held from now on.
    Closed,
}

/// What to do with an interrupt the device raised on a vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Inject it into the guest through this route.
    Deliver(Route),
    /// The vector is masked (or not yet routed): it is now pending and will be delivered on
    /// unmask. Never lost.
    Held,
}

/// A snapshot of one vector, for inspection and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorState {
    /// The message the guest programmed (what it reads back).
    pub guest: GuestMessage,
    /// The raw vector control word (MSI-X) or the vector's mask bit (MSI).
    pub control: u32,
    /// The route in force, once the vector has been routed.
    pub route: Option<Route>,
    /// The host message in force, once routed.
    pub host: Option<HostMessage>,
    /// The MSI address provided for the vector (per-vector strategies).
    pub msi_address: Option<u64>,
    /// Guest per-vector mask.
    pub masked: bool,
    /// An interrupt is held.
    pub pending: bool,
}

/// One vector's slot.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Slot {
    /// MSI-X entry words as the guest wrote them: address low, address high, data, control.
    pub(super) raw: [u32; 4],
    pub(super) msi_address: u64,
    pub(super) route: Route,
    pub(super) host: HostMessage,
}

/// The table state behind the device's lock.
#[derive(Debug)]
pub(super) struct State {
    pub(super) slots: Box<[Slot]>,
    /// An MSI address was provided for the vector.
    pub(super) provided: BitVec,
    /// The vector has a route in force (its message was applied at least once).
    pub(super) enabled: BitVec,
    /// Guest per-vector mask.
    pub(super) masked: BitVec,
    /// An interrupt is held.
    pub(super) pending: BitVec,
    /// MSI-X enable / MSI enable.
    pub(super) index_enabled: bool,
    /// MSI-X function mask.
    pub(super) function_masked: bool,
    /// MSI only: the capability's shape and its registers as the guest wrote them.
    pub(super) msi: Option<MsiRegs>,
    pub(super) composer: Composer,
}

/// The MSI capability registers as the guest sees them. The emulated capability always has
/// 64-bit addresses and per-vector masking, whatever the physical device has: VFIO
/// virtualizes MSI, so only the vector count comes from the device.
#[derive(Clone, Copy, Debug)]
pub(super) struct MsiRegs {
    /// The capability's bytes from offset 0 (id, next, control, address, data, mask, pending).
    pub(super) bytes: [u8; super::MSI_CAP_LEN],
}

/// One device's vectors of one IRQ index (MSI or MSI-X).
///
/// Sized once; every operation takes the device's lock, touches O(1) slots and bits, and
/// allocates nothing (turning the function mask off or enabling the index only counts the
/// pending vectors; [`VectorTable::take_pending`] then hands them out one by one).
#[derive(Debug)]
pub struct VectorTable {
    index: IrqIndex,
    len: u32,
    pub(super) state: Mutex<State>,
}

impl VectorTable {
    /// A table of `len` MSI-X vectors (1..=2048).
    pub fn msix(len: u32, composer: Composer) -> Result<Self> {
        VectorTable::new(IrqIndex::Msix, len, composer)
    }

    /// A table for MSI with `vectors` vectors (a power of two, 1..=32), presented to the
    /// guest as a 64-bit, per-vector-maskable MSI capability.
    pub fn msi(vectors: u32, composer: Composer) -> Result<Self> {
        VectorTable::new(IrqIndex::Msi, vectors, composer)
    }

    fn new(index: IrqIndex, len: u32, composer: Composer) -> Result<Self> {
        if len == 0 || len > index.max_vectors() {
            return Err(Error::InvalidArgument(
                "vector count outside what the IRQ index allows",
            ));
        }
        let n = len as usize;
        let msi = (index == IrqIndex::Msi).then(|| {
            let mut bytes = [0u8; super::MSI_CAP_LEN];
            bytes[0] = crate::pci::CAP_ID_MSI;
            // Multiple Message Capable, 64-bit address, per-vector masking.
            let ctrl = ((len.trailing_zeros() as u16) << 1) | (1 << 7) | (1 << 8);
            bytes[2..4].copy_from_slice(&ctrl.to_le_bytes());
            MsiRegs { bytes }
        });
        if msi.is_some() && !len.is_power_of_two() {
            return Err(Error::InvalidArgument(
                "MSI vector counts are powers of two",
            ));
        }
        let mut masked = BitVec::repeat(false, n);
        if index == IrqIndex::Msix {
            // MSI-X entries come out of reset masked (PCI spec, Vector Control).
            masked.fill(true);
        }
        let slots = (0..n)
            .map(|_| Slot {
                raw: [0, 0, 0, (index == IrqIndex::Msix) as u32],
                ..Slot::default()
            })
            .collect();
        Ok(VectorTable {
            index,
            len,
            state: Mutex::new(State {
                slots,
                provided: BitVec::repeat(false, n),
                enabled: BitVec::repeat(false, n),
                masked,
                pending: BitVec::repeat(false, n),
                index_enabled: false,
                function_masked: false,
                msi,
                composer,
            }),
        })
    }

    /// The IRQ index.
    pub fn index(&self) -> IrqIndex {
        self.index
    }

    /// Vectors in the table.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// Always false: a table has at least one vector.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub(super) fn check(&self, vector: u32) -> Result<usize> {
        if vector < self.len {
            Ok(vector as usize)
        } else {
            Err(Error::VectorOutOfRange {
                vector,
                len: self.len,
            })
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Sets (or clears, with `None`) the MSI address the device should write for `vector`
    /// under a per-vector strategy. A routed vector is recomposed at once.
    pub fn provide_msi_address(&self, vector: u32, address: Option<u64>) -> Result<Effect> {
        let v = self.check(vector)?;
        let mut s = self.lock();
        let old = (s.provided[v], s.slots[v].msi_address);
        s.provided.set(v, address.is_some());
        s.slots[v].msi_address = address.unwrap_or(0);
        if !s.enabled[v] {
            return Ok(Effect::None);
        }
        let guest = s.guest_message(v);
        match s.apply(vector, guest) {
            Ok(e) => Ok(e),
            Err(e) => {
                // Composition failed (per-vector addressing with the address cleared): keep
                // what was in force.
                s.provided.set(v, old.0);
                s.slots[v].msi_address = old.1;
                Err(e)
            }
        }
    }

    /// The device raised `vector`: deliver it, or hold it as pending while it is masked.
    pub fn host_interrupt(&self, vector: u32) -> Result<Delivery> {
        let v = self.check(vector)?;
        let mut s = self.lock();
        if s.deliverable(v) {
            Ok(Delivery::Deliver(s.slots[v].route))
        } else {
            s.pending.set(v, true);
            Ok(Delivery::Held)
        }
    }

    /// Hands out (and clears) the next pending vector that can be delivered now, with its
    /// route; `None` when there is none. Call after [`Effect::Opened`].
    pub fn take_pending(&self) -> Option<(u32, Route)> {
        let mut s = self.lock();
        let v = s.pending.iter_ones().find(|&v| s.deliverable(v))?;
        s.pending.set(v, false);
        Some((v as u32, s.slots[v].route))
    }

    /// A snapshot of `vector`.
    pub fn vector(&self, vector: u32) -> Result<VectorState> {
        let v = self.check(vector)?;
        let s = self.lock();
        let slot = &s.slots[v];
        Ok(VectorState {
            guest: s.guest_message(v),
            control: slot.raw[3],
            route: s.enabled[v].then_some(slot.route),
            host: s.enabled[v].then_some(slot.host),
            msi_address: s.provided[v].then_some(slot.msi_address),
            masked: s.masked[v],
            pending: s.pending[v],
        })
    }

    /// Whether the index is enabled (MSI-X Enable or MSI Enable).
    pub fn index_enabled(&self) -> bool {
        self.lock().index_enabled
    }

    /// Whether the MSI-X function mask is set.
    pub fn function_masked(&self) -> bool {
        self.lock().function_masked
    }

    /// Replaces the composer (for instance when the strategy or the domain changes), and
    /// recomposes every routed vector; on failure nothing changes.
    pub fn set_composer(&self, composer: Composer) -> Result<()> {
        let mut s = self.lock();
        let old = std::mem::replace(&mut s.composer, composer);
        for v in s.enabled.iter_ones().collect::<Vec<_>>() {
            let guest = s.guest_message(v);
            let provided = s.provided[v].then_some(s.slots[v].msi_address);
            if let Err(e) = s.composer.compose(v as u32, guest, provided) {
                s.composer = old;
                return Err(e);
            }
        }
        for v in s.enabled.iter_ones().collect::<Vec<_>>() {
            let guest = s.guest_message(v);
            s.apply(v as u32, guest)?;
        }
        Ok(())
    }
}

impl State {
    /// The message vector `v` carries as the guest programmed it.
    pub(super) fn guest_message(&self, v: usize) -> GuestMessage {
        match &self.msi {
            Some(m) => m.message(v as u32),
            None => {
                let raw = self.slots[v].raw;
                GuestMessage {
                    address: raw[0] as u64 | ((raw[1] as u64) << 32),
                    data: raw[2],
                }
            }
        }
    }

    /// Whether an interrupt on `v` reaches the guest now.
    pub(super) fn deliverable(&self, v: usize) -> bool {
        self.index_enabled && !self.function_masked && !self.masked[v] && self.enabled[v]
    }

    /// Composes `guest` for vector `v` and puts it in force, claiming a pending interrupt
    /// for immediate delivery if the vector is deliverable. On error nothing changes.
    pub(super) fn apply(&mut self, vector: u32, guest: GuestMessage) -> Result<Effect> {
        self.apply_with(vector, guest, true)
    }

    /// As [`State::apply`]; without `claim_pending`, pending bits stay for
    /// [`VectorTable::take_pending`].
    pub(super) fn apply_with(
        &mut self,
        vector: u32,
        guest: GuestMessage,
        claim_pending: bool,
    ) -> Result<Effect> {
        let v = vector as usize;
        let provided = self.provided[v].then_some(self.slots[v].msi_address);
        let (host, route) = self.composer.compose(vector, guest, provided)?;
        let slot = &mut self.slots[v];
        let changed = !self.enabled[v] || slot.route != route || slot.host != host;
        slot.route = route;
        slot.host = host;
        self.enabled.set(v, true);
        let deliver_pending = claim_pending && self.pending[v] && self.deliverable(v);
        if deliver_pending {
            self.pending.set(v, false);
        }
        Ok(Effect::Routed {
            vector,
            route,
            host,
            changed,
            deliver_pending,
        })
    }

    /// Number of pending vectors deliverable now.
    pub(super) fn deliverable_pending(&self) -> u32 {
        self.pending
            .iter_ones()
            .filter(|&v| self.deliverable(v))
            .count() as u32
    }
}
