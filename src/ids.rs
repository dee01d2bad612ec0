//! Object ids: each kind of iommufd object gets its own type so they cannot be mixed up.

use std::fmt;

macro_rules! id {
    ($(#[$doc:meta] $name:ident;)*) => {$(
        #[$doc]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl $name {
            /// The number the kernel uses.
            pub const fn raw(self) -> u32 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}#{}", stringify!($name), self.0)
            }
        }
    )*};
}

id! {
    /// An IO address space (`IOMMU_IOAS_ALLOC`).
    IoasId;
    /// A hardware page table (`IOMMU_HWPT_ALLOC`, or created by attaching to an IOAS).
    HwptId;
    /// A VFIO device bound to an iommufd (`dev_id` from `VFIO_DEVICE_BIND_IOMMUFD`).
    DeviceId;
    /// A virtual IOMMU (`IOMMU_VIOMMU_ALLOC`).
    ViommuId;
    /// A device's identity inside a vIOMMU (`IOMMU_VDEVICE_ALLOC`).
    VdeviceId;
    /// A virtual event queue (`IOMMU_VEVENTQ_ALLOC`).
    VeventqId;
}
