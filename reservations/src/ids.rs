//! Identifier newtypes: a `SaleId` can never be passed where a `ShopperId` is expected.
//!
//! # A reservation id says where its hold lives
//!
//! A hold lives in one stripe of one sale in Redis, and its routes name only the hold.
//! Instead of an index key (`resv:{id}` → sale and stripe, a second Redis write after
//! the reserve script, lost when the reply is lost), the id itself carries the address:
//! a UUID of version 8 (RFC 9562, "custom"), still the UUID of API.md, laid out as
//!
//! | bits    | field                                                          |
//! |---------|----------------------------------------------------------------|
//! | 0..40   | the sale's [`SaleOrdinal`] (a compact, immutable number)       |
//! | 40..48  | the stripe index (< [`MAX_STRIPES`](crate::projection::MAX_STRIPES) ≤ 256) |
//! | 48..52  | version `8`                                                    |
//! | 52..64  | random                                                         |
//! | 64..66  | variant `10` (RFC 9562)                                        |
//! | 66..128 | random                                                         |
//!
//! 74 random bits from the OS generator (those of a v4 UUID), so ids stay unguessable
//! and a collision within one sale is negligible (≈ n² / 2⁷⁵: below 10⁻⁶ at 10⁸ holds).
//! Why an ordinal and not the sale id: a sale id is a UUID of its own (122 bits of it
//! vary), which leaves no room for randomness; the ordinal is a `sales.ordinal` identity
//! column, assigned once and never changed, so an in-process map ordinal ↔ sale id can
//! be cached forever (see `projection::directory`). Why not a hash of the sale id: it
//! could not be turned back into the sale without a table of every sale anyway.
//!
//! The server chooses the id before the reserve script runs: whatever happens to the
//! reply, the hold is in that stripe's hash under that id, or it never existed.
//! Ids that do not decode (version 4 ids minted before this layout, or garbage) locate
//! nothing by themselves; see `Projection::reservation_stripe` for their fallback.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A sale (one limited launch of one product).
    SaleId
);
id_type!(
    /// A variant of a sale (a size, a tier, a bundle). The first variant of a sale has
    /// the sale's own id (see `sales::variant`).
    VariantId
);
id_type!(
    /// A merchant, as named by the `sub` of its token.
    MerchantId
);
id_type!(
    /// A shopper: a guest session or a shopper of the operator's identity provider.
    ShopperId
);
id_type!(
    /// A hold on units of a sale.
    ReservationId
);
id_type!(
    /// A confirmed order.
    OrderId
);

/// A sale's ordinal: a compact number Postgres assigns once (`sales.ordinal`) and never
/// changes, so a reservation id can name its sale in 40 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SaleOrdinal(u64);

impl SaleOrdinal {
    /// The largest ordinal a reservation id can carry (40 bits); the column's check
    /// constraint refuses more.
    pub const MAX: u64 = (1 << 40) - 1;

    /// Accepts 1..=[`Self::MAX`]; 0 is never assigned (identity columns start at 1).
    pub fn new(value: i64) -> Option<Self> {
        u64::try_from(value)
            .ok()
            .filter(|v| (1..=Self::MAX).contains(v))
            .map(Self)
    }

    /// The number, as Postgres stores it.
    pub fn get(self) -> i64 {
        self.0 as i64
    }
}

impl std::fmt::Display for SaleOrdinal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a reservation id says its hold lives: a sale (by ordinal) and a stripe index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldAddress {
    /// The sale's ordinal.
    pub sale: SaleOrdinal,
    /// The stripe index (0 for an unstriped sale).
    pub stripe: u32,
}

/// The version nibble of an id that carries its hold's address (RFC 9562 "custom").
const ADDRESSED_VERSION: u8 = 8;

impl ReservationId {
    /// A fresh id for a hold of sale `sale` in stripe `stripe` (< 256), with 74 random
    /// bits.
    pub fn mint(sale: SaleOrdinal, stripe: u32) -> Self {
        let mut bytes = *Uuid::new_v4().as_bytes();
        // A v4 UUID has the RFC 9562 variant already and random bits everywhere else.
        bytes[..5].copy_from_slice(&sale.0.to_be_bytes()[3..]);
        bytes[6] = (ADDRESSED_VERSION << 4) | (bytes[6] & 0x0f);
        Self(Uuid::from_bytes(bytes)).in_stripe(stripe)
    }

    /// The sale and stripe this id names, or `None` for an id of another layout
    /// (version 4 ids from before it, or garbage).
    pub fn address(self) -> Option<HoldAddress> {
        if self.0.get_version_num() != usize::from(ADDRESSED_VERSION)
            || self.0.get_variant() != uuid::Variant::RFC4122
        {
            return None;
        }
        let bytes = self.0.as_bytes();
        let mut ordinal = [0u8; 8];
        ordinal[3..].copy_from_slice(&bytes[..5]);
        Some(HoldAddress {
            sale: SaleOrdinal::new(u64::from_be_bytes(ordinal) as i64)?,
            stripe: u32::from(bytes[5]),
        })
    }

    /// The same id placed in stripe `stripe` (< 256): a reserve that falls back to
    /// another stripe puts its hold there under this id. An id without an address is
    /// returned unchanged.
    pub fn in_stripe(self, stripe: u32) -> Self {
        if self.address().is_none() {
            return self;
        }
        let stripe = u8::try_from(stripe).expect("a stripe index fits a reservation id");
        let mut bytes = *self.0.as_bytes();
        bytes[5] = stripe;
        Self(Uuid::from_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn a_minted_reservation_id_decodes_to_its_sale_and_stripe() {
        for (ordinal, stripe) in [(1, 0), (42, 3), (SaleOrdinal::MAX as i64, 63)] {
            let sale = SaleOrdinal::new(ordinal).unwrap();
            let id = ReservationId::mint(sale, stripe);
            assert_eq!(id.address(), Some(HoldAddress { sale, stripe }));
            // The text form is what clients send back: it decodes the same.
            let parsed: ReservationId = id.to_string().parse().unwrap();
            assert_eq!(parsed.address(), Some(HoldAddress { sale, stripe }));
        }
    }

    #[test]
    fn a_minted_id_is_a_version_8_rfc_uuid() {
        let id = ReservationId::mint(SaleOrdinal::new(7).unwrap(), 2);
        assert_eq!(id.0.get_version_num(), 8);
        assert_eq!(id.0.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(id.to_string().as_bytes()[14], b'8');
    }

    #[test]
    fn minted_ids_of_one_sale_and_stripe_differ_in_74_random_bits() {
        let sale = SaleOrdinal::new(9).unwrap();
        let ids: Vec<ReservationId> = (0..4096).map(|_| ReservationId::mint(sale, 1)).collect();
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        // Every bit outside the address, version and variant varies; those never do.
        let (mut ones, mut zeros) = (0u128, 0u128);
        for id in &ids {
            let bits = id.0.as_u128();
            ones |= bits;
            zeros |= !bits;
        }
        let varying = ones & zeros;
        assert_eq!(varying.count_ones(), 74);
        let fixed = (0xffff_ffff_ffff_u128 << 80) | (0xf << 76) | (0b11 << 62);
        assert_eq!(varying & fixed, 0);
    }

    #[test]
    fn moving_an_id_to_another_stripe_keeps_its_sale_and_random_bits() {
        let sale = SaleOrdinal::new(5).unwrap();
        let id = ReservationId::mint(sale, 0);
        let moved = id.in_stripe(3);
        assert_eq!(moved.address(), Some(HoldAddress { sale, stripe: 3 }));
        assert_eq!(moved.in_stripe(0), id);
        assert_ne!(moved, id);
    }

    #[test]
    fn ids_of_another_layout_locate_nothing() {
        let v4 = ReservationId::new();
        assert_eq!(v4.address(), None);
        assert_eq!(v4.in_stripe(2), v4, "a legacy id is never rewritten");
        // A version 8 id with ordinal 0 (never assigned) and a v7 id.
        let zero: ReservationId = "00000000-0000-8000-8000-000000000001".parse().unwrap();
        assert_eq!(zero.address(), None);
        assert_eq!(ReservationId(Uuid::now_v7()).address(), None);
        assert_eq!(SaleOrdinal::new(0), None);
        assert_eq!(SaleOrdinal::new(1 << 40), None);
    }
}
