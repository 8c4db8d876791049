//! The ledger's records as Stripe's JSON objects (PaymentIntent, Charge, Refund, list
//! and search results), with exactly the fields of the contract.

use serde_json::{json, Value};

use crate::ledger::{Charge, Intent, Refund};

/// A PaymentIntent; `latest_charge` is the charge id, or the Charge object when
/// expanded; null when declined.
pub(crate) fn intent(intent: &Intent, expand_charge: bool) -> Value {
    let latest_charge = match &intent.charge {
        None => Value::Null,
        Some(c) if expand_charge => charge(intent, c),
        Some(c) => json!(c.id),
    };
    json!({
        "id": intent.id,
        "object": "payment_intent",
        "amount": intent.amount,
        "amount_capturable": intent.amount_capturable(),
        "amount_received": intent.amount_received(),
        "currency": intent.currency,
        "capture_method": "manual",
        "confirmation_method": "automatic",
        "status": intent.status.as_str(),
        "payment_method": intent.payment_method,
        "metadata": intent.metadata,
        "created": intent.created,
        "canceled_at": intent.canceled_at,
        "cancellation_reason": intent.cancellation_reason,
        "latest_charge": latest_charge,
        "livemode": false,
    })
}

fn charge(intent: &Intent, charge: &Charge) -> Value {
    json!({
        "id": charge.id,
        "object": "charge",
        "amount": intent.amount,
        "amount_captured": intent.amount_received(),
        "amount_refunded": charge.amount_refunded,
        "refunded": charge.captured && charge.amount_refunded == intent.amount,
        "captured": charge.captured,
        "currency": intent.currency,
        "payment_intent": intent.id,
    })
}

/// A Refund of `intent`.
pub(crate) fn refund(refund: &Refund, intent: &Intent) -> Value {
    json!({
        "id": refund.id,
        "object": "refund",
        "amount": refund.amount,
        "currency": intent.currency,
        "payment_intent": intent.id,
        "charge": intent.charge.as_ref().map(|c| c.id.clone()),
        "reason": refund.reason,
        "metadata": refund.metadata,
        "created": refund.created,
        "status": "succeeded",
    })
}

/// A page of `GET /v1/payment_intents`.
pub(crate) fn list(data: Vec<Value>, has_more: bool) -> Value {
    json!({
        "object": "list",
        "url": "/v1/payment_intents",
        "has_more": has_more,
        "data": data,
    })
}

/// The answer of `GET /v1/payment_intents/search`. There are no further pages to ask
/// for (`next_page` null); `has_more` says only that `limit` cut the matches short.
pub(crate) fn search(data: Vec<Value>, has_more: bool) -> Value {
    json!({
        "object": "search_result",
        "url": "/v1/payment_intents/search",
        "has_more": has_more,
        "next_page": null,
        "data": data,
    })
}
