//! `QUEUES`, `QUEUE_ROUTE_<TYPE>` and the worker pool's adaptive limit.
//!
//! `QUEUES` is a comma-separated list of `name:type[:option=value]...`:
//! `default:priority:concurrency=8,images:rate_limited:rate=50/min:concurrency=2`.
//! Types: `standard` (FIFO), `priority`, `rate_limited` (needs `rate=N/period`). Options:
//! `concurrency=N` (tasks of that queue one instance runs at once; default `WORKER_POOL_SIZE`),
//! `rate=N/period` (only for `rate_limited`).

use std::collections::HashMap;

use super::Reader;
use crate::domain::{QueueKind, QueueName, TaskType};
use crate::queue::{QueueSet, QueueSpec};
use crate::ratelimit::Rate;

/// The variable that routes `t`.
fn route_var(t: TaskType) -> &'static str {
    match t {
        TaskType::Echo => "QUEUE_ROUTE_ECHO",
        TaskType::Summarize => "QUEUE_ROUTE_SUMMARIZE",
        TaskType::ExtractContent => "QUEUE_ROUTE_EXTRACT_CONTENT",
        TaskType::ValidateSummary => "QUEUE_ROUTE_VALIDATE_SUMMARY",
        TaskType::ItemInfoGeneration => "QUEUE_ROUTE_ITEM_INFO_GENERATION",
        TaskType::ImageGeneration => "QUEUE_ROUTE_IMAGE_GENERATION",
        TaskType::TestCustomization => "QUEUE_ROUTE_TEST_CUSTOMIZATION",
        // Never queued: chat turns run outside the queue.
        TaskType::Chat => "QUEUE_ROUTE_CHAT",
        TaskType::Prompt => "QUEUE_ROUTE_PROMPT",
    }
}

/// Parses one `name:type[:option=value]...` item; `pool_size` is the default concurrency.
fn parse_queue(item: &str, pool_size: usize) -> Result<QueueSpec, String> {
    let mut parts = item.split(':').map(str::trim);
    let name = parts.next().unwrap_or_default();
    let name = QueueName::parse(name).map_err(|e| e.to_string())?;
    let kind: QueueKind = parts
        .next()
        .ok_or_else(|| format!("queue {name}: missing type (standard, priority or rate_limited)"))?
        .parse()
        .map_err(|e: crate::domain::DomainError| format!("queue {name}: {e}"))?;
    let mut concurrency = pool_size;
    let mut rate: Option<Rate> = None;
    for opt in parts {
        let (key, value) = opt
            .split_once('=')
            .ok_or_else(|| format!("queue {name}: {opt:?} is not option=value"))?;
        match key.trim() {
            "concurrency" => {
                concurrency = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "queue {name}: concurrency {value:?} is not a number from 1 to 10000"
                        )
                    })?;
            }
            "rate" if kind == QueueKind::RateLimited => {
                rate = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|e| format!("queue {name}: {e}"))?,
                );
            }
            "rate" => {
                return Err(format!(
                    "queue {name}: only a rate_limited queue takes a rate"
                ));
            }
            other => {
                return Err(format!(
                    "queue {name}: unknown option {other:?} (concurrency, rate)"
                ));
            }
        }
    }
    if kind == QueueKind::RateLimited && rate.is_none() {
        return Err(format!(
            "queue {name}: rate_limited needs rate=N/period, e.g. rate=50/min"
        ));
    }
    Ok(QueueSpec {
        name,
        kind,
        rate,
        concurrency,
    })
}

impl Reader<'_> {
    /// `QUEUES` and the routes; one priority queue `default` when unset.
    pub(super) fn queues(&mut self, pool_size: usize) -> QueueSet {
        let mut specs: Vec<QueueSpec> = Vec::new();
        if let Some(raw) = self.raw("QUEUES").map(str::to_owned) {
            for item in raw.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                match parse_queue(item, pool_size) {
                    Ok(spec) if specs.iter().any(|s| s.name == spec.name) => {
                        self.problem("QUEUES", format!("queue {} is listed twice", spec.name));
                    }
                    Ok(spec) => specs.push(spec),
                    Err(e) => self.problem("QUEUES", e),
                }
            }
            if specs.is_empty() {
                self.problem("QUEUES", "names no valid queue");
            }
        }
        if specs.is_empty() {
            specs.push(QueueSpec::default_queue(pool_size));
        }
        let mut routes = HashMap::new();
        for t in TaskType::ALL {
            let var = route_var(t);
            let Some(raw) = self.raw(var).map(str::to_owned) else {
                continue;
            };
            match QueueName::parse(&raw) {
                Ok(q) if specs.iter().any(|s| s.name == q) => {
                    routes.insert(t, q);
                }
                _ => {
                    let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
                    self.problem(
                        var,
                        format!("{raw:?} is not a configured queue ({})", known.join(", ")),
                    );
                }
            }
        }
        // Names are unique and routes known by now, so this cannot fail.
        QueueSet::new(specs, routes).unwrap_or_else(|| QueueSet::single(pool_size))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Config;
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_is_one_priority_queue_sized_like_the_pool() {
        let c = Config::from_vars(&vars(&[("WORKER_POOL_SIZE", "7")])).unwrap();
        assert_eq!(c.queues, QueueSet::single(7));
        assert_eq!(c.queues.route(TaskType::Summarize).as_str(), "default");
        assert_eq!(c.worker_pool_min, 1);
        assert!(c.adaptive_pool);
    }

    #[test]
    fn queues_and_routes_parse() {
        let c = Config::from_vars(&vars(&[
            (
                "QUEUES",
                "default:priority:concurrency=8, images:rate_limited:rate=50/min:concurrency=2,\
                 bulk:standard",
            ),
            ("QUEUE_ROUTE_IMAGE_GENERATION", "images"),
            ("QUEUE_ROUTE_VALIDATE_SUMMARY", "bulk"),
            ("WORKER_POOL_SIZE", "20"),
            ("WORKER_POOL_MIN", "2"),
            ("ADAPTIVE_POOL", "false"),
        ]))
        .unwrap();
        let specs = c.queues.specs();
        assert_eq!(specs.len(), 3);
        assert_eq!(
            (specs[0].kind, specs[0].concurrency),
            (QueueKind::Priority, 8)
        );
        assert_eq!(specs[1].kind, QueueKind::RateLimited);
        assert_eq!(specs[1].rate.unwrap().period, Duration::from_secs(60));
        assert_eq!(specs[1].concurrency, 2);
        assert_eq!(
            (specs[2].kind, specs[2].concurrency),
            (QueueKind::Standard, 20)
        );
        assert_eq!(c.queues.route(TaskType::ImageGeneration).as_str(), "images");
        assert_eq!(c.queues.route(TaskType::ValidateSummary).as_str(), "bulk");
        assert_eq!(c.queues.route(TaskType::Echo).as_str(), "default");
        assert_eq!(c.worker_pool_min, 2);
        assert!(!c.adaptive_pool);
    }

    #[test]
    fn every_queue_problem_is_reported() {
        let err = Config::from_vars(&vars(&[
            (
                "QUEUES",
                "a:priority,a:standard,B:priority,c:fifo,d:rate_limited,e:standard:rate=1/s,\
                 f:priority:concurrency=0,g:priority:color=red",
            ),
            ("QUEUE_ROUTE_ECHO", "nowhere"),
            ("WORKER_POOL_MIN", "50"),
            ("ADAPTIVE_POOL", "maybe"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "listed twice",
            "\"B\"",
            "unknown queue type",
            "needs rate",
            "only a rate_limited",
            "concurrency \"0\"",
            "unknown option",
            "QUEUE_ROUTE_ECHO",
            "WORKER_POOL_MIN",
            "ADAPTIVE_POOL",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }
}
