//! The configured named queues, how task types route to them, and how one pop shares its
//! slots among them.

use std::collections::HashMap;

use crate::domain::{QueueKind, QueueName, TaskType};
use crate::ratelimit::Rate;

/// One named queue as configured (`QUEUES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    /// Its name; tasks record it.
    pub name: QueueName,
    /// FIFO, priority, or rate-limited.
    pub kind: QueueKind,
    /// Starts allowed per period, for `RateLimited` queues (all instances together).
    pub rate: Option<Rate>,
    /// Tasks of this queue one instance runs at once.
    pub concurrency: usize,
}

impl QueueSpec {
    /// A priority queue called `default` with `concurrency` slots: the configuration when
    /// `QUEUES` is unset.
    pub fn default_queue(concurrency: usize) -> Self {
        Self {
            name: QueueName::default_queue(),
            kind: QueueKind::Priority,
            rate: None,
            concurrency,
        }
    }

    /// The priority an entry of this queue is ordered by: a standard queue ignores priority
    /// (every entry gets the same, so push order decides).
    pub fn effective_priority(&self, priority: crate::domain::Priority) -> u8 {
        match self.kind {
            QueueKind::Standard => crate::domain::Priority::MAX.value(),
            QueueKind::Priority | QueueKind::RateLimited => priority.value(),
        }
    }
}

/// Every configured queue and the route of each task type. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSet {
    specs: Vec<QueueSpec>,
    /// Task types routed explicitly (`QUEUE_ROUTE_<TYPE>`); the rest go to [`Self::fallback`].
    routes: HashMap<TaskType, QueueName>,
}

impl QueueSet {
    /// Queues `specs` (the first one is the fallback for unrouted types and for task rows that
    /// name a queue no longer configured) with explicit `routes`. `None` if `specs` is empty,
    /// has a duplicate name, or a route names an unknown queue.
    pub fn new(specs: Vec<QueueSpec>, routes: HashMap<TaskType, QueueName>) -> Option<Self> {
        specs.first()?;
        for (i, s) in specs.iter().enumerate() {
            if specs[..i].iter().any(|o| o.name == s.name) {
                return None;
            }
        }
        if routes.values().any(|q| !specs.iter().any(|s| s.name == *q)) {
            return None;
        }
        Some(Self { specs, routes })
    }

    /// One priority queue `default` serving every type.
    pub fn single(concurrency: usize) -> Self {
        Self {
            specs: vec![QueueSpec::default_queue(concurrency)],
            routes: HashMap::new(),
        }
    }

    /// The queues, in configuration order.
    pub fn specs(&self) -> &[QueueSpec] {
        &self.specs
    }

    /// The queue a new task of `task_type` goes to: its route, else `default` if configured,
    /// else the first queue.
    pub fn route(&self, task_type: TaskType) -> QueueName {
        match self.routes.get(&task_type) {
            Some(q) => *q,
            None => self.route_fallback(),
        }
    }

    /// Where `name` sits in [`Self::specs`], if configured.
    pub fn index_of(&self, name: QueueName) -> Option<usize> {
        self.specs.iter().position(|s| s.name == name)
    }

    /// The index of the queue that serves entries recorded under `name`: that queue, or the
    /// fallback (the default route) when it is no longer configured.
    pub fn lane_of(&self, name: QueueName) -> usize {
        self.index_of(name)
            .or_else(|| self.index_of(self.route_fallback()))
            .unwrap_or(0)
    }

    fn route_fallback(&self) -> QueueName {
        let default = QueueName::default_queue();
        if self.index_of(default).is_some() {
            default
        } else {
            self.specs[0].name
        }
    }

    /// The spec of `name`, if configured.
    pub fn get(&self, name: QueueName) -> Option<&QueueSpec> {
        self.index_of(name).map(|i| &self.specs[i])
    }
}

/// Shares `total` slots among queues that can give `available[i]` tasks each, in the order
/// given (earlier queues are preferred when the slots do not go round). Water-filling: every
/// queue with work gets an equal share of what is left, and what one cannot use goes to the
/// others, so one queue's flood never takes the slots another could use. The Redis pop script
/// implements the same rule.
pub fn allocate(total: usize, available: &[usize]) -> Vec<usize> {
    let mut alloc = vec![0; available.len()];
    let mut left = total;
    loop {
        let open: Vec<usize> = (0..available.len())
            .filter(|&i| alloc[i] < available[i])
            .collect();
        if open.is_empty() || left == 0 {
            return alloc;
        }
        let share = (left / open.len()).max(1);
        for i in open {
            let give = share.min(available[i] - alloc[i]).min(left);
            alloc[i] += give;
            left -= give;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: QueueKind) -> QueueSpec {
        QueueSpec {
            name: QueueName::parse(name).unwrap(),
            kind,
            rate: None,
            concurrency: 4,
        }
    }

    #[test]
    fn allocation_is_fair_and_uses_every_slot_it_can() {
        assert_eq!(allocate(10, &[100, 100]), vec![5, 5]);
        // What one queue cannot use goes to the other.
        assert_eq!(allocate(10, &[100, 2]), vec![8, 2]);
        assert_eq!(allocate(10, &[0, 100]), vec![0, 10]);
        // Too few slots to go round: the first in order get one each.
        assert_eq!(allocate(2, &[5, 5, 5]), vec![1, 1, 0]);
        assert_eq!(allocate(7, &[3, 3, 3]), vec![3, 2, 2]);
        assert_eq!(allocate(0, &[3]), vec![0]);
        assert_eq!(allocate(5, &[]), Vec::<usize>::new());
        assert_eq!(allocate(256, &[1000]), vec![256]);
    }

    #[test]
    fn routes_fall_back_to_default_then_first() {
        let images = QueueName::parse("images").unwrap();
        let set = QueueSet::new(
            vec![
                spec("images", QueueKind::RateLimited),
                spec("default", QueueKind::Priority),
            ],
            HashMap::from([(TaskType::ImageGeneration, images)]),
        )
        .unwrap();
        assert_eq!(set.route(TaskType::ImageGeneration), images);
        assert_eq!(set.route(TaskType::Echo), QueueName::default_queue());
        assert_eq!(set.lane_of(QueueName::parse("gone").unwrap()), 1);

        let only = QueueSet::new(vec![spec("fast", QueueKind::Standard)], HashMap::new()).unwrap();
        assert_eq!(only.route(TaskType::Echo).as_str(), "fast");
        assert_eq!(only.lane_of(QueueName::default_queue()), 0);

        assert!(QueueSet::new(vec![], HashMap::new()).is_none());
        assert!(
            QueueSet::new(
                vec![
                    spec("a", QueueKind::Standard),
                    spec("a", QueueKind::Priority)
                ],
                HashMap::new()
            )
            .is_none()
        );
        assert!(
            QueueSet::new(
                vec![spec("a", QueueKind::Standard)],
                HashMap::from([(TaskType::Echo, images)])
            )
            .is_none()
        );
    }
}
