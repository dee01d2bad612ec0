//! The nested-VM launcher: everything a VMM does on the host for one passed-through MSI-X
//! device of an arm64 guest on an SMMUv3 + GICv3 ITS host, step by step, with each
//! vector followed from the device to the route the guest's virtual ITS gets.
//!
//! ```text
//! cargo run --example launcher                       # no /dev/iommu: Sim, nested, 4 vectors
//! cargo run --example launcher -- --sim --paging     # Sim, no vIOMMU
//! cargo run --example launcher -- --device /dev/vfio/devices/vfio1 --nested --vectors 8
//! ```
//!
//! Where to read: `launch.rs` (steps 1-2: the host side, MSI), `kvm.rs` (step 3: the KVM
//! VM, its vGICv3 and vITS, the irqfd routes, the guest's exits), `payload.rs` (the guest
//! program that receives each vector as an LPI; `asm.rs` assembles it), `delivery.rs`
//! (step 4 without KVM: the device fires, the eventfd, the route), `guest.rs` (guest RAM
//! and the guest driver's MSI-X writes), `stage1.rs` (the guest's SMMU page tables),
//! `strategy.rs` (which MSI strategy, and what each needs of the host), `nvme.rs` (enough of a guest NVMe driver to raise a chosen vector), `args.rs` (the
//! command line).
//!
//! Exit status: 0 when every vector was delivered, 1 when something on the machine failed,
//! 2 for a command line the launcher cannot use, 3 when the kernel lacks what was asked.

mod args;
mod asm;
mod delivery;
mod guest;
#[cfg(all(feature = "kvm", target_arch = "aarch64"))]
mod kvm;
mod launch;
mod nvme;
mod payload;
mod stage1;
mod strategy;

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = launch::cli(
        std::env::args().skip(1),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(code)
}
