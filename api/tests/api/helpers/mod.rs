//! What the integration tests share: `spawn_app()` and the identities a test acts as
//! ([`spawn`]), the test client with its raw and typed routes ([`client`]), the
//! contract's answers as test-side types ([`types`]), reading and asserting answers,
//! contract-table rows included ([`assertions`]), forged tokens ([`tokens`]) and a
//! dependency one test can cut ([`proxies`]).
//!
//! Everything is re-exported here, so a test imports `crate::helpers::{…}` whatever
//! module an item lives in.

pub mod assertions;
pub mod client;
pub mod proxies;
pub mod spawn;
pub mod tokens;
pub mod types;

// Each test file uses a part of the helpers; the re-exports are for all of them.
#[allow(unused_imports)]
pub use {assertions::*, client::*, proxies::*, spawn::*, tokens::*, types::*};
