//! A KVM VM whose guest memory cannot be unmapped while the VM can touch it.
//!
//! `KVM_SET_USER_MEMORY_REGION` hands the kernel a process address: from then on the guest
//! (a vCPU, the vITS reading its tables, an irqfd's injection) reads and writes that memory
//! until the VM is destroyed, and if it were unmapped and the address reused, the guest
//! would write into whatever the process put there. kvm-ioctls therefore marks the call
//! `unsafe`. [`KvmMachine`] makes it safe by owning, together, every file that keeps the
//! VM alive in the kernel (the VM, its vCPUs, its devices) and the memory: the files are
//! closed first (field order), which destroys the VM, and the memory is unmapped after.
//! Nothing that keeps the VM alive is ever handed out by value, so nothing can outlive it
//! (kvm-ioctls' fds offer only `AsRawFd`: duplicating one takes unsafe code, whose author
//! then owns that promise).

use std::sync::Arc;

use kvm_bindings::{kvm_create_device, kvm_msi, kvm_userspace_memory_region};
use kvm_ioctls::{DeviceFd, Kvm, VcpuExit, VcpuFd, VmFd};
use parking_lot::Mutex;
use vmm_sys_util::eventfd::EventFd;

use super::DmaMemory;
use crate::error::{Errno, Error, Op, Result};

/// A KVM VM, its vCPUs and devices, and the guest memory slots they use.
///
/// Only shared references to the vCPUs and devices are handed out (for register and
/// attribute ioctls); running a vCPU goes through [`KvmMachine::run_vcpu`]. Every method
/// after set-up takes `&self`, so the machine's VM can serve a [`crate::kvm::KvmRoutes`]
/// while one of its vCPUs runs.
pub struct KvmMachine {
    // Field order is drop order: every file that holds the kernel's VM first, the memory
    // its slots point at last.
    vcpus: Vec<Mutex<VcpuFd>>,
    devices: Vec<DeviceFd>,
    vm: VmFd,
    memory: Vec<Arc<DmaMemory>>,
}

fn kernel(op: Op) -> impl FnOnce(vmm_sys_util::errno::Error) -> Error {
    move |e| Error::Kernel {
        op,
        errno: Errno::from_raw(e.errno()),
    }
}

impl KvmMachine {
    /// Opens `/dev/kvm` and creates an empty VM (`KVM_CREATE_VM`, the default IPA size).
    pub fn create() -> Result<Self> {
        let kvm = Kvm::new().map_err(kernel(Op::OpenKvm))?;
        let vm = kvm.create_vm().map_err(kernel(Op::KvmCreateVm))?;
        Ok(KvmMachine {
            vcpus: Vec::new(),
            devices: Vec::new(),
            vm,
            memory: Vec::new(),
        })
    }

    /// Makes all of `memory` guest RAM at `gpa` (memory slot `slot`,
    /// `KVM_SET_USER_MEMORY_REGION`). The machine keeps `memory` mapped until the VM is gone.
    pub fn add_memory(&mut self, slot: u32, gpa: u64, memory: Arc<DmaMemory>) -> Result<()> {
        if gpa % super::page_size() as u64 != 0 {
            return Err(Error::InvalidArgument(
                "a memory slot's GPA must be page-aligned",
            ));
        }
        let region = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: memory.len() as u64,
            userspace_addr: memory.addr(),
        };
        // Keep the memory before the kernel can use it, so that it is unmapped only after
        // the VM is destroyed even if a later step fails.
        self.memory.push(memory);
        // SAFETY: the region is exactly the mapping of `memory` (its address and length),
        // which `self.memory` now holds. It stays mapped until `self` is dropped, and every
        // file that keeps the VM (and so the slot) alive is owned by `self` and closed
        // before `self.memory` is dropped (field order); none is handed out by value.
        let set = unsafe { self.vm.set_user_memory_region(region) };
        set.map_err(kernel(Op::KvmSetUserMemoryRegion))
    }

    /// Creates vCPU `id` (`KVM_CREATE_VCPU`); returns its index for [`KvmMachine::with_vcpu`] and [`KvmMachine::run_vcpu`].
    pub fn create_vcpu(&mut self, id: u64) -> Result<usize> {
        let vcpu = self.vm.create_vcpu(id).map_err(kernel(Op::KvmCreateVcpu))?;
        self.vcpus.push(Mutex::new(vcpu));
        Ok(self.vcpus.len() - 1)
    }

    /// Calls `f` with the vCPU at `index`, for register ioctls (`KVM_ARM_VCPU_INIT`,
    /// `KVM_SET_ONE_REG`); `None` if there is no such vCPU.
    pub fn with_vcpu<R>(&self, index: usize, f: impl FnOnce(&VcpuFd) -> R) -> Option<R> {
        self.vcpus.get(index).map(|v| f(&v.lock()))
    }

    /// Runs the vCPU at `index` until its next exit (`KVM_RUN`) and hands the exit to
    /// `f` (an MMIO read's data is what `f` leaves in its slice). A signal delivered to
    /// this thread ends the run with `EINTR`.
    pub fn run_vcpu<R>(&self, index: usize, f: impl FnOnce(VcpuExit<'_>) -> R) -> Result<R, Errno> {
        let mut vcpu = self.vcpus.get(index).ok_or(Errno::ENOENT)?.lock();
        let exit = vcpu.run().map_err(|e| Errno::from_raw(e.errno()))?;
        Ok(f(exit))
    }

    /// Creates an in-kernel device of `type_` (`KVM_CREATE_DEVICE`, for instance
    /// `KVM_DEV_TYPE_ARM_VGIC_V3`); returns its index for [`KvmMachine::device`].
    pub fn create_device(&mut self, type_: u32) -> Result<usize> {
        let mut create = kvm_create_device {
            type_,
            fd: 0,
            flags: 0,
        };
        let device = self
            .vm
            .create_device(&mut create)
            .map_err(kernel(Op::KvmCreateDevice))?;
        self.devices.push(device);
        Ok(self.devices.len() - 1)
    }

    /// The device at `index`, for `KVM_SET_DEVICE_ATTR`.
    pub fn device(&self, index: usize) -> Option<&DeviceFd> {
        self.devices.get(index)
    }

    /// `KVM_ARM_PREFERRED_TARGET`: the vCPU type `KVM_ARM_VCPU_INIT` wants on this host.
    #[cfg(target_arch = "aarch64")]
    pub fn preferred_target(&self) -> Result<kvm_bindings::kvm_vcpu_init> {
        let mut init = kvm_bindings::kvm_vcpu_init::default();
        self.vm
            .get_preferred_target(&mut init)
            .map_err(kernel(Op::KvmArmPreferredTarget))?;
        Ok(init)
    }
}

impl std::fmt::Debug for KvmMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvmMachine")
            .field("vcpus", &self.vcpus.len())
            .field("devices", &self.devices.len())
            .field("memory_slots", &self.memory.len())
            .finish()
    }
}

// The route table's verbs on the machine's VM, so that `KvmRoutes` can drive it without
// the `VmFd` ever leaving the machine.
impl crate::kvm::KvmVm for KvmMachine {
    fn set_gsi_routing(&self, routing: &crate::kvm::KvmIrqRouting) -> Result<(), Errno> {
        crate::kvm::KvmVm::set_gsi_routing(&self.vm, routing)
    }

    fn register_irqfd(&self, eventfd: &EventFd, gsi: u32) -> Result<(), Errno> {
        crate::kvm::KvmVm::register_irqfd(&self.vm, eventfd, gsi)
    }

    fn unregister_irqfd(&self, eventfd: &EventFd, gsi: u32) -> Result<(), Errno> {
        crate::kvm::KvmVm::unregister_irqfd(&self.vm, eventfd, gsi)
    }

    fn signal_msi(&self, msi: &kvm_msi) -> Result<(), Errno> {
        crate::kvm::KvmVm::signal_msi(&self.vm, msi)
    }
}
