//! The waiting room: who may reserve, and when.
//!
//! Today this crate owns the admission token — the pass a shopper shows to reserve.
//! The queue, the pre-queue draw and the feedback-controlled admission controller will
//! live here too; they issue tokens through [`AdmissionTokens`], and the reservation
//! endpoint checks them through the [`AdmissionCheck`] port, so plugging the queue in
//! changes no reservation code.
//!
//! # Layout
//!
//! - [`admission`]: admission tokens and the check the reservation endpoint calls.

pub mod admission;
pub mod controller;
pub mod draw;
pub mod error;
pub mod queue;
pub mod runner;

pub use admission::{AdmissionCheck, AdmissionTokens, NotAdmitted};
pub use error::{Error, Result};
pub use queue::{Queue, Ticket, TicketState};
