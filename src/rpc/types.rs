//! JSON-RPC 2.0 wire types. Ids and results are kept as raw JSON so that a proxy echoes them
//! byte for byte (a `u64` id is too narrow: ids may be any number, a string or null).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

use super::codes;

/// A JSON-RPC error object, plus nothing else: the HTTP status is derived from the code
/// ([`codes::http_status`]) so the two can never disagree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (code {code})")]
pub struct RpcError {
    /// The JSON-RPC error code.
    pub code: i64,
    /// A sentence saying what failed.
    pub message: String,
    /// Machine-readable details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

impl RpcError {
    /// An error with a code and a message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    /// Adds machine-readable details.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    /// -32700.
    pub fn parse_error(detail: impl std::fmt::Display) -> Self {
        Self::new(codes::PARSE_ERROR, format!("parse error: {detail}"))
    }

    /// -32600.
    pub fn invalid_request(detail: impl std::fmt::Display) -> Self {
        Self::new(codes::INVALID_REQUEST, format!("invalid request: {detail}"))
    }

    /// -32601, naming the method.
    pub fn method_not_found(method: &str) -> Self {
        Self::new(
            codes::METHOD_NOT_FOUND,
            format!("method {method:?} is not available on this endpoint"),
        )
    }

    /// -32602.
    pub fn invalid_params(detail: impl std::fmt::Display) -> Self {
        Self::new(codes::INVALID_PARAMS, format!("invalid params: {detail}"))
    }

    /// -32603.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(codes::INTERNAL_ERROR, detail.to_string())
    }

    /// The HTTP status for a single-request answer carrying this error.
    pub fn http_status(&self) -> axum::http::StatusCode {
        codes::http_status(self.code)
    }
}

/// One request object as it arrived, before validation. `id` is `None` when the member is
/// absent (a notification) and `Some("null")` when it is an explicit null.
#[derive(Debug, Deserialize)]
pub struct RawRequest {
    /// Must be "2.0".
    #[serde(default)]
    pub jsonrpc: Option<Box<RawValue>>,
    /// The method name.
    #[serde(default)]
    pub method: Option<Box<RawValue>>,
    /// Positional or named params.
    #[serde(default)]
    pub params: Option<Box<RawValue>>,
    /// The id, raw; see the type doc for absent vs null.
    #[serde(default, deserialize_with = "present")]
    pub id: Option<Box<RawValue>>,
}

/// Deserializes a present member (including `null`) as `Some`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// A validated call: what a handler sees.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method name.
    pub method: String,
    /// The params, raw (`None` when absent).
    pub params: Option<Box<RawValue>>,
}

impl Call {
    /// Decodes positional params into a tuple or struct, answering -32602 on mismatch.
    pub fn parse_params<T: for<'de> Deserialize<'de>>(&self) -> Result<T, RpcError> {
        let raw = self.params.as_ref().map(|p| p.get()).unwrap_or("[]");
        serde_json::from_str(raw).map_err(RpcError::invalid_params)
    }
}

/// A response object; `id` is echoed raw.
#[derive(Debug, Serialize)]
pub struct Response<'a> {
    /// Always "2.0".
    pub jsonrpc: &'static str,
    /// The result on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<&'a RawValue>,
    /// The error on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a RpcError>,
    /// The request's id, exactly as sent (null when it could not be read).
    pub id: &'a RawValue,
}

/// The raw JSON `null`.
pub fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("null is valid JSON")
}

/// Serializes a value into a raw JSON value.
pub fn to_raw<T: Serialize + ?Sized>(v: &T) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).unwrap_or_else(|_| null())
}
