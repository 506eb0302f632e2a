//! In-process breakers (embedded mode).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;

/// In-process breakers for embedded mode.
#[derive(Debug, Default)]
pub struct MemoryBreakers {
    policy: BreakerPolicy,
    breakers: Mutex<HashMap<String, Breaker>>,
    /// Providers an operator disabled.
    disabled: Mutex<HashSet<String>>,
    epoch: Option<std::time::Instant>,
}

impl MemoryBreakers {
    /// Breakers following `policy`.
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            breakers: Mutex::default(),
            disabled: Mutex::default(),
            epoch: Some(std::time::Instant::now()),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.map_or(0, |e| e.elapsed().as_millis() as u64)
    }

    fn is_disabled(&self, provider: &str) -> bool {
        let off = self.disabled.lock().unwrap_or_else(|e| e.into_inner());
        off.contains(provider)
    }

    fn with<T>(&self, provider: &str, f: impl FnOnce(&mut Breaker, u64) -> T) -> T {
        let now = self.now_ms();
        let mut map = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(provider.to_owned()).or_default(), now)
    }
}

#[async_trait]
impl Breakers for MemoryBreakers {
    async fn acquire(&self, provider: &str) -> Result<Permit, BreakerError> {
        if self.is_disabled(provider) {
            return Ok(Permit::Disabled);
        }
        Ok(self.with(provider, |b, now| b.acquire(&self.policy, now)))
    }

    async fn record(
        &self,
        provider: &str,
        permit: Permit,
        success: bool,
    ) -> Result<(), BreakerError> {
        let trial = permit == Permit::Trial;
        self.with(provider, |b, now| {
            b.record(&self.policy, success, trial, now)
        });
        Ok(())
    }

    async fn snapshot(&self, provider: &str) -> Result<BreakerSnapshot, BreakerError> {
        let mut snap = self.with(provider, |b, _| b.snapshot());
        snap.disabled = self.is_disabled(provider);
        Ok(snap)
    }

    async fn reset(&self, provider: &str) -> Result<(), BreakerError> {
        self.with(provider, |b, _| *b = Breaker::default());
        Ok(())
    }

    async fn set_disabled(&self, provider: &str, disabled: bool) -> Result<(), BreakerError> {
        let mut off = self.disabled.lock().unwrap_or_else(|e| e.into_inner());
        if disabled {
            off.insert(provider.to_owned());
        } else {
            off.remove(provider);
        }
        Ok(())
    }
}
