//! Realtime: committed domain events pushed to connected dashboards.
//!
//! The `domain_events` table is the source of truth: every event has a
//! per-tenant sequence number given out in commit order. A node is only told
//! *that* a tenant has new events ([`fanout`]: Redis pub/sub, PostgreSQL
//! NOTIFY or the in-process bus); its [`hub`] then reads the rows after the
//! lowest position of that tenant's clients, once for all of them. So a
//! reconnecting client (`since`) and a live one take the same path, and a
//! lost notification costs latency (until the next one or the periodic
//! resync), never an event.

pub mod fanout;
pub mod hub;
