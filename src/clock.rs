//! Wall-clock time in unix seconds: the unit of every interop timestamp (executing descriptors,
//! message timestamps, expiry). One function, so every role reads the clock the same way.

/// Unix seconds now (0 if the clock is before the epoch).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
