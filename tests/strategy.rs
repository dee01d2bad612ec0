//! Strategy probing: on a stock kernel (the rig's 7.2, and Sim by default) the proposed
//! uAPI is refused and KernelWindow is chosen, with the reasons reported. A kernel with the
//! proposed uAPI is probed in `tests/per_vector.rs`.

mod common;

use vmsi::msi::{Strategy, probe};
use vmsi::{Device, Iommufd};

#[test]
fn a_stock_kernel_gets_kernel_window_and_says_why() {
    // The rig's per-vector kernel is probed in tests/per_vector.rs.
    if std::env::var("VMSI_RIG_KERNEL").as_deref() == Ok("per-vector") {
        return;
    }
    let e = common::env();
    let fd = Iommufd::open(e.kernel.clone()).unwrap();
    let dev = Device::open(e.kernel.clone(), &e.nvme[0]).unwrap();
    dev.bind(&fd).unwrap();
    let report = probe(&fd, &dev).unwrap();
    assert_eq!(report.chosen, Strategy::KernelWindow, "{report}");
    let f: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.strategy, f.available))
        .collect();
    assert_eq!(
        f,
        vec![
            (Strategy::PerVector, false),
            (Strategy::UserWindow, false),
            (Strategy::KernelWindow, true)
        ]
    );
    // The refusals name what the kernel answered.
    assert!(report.findings[0].reason.contains("EINVAL"), "{report}");
    assert!(report.findings[1].reason.contains("EOPNOTSUPP"), "{report}");
    // A caller that insists on a strategy gets a typed refusal.
    assert!(report.require(Strategy::KernelWindow).is_ok());
    assert!(matches!(
        report.require(Strategy::UserWindow),
        Err(vmsi::Error::Unsupported {
            feature: vmsi::Feature::SwMsiWindow,
            ..
        })
    ));
    // Probing changed nothing: MSI-X can still be enabled from scratch.
    let ioas = fd.alloc_ioas().unwrap();
    dev.attach_ioas(&ioas).unwrap();
    dev.enable_irqs(vmsi_sys::vfio::VFIO_PCI_MSIX_IRQ_INDEX, &[None])
        .unwrap();
}
