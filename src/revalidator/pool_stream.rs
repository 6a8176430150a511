//! Reads a full `txpool_content` answer as it arrives, turning each pending tx object into a
//! [`PoolTx`] at once: the reconciliation of a 1M-tx pool holds the compact txs, not the
//! ~490 MB of JSON [`super::pool::decode_txpool_content`] needs in memory.
//!
//! Same results as that function on the same result: a sender whose value is not a map counts
//! one undecodable, a tx object that does not decode counts one, a tx past `max_txs` counts
//! over-limit without being decoded, and only a result that is not an object with a `pending`
//! map is an error. `queued` is skipped unread. Txs are kept in the order the EL sends them
//! (the slice decoder keeps whichever a hash map yields first), which only matters past
//! `max_txs`. One difference by design: a sender or nonce key the EL repeats keeps every copy
//! here (the slice decoder keeps the last); no EL repeats keys.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::PoolError;
use super::pool::{decode_pool_tx, PoolTx};
use crate::rpc::{RpcClient, StreamedResult};

/// Pending txs kept, undecodable tx objects (or senders), txs over the limit.
pub type Decoded = (Vec<PoolTx>, usize, usize);

/// Calls `txpool_content` on `rpc` and decodes its result while the body streams in.
pub async fn read_txpool_content(rpc: &RpcClient, max_txs: usize) -> Result<Decoded, PoolError> {
    read_to(rpc, max_txs, None).await
}

/// Txs handed over at a time by [`read_txpool_content_batched`] (~0.5 MB of decoded txs).
pub const BATCH: usize = 4096;

/// As [`read_txpool_content`], but the decoded txs go to `batches` [`BATCH`] at a time as the
/// body streams in (waiting while the receiver is behind), so the reader never holds the
/// whole pool; the txs returned are the last, partial batch. The counts cover every tx.
pub async fn read_txpool_content_batched(
    rpc: &RpcClient,
    max_txs: usize,
    batches: tokio::sync::mpsc::Sender<Vec<PoolTx>>,
) -> Result<Decoded, PoolError> {
    read_to(rpc, max_txs, Some(batches)).await
}

/// [`read_txpool_content`] (`batches`: `None`) or [`read_txpool_content_batched`].
pub(super) async fn read_to(
    rpc: &RpcClient,
    max_txs: usize,
    batches: Option<tokio::sync::mpsc::Sender<Vec<PoolTx>>>,
) -> Result<Decoded, PoolError> {
    let content = TxpoolContent { max_txs, batches };
    match rpc.call_streamed("txpool_content", &[(); 0], content).await {
        Ok(decoded) => decoded,
        Err(e) => Err(PoolError::El(e)),
    }
}

/// Decodes a `txpool_content` result (no JSON-RPC envelope) from `reader`; what
/// [`read_txpool_content`] applies to the `result` member.
pub fn decode_txpool_content_from<R: std::io::Read>(
    reader: R,
    max_txs: usize,
) -> Result<Decoded, PoolError> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let decoded = TxpoolContent { max_txs, batches: None }
        .decode(&mut de)
        .map_err(|e| PoolError::Decode(format!("txpool_content: {e}")))?;
    de.end().map_err(|e| PoolError::Decode(format!("txpool_content: {e}")))?;
    decoded
}

/// The `result` of `txpool_content`, decoded into at most `max_txs` txs.
#[derive(Debug, Clone)]
pub struct TxpoolContent {
    /// Txs kept at most; the rest are counted.
    pub max_txs: usize,
    /// Where decoded txs go [`BATCH`] at a time (`None`: all are returned at the end). The
    /// decoder runs on a blocking thread, so it waits for room here without stalling the
    /// runtime; a receiver that is gone gets nothing more (the read is counted to its end).
    pub batches: Option<tokio::sync::mpsc::Sender<Vec<PoolTx>>>,
}

impl StreamedResult for TxpoolContent {
    /// A result of the wrong shape is the EL's answer, not a broken response: it comes back
    /// as [`PoolError::Decode`], like the slice decoder's.
    type Output = Result<Decoded, PoolError>;

    fn decode<'de, D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Output, D::Error> {
        let mut state = State {
            max_txs: self.max_txs,
            txs: Vec::new(),
            kept: 0,
            batches: self.batches,
            abandoned: false,
            bad: 0,
            over: 0,
        };
        let shape = MapOr(Content(&mut state)).deserialize(d)?;
        Ok(match shape {
            Ok(()) => Ok((state.txs, state.bad, state.over)),
            Err(why) => Err(PoolError::Decode(format!("txpool_content: {why}"))),
        })
    }
}

/// What the walk has gathered so far.
struct State {
    max_txs: usize,
    /// Decoded txs not handed over yet.
    txs: Vec<PoolTx>,
    /// Txs kept so far, handed over or not (what `max_txs` bounds).
    kept: usize,
    batches: Option<tokio::sync::mpsc::Sender<Vec<PoolTx>>>,
    /// The receiver of `batches` is gone.
    abandoned: bool,
    bad: usize,
    over: usize,
}

impl State {
    fn keep(&mut self, tx: PoolTx) {
        self.kept += 1;
        if self.abandoned {
            return;
        }
        self.txs.push(tx);
        if self.txs.len() < BATCH {
            return;
        }
        if let Some(to) = &self.batches {
            let batch = std::mem::replace(&mut self.txs, Vec::with_capacity(BATCH));
            // A receiver that is gone takes nothing more: the rest is only counted.
            self.abandoned = to.blocking_send(batch).is_err();
        }
    }
}

/// The part of the walk that reads one JSON object; `Err(why)` when its content is of the
/// wrong shape (the object was still read to its end).
trait OnMap<'de> {
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<Result<(), String>, A::Error>;
}

/// Reads any JSON value: an object goes to `H`, anything else is read to its end and reported
/// as `Err(what it was)`, so one wrong-typed value never aborts the answer.
struct MapOr<H>(H);

impl<'de, H: OnMap<'de>> DeserializeSeed<'de> for MapOr<H> {
    type Value = Result<(), String>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, H: OnMap<'de>> Visitor<'de> for MapOr<H> {
    type Value = Result<(), String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.map(map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err("invalid type: sequence, expected a map".into()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err("invalid type: null, expected a map".into()))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Err(format!("invalid type: boolean `{v}`, expected a map")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Err(format!("invalid type: integer `{v}`, expected a map")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Err(format!("invalid type: integer `{v}`, expected a map")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Err(format!("invalid type: floating point `{v}`, expected a map")))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err("invalid type: string, expected a map".into()))
    }
}

/// The members of the result that matter.
enum Section {
    Pending,
    Queued,
    Other,
}

impl<'de> Deserialize<'de> for Section {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SectionVisitor;
        impl Visitor<'_> for SectionVisitor {
            type Value = Section;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a section name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Section, E> {
                Ok(match v {
                    "pending" => Section::Pending,
                    "queued" => Section::Queued,
                    _ => Section::Other,
                })
            }
        }
        d.deserialize_identifier(SectionVisitor)
    }
}

/// `{"pending": {...}, "queued": {...}}`.
struct Content<'s>(&'s mut State);

impl<'de> OnMap<'de> for Content<'_> {
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Result<(), String>, A::Error> {
        let mut shape = Ok(());
        let (mut pending, mut queued) = (false, false);
        while let Some(section) = map.next_key::<Section>()? {
            match section {
                Section::Pending if !pending => {
                    pending = true;
                    if let Err(why) = map.next_value_seed(MapOr(Pending(&mut *self.0)))? {
                        shape = shape.and(Err(format!("pending: {why}")));
                    }
                }
                Section::Queued if !queued => {
                    queued = true;
                    map.next_value::<IgnoredAny>()?;
                }
                Section::Pending | Section::Queued => {
                    map.next_value::<IgnoredAny>()?;
                    shape = shape.and(Err("a section appears twice".to_string()));
                }
                Section::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(shape)
    }
}

/// `{sender: {nonce: tx}}`: a sender whose value is not a map counts one undecodable.
struct Pending<'s>(&'s mut State);

impl<'de> OnMap<'de> for Pending<'_> {
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Result<(), String>, A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            if map.next_value_seed(MapOr(Sender(&mut *self.0)))?.is_err() {
                self.0.bad += 1;
            }
        }
        Ok(Ok(()))
    }
}

/// `{nonce: tx}`: each tx object is copied out alone (a few hundred bytes) and decoded, so a
/// bad one is counted without aborting the read; past `max_txs` it is counted, not decoded.
struct Sender<'s>(&'s mut State);

impl<'de> OnMap<'de> for Sender<'_> {
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<Result<(), String>, A::Error> {
        let s = self.0;
        while map.next_key::<IgnoredAny>()?.is_some() {
            if s.kept >= s.max_txs {
                map.next_value::<IgnoredAny>()?;
                s.over += 1;
                continue;
            }
            let raw = map.next_value::<Box<RawValue>>()?;
            match decode_pool_tx(raw.get()) {
                Some(tx) => s.keep(tx),
                None => s.bad += 1,
            }
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revalidator::pool::decode_txpool_content;

    /// What both decoders say about one result: the kept hashes (sorted) and the counts, or
    /// that it is an error of the result's shape.
    fn summary(r: Result<Decoded, PoolError>) -> Result<(Vec<String>, usize, usize), String> {
        match r {
            Ok((txs, bad, over)) => {
                let mut h: Vec<String> = txs.iter().map(|t| t.hash.to_string()).collect();
                h.sort();
                Ok((h, bad, over))
            }
            Err(PoolError::Decode(_)) => Err("decode".into()),
            Err(PoolError::El(e)) => Err(format!("el {}", e.kind())),
        }
    }

    fn tx(hash_byte: u8, nonce: u64) -> serde_json::Value {
        serde_json::json!({
            "hash": format!("0x{}", format!("{hash_byte:02x}").repeat(32)),
            "from": "0x1111111111111111111111111111111111111111",
            "nonce": format!("{nonce:#x}"),
            "gas": "0x5208",
            "maxFeePerGas": "0x10",
            "maxPriorityFeePerGas": "0x1",
            "accessList": [],
        })
    }

    #[test]
    fn agrees_with_the_slice_decoder_on_good_and_malformed_results() {
        let s = "0x1111111111111111111111111111111111111111";
        let cases = [
            serde_json::json!({"pending": {s: {"1": tx(1, 1), "2": tx(2, 2)}}, "queued": {}})
                .to_string(),
            // A sender that is not a map, a tx missing fields, a tx that is a number.
            serde_json::json!({"pending": {s: {"1": tx(1, 1), "2": {"hash": "0x12"}, "3": 5},
                "0x22": 7, "0x33": [1, {"a": 2}], "0x44": null, "0x55": "x"},
                "queued": {s: {"9": {"whatever": true}}}})
            .to_string(),
            // Legacy fees, fee fields missing, unknown members anywhere.
            serde_json::json!({"extra": {"pending": 1}, "pending": {s: {
                "1": {"hash": format!("0x{}", "ab".repeat(32)), "from": s, "nonce": "0x1",
                      "gas": "0x1", "gasPrice": "0x2", "x": [null]},
                "2": {"hash": format!("0x{}", "cd".repeat(32)), "from": s, "nonce": "0x2",
                      "gas": "0x1"}}}})
            .to_string(),
            r#"{"queued": {}}"#.into(),
            r#"{}"#.into(),
            r#"{"pending": {}}"#.into(),
            // Shapes that are errors for both.
            r#"[1]"#.into(),
            r#"null"#.into(),
            r#""pending""#.into(),
            r#"{"pending": 5}"#.into(),
            r#"{"pending": null}"#.into(),
            r#"{"pending": [1]}"#.into(),
            r#"{"pending": {}, "pending": {}}"#.into(),
            r#"{"pending": {}, "queued": 1, "queued": 2}"#.into(),
            // Not JSON, truncated, trailing garbage.
            r#"{"pending": {"0x1": {"1": {"hash""#.into(),
            r#"{"pending": {}} x"#.into(),
            r#"{"pending": {"0x1": {"1": tru}}}"#.into(),
        ];
        for json in &cases {
            let slice = summary(decode_txpool_content(json, 10));
            let streamed = summary(decode_txpool_content_from(json.as_bytes(), 10));
            assert_eq!(streamed, slice, "{json}");
        }
        // Past the limit the slice decoder keeps whichever txs its hash map yields first, so
        // only the counts can agree (and only without undecodable txs, which it may or may not
        // reach before the limit).
        for max in [0usize, 1, 2] {
            let count = |r: Result<Decoded, PoolError>| r.map(|(t, b, o)| (t.len(), b, o)).ok();
            assert_eq!(
                count(decode_txpool_content_from(cases[0].as_bytes(), max)),
                count(decode_txpool_content(&cases[0], max)),
                "max_txs {max}"
            );
        }
    }

    #[test]
    fn past_max_txs_the_rest_are_counted_not_decoded() {
        let s = "0x1111111111111111111111111111111111111111";
        let json =
            serde_json::json!({"pending": {s: {"1": tx(1, 1), "2": tx(2, 2), "3": 5}}}).to_string();
        let (txs, bad, over) = decode_txpool_content_from(json.as_bytes(), 1).unwrap();
        assert_eq!((txs.len(), bad, over), (1, 0, 2));
        assert_eq!(txs[0].nonce, 1, "kept in the order the EL sent them");
    }
}
