//! Pipelines (seed 004): the use cases the APIs call (definitions, sessions, their items,
//! cancel, the session's event stream), the definitions' catalog, and the scheduler that
//! runs each item's stages as ordinary tasks. Users see only their own sessions.

mod catalog;
mod scheduler;
mod tee;

use std::sync::Arc;

use serde_json::Value;

pub use catalog::Catalog;
pub use scheduler::{SWEEP_INTERVAL, Scheduler, SchedulerLoop};
pub use tee::StageEndTee;

use super::{EventStream, NotificationService, Scope, ServiceError, StreamRequest};
use crate::auth::Caller;
use crate::clock;
use crate::domain::pipeline::{PipelineDef, parse_items};
use crate::domain::{Page, PageRequest};
use crate::store::Transport;
use crate::store::pipeline::{
    Added, ItemRecord, NewSession, PipelineStore, SessionId, SessionRecord,
};

/// Most items one read of a session returns.
pub const MAX_ITEMS_PAGE: u32 = 1000;

/// One page of a session's items.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// The session.
    pub session: SessionRecord,
    /// Its items from the page's start.
    pub items: Vec<ItemRecord>,
    /// Where the next page starts (the last item's position), if more follow.
    pub next_after: Option<u64>,
}

/// Pipeline sessions for authenticated callers.
#[derive(Clone)]
pub struct PipelineService {
    store: Arc<dyn PipelineStore>,
    catalog: Catalog,
    scheduler: Scheduler,
    notifications: NotificationService,
}

impl PipelineService {
    /// The service over `store`, running `catalog`'s definitions with `scheduler`.
    pub fn new(
        store: Arc<dyn PipelineStore>,
        catalog: Catalog,
        scheduler: Scheduler,
        notifications: NotificationService,
    ) -> Self {
        Self {
            store,
            catalog,
            scheduler,
            notifications,
        }
    }

    /// Every definition.
    pub fn definitions(&self) -> Vec<PipelineDef> {
        self.catalog.all().cloned().collect()
    }

    /// Items per call for `def`.
    fn batch_size(&self, def: &PipelineDef) -> usize {
        def.batch_size
            .map_or(self.scheduler.settings().batch_size, |b| b as usize)
    }

    /// Creates a session of pipeline `name` with `items` and starts its first stages.
    pub async fn create(
        &self,
        caller: &Caller,
        name: &str,
        items: Vec<Value>,
    ) -> Result<SessionRecord, ServiceError> {
        let def = self
            .catalog
            .get(name)
            .ok_or_else(|| ServiceError::Missing(format!("pipeline {name:?} not found")))?;
        let items = parse_items(items, self.batch_size(def))?;
        let id = SessionId::new();
        self.store
            .create_session(NewSession {
                id,
                user_id: caller.user_id.clone(),
                definition: def.clone(),
                items,
                at: clock::now(),
            })
            .await?;
        if let Err(e) = self.scheduler.fill(id).await {
            // Stored: the sweep starts it.
            tracing::warn!(session = %id, error = %e, "new session not started; the sweep will");
        }
        self.owned(caller, id).await
    }

    /// Adds items to an unfinished session of the caller's; returns how many it has.
    pub async fn add_items(
        &self,
        caller: &Caller,
        id: SessionId,
        items: Vec<Value>,
    ) -> Result<u64, ServiceError> {
        let session = self.owned(caller, id).await?;
        let items = parse_items(items, self.batch_size(&session.definition))?;
        match self.store.add_items(id, items, clock::now()).await? {
            Added::Items(n) => {
                if let Err(e) = self.scheduler.fill(id).await {
                    tracing::warn!(session = %id, error = %e, "session not filled; the sweep will");
                }
                Ok(n)
            }
            Added::Finished(status) => Err(ServiceError::Conflict(format!(
                "pipeline session {id} is {status}; no items can be added"
            ))),
            Added::Duplicate(item) => Err(ServiceError::Invalid(format!(
                "item id {item:?} is already in pipeline session {id}"
            ))),
        }
    }

    /// A session of the caller's (an admin's: anyone's).
    async fn owned(&self, caller: &Caller, id: SessionId) -> Result<SessionRecord, ServiceError> {
        match self.store.session(id).await? {
            Some(s) if caller.may_access(&s.user_id) => Ok(s),
            _ => Err(ServiceError::Missing(format!(
                "pipeline session {id} not found"
            ))),
        }
    }

    /// A session with a page of its items (after position `after`, at most `limit`).
    pub async fn get(
        &self,
        caller: &Caller,
        id: SessionId,
        after: Option<u64>,
        limit: u32,
    ) -> Result<SessionView, ServiceError> {
        if limit == 0 || limit > MAX_ITEMS_PAGE {
            return Err(ServiceError::Invalid(format!(
                "page_size must be 1-{MAX_ITEMS_PAGE}"
            )));
        }
        let session = self.owned(caller, id).await?;
        let mut items = self.store.items(id, after, limit + 1).await?;
        let next_after = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|i| i.position)
        } else {
            None
        };
        Ok(SessionView {
            session,
            items,
            next_after,
        })
    }

    /// The caller's sessions, newest first.
    pub async fn list(
        &self,
        caller: &Caller,
        page: PageRequest,
    ) -> Result<Page<SessionRecord>, ServiceError> {
        Ok(self.store.list_sessions(&caller.user_id, &page).await?)
    }

    /// Cancels a session of the caller's: queued stages never run, running ones are
    /// cancelled as tasks are.
    pub async fn cancel(
        &self,
        caller: &Caller,
        id: SessionId,
    ) -> Result<SessionRecord, ServiceError> {
        self.owned(caller, id).await?;
        match self.scheduler.cancel(id, "cancelled by its owner").await? {
            Some((session, true)) => Ok(session),
            Some((session, false)) => Err(ServiceError::Conflict(format!(
                "pipeline session {id} is already {} and cannot be cancelled",
                session.status
            ))),
            None => Err(ServiceError::Missing(format!(
                "pipeline session {id} not found"
            ))),
        }
    }

    /// The session's own event stream: its `Pipeline*` events after `since` (all of them
    /// when `None`), then live ones, with the same resume guarantees as task events.
    pub async fn events(
        &self,
        caller: &Caller,
        id: SessionId,
        since: Option<u64>,
        transport: Transport,
        expires_at: Option<u64>,
    ) -> Result<EventStream, ServiceError> {
        let session = self.owned(caller, id).await?;
        let req = StreamRequest {
            since,
            task_id: Some(id),
            scope: Scope::Own,
            until_terminal: false,
            transport,
            expires_at,
        };
        self.notifications
            .open_owned(caller, req, session.user_id)
            .await
    }
}
