//! The benchmarks' record: one row per (benchmark, parameter, design), printed as the ratio
//! table at the end of a run and saved for `benches/plot.py` and BENCHMARKS.md.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::path::PathBuf;

/// One measured case.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// P1 .. P8.
    pub group: &'static str,
    /// The parameter, as shown (`R=2048`).
    pub param: String,
    /// The x value for plots (R or N), 0 when none.
    pub x: u64,
    /// `ours`, `full-rebuild` or `linear-scan`.
    pub design: &'static str,
    /// Time per op from criterion's samples (their median), ns (0 when not timed).
    pub mean_ns: f64,
    /// Median and 99th percentile of individually timed ops, ns (0 when not timed).
    pub p50_ns: f64,
    /// See `p50_ns`.
    pub p99_ns: f64,
    /// Heap allocations per op.
    pub allocs: f64,
    /// `KVM_SET_GSI_ROUTING` calls per op.
    pub commits: f64,
    /// Every KVM call per op (commits, irqfd assigns and deassigns, SIGNAL_MSI).
    pub calls: f64,
    /// Bytes handed to `KVM_SET_GSI_ROUTING` per op.
    pub bytes: f64,
    /// What the KVM calls per op would cost the kernel, by the anchors' model, ns.
    pub kernel_ns: f64,
    /// Free-form note.
    pub note: String,
}

thread_local! {
    static ROWS: RefCell<Vec<Row>> = const { RefCell::new(Vec::new()) };
}

/// Adds a row.
pub fn record(row: Row) {
    ROWS.with(|r| r.borrow_mut().push(row));
}

/// Sets the criterion mean of a recorded row.
pub fn set_mean(group: &str, param: &str, design: &str, mean_ns: f64) {
    ROWS.with(|r| {
        if let Some(row) = r
            .borrow_mut()
            .iter_mut()
            .find(|x| x.group == group && x.param == param && x.design == design)
        {
            row.mean_ns = mean_ns;
        }
    });
}

/// Median and 99th percentile of `samples` (sorted in place).
pub fn percentiles(samples: &mut [u64]) -> (f64, f64) {
    if samples.is_empty() {
        return (0.0, 0.0);
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize] as f64;
    (at(0.5), at(0.99))
}

fn time(ns: f64) -> String {
    match ns {
        x if x <= 0.0 => "-".into(),
        x if x < 1e3 => format!("{x:.0} ns"),
        x if x < 1e6 => format!("{:.1} µs", x / 1e3),
        x => format!("{:.2} ms", x / 1e6),
    }
}

fn num(x: f64) -> String {
    if (x == x.trunc() && x.abs() < 1e15) || x.abs() >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn ratio(ours: f64, base: f64) -> String {
    if ours <= 0.0 || base <= 0.0 {
        return "-".into();
    }
    let (r, speedup) = (ours / base, base / ours);
    if speedup >= 10.0 {
        format!("{r:.4} ({speedup:.0}x)")
    } else {
        format!("{r:.4} ({speedup:.1}x)")
    }
}

/// Userspace time per op: criterion's where there is one, else the audit's median.
fn user_ns(r: &Row) -> f64 {
    if r.mean_ns > 0.0 { r.mean_ns } else { r.p50_ns }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The machine the numbers come from.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    format!(
        "{} cores ({}), {}, {}, kernel {}",
        sh("nproc", &[]),
        cpu,
        sh("uname", &["-m"]),
        sh("rustc", &["-V"]),
        sh("uname", &["-r"]),
    )
}

/// The ratio table (markdown) of everything recorded.
pub fn table() -> String {
    let rows = ROWS.with(|r| r.borrow().clone());
    let mut out = String::new();
    let _ = writeln!(out, "machine: {}\n", machine());
    let _ = writeln!(
        out,
        "| bench | param | design | time/op | p50 | p99 | allocs/op | commits/op | KVM calls/op | bytes/op | kernel (model)/op | ours/baseline: userspace time | ours/baseline: userspace + kernel model | note |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in &rows {
        let ours = rows
            .iter()
            .find(|o| o.group == r.group && o.param == r.param && o.design == "ours");
        let (cmp, total) = match ours {
            Some(o) if r.design != "ours" => {
                let (a, b) = (user_ns(o), user_ns(r));
                (ratio(a, b), ratio(a + o.kernel_ns, b + r.kernel_ns))
            }
            _ => (String::new(), String::new()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.group,
            r.param,
            r.design,
            time(r.mean_ns),
            time(r.p50_ns),
            time(r.p99_ns),
            num(r.allocs),
            num(r.commits),
            num(r.calls),
            num(r.bytes),
            time(r.kernel_ns),
            cmp,
            total,
            r.note
        );
    }
    out
}

fn json() -> String {
    let rows = ROWS.with(|r| r.borrow().clone());
    let mut out = String::from("[\n");
    for (k, r) in rows.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {{\"group\": \"{}\", \"param\": \"{}\", \"x\": {}, \"design\": \"{}\", \"mean_ns\": {}, \"p50_ns\": {}, \"p99_ns\": {}, \"allocs\": {}, \"commits\": {}, \"calls\": {}, \"bytes\": {}, \"kernel_ns\": {}}}{}",
            r.group,
            r.param,
            r.x,
            r.design,
            r.mean_ns,
            r.p50_ns,
            r.p99_ns,
            r.allocs,
            r.commits,
            r.calls,
            r.bytes,
            r.kernel_ns,
            if k + 1 < rows.len() { "," } else { "" }
        );
    }
    out.push_str("]\n");
    out
}

/// Where the record goes: `target/vmsi-bench/`.
pub fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("vmsi-bench")
}

/// Prints the ratio table and saves it with the raw rows.
pub fn finish() {
    let table = table();
    println!("\n{table}");
    let dir = out_dir();
    let saved = std::fs::create_dir_all(&dir)
        .and_then(|_| std::fs::write(dir.join("results.md"), &table))
        .and_then(|_| std::fs::write(dir.join("results.json"), json()));
    match saved {
        Ok(()) => println!("saved {}/results.{{md,json}}", dir.display()),
        Err(e) => eprintln!("could not save the results in {}: {e}", dir.display()),
    }
}
