//! An etcd v3 client over etcd's JSON gateway (`/v3/kv/range`, `/v3/kv/txn`,
//! `/v3/watch`, `/v3/lease/*`): the same API as gRPC, carried as JSON over
//! HTTP/1.1, so the agent needs no HTTP/2, protobuf or code generator (see the
//! README's fleet section for the measurements behind that choice).
//!
//! Endpoints are tried in turn: a member that refuses, times out or answers
//! "unavailable" sends the request to the next one, so a dead member of a
//! three-member cluster changes nothing for the caller.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio_rustls::rustls::ClientConfig;

use super::http::{Connection, HttpError, Lines, Url};

/// Why an etcd request failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No endpoint answered.
    #[error("etcd unreachable ({0})")]
    Unreachable(String),
    /// The server refused the request.
    #[error("etcd: {message} (code {code})")]
    Server {
        /// The gRPC status code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// A watch started below the compacted revision: read everything again.
    #[error("etcd compacted the history up to revision {0}")]
    Compacted(i64),
    /// The answer was not what the API says.
    #[error("unexpected answer from etcd: {0}")]
    Protocol(String),
}

/// gRPC's UNAVAILABLE: the member cannot serve now (no leader, stopping).
const UNAVAILABLE: i64 = 14;

/// A key and its value, with revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Key.
    pub key: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
    /// The revision that created it.
    pub create_revision: i64,
    /// The revision that last changed it.
    pub mod_revision: i64,
    /// Its lease (0: none).
    pub lease: i64,
}

/// The answer to a range read.
#[derive(Debug, Clone, Default)]
pub struct Range {
    /// The store's revision at the read.
    pub revision: i64,
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
}

/// A comparison in a transaction.
#[derive(Debug, Clone)]
pub struct Compare {
    /// The key (or the start of a range).
    pub key: Vec<u8>,
    /// End of the range (exclusive): every key in it must pass.
    pub range_end: Option<Vec<u8>>,
    /// What is compared.
    pub target: Target,
}

/// The comparison itself (`CREATE` 0 means "absent").
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// mod_revision == n (0: absent).
    ModEqual(i64),
    /// mod_revision < n.
    ModLess(i64),
    /// create_revision == n (0: absent).
    CreateEqual(i64),
}

/// A write in a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Put a key.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Lease (0: none).
        lease: i64,
    },
    /// Delete a key.
    Delete {
        /// Key.
        key: Vec<u8>,
    },
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Created or changed.
    Put(KeyValue),
    /// Deleted, at this revision.
    Delete(Vec<u8>, i64),
}

/// The end of the range of all keys that start with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range runs to the end of the key space.
    vec![0]
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(v: &Value) -> Result<Vec<u8>, EtcdError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => B64
            .decode(s)
            .map_err(|e| EtcdError::Protocol(format!("base64: {e}"))),
        other => Err(EtcdError::Protocol(format!("not base64 text: {other}"))),
    }
}

/// An int64 as the JSON mapping writes it: a string, a number, or absent (0).
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn key_value(v: &Value) -> Result<KeyValue, EtcdError> {
    Ok(KeyValue {
        key: unb64(&v["key"])?,
        value: unb64(&v["value"])?,
        create_revision: int(&v["create_revision"]),
        mod_revision: int(&v["mod_revision"]),
        lease: int(&v["lease"]),
    })
}

fn header_revision(v: &Value) -> i64 {
    int(&v["header"]["revision"])
}

impl Compare {
    fn to_json(&self) -> Value {
        let mut c = json!({ "key": b64(&self.key) });
        if let Some(end) = &self.range_end {
            c["range_end"] = json!(b64(end));
        }
        let (target, result, field, n) = match self.target {
            Target::ModEqual(n) => ("MOD", "EQUAL", "mod_revision", n),
            Target::ModLess(n) => ("MOD", "LESS", "mod_revision", n),
            Target::CreateEqual(n) => ("CREATE", "EQUAL", "create_revision", n),
        };
        c["target"] = json!(target);
        c["result"] = json!(result);
        c[field] = json!(n.to_string());
        c
    }
}

impl Op {
    fn to_json(&self) -> Value {
        match self {
            Op::Put { key, value, lease } => {
                json!({ "request_put": { "key": b64(key), "value": b64(value), "lease": lease.to_string() } })
            }
            Op::Delete { key } => json!({ "request_delete_range": { "key": b64(key) } }),
        }
    }
}

/// A client for a list of endpoints.
#[derive(Debug)]
pub struct Client {
    urls: Vec<Url>,
    tls: Option<Arc<ClientConfig>>,
    /// The endpoint tried first.
    current: usize,
    /// The kept-alive connection for unary requests, to `urls[current]`.
    conn: Option<Connection>,
    timeout: Duration,
}

impl Client {
    /// A client of these endpoints; nothing is connected yet. `timeout` bounds
    /// each attempt at each endpoint.
    pub fn new(urls: Vec<Url>, tls: Option<Arc<ClientConfig>>, timeout: Duration) -> Client {
        Client {
            urls,
            tls,
            current: 0,
            conn: None,
            timeout,
        }
    }

    /// The endpoint requests go to now.
    pub fn endpoint(&self) -> Option<&Url> {
        self.urls.get(self.current)
    }

    /// One unary request: POST `path` with `body`, trying each endpoint once.
    async fn call(&mut self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let body = serde_json::to_vec(body).map_err(|e| EtcdError::Protocol(e.to_string()))?;
        let mut errors = Vec::new();
        for _ in 0..self.urls.len().max(1) {
            let Some(url) = self.urls.get(self.current).cloned() else {
                return Err(EtcdError::Unreachable("no endpoints".into()));
            };
            match self.attempt(&url, path, &body).await {
                Ok(v) => return Ok(v),
                Err(Attempt::Server(code, message)) if code != UNAVAILABLE => {
                    return Err(EtcdError::Server { code, message })
                }
                Err(Attempt::Server(_, message)) => errors.push(format!("{url}: {message}")),
                Err(Attempt::Transport(e)) => errors.push(format!("{url}: {e}")),
            }
            self.conn = None;
            self.current = (self.current + 1) % self.urls.len();
        }
        Err(EtcdError::Unreachable(errors.join("; ")))
    }

    async fn attempt(&mut self, url: &Url, path: &str, body: &[u8]) -> Result<Value, Attempt> {
        let timeout = self.timeout;
        let run = async {
            if self.conn.is_none() {
                self.conn = Some(Connection::open(url, self.tls.as_ref(), timeout).await?);
            }
            let conn = self
                .conn
                .as_mut()
                .ok_or_else(|| HttpError::Protocol("no connection".into()))?;
            let (status, framing) = conn.post(path, body).await?;
            let bytes = conn.body(framing).await?;
            Ok::<_, HttpError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| Attempt::Transport(HttpError::Timeout(timeout)))?
            .map_err(Attempt::Transport)?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            Attempt::Transport(HttpError::Protocol(format!("{path}: not JSON: {e}")))
        })?;
        if status == 200 {
            return Ok(v);
        }
        Err(Attempt::Server(
            int(&v["code"]),
            v["message"]
                .as_str()
                .or(v["error"].as_str())
                .map_or_else(|| format!("HTTP {status}"), str::to_string),
        ))
    }

    /// Every key that starts with `prefix`, with the store's revision.
    pub async fn range_prefix(&mut self, prefix: &[u8]) -> Result<Range, EtcdError> {
        self.range_prefix_at(prefix, 0).await
    }

    /// [`Client::range_prefix`] as of `revision` (0: now). A compacted
    /// revision is [`EtcdError::Compacted`].
    pub async fn range_prefix_at(
        &mut self,
        prefix: &[u8],
        revision: i64,
    ) -> Result<Range, EtcdError> {
        let body = json!({
            "key": b64(prefix),
            "range_end": b64(&prefix_end(prefix)),
            "revision": revision.to_string(),
        });
        let v = match self.call("/v3/kv/range", &body).await {
            Err(EtcdError::Server { code: 11, message }) if message.contains("compacted") => {
                return Err(EtcdError::Compacted(revision))
            }
            other => other?,
        };
        let kvs = match v["kvs"].as_array() {
            Some(list) => list.iter().map(key_value).collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(Range {
            revision: header_revision(&v),
            kvs,
        })
    }

    /// Runs `success` if every comparison holds, else nothing; returns whether
    /// it ran and the store's revision after it.
    pub async fn txn(
        &mut self,
        compare: &[Compare],
        success: &[Op],
    ) -> Result<(bool, i64), EtcdError> {
        let body = json!({
            "compare": compare.iter().map(Compare::to_json).collect::<Vec<_>>(),
            "success": success.iter().map(Op::to_json).collect::<Vec<_>>(),
        });
        let v = self.call("/v3/kv/txn", &body).await?;
        Ok((
            v["succeeded"].as_bool().unwrap_or(false),
            header_revision(&v),
        ))
    }

    /// Puts one key; returns the revision of the write.
    pub async fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<i64, EtcdError> {
        let v = self
            .call(
                "/v3/kv/put",
                &json!({ "key": b64(key), "value": b64(value), "lease": lease.to_string() }),
            )
            .await?;
        Ok(header_revision(&v))
    }

    /// A lease of `ttl` seconds; returns its id.
    pub async fn lease_grant(&mut self, ttl: u64) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))
            .await?;
        if let Some(e) = v["error"].as_str().filter(|e| !e.is_empty()) {
            return Err(EtcdError::Server {
                code: 0,
                message: e.to_string(),
            });
        }
        match int(&v["ID"]) {
            0 => Err(EtcdError::Protocol("lease grant without an id".into())),
            id => Ok(id),
        }
    }

    /// Renews a lease; returns its TTL, 0 when it has expired.
    pub async fn lease_keepalive(&mut self, id: i64) -> Result<i64, EtcdError> {
        let v = self
            .call("/v3/lease/keepalive", &json!({ "ID": id.to_string() }))
            .await?;
        Ok(int(&v["result"]["TTL"]))
    }

    /// Ends a lease now (its keys go with it).
    pub async fn lease_revoke(&mut self, id: i64) -> Result<(), EtcdError> {
        self.call("/v3/lease/revoke", &json!({ "ID": id.to_string() }))
            .await
            .map(drop)
    }

    /// Compacts the history up to `revision` (tests and maintenance).
    pub async fn compact(&mut self, revision: i64) -> Result<(), EtcdError> {
        self.call(
            "/v3/kv/compaction",
            &json!({ "revision": revision.to_string(), "physical": true }),
        )
        .await
        .map(drop)
    }

    /// Watches every key under `prefix` from `start_revision` on, on a
    /// connection of its own. The watch is created when this returns.
    pub async fn watch(&mut self, prefix: &[u8], start_revision: i64) -> Result<Watch, EtcdError> {
        let body = serde_json::to_vec(&json!({ "create_request": {
            "key": b64(prefix),
            "range_end": b64(&prefix_end(prefix)),
            "start_revision": start_revision.to_string(),
        }}))
        .map_err(|e| EtcdError::Protocol(e.to_string()))?;
        let mut errors = Vec::new();
        for _ in 0..self.urls.len().max(1) {
            let Some(url) = self.urls.get(self.current).cloned() else {
                return Err(EtcdError::Unreachable("no endpoints".into()));
            };
            match self.open_watch(&url, &body).await {
                Ok(w) => return Ok(w),
                Err(EtcdError::Compacted(r)) => return Err(EtcdError::Compacted(r)),
                Err(e) => errors.push(format!("{url}: {e}")),
            }
            self.conn = None;
            self.current = (self.current + 1) % self.urls.len();
        }
        Err(EtcdError::Unreachable(errors.join("; ")))
    }

    async fn open_watch(&mut self, url: &Url, body: &[u8]) -> Result<Watch, EtcdError> {
        let timeout = self.timeout;
        let tls = self.tls.clone();
        let open = async {
            let mut conn = Connection::open(url, tls.as_ref(), timeout).await?;
            let (status, framing) = conn.post("/v3/watch", body).await?;
            Ok::<_, HttpError>((status, conn.into_lines(framing)))
        };
        let (status, lines) = tokio::time::timeout(timeout, open)
            .await
            .map_err(|_| EtcdError::Unreachable(format!("timed out after {timeout:?}")))?
            .map_err(|e| EtcdError::Unreachable(e.to_string()))?;
        if status != 200 {
            return Err(EtcdError::Unreachable(format!("watch: HTTP {status}")));
        }
        let mut watch = Watch { lines };
        // The first message confirms the watch (or says it is compacted).
        match tokio::time::timeout(timeout, watch.message()).await {
            Err(_) => Err(EtcdError::Unreachable("watch not confirmed".into())),
            Ok(Err(e)) => Err(e),
            Ok(Ok(m)) if m["result"]["created"].as_bool() == Some(true) => {
                let compacted = int(&m["result"]["compact_revision"]);
                if m["result"]["canceled"].as_bool() == Some(true) && compacted > 0 {
                    return Err(EtcdError::Compacted(compacted));
                }
                Ok(watch)
            }
            Ok(Ok(m)) => {
                let compacted = int(&m["result"]["compact_revision"]);
                if compacted > 0 {
                    return Err(EtcdError::Compacted(compacted));
                }
                Err(EtcdError::Protocol(format!("watch not created: {m}")))
            }
        }
    }
}

enum Attempt {
    Server(i64, String),
    Transport(HttpError),
}

/// A live watch.
#[derive(Debug)]
pub struct Watch {
    lines: Lines,
}

impl Watch {
    async fn message(&mut self) -> Result<Value, EtcdError> {
        let line = self
            .lines
            .next()
            .await
            .map_err(|e| EtcdError::Unreachable(format!("watch: {e}")))?
            .ok_or_else(|| EtcdError::Unreachable("watch stream ended".into()))?;
        let v: Value = serde_json::from_slice(&line)
            .map_err(|e| EtcdError::Protocol(format!("watch message: {e}")))?;
        if let Some(err) = v.get("error") {
            return Err(EtcdError::Unreachable(format!("watch: {err}")));
        }
        Ok(v)
    }

    /// The next batch of events (never empty), with the store's revision.
    pub async fn next(&mut self) -> Result<(i64, Vec<Event>), EtcdError> {
        loop {
            let v = self.message().await?;
            let r = &v["result"];
            let compacted = int(&r["compact_revision"]);
            if compacted > 0 {
                return Err(EtcdError::Compacted(compacted));
            }
            if r["canceled"].as_bool() == Some(true) {
                let why = r["cancel_reason"].as_str().unwrap_or("canceled");
                return Err(EtcdError::Unreachable(format!("watch canceled: {why}")));
            }
            let Some(list) = r["events"].as_array() else {
                continue;
            };
            let mut events = Vec::with_capacity(list.len());
            for e in list {
                let kv = key_value(&e["kv"])?;
                // PUT is the enum's zero, which the JSON mapping leaves out.
                if e["type"].as_str() == Some("DELETE") {
                    events.push(Event::Delete(kv.key, kv.mod_revision));
                } else {
                    events.push(Event::Put(kv));
                }
            }
            if !events.is_empty() {
                return Ok((header_revision(r), events));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_increment_the_last_byte_that_can_be() {
        assert_eq!(
            prefix_end(b"/vznet/v1/hosts/a/"),
            b"/vznet/v1/hosts/a0".to_vec()
        );
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn the_json_mapping_of_int64_and_absent_fields_is_read() {
        let v = json!({ "header": { "revision": "42" }, "kvs": [
            { "key": b64(b"k"), "value": b64(b"v"), "mod_revision": "7", "create_revision": 3 }
        ]});
        assert_eq!(header_revision(&v), 42);
        let kv = key_value(&v["kvs"][0]).expect("decodes");
        assert_eq!(
            kv,
            KeyValue {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                create_revision: 3,
                mod_revision: 7,
                lease: 0
            }
        );
        let c = Compare {
            key: b"k".to_vec(),
            range_end: None,
            target: Target::CreateEqual(0),
        }
        .to_json();
        assert_eq!(c["target"], "CREATE");
        assert_eq!(c["create_revision"], "0");
    }
}
