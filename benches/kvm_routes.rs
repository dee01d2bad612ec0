//! The performance record of `vmsi::kvm` (P1-P8 of the performance anchors): ours against a
//! full-rebuild and a linear-scan baseline, measured in this one process on the same guest
//! accesses, through the same trap emulator and the same counting VM. The kernel's own
//! cost is not timed (there is no `/dev/kvm` here): it is reported as the calls and bytes
//! each design hands it.
//!
//! ```sh
//! cargo bench --features kvm --bench kvm_routes            # ~6 minutes on 2 cores
//! VMSI_BENCH_QUICK=1 cargo bench --features kvm --bench kvm_routes   # ~2 minutes
//! ```
//!
//! The ratio table is printed at the end and saved in `target/vmsi-bench/`.

mod support;

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use support::designs::{Design, FullRebuild, LinearScan, Ours, OursBatched};
use support::guest::{self, Access};
use support::report::{self, Row};
use vmsi::msi::VectorTable;
use vmsi::seam::CountingAllocator;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocs() -> u64 {
    CountingAllocator::thread_allocations()
}

fn quick() -> bool {
    std::env::var_os("VMSI_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Individually timed ops per steady-state case.
fn audit_ops() -> usize {
    if quick() { 2_000 } else { 10_000 }
}

/// A VM under one design, with its devices' vector tables (by position; each with the
/// design's index of the device).
struct World<D> {
    d: D,
    tables: Vec<(usize, VectorTable)>,
    rng: u64,
    data: u32,
}

impl<D: Design> World<D> {
    fn new() -> Self {
        World {
            d: D::new(),
            tables: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
            data: 1 << 20,
        }
    }

    fn add(&mut self, n: u32) -> usize {
        let dev = self.d.add_device(n);
        self.tables.push((dev, guest::table(n, dev as u32 + 1)));
        self.tables.len() - 1
    }

    fn remove(&mut self, at: usize) {
        let (dev, _) = self.tables.remove(at);
        self.d.remove_device(dev);
    }

    fn trap(&mut self, at: usize, a: Access) {
        let (dev, t) = &self.tables[at];
        let e = guest::perform(t, a);
        self.d.on_trap(*dev, t, &e);
    }

    fn run(&mut self, at: usize, seq: &[Access]) {
        for &a in seq {
            self.trap(at, a);
        }
    }

    /// `devices` devices of `n` vectors, the first `used` of each routed.
    fn routed(devices: u32, n: u32, used: u32) -> Self {
        let mut w = World::<D>::new();
        let seq = guest::restore(n, used);
        for _ in 0..devices {
            let dev = w.add(n);
            w.run(dev, &seq);
        }
        w.d.end_batch();
        w
    }

    fn next(&mut self) -> u64 {
        // xorshift64: deterministic and allocation-free.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// The guest gives a random routed vector a new EventID: one 4-byte write to an
    /// unmasked entry, a real route change.
    fn update(&mut self, used: u32) {
        let r = self.next();
        let dev = (r % self.tables.len() as u64) as usize;
        let v = (r >> 16) % used as u64;
        self.data = self.data.wrapping_add(1);
        let value = self.data as u64;
        self.trap(
            dev,
            Access::Table {
                offset: 16 * v + 8,
                size: 4,
                value,
            },
        );
    }

    /// The guest masks and unmasks a random routed vector.
    fn mask_cycle(&mut self, used: u32) {
        let r = self.next();
        let dev = (r % self.tables.len() as u64) as usize;
        let e = 16 * ((r >> 16) % used as u64) + 12;
        for masked in [1, 0] {
            self.trap(
                dev,
                Access::Table {
                    offset: e,
                    size: 4,
                    value: masked,
                },
            );
        }
    }
}

fn row<D: Design>(group: &'static str, param: &str, x: u64) -> Row {
    Row {
        group,
        param: param.into(),
        x,
        design: D::NAME,
        ..Row::default()
    }
}

/// Counters over `ops` operations, written into `r`.
fn per_op(r: &mut Row, allocs: u64, c: vmsi::kvm::KvmCounts, ops: f64) {
    r.allocs = allocs as f64 / ops;
    r.commits = c.commits as f64 / ops;
    r.calls = c.calls() as f64 / ops;
    r.bytes = c.commit_bytes as f64 / ops;
    r.kernel_ns = c.modelled_kernel_ns() / ops;
}

/// A steady-state case: `op` repeated on one world. An audit pass times `audit_ops()` ops
/// one by one (p50/p99) and counts allocations and kernel calls; criterion then measures
/// the mean.
fn steady<D: Design>(
    c: &mut Criterion,
    group: &'static str,
    param: &str,
    x: u64,
    mut w: World<D>,
    op: impl Fn(&mut World<D>),
) {
    for _ in 0..1000 {
        op(&mut w);
    }
    let mut samples = vec![0u64; audit_ops()];
    let (c0, a0) = (w.d.counts(), allocs());
    for s in samples.iter_mut() {
        let t = Instant::now();
        op(&mut w);
        *s = t.elapsed().as_nanos() as u64;
    }
    let (a1, c1) = (allocs(), w.d.counts().since(&c0));
    let mut r = row::<D>(group, param, x);
    per_op(&mut r, a1 - a0, c1, samples.len() as f64);
    (r.p50_ns, r.p99_ns) = report::percentiles(&mut samples);
    report::record(r);

    let mut per_iter = Vec::new();
    c.benchmark_group(group)
        .bench_function(format!("{param}/{}", D::NAME), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    op(&mut w);
                }
                let d = t.elapsed();
                per_iter.push(d.as_nanos() as f64 / iters as f64);
                d
            })
        });
    report::set_mean(group, param, D::NAME, median(&mut per_iter));
}

/// The median of criterion's samples (each a mean over its iterations): robust against
/// the other tenants of a shared machine.
fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// A one-shot case: `run` on a fresh world from `build` (built outside the timing).
fn oneshot<D: Design>(
    c: &mut Criterion,
    group: &'static str,
    param: &str,
    x: u64,
    note: &str,
    build: impl Fn() -> World<D>,
    run: impl Fn(&mut World<D>),
) {
    let mut w = build();
    let (c0, a0) = (w.d.counts(), allocs());
    let t = Instant::now();
    run(&mut w);
    let dt = t.elapsed().as_nanos() as f64;
    let (a1, c1) = (allocs(), w.d.counts().since(&c0));
    drop(w);
    let mut r = row::<D>(group, param, x);
    per_op(&mut r, a1 - a0, c1, 1.0);
    r.p50_ns = dt;
    r.note = note.into();
    report::record(r);

    let mut per_iter = Vec::new();
    let mut g = c.benchmark_group(group);
    g.sampling_mode(SamplingMode::Flat);
    g.bench_function(format!("{param}/{}", D::NAME), |b| {
        b.iter_custom(|iters| {
            let mut sum = Duration::ZERO;
            for _ in 0..iters {
                let mut w = build();
                let t = Instant::now();
                run(&mut w);
                sum += t.elapsed();
                black_box(&w);
            }
            per_iter.push(sum.as_nanos() as f64 / iters as f64);
            sum
        })
    });
    g.finish();
    report::set_mean(group, param, D::NAME, median(&mut per_iter));
}

/// P1: one guest write that changes a route, at R routes in the VM.
fn p1<D: Design>(c: &mut Criterion) {
    for r in [64u32, 256, 1024, 2048, 4096] {
        let (devices, n) = if r <= 2048 { (1, r) } else { (r / 2048, 2048) };
        let w = World::<D>::routed(devices, n, n);
        steady(c, "P1", &format!("R={r}"), r as u64, w, move |w| {
            w.update(n)
        });
    }
}

/// P2: kernel calls and bytes per update, for a real change and for an identical rewrite
/// (masked around it), with 1 and 8 devices.
fn p2<D: Design>() {
    for (devices, n) in [(1u32, 64u32), (1, 2048), (8, 256), (2, 2048)] {
        let routes = devices * n;
        for (kind, identical) in [("change", false), ("identical", true)] {
            let mut w = World::<D>::routed(devices, n, n);
            let ops = 1000;
            let (c0, a0) = (w.d.counts(), allocs());
            for _ in 0..ops {
                if identical {
                    w.mask_cycle(n);
                } else {
                    w.update(n);
                }
            }
            let (a1, c1) = (allocs(), w.d.counts().since(&c0));
            let mut r = row::<D>(
                "P2",
                &format!("R={routes} D={devices} {kind}"),
                routes as u64,
            );
            per_op(&mut r, a1 - a0, c1, ops as f64);
            report::record(r);
        }
    }
}

/// P3: a Linux guest's MSI-X programming over a driver's life, through the trap emulator.
fn p3<D: Design>(c: &mut Criterion) {
    let n = 2048;
    let seq = guest::linux_probe_and_life(n);
    let effective = guest::effective_route_changes(n, &seq);
    let note = format!(
        "{} guest writes, {effective} effective route changes",
        seq.len()
    );
    oneshot(
        c,
        "P3",
        &format!("N={n}"),
        n as u64,
        &note,
        || {
            let mut w = World::<D>::new();
            w.add(n);
            w
        },
        |w| w.run(0, &seq),
    );
}

/// P4: bring-up of one device of N vectors (enable, program and unmask every vector under
/// the function mask, open).
fn p4<D: Design>(c: &mut Criterion) {
    for n in [1u32, 16, 64, 256, 1024, 2048] {
        let seq = guest::restore(n, n);
        oneshot(
            c,
            "P4",
            &format!("N={n}"),
            n as u64,
            "",
            || {
                let mut w = World::<D>::new();
                w.add(n);
                w
            },
            |w| w.run(0, &seq),
        );
    }
}

/// P5: bring-up of several devices one after the other (migration resume). A 257-vector
/// device is used by a 128-vCPU guest: 129 vectors routed (16 x 257 would not fit 4096).
fn p5<D: Design>(c: &mut Criterion) {
    for (devices, n, used) in [(8u32, 65u32, 65u32), (16, 257, 129), (2, 2048, 2048)] {
        let seq = guest::restore(n, used);
        let run = |w: &mut World<D>| {
            for dev in 0..devices as usize {
                w.run(dev, &seq);
            }
            w.d.end_batch();
        };
        let build = || {
            let mut w = World::<D>::new();
            for _ in 0..devices {
                w.add(n);
            }
            w
        };
        // Per-device growth: the first and the last device's share of one run.
        let mut w = build();
        let mut per_device = Vec::new();
        for dev in 0..devices as usize {
            let t = Instant::now();
            w.run(dev, &seq);
            per_device.push(t.elapsed());
        }
        w.d.end_batch();
        let note = format!(
            "first device {:.1} µs, last {:.1} µs",
            per_device[0].as_nanos() as f64 / 1e3,
            per_device[per_device.len() - 1].as_nanos() as f64 / 1e3
        );
        oneshot(
            c,
            "P5",
            &format!("{devices}x{n}"),
            (devices * used) as u64,
            &note,
            build,
            run,
        );
    }
}

/// P6: the guest masks and unmasks one vector, with F routed vectors (irqfds) in the VM.
fn p6<D: Design>(c: &mut Criterion) {
    for f in [64u32, 2048] {
        let w = World::<D>::routed(1, f, f);
        steady(c, "P6", &format!("F={f}"), f as u64, w, move |w| {
            w.mask_cycle(f)
        });
    }
}

/// P7: allocation audit at R = 4096: updates, mask/unmask, device remove + add.
fn p7<D: Design>() {
    let mut w = World::<D>::routed(2, 2048, 2048);
    for _ in 0..1000 {
        w.update(2048);
    }
    let phases: [(&str, u64); 3] = [
        ("1e5 updates", 100_000),
        ("1e2 mask/unmask", 100),
        ("10 remove+add", 10),
    ];
    for (name, ops) in phases {
        let (c0, a0) = (w.d.counts(), allocs());
        for _ in 0..ops {
            match name {
                "1e5 updates" => w.update(2048),
                "1e2 mask/unmask" => w.mask_cycle(2048),
                _ => {
                    // Unplug the last device and plug a fresh one in its place.
                    w.remove(w.tables.len() - 1);
                    let at = w.add(2048);
                    w.run(at, &guest::restore(2048, 2048));
                }
            }
        }
        let (a1, c1) = (allocs(), w.d.counts().since(&c0));
        let mut r = row::<D>("P7", &format!("R=4096 {name}"), 4096);
        per_op(&mut r, a1 - a0, c1, ops as f64);
        report::record(r);
    }
}

fn thrash() {
    static BUF: OnceLock<Vec<u64>> = OnceLock::new();
    let buf = BUF.get_or_init(|| vec![1; 4 << 17]); // 4 MiB: more than L2
    let mut sum = 0u64;
    for k in (0..buf.len()).step_by(8) {
        sum = sum.wrapping_add(buf[k]);
    }
    black_box(sum);
}

/// P8: random updates over 16 devices x 2048 vectors, 256 routed each (R = 4096), with the
/// caches thrashed between updates; each update timed on its own.
fn p8<D: Design>() {
    let mut w = World::<D>::routed(16, 2048, 256);
    let mut samples = vec![0u64; audit_ops() / 4];
    thrash(); // its buffer is allocated on first use, outside the count
    let (c0, a0) = (w.d.counts(), allocs());
    for s in samples.iter_mut() {
        thrash();
        let t = Instant::now();
        w.update(256);
        *s = t.elapsed().as_nanos() as u64;
    }
    let (a1, c1) = (allocs(), w.d.counts().since(&c0));
    let mut r = row::<D>("P8", "16x2048, R=4096", 4096);
    per_op(&mut r, a1 - a0, c1, samples.len() as f64);
    (r.p50_ns, r.p99_ns) = report::percentiles(&mut samples);
    r.note = format!("p99/p50 = {:.2}", r.p99_ns / r.p50_ns.max(1.0));
    report::record(r);
}

fn main() {
    let (warm, measure, samples) = if quick() {
        (Duration::from_millis(50), Duration::from_millis(250), 10)
    } else {
        (Duration::from_millis(200), Duration::from_millis(800), 20)
    };
    let mut c = Criterion::default()
        .warm_up_time(warm)
        .measurement_time(measure)
        .sample_size(samples)
        .configure_from_args();

    p1::<Ours>(&mut c);
    p1::<FullRebuild>(&mut c);
    p1::<LinearScan>(&mut c);
    p2::<Ours>();
    p2::<FullRebuild>();
    p2::<LinearScan>();
    p3::<Ours>(&mut c);
    p3::<FullRebuild>(&mut c);
    p3::<LinearScan>(&mut c);
    p4::<Ours>(&mut c);
    p4::<FullRebuild>(&mut c);
    p4::<LinearScan>(&mut c);
    p5::<Ours>(&mut c);
    p5::<OursBatched>(&mut c);
    p5::<FullRebuild>(&mut c);
    p5::<LinearScan>(&mut c);
    p6::<Ours>(&mut c);
    p6::<FullRebuild>(&mut c);
    p6::<LinearScan>(&mut c);
    p7::<Ours>();
    p7::<FullRebuild>();
    p7::<LinearScan>();
    p8::<Ours>();
    p8::<FullRebuild>();
    p8::<LinearScan>();

    c.final_summary();
    report::finish();
}
