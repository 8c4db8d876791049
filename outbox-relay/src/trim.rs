//! Keeping the order stream to what the consumers still need. Every consumer group
//! acknowledges what it applied; an entry every group has acknowledged is never read
//! again (a redelivery is a new entry, see [`crate::redelivery`]), so the relay trims
//! the stream to the oldest entry some group still owes. Without this the stream keeps
//! its `MAXLEN` cap's worth of history — about a million entries, half a gigabyte — in
//! Redis' memory for ever.

use redis::aio::ConnectionLike;
use redis::streams::{StreamInfoGroupsReply, StreamPendingReply};

use crate::consumer::ConsumerKind;
use crate::error::Result;

/// Trims `stream` to the oldest entry some consumer group has not acknowledged (or the
/// last one every group read, which stays as a floor); returns how many entries went.
/// Does nothing until every group exists: a group created later starts from the
/// beginning of the stream and must find every entry there.
pub async fn trim_acknowledged<C>(redis: &mut C, stream: &str) -> Result<u64>
where
    C: ConnectionLike + Send,
{
    let groups: StreamInfoGroupsReply = match redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(redis)
        .await
    {
        Ok(groups) => groups,
        // No stream yet: nothing to trim.
        Err(e) if e.kind() == redis::ErrorKind::ResponseError => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let ours = groups
        .groups
        .iter()
        .filter(|g| ConsumerKind::ALL.iter().any(|k| k.group() == g.name))
        .count();
    if ours < ConsumerKind::ALL.len() {
        return Ok(0);
    }
    let mut floor: Option<StreamId> = None;
    for group in &groups.groups {
        let owed = if group.pending > 0 {
            let pending: StreamPendingReply = redis::cmd("XPENDING")
                .arg(stream)
                .arg(&group.name)
                .query_async(redis)
                .await?;
            match pending {
                StreamPendingReply::Data(data) => data.start_id,
                StreamPendingReply::Empty => group.last_delivered_id.clone(),
            }
        } else {
            group.last_delivered_id.clone()
        };
        let Some(owed) = StreamId::parse(&owed) else {
            return Ok(0);
        };
        floor = Some(floor.map_or(owed, |f| f.min(owed)));
    }
    let Some(floor) = floor else { return Ok(0) };
    let trimmed: u64 = redis::cmd("XTRIM")
        .arg(stream)
        .arg("MINID")
        .arg(floor.to_string())
        .query_async(redis)
        .await?;
    if trimmed > 0 {
        metrics::counter!("flashsale_stream_trimmed_total").increment(trimmed);
    }
    Ok(trimmed)
}

/// A stream entry id `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct StreamId(u64, u64);

impl StreamId {
    fn parse(raw: &str) -> Option<StreamId> {
        let (ms, seq) = raw.split_once('-')?;
        Some(StreamId(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_order_by_time_then_sequence() {
        let a = StreamId::parse("1700000000000-5").unwrap();
        let b = StreamId::parse("1700000000000-12").unwrap();
        let c = StreamId::parse("1700000000001-0").unwrap();
        assert!(a < b && b < c, "12 sorts after 5 as a number, not as text");
        assert_eq!(b.to_string(), "1700000000000-12");
        assert_eq!(StreamId::parse("0-0"), Some(StreamId(0, 0)));
        assert_eq!(StreamId::parse("nope"), None);
    }
}
