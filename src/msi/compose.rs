//! Composition: from the message a guest programmed to the host message and the route.

use super::{GuestMessage, HostMessage, Route};
use crate::error::{Error, Result};

/// What kind of domain the device's DMA goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// A paging domain: the guest programs GPAs (its virtual ITS doorbell).
    Paging,
    /// A nested domain: the guest programs guest IOVAs, translated by its own stage 1.
    Nested,
}

/// Where the device's MSI writes go on the host side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostAddressing {
    /// Every vector writes one address in the kernel's (or the chosen) MSI window:
    /// window + page index * page size + the doorbell's offset in its page.
    Window {
        /// The IOVA every vector writes.
        address: u64,
    },
    /// Each vector writes the MSI address provided for it (the proposed per-vector uAPI).
    PerVector,
}

/// The doorbells the VMM declared: which guest addresses may appear in an MSI message and
/// which virtual ITS doorbell each one reaches. Built once at device setup; lookups are a
/// scan of a handful of entries and allocate nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DoorbellMap {
    /// GPAs of the virtual ITS `GITS_TRANSLATER` registers.
    doorbells: Vec<u64>,
    /// Nested only: guest IOVA ranges the guest's stage 1 maps onto GPAs, as
    /// (guest IOVA base, length, GPA base).
    windows: Vec<(u64, u64, u64)>,
}

impl DoorbellMap {
    /// A paging-domain map: the guest programs one of `vits_doorbells` directly.
    pub fn paging(vits_doorbells: &[u64]) -> Result<Self> {
        DoorbellMap::nested(vits_doorbells, &[])
    }

    /// A nested-domain map: the guest programs guest IOVAs inside `windows`
    /// (`(iova, len, gpa)`: `[iova, iova + len)` maps onto `[gpa, gpa + len)` in the guest's
    /// stage 1, as the VMM knows from the guest's IORT RMRs or its trapped page tables), and
    /// the translated address must be one of `vits_doorbells`.
    pub fn nested(vits_doorbells: &[u64], windows: &[(u64, u64, u64)]) -> Result<Self> {
        if vits_doorbells.is_empty() {
            return Err(Error::InvalidArgument("no virtual ITS doorbell declared"));
        }
        for (k, &(iova, len, gpa)) in windows.iter().enumerate() {
            let ends = len > 0
                && iova.checked_add(len - 1).is_some()
                && gpa.checked_add(len - 1).is_some();
            if !ends {
                return Err(Error::InvalidArgument(
                    "an empty or wrapping doorbell window",
                ));
            }
            let overlaps = windows[..k]
                .iter()
                .any(|&(o, l, _)| iova <= o + (l - 1) && o <= iova + (len - 1));
            if overlaps {
                return Err(Error::InvalidArgument("overlapping doorbell windows"));
            }
        }
        Ok(DoorbellMap {
            doorbells: vits_doorbells.to_vec(),
            windows: windows.to_vec(),
        })
    }

    /// The virtual ITS doorbells.
    pub fn doorbells(&self) -> &[u64] {
        &self.doorbells
    }

    /// The virtual doorbell GPA a guest address reaches in `domain`, if it is declared.
    pub fn resolve(&self, domain: Domain, address: u64) -> Option<u64> {
        let gpa = match domain {
            Domain::Paging => address,
            Domain::Nested => self
                .windows
                .iter()
                .find(|&&(iova, len, _)| address >= iova && address - iova < len)
                .map(|&(iova, _, gpa)| gpa + (address - iova))?,
        };
        self.doorbells.contains(&gpa).then_some(gpa)
    }
}

/// Composes host messages and routes for one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Composer {
    /// The domain the device is attached to.
    pub domain: Domain,
    /// Host-side addressing (from the MSI strategy in force).
    pub host: HostAddressing,
    /// The doorbells the guest may target.
    pub doorbells: DoorbellMap,
    /// The device id the guest's virtual ITS uses for the device.
    pub devid: u32,
}

impl Composer {
    /// The host message and route for `vector` when the guest programs `guest`;
    /// `provided` is the vector's MSI address from the table. Pure: allocates nothing.
    pub fn compose(
        &self,
        vector: u32,
        guest: GuestMessage,
        provided: Option<u64>,
    ) -> Result<(HostMessage, Route)> {
        let doorbell_gpa =
            self.doorbells
                .resolve(self.domain, guest.address)
                .ok_or(Error::NotADoorbell {
                    address: guest.address,
                })?;
        let address = match self.host {
            HostAddressing::Window { address } => address,
            HostAddressing::PerVector => provided.ok_or(Error::NoMsiAddress { vector })?,
        };
        Ok((
            HostMessage { address },
            Route {
                doorbell_gpa,
                data: guest.data,
                devid: self.devid,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VITS: u64 = 0x0809_0040;

    #[test]
    fn paging_routes_the_guest_doorbell_and_the_host_writes_the_window() {
        let c = Composer {
            domain: Domain::Paging,
            host: HostAddressing::Window {
                address: 0x800_0040,
            },
            doorbells: DoorbellMap::paging(&[VITS]).unwrap(),
            devid: 0x10,
        };
        let (h, r) = c
            .compose(
                3,
                GuestMessage {
                    address: VITS,
                    data: 7,
                },
                None,
            )
            .unwrap();
        assert_eq!(h.address, 0x800_0040);
        assert_eq!(
            r,
            Route {
                doorbell_gpa: VITS,
                data: 7,
                devid: 0x10
            }
        );
        assert!(matches!(
            c.compose(3, GuestMessage { address: VITS + 4, data: 7 }, None),
            Err(Error::NotADoorbell { address }) if address == VITS + 4
        ));
    }

    #[test]
    fn nested_resolves_guest_iovas_through_the_declared_windows() {
        // The guest maps IOVA 0xeeee_0000 onto the vITS page.
        let map = DoorbellMap::nested(&[VITS], &[(0xeeee_0000, 0x1000, 0x0809_0000)]).unwrap();
        let c = Composer {
            domain: Domain::Nested,
            host: HostAddressing::PerVector,
            doorbells: map,
            devid: 1,
        };
        let g = GuestMessage {
            address: 0xeeee_0040,
            data: 2,
        };
        assert!(matches!(
            c.compose(0, g, None),
            Err(Error::NoMsiAddress { vector: 0 })
        ));
        let (h, r) = c.compose(0, g, Some(0xeeee_0040)).unwrap();
        assert_eq!((h.address, r.doorbell_gpa), (0xeeee_0040, VITS));
        // Inside the window but not the doorbell register.
        assert!(
            c.compose(
                0,
                GuestMessage {
                    address: 0xeeee_0044,
                    data: 2
                },
                Some(1)
            )
            .is_err()
        );
        assert!(DoorbellMap::nested(&[VITS], &[(0, 0x2000, 0), (0x1000, 0x1000, 0)]).is_err());
        assert!(DoorbellMap::nested(&[VITS], &[(u64::MAX, 2, 0)]).is_err());
        assert!(DoorbellMap::paging(&[]).is_err());
    }
}
