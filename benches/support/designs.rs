//! The route-table designs the benchmarks compare, all on the same counting VM:
//!
//! * [`Ours`] is `vmsi::kvm::KvmRoutes` ([`OursBatched`]: the same, committing once per
//!   batch the VMM marks).
//! * [`FullRebuild`] is QEMU / crosvm / cloud-hypervisor style, written from scratch here:
//!   a VM-global `HashMap<gsi, entry>` under a mutex; every routed write inserts its entry,
//!   collects every route into a fresh `Vec`, copies it into a fresh `KvmIrqRouting` and
//!   commits. Masking leaves KVM alone (QEMU moves the VFIO trigger instead, which is not
//!   counted here).
//! * [`LinearScan`] is kvmtool style, written from scratch here: one flat routing table
//!   that grows in place; a routed write looks its GSI up by a linear scan, returns early if
//!   the entry is unchanged, else writes it in place and commits. Masking deassigns the
//!   irqfd and unmasking assigns it again (kvmtool's "8x faster than VFIO" mask).
//!
//! All three allocate GSIs lazily (on a vector's first route) and register one irqfd per
//! routed vector, so the differences measured are the designs' own.

#![allow(dead_code)] // each user takes a part

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use vmsi::kvm::{
    CountingVm, DeviceKey, EFD_NONBLOCK, EventFd, KvmCounts, KvmIrqRouting, KvmRoutes, KvmVm,
    RoutesConfig, kvm_irq_routing_entry, msi_route_entry,
};
use vmsi::msi::{Effect, Route, VectorTable};

thread_local! {
    static EVENTFDS: RefCell<HashMap<u32, Arc<[EventFd]>>> = RefCell::new(HashMap::new());
}

/// `n` eventfds, made once per size and shared: the counting VM never signals them, and
/// making thousands per run would time `eventfd(2)`, not the designs.
pub fn eventfds(n: u32) -> Arc<[EventFd]> {
    EVENTFDS.with(|m| {
        m.borrow_mut()
            .entry(n)
            .or_insert_with(|| {
                (0..n)
                    .map(|_| EventFd::new(EFD_NONBLOCK).expect("eventfd"))
                    .collect()
            })
            .clone()
    })
}

/// A route-table design under test.
pub trait Design {
    /// Its name in reports.
    const NAME: &'static str;
    /// A VM with no device.
    fn new() -> Self;
    /// Registers a device with `n` vectors; returns its index.
    fn add_device(&mut self, n: u32) -> usize;
    /// Unregisters a device (its irqfds, GSIs and routes) and commits.
    fn remove_device(&mut self, dev: usize);
    /// A guest trap on device `dev` did `effect` to `table`: handle it the way the design
    /// handles a trap.
    fn on_trap(&mut self, dev: usize, table: &VectorTable, effect: &Effect);
    /// The same, as part of a batch the VMM ends with [`Design::end_batch`] (migration
    /// resume). Only ours batches; the baselines act at once.
    fn on_batched(&mut self, dev: usize, table: &VectorTable, effect: &Effect) {
        self.on_trap(dev, table, effect);
    }
    /// Ends a batch.
    fn end_batch(&mut self) {}
    /// The kernel calls so far.
    fn counts(&self) -> KvmCounts;
}

/// `vmsi::kvm::KvmRoutes`.
pub struct Ours {
    vm: Arc<CountingVm>,
    routes: KvmRoutes<Arc<CountingVm>>,
    keys: Vec<DeviceKey>,
}

impl Design for Ours {
    const NAME: &'static str = "ours";

    fn new() -> Self {
        let vm = Arc::new(CountingVm::new());
        let routes = KvmRoutes::new(vm.clone(), RoutesConfig::default()).expect("routes");
        Ours {
            vm,
            routes,
            keys: Vec::new(),
        }
    }

    fn add_device(&mut self, n: u32) -> usize {
        self.keys
            .push(self.routes.add_device(eventfds(n)).expect("add device"));
        self.keys.len() - 1
    }

    fn remove_device(&mut self, dev: usize) {
        self.routes.remove_device(self.keys[dev]).expect("remove");
        self.routes.commit().expect("commit");
    }

    fn on_trap(&mut self, dev: usize, table: &VectorTable, effect: &Effect) {
        self.routes
            .update(self.keys[dev], table, effect)
            .expect("update");
    }

    fn on_batched(&mut self, dev: usize, table: &VectorTable, effect: &Effect) {
        self.routes
            .apply(self.keys[dev], table, effect)
            .expect("apply");
    }

    fn end_batch(&mut self) {
        self.routes.commit().expect("commit");
    }

    fn counts(&self) -> KvmCounts {
        self.vm.counts()
    }
}

impl Ours {
    /// The route table, for checks.
    pub fn routes(&self) -> &KvmRoutes<Arc<CountingVm>> {
        &self.routes
    }
}

/// Ours, driven by a VMM that stages every device's writes and commits once at the end
/// (migration resume across devices).
pub struct OursBatched(Ours);

impl Design for OursBatched {
    const NAME: &'static str = "ours-batched";

    fn new() -> Self {
        OursBatched(Ours::new())
    }

    fn add_device(&mut self, n: u32) -> usize {
        self.0.add_device(n)
    }

    fn remove_device(&mut self, dev: usize) {
        self.0.remove_device(dev);
    }

    fn on_trap(&mut self, dev: usize, table: &VectorTable, effect: &Effect) {
        self.0.on_batched(dev, table, effect);
    }

    fn end_batch(&mut self) {
        self.0.end_batch();
    }

    fn counts(&self) -> KvmCounts {
        self.0.counts()
    }
}

/// Lazily allocated GSIs, lowest recycled first: the same policy for both baselines.
#[derive(Default)]
struct Gsis {
    next: u32,
    free: Vec<u32>,
}

impl Gsis {
    fn take(&mut self) -> u32 {
        self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            assert!(self.next <= 4096, "KVM_MAX_IRQ_ROUTES");
            self.next - 1
        })
    }
}

struct BaselineDevice {
    eventfds: Arc<[EventFd]>,
    gsi: Vec<Option<u32>>,
    irqfd: Vec<bool>,
}

impl BaselineDevice {
    fn new(n: u32) -> Self {
        BaselineDevice {
            eventfds: eventfds(n),
            gsi: vec![None; n as usize],
            irqfd: vec![false; n as usize],
        }
    }
}

/// The full-rebuild baseline.
pub struct FullRebuild {
    vm: Arc<CountingVm>,
    routes: Mutex<HashMap<u32, kvm_irq_routing_entry>>,
    devices: Vec<Option<BaselineDevice>>,
    gsis: Gsis,
}

impl FullRebuild {
    fn commit_all(&self, routes: &HashMap<u32, kvm_irq_routing_entry>) {
        let entries: Vec<kvm_irq_routing_entry> = routes.values().copied().collect();
        let routing = KvmIrqRouting::from_entries(&entries).expect("at most 4096 routes");
        self.vm.set_gsi_routing(&routing).expect("commit");
    }

    fn route(&mut self, dev: usize, vector: u32, route: &Route) {
        let d = self.devices[dev].as_mut().expect("device");
        let v = vector as usize;
        let gsi = *d.gsi[v].get_or_insert_with(|| self.gsis.take());
        let mut routes = self.routes.lock().expect("lock");
        routes.insert(gsi, msi_route_entry(gsi, route));
        self.commit_all(&routes);
        drop(routes);
        let d = self.devices[dev].as_mut().expect("device");
        if !d.irqfd[v] {
            self.vm.register_irqfd(&d.eventfds[v], gsi).expect("irqfd");
            d.irqfd[v] = true;
        }
    }
}

impl Design for FullRebuild {
    const NAME: &'static str = "full-rebuild";

    fn new() -> Self {
        FullRebuild {
            vm: Arc::new(CountingVm::new()),
            routes: Mutex::new(HashMap::new()),
            devices: Vec::new(),
            gsis: Gsis::default(),
        }
    }

    fn add_device(&mut self, n: u32) -> usize {
        self.devices.push(Some(BaselineDevice::new(n)));
        self.devices.len() - 1
    }

    fn remove_device(&mut self, dev: usize) {
        let d = self.devices[dev].take().expect("device");
        let mut routes = self.routes.lock().expect("lock");
        for (v, gsi) in d.gsi.iter().enumerate() {
            if let Some(g) = *gsi {
                if d.irqfd[v] {
                    self.vm.unregister_irqfd(&d.eventfds[v], g).expect("irqfd");
                }
                routes.remove(&g);
                self.gsis.free.push(g);
            }
        }
        self.commit_all(&routes);
    }

    fn on_trap(&mut self, dev: usize, _table: &VectorTable, effect: &Effect) {
        if let Effect::Routed { vector, route, .. } = effect {
            self.route(dev, *vector, route);
        }
    }

    fn counts(&self) -> KvmCounts {
        self.vm.counts()
    }
}

/// The linear-scan baseline.
pub struct LinearScan {
    vm: Arc<CountingVm>,
    image: KvmIrqRouting,
    /// The route at each image position (kvmtool compares the entry's fields).
    shadow: Vec<Route>,
    devices: Vec<Option<BaselineDevice>>,
    gsis: Gsis,
}

impl LinearScan {
    fn commit(&self) {
        self.vm.set_gsi_routing(&self.image).expect("commit");
    }
}

impl Design for LinearScan {
    const NAME: &'static str = "linear-scan";

    fn new() -> Self {
        LinearScan {
            vm: Arc::new(CountingVm::new()),
            image: KvmIrqRouting::new(0).expect("empty"),
            shadow: Vec::new(),
            devices: Vec::new(),
            gsis: Gsis::default(),
        }
    }

    fn add_device(&mut self, n: u32) -> usize {
        self.devices.push(Some(BaselineDevice::new(n)));
        self.devices.len() - 1
    }

    fn remove_device(&mut self, dev: usize) {
        let d = self.devices[dev].take().expect("device");
        let mut gone = Vec::new();
        for (v, gsi) in d.gsi.iter().enumerate() {
            if let Some(g) = *gsi {
                if d.irqfd[v] {
                    self.vm.unregister_irqfd(&d.eventfds[v], g).expect("irqfd");
                }
                gone.push(g);
                self.gsis.free.push(g);
            }
        }
        let keep: Vec<bool> = self
            .image
            .as_slice()
            .iter()
            .map(|e| !gone.contains(&e.gsi))
            .collect();
        let mut k = keep.iter();
        self.shadow.retain(|_| *k.next().unwrap());
        self.image.retain(|e| !gone.contains(&e.gsi));
        self.commit();
    }

    fn on_trap(&mut self, dev: usize, _table: &VectorTable, effect: &Effect) {
        match *effect {
            Effect::Routed { vector, route, .. } => {
                let v = vector as usize;
                let d = self.devices[dev].as_mut().expect("device");
                match d.gsi[v] {
                    None => {
                        let g = self.gsis.take();
                        d.gsi[v] = Some(g);
                        self.image.push(msi_route_entry(g, &route)).expect("push");
                        self.shadow.push(route);
                        self.vm.set_gsi_routing(&self.image).expect("commit");
                    }
                    Some(g) => {
                        let at = self
                            .image
                            .as_slice()
                            .iter()
                            .position(|e| e.gsi == g)
                            .expect("routed");
                        if self.shadow[at] != route {
                            self.shadow[at] = route;
                            self.image.as_mut_slice()[at] = msi_route_entry(g, &route);
                            self.vm.set_gsi_routing(&self.image).expect("commit");
                        }
                    }
                }
                if !d.irqfd[v] {
                    let g = d.gsi[v].expect("routed");
                    self.vm.register_irqfd(&d.eventfds[v], g).expect("irqfd");
                    d.irqfd[v] = true;
                }
            }
            Effect::Masked { vector } => {
                let v = vector as usize;
                let d = self.devices[dev].as_mut().expect("device");
                if let (Some(g), true) = (d.gsi[v], d.irqfd[v]) {
                    self.vm.unregister_irqfd(&d.eventfds[v], g).expect("irqfd");
                    d.irqfd[v] = false;
                }
            }
            _ => {}
        }
    }

    fn counts(&self) -> KvmCounts {
        self.vm.counts()
    }
}
