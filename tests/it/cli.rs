//! The `txgate` binary: check, serve with SIGTERM, encode/decode.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn txgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_txgate"))
}

/// Runs a command that must succeed; its standard output.
fn stdout_of(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A copy of gateway.toml in a temp folder, with absolute paths and the
/// given text replacements.
pub fn temp_config(name: &str, edits: &[(&str, &str)], append: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("txgate-it-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = std::fs::read_to_string(root().join("gateway.toml")).unwrap();
    let r = root();
    for (from, to) in [
        (
            "\"schemas/header.toml\"",
            format!("\"{}/schemas/header.toml\"", r.display()),
        ),
        (
            "schemas = \"schemas\"",
            format!("schemas = \"{}/schemas\"", r.display()),
        ),
        (
            "fixtures = \"fixtures\"",
            format!("fixtures = \"{}/fixtures\"", r.display()),
        ),
    ] {
        text = text.replace(from, &to);
    }
    for (from, to) in edits {
        assert!(text.contains(from), "{from} not in gateway.toml");
        text = text.replace(from, to);
    }
    text.push_str(append);
    let p = dir.join("gateway.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_passes_on_the_shipped_config() {
    let out = stdout_of(
        txgate()
            .args(["check", "--config"])
            .arg(root().join("gateway.toml")),
    );
    assert!(String::from_utf8_lossy(&out).contains("34 routes"));
}

#[test]
fn check_fails_on_a_duplicate_code() {
    let p = temp_config(
        "dup",
        &[],
        "\n[[route]]\ncode = \"2075\"\nname = \"贷款本金利息查询\"\nkind = \"query\"\nchannels = [\"IBP\"]\nbackend = \"SCF\"\nschema = \"2075.toml\"\n",
    );
    let err = check_fails(&p);
    assert!(err.contains("2075") && err.contains("two routes"), "{err}");
}

#[test]
fn check_reports_unknown_channel_backend_missing_schema_and_bad_address_together() {
    let p = temp_config(
        "bad",
        &[("address = \"127.0.0.1:9104\"", "address = \"not-an-address\"")],
        "\n[[route]]\ncode = \"1234\"\nname = \"x\"\nkind = \"query\"\nchannels = [\"QQQ\"]\nbackend = \"NOPE\"\nschema = \"1234.toml\"\n",
    );
    let err = check_fails(&p);
    for needle in ["QQQ", "NOPE", "1234.toml", "not-an-address"] {
        assert!(err.contains(needle), "{needle} missing in: {err}");
    }
}

#[test]
fn check_fails_on_a_defer_accept_longer_than_the_kernel_allows() {
    let p = temp_config(
        "defer",
        &[("defer_accept_ms = 1000", "defer_accept_ms = 300000")],
        "",
    );
    let err = check_fails(&p);
    assert!(
        err.contains("listener main") && err.contains("defer_accept_ms 300000"),
        "{err}"
    );
}

/// Starts `txgate serve` and waits for its READY line.
struct Served {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

fn serve(config: &std::path::Path, extra: &[&str]) -> Served {
    let mut child = txgate()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("READY line").unwrap();
        if let Some(rest) = line.strip_prefix("READY main ") {
            break rest.parse().unwrap();
        }
    };
    Served { child, addr }
}

fn sigterm(pid: u32) {
    let ok = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let backend = ScriptedBackend::start(Script::Slow(Duration::from_millis(800))).await;
    let p = temp_config(
        "term",
        &[
            (
                "address = \"127.0.0.1:9101\"",
                &format!("address = \"{}\"", backend.addr),
            ),
            ("address = \"127.0.0.1:9102\"", "address = \"127.0.0.1:0\""),
            ("address = \"127.0.0.1:9103\"", "address = \"127.0.0.1:0\""),
            ("address = \"127.0.0.1:9104\"", "address = \"127.0.0.1:0\""),
        ],
        "",
    );
    let mut served = serve(&p, &[]);
    let mut c = Client::connect(served.addr).await;
    c.send(request("9183", &[("ChnlNo", "NET")])).await;
    // Wait until the request reached the backend, then stop the gateway.
    eventually("the request reached the backend", || backend.count() != 0).await;
    sigterm(served.child.id());
    // SCF answers with an empty body, so body checks say GW0204: what
    // matters is that the request in flight got its answer, not a cut.
    let answer = c.recv().await;
    assert!(!rsp_code(&answer).is_empty());
    assert_ne!(rsp_code(&answer), "GW0201");
    let status = tokio::task::spawn_blocking(move || served.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    // New callers are refused once it stopped.
    assert!(tokio::net::TcpStream::connect(served.addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_simulate_answers_every_backend_and_send_prints_the_answer() {
    let p = temp_config(
        "sim",
        &[
            ("address = \"127.0.0.1:9101\"", "address = \"127.0.0.1:0\""),
            ("address = \"127.0.0.1:9102\"", "address = \"127.0.0.1:0\""),
            ("address = \"127.0.0.1:9103\"", "address = \"127.0.0.1:0\""),
            ("address = \"127.0.0.1:9104\"", "address = \"127.0.0.1:0\""),
        ],
        "",
    );
    let mut served = serve(&p, &["--simulate", "--pool-max", "SCF=4", "--workers", "1"]);
    let f = root().join("fixtures/2969/disbursed.toml");
    let addr = served.addr.to_string();
    let send = move |extra: &'static [&'static str]| {
        let (addr, f) = (addr.clone(), f.clone());
        tokio::task::spawn_blocking(move || {
            let out = stdout_of(
                txgate()
                    .args(["send", "--to", &addr, "--config"])
                    .arg(root().join("gateway.toml"))
                    .arg(&f)
                    .args(extra),
            );
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let table = send(&[]).await.unwrap();
    assert!(
        table.contains("RspCode") && table.contains("000000"),
        "{table}"
    );
    // The answer's RecvAcctNo is sensitive: masked unless revealed.
    assert_eq!(row_value(&table, "RecvAcctNo"), "3*****************1");
    let table = send(&["--reveal"]).await.unwrap();
    assert_eq!(row_value(&table, "RecvAcctNo"), "3803020119000056671");
    sigterm(served.child.id());
    assert!(served.child.wait().unwrap().success());
}

/// A temp copy of schemas/ with one file rewritten, and a config using it.
fn config_with_schema_edit(name: &str, file: &str, from: &str, to: &str) -> std::path::PathBuf {
    config_with_schema_edits(name, file, &[(from, to)], &[])
}

/// A temp copy of schemas/ with `file` rewritten by `edits` in turn (first
/// occurrence each), and a config using it, with `config_edits` applied.
fn config_with_schema_edits(
    name: &str,
    file: &str,
    edits: &[(&str, &str)],
    config_edits: &[(&str, &str)],
) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("txgate-it-{}-{name}-schemas", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(root().join("schemas")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let p = dir.join(file);
    let mut text = std::fs::read_to_string(&p).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{from} not in {file}");
        text = text.replacen(from, to, 1);
    }
    std::fs::write(&p, text).unwrap();
    let schemas = (
        format!("schemas = \"{}/schemas\"", root().display()),
        format!("schemas = \"{}\"", dir.display()),
    );
    let header = (
        format!("\"{}/schemas/header.toml\"", root().display()),
        format!("\"{}/header.toml\"", dir.display()),
    );
    let mut all: Vec<(&str, &str)> = vec![(&schemas.0, &schemas.1), (&header.0, &header.1)];
    all.extend_from_slice(config_edits);
    temp_config(name, &all, "")
}

/// Runs `txgate check` on a config that must fail; its standard error.
fn check_fails(config: &std::path::Path) -> String {
    let out = txgate()
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn check_fails_on_a_zero_width_body_field() {
    let p = config_with_schema_edit("zero", "2969.toml", "width = 32", "width = 0");
    let err = check_fails(&p);
    assert!(err.contains("2969") && err.contains("LoanAppNo"), "{err}");
}

#[test]
fn check_refuses_multiplex_when_channel_and_seqno_are_wider_than_its_key() {
    // SeqNo's role moved to the 100-byte RspMsg field: too wide a key.
    let p = config_with_schema_edits(
        "widekey",
        "header.toml",
        &[
            ("role = \"seq\"", "role = \"rsp_msg_was\""),
            ("role = \"rsp_msg\"", "role = \"seq\""),
            ("role = \"rsp_msg_was\"", "role = \"rsp_msg\""),
        ],
        &[("mode = \"long\"", "mode = \"multiplex\"")],
    );
    let err = check_fails(&p);
    assert!(
        err.contains("backend SCF: multiplex mode") && err.contains("107 bytes"),
        "{err}"
    );
}

#[test]
fn check_fails_on_overlapping_header_fields() {
    let p = config_with_schema_edit("overlap", "header.toml", "offset = 4\n", "offset = 2\n");
    let err = check_fails(&p);
    assert!(err.contains("overlap"), "{err}");
}

#[test]
fn encode_writes_the_golden_bytes_and_decode_prints_labels() {
    for golden in ["2969/disbursed", "9419/five-years", "2979/old", "2979/full"] {
        let fixture = root().join("fixtures").join(format!("{golden}.toml"));
        let out = stdout_of(txgate().current_dir(root()).arg("encode").arg(&fixture));
        let want = std::fs::read(root().join("fixtures").join(format!("{golden}.bin"))).unwrap();
        assert_eq!(out, want, "{golden}: encode differs from the golden file");
    }
    let table = decode("fixtures/2969/disbursed.bin", &[]);
    for needle in ["TranCode", "交易码", "LoanAppNo", "放款申请编号"] {
        assert!(table.contains(needle), "{needle} missing in:\n{table}");
    }
}

/// `txgate decode` of a golden file; its standard output.
fn decode(bin: &str, extra: &[&str]) -> String {
    let bin = std::fs::read(root().join(bin)).unwrap();
    let mut child = txgate()
        .current_dir(root())
        .arg("decode")
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&bin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value column of a table's row.
fn row_value<'a>(table: &'a str, tag: &str) -> &'a str {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(tag))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_else(|| panic!("no {tag} row in:\n{table}"))
}

#[test]
fn decode_masks_sensitive_fields_unless_revealed() {
    // CustName is sensitive in schemas/2969.toml; TellerNo is in the
    // journal's mask_header; LoanAppNo is neither.
    const NAME: &str = "中石油昆仑燃气（青岛）有限公司";
    let table = decode("fixtures/2969/disbursed.bin", &[]);
    assert_eq!(
        row_value(&table, "CustName"),
        "中*************司",
        "{table}"
    );
    assert_eq!(row_value(&table, "TellerNo"), "T***1", "{table}");
    assert_eq!(row_value(&table, "LoanAppNo"), "LA2026120400001", "{table}");
    assert!(!table.contains(NAME) && !table.contains("T0001"), "{table}");

    let table = decode("fixtures/2969/disbursed.bin", &["--reveal"]);
    assert_eq!(row_value(&table, "CustName"), NAME, "{table}");
    assert_eq!(row_value(&table, "TellerNo"), "T0001", "{table}");
    assert_eq!(row_value(&table, "LoanAppNo"), "LA2026120400001", "{table}");
}
