//! Integration tests of the flashsale API: the real app on port 0 against the real
//! Redis and Postgres of the local stack (`scripts/stack up`). One binary, one module
//! per area.

mod admin;
mod attacks;
mod beacon;
mod carts;
mod checkout;
mod codes;
mod commit_cut;
mod controller;
mod door;
mod draw_rounds;
mod events;
mod helpers;
mod line_holes;
mod ops;
mod order_life;
mod pages;
mod payments;
mod queue;
mod report;
mod reservations;
mod reservations_by_id;
mod rollback;
mod shedding;
mod stripes;
mod variants;
mod verify;
mod webhooks;
