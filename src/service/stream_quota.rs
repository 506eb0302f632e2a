//! Live streams per user on this instance (`MAX_STREAMS_PER_USER`): one user cannot take every
//! connection slot of an instance. A stream holds a [`StreamPass`]; dropping it (the client
//! went away, a write failed, the stream ended) gives the place back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ServiceError;
use crate::domain::UserId;

/// When a refused client should try again: streams end when clients leave.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Counts each user's open streams against one limit.
#[derive(Clone, Default)]
pub struct StreamQuota {
    /// Most streams per user; 0 for no limit.
    max: usize,
    /// Open streams per user; users with none are removed.
    open: Arc<Mutex<HashMap<UserId, usize>>>,
}

impl StreamQuota {
    /// At most `max` streams per user (0: no limit).
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Arc::default(),
        }
    }

    /// Takes a place for one more of `user`'s streams, or refuses (429 / RESOURCE_EXHAUSTED).
    pub fn acquire(&self, user: &UserId) -> Result<StreamPass, ServiceError> {
        if self.max == 0 {
            return Ok(StreamPass(None));
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(user.clone()).or_insert(0);
        if *n >= self.max {
            return Err(ServiceError::Busy {
                message: format!(
                    "too many open streams: at most {} per user (MAX_STREAMS_PER_USER); \
                     close one and retry",
                    self.max
                ),
                retry_after: RETRY_AFTER,
            });
        }
        *n += 1;
        Ok(StreamPass(Some((self.clone(), user.clone()))))
    }

    /// `user`'s open streams.
    pub fn open(&self, user: &UserId) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(user).copied().unwrap_or(0)
    }

    fn release(&self, user: &UserId) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                open.remove(user);
            }
        }
    }
}

/// One open stream's place in its user's quota, given back on drop.
pub struct StreamPass(Option<(StreamQuota, UserId)>);

impl Drop for StreamPass {
    fn drop(&mut self) {
        if let Some((quota, user)) = &self.0 {
            quota.release(user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_over_the_limit_and_releases_on_drop() {
        let q = StreamQuota::new(2);
        let alice = UserId::parse("alice").expect("valid");
        let bob = UserId::parse("bob").expect("valid");
        let a1 = q.acquire(&alice).expect("first");
        let _a2 = q.acquire(&alice).expect("second");
        let err = q.acquire(&alice).err().expect("third refused");
        assert!(err.to_string().contains("MAX_STREAMS_PER_USER"), "{err}");
        assert!(q.acquire(&bob).is_ok(), "other users are not affected");
        drop(a1);
        assert_eq!(q.open(&alice), 1);
        assert!(q.acquire(&alice).is_ok());
    }

    #[test]
    fn zero_means_no_limit() {
        let q = StreamQuota::new(0);
        let alice = UserId::parse("alice").expect("valid");
        let passes: Vec<_> = (0..100).map(|_| q.acquire(&alice).expect("ok")).collect();
        assert_eq!(passes.len(), 100);
        assert_eq!(q.open(&alice), 0, "not counted when off");
    }
}
