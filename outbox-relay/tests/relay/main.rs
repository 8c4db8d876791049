//! Integration tests of event delivery: the relay (Postgres → Redis Streams) and the
//! workers, running in this process against the real Postgres and Redis of the local
//! stack (`scripts/stack up`), each test with its own database and Redis prefix
//! (`test_support`). The crash tests that SIGKILL the `flashsale` binary live with that
//! binary, in `api/tests/api/events.rs`.

mod delivery;
