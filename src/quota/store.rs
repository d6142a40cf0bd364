//! The budgets of a governor built with `shared_state`: kept in a [`QuotaStore`], so that
//! every replica draws from one quota.

use super::ledger::Mark;
use super::shared::{Admitted, Shared};
use super::{Exhausted, QuotaExceeded, RateLimits};
use crate::shared_state::{QuotaBudget, QuotaGrant, QuotaStore, QuotaTake};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

impl<K: Hash + Eq + Clone + fmt::Display + Send + 'static> Shared<K> {
    fn store_key(&self, key: &K) -> String {
        format!("{}:{key}", self.name)
    }

    /// The take for a call of `key` costing one request and `tokens` tokens, with the limits
    /// known here; and the key's pause after a 429 (kept locally).
    fn take_for(&self, key: &K, requests: f64, tokens: f64) -> (QuotaTake, Duration) {
        let now = Instant::now();
        let window = self.window;
        self.with_key(key, now, |state| {
            let budget = |b: &super::bucket::Bucket, cost: f64| {
                b.is_limited().then_some(QuotaBudget {
                    limit: b.capacity as u64,
                    window,
                    cost,
                    ceiling: None,
                })
            };
            let pause = state
                .paused_until
                .map_or(Duration::ZERO, |u| u.saturating_duration_since(now));
            (
                QuotaTake {
                    requests: budget(&state.requests, requests),
                    tokens: budget(&state.tokens, tokens),
                    max_wait: None,
                },
                pause,
            )
        })
    }

    /// Admits a call through the store. A store that fails (or keeps no quotas) leaves the
    /// decision to the local budgets, with a warning.
    pub(crate) async fn admit_shared(
        self: &Arc<Self>,
        store: Arc<dyn QuotaStore>,
        key: &K,
        tokens: u64,
    ) -> Result<Admitted, QuotaExceeded> {
        let (mut take, pause) = self.take_for(key, 1.0, tokens as f64);
        take.max_wait = Some(self.max_wait);
        // A call larger than a whole limit (known here) never fits: refused without asking
        // the store, whose levels stay as they are.
        let never = take.never_fits();
        if never.is_none() && pause > self.max_wait {
            return self.decided(key, Err((pause, Exhausted::Paused)));
        }
        let name = self.store_key(key);
        let grant = match never {
            Some(refused) => Ok(refused),
            None => store.take_quota(&name, take).await,
        };
        match grant {
            Ok(QuotaGrant::Granted { wait }) => {
                let now = Instant::now();
                let mark = self.with_key(key, now, |state| state.ledger.admit(1.0, tokens as f64));
                self.decided(
                    key,
                    Ok(Admitted {
                        wait: wait.max(pause),
                        mark,
                        deadline: now + self.max_wait,
                    }),
                )
            }
            Ok(QuotaGrant::Refused {
                retry_after,
                tokens,
            }) => {
                let budget = if tokens {
                    Exhausted::Tokens
                } else {
                    Exhausted::Requests
                };
                self.decided(key, Err((retry_after.max(pause), budget)))
            }
            Err(error) => {
                tracing::warn!(quota = %self.name, key = %key, %error, "quota store failed; deciding on local budgets");
                self.admit_local(key, tokens, self.max_wait)
            }
        }
    }

    /// Changes the store's budgets by `requests` and `tokens` (negative: gives back), in the
    /// background (from a `Drop`, or a reconciliation).
    fn store_change(&self, store: Arc<dyn QuotaStore>, key: &K, requests: f64, tokens: f64) {
        let (take, _) = self.take_for(key, requests, tokens);
        self.store_send(store, key, take);
    }

    /// Sends `take` to the store in the background.
    fn store_send(&self, store: Arc<dyn QuotaStore>, key: &K, take: QuotaTake) {
        if take.requests.is_none() && take.tokens.is_none() {
            return;
        }
        let name = self.store_key(key);
        let quota = self.name.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = store.take_quota(&name, take).await {
                        tracing::debug!(%quota, %error, "quota store: a correction was lost");
                    }
                });
            }
            Err(_) => tracing::debug!(%quota, "quota store: no runtime for a correction"),
        }
    }

    /// Gives back what a call was charged and the provider never counted.
    pub(crate) fn store_refund(
        &self,
        store: Arc<dyn QuotaStore>,
        key: &K,
        requests: f64,
        tokens: f64,
    ) {
        self.store_change(store, key, -requests, -tokens);
    }

    /// Lowers the store's levels to what the provider reported (less what this replica admitted
    /// since the call it reported on), never raising them: the store then follows the
    /// provider, also for a key it had never seen (full otherwise) or lost (a flush, an expiry).
    pub(crate) fn store_observe(
        &self,
        store: Arc<dyn QuotaStore>,
        key: &K,
        mark: Option<&Mark>,
        limits: &RateLimits,
    ) {
        let remaining = [limits.requests.remaining, limits.token_budget().remaining];
        if remaining.iter().all(Option::is_none) {
            return;
        }
        let since = self.with_key(key, Instant::now(), |state| {
            mark.map_or((0.0, 0.0), |m| state.ledger.since(m))
        });
        let (mut take, _) = self.take_for(key, 0.0, 0.0);
        for (budget, (remaining, since)) in [&mut take.requests, &mut take.tokens]
            .into_iter()
            .zip(remaining.into_iter().zip([since.0, since.1]))
        {
            match (budget.as_mut(), remaining) {
                (Some(b), Some(r)) => b.ceiling = Some(r as f64 - since),
                // Nothing reported for it: leave it alone.
                _ => *budget = None,
            }
        }
        self.store_send(store, key, take);
    }

    pub(crate) fn store_adjust(&self, store: Arc<dyn QuotaStore>, key: &K, extra_tokens: f64) {
        self.store_change(store, key, 0.0, extra_tokens);
    }
}
