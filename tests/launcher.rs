//! The nested-VM launcher example (`examples/launcher/`), tested two ways.
//!
//! * As a program: the example binary that cargo builds beside this test (`cargo test`
//!   builds examples before running tests) runs as a subprocess on Sim, and each test checks
//!   its exit status and what it printed.
//! * In process: the rig ships test executables into its guest, not examples, so the
//!   launcher's modules are compiled into this test as well (the `#[path]` module below).
//!   The rig tests (`#[ignore]`d here, run by `tests/rig/run.sh`) call the same `cli` entry
//!   point the example's `main` calls, with the same arguments, against a real NVMe
//!   controller, and the Sim tests that need a prepared machine call `run` directly.

mod common;

#[path = "../examples/launcher"]
mod launcher {
    pub mod args;
    pub mod asm;
    pub mod delivery;
    pub mod guest;
    #[cfg(all(feature = "kvm", target_arch = "aarch64"))]
    pub mod kvm;
    pub mod launch;
    pub mod nvme;
    pub mod payload;
    pub mod stage1;
    pub mod strategy;
}

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use launcher::args::Options;
use launcher::launch::{self, Backend, EXIT_UNSUPPORTED, EXIT_USAGE};
use vmsi::seam::{Sim, SimConfig};
use vmsi::{Device, Iommufd};

/// A run of the launcher: its exit status and what it wrote to stdout and stderr.
#[derive(Debug)]
struct Outcome {
    code: i32,
    out: String,
    err: String,
}

impl Outcome {
    /// Panics, showing the whole run, unless the exit status is `code`.
    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "exit status; the run:\n{self}");
        self
    }

    /// Panics, showing the whole run, unless stdout or stderr contains `text`.
    fn expect(&self, text: &str) -> &Self {
        assert!(
            self.out.contains(text) || self.err.contains(text),
            "no '{text}' in the run:\n{self}"
        );
        self
    }

    /// Checks that each of the first `vectors` vectors was fired by `how`, reached its own
    /// eventfd (and no other) and was routed to the guest's vITS with its EventID.
    fn expect_delivered(&self, vectors: u32, how: &str) -> &Self {
        for k in 0..vectors {
            let fired = format!("vector {k}: {}; eventfd {k} fired (count ", how_for(how, k));
            let line = self.out.lines().find(|l| l.starts_with(&fired));
            assert!(
                line.is_some_and(|l| l.ends_with("), no other did")),
                "vector {k} did not fire alone: {line:?} in the run:\n{self}"
            );
            self.expect(&format!(
                "-> eventfd {k} -> route to the vITS: GPA 0x8090040, EventID {k}, devid 0x10"
            ));
        }
        self.expect(&format!(
            "{vectors} of {vectors} vectors delivered to their eventfds and routed"
        ))
    }

    /// Checks that the launcher ran its KVM guest and that each of the first `vectors`
    /// vectors, raised by a real NVMe completion the guest submitted, arrived in the guest as
    /// the LPI the guest mapped for it (the launcher compares the INTID the guest read from
    /// `ICC_IAR1_EL1` with `8192 + k`), through its irqfd and the vITS.
    fn expect_lpis(&self, vectors: u32) -> &Self {
        self.expect("VM: 1 vCPU; guest RAM (the same memfd as the IOAS's) as memory slot 0")
            .expect("vITS 0x8080000 (doorbell 0x8090040)")
            .expect("function mask cleared: one KVM_SET_GSI_ROUTING with");
        for k in 0..vectors {
            let lpi = 8192 + k;
            let how = match k {
                0 => "Identify on the admin queue".to_string(),
                k => format!("Flush on I/O queue {k}"),
            };
            self.expect(&format!(
                "vector {k}: the guest submitted {how} (doorbell trapped, forwarded); it \
                 acknowledged LPI {lpi}, the one it mapped for EventID {k}"
            ))
            .expect(&format!(
                "-> eventfd {k} -> irqfd (GSI {k}) -> vITS 0x8090040 devid 0x10 EventID {k} -> \
                 guest LPI {lpi}"
            ));
        }
        self.expect(&format!(
            "{vectors} of {vectors} vectors delivered into the guest as the LPIs it mapped"
        ))
    }
}

impl Outcome {
    /// Checks that the first `vectors` physical MSI-X entries, read through the BAR, hold
    /// `address`, the strategy's prediction.
    fn expect_host_entries(&self, vectors: u32, address: u64) -> &Self {
        for k in 0..vectors {
            let entry = format!("  vector {k}: address {address:#x} data ");
            let line = self.out.lines().find(|l| l.starts_with(&entry));
            assert!(
                line.is_some_and(|l| l.ends_with("(host ITS EventID), as predicted")),
                "MSI-X entry {k} is not {address:#x}: {line:?} in the run:\n{self}"
            );
        }
        self
    }

    /// Checks each of the first `vectors` vectors' guest message, host message and route.
    fn expect_messages(&self, vectors: u32, guest: u64, host: u64) -> &Self {
        for k in 0..vectors {
            self.expect(&format!(
                "vector {k}: guest message {guest:#x} data {k} -> host message {host:#x} data = \
                 the host's EventID -> route vITS 0x8090040 EventID {k} devid 0x10"
            ));
        }
        self
    }
}

/// The strategies' addresses in the launcher's machine: (the guest programs, the device
/// writes, the device's path to the ITS doorbell).
fn addresses(strategy: &str, nested: bool) -> (u64, u64, &'static str) {
    let guest = if nested { 0xffe0_0040 } else { 0x0809_0040 };
    match (strategy, nested) {
        ("kernel-window", false) => (
            guest,
            0x800_0040,
            " to 0x8000040 -> stage 2: IPA 0x8000040 -> PA 0x8090040 (the ITS doorbell; page mapped by the kernel, at window page 0)",
        ),
        ("kernel-window", true) => (
            guest,
            0x800_0040,
            " to 0x8000040 -> stage 1: gIOVA 0x8000040 -> IPA 0x8000040 -> stage 2: IPA 0x8000040 -> PA 0x8090040 (the ITS doorbell; page mapped by the kernel, at window page 0)",
        ),
        ("user-window", false) => (
            guest,
            0xf00_0040,
            " to 0xf000040 -> stage 2: IPA 0xf000040 -> PA 0x8090040 (the ITS doorbell; page mapped by the kernel, at window page 0)",
        ),
        ("user-window", true) => (
            guest,
            0xf00_0040,
            " to 0xf000040 -> stage 1: gIOVA 0xf000040 -> IPA 0xf000040 -> stage 2: IPA 0xf000040 -> PA 0x8090040 (the ITS doorbell; page mapped by the kernel, at window page 0)",
        ),
        ("per-vector", false) => (
            guest,
            guest,
            " to 0x8090040 -> stage 2: IPA 0x8090040 -> PA 0x8090040 (the ITS doorbell; page mapped by IOMMU_IOAS_MAP_MSI)",
        ),
        ("per-vector", true) => (
            guest,
            guest,
            " to 0xffe00040 -> stage 1: gIOVA 0xffe00040 -> IPA 0x8090040 -> stage 2: IPA 0x8090040 -> PA 0x8090040 (the ITS doorbell; page mapped by IOMMU_IOAS_MAP_MSI)",
        ),
        other => panic!("no such strategy {other:?}"),
    }
}

/// How the launcher says it made vector `k` fire.
fn how_for(how: &str, k: u32) -> String {
    match how {
        "nvme" if k == 0 => "NVMe Identify completes on the admin queue".into(),
        "nvme" => format!("NVMe Flush completes on I/O queue {k}"),
        other => other.into(),
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.out, self.err
        )
    }
}

fn on_rig() -> bool {
    common::on_host()
}

// ---------------------------------------------------------------------------------------
// The example as a program.

/// Where cargo put the example: test executables live in `target/<profile>/deps/`, and
/// examples in `target/<profile>/examples/`. `None` in the rig, which ships tests only.
fn launcher_exe() -> Option<PathBuf> {
    let me = std::env::current_exe().expect("the test's own path");
    let profile_dir = me
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let exe = profile_dir
        .join("examples")
        .join(format!("launcher{}", std::env::consts::EXE_SUFFIX));
    if exe.exists() {
        assert_fresh(&exe);
        return Some(exe);
    }
    assert!(
        on_rig(),
        "{} is missing: `cargo test` builds examples first, `cargo test --test launcher` \
         alone does not (run `cargo build --example launcher`)",
        exe.display()
    );
    eprintln!("the rig ships test executables only: the program tests run on the build host");
    None
}

/// Refuses an example binary older than its sources: `cargo test --test launcher` runs
/// whatever an earlier build left.
fn assert_fresh(exe: &std::path::Path) {
    let built = std::fs::metadata(exe)
        .and_then(|m| m.modified())
        .expect("mtime");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/launcher");
    for entry in std::fs::read_dir(&dir).expect("the example's sources") {
        let path = entry.expect("directory entry").path();
        let edited = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        assert!(
            edited <= built,
            "{} is older than {}: run `cargo build --example launcher` (or all of `cargo test`)",
            exe.display(),
            path.display()
        );
    }
}

/// Runs the example with `args`, waiting at most a minute (Sim takes milliseconds).
fn program(args: &[&str]) -> Option<Outcome> {
    let exe = launcher_exe()?;
    let mut child = Command::new(&exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the launcher");
    // Read both pipes while it runs, so a full pipe cannot stall it.
    let reader = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout")));
    let err = reader(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the launcher") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("launcher {args:?} still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Some(Outcome {
        code: status.code().expect("exited, not killed by a signal"),
        out: out.join().expect("stdout reader"),
        err: err.join().expect("stderr reader"),
    })
}

#[test]
fn sim_nested_every_vector_fires_and_is_routed() {
    let Some(run) = program(&["--sim"]) else {
        return;
    };
    run.expect_code(0)
        .expect("backend: sim (--sim)")
        .expect("launching a nested VM: 4 MSI-X vectors of /dev/vfio/devices/vfio1")
        .expect("chosen: KernelWindow (auto: the best this kernel offers)")
        .expect("IORT RMR for the guest's firmware: base 0x8000000 length 0x100000")
        .expect("guest STE at boot: bypass")
        .expect("TLBI_NH_ASID + CFGI_CD: 2 handled")
        .expect("the guest programs gIOVA 0xffe00040 (its stage 1 maps it to IPA 0x8090040")
        .expect("start-up: ")
        .expect("stopping after host-side setup")
        .expect(
            "stage 1: gIOVA 0x8000040 -> IPA 0x8000040 -> stage 2: IPA 0x8000040 -> PA 0x8090040",
        )
        .expect_delivered(4, "Sim raises it");
    for k in 0..4 {
        run.expect(&format!(
            "vector {k}: address 0x8000040 data {k:#x} (host ITS EventID), as predicted"
        ));
    }
}

#[test]
fn sim_paging_every_vector_fires_and_is_routed() {
    let Some(run) = program(&["--sim", "--paging", "--vectors", "3", "--ram-mib=16"]) else {
        return;
    };
    run.expect_code(0)
        .expect("launching a paging VM: 3 MSI-X vectors")
        .expect("stage 2: paging")
        .expect("the guest programs its vITS doorbell GPA 0x8090040")
        .expect("device writes 0x2 to 0x8000040 -> stage 2: IPA 0x8000040 -> PA 0x8090040")
        .expect_delivered(3, "Sim raises it");
    assert!(
        !run.out.contains("vIOMMU"),
        "no vIOMMU in paging mode:\n{run}"
    );
}

#[test]
fn no_arguments_is_the_sim_nested_plan_without_iommufd() {
    let Some(run) = program(&[]) else {
        return;
    };
    if std::path::Path::new("/dev/iommu").exists() {
        // With iommufd the launcher wants a real device named.
        run.expect_code(EXIT_USAGE as i32)
            .expect("name the device: --device");
        return;
    }
    run.expect_code(0)
        .expect("backend: sim (no /dev/iommu here: Sim, the in-process model of Linux 7.2)")
        .expect("launching a nested VM: 4 MSI-X vectors")
        .expect_delivered(4, "Sim raises it");
}

#[test]
fn bad_arguments_exit_non_zero_with_the_reason() {
    let cases: &[(&[&str], u8, &str)] = &[
        (
            &["--frobnicate"],
            EXIT_USAGE,
            "unknown argument '--frobnicate'",
        ),
        (
            &["--sim", "--vectors"],
            EXIT_USAGE,
            "--vectors needs a value",
        ),
        (
            &["--sim", "--vectors", "0"],
            EXIT_USAGE,
            "--vectors 0 is outside",
        ),
        (
            &["--sim", "--nested", "--paging"],
            EXIT_USAGE,
            "exclude each other",
        ),
        (
            &["--sim", "--strategy", "fast"],
            EXIT_USAGE,
            "unknown strategy 'fast'",
        ),
        (
            &["--sim", "--device", "/dev/null"],
            EXIT_USAGE,
            "/dev/null is not a VFIO cdev",
        ),
        (
            &["--sim", "--device", "/dev/vfio/devices/vfio0"],
            EXIT_USAGE,
            "has no MSI-X capability",
        ),
        (
            &["--sim", "--vectors", "66"],
            EXIT_USAGE,
            "asks for more than the 65 MSI-X vectors",
        ),
        (
            &["--sim", "--ram-gpa", "0x7f00000", "--ram-mib", "16"],
            EXIT_USAGE,
            "overlaps the kernel's MSI window 0x8000000..=0x80fffff",
        ),
        (
            &["--sim", "--strategy", "per-vector"],
            EXIT_UNSUPPORTED,
            "PerVector: unavailable: ",
        ),
        (
            &["--sim", "--strategy", "user-window"],
            EXIT_UNSUPPORTED,
            "UserWindow: unavailable: ",
        ),
    ];
    for (args, code, message) in cases {
        let Some(run) = program(args) else {
            return;
        };
        run.expect_code(*code as i32).expect(message);
        assert!(
            run.err.starts_with("launcher: "),
            "{args:?}: the reason goes to stderr:\n{run}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The launcher's code in process: on Sim machines prepared by the test, and in the rig.

/// Runs the launcher's `cli` in this process; in the rig its output also goes to the
/// console (past libtest's capture), where the rig's log keeps it.
fn in_process(args: &[&str]) -> Outcome {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let args = args.iter().map(|a| a.to_string());
    let code = launch::cli(args, &mut out, &mut err);
    if on_rig() {
        let mut console = std::io::stderr();
        let _ = console.write_all(&out);
        let _ = console.write_all(&err);
    }
    Outcome {
        code: code as i32,
        out: String::from_utf8_lossy(&out).into_owned(),
        err: String::from_utf8_lossy(&err).into_owned(),
    }
}

fn options(args: &[&str]) -> Options {
    match Options::parse(args.iter().map(|a| a.to_string())) {
        Ok(launcher::args::Command::Run(o)) => o,
        other => panic!("{args:?}: {other:?}"),
    }
}

#[test]
fn in_process_sim_run_is_the_same_plan() {
    in_process(&["--sim", "--vectors", "2"])
        .expect_code(0)
        .expect_delivered(2, "Sim raises it");
}

#[test]
fn a_device_bound_elsewhere_is_refused() {
    let sim = launch::sim_machine();
    let other = Iommufd::open(sim.clone()).unwrap();
    let taken = Device::open(sim.clone(), "/dev/vfio/devices/vfio2").unwrap();
    taken.bind(&other).unwrap();
    let opts = options(&["--device", "/dev/vfio/devices/vfio2"]);
    let failure = launch::run(&opts, &Backend::Sim(sim), &mut Vec::new()).unwrap_err();
    assert_eq!(failure.code, EXIT_USAGE, "{failure:?}");
    assert!(
        failure.message.contains("is already bound to an iommufd")
            && failure.message.contains("EINVAL"),
        "{failure:?}"
    );
}

#[test]
fn nested_without_a_viommu_is_unsupported() {
    // The rig's device-tree machine: it nests, but has neither CANWBS nor S2FWB.
    let dt = launch::sim_machine().config().clone();
    let sim = Sim::new(SimConfig {
        canwbs: false,
        ..dt
    });
    let mut out = Vec::new();
    let failure = launch::run(&options(&["--nested"]), &Backend::Sim(sim), &mut out).unwrap_err();
    assert_eq!(failure.code, EXIT_UNSUPPORTED, "{failure:?}");
    assert!(
        failure
            .message
            .contains("the vIOMMU is unsupported on this kernel"),
        "{failure:?}"
    );
}

#[test]
fn auto_takes_the_best_strategy_the_kernel_offers() {
    for proposed in [false, true] {
        let backend = Backend::Sim(launch::sim_machine_with(proposed));
        let mut out = Vec::new();
        let report = launch::run(&options(&["--vectors", "2"]), &backend, &mut out).unwrap();
        assert_eq!(report.delivered, vec![0, 1]);
        let out = String::from_utf8(out).unwrap();
        // Without the proposed-uapi feature the library cannot use what the kernel offers.
        let chosen = if proposed && cfg!(feature = "proposed-uapi") {
            "chosen: PerVector (auto: the best this kernel offers)"
        } else {
            "chosen: KernelWindow (auto: the best this kernel offers)"
        };
        assert!(out.contains(chosen), "{out}");
    }
}

/// Sim modelling the reference kernel: every strategy in both modes, each vector's guest
/// message, host message (as read back through the BAR) and route, and each eventfd.
#[test]
fn sim_with_the_proposed_uapi_drives_every_strategy_in_both_modes() {
    for strategy in ["kernel-window", "user-window", "per-vector"] {
        for mode in ["--nested", "--paging"] {
            let args = [
                "--sim-proposed-uapi",
                "--strategy",
                strategy,
                mode,
                "--vectors",
                "3",
            ];
            // In process: the launcher built with this test's features (the example binary
            // may be left from a build with others).
            let run = in_process(&args);
            if !cfg!(feature = "proposed-uapi") && strategy != "kernel-window" {
                run.expect_code(EXIT_UNSUPPORTED as i32)
                    .expect("build vmsi with the proposed-uapi feature");
                continue;
            }
            let (guest, host, path) = addresses(strategy, mode == "--nested");
            run.expect_code(0)
                .expect("as asked)")
                .expect_messages(3, guest, host)
                .expect_host_entries(3, host)
                .expect(path)
                .expect_delivered(3, "Sim raises it");
            if strategy != "kernel-window" {
                run.expect(
                    "software MSI window moved from the driver's 0x8000000 to \
                     0xf000000..=0xf0fffff (a hole in the guest's memory map",
                );
            }
            if strategy == "per-vector" {
                run.expect(
                    "doorbell page: the device's ITS doorbell page mapped at IOVA 0x8090000",
                );
            }
            let rmr = run.out.contains("IORT RMR for the guest's firmware");
            assert_eq!(
                rmr,
                mode == "--nested" && strategy != "per-vector",
                "an RMR only for a nested guest under a window strategy:\n{run}"
            );
        }
    }
}

#[test]
fn the_moved_window_and_the_doorbell_page_stay_out_of_guest_ram() {
    if !cfg!(feature = "proposed-uapi") {
        return;
    }
    let sim = || Backend::Sim(launch::sim_machine_with(true));
    // Guest RAM over the usual hole: the window goes just above it.
    let mut out = Vec::new();
    let opts = options(&[
        "--strategy",
        "user-window",
        "--ram-gpa",
        "0xe000000",
        "--ram-mib",
        "32",
        "--vectors",
        "2",
    ]);
    launch::run(&opts, &sim(), &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains(
            "moved from the driver's 0x8000000 to 0x10000000..=0x100fffff (the first MiB above \
             guest RAM"
        ),
        "{out}"
    );
    assert!(out.contains("address 0x10000040 data 0x1 (host ITS EventID), as predicted"));
    // Guest RAM over the vITS doorbell page: PerVector cannot put the doorbell there.
    let opts = options(&["--strategy", "per-vector", "--ram-gpa", "0x8000000"]);
    let failure = launch::run(&opts, &sim(), &mut Vec::new()).unwrap_err();
    assert_eq!(failure.code, EXIT_USAGE, "{failure:?}");
    assert!(
        failure
            .message
            .contains("guest RAM covers the vITS doorbell page 0x8090000"),
        "{failure:?}"
    );
}

#[test]
fn the_guest_payload_assembles_to_the_instructions_an_assembler_emits() {
    use launcher::asm::{Asm, Cond, ICC_IAR1_EL1, Size, X, XZR};
    // Words checked against binutils (aarch64-linux-gnu-objdump -D -b binary -m aarch64).
    let mut a = Asm::default();
    let top = a.label();
    a.place(top);
    a.orr(X(19), XZR, X(0), 0); // mov x19, x0
    a.mrs(X(0), ICC_IAR1_EL1); // mrs x0, icc_iar1_el1
    a.str(Size::H, X(0), X(5), 0); // strh w0, [x5]
    a.ldr(Size::X, X(3), X(2), 144); // ldr x3, [x2, #144]
    a.mov(X(3), 1 << 63); // mov x3, #0; movk x3, #0x8000, lsl #48
    a.lsr(X(4), X(3), 32); // lsr x4, x3, #32
    a.dc_civac(X(9)); // dc civac, x9
    a.cmp_imm(X(0), 1023); // cmp x0, #0x3ff
    a.b_cond(Cond::Ne, top); // b.ne top
    a.cbnz(X(10), top); // cbnz x10, top
    a.ret();
    let words = a.finish().expect("every label placed");
    assert_eq!(
        words,
        [
            0xaa0003f3, 0xd538cc00, 0x790000a0, 0xf9404843, 0xd2800003, 0xf2f00003, 0xd360fc64,
            0xd50b7e29, 0xf10ffc1f, 0x54fffee1, 0xb5fffeca, 0xd65f03c0
        ]
    );
    let program = launcher::payload::program().expect("the payload assembles");
    // It fits below its parameter block and ends in its command subroutine's RET.
    assert!(
        program.len() * 4 <= 0x8000,
        "{} instructions",
        program.len()
    );
    assert_eq!(program.last(), Some(&0xd65f03c0));
}

// ---------------------------------------------------------------------------------------
// In the rig, against the real kernel and a real NVMe controller.

fn rig() -> common::Env {
    assert!(
        on_rig(),
        "this test drives real devices: run it in the rig (tests/rig/run.sh)"
    );
    common::env()
}

#[test]
#[ignore = "needs the rig"]
fn rig_paging_every_nvme_vector_reaches_the_kvm_guest_as_its_lpi() {
    let e = rig();
    let nvme = e.nvme[0].to_str().expect("UTF-8 path");
    in_process(&[
        "--device",
        nvme,
        "--paging",
        "--vectors",
        "6",
        "--strategy",
        "kernel-window",
    ])
    .expect_code(0)
    .expect("backend: host (/dev/iommu)")
    .expect("the guest programs its MSI-X table itself (step 3)")
    .expect("start-up: ")
    .expect("device writes 0x5 to 0x8000040 -> stage 2: IPA 0x8000040 -> PA 0x8090040")
    .expect_lpis(6);
}

#[test]
#[ignore = "needs the rig"]
fn rig_paging_without_kvm_every_nvme_vector_fires_its_eventfd() {
    let e = rig();
    let nvme = e.nvme[0].to_str().expect("UTF-8 path");
    in_process(&[
        "--device",
        nvme,
        "--paging",
        "--vectors",
        "6",
        "--no-kvm",
        "--strategy",
        "kernel-window",
    ])
    .expect_code(0)
    .expect("--no-kvm: stopping after host-side setup")
    .expect("start-up: ")
    .expect("device writes 0x5 to 0x8000040 -> stage 2: IPA 0x8000040 -> PA 0x8090040")
    .expect_delivered(6, "nvme");
}

#[test]
#[ignore = "needs the rig"]
fn rig_nested_vectors_reach_the_kvm_guest_through_its_stage1_or_the_viommu_is_unsupported() {
    let e = rig();
    let nvme = e.nvme[0].to_str().expect("UTF-8 path");
    let run = in_process(&["--device", nvme, "--nested", "--strategy", "kernel-window"]);
    if !e.nested {
        run.expect_code(EXIT_UNSUPPORTED as i32)
            .expect("the vIOMMU is unsupported on this kernel (IOMMU_VIOMMU_ALLOC: EOPNOTSUPP");
        return;
    }
    run.expect_code(0)
        .expect("guest STE: stage 1")
        .expect("device address 0xfff00000")
        .expect(
            "stage 1: gIOVA 0x8000040 -> IPA 0x8000040 -> stage 2: IPA 0x8000040 -> PA 0x8090040",
        )
        .expect_lpis(4);
}

#[test]
#[ignore = "needs the rig"]
fn rig_devices_the_launcher_cannot_use_are_refused() {
    let e = rig();
    let edu = e.edu.to_str().expect("UTF-8 path");
    let nvme = e.nvme[1].to_str().expect("UTF-8 path");
    in_process(&["--device", "/dev/null"])
        .expect_code(EXIT_USAGE as i32)
        .expect("/dev/null is not a VFIO cdev");
    let regular_file = std::env::current_exe().expect("this test's path");
    in_process(&["--device", regular_file.to_str().expect("UTF-8 path")])
        .expect_code(EXIT_USAGE as i32)
        .expect("is not a VFIO cdev (/dev/vfio/devices/vfioN): not a character device");
    in_process(&["--device", edu, "--paging"])
        .expect_code(EXIT_USAGE as i32)
        .expect("has no MSI-X capability");
    // KernelWindow: the driver's window is where it is (PerVector and UserWindow move it).
    in_process(&[
        "--device",
        nvme,
        "--paging",
        "--ram-gpa",
        "0x8000000",
        "--strategy",
        "kernel-window",
    ])
    .expect_code(EXIT_USAGE as i32)
    .expect("overlaps the kernel's MSI window 0x8000000..=0x80fffff");
    // Another user (here, this test) has the controller bound: the kernel says EINVAL.
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let taken = Device::open(e.kernel.clone(), &e.nvme[1]).unwrap();
    taken.bind(&fd).unwrap();
    in_process(&["--device", nvme, "--paging"])
        .expect_code(EXIT_USAGE as i32)
        .expect("is already bound to an iommufd (VFIO_DEVICE_BIND_IOMMUFD: EINVAL)");
}

/// The rig's kernel has the proposed per-vector MSI uAPI (its `per-vector` mode).
fn per_vector_kernel() -> bool {
    std::env::var("VMSI_RIG_KERNEL").as_deref() == Ok("per-vector")
}

/// Runs the launcher on the first nvme with `strategy` in `mode` (`--paging`, `--nested`),
/// `vectors` vectors, with the KVM guest or (`no_kvm`) to the eventfds. On the reference
/// kernel it checks the strategy's outcome: each vector's guest message, host message and
/// route, each physical MSI-X entry read through the BAR at the strategy's address, each
/// vector's path, and each vector delivered (the LPI the guest mapped, or its eventfd). On
/// a stock kernel the strategy must be refused as unavailable, saying why.
fn rig_strategy(strategy: &str, mode: &str, vectors: u32, no_kvm: bool) {
    let e = rig();
    let nvme = e.nvme[0].to_str().expect("UTF-8 path");
    let count = vectors.to_string();
    let mut args = vec![
        "--device",
        nvme,
        mode,
        "--vectors",
        &count,
        "--strategy",
        strategy,
    ];
    if no_kvm {
        args.push("--no-kvm");
    }
    let run = in_process(&args);
    if !per_vector_kernel() {
        // The errno's description follows its name: "(EINVAL: Invalid argument)".
        let why = match strategy {
            "per-vector" => "PerVector: unavailable: VFIO_IRQ_SET_ACTION_PREPARE refused (EINVAL",
            _ => "UserWindow: unavailable: IOMMU_OPTION_SW_MSI_START refused (EOPNOTSUPP",
        };
        run.expect_code(EXIT_UNSUPPORTED as i32)
            .expect(why)
            .expect("): not in this kernel");
        assert!(run.err.starts_with("launcher: "), "{run}");
        return;
    }
    let (guest, host, path) = addresses(strategy, mode == "--nested");
    run.expect_code(0)
        .expect("backend: host (/dev/iommu)")
        .expect("as asked)")
        .expect("software MSI window moved from the driver's 0x8000000 to 0xf000000..=0xf0fffff")
        .expect_host_entries(vectors, host)
        .expect(path)
        .expect("start-up: ");
    if no_kvm {
        run.expect_messages(vectors, guest, host)
            .expect_delivered(vectors, "nvme");
    } else {
        run.expect("the guest programs its MSI-X table itself (step 3)")
            .expect_messages(vectors, guest, host)
            .expect_lpis(vectors);
    }
}

#[test]
#[ignore = "needs the rig"]
fn rig_per_vector_paging_the_device_writes_the_vits_doorbell_gpa_and_the_guest_gets_its_lpis() {
    rig_strategy("per-vector", "--paging", 4, false);
}

#[test]
#[ignore = "needs the rig"]
fn rig_per_vector_nested_the_device_writes_the_guests_msi_iova_and_the_guest_gets_its_lpis() {
    rig_strategy("per-vector", "--nested", 4, false);
}

#[test]
#[ignore = "needs the rig"]
fn rig_per_vector_without_kvm_every_vector_fires_its_eventfd() {
    rig_strategy("per-vector", "--paging", 4, true);
    rig_strategy("per-vector", "--nested", 4, true);
}

#[test]
#[ignore = "needs the rig"]
fn rig_user_window_paging_the_device_writes_the_moved_window_and_the_guest_gets_its_lpis() {
    rig_strategy("user-window", "--paging", 4, false);
}

#[test]
#[ignore = "needs the rig"]
fn rig_user_window_nested_the_device_writes_the_moved_window_and_the_guest_gets_its_lpis() {
    rig_strategy("user-window", "--nested", 4, false);
}

#[test]
#[ignore = "needs the rig"]
fn rig_user_window_without_kvm_every_vector_fires_its_eventfd() {
    rig_strategy("user-window", "--paging", 4, true);
    rig_strategy("user-window", "--nested", 4, true);
}

/// Without `--strategy` the launcher takes the best the kernel offers: PerVector on the
/// reference kernel, KernelWindow on a stock one.
#[test]
#[ignore = "needs the rig"]
fn rig_auto_takes_per_vector_on_the_reference_kernel_and_kernel_window_on_stock() {
    let e = rig();
    let nvme = e.nvme[0].to_str().expect("UTF-8 path");
    let run = in_process(&["--device", nvme, "--paging", "--vectors", "2", "--no-kvm"]);
    let chosen = if per_vector_kernel() {
        "chosen: PerVector (auto: the best this kernel offers)"
    } else {
        "chosen: KernelWindow (auto: the best this kernel offers)"
    };
    run.expect_code(0)
        .expect(chosen)
        .expect_delivered(2, "nvme");
}
