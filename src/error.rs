//! The crate's one error type.

use std::fmt;

pub use nix::errno::Errno;

/// A kernel operation, named as the uAPI names it, so every failure says which call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // each variant is the uAPI name it displays as
pub enum Op {
    OpenIommufd,
    OpenDevice,
    Close,
    Read,
    Mmap,
    Destroy,
    IoasAlloc,
    IoasAllowIovas,
    IoasCopy,
    IoasIovaRanges,
    IoasMap,
    IoasMapFile,
    /// `IOMMU_IOAS_MAP_MSI` (the rig kernel's per-vector uAPI).
    IoasMapMsi,
    IoasUnmap,
    Option,
    HwptAlloc,
    GetHwInfo,
    HwptInvalidate,
    ViommuAlloc,
    VdeviceAlloc,
    VeventqAlloc,
    DeviceBind,
    DeviceAttach,
    DeviceDetach,
    DeviceGetInfo,
    DeviceGetRegionInfo,
    DeviceGetIrqInfo,
    DeviceSetIrqs,
    DeviceReset,
    DeviceRegionRead,
    DeviceRegionWrite,
    KvmSetGsiRouting,
    KvmIrqfd,
    KvmSignalMsi,
    OpenKvm,
    KvmCreateVm,
    KvmSetUserMemoryRegion,
    KvmCreateVcpu,
    KvmCreateDevice,
    KvmArmPreferredTarget,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Op::OpenIommufd => "open(/dev/iommu)",
            Op::OpenDevice => "open(VFIO cdev)",
            Op::Close => "close",
            Op::Read => "read",
            Op::Mmap => "mmap",
            Op::Destroy => "IOMMU_DESTROY",
            Op::IoasAlloc => "IOMMU_IOAS_ALLOC",
            Op::IoasAllowIovas => "IOMMU_IOAS_ALLOW_IOVAS",
            Op::IoasCopy => "IOMMU_IOAS_COPY",
            Op::IoasIovaRanges => "IOMMU_IOAS_IOVA_RANGES",
            Op::IoasMap => "IOMMU_IOAS_MAP",
            Op::IoasMapFile => "IOMMU_IOAS_MAP_FILE",
            Op::IoasMapMsi => "IOMMU_IOAS_MAP_MSI",
            Op::IoasUnmap => "IOMMU_IOAS_UNMAP",
            Op::Option => "IOMMU_OPTION",
            Op::HwptAlloc => "IOMMU_HWPT_ALLOC",
            Op::GetHwInfo => "IOMMU_GET_HW_INFO",
            Op::HwptInvalidate => "IOMMU_HWPT_INVALIDATE",
            Op::ViommuAlloc => "IOMMU_VIOMMU_ALLOC",
            Op::VdeviceAlloc => "IOMMU_VDEVICE_ALLOC",
            Op::VeventqAlloc => "IOMMU_VEVENTQ_ALLOC",
            Op::DeviceBind => "VFIO_DEVICE_BIND_IOMMUFD",
            Op::DeviceAttach => "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
            Op::DeviceDetach => "VFIO_DEVICE_DETACH_IOMMUFD_PT",
            Op::DeviceGetInfo => "VFIO_DEVICE_GET_INFO",
            Op::DeviceGetRegionInfo => "VFIO_DEVICE_GET_REGION_INFO",
            Op::DeviceGetIrqInfo => "VFIO_DEVICE_GET_IRQ_INFO",
            Op::DeviceSetIrqs => "VFIO_DEVICE_SET_IRQS",
            Op::DeviceReset => "VFIO_DEVICE_RESET",
            Op::DeviceRegionRead => "pread(VFIO region)",
            Op::DeviceRegionWrite => "pwrite(VFIO region)",
            Op::KvmSetGsiRouting => "KVM_SET_GSI_ROUTING",
            Op::KvmIrqfd => "KVM_IRQFD",
            Op::KvmSignalMsi => "KVM_SIGNAL_MSI",
            Op::OpenKvm => "open(/dev/kvm)",
            Op::KvmCreateVm => "KVM_CREATE_VM",
            Op::KvmSetUserMemoryRegion => "KVM_SET_USER_MEMORY_REGION",
            Op::KvmCreateVcpu => "KVM_CREATE_VCPU",
            Op::KvmCreateDevice => "KVM_CREATE_DEVICE",
            Op::KvmArmPreferredTarget => "KVM_ARM_PREFERRED_TARGET",
        };
        f.write_str(name)
    }
}

/// A kernel capability the library can use when the running kernel has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Feature {
    /// `/dev/iommu` (CONFIG_IOMMUFD).
    Iommufd,
    /// A stage-2 domain that can parent a nested stage 1 (`IOMMU_HWPT_ALLOC_NEST_PARENT`).
    NestParent,
    /// A vIOMMU object: needs SMMUv3 nesting plus CANWBS or S2FWB.
    Viommu,
    /// Nested stage-1 domains.
    NestedHwpt,
    /// The proposed per-device software MSI window options.
    SwMsiWindow,
    /// The proposed per-vector MSI IOVAs on `VFIO_DEVICE_SET_IRQS`.
    PerVectorMsiIova,
    /// Something the in-process model does not model; the message says what.
    NotModelled(&'static str),
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Feature::Iommufd => f.write_str("iommufd"),
            Feature::NestParent => f.write_str("nest-parent stage 2"),
            Feature::Viommu => f.write_str("vIOMMU"),
            Feature::NestedHwpt => f.write_str("nested stage 1"),
            Feature::SwMsiWindow => f.write_str("per-device SW MSI window"),
            Feature::PerVectorMsiIova => f.write_str("per-vector MSI IOVA"),
            Feature::NotModelled(what) => write!(f, "{what} (not modelled by Sim)"),
        }
    }
}

/// Everything that can go wrong in `vmsi`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A kernel call failed.
    #[error("{op} failed: {errno}")]
    Kernel {
        /// Which call.
        op: Op,
        /// What the kernel answered.
        errno: Errno,
    },
    /// The running kernel lacks a feature; callers fall back instead of failing.
    #[error("{op}: {feature} is not supported by this kernel ({errno})")]
    Unsupported {
        /// The call that found out.
        op: Op,
        /// What is missing.
        feature: Feature,
        /// What the kernel answered (ENOTTY, EOPNOTSUPP or EINVAL).
        errno: Errno,
    },
    /// `IOMMU_HWPT_INVALIDATE` stopped part way: the first `handled` entries took effect.
    #[error("IOMMU_HWPT_INVALIDATE handled {handled} of {requested} entries: {errno}")]
    Invalidate {
        /// Entries the kernel processed before failing.
        handled: u32,
        /// Entries passed in.
        requested: u32,
        /// What the kernel answered for the first unhandled entry.
        errno: Errno,
    },
    /// An argument was rejected before reaching the kernel; nothing changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The object cannot be destroyed while other objects still hold it.
    #[error("{0} is still used by other objects")]
    InUse(&'static str),
    /// A guest (or caller) named a vector the table does not have; nothing changed.
    #[error("vector {vector} is outside the table of {len}")]
    VectorOutOfRange {
        /// The vector asked for.
        vector: u32,
        /// The table's size.
        len: u32,
    },
    /// A guest access to an emulated MSI-X table, PBA or MSI capability that the PCI spec
    /// does not allow (wrong size, misaligned, past the end); nothing changed.
    #[error("bad {size}-byte guest access at offset {offset:#x}")]
    BadAccess {
        /// Offset into the region.
        offset: u64,
        /// Access size in bytes.
        size: u8,
    },
    /// A guest MSI address that is not one of the doorbells the VMM declared; nothing
    /// changed.
    #[error("MSI address {address:#x} is not a declared doorbell")]
    NotADoorbell {
        /// The address the guest programmed.
        address: u64,
    },
    /// The per-vector strategy needs an MSI address for this vector and none was provided.
    #[error("no MSI address was provided for vector {vector}")]
    NoMsiAddress {
        /// The vector.
        vector: u32,
    },
    /// A firmware table or sysfs file is malformed; the error says where.
    #[error(transparent)]
    Firmware(#[from] crate::msi::firmware::FirmwareError),
    /// Reading a sysfs or firmware file failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The errno behind this error, where the kernel gave one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Kernel { errno, .. }
            | Error::Unsupported { errno, .. }
            | Error::Invalidate { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// Maps the answers a kernel gives for a missing feature (ENOTTY for an unknown ioctl,
    /// EOPNOTSUPP for a known one the hardware or driver cannot do) to [`Error::Unsupported`].
    pub(crate) fn kernel_or_unsupported(op: Op, errno: Errno, feature: Feature) -> Error {
        match errno {
            Errno::ENOTTY | Errno::EOPNOTSUPP => Error::Unsupported { op, feature, errno },
            _ => Error::Kernel { op, errno },
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
