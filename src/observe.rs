//! What the message path tells the outside: one event per transaction.
//!
//! Metrics and the journal (交易流水) both hang off this trait, so the hot
//! path calls one thing and knows nothing of either. The event borrows from
//! the request: an observer that keeps anything copies what it keeps.

use crate::schema::Schema;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

/// One finished transaction, answered by a backend or by the gateway itself.
#[derive(Debug)]
pub struct TxnEvent<'a> {
    pub time: SystemTime,
    pub listener: &'a str,
    pub peer: SocketAddr,
    /// Header values, padding removed; empty when the header could not be read.
    pub channel: &'a [u8],
    pub code: &'a [u8],
    pub seq: &'a [u8],
    pub date: &'a [u8],
    pub dest: &'a [u8],
    /// The backend chosen, if routing got that far.
    pub backend: Option<&'a str>,
    pub latency: Duration,
    /// The RspCode the caller got (backend's or gateway's).
    pub rsp_code: &'a str,
    pub bytes_in: usize,
    pub bytes_out: usize,
    /// The gateway's own error text, for rejections.
    pub error: Option<&'a str>,
    /// The request as received, and its schema where routing found one:
    /// an observer that shows body fields masks them through `crate::mask`.
    pub request: &'a [u8],
    pub schema: Option<&'a Schema>,
}

/// Something that wants to know about transactions and connections.
pub trait Observer: Send + Sync + std::fmt::Debug {
    fn on_txn(&self, event: &TxnEvent<'_>);
    /// A caller connection opened (`true`) or closed (`false`).
    fn on_connection(&self, _opened: bool) {}
    /// A connection beyond the global limit was refused.
    fn on_refused(&self) {}
}
