//! Per-user monthly budgets, checked BEFORE a provider call: the call's worst-case cost is
//! reserved first, and the reservation is settled with the real cost afterwards.

use std::sync::Arc;

use super::ProviderError;
use crate::clock;
use crate::domain::{ErrorClass, Micros, UserId, month_of};
use crate::store::{Reservation, StoreError, UsageStore};

/// Budgets kept in the store, with a default for users without their own.
#[derive(Clone)]
pub struct Budget {
    store: Arc<dyn UsageStore>,
    default: Option<Micros>,
}

/// A reservation to settle.
#[derive(Debug)]
pub struct BudgetHold {
    user: UserId,
    month: String,
    amount: Micros,
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
                user: user.clone(),
                month,
                amount,
            })),
            Ok(Reservation::OverBudget { budget, spend }) => Err(ProviderError {
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
            }),
            Err(e) => Err(ProviderError {
                provider: "budget".into(),
                class: ErrorClass::Retryable,
                message: format!("budget check failed: {e}"),
                retry_after: None,
            }),
        }
    }

    /// Replaces a reservation by the real cost.
    pub async fn settle(&self, hold: BudgetHold, cost: Micros) -> Result<(), StoreError> {
        self.store
            .settle(&hold.user, &hold.month, hold.amount, cost)
            .await
    }
}
