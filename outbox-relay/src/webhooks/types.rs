//! The webhook event types a merchant subscribes to, and which domain event each one
//! comes from. The names (`order.placed`, …) are spelled here and nowhere else.

use reservations::events::DomainEvent;

/// A webhook event type (API.md v1.1 "Webhooks").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// An order committed (`OrderPlaced`).
    OrderPlaced,
    /// A shopper cancelled an order. Subscriptions are accepted now; the events come
    /// once orders can be cancelled (issue #18, point 1).
    OrderCancelled,
    /// A merchant refunded an order (same as [`EventType::OrderCancelled`]).
    OrderRefunded,
    /// A sale's start time passed.
    SaleStarted,
    /// A live sale sold its last unit.
    SaleSoldOut,
    /// A sale ended.
    SaleEnded,
}

impl EventType {
    /// Every type, in the contract's order.
    pub const ALL: [EventType; 6] = [
        EventType::OrderPlaced,
        EventType::OrderCancelled,
        EventType::OrderRefunded,
        EventType::SaleStarted,
        EventType::SaleSoldOut,
        EventType::SaleEnded,
    ];

    /// The name in subscriptions, in the body's `type` and in the delivery log.
    pub fn name(self) -> &'static str {
        match self {
            EventType::OrderPlaced => "order.placed",
            EventType::OrderCancelled => "order.cancelled",
            EventType::OrderRefunded => "order.refunded",
            EventType::SaleStarted => "sale.started",
            EventType::SaleSoldOut => "sale.sold_out",
            EventType::SaleEnded => "sale.ended",
        }
    }

    /// The type named `name`, if there is one.
    pub fn parse(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The webhook type of a domain event; `None` for events merchants do not hear of.
    pub fn of(event: &DomainEvent) -> Option<EventType> {
        match event {
            DomainEvent::OrderPlaced(_) => Some(EventType::OrderPlaced),
            DomainEvent::OrderCancelled(_) => Some(EventType::OrderCancelled),
            DomainEvent::OrderRefunded(_) => Some(EventType::OrderRefunded),
            DomainEvent::SaleStarted(_) => Some(EventType::SaleStarted),
            DomainEvent::SaleSoldOut(_) => Some(EventType::SaleSoldOut),
            DomainEvent::SaleEnded(_) => Some(EventType::SaleEnded),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_parses_back_from_its_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.name()), Some(t));
        }
        assert_eq!(EventType::parse("order.shipped"), None);
    }
}
