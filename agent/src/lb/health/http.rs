//! HTTP and HTTPS checks with keepalived's semantics (`HTTP_GET`, `SSL_GET`):
//! every URL is fetched with an HTTP/1.0 GET and must answer with a status in
//! its ranges (default 200-299) and, when it has a `digest`, a body whose MD5
//! is that digest. The digest covers the bytes after the header's blank line,
//! up to `Content-Length` when the server sends one, as received (keepalived
//! neither de-chunks nor decompresses), so `genhash`'s figures carry over.

use std::net::{IpAddr, SocketAddr};

use md5::{Digest, Md5};
use netcfg::model::lb::{StatusCodes, Url};
use netcfg::model::{CheckKind, HealthCheck};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most of a body read for a digest.
const MAX_BODY: usize = 16 << 20;
/// The most of a header read.
const MAX_HEADER: usize = 64 << 10;

/// What a GET returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// MD5 of the body (as keepalived computes it), lowercase hex.
    pub digest: String,
}

/// The URLs a check fetches: `path` (with `expect_status`) first, then `urls`;
/// `/` when it names none.
fn urls(check: &HealthCheck) -> Vec<Url> {
    let mut out = Vec::new();
    if check.path.is_some() || check.urls.is_empty() {
        out.push(Url {
            path: check.path.clone().unwrap_or_else(|| "/".into()),
            status: check
                .expect_status
                .map(|c| vec![StatusCodes::Code(c)])
                .unwrap_or_default(),
            digest: None,
            virtualhost: None,
        });
    }
    out.extend(check.urls.iter().cloned());
    out
}

/// Whether `status` passes `url` (no ranges: 200-299, as keepalived).
fn status_passes(url: &Url, status: u16) -> bool {
    if url.status.is_empty() {
        return (200..=299).contains(&status);
    }
    url.status
        .iter()
        .filter_map(StatusCodes::bounds)
        .any(|(lo, hi)| (lo..=hi).contains(&status))
}

/// GETs every URL of `check` from `addr` in turn; `Err` names the first failure.
pub async fn check_urls(check: &HealthCheck, addr: SocketAddr) -> Result<(), String> {
    for url in urls(check) {
        let vhost = url.virtualhost.as_deref().or(check.virtualhost.as_deref());
        let request = request(&url.path, vhost, addr);
        let want_body = url.digest.is_some();
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let response = if check.kind == CheckKind::Https {
            let name = check.tls_server_name.as_deref().or(vhost);
            let stream = super::tls::connect(check, name, addr.ip(), tcp).await?;
            exchange(stream, &request, want_body).await?
        } else {
            exchange(tcp, &request, want_body).await?
        };
        if !status_passes(&url, response.status) {
            return Err(format!("GET {}: status {}", url.path, response.status));
        }
        if let Some(want) = &url.digest {
            if !want.eq_ignore_ascii_case(&response.digest) {
                return Err(format!(
                    "GET {}: body digest {}, want {want}",
                    url.path, response.digest
                ));
            }
        }
    }
    Ok(())
}

/// keepalived's request: `Host` is the virtual host, else the address and port.
fn request(path: &str, vhost: Option<&str>, addr: SocketAddr) -> String {
    let host = match (vhost, addr.ip()) {
        (Some(v), _) => v.to_string(),
        (None, IpAddr::V4(a)) => format!("{a}:{}", addr.port()),
        (None, IpAddr::V6(a)) => format!("[{a}]:{}", addr.port()),
    };
    format!(
        "GET {path} HTTP/1.0\r\nUser-Agent: vznetd\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
}

/// Sends `request`, reads the answer: the header, and the body when its
/// digest is wanted.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &str,
    want_body: bool,
) -> Result<Response, String> {
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let header_end = find(&buf, b"\r\n\r\n").map(|i| i + 4);
        if let Some(end) = header_end {
            let length = content_length(&buf[..end]);
            let body = buf.len() - end;
            let complete = !want_body || length.is_some_and(|l| body >= l) || body >= MAX_BODY;
            if complete {
                break;
            }
        } else if buf.len() > MAX_HEADER {
            return Err("no end of the HTTP header".into());
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse(&buf).ok_or_else(|| {
        if buf.is_empty() {
            "no answer".to_string()
        } else {
            "no HTTP status line in the answer".to_string()
        }
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `Content-Length` of a header, if it has one.
fn content_length(header: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(header).ok()?;
    text.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })
}

/// Status and digest of a whole answer.
fn parse(buf: &[u8]) -> Option<Response> {
    let status = parse_status_line(buf)?;
    let digest = body_digest(buf);
    Some(Response { status, digest })
}

/// MD5 of an answer's body as keepalived computes it: the bytes after the
/// first blank line, cut at `Content-Length` when given; empty body when there
/// is no blank line.
pub fn body_digest(answer: &[u8]) -> String {
    let body = match find(answer, b"\r\n\r\n") {
        Some(i) => {
            let body = &answer[i + 4..];
            match content_length(&answer[..i + 4]) {
                Some(l) if l < body.len() => &body[..l],
                _ => body,
            }
        }
        None => &[][..],
    };
    Md5::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `HTTP/1.x NNN ...` -> NNN.
fn parse_status_line(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503 Busy\r\nx"), Some(503));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 20x\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[test]
    fn digest_covers_the_body_up_to_content_length() {
        // md5("hello") and md5("") are well known.
        let hello = "5d41402abc4b2a76b9719d911017c592";
        assert_eq!(
            body_digest(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            hello
        );
        assert_eq!(
            body_digest(b"HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nhelloEXTRA"),
            hello
        );
        assert_eq!(body_digest(b"HTTP/1.0 200 OK\r\n\r\nhello"), hello);
        assert_eq!(
            body_digest(b"HTTP/1.0 200 OK\r\n"),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[test]
    fn statuses_default_to_2xx_and_take_ranges() {
        let mut url = Url {
            path: "/".into(),
            status: Vec::new(),
            digest: None,
            virtualhost: None,
        };
        assert!(status_passes(&url, 204));
        assert!(!status_passes(&url, 301));
        url.status = vec![StatusCodes::Code(200), StatusCodes::Range("300-399".into())];
        assert!(status_passes(&url, 302));
        assert!(!status_passes(&url, 204));
    }

    #[test]
    fn requests_name_the_virtual_host_or_the_address() {
        let v6: SocketAddr = "[fd00::1]:8080".parse().expect("addr");
        assert!(request("/x", None, v6).contains("Host: [fd00::1]:8080\r\n"));
        assert!(request("/x", Some("www.example.org"), v6).contains("Host: www.example.org\r\n"));
        assert!(request("/x", None, v6).starts_with("GET /x HTTP/1.0\r\n"));
    }
}
