//! Per-user monthly budgets, checked BEFORE a provider call: the call's worst-case cost is
//! reserved first, and the reservation is settled with the real cost afterwards.

use std::sync::Arc;

use super::ProviderError;
use crate::clock;
use crate::domain::{ErrorClass, Micros, UserId, month_of};
use crate::store::{Reservation, StoreError, UsageStore};
use crate::telemetry::metrics;

/// Budgets kept in the store, with a default for users without their own.
#[derive(Clone)]
pub struct Budget {
    store: Arc<dyn UsageStore>,
    default: Option<Micros>,
}

/// A reservation to settle. One dropped unsettled, because its call was abandoned (a timeout,
/// a cancel, a stopped pool, a submit whose commit failed), is settled in the background at the
/// amount reserved: the provider may have billed the request, and a budget must not count less
/// than was spent. Left reserved, it would hold that money for the rest of the month.
pub struct BudgetHold {
    store: Arc<dyn UsageStore>,
    user: UserId,
    month: String,
    amount: Micros,
    settled: bool,
}

impl BudgetHold {
    /// The amount held.
    pub fn amount(&self) -> Micros {
        self.amount
    }
}

impl std::fmt::Debug for BudgetHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetHold")
            .field("user", &self.user)
            .field("month", &self.month)
            .field("amount", &self.amount)
            .finish_non_exhaustive()
    }
}

impl Drop for BudgetHold {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(user = %self.user, "budget reservation of an abandoned call left held: no runtime");
            return;
        };
        let (store, user, month, amount) = (
            self.store.clone(),
            self.user.clone(),
            std::mem::take(&mut self.month),
            self.amount,
        );
        runtime.spawn(async move {
            if let Err(e) = store.settle(&user, &month, amount, amount).await {
                tracing::warn!(error = %e, user = %user, "could not settle the reservation of an abandoned call");
            }
        });
    }
}

impl Budget {
    /// Budgets in `store`; users without their own get `default` (none: unlimited).
    pub fn new(store: Arc<dyn UsageStore>, default: Option<Micros>) -> Self {
        Self { store, default }
    }

    /// Reserves `amount` for a call by `user`. Free calls reserve nothing. Over budget, the call
    /// must not be made: the error is NonRetryable and says why.
    pub async fn reserve(
        &self,
        user: &UserId,
        amount: Micros,
    ) -> Result<Option<BudgetHold>, ProviderError> {
        if amount.0 <= 0 {
            return Ok(None);
        }
        let month = month_of(clock::now());
        match self.store.reserve(user, &month, amount, self.default).await {
            Ok(Reservation::Reserved) => Ok(Some(BudgetHold {
                store: self.store.clone(),
                user: user.clone(),
                month,
                amount,
                settled: false,
            })),
            Ok(Reservation::OverBudget { budget, spend }) => {
                metrics::budget_rejected();
                Err(ProviderError {
                    provider: "budget".into(),
                    class: ErrorClass::NonRetryable,
                    message: format!(
                        "monthly budget exceeded: budget ${:.6}, spent ${:.6}, held for running calls ${:.6}, this call needs up to ${:.6}",
                        budget.usd(),
                        spend.spent.usd(),
                        spend.reserved.usd(),
                        amount.usd()
                    ),
                    retry_after: None,
                })
            }
            Err(e) => Err(ProviderError {
                provider: "budget".into(),
                class: ErrorClass::Retryable,
                message: format!("budget check failed: {e}"),
                retry_after: None,
            }),
        }
    }

    /// Replaces a reservation by the real cost.
    pub async fn settle(&self, mut hold: BudgetHold, cost: Micros) -> Result<(), StoreError> {
        // Settled from here on, even if this future is dropped mid-write: settling twice
        // would count the call twice.
        hold.settled = true;
        self.store
            .settle(&hold.user, &hold.month, hold.amount, cost)
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::Budget;
    use crate::clock;
    use crate::domain::{Micros, UserId, month_of};
    use crate::store::{SqliteTaskStore, UsageStore};

    /// A settled call books its real cost; an abandoned one (its hold dropped mid-call) is
    /// booked at what it reserved, and nothing stays held either way.
    #[tokio::test]
    async fn settled_and_abandoned_calls_release_their_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn UsageStore> = Arc::new(SqliteTaskStore::open(dir.path()).await.unwrap());
        let budget = Budget::new(store.clone(), Some(Micros(1_000)));
        let user = UserId::parse("u1").unwrap();
        let month = month_of(clock::now());

        let hold = budget.reserve(&user, Micros(300)).await.unwrap().unwrap();
        budget.settle(hold, Micros(120)).await.unwrap();
        let spend = store.spend(&user, &month).await.unwrap();
        assert_eq!((spend.spent, spend.reserved), (Micros(120), Micros(0)));

        let abandoned = budget.reserve(&user, Micros(500)).await.unwrap().unwrap();
        assert_eq!(
            store.spend(&user, &month).await.unwrap().reserved,
            Micros(500)
        );
        drop(abandoned);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let spend = store.spend(&user, &month).await.unwrap();
            if spend.reserved == Micros(0) {
                assert_eq!(spend.spent, Micros(620), "booked at what it reserved");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still held: {spend:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The budget sees it: 620 + 500 would pass 1,000.
        assert!(budget.reserve(&user, Micros(500)).await.is_err());
    }
}
