//! Operations: hot reload, the admin port (/metrics, /readyz, /routes,
//! /pools, POST /reload), the transaction journal, JSON logs, and the
//! files in deploy/. Every gateway here is started from a config FILE (so
//! a reload can re-read it), with its admin port on port 0.

use crate::support::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use txgate::admin::{AdminResponse, AdminState};
use txgate::app::{Running, StartOptions};
use txgate::gateway::Gateway;
use txgate::journal::{Journal, JournalRecord, Query};

// ---------------------------------------------------------------- helpers

/// A fresh folder for one test's config and journal.
fn test_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("txgate-ops-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The shipped gateway.toml as a TOML table, made to run here: absolute
/// schema paths, every listener, backend and the admin port on port 0, the
/// journal inside `dir`.
fn base_config(dir: &Path) -> toml::Table {
    let text = std::fs::read_to_string(root().join("gateway.toml")).expect("gateway.toml");
    let mut t: toml::Table = text.parse().expect("gateway.toml parses");
    let r = root();
    let gw = section(&mut t, "gateway");
    for (key, rel) in [
        ("header", "schemas/header.toml"),
        ("schemas", "schemas"),
        ("fixtures", "fixtures"),
    ] {
        gw.insert(key.into(), path_str(&r.join(rel)).into());
    }
    for l in tables(&mut t, "listener") {
        l.insert("address".into(), "127.0.0.1:0".into());
    }
    for b in tables(&mut t, "backend") {
        b.insert("address".into(), "127.0.0.1:0".into());
    }
    let admin = section(&mut t, "admin");
    admin.insert("enabled".into(), true.into());
    admin.insert("address".into(), "127.0.0.1:0".into());
    admin.insert("required".into(), true.into());
    let journal = section(&mut t, "journal");
    journal.insert("enabled".into(), true.into());
    journal.insert(
        "path".into(),
        path_str(&dir.join("journal").join("txgate.jsonl")).into(),
    );
    t
}

fn section<'a>(t: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    t.entry(key)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .expect("a table")
}

fn tables<'a>(t: &'a mut toml::Table, key: &str) -> impl Iterator<Item = &'a mut toml::Table> {
    t.get_mut(key)
        .and_then(|v| v.as_array_mut())
        .expect("an array of tables")
        .iter_mut()
        .filter_map(|v| v.as_table_mut())
}

fn find_table<'a>(
    t: &'a mut toml::Table,
    key: &str,
    field: &str,
    value: &str,
) -> &'a mut toml::Table {
    tables(t, key)
        .find(|r| r.get(field).and_then(|v| v.as_str()) == Some(value))
        .unwrap_or_else(|| panic!("[[{key}]] {field} = {value}"))
}

fn route<'a>(t: &'a mut toml::Table, code: &str) -> &'a mut toml::Table {
    find_table(t, "route", "code", code)
}

fn backend<'a>(t: &'a mut toml::Table, id: &str) -> &'a mut toml::Table {
    find_table(t, "backend", "id", id)
}

fn strings(v: &[&str]) -> toml::Value {
    toml::Value::Array(v.iter().map(|s| toml::Value::from(*s)).collect())
}

fn write_config(path: &Path, t: &toml::Table) {
    std::fs::write(path, toml::to_string(t).expect("config serialises")).expect("write config");
}

/// An address nothing listens on: connects to it are refused at once.
fn dead_address() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// A gateway started in-process from a config file, admin port included.
struct Ops {
    config: PathBuf,
    table: toml::Table,
    addr: SocketAddr,
    admin: SocketAddr,
    gateway: Arc<Gateway>,
    journal: Option<Arc<Journal>>,
    state: Arc<AdminState>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Ops {
    async fn start(name: &str, simulate: bool, edit: impl FnOnce(&mut toml::Table)) -> Ops {
        let dir = test_dir(name);
        let mut table = base_config(&dir);
        edit(&mut table);
        let config = dir.join("gateway.toml");
        write_config(&config, &table);
        let opts = StartOptions {
            simulate,
            ..StartOptions::default()
        };
        let running = Running::start_with(&config, &opts)
            .await
            .expect("gateway starts from its file");
        let addr = running.server.addresses()[0].1;
        let admin = running.admin_address().expect("admin port bound");
        let gateway = running.server.gateway().clone();
        let journal = running.journal().cloned();
        let state = running.admin_state().clone();
        let stop = CancellationToken::new();
        let task = tokio::spawn(running.run(stop.clone()));
        Ops {
            config,
            table,
            addr,
            admin,
            gateway,
            journal,
            state,
            stop,
            task,
        }
    }

    /// Edits the config file (not the running gateway: that takes a reload).
    fn rewrite(&mut self, edit: impl FnOnce(&mut toml::Table)) {
        edit(&mut self.table);
        write_config(&self.config, &self.table);
    }

    async fn client(&self) -> Client {
        Client::connect(self.addr).await
    }

    async fn get(&self, path: &str) -> AdminResponse {
        admin_call(self.admin, hyper::Method::GET, path).await
    }

    async fn post(&self, path: &str) -> AdminResponse {
        admin_call(self.admin, hyper::Method::POST, path).await
    }

    async fn metrics(&self) -> String {
        let r = self.get("/metrics").await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    fn journal_path(&self) -> PathBuf {
        self.journal
            .as_ref()
            .expect("journal enabled")
            .path()
            .to_path_buf()
    }

    /// Stops the gateway; the journal is flushed and closed when this returns.
    async fn stop(self) -> (Option<Arc<Journal>>, Arc<AdminState>) {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("gateway stops in time")
            .expect("gateway task");
        (self.journal, self.state)
    }
}

async fn admin_call(addr: SocketAddr, method: hyper::Method, path: &str) -> AdminResponse {
    txgate::admin::request(addr, method, path, WAIT)
        .await
        .unwrap_or_else(|e| panic!("admin {path}: {e}"))
}

fn json(r: &AdminResponse) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("JSON from admin: {e}: {}", r.body))
}

/// The value of one exposition line, `series` being `name{labels}` exactly.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|v| v.parse().expect("a number"))
    })
}

fn assert_metric(text: &str, series: &str, want: f64) {
    assert_eq!(
        metric(text, series),
        Some(want),
        "{series} in /metrics:\n{text}"
    );
}

fn records(path: &Path) -> Vec<JournalRecord> {
    std::fs::read_to_string(path)
        .expect("journal file")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("journal line {l}: {e}")))
        .collect()
}

/// CustName of the fixed and the XML 2969 fixtures: sensitive, never in clear.
const CUST_NAME: &str = "中石油昆仑燃气（青岛）有限公司";
const XML_CUST_NAME: &str = "青岛黄岛区金沙滩加油站有限公司";

fn txgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_txgate"))
}

// ---------------------------------------------------------------- reload

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_a_channel_and_the_same_open_connection_then_gets_through() {
    let mut g = Ops::start("reload-ok", true, |_| {}).await;
    let mut c = g.client().await;
    let net_2979 = || request("2979", &[("ChnlNo", "NET")]);
    let before = c.call(net_2979()).await;
    assert_eq!(rsp_code(&before), "GW0102", "{}", rsp_msg(&before));
    let scf_before = g.gateway.snapshot().backends["SCF"].clone();

    g.rewrite(|t| {
        route(t, "2979").insert("channels".into(), strings(&["CUS", "NET"]));
    });
    let r = g.post("/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = json(&r);
    assert_eq!(v["ok"], true);
    assert_eq!(v["outcome"]["generation"], 2);
    let kept: Vec<&str> = v["outcome"]["kept"]
        .as_array()
        .expect("kept")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(kept, ["CLS", "IBP", "NET", "SCF"], "{}", r.body);

    // The same connection, opened before the reload.
    let after = c.call(net_2979()).await;
    assert_eq!(rsp_code(&after), "000000", "{}", rsp_msg(&after));
    assert!(
        Arc::ptr_eq(&scf_before, &g.gateway.snapshot().backends["SCF"]),
        "the pool of an unchanged backend is kept"
    );
    let m = g.metrics().await;
    assert_metric(&m, "txgate_reloads_total{result=\"ok\"}", 1.0);
    assert_metric(&m, "txgate_reloads_total{result=\"failed\"}", 0.0);
    assert_metric(&m, "txgate_config_generation", 2.0);
    let routes = json(&g.get("/routes").await);
    let r2979 = routes["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["code"] == "2979")
        .expect("2979 listed");
    assert_eq!(r2979["channels"], serde_json::json!(["CUS", "NET"]));
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_is_refused_and_the_old_one_keeps_serving() {
    let mut g = Ops::start("reload-bad", true, |_| {}).await;
    let mut c = g.client().await;
    let cus_2969 = || request("2969", &[("ChnlNo", "CUS")]);
    assert_eq!(rsp_code(&c.call(cus_2969()).await), "000000");
    let scf_before = g.gateway.snapshot().backends["SCF"].clone();

    // A config that parses but does not check.
    g.rewrite(|t| {
        route(t, "2969").insert("backend".into(), "NOPE".into());
        route(t, "2979").insert("channels".into(), strings(&["CUS", "NET"]));
    });
    let r = g.post("/reload").await;
    assert_eq!(r.status, 422, "{}", r.body);
    let v = json(&r);
    assert_eq!(v["ok"], false);
    let err = v["error"].as_str().expect("error text");
    assert!(err.contains("NOPE") && err.contains("2969"), "{err}");
    assert_eq!(v["generation"], 1);

    // A file that is not TOML at all.
    std::fs::write(&g.config, "[gateway\nthis is not toml").expect("write");
    let r = g.post("/reload").await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(json(&r)["error"]
        .as_str()
        .is_some_and(|e| e.contains("gateway.toml")));

    // Still the old config, on the same connection: 2969 relayed, and the
    // half-applied change (NET on 2979) not there.
    let answer = c.call(cus_2969()).await;
    assert_eq!(rsp_code(&answer), "000000", "{}", rsp_msg(&answer));
    let net_2979 = c.call(request("2979", &[("ChnlNo", "NET")])).await;
    assert_eq!(rsp_code(&net_2979), "GW0102");
    assert!(Arc::ptr_eq(
        &scf_before,
        &g.gateway.snapshot().backends["SCF"]
    ));
    let m = g.metrics().await;
    assert_metric(&m, "txgate_reloads_total{result=\"failed\"}", 2.0);
    assert_metric(&m, "txgate_reloads_total{result=\"ok\"}", 0.0);
    assert_metric(&m, "txgate_config_generation", 1.0);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_backend_gets_a_new_pool_and_the_old_one_is_drained() {
    let mut g = Ops::start("reload-pool", true, |_| {}).await;
    let mut c = g.client().await;
    assert_eq!(
        rsp_code(&c.call(request("2969", &[("ChnlNo", "CUS")])).await),
        "000000"
    );
    let old = g.gateway.snapshot().backends["SCF"].clone();
    assert_eq!(
        old.pool.idle_count(),
        1,
        "one pooled connection after a request"
    );
    let sim_addr = old.address.to_string();
    g.rewrite(|t| {
        // The simulator stays where it is; only a pool setting changes.
        let b = backend(t, "SCF");
        b.insert("address".into(), sim_addr.into());
        let pool = b
            .get_mut("pool")
            .and_then(|p| p.as_table_mut())
            .expect("pool table");
        pool.insert("max".into(), 8.into());
    });
    let r = g.post("/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json(&r)["outcome"]["replaced"], serde_json::json!(["SCF"]));
    let new = g.gateway.snapshot().backends["SCF"].clone();
    assert!(!Arc::ptr_eq(&old, &new));
    assert_eq!(old.pool.idle_count(), 0, "the retired pool was drained");
    assert_eq!(new.pool.max(), 8);
    assert_eq!(
        rsp_code(&c.call(request("2969", &[("ChnlNo", "CUS")])).await),
        "000000"
    );
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_during_a_reload_finishes_and_its_retired_pool_is_drained() {
    let slow = ScriptedBackend::start(Script::Slow(Duration::from_millis(300))).await;
    let addr = slow.addr.to_string();
    let dead = dead_address().to_string();
    let mut g = Ops::start("reload-inflight", false, |t| {
        for b in tables(t, "backend") {
            b.insert("address".into(), dead.clone().into());
        }
        backend(t, "SCF").insert("address".into(), addr.clone().into());
        route(t, "2969").insert("validate".into(), false.into());
    })
    .await;
    let mut c = g.client().await;
    let seq = next_seq("F");
    c.send(request("2969", &[("ChnlNo", "CUS"), ("SeqNo", &seq)]))
        .await;
    eventually("the request reached the backend", || slow.count() == 1).await;
    let old = g.gateway.snapshot().backends["SCF"].clone();
    assert_eq!(old.pool.in_use(), 1);

    g.rewrite(|t| {
        let pool = backend(t, "SCF")
            .get_mut("pool")
            .and_then(|p| p.as_table_mut())
            .expect("pool table");
        pool.insert("max".into(), 8.into());
    });
    let r = g.post("/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json(&r)["outcome"]["replaced"], serde_json::json!(["SCF"]));

    // Answered on the snapshot (and pool) it started with.
    let a = c.recv().await;
    assert_eq!(rsp_code(&a), "000000", "{}", rsp_msg(&a));
    assert_eq!(field(&a, txgate::header::Role::Seq), seq);
    // Its connection went back to the retired pool, which lets it go.
    eventually("the retired pool is drained", || {
        old.pool.in_use() == 0 && old.pool.idle_count() == 0
    })
    .await;
    let a = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
    assert_eq!(rsp_code(&a), "000000");
    assert_eq!(g.gateway.snapshot().backends["SCF"].pool.max(), 8);
    g.stop().await;
}

// ---------------------------------------------------------------- admin port

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_code_channel_and_response_code() {
    let g = Ops::start("metrics", true, |_| {}).await;
    let mut c = g.client().await;
    for _ in 0..3 {
        let a = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
        assert_eq!(rsp_code(&a), "000000", "{}", rsp_msg(&a));
    }
    let a = c
        .call(request("2969", &[("ChnlNo", "CUS"), ("TranCode", "9999")]))
        .await;
    assert_eq!(rsp_code(&a), "GW0101");

    let r = g.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("text/plain") && t.contains("version=0.0.4")));
    let m = r.body;
    assert_metric(
        &m,
        "txgate_requests_total{code=\"2969\",channel=\"CUS\",rsp=\"000000\"}",
        3.0,
    );
    assert_metric(
        &m,
        "txgate_requests_total{code=\"other\",channel=\"CUS\",rsp=\"GW0101\"}",
        1.0,
    );
    assert_eq!(
        m.lines()
            .filter(|l| l.starts_with("txgate_requests_total{"))
            .count(),
        2,
        "only the series that happened:\n{m}"
    );
    assert_metric(
        &m,
        "txgate_request_duration_seconds_count{code=\"2969\"}",
        3.0,
    );
    assert_metric(
        &m,
        "txgate_request_duration_seconds_bucket{code=\"2969\",le=\"+Inf\"}",
        3.0,
    );
    assert_metric(
        &m,
        "txgate_request_duration_seconds_count{code=\"other\"}",
        1.0,
    );
    assert_metric(&m, "txgate_requests_in_flight", 0.0);
    assert_metric(&m, "txgate_caller_connections_open", 1.0);
    assert_metric(&m, "txgate_caller_connections_total", 1.0);
    assert_metric(&m, "txgate_caller_connections_refused_total", 0.0);
    assert_metric(&m, "txgate_pool_max{backend=\"SCF\"}", 64.0);
    assert_metric(&m, "txgate_pool_in_use{backend=\"SCF\"}", 0.0);
    assert_metric(&m, "txgate_pool_idle{backend=\"SCF\"}", 1.0);
    assert_metric(&m, "txgate_pool_waiters{backend=\"SCF\"}", 0.0);
    assert_metric(&m, "txgate_backend_connects_total{backend=\"SCF\"}", 1.0);
    assert_metric(
        &m,
        "txgate_backend_connect_failures_total{backend=\"SCF\"}",
        0.0,
    );
    assert_metric(&m, "txgate_backend_timeouts_total{backend=\"SCF\"}", 0.0);
    assert_metric(&m, "txgate_late_answers_total{backend=\"SCF\"}", 0.0);
    assert_metric(&m, "txgate_reloads_total{result=\"ok\"}", 0.0);
    assert_metric(&m, "txgate_ready", 1.0);
    assert!(metric(&m, "txgate_journal_write_errors_total").is_some());

    // Bounded labels: every code and channel is from the config, or "other".
    let cfg = txgate::app::load_checked(&g.config, &Default::default()).expect("config");
    let text = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
    let codes: Vec<String> = cfg.routes.keys().map(|k| text(k)).collect();
    let channels: Vec<String> = cfg.channels.keys().map(|k| text(k)).collect();
    for line in m.lines().filter(|l| !l.starts_with('#')) {
        for (label, known) in [("code=\"", &codes), ("channel=\"", &channels)] {
            if let Some(rest) = line.split(label).nth(1) {
                let value = rest.split('"').next().unwrap_or("");
                assert!(
                    value == "other" || known.iter().any(|k| k == value),
                    "unbounded label value in {line}"
                );
            }
        }
    }

    // The shipped dashboard only charts metrics that exist.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana-txgate.json")).expect("dashboard"),
    )
    .expect("dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 10, "the dashboard has panels");
    for e in &exprs {
        for name in metric_names(e) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| m.contains(&format!("# TYPE {b} histogram")))
                .unwrap_or(&name);
            assert!(
                m.contains(&format!("# TYPE {base} ")),
                "dashboard uses {name}, which /metrics does not have ({e})"
            );
        }
    }
    g.stop().await;
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("txgate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_port_serves_health_routes_and_pools_and_refuses_the_rest() {
    let g = Ops::start("admin", true, |_| {}).await;
    let h = g.get("/healthz").await;
    assert_eq!((h.status, h.body.as_str()), (200, "ok\n"));
    let r = g.get("/readyz").await;
    assert_eq!(r.status, 200, "{}", r.body);

    let routes = json(&g.get("/routes").await);
    assert_eq!(routes["routes"].as_array().map(Vec::len), Some(34));
    let r2969 = routes["routes"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["code"] == "2969"))
        .expect("2969");
    assert_eq!(r2969["channels"], serde_json::json!(["NET", "IBP", "CUS"]));
    assert_eq!(r2969["backend"], "SCF");
    assert_eq!(r2969["kind"], "query");
    let r5222 = routes["routes"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["code"] == "5222"))
        .expect("5222");
    assert_eq!(
        r5222["dest"],
        serde_json::json!({"IBP": "IBP", "NET": "NET"})
    );
    assert_eq!(routes["channels"].as_array().map(Vec::len), Some(4));
    assert_eq!(routes["backends"].as_array().map(Vec::len), Some(4));
    assert_eq!(routes["listeners"][0]["address"], g.addr.to_string());

    let pools = json(&g.get("/pools").await);
    let pools = pools["pools"].as_array().expect("pools");
    assert_eq!(pools.len(), 4);
    for p in pools {
        assert_eq!(p["max"], 64);
        assert_eq!(p["in_use"], 0);
        assert_eq!(p["breaker"], "closed");
        assert_eq!(p["ready"], Value::Null);
    }

    assert_eq!(g.get("/reload").await.status, 405);
    assert_eq!(g.post("/metrics").await.status, 405);
    assert_eq!(g.get("/nope").await.status, 404);
    g.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_goes_not_ready_when_a_backend_connect_fails_and_back_after_a_fixing_reload() {
    let dead = dead_address().to_string();
    let mut g = Ops::start("readyz", false, |t| {
        for b in tables(t, "backend") {
            b.insert("address".into(), dead.clone().into());
        }
    })
    .await;
    let r = g.get("/readyz").await;
    assert_eq!(r.status, 200, "no connect tried yet: {}", r.body);

    let mut c = g.client().await;
    let a = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
    assert_eq!(rsp_code(&a), "GW0201", "{}", rsp_msg(&a));

    let r = g.get("/readyz").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("backend SCF") && r.body.contains("last connect"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("backend IBP"), "{}", r.body);
    let pools = json(&g.get("/pools").await);
    let scf = pools["pools"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["backend"] == "SCF"))
        .expect("SCF pool");
    assert_eq!(scf["last_connect_failed"], true);
    assert!(scf["connect_failures"].as_u64() >= Some(1));
    let m = g.metrics().await;
    assert_metric(&m, "txgate_ready", 0.0);
    assert_metric(
        &m,
        "txgate_backend_last_connect_failed{backend=\"SCF\"}",
        1.0,
    );
    assert_metric(
        &m,
        "txgate_requests_total{code=\"2969\",channel=\"CUS\",rsp=\"GW0201\"}",
        1.0,
    );

    // Point SCF at a live backend: a new pool, ready again, and it answers.
    let live = ScriptedBackend::start(Script::Echo).await;
    g.rewrite(|t| {
        backend(t, "SCF").insert("address".into(), live.addr.to_string().into());
        route(t, "2969").insert("validate".into(), false.into());
    });
    let r = g.post("/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(json(&r)["outcome"]["replaced"], serde_json::json!(["SCF"]));
    let r = g.get("/readyz").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let a = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
    assert_eq!(rsp_code(&a), "000000", "{}", rsp_msg(&a));
    assert_eq!(live.count(), 1);
    assert_eq!(g.get("/readyz").await.status, 200);
    g.stop().await;
}

// ---------------------------------------------------------------- journal

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_has_one_masked_record_per_request_and_find_by_seq_finds_it() {
    let g = Ops::start("journal", true, |t| {
        section(t, "journal").insert("body_fields".into(), strings(&["LoanAppNo", "CustName"]));
    })
    .await;
    let path = g.journal_path();
    let mut c = g.client().await;
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let seq = next_seq("J");
        let a = c
            .call(request("2969", &[("ChnlNo", "CUS"), ("SeqNo", &seq)]))
            .await;
        assert_eq!(rsp_code(&a), "000000", "{}", rsp_msg(&a));
        seqs.push(seq);
    }
    let xml_seq = next_seq("X");
    let xml = fixture("2969", |f| f.format == txgate::fixture::Format::Xml);
    let a = c
        .call(request_from(
            &xml,
            &[("ChnlNo", "CUS"), ("SeqNo", &xml_seq)],
            true,
        ))
        .await;
    assert_eq!(rsp_code(&a), "000000", "{}", rsp_msg(&a));
    let bad_seq = next_seq("B");
    let a = c
        .call(request(
            "2969",
            &[("ChnlNo", "CUS"), ("TranCode", "9999"), ("SeqNo", &bad_seq)],
        ))
        .await;
    assert_eq!(rsp_code(&a), "GW0101");
    drop(c);
    let (journal, _) = g.stop().await;
    let journal = journal.expect("journal");
    assert_eq!(
        journal
            .stats()
            .records
            .load(std::sync::atomic::Ordering::Relaxed),
        5
    );

    let bytes = std::fs::read(&path).expect("journal file");
    let text = String::from_utf8(bytes).expect("UTF-8 JSON lines");
    for clear in [CUST_NAME, XML_CUST_NAME] {
        assert!(
            !text.contains(clear),
            "a sensitive field reached the journal in clear:\n{text}"
        );
    }
    assert!(!text.contains("\"T0001\""), "TellerNo in clear:\n{text}");
    let all = records(&path);
    assert_eq!(all.len(), 5, "one record per request:\n{text}");
    for s in seqs.iter().chain([&xml_seq, &bad_seq]) {
        assert_eq!(all.iter().filter(|r| &r.seq == s).count(), 1, "{s}");
    }
    let masked = txgate::mask::mask(CUST_NAME);
    let xml_masked = txgate::mask::mask(XML_CUST_NAME);
    for r in all
        .iter()
        .filter(|r| r.rsp_code == "000000" && r.seq != xml_seq)
    {
        assert_eq!(r.code, "2969");
        assert_eq!(r.channel, "CUS");
        assert_eq!(r.listener, "main");
        assert_eq!(r.backend.as_deref(), Some("SCF"));
        assert_eq!(r.fields.get("CustName"), Some(&masked), "{r:?}");
        assert_eq!(
            r.fields.get("LoanAppNo").map(String::as_str),
            Some("LA2026120400001")
        );
        assert_eq!(r.header.get("TellerNo").map(String::as_str), Some("T***1"));
        assert_eq!(r.header.get("BrchNo").map(String::as_str), Some("0101"));
        assert!(r.bytes_in > 200 && r.bytes_out > 200, "{r:?}");
        assert!(r.error.is_none());
        assert!(r.body.is_none(), "no whole body unless body = \"masked\"");
        assert!(r.time.ends_with("+08:00"), "{}", r.time);
        assert!(r.peer.starts_with("127.0.0.1:"));
    }
    let rejected = all
        .iter()
        .find(|r| r.seq == bad_seq)
        .expect("GW0101 record");
    assert_eq!(rejected.rsp_code, "GW0101");
    assert_eq!(rejected.code, "9999");
    assert_eq!(rejected.backend, None);
    assert!(rejected
        .error
        .as_deref()
        .is_some_and(|e| e.contains("9999")));
    assert!(rejected.fields.is_empty());

    // What `txgate journal --seq` runs.
    let found = txgate::journal::find(
        &path,
        &Query {
            seq: seqs[1].clone(),
            code: Some("2969".into()),
            date: None,
        },
    )
    .expect("journal reads");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].seq, seqs[1]);
    assert_eq!(found[0].rsp_code, "000000");
    let wrong_code = txgate::journal::find(
        &path,
        &Query {
            seq: seqs[1].clone(),
            code: Some("2967".into()),
            date: None,
        },
    )
    .expect("journal reads");
    assert!(wrong_code.is_empty());
    let xml_found = txgate::journal::find(
        &path,
        &Query {
            seq: xml_seq.clone(),
            ..Query::default()
        },
    )
    .expect("journal reads");
    assert_eq!(xml_found.len(), 1);
    assert_eq!(xml_found[0].fields.get("CustName"), Some(&xml_masked));
    assert_eq!(
        xml_found[0].header.get("TellerNo").map(String::as_str),
        Some("T***1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_body_masked_shows_the_whole_body_with_sensitive_fields_masked() {
    let g = Ops::start("journal-body", true, |t| {
        section(t, "journal").insert("body".into(), "masked".into());
    })
    .await;
    let path = g.journal_path();
    let mut c = g.client().await;
    let seq = next_seq("M");
    let a = c
        .call(request("2969", &[("ChnlNo", "CUS"), ("SeqNo", &seq)]))
        .await;
    assert_eq!(rsp_code(&a), "000000");
    drop(c);
    g.stop().await;
    let text = std::fs::read_to_string(&path).expect("journal");
    assert!(!text.contains(CUST_NAME), "{text}");
    let all = records(&path);
    assert_eq!(all.len(), 1);
    let body = all[0].body.as_deref().expect("whole body");
    assert!(body.contains("LoanAppNo=LA2026120400001"), "{body}");
    assert!(
        body.contains(&format!("CustName={}", txgate::mask::mask(CUST_NAME))),
        "{body}"
    );
    assert!(body.contains("Amount=123456"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_failures_are_counted_and_exposed_never_silent() {
    // /dev/full opens, and every write to it fails (ENOSPC).
    let g = Ops::start("journal-full", true, |t| {
        section(t, "journal").insert("path".into(), "/dev/full".into());
    })
    .await;
    let mut c = g.client().await;
    for _ in 0..2 {
        let a = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
        assert_eq!(rsp_code(&a), "000000", "the journal never fails a request");
    }
    drop(c);
    let (journal, state) = g.stop().await;
    let journal = journal.expect("journal");
    let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(n(&journal.stats().write_errors), 2);
    assert_eq!(n(&journal.stats().records), 0);
    let m = state.metrics_text();
    assert_metric(&m, "txgate_journal_write_errors_total", 2.0);
    assert_metric(&m, "txgate_journal_records_total", 0.0);

    // After close a record cannot be queued: it is counted (and logged), not lost silently.
    use txgate::observe::Observer;
    let event = txgate::observe::TxnEvent {
        time: std::time::SystemTime::now(),
        listener: "main",
        peer: "127.0.0.1:1".parse().expect("addr"),
        channel: b"CUS",
        code: b"2969",
        seq: b"LATE",
        date: b"20261204",
        dest: b"",
        backend: Some("SCF"),
        latency: Duration::from_millis(1),
        rsp_code: "000000",
        bytes_in: 1,
        bytes_out: 1,
        error: None,
        request: b"",
        schema: None,
    };
    journal.on_txn(&event);
    assert_eq!(n(&journal.stats().overflow), 1);
    assert_metric(&state.metrics_text(), "txgate_journal_overflow_total", 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_rotates_by_size_and_find_scans_the_rotated_files() {
    let g = Ops::start("journal-rotate", true, |t| {
        let j = section(t, "journal");
        j.insert("rotate".into(), "size".into());
        j.insert("max_bytes".into(), 600.into());
    })
    .await;
    let path = g.journal_path();
    let mut c = g.client().await;
    let mut seqs = Vec::new();
    for _ in 0..4 {
        let seq = next_seq("R");
        let a = c
            .call(request("2969", &[("ChnlNo", "CUS"), ("SeqNo", &seq)]))
            .await;
        assert_eq!(rsp_code(&a), "000000");
        seqs.push(seq);
    }
    drop(c);
    let (journal, _) = g.stop().await;
    let files = txgate::journal::journal_files(&path).expect("files");
    assert!(files.len() >= 2, "rotated: {files:?}");
    assert_eq!(files.last(), Some(&path), "the current file comes last");
    let total: usize = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("read").lines().count())
        .sum();
    assert_eq!(total, 4, "rotation loses nothing");
    assert!(
        journal
            .expect("journal")
            .stats()
            .rotations
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    for s in &seqs {
        let found = txgate::journal::find(
            &path,
            &Query {
                seq: s.clone(),
                ..Query::default()
            },
        )
        .expect("find");
        assert_eq!(found.len(), 1, "{s} in {files:?}");
    }
}

// ---------------------------------------------------------------- the binary

/// `txgate serve` as a child process: its stdout lines until READY, its
/// stderr lines as they come.
struct Served {
    child: std::process::Child,
    addr: SocketAddr,
    admin: SocketAddr,
    stderr: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Served {
    fn start(config: &Path, extra: &[&str]) -> Served {
        let mut child = txgate()
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .args(extra)
            .env("RUST_LOG", "info,txgate=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("txgate serve starts");
        let (tx, stderr) = tokio::sync::mpsc::unbounded_channel();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let out = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(out).lines();
        let mut admin = None;
        let addr = loop {
            let line = lines.next().expect("READY line").expect("stdout");
            if let Some(a) = line.strip_prefix("ADMIN ") {
                admin = Some(a.parse().expect("ADMIN address"));
            }
            if let Some(rest) = line.strip_prefix("READY main ") {
                break rest.parse().expect("READY address");
            }
        };
        Served {
            child,
            addr,
            admin: admin.expect("ADMIN line before READY"),
            stderr,
        }
    }

    /// The next stderr line that `pick` accepts.
    async fn wait_log(&mut self, what: &str, pick: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.stderr.recv()).await {
                Ok(Some(line)) if pick(&line) => return line,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("txgate exited before logging {what}"),
                Err(_) => panic!("no log line {what} in time"),
            }
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(ok.success());
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json_line(line: &str) -> Option<Value> {
    serde_json::from_str(line).ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_txgate_reload_reload_a_served_gateway_and_json_logs_carry_spans() {
    let dir = test_dir("served");
    let mut t = base_config(&dir);
    section(&mut t, "journal").insert("body_fields".into(), strings(&["CustName"]));
    let config = dir.join("gateway.toml");
    write_config(&config, &t);
    let mut served = Served::start(&config, &["--simulate", "--log-format", "json"]);

    // JSON logs: a rejection carries its connection's and its message's span fields.
    let mut c = Client::connect(served.addr).await;
    let a = c
        .call(request("2969", &[("ChnlNo", "CUS"), ("TranCode", "9999")]))
        .await;
    assert_eq!(rsp_code(&a), "GW0101");
    let line = served
        .wait_log("rejected", |l| {
            json_line(l).is_some_and(|v| {
                v["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("rejected"))
            })
        })
        .await;
    let v = json_line(&line).expect("JSON");
    // The event's own span ("span") and the spans around it ("spans").
    let mut spans: Vec<&Value> = v["spans"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    spans.extend(v.get("span"));
    let conn = spans
        .iter()
        .find(|s| s["name"] == "conn")
        .unwrap_or_else(|| panic!("conn span in {line}"));
    assert_eq!(conn["listener"], "main", "{line}");
    assert!(
        conn["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{line}"
    );
    let message = spans
        .iter()
        .find(|s| s["name"] == "message")
        .unwrap_or_else(|| panic!("message span in {line}"));
    assert_eq!(
        message["code"], "9999",
        "fields recorded after the span began: {line}"
    );
    assert_eq!(message["channel"], "CUS", "{line}");

    // SIGHUP: NET may now call 2979, on the connection already open.
    let seq = next_seq("H");
    let net_2979 = |seq: &str| request("2979", &[("ChnlNo", "NET"), ("SeqNo", seq)]);
    assert_eq!(rsp_code(&c.call(net_2979(&next_seq("H"))).await), "GW0102");
    route(&mut t, "2979").insert("channels".into(), strings(&["CUS", "NET"]));
    write_config(&config, &t);
    served.signal("-HUP");
    served
        .wait_log("config reloaded", |l| l.contains("config reloaded"))
        .await;
    let a = c.call(net_2979(&seq)).await;
    assert_eq!(rsp_code(&a), "000000", "{}", rsp_msg(&a));

    // `txgate reload` with a broken config: exit 1, the reason, the old config stays.
    route(&mut t, "2979").insert("backend".into(), "NOPE".into());
    write_config(&config, &t);
    let admin = served.admin.to_string();
    let out = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || txgate().args(["reload", "--admin", &admin]).output()
    })
    .await
    .expect("join")
    .expect("txgate reload runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NOPE") && err.contains("refused"), "{err}");
    assert_eq!(rsp_code(&c.call(net_2979(&next_seq("H"))).await), "000000");

    // Fixed again: exit 0 and the outcome on stdout.
    route(&mut t, "2979").insert("backend".into(), "SCF".into());
    write_config(&config, &t);
    let out =
        tokio::task::spawn_blocking(move || txgate().args(["reload", "--admin", &admin]).output())
            .await
            .expect("join")
            .expect("txgate reload runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"generation\": 3"));
    let m = admin_call(served.admin, hyper::Method::GET, "/metrics")
        .await
        .body;
    assert_metric(&m, "txgate_reloads_total{result=\"ok\"}", 2.0);
    assert_metric(&m, "txgate_reloads_total{result=\"failed\"}", 1.0);

    // SIGTERM flushes the journal; `txgate journal` finds the record.
    drop(c);
    served.signal("-TERM");
    let status = tokio::task::spawn_blocking(move || {
        let s = served.child.wait();
        (s, served)
    })
    .await
    .expect("join");
    assert!(status.0.expect("exit status").success());
    let out = txgate()
        .args(["journal", "--seq", &seq, "--code", "2979", "--config"])
        .arg(&config)
        .output()
        .expect("txgate journal runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let r: JournalRecord = serde_json::from_str(lines[0]).expect("a journal record");
    assert_eq!(
        (r.seq.as_str(), r.channel.as_str(), r.rsp_code.as_str()),
        (seq.as_str(), "NET", "000000")
    );
    let none = txgate()
        .args(["journal", "--seq", "NO-SUCH-SEQ", "--config"])
        .arg(&config)
        .output()
        .expect("txgate journal runs");
    assert_eq!(none.status.code(), Some(1));
}

// ---------------------------------------------------------------- deploy/

#[test]
fn the_production_config_passes_check_against_the_repo_schemas() {
    let text =
        std::fs::read_to_string(root().join("deploy/gateway.prod.toml")).expect("prod config");
    assert!(
        text.contains("/etc/txgate/schemas"),
        "prod paths are absolute under /etc/txgate"
    );
    let dir = test_dir("prod");
    let p = dir.join("gateway.prod.toml");
    std::fs::write(
        &p,
        text.replace("/etc/txgate/", &format!("{}/", root().display())),
    )
    .expect("write");
    let snap = txgate::app::load_checked(&p, &Default::default())
        .unwrap_or_else(|e| panic!("deploy/gateway.prod.toml does not check: {e}"));
    assert_eq!(snap.routes.len(), 34);
    assert!(
        snap.raw.admin.required,
        "production refuses to run without its admin port"
    );
    assert!(snap.raw.journal.enabled);
    let out = txgate()
        .args(["check", "--config"])
        .arg(&p)
        .output()
        .expect("txgate check runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn deploy_has_a_systemd_unit_and_an_haproxy_example_that_fit() {
    let unit = std::fs::read_to_string(root().join("deploy/txgate.service")).expect("unit");
    for needle in [
        "ExecStart=",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitNOFILE=65536",
        "KillSignal=SIGTERM",
        "Type=simple",
    ] {
        assert!(unit.contains(needle), "{needle} in txgate.service");
    }
    let ha = std::fs::read_to_string(root().join("deploy/haproxy-txgate.cfg")).expect("haproxy");
    for needle in ["mode tcp", "/healthz", "port 9900"] {
        assert!(ha.contains(needle), "{needle} in haproxy-txgate.cfg");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_goes_not_ready_while_a_backend_breaker_is_open() {
    // Connects succeed, answers never come: only the breaker can say not ready.
    let stall = ScriptedBackend::start(Script::Stall).await;
    let addr = stall.addr.to_string();
    let g = Ops::start("breaker", false, |t| {
        let scf = backend(t, "SCF");
        scf.insert("address".into(), addr.clone().into());
        let mut timeouts = toml::Table::new();
        timeouts.insert("request_ms".into(), 100.into());
        scf.insert("timeouts".into(), timeouts.into());
        let mut breaker = toml::Table::new();
        breaker.insert("failures".into(), 2.into());
        breaker.insert("cooldown_ms".into(), 60_000.into());
        scf.insert("breaker".into(), breaker.into());
    })
    .await;
    assert_eq!(g.get("/readyz").await.status, 200);
    let mut c = g.client().await;
    for _ in 0..2 {
        let a = c.call(request("2969", &[("ChnlNo", "CUS")])).await;
        assert_eq!(rsp_code(&a), "GW0202", "{}", rsp_msg(&a));
    }
    let r = g.get("/readyz").await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("SCF") && r.body.contains("circuit breaker open"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("last connect"), "{}", r.body);
    let m = g.metrics().await;
    assert_metric(&m, "txgate_backend_breaker_open{backend=\"SCF\"}", 1.0);
    g.stop().await;
}
