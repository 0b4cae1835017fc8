//! txgate: a gateway for bank socket messages.
//!
//! Callers (core banking, supply-chain finance, the intermediate business
//! platform, internet channels) send length-prefixed GBK messages; txgate
//! decodes the header and body by transaction code, checks the calling
//! channel, and relays the message over pooled connections to the backend.
//!
//! The path of one message: `server` (accept) → `conn` (framed reads, in
//! flight limit) → `frame` → `header` → `gateway` (route, channel, body) →
//! `pool` (backend connections) → back through `conn`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod bench;
pub mod body;
pub mod breaker;
pub mod config;
pub mod conn;
pub mod dedup;
pub mod error;
pub mod fixture;
pub mod frame;
pub mod gateway;
pub mod gbk;
pub mod header;
pub mod journal;
pub mod mask;
pub mod metrics;
pub mod observe;
pub mod pool;
pub mod reload;
pub mod replay;
pub mod report;
pub mod schema;
pub mod server;
pub mod sim;
pub mod snapshot;
pub mod tools;
