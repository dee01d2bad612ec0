//! Compiles a C program against real kernel uAPI headers and checks that every size, offset
//! and ioctl number in `vmsi_sys::layout::CHECKS` agrees with what the C compiler computes.
//!
//! * `vfio_layout_matches_system_headers` uses the machine's own headers (`/usr/include`, any
//!   Linux >= 6.1) for the items VFIO has had since 6.1.
//! * `all_layouts_match_7_2_headers` needs Linux 7.2 uAPI headers (iommufd nesting, VFIO cdev);
//!   point `VMSI_KERNEL_HEADERS` at an `include` directory such as the one the rig builds
//!   (`tests/rig/run.sh` prints it) and run with `--include-ignored`.
//! * `proposed_layouts_match_the_per_vector_kernel_headers` (feature `proposed-uapi`) checks
//!   the proposed uAPI against the headers of the rig's per-vector kernel, named by
//!   `VMSI_PER_VECTOR_HEADERS`.

use std::path::{Path, PathBuf};
use std::process::Command;

use vmsi_sys::layout::{CHECKS, Check, Header};

/// Builds and runs the C program; returns (c_expr, value) pairs as the compiler saw them.
fn c_values(name: &str, include: &Path, checks: &[&Check]) -> Vec<(String, u64)> {
    // One directory per test: the tests of this file run in parallel.
    let dir = std::env::temp_dir().join(format!("vmsi-c-abi-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut src = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include <linux/types.h>\n#include <sys/ioctl.h>\n",
    );
    if checks
        .iter()
        .any(|c| matches!(c.header, Header::Iommufd | Header::Proposed))
    {
        src.push_str("#include <linux/iommufd.h>\n");
    }
    src.push_str("#include <linux/vfio.h>\nint main(void) {\n");
    for c in checks {
        src.push_str(&format!(
            "  printf(\"%s=%llu\\n\", \"{e}\", (unsigned long long)({e}));\n",
            e = c.c_expr
        ));
    }
    src.push_str("  return 0;\n}\n");
    let c_file = dir.join("abi.c");
    let exe = dir.join("abi");
    std::fs::write(&c_file, src).expect("write C source");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .arg("-I")
        .arg(include)
        .arg("-o")
        .arg(&exe)
        .arg(&c_file)
        .output()
        .expect("run the C compiler");
    assert!(
        out.status.success(),
        "C compile against {} failed:\n{}",
        include.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().expect("run the C program");
    assert!(run.status.success());
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8(run.stdout)
        .expect("utf8")
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once('=').expect("key=value");
            (k.to_string(), v.parse().expect("number"))
        })
        .collect()
}

fn check(name: &str, include: &Path, headers: &[Header]) {
    let checks: Vec<&Check> = CHECKS
        .iter()
        .filter(|c| headers.contains(&c.header))
        .collect();
    assert!(!checks.is_empty());
    let seen = c_values(name, include, &checks);
    assert_eq!(seen.len(), checks.len());
    let wrong: Vec<String> = checks
        .iter()
        .zip(&seen)
        .filter(|(c, (_, v))| c.value != *v)
        .map(|(c, (_, v))| format!("{}: rust {} != C {}", c.c_expr, c.value, v))
        .collect();
    assert!(wrong.is_empty(), "ABI mismatches:\n{}", wrong.join("\n"));
}

#[test]
fn vfio_layout_matches_system_headers() {
    check("system", Path::new("/usr/include"), &[Header::Vfio]);
}

#[test]
#[ignore = "needs Linux 7.2 uAPI headers in VMSI_KERNEL_HEADERS (the rig builds them)"]
fn all_layouts_match_7_2_headers() {
    let dir: PathBuf = std::env::var_os("VMSI_KERNEL_HEADERS")
        .expect("VMSI_KERNEL_HEADERS must name a Linux 7.2 uAPI include directory")
        .into();
    check(
        "7.2",
        &dir,
        &[Header::Iommufd, Header::Vfio, Header::VfioCdev],
    );
}

#[cfg(feature = "proposed-uapi")]
#[test]
#[ignore = "needs the per-vector kernel's uAPI headers in VMSI_PER_VECTOR_HEADERS (the rig builds them)"]
fn proposed_layouts_match_the_per_vector_kernel_headers() {
    let dir: PathBuf = std::env::var_os("VMSI_PER_VECTOR_HEADERS")
        .expect("VMSI_PER_VECTOR_HEADERS must name the per-vector kernel's uAPI include directory")
        .into();
    check(
        "per-vector",
        &dir,
        &[
            Header::Iommufd,
            Header::Vfio,
            Header::VfioCdev,
            Header::Proposed,
        ],
    );
}
