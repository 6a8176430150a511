//! A JSON-RPC call whose `result` is decoded while the body arrives, for answers too large to
//! hold whole (a sequencer's `txpool_content` is ~490 bytes per tx: ~490 MB at 1M txs).
//!
//! The HTTP body is read on the async side, chunk by chunk, into a bounded channel; a blocking
//! task runs `serde_json`'s reader-based deserializer over that channel and hands the `result`
//! member to a caller-supplied [`StreamedResult`], which turns it into something compact as it
//! goes. Memory is the caller's output plus a few chunks in flight, not the body. Every bound
//! of [`RpcClient::call_raw`] holds: the body limit is counted as chunks arrive, the timeout
//! covers connect, body and decode, and the answer is classified the same way (wrong id,
//! `jsonrpc` not "2.0", an `error` object, both or neither of `result`/`error`).

use std::io::{self, BufRead, BufReader, Read};
use std::time::Instant;

use bytes::{Buf, Bytes};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::client::{ClientError, RpcClient};
use super::types::RpcError;

/// Body chunks buffered between the HTTP reader and the decoder (hyper hands over at most a
/// read buffer's worth per chunk, so this bounds what is in flight to a few MB at worst).
const CHUNKS_IN_FLIGHT: usize = 16;

/// What the decoder reads through: the channel's chunks, buffered for `serde_json`'s
/// byte-at-a-time reads.
const READ_BUFFER: usize = 64 * 1024;

/// Decodes the `result` member of one answer from a streaming deserializer.
///
/// An error returned here makes the whole answer undecodable ([`ClientError::Decode`]); a
/// result of the wrong shape that the caller wants to report on its own terms belongs in
/// `Output` instead (the rest of the answer is still read and checked).
pub trait StreamedResult: Send + 'static {
    /// What the result becomes.
    type Output: Send + 'static;

    /// Consumes exactly one JSON value from `d`.
    fn decode<'de, D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Output, D::Error>;
}

impl RpcClient {
    /// Calls `method` and decodes its result with `sink` as the body streams in. Same metrics,
    /// span, bounds and error classes as [`RpcClient::call_raw`].
    pub async fn call_streamed<P, S>(
        &self,
        method: &str,
        params: &P,
        sink: S,
    ) -> Result<S::Output, ClientError>
    where
        P: Serialize + ?Sized,
        S: StreamedResult,
    {
        let (id, body) = self.request(method, params)?;
        let (target, endpoint) = self.labels();
        let span =
            tracing::debug_span!("rpc_call", target, endpoint = %endpoint, method, streamed = true);
        let start = Instant::now();
        let result = self.bounded(self.stream_answer(id, body, sink)).instrument(span).await;
        // As for `call_raw`, the metric counts the exchange: a body that was read in full is
        // `ok` even when what it said was malformed or a JSON-RPC error (the caller counts those).
        let exchange = result
            .as_ref()
            .err()
            .filter(|e| !matches!(e, ClientError::Decode { .. } | ClientError::Rpc { .. }));
        self.record(start, exchange);
        result
    }

    async fn stream_answer<S: StreamedResult>(
        &self,
        id: u64,
        body: Vec<u8>,
        sink: S,
    ) -> Result<S::Output, ClientError> {
        let mut resp = self.open(body).await?;
        let (tx, rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
        // If this future is dropped (timeout) or returns early, `tx` goes with it: the decoder
        // sees the end of its input, fails, and its thread is free again.
        let decoder = tokio::task::spawn_blocking(move || {
            decode_answer(BufReader::with_capacity(READ_BUFFER, ChannelReader::new(rx)), sink)
        });
        let limit = self.max_response_bytes();
        let mut read = 0usize;
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_err(e))? {
            read = read.saturating_add(chunk.len());
            if read > limit {
                return Err(self.too_large());
            }
            if tx.send(chunk).await.is_err() {
                // The decoder stopped (a malformed answer): its error says why.
                break;
            }
        }
        drop(tx);
        let answer = decoder
            .await
            .map_err(|e| self.decode_err(format!("decoder task: {e}")))?
            .map_err(|e| self.decode_err(format!("not a JSON-RPC response: {e}")))?;
        self.check_id(id, answer.id.as_ref())?;
        self.answer(answer.jsonrpc, answer.result, answer.error)
    }
}

/// A `std::io::Read` over the body chunks sent by the async side; the end of the channel is the
/// end of the body.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        Self { rx, current: Bytes::new() }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// The members of one answer; `result` already decoded.
struct Answer<T> {
    jsonrpc: Option<String>,
    id: Option<serde_json::Value>,
    result: Option<T>,
    error: Option<RpcError>,
}

/// Decodes one whole answer (nothing but whitespace may follow it) from `reader`.
fn decode_answer<R: BufRead, S: StreamedResult>(
    reader: R,
    sink: S,
) -> serde_json::Result<Answer<S::Output>> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let answer = AnswerSeed(sink).deserialize(&mut de)?;
    de.end()?;
    Ok(answer)
}

struct AnswerSeed<S>(S);

impl<'de, S: StreamedResult> DeserializeSeed<'de> for AnswerSeed<S> {
    type Value = Answer<S::Output>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(AnswerVisitor(self.0))
    }
}

/// The members of an answer, by name.
enum Member {
    Jsonrpc,
    Id,
    Result,
    Error,
    Other,
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MemberVisitor;
        impl Visitor<'_> for MemberVisitor {
            type Value = Member;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Member, E> {
                Ok(match v {
                    "jsonrpc" => Member::Jsonrpc,
                    "id" => Member::Id,
                    "result" => Member::Result,
                    "error" => Member::Error,
                    _ => Member::Other,
                })
            }
        }
        d.deserialize_identifier(MemberVisitor)
    }
}

struct AnswerVisitor<S>(S);

/// Hands the sink to the deserializer for the `result` member.
struct ResultSeed<S>(S);

impl<'de, S: StreamedResult> DeserializeSeed<'de> for ResultSeed<S> {
    type Value = S::Output;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.0.decode(d)
    }
}

impl<'de, S: StreamedResult> Visitor<'de> for AnswerVisitor<S> {
    type Value = Answer<S::Output>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON-RPC response object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut sink = Some(self.0);
        let (mut jsonrpc, mut id, mut result, mut error) = (None, None, None, None);
        // Members as `call_raw`'s answer type reads them: a repeated one is malformed, `null`
        // for jsonrpc/id/error is absent, an explicit `"result": null` is a result.
        let (mut seen_jsonrpc, mut seen_id, mut seen_error) = (false, false, false);
        while let Some(member) = map.next_key::<Member>()? {
            match member {
                Member::Jsonrpc => {
                    once(&mut seen_jsonrpc, "jsonrpc")?;
                    jsonrpc = map.next_value::<Option<String>>()?;
                }
                Member::Id => {
                    once(&mut seen_id, "id")?;
                    id = map.next_value::<Option<serde_json::Value>>()?;
                }
                Member::Error => {
                    once(&mut seen_error, "error")?;
                    error = map.next_value::<Option<RpcError>>()?;
                }
                Member::Result => {
                    let sink = sink.take().ok_or_else(|| de::Error::duplicate_field("result"))?;
                    result = Some(map.next_value_seed(ResultSeed(sink))?);
                }
                Member::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Answer { jsonrpc, id, result, error })
    }
}

fn once<E: de::Error>(seen: &mut bool, name: &'static str) -> Result<(), E> {
    if std::mem::replace(seen, true) {
        return Err(E::duplicate_field(name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the result as a `serde_json::Value`.
    struct AsValue;

    impl StreamedResult for AsValue {
        type Output = serde_json::Value;
        fn decode<'de, D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Output, D::Error> {
            serde_json::Value::deserialize(d)
        }
    }

    fn decode(body: &str) -> serde_json::Result<Answer<serde_json::Value>> {
        decode_answer(io::Cursor::new(body.as_bytes().to_vec()), AsValue)
    }

    #[test]
    fn members_in_any_order_and_unknown_ones_skipped() {
        let a = decode(r#"{"result":{"a":[1]},"x":{"y":2},"id":7,"jsonrpc":"2.0"}"#).unwrap();
        assert_eq!(a.jsonrpc.as_deref(), Some("2.0"));
        assert_eq!(a.id, Some(serde_json::json!(7)));
        assert_eq!(a.result, Some(serde_json::json!({"a": [1]})));
        assert!(a.error.is_none());
        let a = decode(r#"{"jsonrpc":"2.0","id":1,"result":null}"#).unwrap();
        assert_eq!(a.result, Some(serde_json::Value::Null), "an explicit null is a result");
    }

    #[test]
    fn repeated_members_trailing_garbage_and_truncation_are_malformed() {
        assert!(decode(r#"{"jsonrpc":"2.0","id":1,"result":1,"result":2}"#).is_err());
        assert!(decode(r#"{"jsonrpc":"2.0","id":1,"id":1,"result":1}"#).is_err());
        assert!(decode(r#"{"jsonrpc":"2.0","id":1,"result":1} x"#).is_err());
        assert!(decode(r#"{"jsonrpc":"2.0","id":1,"result":{"a":"#).is_err());
        assert!(decode(r#"[{"jsonrpc":"2.0","id":1,"result":1}]"#).is_err());
    }

    #[test]
    fn channel_reader_reads_across_chunks_and_ends_with_the_channel() {
        let (tx, rx) = mpsc::channel(4);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            tx.send(Bytes::from_static(b"{\"jsonrpc\":")).await.unwrap();
            tx.send(Bytes::from_static(b"\"2.0\",\"id\":3,")).await.unwrap();
            tx.send(Bytes::from_static(b"\"result\":[1,2]}")).await.unwrap();
        });
        drop(tx);
        let a = decode_answer(BufReader::new(ChannelReader::new(rx)), AsValue).unwrap();
        assert_eq!(a.result, Some(serde_json::json!([1, 2])));
    }
}
