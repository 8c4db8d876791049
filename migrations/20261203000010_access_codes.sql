-- Access codes and the message to the line (issue #16, point 3; API.md v1.1 "the line").
--
-- Decisions:
-- * `sales.access` is 'public' (anyone joins) or 'codes' (a join needs a code); a
--   check constraint rather than an enum type, so adding a mode is one migration.
-- * `sales.message` is the merchant's note to the line (<= 280 characters, checked by
--   the service; the constraint is the backstop). It lives on the sale so the line
--   reads it with the sale terms it already caches, not with a query per poll.
alter table sales
    add column access text not null default 'public' check (access in ('public', 'codes')),
    add column message text check (char_length(message) <= 280);

-- * Codes are stored as an HMAC-SHA256 of the code keyed with the app's HMAC secret
--   (hex), never in clear: a leaked table does not give the codes back, and unlike a
--   plain SHA-256 a leak cannot be brute-forced offline without the secret either
--   (merchants' codes are often short). `code_hint` (the last 4 characters) lets the
--   merchant recognise a code in the listing.
-- * The primary key (sale_id, code_hash) makes the upload's duplicates detectable with
--   `on conflict do nothing` and a join's lookup one index probe: the code check costs
--   an anonymous client O(log n), never a scan.
-- * `used < uses` is the only rule of a use: one conditional `update ... where used <
--   uses` takes it, so two shoppers racing for the last use cannot both win.
-- * `id` (a UUIDv7) orders the listing for keyset pagination (never OFFSET).
create table access_codes (
    sale_id uuid not null references sales (id) on delete cascade,
    code_hash text not null,
    id uuid not null,
    code_hint text not null,
    uses integer not null check (uses between 1 and 1000000),
    used integer not null default 0 check (used >= 0 and used <= uses),
    priority boolean not null default false,
    created_at timestamptz not null default now(),
    primary key (sale_id, code_hash)
);
create unique index access_codes_listing on access_codes (sale_id, id);

-- * One row per shopper who joined a sale with a code: the use is recorded with the
--   shopper in the same transaction that takes it, so a join that then fails (Redis
--   down, a full line) and is retried by the same shopper does not take a second use,
--   and a shopper who holds a ticket is never charged again. The primary key makes
--   two concurrent first joins of one shopper take one use between them.
create table access_code_uses (
    sale_id uuid not null references sales (id) on delete cascade,
    shopper_id uuid not null,
    code_hash text not null,
    priority boolean not null,
    used_at timestamptz not null default now(),
    primary key (sale_id, shopper_id)
);
