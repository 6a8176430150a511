//! Typed JSON-RPC calls to the revalidator over HTTP.

use std::time::Duration;

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Why a call got no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Connection, timeout or HTTP status.
    Transport(String),
    /// A JSON-RPC error answer.
    Rpc {
        /// The code.
        code: i64,
        /// The message.
        message: String,
    },
    /// An answer that is not what the method returns.
    Decode(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(e) => write!(f, "transport: {e}"),
            Self::Rpc { code, message } => write!(f, "rpc error {code}: {message}"),
            Self::Decode(e) => write!(f, "decode: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// One invalid tx of the feed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedEntry {
    /// The tx to drop.
    pub hash: B256,
    /// The supervisor-style code.
    pub code: i64,
    /// Why, in words.
    pub reason: String,
    /// When the revalidator found it (unix seconds).
    pub detected_at: u64,
    /// The failing message, when known.
    #[serde(default)]
    pub data: Option<Value>,
}

/// One page of the feed (`interop_invalidTransactions`, or one push notification).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedPage {
    /// Entries, oldest first.
    pub entries: Vec<FeedEntry>,
    /// The cursor to continue from.
    #[serde(deserialize_with = "quantity")]
    pub cursor: u64,
    /// The oldest cursor still served.
    #[serde(deserialize_with = "quantity")]
    pub oldest_cursor: u64,
    /// Entries may have been missed (cursor older than the history, or from another run).
    pub truncated: bool,
    /// More entries are waiting.
    pub more: bool,
}

fn quantity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    let hex = s.strip_prefix("0x").ok_or_else(|| serde::de::Error::custom("expected 0x hex"))?;
    u64::from_str_radix(hex, 16).map_err(serde::de::Error::custom)
}

/// What `interop_transactionStatus` says about one tx.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionStatus {
    /// The tx.
    pub hash: B256,
    /// Whether the revalidator tracks it (it is an interop tx in the pool).
    pub tracked: bool,
    /// `unchecked`, `valid`, `pending`, `invalid` or `unknown` (no answer; see `reason`).
    #[serde(default)]
    pub status: Option<String>,
    /// Why the latest check got no verdict.
    #[serde(default)]
    pub reason: Option<String>,
    /// The latest verdict (`kind`, `code`, `reason`, `cursor` for an invalid one).
    #[serde(default)]
    pub last_verdict: Option<Value>,
    /// Valid until this executing timestamp.
    #[serde(default)]
    pub valid_until: Option<u64>,
}

/// The executing descriptor of a check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Descriptor {
    /// Executing timestamp.
    pub timestamp: u64,
    /// Seconds the answer must hold for.
    pub timeout: Option<u64>,
    /// Executing chain.
    pub chain_id: Option<u64>,
}

/// The drop-in check's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckOutcome {
    /// `null`: valid for the descriptor.
    Valid,
    /// An error answer: invalid (`-320600` …), not yet known (`-321401`), failsafe (`-320602`),
    /// or no answer from the revalidator's backends (`-32603`: keep the tx).
    Refused {
        /// The code.
        code: i64,
        /// The message.
        message: String,
    },
}

/// The revalidator's HTTP JSON-RPC API.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    /// A client for the revalidator at `url` (`http://host:8561/`), each call bounded by
    /// `timeout`.
    pub fn new(url: impl Into<String>, timeout: Duration) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Transport(e.to_string()))?;
        Ok(Self { http, url: url.into() })
    }

    /// The URL called.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn call(&self, method: &str, params: Value) -> Result<Value, Error> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let resp = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(|e| Error::Transport(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(Error::Transport(format!("HTTP {}", resp.status())));
        }
        let v: Value = resp.json().await.map_err(|e| Error::Decode(e.to_string()))?;
        rpc_result(v)
    }

    /// One page of the feed from `cursor` (`None`: from the oldest kept).
    pub async fn invalid_transactions(&self, cursor: Option<u64>) -> Result<FeedPage, Error> {
        let c = cursor.map(|c| json!(format!("{c:#x}"))).unwrap_or(Value::Null);
        let v = self.call("interop_invalidTransactions", json!([c])).await?;
        serde_json::from_value(v).map_err(|e| Error::Decode(e.to_string()))
    }

    /// `interop_transactionStatus(hash)`.
    pub async fn transaction_status(&self, hash: B256) -> Result<TransactionStatus, Error> {
        let v = self.call("interop_transactionStatus", json!([hash])).await?;
        serde_json::from_value(v).map_err(|e| Error::Decode(e.to_string()))
    }

    /// The drop-in `interop_checkAccessList(inboxEntries, minSafety, descriptor)`.
    pub async fn check_access_list(
        &self,
        inbox_entries: &[B256],
        min_safety: &str,
        d: Descriptor,
    ) -> Result<CheckOutcome, Error> {
        let mut desc = json!({ "timestamp": format!("{:#x}", d.timestamp) });
        if let Some(t) = d.timeout {
            desc["timeout"] = json!(format!("{t:#x}"));
        }
        if let Some(c) = d.chain_id {
            desc["chainID"] = json!(format!("{c:#x}"));
        }
        match self.call("interop_checkAccessList", json!([inbox_entries, min_safety, desc])).await {
            Ok(Value::Null) => Ok(CheckOutcome::Valid),
            Ok(other) => Err(Error::Decode(format!("expected null, got {other}"))),
            Err(Error::Rpc { code, message }) => Ok(CheckOutcome::Refused { code, message }),
            Err(e) => Err(e),
        }
    }
}

/// The `result` of a JSON-RPC answer, or its error.
pub(crate) fn rpc_result(mut v: Value) -> Result<Value, Error> {
    if let Some(e) = v.get("error") {
        return Err(Error::Rpc {
            code: e["code"].as_i64().unwrap_or(0),
            message: e["message"].as_str().unwrap_or("").to_owned(),
        });
    }
    match v.get_mut("result") {
        Some(r) => Ok(r.take()),
        None => Err(Error::Decode("neither result nor error".into())),
    }
}
