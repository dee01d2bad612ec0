//! ARM SMMUv3 specifics: the hardware info the kernel reports and the guest STE words a
//! nested domain takes.

use vmsi_sys::iommufd as i;
use vmsi_sys::names as n;

/// `IOMMU_GET_HW_INFO` for a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HwInfo {
    /// `out_data_type` (2 = ARM SMMUv3).
    pub data_type: u32,
    /// `out_capabilities` (`IOMMU_HW_CAP_*`).
    pub capabilities: u64,
    /// `out_max_pasid_log2`.
    pub max_pasid_log2: u8,
    /// The SMMUv3 registers, when the IOMMU is an SMMUv3.
    pub smmuv3: Option<Smmuv3Info>,
}

impl HwInfo {
    pub(crate) fn decode(
        data_type: u32,
        capabilities: u64,
        max_pasid_log2: u8,
        data: &[u8; 40],
    ) -> Self {
        let smmuv3 = (data_type == n::IOMMU_HW_INFO_TYPE_ARM_SMMUV3).then(|| {
            let w = |k: usize| u32::from_le_bytes([data[k], data[k + 1], data[k + 2], data[k + 3]]);
            Smmuv3Info {
                idr: [w(8), w(12), w(16), w(20), w(24), w(28)],
                iidr: w(32),
                aidr: w(36),
            }
        });
        HwInfo {
            data_type,
            capabilities,
            max_pasid_log2,
            smmuv3,
        }
    }

    /// Whether the device can use ATS (the kernel reports the negative).
    pub fn ats(&self) -> bool {
        self.capabilities & n::IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED as u64 == 0
    }
}

/// `struct iommu_hw_info_arm_smmuv3`: the raw ID registers, with the fields the kernel
/// allows userspace to read decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Smmuv3Info {
    /// IDR0..IDR5.
    pub idr: [u32; 6],
    /// IIDR.
    pub iidr: u32,
    /// AIDR.
    pub aidr: u32,
}

const _: () = assert!(size_of::<i::iommu_hw_info_arm_smmuv3>() == 40);

fn bits(v: u32, lo: u32, width: u32) -> u32 {
    (v >> lo) & ((1 << width) - 1)
}

impl Smmuv3Info {
    /// IDR0.S1P: stage-1 translation.
    pub fn stage1(&self) -> bool {
        bits(self.idr[0], 1, 1) != 0
    }
    /// IDR0.S2P: stage-2 translation.
    pub fn stage2(&self) -> bool {
        bits(self.idr[0], 0, 1) != 0
    }
    /// Both stages: what the kernel calls FEAT_NESTING.
    pub fn nesting(&self) -> bool {
        self.stage1() && self.stage2()
    }
    /// IDR0.TTF: 2 = AArch64 tables, 1 = AArch32, 3 = both.
    pub fn ttf(&self) -> u32 {
        bits(self.idr[0], 2, 2)
    }
    /// IDR0.COHACC: coherent table walks (the kernel requires it for iommufd).
    pub fn coherent(&self) -> bool {
        bits(self.idr[0], 4, 1) != 0
    }
    /// IDR0.ATS.
    pub fn ats(&self) -> bool {
        bits(self.idr[0], 10, 1) != 0
    }
    /// IDR0.ASID16.
    pub fn asid16(&self) -> bool {
        bits(self.idr[0], 12, 1) != 0
    }
    /// IDR0.MSI: the SMMU signals its own interrupts with MSIs.
    pub fn msi(&self) -> bool {
        bits(self.idr[0], 13, 1) != 0
    }
    /// IDR0.VMID16.
    pub fn vmid16(&self) -> bool {
        bits(self.idr[0], 18, 1) != 0
    }
    /// IDR0.ST_LEVEL: 0 linear, 1 two-level stream tables.
    pub fn st_level(&self) -> u32 {
        bits(self.idr[0], 27, 2)
    }
    /// IDR1.SIDSIZE: stream id bits.
    pub fn sid_bits(&self) -> u32 {
        bits(self.idr[1], 0, 6)
    }
    /// IDR1.SSIDSIZE: substream id (PASID) bits.
    pub fn ssid_bits(&self) -> u32 {
        bits(self.idr[1], 6, 5)
    }
    /// IDR3.HAD: hierarchical attribute disable.
    pub fn had(&self) -> bool {
        bits(self.idr[3], 2, 1) != 0
    }
    /// IDR3.FWB: stage-2 forced write-back (one way to allow a vIOMMU).
    pub fn fwb(&self) -> bool {
        bits(self.idr[3], 8, 1) != 0
    }
    /// IDR3.RIL: range invalidation.
    pub fn ril(&self) -> bool {
        bits(self.idr[3], 10, 1) != 0
    }
    /// IDR3.BBML: break-before-make level.
    pub fn bbml(&self) -> u32 {
        bits(self.idr[3], 11, 2)
    }
    /// IDR5.OAS as bits (32, 36, 40, 42, 44, 48, 52).
    pub fn oas_bits(&self) -> u32 {
        match bits(self.idr[5], 0, 3) {
            0 => 32,
            1 => 36,
            2 => 40,
            3 => 42,
            4 => 44,
            5 => 48,
            _ => 52,
        }
    }
    /// IDR5 granule support: (4K, 16K, 64K).
    pub fn granules(&self) -> (bool, bool, bool) {
        (
            bits(self.idr[5], 4, 1) != 0,
            bits(self.idr[5], 5, 1) != 0,
            bits(self.idr[5], 6, 1) != 0,
        )
    }
}

/// The two guest-owned words of a nested SMMUv3 Stream Table Entry
/// (`struct iommu_hwpt_arm_smmuv3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Ste(pub [u64; 2]);

const STE_V: u64 = 1;
const CFG_ABORT: u64 = 0;
const CFG_BYPASS: u64 = 4;
const CFG_S1: u64 = 5;

impl Ste {
    /// V=1, Config = abort: the device's DMA (and MSIs) fault.
    pub const fn abort() -> Self {
        Ste([STE_V | (CFG_ABORT << 1), 0])
    }

    /// V=1, Config = stage-1 bypass: stage 2 only, as before the guest enables its SMMU.
    pub const fn bypass() -> Self {
        Ste([STE_V | (CFG_BYPASS << 1), 0])
    }

    /// V=1, Config = stage-1 translate with a linear context-descriptor table of
    /// `2^cd_max_bits` entries at IPA `cd_table` (64-byte aligned), non-secure, with the
    /// table walks inner/outer write-back cacheable and inner shareable.
    pub fn s1(cd_table: u64, cd_max_bits: u32) -> Option<Self> {
        if cd_table & 0x3f != 0 || cd_table >> 52 != 0 || cd_max_bits > 20 {
            return None;
        }
        let word0 =
            STE_V | (CFG_S1 << 1) | (cd_table & ((1 << 52) - 0x40)) | ((cd_max_bits as u64) << 59);
        // S1CIR = S1COR = WBRA (1), S1CSH = inner shareable (3).
        let word1 = (1 << 2) | (1 << 4) | (3 << 6);
        Some(Ste([word0, word1]))
    }

    /// The STE bytes as the kernel takes them (little-endian words).
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.0[0].to_le_bytes());
        b[8..].copy_from_slice(&self.0[1].to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_rig_smmu() {
        // What QEMU 11's SMMUv3 reported on the rig (shared/rig/REPORT.md).
        let s = Smmuv3Info {
            idr: [0x0d44_101b, 0x0273_0010, 0, 0x1414, 0, 0x74],
            iidr: 0,
            aidr: 1,
        };
        assert!(s.nesting() && s.coherent() && s.asid16() && s.vmid16());
        assert!(!s.msi() && !s.ats() && !s.fwb());
        assert_eq!(
            (s.ttf(), s.st_level(), s.sid_bits(), s.ssid_bits()),
            (2, 1, 16, 0)
        );
        assert!(s.had() && s.ril());
        assert_eq!(s.bbml(), 2);
        assert_eq!(s.oas_bits(), 44);
        assert_eq!(s.granules(), (true, true, true));
    }

    #[test]
    fn ste_words_match_the_rig_probe() {
        assert_eq!(Ste::bypass().0[0], 0x9);
        assert_eq!(Ste::abort().0[0], 0x1);
        // The reference probe's S1 STE: CD table at 0x300000, ste0=0x30000b, ste1=0xd4.
        let s = Ste::s1(0x30_0000, 0).expect("valid");
        assert_eq!(s.0, [0x30_000b, 0xd4]);
        assert!(Ste::s1(0x30_0001, 0).is_none());
    }
}
