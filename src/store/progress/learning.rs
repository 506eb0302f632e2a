//! The Progress read model's rows: users, their items, their days.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{ColumnIndex, Executor, QueryBuilder, Transaction};

use super::sql::{ProjectionDialect, signed, unsigned};
use crate::domain::UserId;
use crate::domain::progress::{
    DailyCounts, ItemKey, ItemState, LearningEvent, MasteryStats, ProgressFold, UserState,
    UserTimeZone,
};
use crate::store::StoreError;
use crate::store::sql::{Bind, Column, IN_CHUNK, INSERT_CHUNK};

/// The columns of [`UserRow`], in its order.
pub(super) const USER_COLUMNS: &str = "user_id, time_zone, sessions_completed, study_seconds, \
     correct_answers, wrong_answers, items_learned, streak_days, last_study_day, unlearned, \
     learning, short_term_mastered, long_term_mastered, last_event_at";

/// A `progress_users` row, in [`USER_COLUMNS`] order.
pub(super) type UserRow = (
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<NaiveDate>,
    i64,
    i64,
    i64,
    i64,
    Option<DateTime<Utc>>,
);

/// A user's state read back.
pub(super) fn into_user(r: UserRow) -> Result<(UserId, UserState), StoreError> {
    let (
        user,
        zone,
        sessions,
        seconds,
        correct,
        wrong,
        learned,
        streak,
        last_day,
        un,
        le,
        st,
        lt,
        at,
    ) = r;
    let corrupt = |what: &str| StoreError::Corrupt(format!("progress of {user:?}: bad {what}"));
    let user_id = UserId::parse(&user).map_err(|_| corrupt("user_id"))?;
    let state = UserState {
        time_zone: UserTimeZone::parse(&zone).map_err(|_| corrupt("time_zone"))?,
        sessions_completed: unsigned(sessions, "count")?,
        study_seconds: unsigned(seconds, "count")?,
        correct_answers: unsigned(correct, "count")?,
        wrong_answers: unsigned(wrong, "count")?,
        items_learned: unsigned(learned, "count")?,
        streak_days: u32::try_from(streak).map_err(|_| corrupt("streak"))?,
        last_study_day: last_day,
        mastery: MasteryStats {
            unlearned: unsigned(un, "count")?,
            learning: unsigned(le, "count")?,
            short_term_mastered: unsigned(st, "count")?,
            long_term_mastered: unsigned(lt, "count")?,
        },
        last_event_at: at,
    };
    Ok((user_id, state))
}

/// Folds `events` into the generation's rows, in the open transaction.
pub(super) async fn write<DB>(
    tx: &mut Transaction<'_, DB>,
    generation: i64,
    events: &[(UserId, LearningEvent, DateTime<Utc>)],
) -> Result<(), StoreError>
where
    DB: ProjectionDialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    i64: Column<DB>,
    bool: Column<DB>,
    Option<i64>: Column<DB>,
    NaiveDate: Column<DB>,
    Option<NaiveDate>: Column<DB>,
    Option<DateTime<Utc>>: Column<DB>,
{
    if events.is_empty() {
        return Ok(());
    }
    let (users, items) = ProgressFold::needs(events.iter().map(|(u, e, _)| (u, e)));
    let mut fold = ProgressFold::new(
        load_users(tx, generation, &users).await?,
        load_items(tx, generation, &items).await?,
    );
    for (user, event, at) in events {
        fold.apply(user, event, *at);
    }
    let changed: Vec<_> = fold.changed_users().collect();
    for chunk in changed.chunks(INSERT_CHUNK) {
        let mut qb = QueryBuilder::<DB>::new(format!(
            "INSERT INTO progress_users (generation, {USER_COLUMNS}) "
        ));
        qb.push_values(chunk, |mut b, (user, s)| {
            b.push_bind(generation)
                .push_bind(user.as_str())
                .push_bind(s.time_zone.name())
                .push_bind(signed(s.sessions_completed))
                .push_bind(signed(s.study_seconds))
                .push_bind(signed(s.correct_answers))
                .push_bind(signed(s.wrong_answers))
                .push_bind(signed(s.items_learned))
                .push_bind(i64::from(s.streak_days))
                .push_bind(s.last_study_day)
                .push_bind(signed(s.mastery.unlearned))
                .push_bind(signed(s.mastery.learning))
                .push_bind(signed(s.mastery.short_term_mastered))
                .push_bind(signed(s.mastery.long_term_mastered))
                .push_bind(s.last_event_at);
        });
        qb.push(
            " ON CONFLICT (generation, user_id) DO UPDATE SET time_zone = excluded.time_zone, \
             sessions_completed = excluded.sessions_completed, \
             study_seconds = excluded.study_seconds, correct_answers = excluded.correct_answers, \
             wrong_answers = excluded.wrong_answers, items_learned = excluded.items_learned, \
             streak_days = excluded.streak_days, last_study_day = excluded.last_study_day, \
             unlearned = excluded.unlearned, learning = excluded.learning, \
             short_term_mastered = excluded.short_term_mastered, \
             long_term_mastered = excluded.long_term_mastered, \
             last_event_at = excluded.last_event_at",
        );
        qb.build().execute(&mut **tx).await?;
    }
    let changed: Vec<_> = fold.changed_items().collect();
    for chunk in changed.chunks(INSERT_CHUNK) {
        let mut qb = QueryBuilder::<DB>::new(
            "INSERT INTO progress_items (generation, user_id, item_id, interval_days, learned) ",
        );
        qb.push_values(chunk, |mut b, ((user, item), s)| {
            b.push_bind(generation)
                .push_bind(user.as_str())
                .push_bind(item.as_str())
                .push_bind(s.interval_days.map(i64::from))
                .push_bind(s.learned);
        });
        qb.push(
            " ON CONFLICT (generation, user_id, item_id) DO UPDATE SET \
             interval_days = excluded.interval_days, learned = excluded.learned",
        );
        qb.build().execute(&mut **tx).await?;
    }
    let days: Vec<_> = fold.daily().iter().collect();
    for chunk in days.chunks(INSERT_CHUNK) {
        let mut qb = QueryBuilder::<DB>::new(
            "INSERT INTO progress_daily (generation, user_id, day, sessions_completed, \
             items_learned, items_reviewed, study_seconds, correct_answers, wrong_answers, \
             new_mastery_count) ",
        );
        qb.push_values(chunk, |mut b, ((user, day), c)| {
            b.push_bind(generation)
                .push_bind(user.as_str())
                .push_bind(*day)
                .push_bind(signed(c.sessions_completed))
                .push_bind(signed(c.items_learned))
                .push_bind(signed(c.items_reviewed))
                .push_bind(signed(c.study_seconds))
                .push_bind(signed(c.correct_answers))
                .push_bind(signed(c.wrong_answers))
                .push_bind(signed(c.new_mastery_count));
        });
        qb.push(
            " ON CONFLICT (generation, user_id, day) DO UPDATE SET \
             sessions_completed = progress_daily.sessions_completed + excluded.sessions_completed, \
             items_learned = progress_daily.items_learned + excluded.items_learned, \
             items_reviewed = progress_daily.items_reviewed + excluded.items_reviewed, \
             study_seconds = progress_daily.study_seconds + excluded.study_seconds, \
             correct_answers = progress_daily.correct_answers + excluded.correct_answers, \
             wrong_answers = progress_daily.wrong_answers + excluded.wrong_answers, \
             new_mastery_count = progress_daily.new_mastery_count + excluded.new_mastery_count",
        );
        qb.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// The stored state of `users` in the generation (absent users have no row yet).
async fn load_users<DB>(
    tx: &mut Transaction<'_, DB>,
    generation: i64,
    users: &BTreeSet<UserId>,
) -> Result<HashMap<UserId, UserState>, StoreError>
where
    DB: ProjectionDialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    i64: Column<DB>,
    Option<NaiveDate>: Column<DB>,
    Option<DateTime<Utc>>: Column<DB>,
{
    let users: Vec<&UserId> = users.iter().collect();
    let mut found = HashMap::with_capacity(users.len());
    for chunk in users.chunks(IN_CHUNK) {
        let mut qb = QueryBuilder::<DB>::new(format!(
            "SELECT {USER_COLUMNS} FROM progress_users WHERE generation = "
        ));
        qb.push_bind(generation).push(" AND user_id IN (");
        let mut list = qb.separated(", ");
        for u in chunk {
            list.push_bind(u.as_str());
        }
        qb.push(")");
        let rows: Vec<UserRow> = qb.build_query_as().fetch_all(&mut **tx).await?;
        for row in rows {
            let (user, state) = into_user(row)?;
            found.insert(user, state);
        }
    }
    Ok(found)
}

/// The stored state of `items` in the generation.
async fn load_items<DB>(
    tx: &mut Transaction<'_, DB>,
    generation: i64,
    items: &BTreeSet<ItemKey>,
) -> Result<HashMap<ItemKey, ItemState>, StoreError>
where
    DB: ProjectionDialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'s> &'s str: Bind<DB> + ColumnIndex<DB::Row>,
    usize: ColumnIndex<DB::Row>,
    String: Column<DB>,
    i64: Column<DB>,
    bool: Column<DB>,
    Option<i64>: Column<DB>,
{
    let items: Vec<&ItemKey> = items.iter().collect();
    let mut found = HashMap::with_capacity(items.len());
    for chunk in items.chunks(IN_CHUNK / 2) {
        let mut qb = QueryBuilder::<DB>::new(
            "SELECT user_id, item_id, interval_days, learned FROM progress_items \
             WHERE generation = ",
        );
        qb.push_bind(generation)
            .push(" AND (user_id, item_id) IN (");
        let mut first = true;
        for (user, item) in chunk {
            if !first {
                qb.push(", ");
            }
            first = false;
            qb.push("(")
                .push_bind(user.as_str())
                .push(", ")
                .push_bind(item.as_str())
                .push(")");
        }
        qb.push(")");
        let rows: Vec<(String, String, Option<i64>, bool)> =
            qb.build_query_as().fetch_all(&mut **tx).await?;
        for (user, item, interval, learned) in rows {
            let corrupt = || StoreError::Corrupt(format!("item {item:?} of {user:?}"));
            let user = UserId::parse(&user).map_err(|_| corrupt())?;
            let interval_days = match interval {
                Some(d) => Some(u32::try_from(d).map_err(|_| corrupt())?),
                None => None,
            };
            found.insert(
                (user, item.clone()),
                ItemState {
                    interval_days,
                    learned,
                },
            );
        }
    }
    Ok(found)
}

/// A `progress_daily` row's counts, from `sessions_completed` to `new_mastery_count`.
pub(super) type DailyRow = (NaiveDate, i64, i64, i64, i64, i64, i64, i64);

/// A day's counts read back.
pub(super) fn into_daily(r: DailyRow) -> Result<(NaiveDate, DailyCounts), StoreError> {
    let (day, sessions, learned, reviewed, seconds, correct, wrong, mastered) = r;
    Ok((
        day,
        DailyCounts {
            sessions_completed: unsigned(sessions, "count")?,
            items_learned: unsigned(learned, "count")?,
            items_reviewed: unsigned(reviewed, "count")?,
            study_seconds: unsigned(seconds, "count")?,
            correct_answers: unsigned(correct, "count")?,
            wrong_answers: unsigned(wrong, "count")?,
            new_mastery_count: unsigned(mastered, "count")?,
        },
    ))
}
