//! The waiting room: who may reserve, and when.
//!
//! This crate owns the line of each sale (positions, the pre-queue and its verifiable
//! draw), the admission tokens that let a shopper reserve, and the feedback-controlled
//! admission controller that decides how fast the line moves. The reservation endpoint
//! checks tokens through the [`AdmissionCheck`] port, so it knows nothing of the line.
//!
//! # Layout
//!
//! - [`queue`]: the line of one sale in Redis (join, ticket, leave, the counters the
//!   controller and `/stats` read) and its Lua scripts.
//! - `join`: joining a line (the sale's state, its codes, the join script).
//! - [`draw`]: the committed seed, the draw order anyone can recompute, and the draw
//!   at the start as run and published.
//! - [`beacon`]: the drand quicknet round a draw may mix in: its signature check, the
//!   fetcher, and what the draw used (or that it fell back to the seed alone).
//! - [`codes`]: access codes: upload, listing, and their use by a join (hashed,
//!   atomic, recorded with the shopper).
//! - [`admission`]: admission tokens and the check the reservation endpoint calls.
//! - [`controller`]: the admission law, a pure function with its reasoning.
//! - [`runner`]: one controller per sale across all processes (a Redis lease), feeding
//!   the law its signals and moving the line.
//! - [`place`]: the signed statement of a shopper's place that every ticket carries.
//! - [`signer`]: the HS256 signer of every token issued with the HMAC secret.
//! - [`marks`]: what Postgres records of each line (ceiling, serving position, draw).
//! - `heal`: how the line survives Redis losing it (emptied or rolled back), from the
//!   marks and the statements.
//! - [`report`]: the line's figures for the post-event report (joins, admissions,
//!   estimated against actual admission waits), kept in Postgres after the sale.
//! - [`error`]: the crate's error type.

pub mod admission;
pub mod beacon;
pub mod codes;
pub mod controller;
pub mod draw;
pub mod error;
mod heal;
mod join;
pub mod marks;
pub mod place;
pub mod queue;
pub mod report;
pub mod runner;
pub mod signer;

pub use admission::{AdmissionCheck, AdmissionTokens, NotAdmitted};
pub use error::{Error, Result};
pub use marks::LineMarks;
pub use place::PlaceStatements;
pub use queue::{Queue, Ticket, TicketState};
