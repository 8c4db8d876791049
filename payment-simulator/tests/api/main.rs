//! The simulator over HTTP, as flashsale's adapter will speak to it: one test binary,
//! each test against its own server on 127.0.0.1:0.

mod binary;
mod faults;
mod helpers;
mod idempotency;
mod intents;
mod journal;
mod listing;
