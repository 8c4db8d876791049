//! The `flashsale` binary as a library: configuration, auth, HTTP and the process
//! roles. It wires the domain crates (`reservations`, `waiting-room`, `outbox-relay`)
//! to HTTP and holds no business rule of its own.
//!
//! # Layout
//!
//! - [`config`]: environment variables, validated at start-up.
//! - [`auth`]: bearer tokens (EdDSA for merchants and operators, HS256 for shoppers).
//! - [`error`]: the API's errors and their one problem+json conversion.
//! - [`http`]: one router per area and the shared middleware.
//! - [`signals`]: latency windows and the signals the admission controller reads.
//! - [`startup`]: connections, background tasks and the server ([`Application`]).
//! - [`cli`]: the subcommands.
//! - [`telemetry`]: logging.
//! - [`verify`]: the invariant checker behind `flashsale verify`.

pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod http;
pub mod signals;
pub mod startup;
pub mod telemetry;
pub mod verify;

pub use startup::Application;
