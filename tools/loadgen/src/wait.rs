//! Phase 2: wait until every submitted task reads as completed, polling the list API gently.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::api::{Api, ListStatus, TaskInfo};
use crate::errors::{ErrorCount, count_error};
use crate::submit::Submitted;

/// Pause between two passes over the completed tasks.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Every this many passes over the completed tasks reads all pages (see [`wait_phase`]).
const FULL_PASS_EVERY: u32 = 10;

/// The completion wait's outcome.
pub struct WaitPhase {
    /// `completed_at` of every submitted task seen completed.
    pub completed: HashMap<String, DateTime<Utc>>,
    /// Whether the wait gave up.
    pub timed_out: bool,
    /// On a timeout: how many of the run's tasks had failed.
    pub failed: Option<usize>,
    /// List calls that failed (retried on the next pass).
    pub errors: BTreeMap<String, ErrorCount>,
}

/// Lists the caller's completed tasks every [`POLL_INTERVAL`] until every submitted task has
/// been seen or `timeout` passes.
///
/// Keyset pages run newest-created first and tasks complete roughly in creation order, so new
/// completions show up on the first pages: most passes stop at the first page that brings
/// nothing new, which keeps the polling from loading the server while it drains. A task may
/// still complete out of order (a retry, say), so every [`FULL_PASS_EVERY`]-th pass, and any
/// pass after one that found nothing, reads every page. Results accumulate across passes.
pub async fn wait_phase(api: &Api, submitted: &[Submitted], timeout: Duration) -> WaitPhase {
    let wanted: HashSet<&str> = submitted.iter().map(|t| t.id.as_str()).collect();
    let deadline = Instant::now() + timeout;
    let mut wait = WaitPhase {
        completed: HashMap::with_capacity(wanted.len()),
        timed_out: false,
        failed: None,
        errors: BTreeMap::new(),
    };
    let mut pass = 0u32;
    let mut stale = false;
    while wait.completed.len() < wanted.len() {
        if Instant::now() >= deadline {
            wait.timed_out = true;
            let failed = list_all(api, ListStatus::Failed, &mut wait.errors).await;
            wait.failed = Some(
                failed
                    .iter()
                    .filter(|t| wanted.contains(t.id.as_str()))
                    .count(),
            );
            break;
        }
        let full = stale || pass.is_multiple_of(FULL_PASS_EVERY);
        let found = completed_pass(api, &wanted, &mut wait, full).await;
        stale = !full && found == 0;
        pass = pass.wrapping_add(1);
        if wait.completed.len() < wanted.len() {
            tokio::time::sleep(
                POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())),
            )
            .await;
        }
    }
    wait
}

/// One pass over the caller's completed tasks, newest-created first, recording those of
/// `wanted` not seen before; returns how many it recorded. Unless `full`, stops after the first
/// page that adds nothing. A failed call ends the pass (the next pass tries again).
async fn completed_pass(
    api: &Api,
    wanted: &HashSet<&str>,
    wait: &mut WaitPhase,
    full: bool,
) -> usize {
    let mut found = 0;
    let mut token = String::new();
    loop {
        match api.list(ListStatus::Completed, &token).await {
            Ok(page) => {
                let mut new = 0;
                for t in page.tasks {
                    if let Some(at) = t.completed_at
                        && wanted.contains(t.id.as_str())
                        && !wait.completed.contains_key(&t.id)
                    {
                        wait.completed.insert(t.id, at);
                        new += 1;
                    }
                }
                found += new;
                if page.next_page_token.is_empty() || (!full && new == 0) {
                    return found;
                }
                token = page.next_page_token;
            }
            Err(e) => {
                count_error(&mut wait.errors, &e, 1);
                return found;
            }
        }
    }
}

/// Every page of the caller's tasks with `status`; stops early (returning what it has) when a
/// call fails.
async fn list_all(
    api: &Api,
    status: ListStatus,
    errors: &mut BTreeMap<String, ErrorCount>,
) -> Vec<TaskInfo> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        match api.list(status, &token).await {
            Ok(page) => {
                all.extend(page.tasks);
                if page.next_page_token.is_empty() {
                    return all;
                }
                token = page.next_page_token;
            }
            Err(e) => {
                count_error(errors, &e, 1);
                return all;
            }
        }
    }
}
