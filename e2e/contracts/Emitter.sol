// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// Emits logs that serve as initiating messages on the source chain.
contract Emitter {
    event Ping(uint256 indexed n, address indexed from, bytes data);

    function ping(uint256 n, bytes calldata data) external {
        emit Ping(n, msg.sender, data);
    }

    /// Several logs in one transaction, so block-level log indices above 0 are exercised.
    function pingMany(uint256 k, bytes calldata data) external {
        for (uint256 i = 0; i < k; i++) {
            emit Ping(i, msg.sender, data);
        }
    }
}
