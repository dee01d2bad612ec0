//! Firmware discovery against real firmware: QEMU `virt`'s device tree and ACPI MADT as
//! fixtures everywhere, and the running kernel's own files inside the rig.
//!
//! The fixtures under `tests/fixtures/firmware/` come from the rig's QEMU 11 `virt` machine
//! (`gic-version=3,its=on,iommu=smmuv3`): `qemu-virt-gicv3-its.dtb` is its device tree
//! (`-M ...,dumpdtb=`, packed), `qemu-virt-madt.bin` the MADT an ACPI boot of the rig's guest
//! reads from `/sys/firmware/acpi/tables/APIC`, and `qemu-virt-acpi-fdt.dtb` the device tree
//! that ACPI boot's kernel got from the EFI stub.

mod common;

use std::path::{Path, PathBuf};

use common::{env, on_host, rig_mode};
use vmsi::msi::firmware::{
    Discovery, Firmware, ItsSource, RegionKind, SourceOutcome, discover_its, discover_its_under,
    iova_holes, msi_window, parse_fdt_its, parse_madt_its, reserved_regions,
};
use vmsi::{Device, Iommufd, IovaRange};

const QEMU_VIRT_DTB: &[u8] = include_bytes!("fixtures/firmware/qemu-virt-gicv3-its.dtb");
const QEMU_VIRT_MADT: &[u8] = include_bytes!("fixtures/firmware/qemu-virt-madt.bin");
const QEMU_VIRT_ACPI_FDT: &[u8] = include_bytes!("fixtures/firmware/qemu-virt-acpi-fdt.dtb");

/// QEMU `virt`'s ITS (`VIRT_GIC_ITS`) and its doorbell.
const ITS_BASE: u64 = 0x0808_0000;
const ITS_DOORBELL: u64 = 0x0809_0040;
/// The SMMUv3 driver's software MSI window.
const MSI_WINDOW: IovaRange = IovaRange {
    start: 0x800_0000,
    last: 0x80f_ffff,
};

#[test]
fn qemu_virt_device_tree_has_one_its() {
    let found = parse_fdt_its(QEMU_VIRT_DTB).unwrap();
    assert!(found.skipped.is_empty(), "{:?}", found.skipped);
    assert_eq!(found.its.len(), 1);
    assert_eq!(found.its[0].base, ITS_BASE);
    assert_eq!(found.its[0].doorbell, ITS_DOORBELL);
    assert_eq!(
        found.its[0].source,
        ItsSource::DeviceTree {
            path: "/intc@8000000/its@8080000".into()
        }
    );
}

#[test]
fn qemu_virt_madt_has_one_its() {
    let its = parse_madt_its(QEMU_VIRT_MADT).unwrap();
    assert_eq!(its.len(), 1);
    assert_eq!(its[0].base, ITS_BASE);
    assert_eq!(its[0].doorbell, ITS_DOORBELL);
    assert_eq!(its[0].source, ItsSource::AcpiMadt { its_id: 0 });
}

#[test]
fn the_device_tree_of_an_acpi_boot_describes_no_its() {
    let found = parse_fdt_its(QEMU_VIRT_ACPI_FDT).unwrap();
    assert!(
        found.its.is_empty() && found.skipped.is_empty(),
        "{found:?}"
    );
}

/// A scratch directory holding `/sys/firmware` files, removed on drop.
struct FirmwareRoot(PathBuf);

impl FirmwareRoot {
    fn new(tag: &str, files: &[(&str, &[u8])]) -> Self {
        let root = std::env::temp_dir().join(format!("vmsi-fw-it-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        for (path, bytes) in files {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, bytes).unwrap();
        }
        FirmwareRoot(root)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for FirmwareRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn discovery_on_copies_of_both_rig_modes() {
    let dt = FirmwareRoot::new("dt", &[("sys/firmware/fdt", QEMU_VIRT_DTB)]);
    let found = discover_its_under(dt.path()).unwrap();
    assert!(matches!(
        found,
        Discovery::Found {
            firmware: Firmware::DeviceTree,
            ..
        }
    ));
    assert_eq!(found.its()[0].doorbell, ITS_DOORBELL);

    let acpi = FirmwareRoot::new(
        "acpi",
        &[
            ("sys/firmware/fdt", QEMU_VIRT_ACPI_FDT),
            ("sys/firmware/acpi/tables/APIC", QEMU_VIRT_MADT),
        ],
    );
    let found = discover_its_under(acpi.path()).unwrap();
    assert!(matches!(
        found,
        Discovery::Found {
            firmware: Firmware::AcpiMadt,
            ..
        }
    ));
    assert_eq!(found.its()[0].doorbell, ITS_DOORBELL);
    assert_eq!(found.looked_at()[1].outcome, SourceOutcome::NotInUse);
}

/// Attaching a device reserves its MSI window in the IOAS: the window is then the only hole
/// in the usable IOVA ranges (on Sim, and on the real kernel in the rig, where it must also
/// match the device's group's `reserved_regions`).
#[test]
fn the_msi_window_is_the_only_iova_hole_of_an_ioas_with_a_device() {
    let e = env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let ioas = fd.alloc_ioas().unwrap();
    assert_eq!(iova_holes(&ioas.iova_ranges().unwrap().0).unwrap(), vec![]);
    let dev = Device::open(e.kernel.clone(), &e.nvme[0]).unwrap();
    dev.bind(&fd).unwrap();
    dev.attach_ioas(&ioas).unwrap();
    let holes = iova_holes(&ioas.iova_ranges().unwrap().0).unwrap();
    assert_eq!(holes, vec![MSI_WINDOW]);
    if on_host() {
        let cdev = e.nvme[0].file_name().unwrap().to_str().unwrap().to_owned();
        let group =
            std::fs::read_link(format!("/sys/class/vfio-dev/{cdev}/device/iommu_group")).unwrap();
        let group: u32 = group
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            msi_window(&reserved_regions(group).unwrap()),
            Ok(Some(holes[0]))
        );
    }
}

#[test]
#[ignore = "needs the rig"]
fn rig_discovers_exactly_one_its_from_the_firmware_it_booted() {
    assert!(on_host(), "runs inside the rig (VMSI_BACKEND=host)");
    let expected = match rig_mode().as_str() {
        "dt" => Firmware::DeviceTree,
        "acpi-canwbs" => Firmware::AcpiMadt,
        other => panic!("unknown rig mode {other}"),
    };
    let found = discover_its().unwrap();
    let Discovery::Found { firmware, its, .. } = &found else {
        panic!("no ITS found: {found:?}");
    };
    assert_eq!(*firmware, expected, "{found:?}");
    assert_eq!(its.len(), 1, "{its:?}");
    assert_eq!(its[0].base, ITS_BASE);
    assert_eq!(its[0].doorbell, ITS_DOORBELL);
    match (&its[0].source, expected) {
        (ItsSource::DeviceTree { path }, Firmware::DeviceTree) => {
            assert_eq!(path, "/intc@8000000/its@8080000")
        }
        (ItsSource::AcpiMadt { its_id }, Firmware::AcpiMadt) => assert_eq!(*its_id, 0),
        (source, _) => panic!("{source:?} from {expected:?}"),
    }
}

#[test]
#[ignore = "needs the rig"]
fn rig_every_iommu_group_has_the_smmuv3_msi_window() {
    assert!(on_host(), "runs inside the rig (VMSI_BACKEND=host)");
    let mut groups: Vec<u32> = std::fs::read_dir("/sys/kernel/iommu_groups")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .collect();
    groups.sort_unstable();
    // The host bridge, edu and two nvme controllers.
    assert_eq!(groups, vec![0, 1, 2, 3]);
    for group in groups {
        let regions = reserved_regions(group).unwrap();
        assert_eq!(
            msi_window(&regions),
            Ok(Some(MSI_WINDOW)),
            "group {group}: {regions:?}"
        );
        assert!(
            regions
                .iter()
                .any(|r| r.kind == RegionKind::Msi && r.range == MSI_WINDOW)
        );
    }
}
