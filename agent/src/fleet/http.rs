//! The little HTTP/1.1 that etcd's v3 JSON gateway needs: `POST` with a JSON body
//! over TCP or TLS (with a client certificate), a response read by
//! `Content-Length` or chunk by chunk, and a streaming body read line by line (a
//! watch answers one JSON message per line, for as long as it lives).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// The largest response line or unary body read (a host's config of a thousand VE
/// files is far smaller than this).
const MAX_BODY: usize = 64 << 20;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting, reading or writing.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Not HTTP as expected.
    #[error("bad response: {0}")]
    Protocol(String),
}

/// `http://HOST:PORT` or `https://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// TLS.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for Url {
    type Err = String;

    fn from_str(s: &str) -> Result<Url, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!(
                "{s:?}: an etcd endpoint is http://HOST:PORT or https://HOST:PORT"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = if let Some(r) = rest.strip_prefix('[') {
            let (h, p) = r
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed ["))?;
            (h, p.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!("{s:?}: no host, or a path (give HOST:PORT only)"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("{s:?}: bad port {p:?}"))?,
            None => 2379,
        };
        Ok(Url {
            tls,
            host: host.to_string(),
            port,
        })
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One HTTP/1.1 connection (kept alive between unary requests).
pub struct Connection {
    io: BufReader<Box<dyn Io>>,
    host: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("host", &self.host)
            .finish()
    }
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
}

/// Where the reading of a response body stands.
#[derive(Debug)]
pub struct Body {
    framing: Framing,
    /// Bytes left in the current chunk (chunked) or body (length).
    left: usize,
    done: bool,
}

impl Connection {
    /// Connects to `url` (TLS with `tls` when the URL says https) within `timeout`.
    pub async fn open(
        url: &Url,
        tls: Option<&Arc<tokio_rustls::rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Result<Connection, HttpError> {
        let connect = async {
            let tcp = TcpStream::connect((url.host.as_str(), url.port)).await?;
            tcp.set_nodelay(true)?;
            let io: Box<dyn Io> = if url.tls {
                let config = tls.ok_or_else(|| {
                    HttpError::Protocol(format!("{url}: https needs a TLS client config"))
                })?;
                let name = ServerName::try_from(url.host.clone())
                    .map_err(|e| HttpError::Protocol(format!("{url}: {e}")))?;
                let stream = TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await?;
                Box::new(stream)
            } else {
                Box::new(tcp)
            };
            Ok::<_, HttpError>(io)
        };
        let io = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| HttpError::Timeout(timeout))??;
        Ok(Connection {
            io: BufReader::new(io),
            host: format!("{}:{}", url.host, url.port),
        })
    }

    /// Sends `POST path` with a JSON body and reads the response head.
    pub async fn post(&mut self, path: &str, body: &[u8]) -> Result<(u16, Body), HttpError> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        let w = self.io.get_mut();
        w.write_all(head.as_bytes()).await?;
        w.write_all(body).await?;
        w.flush().await?;
        self.read_head().await
    }

    async fn read_head(&mut self) -> Result<(u16, Body), HttpError> {
        let status_line = self.line().await?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|_| status_line.starts_with("HTTP/1."))
            .ok_or_else(|| HttpError::Protocol(format!("status line {status_line:?}")))?;
        let mut framing = None;
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                let n = value
                    .parse()
                    .map_err(|_| HttpError::Protocol(format!("Content-Length {value:?}")))?;
                framing = Some(Framing::Length(n));
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                && value.eq_ignore_ascii_case("chunked")
            {
                framing = Some(Framing::Chunked);
            }
        }
        // Without either, the body would run to the end of the connection: etcd
        // never answers so, and keeping the connection needs a framed body.
        let framing = framing
            .ok_or_else(|| HttpError::Protocol("response without a length or chunks".into()))?;
        let left = match framing {
            Framing::Length(n) if n > MAX_BODY => {
                return Err(HttpError::Protocol(format!("body of {n} bytes")))
            }
            Framing::Length(n) => n,
            Framing::Chunked => 0,
        };
        Ok((
            status,
            Body {
                framing,
                left,
                done: framing == Framing::Length(0),
            },
        ))
    }

    /// One CRLF-terminated line of the head, without its end.
    async fn line(&mut self) -> Result<String, HttpError> {
        let mut buf = Vec::new();
        let n = (&mut self.io)
            .take(16 * 1024)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Err(HttpError::Protocol(
                "connection closed in a response head".into(),
            ));
        }
        while matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        String::from_utf8(buf).map_err(|_| HttpError::Protocol("head is not UTF-8".into()))
    }
}

impl Connection {
    /// The next piece of the body, `None` at its end.
    async fn piece(&mut self, b: &mut Body) -> Result<Option<Vec<u8>>, HttpError> {
        if b.done {
            return Ok(None);
        }
        if b.framing == Framing::Chunked && b.left == 0 {
            let size_line = self.line().await?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| HttpError::Protocol(format!("chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the blank line.
                while !self.line().await?.is_empty() {}
                b.done = true;
                return Ok(None);
            }
            if size > MAX_BODY {
                return Err(HttpError::Protocol(format!("chunk of {size} bytes")));
            }
            b.left = size;
        }
        let mut buf = vec![0u8; b.left.min(64 * 1024)];
        let n = self.io.read(&mut buf).await?;
        if n == 0 {
            return Err(HttpError::Protocol("connection closed in a body".into()));
        }
        buf.truncate(n);
        b.left -= n;
        if b.left == 0 {
            match b.framing {
                Framing::Length(_) => b.done = true,
                Framing::Chunked => {
                    if !self.line().await?.is_empty() {
                        return Err(HttpError::Protocol("chunk not followed by CRLF".into()));
                    }
                }
            }
        }
        Ok(Some(buf))
    }

    /// The whole body.
    pub async fn body(&mut self, mut b: Body) -> Result<Vec<u8>, HttpError> {
        let mut out = Vec::new();
        while let Some(p) = self.piece(&mut b).await? {
            out.extend_from_slice(&p);
            if out.len() > MAX_BODY {
                return Err(HttpError::Protocol("body too large".into()));
            }
        }
        Ok(out)
    }

    /// This connection's streaming body, read as newline-separated messages.
    pub fn into_lines(self, body: Body) -> Lines {
        Lines {
            conn: self,
            body,
            pending: Vec::new(),
        }
    }
}

/// A streaming body split into lines; owns its connection.
#[derive(Debug)]
pub struct Lines {
    conn: Connection,
    body: Body,
    pending: Vec<u8>,
}

impl Lines {
    /// The next non-empty line, `None` when the body ends.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, HttpError> {
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=i).collect();
                line.pop();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            match self.conn.piece(&mut self.body).await? {
                Some(p) => {
                    self.pending.extend_from_slice(&p);
                    if self.pending.len() > MAX_BODY {
                        return Err(HttpError::Protocol("stream line too long".into()));
                    }
                }
                None if self.pending.iter().all(u8::is_ascii_whitespace) => return Ok(None),
                None => return Ok(Some(std::mem::take(&mut self.pending))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_default_port_and_ipv6() {
        let u: Url = "http://10.0.0.1:2379".parse().expect("parses");
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "10.0.0.1", 2379));
        let u: Url = "https://[fd00::1]:3379/".parse().expect("parses");
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "fd00::1", 3379));
        assert_eq!(u.to_string(), "https://[fd00::1]:3379");
        let u: Url = "http://etcd1".parse().expect("parses");
        assert_eq!(u.port, 2379);
        assert!("10.0.0.1:2379".parse::<Url>().is_err());
        assert!("http://h:x".parse::<Url>().is_err());
        assert!("http://h:1/v3".parse::<Url>().is_err());
    }

    /// A server that answers with the given raw bytes, for framing tests.
    async fn serve(raw: &'static [u8]) -> Url {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.expect("accepts");
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(raw).await.expect("writes");
            let _ = s.read(&mut buf).await;
        });
        Url {
            tls: false,
            host: "127.0.0.1".into(),
            port,
        }
    }

    #[tokio::test]
    async fn bodies_by_length_and_by_chunks_and_lines_across_chunks() {
        let url = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
        let mut c = Connection::open(&url, None, Duration::from_secs(2))
            .await
            .expect("connects");
        let (status, body) = c.post("/v3/kv/range", b"{}").await.expect("answers");
        assert_eq!(status, 200);
        assert_eq!(c.body(body).await.expect("body"), b"hello");

        let url = serve(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n6\r\n:1}\n{\"\r\n5\r\nb\":2}\r\n1\r\n\n\r\n0\r\n\r\n",
        )
        .await;
        let mut c = Connection::open(&url, None, Duration::from_secs(2))
            .await
            .expect("connects");
        let (_, body) = c.post("/v3/watch", b"{}").await.expect("answers");
        let mut lines = c.into_lines(body);
        assert_eq!(
            lines.next().await.expect("line"),
            Some(b"{\"a\":1}".to_vec())
        );
        assert_eq!(
            lines.next().await.expect("line"),
            Some(b"{\"b\":2}".to_vec())
        );
        assert_eq!(lines.next().await.expect("end"), None);
    }
}
