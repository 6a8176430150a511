//! How the two backends combine. Fail closed: nothing is valid unless the backends the policy
//! requires said so.
//!
//! | policy  | verdict |
//! |---------|---------|
//! | both    | failsafe from either → failsafe; a definitive invalid from either → invalid (a split with a valid is counted and logged); both valid → valid; else not-yet-known if either says so; else unavailable |
//! | either  | failsafe → failsafe; one valid → valid; else the worse of the two (invalid, not-yet-known, unavailable) |
//! | indexed / light | that backend alone |
//! | shadow  | the primary decides; the other is asked in the background and split verdicts are counted and logged |

use futures::future::BoxFuture;

use super::{Backend, CheckRequest, DynBackend, Verdict};
use crate::config::{PolicyMode, ShadowPrimary};
use crate::metrics::metrics;

/// The policy layer.
pub struct Policy {
    mode: PolicyMode,
    primary: DynBackend,
    secondary: Option<DynBackend>,
}

/// Why a policy cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("validation.policy = {policy:?} needs the {missing} backend ({hint})")]
pub struct PolicyError {
    policy: PolicyMode,
    missing: &'static str,
    hint: &'static str,
}

fn record(component: &'static str, v: &Verdict) {
    metrics().verdicts.with_label_values(&[component, v.kind(), v.reason_label()]).inc();
}

async fn ask(b: &DynBackend, reqs: &[CheckRequest]) -> Vec<Verdict> {
    let verdicts = b.check_batch(reqs).await;
    for v in &verdicts {
        record(b.name(), v);
    }
    verdicts
}

fn split(a: &Verdict, b: &Verdict, req: &CheckRequest, kind: &'static str) {
    metrics().disagreements.with_label_values(&[kind]).inc();
    tracing::warn!(
        messages = req.messages.len(),
        first = ?req.messages.first(),
        indexed = ?a,
        light = ?b,
        "backends disagree"
    );
}

/// `both`: see the module table.
pub fn combine_both(a: Verdict, b: Verdict, req: &CheckRequest) -> Verdict {
    if a.is_failsafe() {
        return a;
    }
    if b.is_failsafe() {
        return b;
    }
    match (&a, &b) {
        (Verdict::Valid { until: x }, Verdict::Valid { until: y }) => {
            Verdict::Valid { until: (*x).min(*y) }
        }
        (Verdict::Invalid(_), other) | (other, Verdict::Invalid(_)) => {
            if other.is_valid() {
                split(&a, &b, req, "backends_split");
            }
            match (&a, &b) {
                // Both invalid: keep the one that names the failing message.
                (Verdict::Invalid(x), Verdict::Invalid(y))
                    if x.message.is_none() && y.message.is_some() =>
                {
                    b
                }
                (Verdict::Invalid(_), _) => a,
                _ => b,
            }
        }
        (Verdict::NotYetKnown(_), _) => a,
        (_, Verdict::NotYetKnown(_)) => b,
        (Verdict::Unavailable(_), _) => a,
        (_, Verdict::Unavailable(_)) => b,
    }
}

/// `either`: see the module table.
pub fn combine_either(a: Verdict, b: Verdict) -> Verdict {
    if a.is_failsafe() {
        return a;
    }
    if b.is_failsafe() {
        return b;
    }
    let rank = |v: &Verdict| match v {
        Verdict::Valid { .. } => 0,
        Verdict::Invalid(_) => 1,
        Verdict::NotYetKnown(_) => 2,
        Verdict::Unavailable(_) => 3,
    };
    if rank(&a) <= rank(&b) {
        a
    } else {
        b
    }
}

impl Policy {
    /// `indexed` and `light` are the two backends, when configured.
    pub fn new(
        mode: PolicyMode,
        shadow_primary: ShadowPrimary,
        indexed: Option<DynBackend>,
        light: Option<DynBackend>,
    ) -> Result<Self, PolicyError> {
        let need = |b: Option<DynBackend>, missing: &'static str, hint: &'static str| {
            b.ok_or(PolicyError { policy: mode, missing, hint })
        };
        const SUP: &str = "configure [supervisor] endpoints";
        const LIGHT: &str = "configure [[light.chains]]";
        let (primary, secondary) = match mode {
            PolicyMode::Indexed => (need(indexed, "indexed", SUP)?, None),
            PolicyMode::Light => (need(light, "light", LIGHT)?, None),
            PolicyMode::Both | PolicyMode::Either => {
                (need(indexed, "indexed", SUP)?, Some(need(light, "light", LIGHT)?))
            }
            PolicyMode::Shadow if shadow_primary == ShadowPrimary::Light => {
                (need(light, "light", LIGHT)?, indexed)
            }
            PolicyMode::Shadow => (need(indexed, "indexed", SUP)?, light),
        };
        Ok(Self { mode, primary, secondary })
    }
}

impl Backend for Policy {
    fn name(&self) -> &'static str {
        "policy"
    }

    fn check<'a>(&'a self, req: &'a CheckRequest) -> BoxFuture<'a, Verdict> {
        Box::pin(
            async move { super::only_verdict(self.check_batch(std::slice::from_ref(req)).await) },
        )
    }

    /// Single checks are batches of one: every policy combines each check's two verdicts the
    /// same way whether it came alone or in a batch.
    fn check_batch<'a>(&'a self, reqs: &'a [CheckRequest]) -> BoxFuture<'a, Vec<Verdict>> {
        Box::pin(async move {
            let primary = &self.primary;
            match (self.mode, &self.secondary) {
                (PolicyMode::Both, Some(s)) => {
                    let (a, b) = tokio::join!(ask(primary, reqs), ask(s, reqs));
                    a.into_iter()
                        .zip(b)
                        .zip(reqs)
                        .map(|((a, b), r)| combine_both(a, b, r))
                        .collect()
                }
                (PolicyMode::Either, Some(s)) => {
                    let (a, b) = tokio::join!(ask(primary, reqs), ask(s, reqs));
                    a.into_iter().zip(b).map(|(a, b)| combine_either(a, b)).collect()
                }
                (PolicyMode::Shadow, Some(s)) => {
                    let decided = ask(primary, reqs).await;
                    let (shadow, reqs2, mine) = (s.clone(), reqs.to_vec(), decided.clone());
                    tokio::spawn(async move {
                        let others = ask(&shadow, &reqs2).await;
                        let definitive =
                            |v: &Verdict| matches!(v, Verdict::Valid { .. } | Verdict::Invalid(_));
                        for ((mine, other), req) in mine.iter().zip(&others).zip(&reqs2) {
                            if definitive(mine)
                                && definitive(other)
                                && mine.is_valid() != other.is_valid()
                            {
                                split(mine, other, req, "shadow_split");
                            }
                        }
                    });
                    decided
                }
                _ => ask(primary, reqs).await,
            }
        })
    }

    fn ready(&self) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let p = self.primary.ready().await;
            match (self.mode, &self.secondary) {
                (PolicyMode::Both, Some(s)) => p && s.ready().await,
                (PolicyMode::Either, Some(s)) => p || s.ready().await,
                _ => p,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interop::ExecutingDescriptor;
    use crate::rpc::codes;
    use crate::validation::Rejection;

    fn req() -> CheckRequest {
        CheckRequest {
            messages: Vec::new().into(),
            min_safety: crate::interop::SafetyLevel::CrossUnsafe,
            descriptor: ExecutingDescriptor { timestamp: 1, timeout: None, chain_id: None },
        }
    }

    #[test]
    fn both_fails_closed() {
        let v = || Verdict::Valid { until: 5 };
        let bad = || Verdict::Invalid(Rejection::new(codes::SUP_CONFLICTING_DATA, "x"));
        let fs = || Verdict::Invalid(Rejection::new(codes::SUP_FAILSAFE, "fs"));
        let nyk = || Verdict::NotYetKnown(Rejection::new(codes::SUP_FUTURE_DATA, "n"));
        let un = || Verdict::Unavailable("down".into());
        let r = req();
        assert!(combine_both(v(), v(), &r).is_valid());
        assert!(matches!(combine_both(v(), bad(), &r), Verdict::Invalid(_)));
        assert!(matches!(combine_both(bad(), v(), &r), Verdict::Invalid(_)));
        assert!(combine_both(bad(), fs(), &r).is_failsafe());
        assert!(matches!(combine_both(v(), nyk(), &r), Verdict::NotYetKnown(_)));
        assert!(matches!(combine_both(v(), un(), &r), Verdict::Unavailable(_)));
        assert!(matches!(combine_both(nyk(), un(), &r), Verdict::NotYetKnown(_)));
        assert!(combine_either(un(), v()).is_valid());
        assert!(combine_either(fs(), v()).is_failsafe());
        assert!(matches!(combine_either(bad(), un()), Verdict::Invalid(_)));
    }
}
