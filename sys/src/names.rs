//! The C names of iommufd enum constants.
//!
//! bindgen prefixes each enumerator with its enum's name
//! (`iommu_hwpt_data_type_IOMMU_HWPT_DATA_ARM_SMMUV3`); these aliases give back the names the
//! kernel headers and documentation use.

use crate::iommufd as i;

macro_rules! alias {
    ($($name:ident = $bindgen:ident;)*) => {$(
        #[doc = concat!("`", stringify!($name), "`")]
        pub const $name: u32 = i::$bindgen;
    )*};
}

alias! {
    IOMMU_IOAS_MAP_FIXED_IOVA = iommufd_ioas_map_flags_IOMMU_IOAS_MAP_FIXED_IOVA;
    IOMMU_IOAS_MAP_WRITEABLE = iommufd_ioas_map_flags_IOMMU_IOAS_MAP_WRITEABLE;
    IOMMU_IOAS_MAP_READABLE = iommufd_ioas_map_flags_IOMMU_IOAS_MAP_READABLE;
    IOMMU_OPTION_RLIMIT_MODE = iommufd_option_IOMMU_OPTION_RLIMIT_MODE;
    IOMMU_OPTION_HUGE_PAGES = iommufd_option_IOMMU_OPTION_HUGE_PAGES;
    IOMMU_OPTION_OP_SET = iommufd_option_ops_IOMMU_OPTION_OP_SET;
    IOMMU_OPTION_OP_GET = iommufd_option_ops_IOMMU_OPTION_OP_GET;
    IOMMU_HWPT_ALLOC_NEST_PARENT = iommufd_hwpt_alloc_flags_IOMMU_HWPT_ALLOC_NEST_PARENT;
    IOMMU_HWPT_ALLOC_DIRTY_TRACKING = iommufd_hwpt_alloc_flags_IOMMU_HWPT_ALLOC_DIRTY_TRACKING;
    IOMMU_HWPT_FAULT_ID_VALID = iommufd_hwpt_alloc_flags_IOMMU_HWPT_FAULT_ID_VALID;
    IOMMU_HWPT_ALLOC_PASID = iommufd_hwpt_alloc_flags_IOMMU_HWPT_ALLOC_PASID;
    IOMMU_HWPT_DATA_NONE = iommu_hwpt_data_type_IOMMU_HWPT_DATA_NONE;
    IOMMU_HWPT_DATA_ARM_SMMUV3 = iommu_hwpt_data_type_IOMMU_HWPT_DATA_ARM_SMMUV3;
    IOMMU_HW_INFO_TYPE_NONE = iommu_hw_info_type_IOMMU_HW_INFO_TYPE_NONE;
    IOMMU_HW_INFO_TYPE_ARM_SMMUV3 = iommu_hw_info_type_IOMMU_HW_INFO_TYPE_ARM_SMMUV3;
    IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED = iommufd_hw_capabilities_IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED;
    IOMMU_VIOMMU_TYPE_ARM_SMMUV3 = iommu_viommu_type_IOMMU_VIOMMU_TYPE_ARM_SMMUV3;
    IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 = iommu_hwpt_invalidate_data_type_IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3;
    IOMMU_VEVENTQ_TYPE_ARM_SMMUV3 = iommu_veventq_type_IOMMU_VEVENTQ_TYPE_ARM_SMMUV3;
    IOMMU_VEVENTQ_FLAG_LOST_EVENTS = iommu_veventq_flag_IOMMU_VEVENTQ_FLAG_LOST_EVENTS;
}
