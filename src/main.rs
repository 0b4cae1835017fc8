//! The `txgate` command: a thin clap layer over the library.

/// mimalloc instead of glibc's malloc: the message path allocates a few
/// small blocks per message and frees some on another thread (the journal
/// writer), where glibc's arenas cost more (measured: see the commit).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use txgate::config::{parse_pool_max, parse_pool_mode, BackendMode, Overrides};
use txgate::frame::Framing;

#[derive(Parser)]
#[command(
    name = "txgate",
    version,
    about = "A gateway for bank socket messages (综合网关)"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Run one simulated backend (挡板).
    Sim(SimArgs),
    /// Send one message (a fixture or framed bytes) and print the decoded
    /// answer (sensitive fields masked).
    Send(SendArgs),
    /// Check a config and every schema it names; exit non-zero on any problem.
    Check {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
    },
    /// Write a fixture's request as framed bytes on standard output.
    Encode {
        fixture: PathBuf,
        /// The XML form instead of fixed.
        #[arg(long)]
        xml: bool,
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        #[arg(long, default_value = "ascii8")]
        framing: Framing,
    },
    /// Send fixtures to a target and compare the answers field by field.
    Replay(txgate::replay::ReplayArgs),
    /// Load-test a target with framed messages built from fixtures.
    Bench(txgate::bench::BenchArgs),
    /// Ask a running gateway to re-read its config (its admin port's POST /reload).
    Reload(ReloadArgs),
    /// Find a transaction's records in the journal (交易流水) by SeqNo.
    Journal(JournalArgs),
    /// Print a framed message from standard input as a table (sensitive fields masked).
    Decode {
        #[arg(long, default_value = "gateway.toml")]
        config: PathBuf,
        #[arg(long, default_value = "ascii8")]
        framing: Framing,
        #[command(flatten)]
        reveal: RevealArg,
    },
}

/// Pool and limit settings ops tune from the command line; each overrides gateway.toml.
#[derive(Args, Clone, Default)]
struct TuneArgs {
    /// Pool size: N for every backend, or BACKEND=N for one (repeatable).
    #[arg(long, value_parser = parse_pool_max)]
    pool_max: Vec<(Option<String>, usize)>,
    /// Backend mode: MODE for every backend, or BACKEND=MODE for one
    /// (repeatable); MODE is long, short or multiplex. Multiplex needs a
    /// backend that answers pipelined requests and echoes channel and SeqNo.
    #[arg(long, value_parser = parse_pool_mode, value_name = "[BACKEND=]MODE")]
    pool_mode: Vec<(Option<String>, BackendMode)>,
    /// Idle connections kept warm per backend.
    #[arg(long)]
    pool_min_idle: Option<usize>,
    /// How long an idle pooled connection is kept, in milliseconds.
    #[arg(long, value_name = "MS")]
    pool_idle_timeout: Option<u64>,
    /// Backend connect timeout, in milliseconds.
    #[arg(long, value_name = "MS")]
    connect_timeout: Option<u64>,
    /// Backend request timeout, in milliseconds (a route's own setting still wins).
    #[arg(long, value_name = "MS")]
    request_timeout: Option<u64>,
    /// Global limit of caller connections.
    #[arg(long)]
    max_connections: Option<usize>,
    /// Requests in flight on one caller connection.
    #[arg(long)]
    max_in_flight: Option<usize>,
}

impl TuneArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            pool_max: self.pool_max.clone(),
            pool_mode: self.pool_mode.clone(),
            pool_min_idle: self.pool_min_idle,
            pool_idle_timeout_ms: self.pool_idle_timeout,
            connect_timeout_ms: self.connect_timeout,
            request_timeout_ms: self.request_timeout,
            max_connections: self.max_connections,
            max_in_flight: self.max_in_flight,
        }
    }
}

#[derive(Args)]
struct ServeArgs {
    #[arg(long, default_value = "gateway.toml")]
    config: PathBuf,
    /// Replaces the first listener's address (port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Start a simulated backend for every backend in the config.
    #[arg(long)]
    simulate: bool,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Admin port address (replaces [admin] address; port 0 picks one).
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Serve no admin port.
    #[arg(long, conflicts_with = "admin")]
    no_admin: bool,
    /// Journal file (replaces [journal] path).
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Write no journal.
    #[arg(long, conflicts_with = "journal")]
    no_journal: bool,
    #[command(flatten)]
    tune: TuneArgs,
}

/// `txgate reload`: ops reload from a shell or a deploy script and want an
/// answer and an exit code, which a bare SIGHUP cannot give.
#[derive(Args)]
struct ReloadArgs {
    /// The gateway's admin port (default: [admin] address of --config).
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    #[arg(long, default_value = "gateway.toml")]
    config: PathBuf,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
}

/// `txgate journal`: a transaction is looked up by its SeqNo (unique per
/// channel and day), across the current and the rotated journal files.
#[derive(Args)]
struct JournalArgs {
    /// The SeqNo (渠道流水号) to look for.
    #[arg(long)]
    seq: String,
    /// Only records of this transaction code.
    #[arg(long)]
    code: Option<String>,
    /// Only records of this day, YYYYMMDD: the TranDate or the day written.
    #[arg(long, value_name = "D")]
    date: Option<String>,
    /// The config whose [journal] path to read.
    #[arg(long, default_value = "gateway.toml")]
    config: PathBuf,
    /// The journal file itself (instead of the config's).
    #[arg(long, value_name = "FILE")]
    path: Option<PathBuf>,
}

#[derive(Args)]
struct SimArgs {
    #[arg(long, default_value = "gateway.toml")]
    config: PathBuf,
    /// The backend to stand in for (SCF, IBP, NET, CLS…).
    #[arg(long)]
    backend: String,
    /// Address to listen on (default: the backend's address in the config).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Delay every answer by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    delay: u64,
    /// Tokio worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
}

#[derive(Args)]
struct SendArgs {
    #[arg(long)]
    to: SocketAddr,
    /// A fixture (.toml) or a file of framed bytes.
    file: PathBuf,
    /// Send a fixture in XML form.
    #[arg(long)]
    xml: bool,
    #[arg(long, default_value = "gateway.toml")]
    config: PathBuf,
    #[arg(long, default_value = "ascii8")]
    framing: Framing,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    #[command(flatten)]
    reveal: RevealArg,
}

/// `--reveal` of `decode` and `send` (`ReplayArgs` has its own, same help).
#[derive(Args, Clone, Copy)]
struct RevealArg {
    /// Print sensitive fields in clear: ID numbers, account numbers and
    /// names (default: masked, as in the journal). For a test box only.
    #[arg(long)]
    reveal: bool,
}

impl RevealArg {
    fn masking(self, mask_header: &[String]) -> txgate::mask::Masking<'_> {
        txgate::mask::Masking {
            header: mask_header,
            reveal: self.reveal,
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("txgate: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n.max(1));
    }
    Ok(b.enable_all().build()?)
}

fn run(cmd: Command) -> Result<std::process::ExitCode> {
    use std::process::ExitCode;
    match cmd {
        Command::Check { config } => {
            match txgate::app::load_checked(&config, &Overrides::default()) {
                Ok(snap) => {
                    println!(
                        "{}: ok — {} listeners, {} channels, {} backends, {} routes, {} schemas",
                        config.display(),
                        snap.listeners.len(),
                        snap.channels.len(),
                        snap.backends.len(),
                        snap.routes.len(),
                        snap.schemas.len()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Serve(a) => {
            let rt = runtime(a.workers)?;
            rt.block_on(serve(a))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sim(a) => {
            let rt = runtime(a.workers)?;
            rt.block_on(sim(a))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Send(a) => {
            let cx = txgate::tools::context(&a.config);
            let (header, schemas) = (&cx.header, &cx.schemas);
            let msg = txgate::tools::message_from_file(&a.file, header, schemas, a.framing, a.xml)?;
            let rt = runtime(Some(1))?;
            let answer = rt.block_on(txgate::tools::send_one(
                a.to,
                a.framing,
                msg,
                Duration::from_secs(a.timeout),
            ))?;
            let masking = a.reveal.masking(&cx.mask_header);
            print!(
                "{}",
                txgate::tools::render(header, schemas, &answer, masking)?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Encode {
            fixture,
            xml,
            config,
            framing,
        } => {
            let cx = txgate::tools::context(&config);
            let f = txgate::fixture::Fixture::load(&fixture)
                .map_err(|e| anyhow::anyhow!("{}: {e}", fixture.display()))?;
            let msg = txgate::tools::fixture_request(&cx.header, &cx.schemas, &f, xml)?;
            let framed = framing.frame(&msg)?;
            use std::io::Write;
            std::io::stdout().write_all(&framed)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(a) => {
            let rt = runtime(None)?;
            let passed = rt.block_on(txgate::replay::run(a))?;
            Ok(if passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Bench(a) => {
            let rt = runtime(None)?;
            let clean = rt.block_on(txgate::bench::run(a))?;
            Ok(if clean {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Reload(a) => {
            let rt = runtime(Some(1))?;
            rt.block_on(reload(a))
        }
        Command::Journal(a) => journal(a),
        Command::Decode {
            config,
            framing,
            reveal,
        } => {
            let cx = txgate::tools::context(&config);
            let mut bytes = Vec::new();
            use std::io::Read;
            std::io::stdin().read_to_end(&mut bytes)?;
            let msg = txgate::tools::unframe(&bytes, framing)?;
            let masking = reveal.masking(&cx.mask_header);
            print!(
                "{}",
                txgate::tools::render(&cx.header, &cx.schemas, &msg, masking)?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn serve(a: ServeArgs) -> Result<()> {
    let opts = txgate::app::StartOptions {
        overrides: a.tune.overrides(),
        listen: a.listen,
        simulate: a.simulate,
        admin: a.admin,
        no_admin: a.no_admin,
        journal: a.journal.clone(),
        no_journal: a.no_journal,
    };
    let running = txgate::app::Running::start_with(&a.config, &opts)
        .await
        .with_context(|| format!("starting from {}", a.config.display()))?;
    // Installed before READY: a SIGHUP right after it must reload, not kill.
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    for (sim, addr) in &running.simulators {
        println!("SIMULATOR {} {addr}", sim.backend);
    }
    if let Some(addr) = running.admin_address() {
        println!("ADMIN {addr}");
    }
    for (name, addr) in running.server.addresses() {
        println!("READY {name} {addr}");
    }
    let stop = CancellationToken::new();
    tokio::spawn(signals(stop.clone()));
    match hup {
        Ok(hup) => {
            tokio::spawn(reload_on_sighup(hup, running.reloader(), stop.clone()));
        }
        Err(e) => tracing::error!(
            "cannot install the SIGHUP handler ({e}): reload through the admin port only"
        ),
    }
    running.run(stop).await;
    Ok(())
}

/// `txgate reload`: exit 0 when the gateway took the new config, 1 when it
/// refused it (the old one keeps serving), 2 when it could not be asked.
async fn reload(a: ReloadArgs) -> Result<std::process::ExitCode> {
    let addr = match a.admin {
        Some(addr) => addr,
        None => {
            let raw = txgate::config::RawConfig::load(&a.config)
                .with_context(|| "give --admin ADDR, or a --config that names [admin] address")?;
            let addr: SocketAddr = raw.admin.address.parse().with_context(|| {
                format!(
                    "[admin] address \"{}\" in {}",
                    raw.admin.address,
                    a.config.display()
                )
            })?;
            if addr.port() == 0 {
                bail!(
                    "[admin] address in {} has port 0: give --admin ADDR (the ADMIN line of serve)",
                    a.config.display()
                );
            }
            addr
        }
    };
    let r = txgate::admin::request(
        addr,
        hyper::Method::POST,
        "/reload",
        Duration::from_secs(a.timeout),
    )
    .await?;
    match r.status {
        200 => {
            print!("{}", r.body);
            Ok(std::process::ExitCode::SUCCESS)
        }
        422 => {
            eprint!("reload refused; the running config stays:\n{}", r.body);
            Ok(std::process::ExitCode::from(1))
        }
        s => bail!("admin port {addr} answered {s}: {}", r.body),
    }
}

/// `txgate journal`: prints the matching records, one JSON line each;
/// exit 1 when there is none.
fn journal(a: JournalArgs) -> Result<std::process::ExitCode> {
    let path = match a.path {
        Some(p) => p,
        None => {
            let raw = txgate::config::RawConfig::load(&a.config)?;
            raw.journal.resolved_path(&raw)
        }
    };
    let q = txgate::journal::Query {
        seq: a.seq,
        code: a.code,
        date: a.date,
    };
    let found = txgate::journal::find(&path, &q)?;
    for r in &found {
        println!("{}", serde_json::to_string(r)?);
    }
    if found.is_empty() {
        eprintln!(
            "no record of SeqNo {} in {} (and its rotated files)",
            q.seq,
            path.display()
        );
        return Ok(std::process::ExitCode::from(1));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

async fn sim(a: SimArgs) -> Result<()> {
    let snap = txgate::app::load_checked(&a.config, &Overrides::default())?;
    let fixtures = snap.raw.resolve(&snap.raw.gateway.fixtures);
    let Some(backend) = snap.backends.get(&a.backend) else {
        bail!("backend {} is not in {}", a.backend, a.config.display());
    };
    let addr = a.listen.unwrap_or(backend.address);
    let sim = txgate::sim::Simulator::new(&snap, &a.backend, &fixtures)?
        .with_delay(Duration::from_millis(a.delay));
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    println!("SIMULATOR {} {}", a.backend, tcp.local_addr()?);
    let stop = CancellationToken::new();
    tokio::spawn(signals(stop.clone()));
    std::sync::Arc::new(sim).run(tcp, stop).await;
    Ok(())
}

/// SIGTERM or SIGINT stops the process gracefully.
async fn signals(stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
    stop.cancel();
}

/// SIGHUP re-reads the config, as `txgate reload` does; a refused config is
/// logged by the reloader and the running one stays.
async fn reload_on_sighup(
    mut hup: tokio::signal::unix::Signal,
    reloader: std::sync::Arc<txgate::reload::Reloader>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            r = hup.recv() => if r.is_none() { return },
        }
        tracing::info!("SIGHUP: reloading the config");
        let _ = reloader.reload().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a command line asks for `--reveal`.
    fn reveals(args: &[&str]) -> bool {
        match Cli::try_parse_from(args).map(|c| c.command) {
            Ok(Command::Decode { reveal, .. }) => reveal.reveal,
            Ok(Command::Send(a)) => a.reveal.reveal,
            Ok(Command::Replay(a)) => a.reveal,
            Ok(_) => panic!("another command: {args:?}"),
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    #[test]
    fn reveal_is_off_unless_asked() {
        let to = ["--to", "127.0.0.1:1"];
        assert!(!reveals(&["txgate", "decode"]));
        assert!(reveals(&["txgate", "decode", "--reveal"]));
        assert!(!reveals(
            &[&["txgate", "send"][..], &to, &["m.toml"]].concat()
        ));
        assert!(reveals(
            &[&["txgate", "send"][..], &to, &["m.toml", "--reveal"]].concat()
        ));
        assert!(!reveals(&[&["txgate", "replay"][..], &to].concat()));
        assert!(reveals(
            &[&["txgate", "replay"][..], &to, &["--reveal"]].concat()
        ));
        // The flag's earlier name still works.
        assert!(reveals(
            &[&["txgate", "replay"][..], &to, &["--show-sensitive"]].concat()
        ));
    }
}
