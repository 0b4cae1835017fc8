//! The testers' tools against real sockets: `replay` (every shipped fixture
//! through the gateway, a wrong fixture against a simulator, JUnit output)
//! and `bench` (a bounded load run, its JSON and its HTML report).

use crate::support::*;
use quick_xml::events::Event;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use txgate::bench::{self, BenchResult, LoadConfig, Workload};
use txgate::fixture::Fixture;
use txgate::replay::{self, ReplayArgs, ReplayConfig, Verdict};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("txgate-it-tools-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A simulated SCF on port 0, answering from the shipped fixtures.
async fn simulated_scf() -> (std::net::SocketAddr, CancellationToken) {
    let snap = txgate::snapshot::Snapshot::build(shipped_config(), None).expect("config checks");
    let sim = txgate::sim::Simulator::new(&snap, "SCF", &root().join("fixtures")).expect("sim");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(Arc::new(sim).run(tcp, stop.clone()));
    (addr, stop)
}

/// A copy of a shipped fixture with text replaced, written under
/// `dir/<code>/` (the code: the shipped fixture's folder).
fn edited_fixture(
    dir: &std::path::Path,
    from: &str,
    name: &str,
    edits: &[(&str, &str)],
) -> Fixture {
    let mut text = std::fs::read_to_string(root().join(from)).expect("fixture text");
    for (a, b) in edits {
        assert!(text.contains(a), "{a} not in {from}");
        text = text.replace(a, b);
    }
    let code = std::path::Path::new(from)
        .parent()
        .and_then(|p| p.file_name())
        .expect("fixtures/<code>/<name>.toml");
    let code_dir = dir.join(code);
    std::fs::create_dir_all(&code_dir).expect("dir");
    let p = code_dir.join(name);
    std::fs::write(&p, text).expect("write fixture");
    Fixture::load(&p).expect("edited fixture loads")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_passes_on_every_shipped_fixture_through_the_gateway() {
    let gw = TestGateway::start().await;
    let all = fixtures();
    assert!(all.len() >= 40, "the shipped fixtures load");
    let mut cfg = ReplayConfig::new(gw.addr, header(), schemas().clone(), all.clone());
    cfg.concurrency = 4;
    cfg.timeout = WAIT;
    let outcomes = replay::replay(&cfg).await;
    assert_eq!(outcomes.len(), all.len());
    let table = replay::render_table(&outcomes);
    assert!(
        outcomes.iter().all(|o| o.verdict == Verdict::Pass),
        "{table}"
    );
    // Every fixture really went through: each backend saw requests.
    let at_backends: usize = ["SCF", "IBP", "NET", "CLS"]
        .iter()
        .map(|b| gw.received(b).len())
        .sum();
    assert_eq!(at_backends, all.len(), "{table}");
    gw.stop().await;
}

/// The tuning ops may pick for the 2969 load (`--pool-mode multiplex`):
/// every fixture still gets its own answer when all callers share one
/// multiplexed connection per backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_passes_on_every_shipped_fixture_over_one_multiplexed_connection_per_backend() {
    let mut raw = shipped_config();
    let tuned = txgate::config::Overrides {
        pool_mode: vec![txgate::config::parse_pool_mode("multiplex").expect("mode")],
        pool_max: vec![txgate::config::parse_pool_max("1").expect("max")],
        ..Default::default()
    };
    raw.apply(&tuned).expect("overrides apply");
    let gw = TestGateway::start_with(raw).await;
    let all = fixtures();
    let mut cfg = ReplayConfig::new(gw.addr, header(), schemas().clone(), all.clone());
    cfg.concurrency = 8;
    cfg.timeout = WAIT;
    let outcomes = replay::replay(&cfg).await;
    let table = replay::render_table(&outcomes);
    assert!(
        outcomes.iter().all(|o| o.verdict == Verdict::Pass),
        "{table}"
    );
    let snap = gw.gateway.snapshot();
    for id in ["SCF", "IBP", "NET", "CLS"] {
        let pool = &snap.backends[id].pool;
        assert_eq!(pool.mode(), txgate::config::BackendMode::Multiplex, "{id}");
        assert!(
            pool.idle_count() <= 1,
            "{id} opened more than one connection"
        );
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_names_the_field_that_differs_and_ignores_unpinned_volatile_fields() {
    let (addr, stop) = simulated_scf().await;
    let dir = temp_dir("wrong");
    // The simulator answers LoanStatus 1; this fixture expects 2.
    let wrong = edited_fixture(
        &dir,
        "fixtures/2969/disbursed.toml",
        "wrong.toml",
        &[("LoanStatus = \"1\"", "LoanStatus = \"2\"")],
    );
    // Expects a different MaturityDate but lists it as volatile without
    // pinning it (not in response.body): ignored, so this one passes.
    let volatile = edited_fixture(
        &dir,
        "fixtures/2969/disbursed.toml",
        "volatile.toml",
        &[
            (
                "volatile = [\"TranDate\", \"TranTime\"]",
                "volatile = [\"TranDate\", \"TranTime\", \"MaturityDate\"]",
            ),
            ("MaturityDate = \"20270602\"\n", ""),
        ],
    );
    // Pins a volatile field with the wrong value: compared, so it fails.
    let pinned = edited_fixture(
        &dir,
        "fixtures/2969/disbursed.toml",
        "pinned.toml",
        &[
            (
                "volatile = [\"TranDate\", \"TranTime\"]",
                "volatile = [\"TranDate\", \"TranTime\", \"MaturityDate\"]",
            ),
            ("MaturityDate = \"20270602\"", "MaturityDate = \"20280602\""),
        ],
    );
    let mut cfg = ReplayConfig::new(
        addr,
        header(),
        schemas().clone(),
        vec![wrong, volatile, pinned],
    );
    cfg.timeout = WAIT;
    let out = replay::replay(&cfg).await;
    let table = replay::render_table(&out);
    assert_eq!(out[0].verdict, Verdict::Fail, "{table}");
    assert_eq!(out[0].diffs.len(), 1, "{table}");
    assert_eq!(out[0].diffs[0].field, "LoanStatus", "{table}");
    assert_eq!(
        (
            out[0].diffs[0].expected.as_str(),
            out[0].diffs[0].actual.as_str()
        ),
        ("2", "1")
    );
    assert!(
        table.contains("LoanStatus") && table.contains("FAIL"),
        "{table}"
    );
    assert_eq!(out[1].verdict, Verdict::Pass, "{table}");
    assert_eq!(out[2].verdict, Verdict::Fail, "{table}");
    assert_eq!(out[2].diffs[0].field, "MaturityDate", "{table}");

    // Nothing listens here any more: an ERROR, not a FAIL.
    stop.cancel();
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead = closed.local_addr().expect("addr");
    drop(closed);
    let mut cfg = ReplayConfig::new(
        dead,
        header(),
        schemas().clone(),
        vec![fixture("2969", |_| true)],
    );
    cfg.timeout = Duration::from_secs(2);
    let out = replay::replay(&cfg).await;
    assert_eq!(out[0].verdict, Verdict::Error, "{:?}", out[0]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_junit_parses_as_xml_with_one_testcase_per_fixture() {
    let gw = TestGateway::start().await;
    let dir = temp_dir("junit");
    let junit = dir.join("replay.xml");
    let args = ReplayArgs {
        to: gw.addr,
        config: root().join("gateway.toml"),
        fixtures: vec![root().join("fixtures")],
        junit: Some(junit.clone()),
        concurrency: 8,
        timeout_ms: 10_000,
        framing: Default::default(),
        fresh_seq: false,
        reveal: false,
    };
    let passed = replay::run(args.clone()).await.expect("replay runs");
    assert!(passed, "every shipped fixture passes");

    let text = std::fs::read_to_string(&junit).expect("junit written");
    let mut reader = quick_xml::Reader::from_str(&text);
    let (mut cases, mut failures, mut suites) = (0, 0, 0);
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => match e.name().as_ref() {
                b"testcase" => cases += 1,
                b"failure" | b"error" => failures += 1,
                b"testsuite" => suites += 1,
                _ => {}
            },
            Ok(_) => {}
            Err(e) => panic!("JUnit is not well-formed XML: {e}\n{text}"),
        }
    }
    assert_eq!(suites, 1);
    assert_eq!(cases, fixtures().len(), "{text}");
    assert_eq!(failures, 0, "{text}");

    // A second run with the fixtures' own SeqNos: the gateway refuses the
    // repeated SeqNos of non-idempotent routes, so the run fails and the
    // JUnit file carries the failures. --fresh-seq passes again.
    assert!(!replay::run(args.clone()).await.expect("replay runs"));
    let text = std::fs::read_to_string(&junit).expect("junit written");
    assert!(
        text.contains("<failure") && text.contains("GW0103"),
        "{text}"
    );
    let fresh = ReplayArgs {
        fresh_seq: true,
        ..args
    };
    assert!(replay::run(fresh).await.expect("replay runs"));
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// `txgate replay` run as a process; its standard output.
fn replay_command(to: std::net::SocketAddr, fixtures: &std::path::Path, extra: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_txgate"))
        .args(["replay", "--to", &to.to_string(), "--config"])
        .arg(root().join("gateway.toml"))
        .arg(fixtures)
        .args(extra)
        .output()
        .expect("txgate replay runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the fixtures fail: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_prints_sensitive_differences_masked_unless_revealed() {
    let (addr, stop) = simulated_scf().await;
    let dir = temp_dir("masked");
    // The simulator answers RecvAcctNo 3803020119000056671 and echoes
    // TellerNo T0001; a middle digit differs, so both sides mask alike.
    let top = edited_fixture(
        &dir,
        "fixtures/2969/disbursed.toml",
        "acct.toml",
        &[
            ("3803020119000056671", "3803020119000099671"),
            (
                "RspCode = \"000000\"\n",
                "RspCode = \"000000\"\nTellerNo = \"T0009\"\n",
            ),
        ],
    );
    // A sensitive member of a group (PayList[3].PayeeAcctNo).
    let member = edited_fixture(
        &dir,
        "fixtures/2073/three-payments.toml",
        "payee.toml",
        &[("1501200409000112233", "1501200409000992233")],
    );
    let clear = [
        "3803020119000056671",
        "3803020119000099671",
        "1501200409000112233",
        "1501200409000992233",
        "T0001",
        "T0009",
    ];
    const NOTE: &str = "--reveal to show";

    // The comparison is on the real values: every difference is reported,
    // even where the masked values look equal.
    let mut cfg = ReplayConfig::new(addr, header(), schemas().clone(), vec![top, member]);
    cfg.timeout = WAIT;
    let out = replay::replay(&cfg).await;
    let table = replay::render_table(&out);
    let diff = |o: usize, field: &str| {
        out[o]
            .diffs
            .iter()
            .find(|d| d.field.ends_with(field))
            .unwrap_or_else(|| panic!("no {field} difference in:\n{table}"))
            .clone()
    };
    assert!(out.iter().all(|o| o.verdict == Verdict::Fail), "{table}");
    let acct = diff(0, "RecvAcctNo");
    assert!(acct.masked, "{table}");
    assert_eq!(acct.expected, "3*****************1", "{table}");
    assert_eq!(acct.expected, acct.actual, "{table}");
    assert_eq!(
        (diff(0, "TellerNo").expected, diff(0, "TellerNo").actual),
        ("T***9".to_string(), "T***1".to_string()),
        "{table}"
    );
    assert_eq!(diff(1, "PayeeAcctNo").field, "PayList[3].PayeeAcctNo");
    assert_eq!(out[0].diffs.len() + out[1].diffs.len(), 3, "{table}");

    // What is printed: the console table and the JUnit file.
    let junit = dir.join("replay.xml");
    let printed = replay_command(addr, &dir, &["--junit", &path_str(&junit)]);
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    for text in [&printed, &xml] {
        for c in clear {
            assert!(!text.contains(c), "{c} in clear:\n{text}");
        }
        for field in ["RecvAcctNo", "TellerNo", "PayList[3].PayeeAcctNo"] {
            assert!(text.contains(field), "{field} missing:\n{text}");
        }
        assert!(text.matches(NOTE).count() >= 3, "{text}");
    }
    assert!(printed.contains("3*****************1"), "{printed}");

    // --reveal: in clear, and no note.
    let revealed = replay_command(addr, &dir, &["--reveal", "--junit", &path_str(&junit)]);
    let xml = std::fs::read_to_string(&junit).expect("junit written");
    for text in [&revealed, &xml] {
        for c in clear {
            assert!(text.contains(c), "{c} not in clear:\n{text}");
        }
        assert!(!text.contains(NOTE), "{text}");
    }
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

fn disbursed_workload() -> Workload {
    let f = Fixture::load(&root().join("fixtures/2969/disbursed.toml")).expect("fixture");
    Workload::build(&header(), schemas(), Default::default(), &[(1, vec![f])]).expect("workload")
}

/// Reads a document to the end; false (with the error) if it is not well-formed.
fn well_formed(text: &str) -> Result<usize, String> {
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    let mut svgs = 0;
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => return Ok(svgs),
            Ok(Event::Start(e)) if e.name().as_ref() == b"svg" => svgs += 1,
            Ok(_) => {}
            Err(e) => return Err(format!("at {}: {e}", reader.buffer_position())),
        }
    }
}

fn check_result(r: &BenchResult) {
    let t = &r.totals;
    assert!(t.tps > 0.0, "{t:?}");
    assert_eq!(t.errors, 0, "{:?}", r.errors);
    assert!(t.answered > 0);
    assert_eq!(
        r.codes.get("000000").copied(),
        Some(t.answered),
        "{:?}",
        r.codes
    );
    let l = &r.latency_us;
    assert!(
        l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
        "{l:?}"
    );
    assert!(l.p50 > 0);
    assert!(!r.series.is_empty());
    assert!(r.machine.nproc > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_a_bounded_load_and_reports_it() {
    let gw = TestGateway::start().await;
    let mut cfg = LoadConfig::new(gw.addr, header(), disbursed_workload());
    cfg.connections = 8;
    cfg.long = true;
    cfg.warmup = Duration::from_millis(200);
    cfg.duration = Duration::from_secs(1);
    cfg.label = "txgate".into();
    cfg.watch = vec![("self".into(), std::process::id())];
    let r = bench::run_load(&cfg).await.expect("bench runs");
    check_result(&r);
    assert!(r.totals.warmup_requests > 0);
    assert!(r.cpu.iter().any(|c| c.name == "self"), "{:?}", r.cpu);
    // Every request reached the simulated SCF with its own SeqNo.
    let seqs: std::collections::HashSet<String> = gw
        .received("SCF")
        .iter()
        .map(|m| field(m, txgate::header::Role::Seq))
        .collect();
    assert_eq!(
        seqs.len() as u64,
        r.totals.answered + r.totals.warmup_requests
    );

    // The JSON is the full result and reads back.
    let json = serde_json::to_string(&r).expect("json");
    let v: serde_json::Value = serde_json::from_str(&json).expect("json parses");
    for key in [
        "settings",
        "totals",
        "latency_us",
        "series",
        "codes",
        "machine",
        "cpu",
    ] {
        assert!(v.get(key).is_some(), "{key} in {json}");
    }
    assert!(v["totals"]["tps"].as_f64().unwrap_or(0.0) > 0.0);
    let back: BenchResult = serde_json::from_str(&json).expect("reads back");
    // (Floats may differ in the last digit through JSON; counts may not.)
    assert_eq!(
        (
            back.totals.requests,
            back.totals.answered,
            back.totals.errors
        ),
        (r.totals.requests, r.totals.answered, r.totals.errors)
    );
    assert_eq!(back.codes, r.codes);
    assert_eq!(back.latency_us.p99, r.latency_us.p99);

    let html = bench::report::single(&r);
    assert!(html.contains("<title>性能测试报告"), "title");
    let svgs = well_formed(&html).unwrap_or_else(|e| panic!("report not well-formed: {e}"));
    assert!(svgs >= 3, "TPS, percentile and distribution charts: {svgs}");
    assert!(!html.contains("<script"));

    // Two setups side by side.
    let mut other = r.clone();
    other.label = "direct".into();
    other.totals.tps *= 2.0;
    let summary = bench::summarize(vec![r.clone(), other], Some("direct"));
    assert_eq!(summary.setups.len(), 2);
    let ratio = summary.setups[0].ratio_to_baseline.expect("ratio");
    assert!((ratio - 0.5).abs() < 1e-9, "{ratio}");
    let md = bench::summary_markdown(&summary);
    assert!(md.contains("| txgate |") && md.contains("0.50"), "{md}");
    let html = bench::report::comparison(&summary);
    let svgs = well_formed(&html).unwrap_or_else(|e| panic!("comparison not well-formed: {e}"));
    assert!(svgs >= 4 && html.contains("性能测试报告"));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_open_loop_and_short_connections_keep_to_their_bounds() {
    let gw = TestGateway::start().await;
    // Open loop: 400 req/s for 501 ms plans exactly 201 requests (0 ms, 2.5 ms, … 500 ms).
    let mut cfg = LoadConfig::new(gw.addr, header(), disbursed_workload());
    cfg.connections = 4;
    cfg.long = true;
    cfg.rate = Some(400.0);
    cfg.warmup = Duration::ZERO;
    cfg.duration = Duration::from_millis(501);
    let r = bench::run_load(&cfg).await.expect("open loop runs");
    check_result(&r);
    assert_eq!(r.totals.answered, 201, "{:?}", r.totals);

    // Short connections, bounded by count well before the time bound.
    let mut cfg = LoadConfig::new(gw.addr, header(), disbursed_workload());
    cfg.connections = 4;
    cfg.warmup = Duration::ZERO;
    cfg.duration = Duration::from_secs(30);
    cfg.max_requests = 40;
    let started = std::time::Instant::now();
    let r = bench::run_load(&cfg).await.expect("short runs");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(r.totals.answered, 40, "{:?}", r.totals);
    assert_eq!(r.totals.errors, 0);

    // The same, each connection closed with a reset.
    cfg.rst_close = true;
    let r = bench::run_load(&cfg).await.expect("short with reset runs");
    assert_eq!(r.totals.answered, 40, "{:?}", r.totals);
    assert_eq!(r.totals.errors, 0, "{:?}", r.errors);
    assert!(r.settings.rst_close);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_counts_an_answer_with_another_seq_no_as_an_error() {
    let backend = ScriptedBackend::start(Script::WrongSeq).await;
    let mut cfg = LoadConfig::new(backend.addr, header(), disbursed_workload());
    cfg.connections = 2;
    cfg.long = true;
    cfg.warmup = Duration::ZERO;
    cfg.max_requests = 20;
    let r = bench::run_load(&cfg).await.expect("bench runs");
    assert_eq!(r.totals.answered, 0);
    assert_eq!(r.totals.errors, 20);
    assert_eq!(r.errors.get("seq").copied(), Some(20), "{:?}", r.errors);
}
