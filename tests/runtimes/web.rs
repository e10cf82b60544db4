//! A minimal HTTP/1.0 client over a raw `TcpStream`, so the trials can send
//! exactly the bytes they mean to (well-formed or not) to the agent and to
//! Prometheus. One request per connection (`Connection: close`); the reply
//! is read to EOF, and chunked bodies are decoded in case a server uses them.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// How long one exchange may take before it fails.
const TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed reply.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub code: u16,
    /// Header lines, lower-cased names, as (name, value).
    pub headers: Vec<(String, String)>,
    /// Body (chunked encoding removed).
    pub body: String,
}

impl Response {
    /// The value of header `name` (lower case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET target` from `addr`.
pub fn get(addr: &str, target: &str) -> Result<Response> {
    request(addr, "GET", target)
}

/// `method target` to `addr`, with no body.
pub fn request(addr: &str, method: &str, target: &str) -> Result<Response> {
    let raw = format!("{method} {target} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let reply = exchange(addr, raw.as_bytes())?;
    parse(&reply).with_context(|| format!("{method} http://{addr}{target}"))
}

/// Writes `raw` to `addr` and reads until the server closes. A reset after
/// the write counts as a close (what a server does to garbage).
pub fn exchange(addr: &str, raw: &[u8]) -> Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    match stream.write_all(raw) {
        // The server may answer and close before reading everything.
        Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {}
        other => other.with_context(|| format!("writing to {addr}"))?,
    }
    let mut reply = Vec::new();
    match stream.read_to_end(&mut reply) {
        Ok(_) => Ok(reply),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(reply),
        Err(e) => Err(e).with_context(|| format!("reading from {addr}")),
    }
}

/// Splits a raw reply into status code, headers and body.
pub fn parse(raw: &[u8]) -> Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").with_context(|| {
        format!(
            "no end of headers in reply {:?}",
            crate::oracle::tail(&text, 300)
        )
    })?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let code = status
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("bad status line {status:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_owned()
    };
    Ok(Response {
        code,
        headers,
        body,
    })
}

/// Decodes a chunked body.
fn dechunk(mut rest: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").context("chunk size line")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("bad chunk size {size:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        if after.len() < size {
            bail!("chunk of {size} bytes cut short");
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
}

/// Percent-encodes a query parameter value.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
