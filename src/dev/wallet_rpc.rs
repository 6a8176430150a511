//! The JSON shapes a wallet needs from a chain, for the simulated chain ([`super::chain`]): tx
//! objects, receipts, gas estimates and fee history, built from the raw signed transactions the
//! chain received. With these, viem's `walletClient.sendTransaction` (nonce, fees, gas, send,
//! wait for the receipt) works against `interop-gate dev` unchanged.
//!
//! The simulation executes nothing: every included tx succeeds, uses its intrinsic gas and emits
//! no logs; balances are large and constant.

use alloy_consensus::{Transaction, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, Bytes, B256};
use serde_json::{json, Value};

/// The base fee every simulated block reports (1 gwei), also the gas price and the tip.
pub const BASE_FEE: u128 = 1_000_000_000;
/// The balance every account has (100 ether).
pub const BALANCE: u128 = 100_000_000_000_000_000_000;

/// Where an included tx sits.
#[derive(Debug, Clone, Copy)]
pub struct Inclusion {
    /// Block number.
    pub number: u64,
    /// Block hash.
    pub hash: B256,
    /// Index of the tx in the block.
    pub index: usize,
}

fn hex(n: impl Into<u128>) -> String {
    format!("{:#x}", n.into())
}

/// Intrinsic gas of a call: 21000, calldata (16 per non-zero byte, 4 per zero byte) and the
/// access list (2400 per address, 1900 per storage key), as EIP-2028 and EIP-2930 price them.
pub fn intrinsic_gas(input: &[u8], addresses: usize, keys: usize) -> u64 {
    let data: u64 = input.iter().map(|b| if *b == 0 { 4 } else { 16 }).sum();
    21_000 + data + 2_400 * addresses as u64 + 1_900 * keys as u64
}

/// `eth_estimateGas(tx)`: the intrinsic gas of the call object.
pub fn estimate_gas(call: &Value) -> Value {
    let input = call
        .get("input")
        .or_else(|| call.get("data"))
        .and_then(|v| serde_json::from_value::<Bytes>(v.clone()).ok())
        .unwrap_or_default();
    let (addresses, keys) = call
        .get("accessList")
        .and_then(Value::as_array)
        .map(|items| {
            let keys = items
                .iter()
                .map(|i| i.get("storageKeys").and_then(Value::as_array).map_or(0, Vec::len))
                .sum();
            (items.len(), keys)
        })
        .unwrap_or((0, 0));
    json!(hex(intrinsic_gas(&input, addresses, keys)))
}

/// `eth_feeHistory(count, newest, percentiles)` over `head` blocks: constant base fee and tips.
pub fn fee_history(count: &Value, newest: u64, percentiles: &Value) -> Value {
    let count = match count {
        Value::Number(n) => n.as_u64().unwrap_or(1),
        Value::String(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or(1),
        _ => 1,
    }
    .clamp(1, 1024)
    .min(newest + 1);
    let rewards = percentiles.as_array().map_or(0, Vec::len);
    json!({
        "oldestBlock": hex(newest + 1 - count),
        "baseFeePerGas": vec![hex(BASE_FEE); count as usize + 1],
        "gasUsedRatio": vec![0.0; count as usize],
        "reward": vec![vec![hex(BASE_FEE); rewards]; count as usize],
    })
}

/// The tx object (`eth_getTransactionByHash`) of a raw signed tx from `from`.
pub fn tx_json(raw: &[u8], from: Address, at: Option<Inclusion>) -> Option<Value> {
    let tx = TxEnvelope::decode_2718(&mut &raw[..]).ok()?;
    let sig = tx.signature();
    let mut v = json!({
        "hash": tx.tx_hash(),
        "type": hex(u8::from(tx.tx_type())),
        "from": from,
        "to": tx.to(),
        "nonce": hex(tx.nonce()),
        "gas": hex(tx.gas_limit()),
        "value": format!("{:#x}", tx.value()),
        "input": tx.input(),
        "gasPrice": hex(tx.gas_price().unwrap_or(BASE_FEE + tx.max_priority_fee_per_gas().unwrap_or(0))),
        "r": format!("{:#x}", sig.r()),
        "s": format!("{:#x}", sig.s()),
        "v": hex(u8::from(sig.v())),
        "yParity": hex(u8::from(sig.v())),
        "blockHash": at.map(|a| a.hash),
        "blockNumber": at.map(|a| hex(a.number)),
        "transactionIndex": at.map(|a| hex(a.index as u64)),
    });
    if let Some(id) = tx.chain_id() {
        v["chainId"] = json!(hex(id));
    }
    if let Some(al) = tx.access_list() {
        v["accessList"] = json!(al);
    }
    if tx.is_dynamic_fee() {
        v["maxFeePerGas"] = json!(hex(tx.max_fee_per_gas()));
        v["maxPriorityFeePerGas"] = json!(hex(tx.max_priority_fee_per_gas().unwrap_or(0)));
    }
    Some(v)
}

/// The receipt (`eth_getTransactionReceipt`) of an included raw tx: success, intrinsic gas used.
pub fn receipt_json(raw: &[u8], from: Address, at: Inclusion) -> Option<Value> {
    let tx = TxEnvelope::decode_2718(&mut &raw[..]).ok()?;
    let al = tx.access_list();
    let gas = intrinsic_gas(
        tx.input(),
        al.map_or(0, |l| l.0.len()),
        al.map_or(0, |l| l.0.iter().map(|i| i.storage_keys.len()).sum()),
    )
    .min(tx.gas_limit());
    let price = tx.effective_gas_price(Some(BASE_FEE as u64));
    Some(json!({
        "transactionHash": tx.tx_hash(),
        "transactionIndex": hex(at.index as u64),
        "blockHash": at.hash,
        "blockNumber": hex(at.number),
        "from": from,
        "to": tx.to(),
        "cumulativeGasUsed": hex(gas),
        "gasUsed": hex(gas),
        "effectiveGasPrice": hex(price),
        "contractAddress": Value::Null,
        "logs": [],
        "logsBloom": format!("0x{}", "00".repeat(256)),
        "status": "0x1",
        "type": hex(u8::from(tx.tx_type())),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gas_and_fee_history_shapes() {
        assert_eq!(estimate_gas(&json!({"to": Address::ZERO})), json!("0x5208"));
        let al = json!({"accessList": [{"address": Address::ZERO, "storageKeys": [B256::ZERO, B256::ZERO]}], "data": "0x0001"});
        assert_eq!(estimate_gas(&al), json!(hex(21_000u64 + 4 + 16 + 2_400 + 3_800)));
        let h = fee_history(&json!("0x4"), 2, &json!([25, 75]));
        assert_eq!(h["oldestBlock"], "0x0", "never before genesis");
        assert_eq!(h["baseFeePerGas"].as_array().unwrap().len(), 4);
        assert_eq!(h["reward"][0].as_array().unwrap().len(), 2);
    }
}
