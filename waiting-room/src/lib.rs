//! The waiting room: who may reserve, and when.
//!
//! This crate owns the line of each sale (positions, the pre-queue and its verifiable
//! draw), the admission tokens that let a shopper reserve, and the feedback-controlled
//! admission controller that decides how fast the line moves. The reservation endpoint
//! checks tokens through the [`AdmissionCheck`] port, so it knows nothing of the line.
//!
//! # Layout
//!
//! - [`queue`]: the line of one sale in Redis (join, ticket, leave, the draw at the
//!   start, the counters the controller and `/stats` read) and its Lua scripts.
//! - [`draw`]: the committed seed and the draw order anyone can recompute.
//! - [`admission`]: admission tokens and the check the reservation endpoint calls.
//! - [`controller`]: the admission law, a pure function with its reasoning.
//! - [`runner`]: one controller per sale across all processes (a Redis lease), feeding
//!   the law its signals and moving the line.
//! - [`error`]: the crate's error type.

pub mod admission;
pub mod controller;
pub mod draw;
pub mod error;
pub mod queue;
pub mod runner;

pub use admission::{AdmissionCheck, AdmissionTokens, NotAdmitted};
pub use error::{Error, Result};
pub use queue::{Queue, Ticket, TicketState};
