//! Access codes (API.md v1.1, "the line"): the merchant uploads single- or multi-use
//! codes, optionally "priority"; a `codes` sale lets only their holders join, and a
//! priority code moves its holder ahead of the public pre-queue at the draw.
//!
//! Codes are stored as `HMAC-SHA256(key, code)` (hex), the key derived from the app's
//! HMAC secret: a leaked table gives neither the codes nor, unlike a plain SHA-256 of
//! short merchant codes, a way to recover them offline without the secret.
//!
//! Using a code is one conditional `update … where used < uses` in the transaction
//! that records the use with the shopper (`access_code_uses`): two shoppers racing for
//! the last use cannot both win, and a shopper whose join then failed (Redis down, a
//! full line) retries without taking a second use — the recorded use is theirs, which
//! makes the join idempotent. A code check is one index probe: it costs an anonymous
//! client O(log n), and it runs after the proof of work (the handler's order).
//!
//! On a `public` sale a code is optional: a priority code is used (and moves its holder
//! ahead), any other known code is accepted and not used, an unknown one is refused,
//! and a join without a code reads nothing here (a retry that wants its priority
//! back sends its code again, and passes on the use it recorded). A used-up priority
//! code is `409 access_code_used_up` there too: the shopper may join without it.
//!
//! After the draw a priority code gives no jump over shoppers already waiting: a
//! holder who joins after the start queues in arrival order (positions are handed
//! out in order and the serving position only grows; a second, priority lane that
//! the controller serves first would be the way to give them one).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::PgPool;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{Error, Result};
use reservations::ids::{SaleId, ShopperId};
use reservations::sales::Access;

/// Most codes one upload may carry (more is `422`): one statement, bounded work.
pub const MAX_CODES_PER_UPLOAD: usize = 100_000;
/// Longest code, in characters.
pub const MAX_CODE_CHARS: usize = 128;
/// Most uses one code may have.
pub const MAX_USES: i64 = 1_000_000;

/// One code as the merchant uploads it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCode {
    /// The code itself (1–128 visible characters); stored hashed.
    pub code: String,
    /// How many joins it admits (1–1,000,000; default 1).
    #[serde(default = "one")]
    pub uses: i64,
    /// Whether its holders are drawn ahead of the public pre-queue.
    #[serde(default)]
    pub priority: bool,
}

fn one() -> i64 {
    1
}

/// A code as the merchant's listing shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CodeView {
    /// The code's last 4 characters.
    pub code_hint: String,
    /// Joins it admits.
    pub uses: i64,
    /// Joins it admitted.
    pub used: i64,
    /// Drawn ahead of the public pre-queue.
    pub priority: bool,
    /// The listing's keyset (not shown).
    #[serde(skip)]
    pub id: Uuid,
}

/// What an upload did.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Uploaded {
    /// Codes stored.
    pub created: i64,
    /// Codes already stored for the sale (or repeated in the upload), left as they were.
    pub duplicates: i64,
}

/// Why an upload was refused: which line or entry, and why (`422 invalid_field`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{field}: {message}")]
pub struct UploadError {
    /// `codes[3].uses`, `line 7`, …
    pub field: String,
    /// What is wrong.
    pub message: String,
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> UploadError {
    UploadError {
        field: field.into(),
        message: message.into(),
    }
}

/// Checks the codes of an upload (`name(i)` names entry `i` in the error).
pub fn check_codes(codes: &[NewCode], name: impl Fn(usize) -> String) -> Result<(), UploadError> {
    if codes.is_empty() || codes.len() > MAX_CODES_PER_UPLOAD {
        return Err(bad(
            "codes",
            format!("1–{MAX_CODES_PER_UPLOAD} codes per upload"),
        ));
    }
    for (i, c) in codes.iter().enumerate() {
        let len = c.code.chars().count();
        if len == 0 || len > MAX_CODE_CHARS || c.code.chars().any(|ch| ch.is_control()) {
            return Err(bad(
                name(i),
                format!("code: 1–{MAX_CODE_CHARS} characters, no control characters"),
            ));
        }
        if !(1..=MAX_USES).contains(&c.uses) {
            return Err(bad(name(i), format!("uses: 1–{MAX_USES}")));
        }
    }
    Ok(())
}

/// Parses a `text/csv` upload: a `code,uses,priority` header, then one code a line
/// (`uses` empty: 1; `priority`: true/false/1/0/yes/no, empty: false). Fields may be
/// quoted as RFC 4180 says. Written here rather than with a CSV crate: three fields,
/// and a bad line must be named by its number, which a hand parser gives for free.
pub fn parse_csv(body: &str) -> Result<Vec<NewCode>, UploadError> {
    let mut lines = body
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let header = lines.next().map(|(_, l)| split_csv(l));
    let expected: Vec<String> = ["code", "uses", "priority"].map(String::from).into();
    match header {
        Some(Some(h)) if h.iter().map(|f| f.trim().to_lowercase()).eq(expected) => {}
        _ => return Err(bad("line 1", "the header must be code,uses,priority")),
    }
    let mut codes = Vec::new();
    for (i, line) in lines {
        let field = format!("line {}", i + 1);
        if codes.len() == MAX_CODES_PER_UPLOAD {
            return Err(bad(
                "codes",
                format!("1–{MAX_CODES_PER_UPLOAD} codes per upload"),
            ));
        }
        let Some(fields) = split_csv(line) else {
            return Err(bad(field, "unbalanced quotes"));
        };
        let [code, uses, priority] = <[String; 3]>::try_from(fields)
            .map_err(|_| bad(field.clone(), "three fields: code,uses,priority"))?;
        let uses = match uses.trim() {
            "" => 1,
            n => n
                .parse()
                .map_err(|_| bad(field.clone(), "uses: a whole number"))?,
        };
        let priority = match priority.trim().to_lowercase().as_str() {
            "" | "false" | "0" | "no" => false,
            "true" | "1" | "yes" => true,
            _ => return Err(bad(field, "priority: true or false")),
        };
        codes.push(NewCode {
            code,
            uses,
            priority,
        });
    }
    Ok(codes)
}

/// The fields of one CSV line; `None` when a quote is not closed.
fn split_csv(line: &str) -> Option<Vec<String>> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        let field = fields.last_mut().expect("one field at least");
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => fields.push(String::new()),
            (c, _) => field.push(c),
        }
    }
    (!quoted).then_some(fields)
}

/// How a join stands with the sale's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// Joins as the public.
    Public,
    /// Joins ahead of the public (a priority code was used).
    Priority,
}

/// The access codes of every sale (`access_codes`, `access_code_uses`).
#[derive(Clone)]
pub struct AccessCodes {
    db: PgPool,
    key: Vec<u8>,
}

impl AccessCodes {
    /// Codes in `db`, hashed with `key` (derived from the app's HMAC secret).
    pub fn new(db: PgPool, key: Vec<u8>) -> Self {
        Self { db, key }
    }

    /// The stored form of `code`.
    fn hash(&self, code: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(code.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Stores `codes` (checked with [`check_codes`]) for `sale`; codes it has already
    /// are counted as duplicates and left as they are.
    pub async fn upload(&self, sale: SaleId, codes: &[NewCode]) -> Result<Uploaded> {
        let mut hashes = Vec::with_capacity(codes.len());
        let mut ids = Vec::with_capacity(codes.len());
        let mut hints = Vec::with_capacity(codes.len());
        let mut uses = Vec::with_capacity(codes.len());
        let mut priorities = Vec::with_capacity(codes.len());
        for c in codes {
            hashes.push(self.hash(&c.code));
            ids.push(Uuid::now_v7());
            let chars: Vec<char> = c.code.chars().collect();
            hints.push(
                chars[chars.len().saturating_sub(4)..]
                    .iter()
                    .collect::<String>(),
            );
            uses.push(c.uses as i32);
            priorities.push(c.priority);
        }
        // One statement: `on conflict do nothing` also skips a code repeated within
        // the upload, so `created` counts what is new.
        let created = sqlx::query(
            "insert into access_codes (sale_id, code_hash, id, code_hint, uses, priority) \
             select $1, * from unnest($2::text[], $3::uuid[], $4::text[], $5::int[], $6::bool[]) \
             on conflict (sale_id, code_hash) do nothing",
        )
        .bind(sale.0)
        .bind(&hashes)
        .bind(&ids)
        .bind(&hints)
        .bind(&uses)
        .bind(&priorities)
        .execute(&self.db)
        .await
        .map_err(anyhow::Error::from)?
        .rows_affected() as i64;
        Ok(Uploaded {
            created,
            duplicates: codes.len() as i64 - created,
        })
    }

    /// One page of the sale's codes in upload order, after `cursor` (the last id of the
    /// previous page): a keyset scan of `access_codes_listing`, never OFFSET.
    pub async fn list(
        &self,
        sale: SaleId,
        limit: i64,
        cursor: Option<Uuid>,
    ) -> Result<(Vec<CodeView>, Option<Uuid>)> {
        let rows: Vec<(Uuid, String, i32, i32, bool)> = sqlx::query_as(
            "select id, code_hint, uses, used, priority from access_codes \
             where sale_id = $1 and ($2::uuid is null or id > $2) order by id limit $3",
        )
        .bind(sale.0)
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(&self.db)
        .await
        .map_err(anyhow::Error::from)?;
        let more = rows.len() as i64 > limit;
        let items: Vec<CodeView> = rows
            .into_iter()
            .take(limit as usize)
            .map(|(id, code_hint, uses, used, priority)| CodeView {
                code_hint,
                uses: uses.into(),
                used: used.into(),
                priority,
                id,
            })
            .collect();
        let next = if more {
            items.last().map(|c| c.id)
        } else {
            None
        };
        Ok((items, next))
    }

    /// Lets `shopper` through the codes of a sale with `access`, using `code` where a
    /// use is due; a shopper who used a code for this sale before passes on that use.
    pub async fn pass(
        &self,
        sale: SaleId,
        access: Access,
        shopper: ShopperId,
        code: Option<&str>,
    ) -> Result<Pass> {
        // The common join (a public sale, no code) costs no query at all.
        if access == Access::Public && code.is_none() {
            return Ok(Pass::Public);
        }
        if let Some(priority) = self.recorded(sale, shopper).await? {
            return Ok(pass(priority));
        }
        let Some(code) = code else {
            return match access {
                Access::Codes => Err(Error::AccessCodeRequired),
                Access::Public => Ok(Pass::Public),
            };
        };
        let hash = self.hash(code);
        if access == Access::Public {
            let priority: Option<bool> = sqlx::query_scalar(
                "select priority from access_codes where sale_id = $1 and code_hash = $2",
            )
            .bind(sale.0)
            .bind(&hash)
            .fetch_optional(&self.db)
            .await
            .map_err(anyhow::Error::from)?;
            match priority {
                None => return Err(Error::AccessCodeInvalid),
                Some(false) => return Ok(Pass::Public),
                Some(true) => {}
            }
        }
        self.take(sale, shopper, &hash).await
    }

    /// The use this shopper recorded for the sale, if any (its priority).
    pub(crate) async fn recorded(&self, sale: SaleId, shopper: ShopperId) -> Result<Option<bool>> {
        Ok(sqlx::query_scalar(
            "select priority from access_code_uses where sale_id = $1 and shopper_id = $2",
        )
        .bind(sale.0)
        .bind(shopper.0)
        .fetch_optional(&self.db)
        .await
        .map_err(anyhow::Error::from)?)
    }

    /// Takes one use of the code `hash` for `shopper`, recording it with them.
    async fn take(&self, sale: SaleId, shopper: ShopperId, hash: &str) -> Result<Pass> {
        let mut tx = self.db.begin().await.map_err(anyhow::Error::from)?;
        let priority: Option<bool> = sqlx::query_scalar(
            "update access_codes set used = used + 1 \
             where sale_id = $1 and code_hash = $2 and used < uses returning priority",
        )
        .bind(sale.0)
        .bind(hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(anyhow::Error::from)?;
        let Some(priority) = priority else {
            drop(tx);
            let known: bool = sqlx::query_scalar(
                "select exists (select 1 from access_codes where sale_id = $1 and code_hash = $2)",
            )
            .bind(sale.0)
            .bind(hash)
            .fetch_one(&self.db)
            .await
            .map_err(anyhow::Error::from)?;
            return Err(if known {
                Error::AccessCodeUsedUp
            } else {
                Error::AccessCodeInvalid
            });
        };
        let recorded = sqlx::query(
            "insert into access_code_uses (sale_id, shopper_id, code_hash, priority) \
             values ($1, $2, $3, $4) on conflict (sale_id, shopper_id) do nothing",
        )
        .bind(sale.0)
        .bind(shopper.0)
        .bind(hash)
        .bind(priority)
        .execute(&mut *tx)
        .await
        .map_err(anyhow::Error::from)?
        .rows_affected();
        if recorded == 0 {
            // The same shopper's other join recorded a use meanwhile: this one gives its
            // use back (rollback) and passes on that one.
            drop(tx);
            let priority = self.recorded(sale, shopper).await?.unwrap_or(false);
            return Ok(pass(priority));
        }
        tx.commit().await.map_err(anyhow::Error::from)?;
        Ok(pass(priority))
    }
}

fn pass(priority: bool) -> Pass {
    if priority {
        Pass::Priority
    } else {
        Pass::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_upload_reads_quoted_fields_and_names_a_bad_line() {
        let codes =
            parse_csv("code,uses,priority\nABCD-1,1,false\n\"a,\"\"b\",5,true\nX,,\n").unwrap();
        assert_eq!(codes.len(), 3);
        assert_eq!(codes[1].code, "a,\"b");
        assert_eq!((codes[1].uses, codes[1].priority), (5, true));
        assert_eq!((codes[2].uses, codes[2].priority), (1, false));
        assert_eq!(
            parse_csv("code,uses,priority\nA,1,false\nB,x,false")
                .unwrap_err()
                .field,
            "line 3"
        );
        assert_eq!(parse_csv("code,priority\nA,1").unwrap_err().field, "line 1");
        assert_eq!(
            parse_csv("code,uses,priority\n\"A,1,false")
                .unwrap_err()
                .field,
            "line 2"
        );
    }

    #[test]
    fn an_upload_is_bounded_and_each_code_checked() {
        let code = |c: &str, uses| NewCode {
            code: c.into(),
            uses,
            priority: false,
        };
        let name = |i| format!("codes[{i}]");
        assert!(check_codes(&[code("A", 1)], name).is_ok());
        assert_eq!(check_codes(&[], name).unwrap_err().field, "codes");
        assert_eq!(
            check_codes(&[code("A", 1), code("", 1)], name)
                .unwrap_err()
                .field,
            "codes[1]"
        );
        assert_eq!(
            check_codes(&[code("A", 0)], name).unwrap_err().field,
            "codes[0]"
        );
        let many = vec![code("A", 1); MAX_CODES_PER_UPLOAD + 1];
        assert_eq!(check_codes(&many, name).unwrap_err().field, "codes");
    }
}
