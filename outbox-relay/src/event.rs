//! The event as it travels: an outbox row becomes one stream entry with flat string
//! fields, and a worker turns the entry back into an [`Event`] envelope and decodes its
//! payload into the domain's own type, [`DomainEvent`] (crate `reservations`, module
//! `events`: the one definition of every event, used by the producer too).
//!
//! Stream entry fields: `id` (the event id, the deduplication key of every consumer),
//! `type`, `aggregate_type`, `aggregate_id`, `occurred_at` (RFC 3339), `correlation_id`
//! and `payload` (JSON text, exactly as stored in the outbox).

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::error::{Error, Result};

/// The event names and payloads are the domain's; re-exported so relay users (and
/// `flashsale verify`) keep naming them `outbox_relay::event::…`.
pub use reservations::events::{DomainEvent, OrderPlaced, ORDER_AGGREGATE, ORDER_PLACED};

/// The stream of one aggregate type: `<prefix>:stream:{<aggregate_type>}`.
///
/// The braces are a Redis Cluster hash tag: a stream and its dead-letter stream share
/// a slot, so moving an entry to the dead letters and acknowledging it can be one
/// `MULTI` on a cluster too.
pub fn stream_key(prefix: &str, aggregate_type: &str) -> String {
    format!("{prefix}:stream:{{{aggregate_type}}}")
}

/// The dead-letter stream of one aggregate type: `<prefix>:stream:{<aggregate_type>}:dead`.
pub fn dead_letter_key(prefix: &str, aggregate_type: &str) -> String {
    format!("{}:dead", stream_key(prefix, aggregate_type))
}

/// One event, as the relay publishes it and the workers receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event id (the outbox row's primary key): consumers deduplicate by it.
    pub id: Uuid,
    /// What happened, e.g. [`ORDER_PLACED`].
    pub event_type: String,
    /// The kind of thing it happened to, e.g. [`ORDER_AGGREGATE`]; picks the stream.
    pub aggregate_type: String,
    /// Which one.
    pub aggregate_id: Uuid,
    /// When it happened (the commit's transaction time).
    pub occurred_at: DateTime<Utc>,
    /// Ties the event to the request that caused it, for tracing across processes.
    pub correlation_id: String,
    /// The payload, JSON text. Kept as text: the relay passes it through untouched and
    /// only the consumer that knows the event type parses it.
    pub payload: String,
}

impl Event {
    /// The stream entry fields, in a fixed order.
    pub fn to_fields(&self) -> [(&'static str, String); 7] {
        [
            ("id", self.id.to_string()),
            ("type", self.event_type.clone()),
            ("aggregate_type", self.aggregate_type.clone()),
            ("aggregate_id", self.aggregate_id.to_string()),
            (
                "occurred_at",
                self.occurred_at
                    .to_rfc3339_opts(SecondsFormat::Micros, true),
            ),
            ("correlation_id", self.correlation_id.clone()),
            ("payload", self.payload.clone()),
        ]
    }

    /// Reads an event back from stream entry fields. A missing or malformed field is
    /// [`Error::MalformedEvent`]: the entry will never parse, however often it is retried.
    pub fn from_fields(fields: &HashMap<String, redis::Value>) -> Result<Event> {
        let text = |name: &str| -> Result<String> {
            let value = fields
                .get(name)
                .ok_or_else(|| Error::MalformedEvent(format!("no `{name}` field")))?;
            redis::from_redis_value::<String>(value)
                .map_err(|_| Error::MalformedEvent(format!("`{name}` is not text")))
        };
        let uuid = |name: &str| -> Result<Uuid> {
            text(name)?
                .parse()
                .map_err(|_| Error::MalformedEvent(format!("`{name}` is not a UUID")))
        };
        let occurred_at = DateTime::parse_from_rfc3339(&text("occurred_at")?)
            .map_err(|_| Error::MalformedEvent("`occurred_at` is not RFC 3339".into()))?
            .with_timezone(&Utc);
        Ok(Event {
            id: uuid("id")?,
            event_type: text("type")?,
            aggregate_type: text("aggregate_type")?,
            aggregate_id: uuid("aggregate_id")?,
            occurred_at,
            correlation_id: text("correlation_id")?,
            payload: text("payload")?,
        })
    }

    /// Decodes the payload into the domain event its type names; `Ok(None)` for a type
    /// this build does not know. A payload that does not parse is
    /// [`Error::MalformedEvent`]: retrying cannot help.
    pub fn decode(&self) -> Result<Option<DomainEvent>> {
        DomainEvent::parse(&self.event_type, &self.payload)
            .map_err(|e| Error::MalformedEvent(format!("{} payload: {e}", self.event_type)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order_placed_event(payload: serde_json::Value) -> Event {
        Event {
            id: Uuid::new_v4(),
            event_type: ORDER_PLACED.into(),
            aggregate_type: ORDER_AGGREGATE.into(),
            aggregate_id: Uuid::new_v4(),
            occurred_at: DateTime::parse_from_rfc3339("2031-01-01T10:00:00.123456Z")
                .unwrap()
                .with_timezone(&Utc),
            correlation_id: "req-1".into(),
            payload: payload.to_string(),
        }
    }

    #[test]
    fn key_names_share_one_hash_tag() {
        assert_eq!(stream_key("fs", "order"), "fs:stream:{order}");
        assert_eq!(dead_letter_key("fs", "order"), "fs:stream:{order}:dead");
    }

    #[test]
    fn an_event_survives_the_trip_through_stream_fields() {
        let event = order_placed_event(serde_json::json!({ "a": 1 }));
        let fields: HashMap<String, redis::Value> = event
            .to_fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), redis::Value::BulkString(v.into_bytes())))
            .collect();
        assert_eq!(Event::from_fields(&fields).unwrap(), event);
    }

    #[test]
    fn an_entry_without_an_id_is_malformed() {
        let event = order_placed_event(serde_json::json!({}));
        let fields: HashMap<String, redis::Value> = event
            .to_fields()
            .into_iter()
            .filter(|(k, _)| *k != "id")
            .map(|(k, v)| (k.to_owned(), redis::Value::BulkString(v.into_bytes())))
            .collect();
        assert!(matches!(
            Event::from_fields(&fields),
            Err(Error::MalformedEvent(_))
        ));
    }

    #[test]
    fn order_placed_parses_the_checkout_payload_and_rejects_others() {
        let order = Uuid::new_v4();
        let event = order_placed_event(serde_json::json!({
            "order_id": order, "sale_id": Uuid::new_v4(), "shopper_id": Uuid::new_v4(),
            "reservation_id": Uuid::new_v4(), "quantity": 2,
            "amount": { "amount_minor": 25800, "currency": "EUR" },
        }));
        let Some(DomainEvent::OrderPlaced(parsed)) = event.decode().unwrap() else {
            panic!("an OrderPlaced event decodes as one");
        };
        assert_eq!(parsed.order_id.0, order);
        assert_eq!(parsed.amount.amount_minor, 25800);

        let poison = order_placed_event(serde_json::json!({ "hello": "world" }));
        assert!(!poison.decode().unwrap_err().is_transient());
    }
}
