//! `KvmRoutes`: one VM's MSI routes as a ready-to-commit `KVM_SET_GSI_ROUTING` image.

use std::sync::Arc;

use super::{
    EventFd, KVM_MAX_IRQ_ROUTES, KvmIrqRouting, KvmVm, kvm_irq_routing_entry, msi_of,
    msi_route_entry,
};
use crate::error::{Error, Op, Result};
use crate::msi::{Effect, IrqIndex, Route, VectorTable};

/// The message of the error for the 4097th route: `Error::InvalidArgument(ROUTES_EXHAUSTED)`.
pub const ROUTES_EXHAUSTED: &str = "every GSI below KVM_MAX_IRQ_ROUTES (4096) is in use";

/// Whether `e` is the route-table-full error.
pub fn is_routes_exhausted(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument(m) if *m == ROUTES_EXHAUSTED)
}

/// How a VM's route table is laid out.
#[derive(Clone, Debug, Default)]
pub struct RoutesConfig {
    /// Routes the VMM keeps for itself (for instance irqchip routes for INTx irqfds). They
    /// lead every commit, because `KVM_SET_GSI_ROUTING` replaces the whole table, and their
    /// GSIs are never handed out.
    pub static_routes: Vec<kvm_irq_routing_entry>,
    /// The lowest GSI for MSI routes; the ones below stay the VMM's.
    pub first_gsi: u32,
}

/// A device registered with [`KvmRoutes::add_device`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceKey(u32);

const NO_GSI: u32 = u32::MAX;
const GSI_WORDS: usize = KVM_MAX_IRQ_ROUTES / 64;

#[derive(Clone, Copy, Debug)]
struct VectorRoute {
    gsi: u32,
    irqfd: bool,
    /// The route in the image, so that an identical one is recognised without reading it
    /// back.
    route: Route,
}

#[derive(Debug)]
struct DeviceRoutes {
    eventfds: Arc<[EventFd]>,
    vectors: Box<[VectorRoute]>,
}

/// One VM's MSI routes and irqfds.
///
/// The image is the buffer `KVM_SET_GSI_ROUTING` reads, kept dense (entry `k` is any
/// route; a GSI's position is looked up in a fixed table), so that updating a route is one
/// 48-byte store and a commit passes the buffer as it is. Every method takes `&mut self`: a
/// VMM shares one `KvmRoutes` between vCPU threads behind a mutex, which the commit needs
/// anyway (it is VM-wide in the kernel too).
///
/// Allocation: none per route update, mask, unmask or commit. Adding or removing a device
/// allocates. A vector's first route appends one entry; the buffer then grows geometrically
/// (kvm-bindings' `FamStructWrapper` has no safe way to reserve capacity up front), so it
/// reallocates only when the number of routes passes its previous high-water mark: at most
/// a dozen times up to 4096 routes, never in steady state.
#[derive(Debug)]
pub struct KvmRoutes<K> {
    kvm: K,
    image: KvmIrqRouting,
    /// GSIs in use (static routes and MSI routes), one bit each.
    used: [u64; GSI_WORDS],
    /// No GSI is free in the words below this one: where the next search starts.
    free_hint: usize,
    /// Image position of each GSI in use.
    position: Box<[u32]>,
    first_gsi: u32,
    devices: Vec<Option<DeviceRoutes>>,
    /// Vectors routed for the first time: their irqfd is registered after the next commit,
    /// so that an interrupt already waiting in the eventfd is injected through the new
    /// route instead of being dropped for lack of one.
    irqfd_queue: Vec<(u32, u32)>,
    /// Vectors of live devices: the queue's reserved capacity.
    total_vectors: usize,
    dirty: bool,
}

impl<K: KvmVm> KvmRoutes<K> {
    /// An empty route table on `kvm`. Nothing is committed until there is something to say.
    pub fn new(kvm: K, config: RoutesConfig) -> Result<Self> {
        if config.first_gsi as usize >= KVM_MAX_IRQ_ROUTES {
            return Err(Error::InvalidArgument(
                "the first MSI GSI is past KVM_MAX_IRQ_ROUTES",
            ));
        }
        let mut used = [0u64; GSI_WORDS];
        let mut position = vec![0u32; KVM_MAX_IRQ_ROUTES].into_boxed_slice();
        for (k, e) in config.static_routes.iter().enumerate() {
            let g = e.gsi as usize;
            if g >= KVM_MAX_IRQ_ROUTES || used[g / 64] & (1 << (g % 64)) != 0 {
                return Err(Error::InvalidArgument(
                    "a static route's GSI is out of range or used twice",
                ));
            }
            used[g / 64] |= 1 << (g % 64);
            position[g] = k as u32;
        }
        let image = KvmIrqRouting::from_entries(&config.static_routes)
            .map_err(|_| Error::InvalidArgument(ROUTES_EXHAUSTED))?;
        Ok(KvmRoutes {
            kvm,
            image,
            used,
            free_hint: config.first_gsi as usize / 64,
            position,
            first_gsi: config.first_gsi,
            devices: Vec::new(),
            irqfd_queue: Vec::new(),
            total_vectors: 0,
            dirty: !config.static_routes.is_empty(),
        })
    }

    /// The VM.
    pub fn kvm(&self) -> &K {
        &self.kvm
    }

    /// The image the next commit hands to `KVM_SET_GSI_ROUTING`.
    pub fn image(&self) -> &KvmIrqRouting {
        &self.image
    }

    /// Routes in the image (static and MSI).
    pub fn len(&self) -> usize {
        self.image.as_slice().len()
    }

    /// Whether the image holds no route.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// GSIs still free for MSI routes.
    pub fn free_gsis(&self) -> usize {
        (self.first_gsi as usize..KVM_MAX_IRQ_ROUTES)
            .filter(|&g| self.used[g / 64] & (1 << (g % 64)) == 0)
            .count()
    }

    /// Whether the image holds changes the kernel has not seen.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Registers a device whose vector `k` is signalled through `eventfds[k]` (the eventfds
    /// the VMM gave `VFIO_DEVICE_SET_IRQS`; it keeps its own handle on them). No GSI is
    /// taken until a vector is routed.
    pub fn add_device(&mut self, eventfds: Arc<[EventFd]>) -> Result<DeviceKey> {
        let n = eventfds.len();
        if n == 0 || n > IrqIndex::Msix.max_vectors() as usize {
            return Err(Error::InvalidArgument(
                "a device has 1 to 2048 vectors, one eventfd each",
            ));
        }
        let key = u32::try_from(self.devices.len())
            .map_err(|_| Error::InvalidArgument("too many devices"))?;
        self.total_vectors += n;
        // Every vector is queued at most once, so this capacity keeps pushes allocation-free.
        self.irqfd_queue
            .reserve(self.total_vectors.saturating_sub(self.irqfd_queue.len()));
        let vectors = vec![
            VectorRoute {
                gsi: NO_GSI,
                irqfd: false,
                route: Route::default(),
            };
            n
        ];
        self.devices.push(Some(DeviceRoutes {
            eventfds,
            vectors: vectors.into_boxed_slice(),
        }));
        Ok(DeviceKey(key))
    }

    /// Removes a device: deassigns its irqfds, frees its GSIs and drops its routes from the
    /// image (committed with the next [`KvmRoutes::commit`]).
    ///
    /// Disable the device's VFIO interrupts first. A GSI whose irqfd could not be deassigned
    /// stays allocated (its eventfd would otherwise inject whatever route takes the GSI
    /// next), and the first such error is returned after everything else is done.
    pub fn remove_device(&mut self, device: DeviceKey) -> Result<()> {
        let dev = self
            .devices
            .get_mut(device.0 as usize)
            .and_then(Option::take)
            .ok_or(Error::InvalidArgument("unknown device"))?;
        self.total_vectors -= dev.vectors.len();
        self.irqfd_queue.retain(|&(d, _)| d != device.0);
        let mut first_error = None;
        let mut drop = [0u64; GSI_WORDS];
        for (v, slot) in dev.vectors.iter().enumerate() {
            if slot.gsi == NO_GSI {
                continue;
            }
            if slot.irqfd {
                if let Err(errno) = self.kvm.unregister_irqfd(&dev.eventfds[v], slot.gsi) {
                    first_error.get_or_insert(Error::Kernel {
                        op: Op::KvmIrqfd,
                        errno,
                    });
                    continue;
                }
            }
            let g = slot.gsi as usize;
            drop[g / 64] |= 1 << (g % 64);
            self.used[g / 64] &= !(1 << (g % 64));
            self.free_hint = self.free_hint.min(g / 64);
        }
        if drop.iter().any(|&w| w != 0) {
            let gone = |g: u32| drop[g as usize / 64] & (1 << (g % 64)) != 0;
            self.image.retain(|e| !gone(e.gsi));
            for (k, e) in self.image.as_slice().iter().enumerate() {
                self.position[e.gsi as usize] = k as u32;
            }
            self.dirty = true;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Acts on what a guest access did to `table`, `device`'s vector table, without
    /// committing: a routed vector's route is written into the image (taking a GSI on its
    /// first route), an interrupt held while masked is injected, and when the index opens,
    /// the held interrupts are injected (and, for MSI, whose capability can route several
    /// vectors in one write, every routed vector is brought in). Returns whether the image
    /// changed. Masks, and routes identical to the ones in the image, cost nothing.
    pub fn apply(
        &mut self,
        device: DeviceKey,
        table: &VectorTable,
        effect: &Effect,
    ) -> Result<bool> {
        match *effect {
            Effect::Routed {
                vector,
                route,
                deliver_pending,
                ..
            } => {
                let staged = self.set_route(device, vector, route)?;
                if deliver_pending {
                    self.signal(&route)?;
                }
                Ok(staged)
            }
            Effect::Opened { pending } => {
                // An MSI-X table reports every route it puts in force as `Routed`; an MSI
                // capability may put several in force at once and report only `Opened`.
                let staged = match table.index() {
                    IrqIndex::Msi => self.sync_device(device, table)?,
                    IrqIndex::Msix => false,
                };
                if pending > 0 {
                    self.deliver_held(table)?;
                }
                Ok(staged)
            }
            Effect::Masked { .. } | Effect::Closed | Effect::None => Ok(false),
        }
    }

    /// The trap path: [`KvmRoutes::apply`], then [`KvmRoutes::commit`] unless `table` is
    /// closed (index disabled or function masked). Nothing can be delivered through a
    /// closed table, so its routes wait for the [`Effect::Opened`] that opens it: a bring-up
    /// or restore that programs and unmasks every entry under the function mask costs one
    /// commit. Returns whether `KVM_SET_GSI_ROUTING` was issued.
    pub fn update(
        &mut self,
        device: DeviceKey,
        table: &VectorTable,
        effect: &Effect,
    ) -> Result<bool> {
        let staged = self.apply(device, table, effect)?;
        // Only a change, or a table opening on changes staged while it was closed, is
        // worth a commit; everything else returns before touching the table's lock again.
        if !(staged || matches!(effect, Effect::Opened { .. })) {
            return Ok(false);
        }
        if !table.index_enabled() || table.function_masked() {
            return Ok(false);
        }
        self.commit()
    }

    /// Writes `route` for `device`'s `vector` into the image; on the vector's first route,
    /// takes the lowest free GSI and queues its irqfd. Returns whether the image changed.
    /// On error nothing changes.
    pub fn set_route(&mut self, device: DeviceKey, vector: u32, route: Route) -> Result<bool> {
        let dev = self
            .devices
            .get_mut(device.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(Error::InvalidArgument("unknown device"))?;
        let len = dev.vectors.len() as u32;
        let slot = dev
            .vectors
            .get_mut(vector as usize)
            .ok_or(Error::VectorOutOfRange { vector, len })?;
        if slot.gsi != NO_GSI {
            if slot.route == route {
                return Ok(false);
            }
            slot.route = route;
            let at = self.position[slot.gsi as usize] as usize;
            self.image.as_mut_slice()[at] = msi_route_entry(slot.gsi, &route);
            self.dirty = true;
            return Ok(true);
        }
        let from = (self.free_hint * 64).max(self.first_gsi as usize) as u32;
        let gsi = lowest_free(&self.used, from).ok_or(Error::InvalidArgument(ROUTES_EXHAUSTED))?;
        self.image
            .push(msi_route_entry(gsi, &route))
            .map_err(|_| Error::InvalidArgument(ROUTES_EXHAUSTED))?;
        let g = gsi as usize;
        self.used[g / 64] |= 1 << (g % 64);
        self.free_hint = g / 64;
        self.position[g] = (self.image.as_slice().len() - 1) as u32;
        *slot = VectorRoute {
            gsi,
            irqfd: false,
            route,
        };
        self.irqfd_queue.push((device.0, vector));
        self.dirty = true;
        Ok(true)
    }

    /// Brings every vector of `table` that has a route in force into the image (after the
    /// index opens, or to resynchronise). Returns whether the image changed.
    pub fn sync_device(&mut self, device: DeviceKey, table: &VectorTable) -> Result<bool> {
        let mut staged = false;
        for v in 0..table.len() {
            if let Some(route) = table.vector(v)?.route {
                staged |= self.set_route(device, v, route)?;
            }
        }
        Ok(staged)
    }

    /// Injects, with `KVM_SIGNAL_MSI`, every interrupt `table` held that can be delivered
    /// now. Returns how many.
    pub fn deliver_held(&mut self, table: &VectorTable) -> Result<u32> {
        let mut n = 0;
        while let Some((_, route)) = table.take_pending() {
            self.signal(&route)?;
            n += 1;
        }
        Ok(n)
    }

    /// Injects one interrupt through `route` now (`KVM_SIGNAL_MSI`).
    pub fn signal(&self, route: &Route) -> Result<()> {
        self.kvm
            .signal_msi(&msi_of(route))
            .map_err(|errno| Error::Kernel {
                op: Op::KvmSignalMsi,
                errno,
            })
    }

    /// Commits the image if it changed (one `KVM_SET_GSI_ROUTING` for everything staged,
    /// across devices), then registers the irqfds of newly routed vectors. Returns whether
    /// the image was committed. On error the image stays staged and the next commit retries.
    pub fn commit(&mut self) -> Result<bool> {
        let committed = self.dirty;
        if self.dirty {
            self.kvm
                .set_gsi_routing(&self.image)
                .map_err(|errno| Error::Kernel {
                    op: Op::KvmSetGsiRouting,
                    errno,
                })?;
            self.dirty = false;
        }
        while let Some(&(d, v)) = self.irqfd_queue.last() {
            if let Some(dev) = self.devices.get_mut(d as usize).and_then(Option::as_mut) {
                let slot = &mut dev.vectors[v as usize];
                self.kvm
                    .register_irqfd(&dev.eventfds[v as usize], slot.gsi)
                    .map_err(|errno| Error::Kernel {
                        op: Op::KvmIrqfd,
                        errno,
                    })?;
                slot.irqfd = true;
            }
            self.irqfd_queue.pop();
        }
        Ok(committed)
    }

    /// The GSI of `device`'s `vector`, once it has been routed.
    pub fn gsi(&self, device: DeviceKey, vector: u32) -> Option<u32> {
        self.slot(device, vector)
            .map(|s| s.gsi)
            .filter(|&g| g != NO_GSI)
    }

    /// The route of `device`'s `vector` in the image.
    pub fn route(&self, device: DeviceKey, vector: u32) -> Option<Route> {
        self.slot(device, vector)
            .filter(|s| s.gsi != NO_GSI)
            .map(|s| s.route)
    }

    /// Whether `device`'s `vector` has its irqfd registered.
    pub fn irqfd_registered(&self, device: DeviceKey, vector: u32) -> bool {
        self.slot(device, vector).is_some_and(|s| s.irqfd)
    }

    /// The eventfd of `device`'s `vector`.
    pub fn eventfd(&self, device: DeviceKey, vector: u32) -> Option<&EventFd> {
        self.devices
            .get(device.0 as usize)?
            .as_ref()?
            .eventfds
            .get(vector as usize)
    }

    fn slot(&self, device: DeviceKey, vector: u32) -> Option<&VectorRoute> {
        self.devices
            .get(device.0 as usize)?
            .as_ref()?
            .vectors
            .get(vector as usize)
    }
}

/// The lowest clear bit at or above `first`: at most 64 words looked at, whatever the load.
fn lowest_free(used: &[u64; GSI_WORDS], first: u32) -> Option<u32> {
    let start = first as usize / 64;
    for (w, &word) in used.iter().enumerate().skip(start) {
        let mut taken = word;
        if w == start {
            // Bits below `first` are not ours to give.
            taken |= (1u64 << (first % 64)) - 1;
        }
        if taken != u64::MAX {
            return Some((w * 64) as u32 + (!taken).trailing_zeros());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowest_free_respects_the_first_gsi_and_the_ceiling() {
        let mut used = [0u64; GSI_WORDS];
        assert_eq!(lowest_free(&used, 0), Some(0));
        assert_eq!(lowest_free(&used, 70), Some(70));
        used[1] = 0b111 << 6; // 70, 71, 72
        assert_eq!(lowest_free(&used, 70), Some(73));
        used = [u64::MAX; GSI_WORDS];
        used[GSI_WORDS - 1] &= !(1 << 63);
        assert_eq!(lowest_free(&used, 0), Some(4095));
        used[GSI_WORDS - 1] = u64::MAX;
        assert_eq!(lowest_free(&used, 0), None);
    }
}
