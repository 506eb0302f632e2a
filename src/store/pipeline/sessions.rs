//! Sessions: create, add items, read, list, cancel.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::types::Json;
use sqlx::{ColumnIndex, Executor, QueryBuilder};
use uuid::Uuid;

use super::rows::{self, SESSION_COLUMNS, SessionRow, StageRow, signed, unsigned};
use super::sql::PipelineDialect;
use super::{Added, ItemRecord, NewSession, SessionId, SessionRecord};
use crate::domain::pipeline::{NewItem, PipelineDef, initial};
use crate::domain::{NewEvent, Page, PageRequest, TaskEventType, TaskId, UserId, encode_token};
use crate::store::StoreError;
use crate::store::sql::{Bind, Column, INSERT_CHUNK, Sql};

impl<DB> Sql<'_, DB>
where
    DB: PipelineDialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    Uuid: Column<DB>,
    String: Column<DB>,
    i64: Column<DB>,
    DateTime<Utc>: Column<DB>,
    Json<Value>: Column<DB>,
    Option<String>: Column<DB>,
    Option<Uuid>: Column<DB>,
    Option<DateTime<Utc>>: Column<DB>,
    Option<Json<Value>>: Column<DB>,
{
    /// [`PipelineStore::create_session`](super::PipelineStore::create_session).
    pub(crate) async fn pipeline_create(&self, s: NewSession) -> Result<(), StoreError> {
        let definition = serde_json::to_value(&s.definition)
            .map_err(|e| StoreError::Corrupt(format!("definition: {e}")))?;
        let mut tx = self.writes.begin().await?;
        let mut qb = QueryBuilder::<DB>::new(
            "INSERT INTO pipeline_sessions (id, user_id, pipeline, definition, status, \
             item_count, created_at, updated_at, heartbeat_at) VALUES (",
        );
        let mut v = qb.separated(", ");
        v.push_bind(s.id.as_uuid())
            .push_bind(s.user_id.as_str().to_owned())
            .push_bind(s.definition.name.clone())
            .push_bind(Json(definition))
            .push_bind("pending")
            .push_bind(signed(s.items.len() as u64))
            .push_bind(s.at)
            .push_bind(s.at)
            .push_bind(s.at);
        qb.push(")");
        qb.build().execute(&mut *tx).await?;
        Self::insert_items(&mut tx, s.id, &s.definition, 0, &s.items, s.at).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Items from position `first` on, with their stages.
    async fn insert_items(
        conn: &mut DB::Connection,
        id: SessionId,
        def: &PipelineDef,
        first: u64,
        items: &[NewItem],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let numbered: Vec<(u64, &NewItem)> = items
            .iter()
            .enumerate()
            .map(|(i, it)| (first + i as u64, it))
            .collect();
        for chunk in numbered.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO pipeline_items (session_id, position, item_id, data, status) ",
            );
            qb.push_values(chunk, |mut b, (pos, item)| {
                b.push_bind(id.as_uuid())
                    .push_bind(signed(*pos))
                    .push_bind(item.id.clone())
                    .push_bind(Json(item.data.clone()))
                    .push_bind("pending");
            });
            qb.build().execute(&mut *conn).await?;
        }
        let statuses = initial(def);
        let rows: Vec<(u64, usize)> = numbered
            .iter()
            .flat_map(|(pos, _)| (0..def.stages.len()).map(move |s| (*pos, s)))
            .collect();
        for chunk in rows.chunks(INSERT_CHUNK) {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO pipeline_stages (session_id, position, stage_index, stage, status, \
                 updated_at) ",
            );
            qb.push_values(chunk, |mut b, (pos, s)| {
                b.push_bind(id.as_uuid())
                    .push_bind(signed(*pos))
                    .push_bind(signed(*s as u64))
                    .push_bind(def.stages[*s].name.clone())
                    .push_bind(statuses[*s].as_str())
                    .push_bind(at);
            });
            qb.build().execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// [`PipelineStore::add_items`](super::PipelineStore::add_items).
    pub(crate) async fn pipeline_add_items(
        &self,
        id: SessionId,
        items: Vec<NewItem>,
        at: DateTime<Utc>,
    ) -> Result<Added, StoreError> {
        let mut tx = self.writes.begin().await?;
        let Some(session) = Self::lock(&mut tx, id).await? else {
            return Ok(Added::Finished(
                crate::domain::pipeline::SessionStatus::Cancelled,
            ));
        };
        if session.status.is_final() {
            return Ok(Added::Finished(session.status));
        }
        let mut qb =
            QueryBuilder::<DB>::new("SELECT item_id FROM pipeline_items WHERE session_id = ");
        qb.push_bind(id.as_uuid()).push(" AND item_id IN (");
        let mut list = qb.separated(", ");
        for item in &items {
            list.push_bind(item.id.clone());
        }
        qb.push(") LIMIT 1");
        let dup: Option<String> = qb.build_query_scalar().fetch_optional(&mut *tx).await?;
        if let Some(dup) = dup {
            return Ok(Added::Duplicate(dup));
        }
        Self::insert_items(
            &mut tx,
            id,
            &session.definition,
            session.item_count,
            &items,
            at,
        )
        .await?;
        let total = session.item_count + items.len() as u64;
        let mut qb = QueryBuilder::<DB>::new("UPDATE pipeline_sessions SET item_count = ");
        qb.push_bind(signed(total))
            .push(", updated_at = ")
            .push_bind(at)
            .push(" WHERE id = ")
            .push_bind(id.as_uuid());
        qb.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(Added::Items(total))
    }

    /// The session's row, locked for the rest of the transaction where writers are
    /// concurrent.
    pub(super) async fn lock(
        conn: &mut DB::Connection,
        id: SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(format!(
            "SELECT {SESSION_COLUMNS} FROM pipeline_sessions WHERE id = "
        ));
        qb.push_bind(id.as_uuid()).push(DB::LOCK_SESSION);
        let row: Option<SessionRow> = qb.build_query_as().fetch_optional(&mut *conn).await?;
        row.map(rows::session).transpose()
    }

    /// [`PipelineStore::session`](super::PipelineStore::session).
    pub(crate) async fn pipeline_session(
        &self,
        id: SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(format!(
            "SELECT {SESSION_COLUMNS} FROM pipeline_sessions WHERE id = "
        ));
        qb.push_bind(id.as_uuid());
        let row: Option<SessionRow> = qb.build_query_as().fetch_optional(self.reads).await?;
        row.map(rows::session).transpose()
    }

    /// [`PipelineStore::list_sessions`](super::PipelineStore::list_sessions).
    pub(crate) async fn pipeline_list(
        &self,
        user: &UserId,
        page: &PageRequest,
    ) -> Result<Page<SessionRecord>, StoreError> {
        let mut qb = QueryBuilder::<DB>::new(format!(
            "SELECT {SESSION_COLUMNS} FROM pipeline_sessions WHERE user_id = "
        ));
        qb.push_bind(user.as_str().to_owned());
        if let Some((at, id)) = page.after {
            qb.push(" AND (created_at < ")
                .push_bind(at)
                .push(" OR (created_at = ")
                .push_bind(at)
                .push(" AND id < ")
                .push_bind(id.as_uuid())
                .push("))");
        }
        qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(page.size) + 1);
        let found: Vec<SessionRow> = qb.build_query_as().fetch_all(self.reads).await?;
        let mut items = found
            .into_iter()
            .map(rows::session)
            .collect::<Result<Vec<_>, _>>()?;
        let next_page_token = if items.len() > page.size as usize {
            items.truncate(page.size as usize);
            items.last().map(|s| encode_token(s.created_at, s.id))
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
        })
    }

    /// [`PipelineStore::items`](super::PipelineStore::items).
    pub(crate) async fn pipeline_items(
        &self,
        id: SessionId,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ItemRecord>, StoreError> {
        let Some(session) = self.pipeline_session(id).await? else {
            return Ok(Vec::new());
        };
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT position, item_id, data, status FROM pipeline_items WHERE session_id = ",
        );
        qb.push_bind(id.as_uuid());
        if let Some(after) = after {
            qb.push(" AND position > ").push_bind(signed(after));
        }
        qb.push(" ORDER BY position LIMIT ")
            .push_bind(i64::from(limit));
        let found: Vec<(i64, String, Json<Value>, String)> =
            qb.build_query_as().fetch_all(self.reads).await?;
        let (Some(first), Some(last)) = (found.first(), found.last()) else {
            return Ok(Vec::new());
        };
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT position, stage_index, status, task_id, result, error FROM pipeline_stages \
             WHERE session_id = ",
        );
        qb.push_bind(id.as_uuid())
            .push(" AND position >= ")
            .push_bind(first.0)
            .push(" AND position <= ")
            .push_bind(last.0)
            .push(" ORDER BY position, stage_index");
        let stages: Vec<StageRow> = qb.build_query_as().fetch_all(self.reads).await?;
        let mut stages = stages.into_iter().peekable();
        let mut out = Vec::with_capacity(found.len());
        for (pos, item_id, Json(data), status) in found {
            let mut item = ItemRecord {
                position: unsigned(pos),
                id: item_id,
                data,
                status: status
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("item status {status:?}")))?,
                stages: Vec::new(),
            };
            while let Some(row) = stages.next_if(|r| r.0 == pos) {
                item.stages.push(rows::stage(&session.definition, row)?);
            }
            out.push(item);
        }
        Ok(out)
    }

    /// [`PipelineStore::cancel_session`](super::PipelineStore::cancel_session).
    pub(crate) async fn pipeline_cancel(
        &self,
        id: SessionId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<(SessionRecord, bool, Vec<TaskId>)>, StoreError> {
        let mut tx = self.writes.begin().await?;
        let Some(session) = Self::lock(&mut tx, id).await? else {
            return Ok(None);
        };
        if session.status.is_final() {
            return Ok(Some((session, false, Vec::new())));
        }
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT task_id FROM pipeline_stages WHERE status = 'running' AND session_id = ",
        );
        qb.push_bind(id.as_uuid());
        let running: Vec<Option<Uuid>> = qb.build_query_scalar().fetch_all(&mut *tx).await?;
        let mut qb = QueryBuilder::<DB>::new(
            "UPDATE pipeline_stages SET status = 'cancelled', updated_at = ",
        );
        qb.push_bind(at)
            .push(" WHERE status IN ('waiting', 'ready', 'running') AND session_id = ")
            .push_bind(id.as_uuid());
        qb.build().execute(&mut *tx).await?;
        let mut qb = QueryBuilder::<DB>::new(
            "UPDATE pipeline_items SET status = 'cancelled' \
             WHERE status IN ('pending', 'processing') AND session_id = ",
        );
        qb.push_bind(id.as_uuid());
        qb.build().execute(&mut *tx).await?;
        let mut qb =
            QueryBuilder::<DB>::new("UPDATE pipeline_sessions SET status = 'cancelled', error = ");
        qb.push_bind(reason.to_owned())
            .push(", updated_at = ")
            .push_bind(at)
            .push(", finished_at = ")
            .push_bind(at)
            .push(" WHERE id = ")
            .push_bind(id.as_uuid());
        qb.build().execute(&mut *tx).await?;
        let event = NewEvent::pipeline(
            id,
            session.user_id.clone(),
            TaskEventType::PipelineSessionDone,
            json!({"status": "cancelled", "reason": reason}),
            at,
        );
        let stored = DB::insert_events(&mut tx, vec![event]).await?;
        tx.commit().await?;
        self.after_commit.publish(stored);
        let now = self
            .pipeline_session(id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("session {id} vanished")))?;
        let tasks = running
            .into_iter()
            .flatten()
            .map(TaskId::from_uuid)
            .collect();
        Ok(Some((now, true, tasks)))
    }
}
