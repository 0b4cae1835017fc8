//! The message path: one request in, exactly one answer out.
//!
//! Checks run in the order the core issue fixes: header, route (GW0101),
//! channel (GW0102), body. The request's bytes go to the backend as they
//! came unless a schema change is asked for (padding, transcoding), and
//! every failure becomes a rejection in the caller's own format.

use crate::body::{self, fixed, xml::XmlDoc};
use crate::config::BodyFormat;
use crate::dedup::{MemorySeqStore, SeqStore};
use crate::error::{GwError, RspCode};
use crate::header::{trim, HeaderSpec, Role};
use crate::observe::{Observer, TxnEvent};
use crate::snapshot::{Backend, Route, Snapshot};
use arc_swap::ArcSwap;
use bytes::Bytes;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Process-wide counters: atomics, so the hot path takes no lock.
#[derive(Debug, Default)]
pub struct GatewayStats {
    pub requests: AtomicU64,
    pub rejected: AtomicU64,
    pub heartbeats: AtomicU64,
    pub connections: AtomicU64,
    pub connections_refused: AtomicU64,
    /// Callers cut off because they did not read their answers in time.
    pub write_timeouts: AtomicU64,
    /// Callers cut off because a started frame did not complete (slowloris).
    pub read_timeouts: AtomicU64,
}

/// The running gateway: the current config snapshot, its counters, and
/// whoever observes transactions (metrics, journal).
#[derive(Debug)]
pub struct Gateway {
    snapshot: ArcSwap<Snapshot>,
    pub stats: GatewayStats,
    observers: Vec<Arc<dyn Observer>>,
    seq_store: Arc<dyn SeqStore>,
}

/// What the path learned about a request, for its transaction event.
#[derive(Default)]
struct Trace {
    route: Option<Arc<Route>>,
    backend: Option<Arc<Backend>>,
    /// Header values of an XML request (code, channel, seq, date, dest).
    xml_ident: Option<[Vec<u8>; 5]>,
}

/// Who sent a message: the listener it came in on and the peer address.
#[derive(Debug, Clone)]
pub struct Caller {
    pub listener: Arc<str>,
    pub body: BodyFormat,
    pub peer: SocketAddr,
}

/// The form a message is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Fixed,
    Xml,
}

impl Form {
    pub fn of(format: BodyFormat, msg: &[u8]) -> Form {
        match format {
            BodyFormat::Fixed => Form::Fixed,
            BodyFormat::Xml => Form::Xml,
            BodyFormat::Auto if body::xml::is_xml(msg) => Form::Xml,
            BodyFormat::Auto => Form::Fixed,
        }
    }
}

/// The request's identity, as read from its header in either form.
struct Ident<'a> {
    code: Cow<'a, [u8]>,
    channel: Cow<'a, [u8]>,
    dest: Cow<'a, [u8]>,
    seq: Cow<'a, [u8]>,
    date: Cow<'a, [u8]>,
}

impl Gateway {
    pub fn new(snapshot: Snapshot) -> Gateway {
        let seq_store = Arc::new(MemorySeqStore::new(
            std::time::Duration::from_millis(snapshot.settings.dedup_window_ms),
            snapshot.settings.dedup_capacity,
        ));
        Gateway {
            snapshot: ArcSwap::from_pointee(snapshot),
            stats: GatewayStats::default(),
            observers: Vec::new(),
            seq_store,
        }
    }

    /// Adds an observer of every transaction and connection.
    pub fn with_observer(mut self, o: Arc<dyn Observer>) -> Self {
        self.observers.push(o);
        self
    }

    /// Replaces the duplicate-SeqNo store (a shared one for several instances).
    pub fn with_seq_store(mut self, store: Arc<dyn SeqStore>) -> Self {
        self.seq_store = store;
        self
    }

    pub fn observers(&self) -> &[Arc<dyn Observer>] {
        &self.observers
    }

    /// The snapshot a new request starts with.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Swaps in a new snapshot; requests in flight keep the old one.
    pub fn install(&self, snapshot: Snapshot) {
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Answers one request. Never fails: a failure is a rejection message.
    pub async fn handle(&self, caller: &Caller, msg: Bytes) -> Bytes {
        let snap = self.snapshot();
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let form = Form::of(caller.body, &msg);
        let started = Instant::now();
        let span = tracing::debug_span!(
            "message",
            code = tracing::field::Empty,
            channel = tracing::field::Empty,
            seq = tracing::field::Empty,
            backend = tracing::field::Empty,
            rsp = tracing::field::Empty,
            latency_us = tracing::field::Empty,
        );
        let mut trace = Trace::default();
        let result = tracing::Instrument::instrument(
            async {
                match form {
                    Form::Fixed => {
                        self.handle_fixed(&snap, caller, &msg, &span, &mut trace)
                            .await
                    }
                    Form::Xml => {
                        self.handle_xml(&snap, caller, &msg, &span, &mut trace)
                            .await
                    }
                }
            },
            span.clone(),
        )
        .await;
        let latency = started.elapsed();
        span.record("latency_us", latency.as_micros() as u64);
        let (answer, err) = match result {
            Ok(answer) => {
                span.record("rsp", "relayed");
                (answer, None)
            }
            Err(err) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                span.record("rsp", err.code.as_str());
                let h = &snap.header;
                let seq = match form {
                    Form::Fixed => field_str(&msg, h, Role::Seq),
                    Form::Xml => String::new(),
                };
                tracing::info!(
                    parent: &span,
                    listener = %caller.listener,
                    peer = %caller.peer,
                    seq = %seq,
                    rsp = err.code.as_str(),
                    side = ?err.side(),
                    "rejected: {}",
                    err.rsp_msg()
                );
                (reject(h, form, &msg, &err), Some(err))
            }
        };
        if !self.observers.is_empty() {
            self.emit(
                &snap,
                caller,
                form,
                &msg,
                &answer,
                err.as_ref(),
                &trace,
                latency,
            );
        }
        answer
    }

    /// Tells the observers of an answer made outside `handle`: a bad frame,
    /// or a request cut off at the end of the shutdown grace.
    pub fn record_rejection(
        &self,
        caller: &Caller,
        form: Form,
        msg: &[u8],
        answer: &[u8],
        err: &GwError,
    ) {
        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
        if !self.observers.is_empty() {
            let snap = self.snapshot();
            self.emit(
                &snap,
                caller,
                form,
                msg,
                answer,
                Some(err),
                &Trace::default(),
                std::time::Duration::ZERO,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit<'e>(
        &self,
        snap: &Snapshot,
        caller: &Caller,
        form: Form,
        msg: &'e [u8],
        answer: &'e [u8],
        err: Option<&GwError>,
        trace: &Trace,
        latency: std::time::Duration,
    ) {
        let h = &snap.header;
        let slice = |m: &'e [u8], role: Role| -> &'e [u8] {
            m.get(h.range(role)).map(trim).unwrap_or_default()
        };
        let empty: [&[u8]; 5] = [&[]; 5];
        let ident: [&[u8]; 5] = match (&trace.xml_ident, form) {
            (Some(x), _) => [&x[0], &x[1], &x[2], &x[3], &x[4]],
            (None, Form::Fixed) => [
                slice(msg, Role::Code),
                slice(msg, Role::Channel),
                slice(msg, Role::Seq),
                slice(msg, Role::Date),
                slice(msg, Role::Dest),
            ],
            (None, Form::Xml) => empty,
        };
        let xml_rsp: String;
        let rsp_code: &str = match err {
            Some(e) => e.code.as_str(),
            None => match form {
                Form::Fixed => std::str::from_utf8(slice(answer, Role::RspCode)).unwrap_or(""),
                Form::Xml => {
                    xml_rsp = XmlDoc::parse(answer)
                        .ok()
                        .and_then(|d| {
                            h.field(Role::RspCode)
                                .and_then(|f| d.head(&f.tag).map(|v| v.trim().to_string()))
                        })
                        .unwrap_or_default();
                    &xml_rsp
                }
            },
        };
        let detail = err.map(|e| e.rsp_msg());
        let event = TxnEvent {
            time: std::time::SystemTime::now(),
            listener: &caller.listener,
            peer: caller.peer,
            code: ident[0],
            channel: ident[1],
            seq: ident[2],
            date: ident[3],
            dest: ident[4],
            backend: trace.backend.as_ref().map(|b| b.id()),
            latency,
            rsp_code,
            bytes_in: msg.len(),
            bytes_out: answer.len(),
            error: detail.as_deref(),
            request: msg,
            schema: trace.route.as_ref().map(|r| &*r.schema),
        };
        for o in &self.observers {
            o.on_txn(&event);
        }
    }

    /// On a route that is not idempotent, claims (channel, SeqNo, TranDate):
    /// a repeat inside the window is GW0103 and is never relayed.
    fn claim_seq(&self, route: &Route, ident: &Ident<'_>) -> Result<Option<Vec<u8>>, GwError> {
        if route.idempotent {
            return Ok(None);
        }
        let key = crate::dedup::key(&ident.channel, &ident.seq, &ident.date);
        if !self.seq_store.first_seen(&key) {
            return Err(GwError::new(
                RspCode::DuplicateSeq,
                format!(
                    "渠道 {} 流水号 {} 日期 {} 已受理，交易 {} 不重复发送",
                    show(&ident.channel),
                    show(&ident.seq),
                    show(&ident.date),
                    route.code
                ),
            ));
        }
        Ok(Some(key))
    }

    /// Relays, and gives the SeqNo back when the request certainly never
    /// reached the backend, so the caller may retry with the same SeqNo.
    async fn relay_claimed(
        &self,
        route: &Route,
        backend: &Backend,
        outgoing: &Bytes,
        claimed: Option<Vec<u8>>,
    ) -> Result<Bytes, GwError> {
        let r = relay(route, backend, outgoing).await;
        if let (Err(e), Some(key)) = (&r, claimed) {
            if e.never_sent() {
                self.seq_store.forget(&key);
            }
        }
        r
    }

    /// Relays, checks the answer against the request, and turns it back into
    /// the caller's form where the backend speaks the other one.
    #[allow(clippy::too_many_arguments)]
    async fn relay_answer(
        &self,
        h: &HeaderSpec,
        route: &Route,
        backend: &Backend,
        caller_form: Form,
        ident: &Ident<'_>,
        outgoing: &Bytes,
        claimed: Option<Vec<u8>>,
    ) -> Result<Bytes, GwError> {
        let backend_form = backend_form(backend);
        let answer = self
            .relay_claimed(route, backend, outgoing, claimed)
            .await?;
        let answer = check_answer(h, route, backend_form, ident, answer)?;
        let layout = &route.schema.response;
        Ok(match (backend_form, caller_form) {
            (Form::Xml, Form::Fixed) => {
                Bytes::from(body::xml_to_fixed(h, layout, &answer).map_err(answer_error)?)
            }
            (Form::Fixed, Form::Xml) => {
                Bytes::from(body::fixed_to_xml(h, layout, &answer).map_err(answer_error)?)
            }
            _ => answer,
        })
    }

    async fn handle_fixed(
        &self,
        snap: &Snapshot,
        caller: &Caller,
        msg: &Bytes,
        span: &tracing::Span,
        trace: &mut Trace,
    ) -> Result<Bytes, GwError> {
        let h = &snap.header;
        h.check(msg).map_err(|e| {
            let code = if e.is_charset() {
                RspCode::Charset
            } else {
                RspCode::Malformed
            };
            GwError::new(code, e.to_string())
        })?;
        let ident = Ident {
            code: Cow::Borrowed(trim(&msg[h.range(Role::Code)])),
            channel: Cow::Borrowed(trim(&msg[h.range(Role::Channel)])),
            dest: Cow::Borrowed(trim(&msg[h.range(Role::Dest)])),
            seq: Cow::Borrowed(trim(&msg[h.range(Role::Seq)])),
            date: Cow::Borrowed(trim(&msg[h.range(Role::Date)])),
        };
        let (route, backend) = admit(snap, caller, &ident, span)?;
        if !self.observers.is_empty() {
            trace.route = Some(route.clone());
            trace.backend = Some(backend.clone());
        }
        let schema = &route.schema;
        if route.validate {
            fixed::validate(&schema.request, msg, h.length()).map_err(body_error)?;
        }
        let dedup = self.claim_seq(route, &ident)?;
        let mut outgoing = msg.clone();
        if route.pad_trailing {
            if let Some(padded) = fixed::pad_trailing(&schema.request, msg, h.length()) {
                outgoing = Bytes::from(padded);
            }
        }
        let backend_form = backend_form(backend);
        if backend_form == Form::Xml {
            outgoing =
                Bytes::from(body::fixed_to_xml(h, &schema.request, &outgoing).map_err(body_error)?);
        }
        self.relay_answer(h, route, backend, Form::Fixed, &ident, &outgoing, dedup)
            .await
    }

    async fn handle_xml(
        &self,
        snap: &Snapshot,
        caller: &Caller,
        msg: &Bytes,
        span: &tracing::Span,
        trace: &mut Trace,
    ) -> Result<Bytes, GwError> {
        let h = &snap.header;
        let doc = XmlDoc::parse(msg).map_err(body_error)?;
        let head = |role: Role| -> Cow<'_, [u8]> {
            h.field(role)
                .and_then(|f| doc.head(&f.tag))
                .map(|v| Cow::Owned(v.trim_end().as_bytes().to_vec()))
                .unwrap_or(Cow::Borrowed(&[]))
        };
        let ident = Ident {
            code: head(Role::Code),
            channel: head(Role::Channel),
            dest: head(Role::Dest),
            seq: head(Role::Seq),
            date: head(Role::Date),
        };
        if !self.observers.is_empty() {
            trace.xml_ident = Some([
                ident.code.to_vec(),
                ident.channel.to_vec(),
                ident.seq.to_vec(),
                ident.date.to_vec(),
                ident.dest.to_vec(),
            ]);
        }
        let (route, backend) = admit(snap, caller, &ident, span)?;
        if !self.observers.is_empty() {
            trace.route = Some(route.clone());
            trace.backend = Some(backend.clone());
        }
        let schema = &route.schema;
        if route.validate {
            doc.body(&schema.request).map_err(body_error)?;
        }
        let backend_form = backend_form(backend);
        let dedup = self.claim_seq(route, &ident)?;
        let outgoing = if backend_form == Form::Fixed {
            let mut fixed_msg = body::xml_to_fixed(h, &schema.request, msg).map_err(body_error)?;
            if route.pad_trailing {
                if let Some(p) = fixed::pad_trailing(&schema.request, &fixed_msg, h.length()) {
                    fixed_msg = p;
                }
            }
            Bytes::from(fixed_msg)
        } else {
            msg.clone()
        };
        self.relay_answer(h, route, backend, Form::Xml, &ident, &outgoing, dedup)
            .await
    }
}

fn backend_form(backend: &Backend) -> Form {
    match backend.config.body {
        BodyFormat::Xml => Form::Xml,
        _ => Form::Fixed,
    }
}

/// Route (GW0101), then channel and source address (GW0102), then DestSys.
fn admit<'s>(
    snap: &'s Snapshot,
    caller: &Caller,
    ident: &Ident<'_>,
    span: &tracing::Span,
) -> Result<(&'s Arc<Route>, &'s Arc<Backend>), GwError> {
    let code = show(&ident.code);
    let channel = show(&ident.channel);
    if !span.is_disabled() {
        span.record("code", code.as_ref());
        span.record("channel", channel.as_ref());
        span.record("seq", show(&ident.seq).as_ref());
    }
    let route = snap
        .route(&ident.code)
        .ok_or_else(|| GwError::new(RspCode::UnknownCode, format!("交易码 {code} 未配置")))?;
    let denied = || {
        GwError::new(
            RspCode::ChannelDenied,
            format!("渠道 {channel} 不可调用交易 {code}"),
        )
    };
    let ch = snap.channel(&ident.channel).ok_or_else(denied)?;
    if !route.allows_channel(&ident.channel) {
        return Err(denied());
    }
    if !ch.allows_source(caller.peer.ip()) {
        return Err(GwError::new(
            RspCode::ChannelDenied,
            format!("渠道 {channel} 不允许从地址 {} 接入", caller.peer.ip()),
        ));
    }
    if let Some((limiter, rate)) = &ch.limiter {
        if limiter.check().is_err() {
            return Err(GwError::new(
                RspCode::Busy,
                format!("渠道 {channel} 超过限流 {rate} 笔/秒"),
            ));
        }
    }
    let backend = route.backend_for(&ident.dest).ok_or_else(|| {
        GwError::new(
            RspCode::ChannelDenied,
            format!("交易 {code} 不可发往目标系统 {}", show(&ident.dest)),
        )
    })?;
    if !span.is_disabled() {
        span.record("backend", backend.id());
    }
    Ok((route, backend))
}

/// Sends to the backend. Only an idempotent route is ever resent: after a
/// reused pooled connection failed before any answer, or a connect failure
/// (certainly not sent), up to the route's `retries`, within the backend's
/// retry budget. A non-idempotent request is sent at most once.
async fn relay(route: &Route, backend: &Backend, outgoing: &Bytes) -> Result<Bytes, GwError> {
    let mut resends = 0;
    loop {
        match backend.pool.call(outgoing, route.request_timeout).await {
            Ok(answer) => return Ok(answer),
            Err(e) => {
                let worth = e.stale_reuse || e.error.code == RspCode::BackendUnreachable;
                if route.idempotent
                    && worth
                    && resends < route.retries
                    && backend.pool.try_spend_retry()
                {
                    resends += 1;
                    continue;
                }
                return Err(e.error);
            }
        }
    }
}

/// The answer must be a whole message for the same code and SeqNo (GW0204).
fn check_answer(
    h: &HeaderSpec,
    route: &Route,
    form: Form,
    ident: &Ident<'_>,
    answer: Bytes,
) -> Result<Bytes, GwError> {
    let bad = |what: String| {
        let mut e = GwError::new(RspCode::BadAnswer, what);
        e.reached_backend = true;
        e
    };
    match form {
        Form::Fixed => {
            h.check(&answer).map_err(|e| bad(e.to_string()))?;
            let code = trim(&answer[h.range(Role::Code)]);
            let seq = trim(&answer[h.range(Role::Seq)]);
            if code != &ident.code[..] || seq != &ident.seq[..] {
                return Err(bad(format!(
                    "应答交易码/流水号 {}/{} 与请求 {}/{} 不符",
                    show(code),
                    show(seq),
                    show(&ident.code),
                    show(&ident.seq)
                )));
            }
            let ok = trim(&answer[h.range(Role::RspCode)]) == RspCode::Success.as_str().as_bytes();
            if route.validate && ok {
                fixed::validate(&route.schema.response, &answer, h.length())
                    .map_err(|e| bad(e.to_string()))?;
            }
        }
        Form::Xml => {
            let doc = XmlDoc::parse(&answer).map_err(|e| bad(e.to_string()))?;
            let get = |role: Role| {
                h.field(role)
                    .and_then(|f| doc.head(&f.tag))
                    .unwrap_or("")
                    .trim_end()
                    .to_string()
            };
            let (code, seq) = (get(Role::Code), get(Role::Seq));
            if code.as_bytes() != &ident.code[..] || seq.as_bytes() != &ident.seq[..] {
                return Err(bad(format!(
                    "应答交易码/流水号 {code}/{seq} 与请求 {}/{} 不符",
                    show(&ident.code),
                    show(&ident.seq)
                )));
            }
            if route.validate && get(Role::RspCode) == RspCode::Success.as_str() {
                doc.body(&route.schema.response)
                    .map_err(|e| bad(e.to_string()))?;
            }
        }
    }
    Ok(answer)
}

fn body_error(e: body::BodyError) -> GwError {
    let code = if e.is_charset() {
        RspCode::Charset
    } else {
        RspCode::Malformed
    };
    GwError::new(code, e.to_string())
}

fn answer_error(e: body::BodyError) -> GwError {
    let mut g = GwError::new(RspCode::BadAnswer, e.to_string());
    g.reached_backend = true;
    g
}

fn show(bytes: &[u8]) -> Cow<'_, str> {
    crate::gbk::decode(bytes).unwrap_or_else(|_| String::from_utf8_lossy(bytes))
}

fn field_str(msg: &[u8], h: &HeaderSpec, role: Role) -> String {
    msg.get(h.range(role))
        .map(|b| show(trim(b)).into_owned())
        .unwrap_or_default()
}

/// Builds the gateway's own answer in the caller's form: the request header
/// echoed, RspCode and RspMsg filled, an empty body (protocol.md §5).
pub fn reject(h: &HeaderSpec, form: Form, request: &[u8], err: &GwError) -> Bytes {
    header_answer(h, form, request, err.code.as_str(), &err.rsp_msg())
}

/// The request header echoed with `rsp_code` and `rsp_msg`, and no body.
/// Also what a simulated backend answers when it has no fixture.
pub fn header_answer(
    h: &HeaderSpec,
    form: Form,
    request: &[u8],
    rsp_code: &str,
    rsp_msg: &str,
) -> Bytes {
    match form {
        Form::Fixed => Bytes::from(answer_fixed(h, request, rsp_code, rsp_msg)),
        Form::Xml => Bytes::from(answer_xml(h, request, rsp_code, rsp_msg)),
    }
}

fn answer_fixed(h: &HeaderSpec, request: &[u8], rsp_code: &str, rsp_msg: &str) -> Vec<u8> {
    let mut out = vec![b' '; h.length()];
    let n = request.len().min(h.length());
    out[..n].copy_from_slice(&request[..n]);
    // Never echo a field the caller could not parse back: the answer's own
    // header must pass the same checks (clean GBK, digits in N fields).
    for f in h.fields() {
        let slot = &out[f.range()];
        let bad = match f.kind {
            crate::header::HeaderType::N => !trim(slot).iter().all(u8::is_ascii_digit),
            crate::header::HeaderType::C => !crate::gbk::is_valid(slot),
        };
        if bad {
            out[f.range()].fill(b' ');
        }
    }
    h.put_truncated(&mut out, Role::RspCode, rsp_code);
    h.put_truncated(&mut out, Role::RspMsg, rsp_msg);
    out
}

fn answer_xml(h: &HeaderSpec, request: &[u8], rsp_code: &str, rsp_msg: &str) -> Vec<u8> {
    let doc = XmlDoc::parse(request).ok();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"GBK\"?><ROOT><HEAD>");
    for f in h.fields() {
        let value: Cow<'_, str> = match f.role {
            Some(Role::RspCode) => rsp_code.into(),
            Some(Role::RspMsg) => rsp_msg.into(),
            _ => doc
                .as_ref()
                .and_then(|d| d.head(&f.tag))
                .unwrap_or("")
                .into(),
        };
        xml.push('<');
        xml.push_str(&f.tag);
        xml.push('>');
        escape_into(&value, &mut xml);
        xml.push_str("</");
        xml.push_str(&f.tag);
        xml.push('>');
    }
    xml.push_str("</HEAD><BODY></BODY></ROOT>");
    let mut out = Vec::with_capacity(xml.len());
    for ch in xml.chars() {
        let mut buf = [0u8; 4];
        match crate::gbk::encode(ch.encode_utf8(&mut buf)) {
            Ok(b) => out.extend_from_slice(&b),
            Err(_) => out.push(b'?'),
        }
    }
    out
}

fn escape_into(s: &str, out: &mut String) {
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}
