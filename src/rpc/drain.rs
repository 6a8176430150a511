//! Work that, once started, must be allowed to finish before the process exits: the ingress's
//! forwarded calls. A transaction handed to the upstream EL may be accepted there; its client must
//! hear the answer, so shutdown waits for these calls even past the grace period, while no new
//! one may start once the gate is closed (the caller answers a clear "shutting down" error and
//! nothing more reaches the EL).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Default)]
struct Inner {
    closed: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

/// Shared gate; clones see the same state.
#[derive(Clone, Default)]
pub struct DrainGate(Arc<Inner>);

/// Held while one piece of gated work runs; dropping it (even by cancellation) releases it.
pub struct GateGuard(Arc<Inner>);

impl DrainGate {
    /// An open gate.
    pub fn new() -> Self {
        Self::default()
    }

    /// Enters the gate, or `None` when it is closed (the work must not start).
    pub fn enter(&self) -> Option<GateGuard> {
        self.0.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = GateGuard(self.0.clone());
        if self.0.closed.load(Ordering::SeqCst) {
            return None; // `guard` drops here and undoes the count.
        }
        Some(guard)
    }

    /// Refuses new work from now on.
    pub fn close(&self) {
        self.0.closed.store(true, Ordering::SeqCst);
    }

    /// Work in flight now.
    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::SeqCst)
    }

    /// Resolves once no gated work is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            if self.in_flight() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for GateGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closed_gate_refuses_new_work_and_idle_waits_for_running_work() {
        let gate = DrainGate::new();
        let running = gate.enter().expect("open");
        gate.close();
        assert!(gate.enter().is_none(), "closed");
        assert_eq!(gate.in_flight(), 1, "a refused entry is not counted");
        let waiter = tokio::spawn({
            let g = gate.clone();
            async move { g.idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(running);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("idle resolves")
            .expect("task ok");
    }
}
