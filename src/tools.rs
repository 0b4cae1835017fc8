//! Tools for testers: send one message, encode a fixture, decode bytes.

use crate::body;
use crate::fixture::Fixture;
use crate::frame::{FrameCodec, Framing};
use crate::header::HeaderSpec;
use crate::mask::Masking;
use crate::schema::Schema;
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Framed};

/// Why a tool failed.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Frame(#[from] crate::frame::FrameError),
    #[error("{0}")]
    Fixture(String),
    #[error("{0}")]
    Body(#[from] body::BodyError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the connection closed before an answer came")]
    Closed,
    #[error("the input holds no whole frame ({0} bytes)")]
    Incomplete(usize),
}

/// The schemas a tool knows, by code.
pub type Schemas = BTreeMap<String, Schema>;

/// Loads the schemas folder for tools; a missing folder means header-only tables.
pub fn load_schemas(dir: &Path) -> Schemas {
    crate::schema::load_dir(dir).unwrap_or_else(|problems| {
        // Said, not silent: without schemas a table has no field names and
        // hides bodies (nothing says which fields are sensitive).
        let first = problems.first().map(ToString::to_string).unwrap_or_default();
        tracing::warn!(
            "schemas in {} not loaded ({} problems, first: {first}); bodies are shown without field names",
            dir.display(),
            problems.len()
        );
        Schemas::default()
    })
}

/// What a tool works with, from its config.
#[derive(Debug, Clone)]
pub struct ToolContext {
    pub header: HeaderSpec,
    pub schemas: Schemas,
    pub fixtures: std::path::PathBuf,
    /// Header tags printed masked: the journal's `mask_header`, so the
    /// tools hide what the journal hides.
    pub mask_header: Vec<String>,
}

/// The context of a config, or the shipped header, `./schemas`,
/// `./fixtures` and the journal's default `mask_header` when the config
/// cannot be read.
pub fn context(config: &Path) -> ToolContext {
    match crate::config::RawConfig::load(config) {
        Ok(raw) => ToolContext {
            header: HeaderSpec::load(&raw.resolve(&raw.gateway.header))
                .unwrap_or_else(|_| HeaderSpec::builtin()),
            schemas: load_schemas(&raw.resolve(&raw.gateway.schemas)),
            fixtures: raw.resolve(&raw.gateway.fixtures),
            mask_header: raw.journal.mask_header,
        },
        Err(_) => ToolContext {
            header: HeaderSpec::builtin(),
            schemas: load_schemas(Path::new("schemas")),
            fixtures: std::path::PathBuf::from("fixtures"),
            mask_header: crate::journal::JournalConfig::default().mask_header,
        },
    }
}

/// Builds the request message (without length prefix) of a fixture.
pub fn fixture_request(
    header: &HeaderSpec,
    schemas: &Schemas,
    fixture: &Fixture,
    xml: bool,
) -> Result<Vec<u8>, ToolError> {
    let schema = schemas
        .get(&fixture.code)
        .ok_or_else(|| ToolError::Fixture(format!("no schema for code {}", fixture.code)))?;
    fixture
        .request_message(header, schema, xml)
        .map_err(|e| ToolError::Fixture(e.to_string()))
}

/// Reads the message to send from a file: a fixture (`.toml`) or framed bytes.
pub fn message_from_file(
    path: &Path,
    header: &HeaderSpec,
    schemas: &Schemas,
    framing: Framing,
    xml: bool,
) -> Result<Vec<u8>, ToolError> {
    if path.extension().is_some_and(|e| e == "toml") {
        let f = Fixture::load(path).map_err(|e| ToolError::Fixture(e.to_string()))?;
        return fixture_request(
            header,
            schemas,
            &f,
            xml || f.format == crate::fixture::Format::Xml,
        );
    }
    let bytes = std::fs::read(path)?;
    unframe(&bytes, framing)
}

/// Takes the one message out of framed bytes.
pub fn unframe(bytes: &[u8], framing: Framing) -> Result<Vec<u8>, ToolError> {
    let mut codec = FrameCodec::new(framing, usize::MAX / 2);
    let mut buf = BytesMut::from(bytes);
    match codec.decode(&mut buf)? {
        Some(m) => Ok(m.to_vec()),
        None => Err(ToolError::Incomplete(bytes.len())),
    }
}

/// Sends one message and waits for its answer.
pub async fn send_one(
    to: SocketAddr,
    framing: Framing,
    msg: Vec<u8>,
    timeout: Duration,
) -> Result<Bytes, ToolError> {
    let work = async {
        let stream = TcpStream::connect(to).await?;
        let mut framed = Framed::new(stream, FrameCodec::new(framing, 64 << 20));
        framed.send(Bytes::from(msg)).await?;
        loop {
            match framed.next().await {
                Some(Ok(m)) if m.is_empty() => continue,
                Some(Ok(m)) => return Ok(m),
                Some(Err(e)) => return Err(ToolError::from(e)),
                None => return Err(ToolError::Closed),
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ToolError::Timeout(timeout))?
}

/// The table `decode` and `send` print: header, then body where a schema
/// is known, masked as `masking` says (see [`body::table`]).
pub fn render(
    header: &HeaderSpec,
    schemas: &Schemas,
    msg: &[u8],
    masking: Masking<'_>,
) -> Result<String, ToolError> {
    let code = code_of(header, msg);
    let schema = code.as_deref().and_then(|c| schemas.get(c));
    let rows = body::table(header, schema, msg, masking)?;
    Ok(body::render_table(&rows))
}

/// The transaction code of a fixed or XML message, if it can be read.
pub fn code_of(header: &HeaderSpec, msg: &[u8]) -> Option<String> {
    let f = header.field(crate::header::Role::Code)?;
    if body::xml::is_xml(msg) {
        let doc = body::xml::XmlDoc::parse(msg).ok()?;
        return doc.head(&f.tag).map(|s| s.trim().to_string());
    }
    let raw = msg.get(f.range())?;
    crate::header::field_text(raw).ok().map(|s| s.into_owned())
}
