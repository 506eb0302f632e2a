//! Mastery buckets: how well a user knows an item, from its latest review interval.

use serde::{Deserialize, Serialize};

/// Where an item stands, by the interval (days) of its latest review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MasteryBucket {
    /// Met (answered in a session) but not reviewed yet, or reviewed with interval 0 (a lapse).
    Unlearned,
    /// Interval 1 to 6 days.
    Learning,
    /// Interval 7 to 20 days.
    ShortTermMastered,
    /// Interval 21 days or more (Anki's "mature").
    LongTermMastered,
}

impl MasteryBucket {
    /// Shortest interval (days) of short-term mastery.
    pub const SHORT_TERM_DAYS: u32 = 7;
    /// Shortest interval (days) of long-term mastery.
    pub const LONG_TERM_DAYS: u32 = 21;

    /// The bucket of an item whose latest review interval is `interval` (`None`: no review).
    pub fn of(interval: Option<u32>) -> Self {
        match interval {
            None | Some(0) => Self::Unlearned,
            Some(d) if d < Self::SHORT_TERM_DAYS => Self::Learning,
            Some(d) if d < Self::LONG_TERM_DAYS => Self::ShortTermMastered,
            Some(_) => Self::LongTermMastered,
        }
    }

    /// Whether this counts as mastered (short or long term).
    pub fn is_mastered(self) -> bool {
        matches!(self, Self::ShortTermMastered | Self::LongTermMastered)
    }
}

/// How many of a user's items are in each bucket (seed 002's MasteryStats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MasteryStats {
    /// Met but not learned yet.
    pub unlearned: u64,
    /// Interval 1-6 days.
    pub learning: u64,
    /// Interval 7-20 days.
    pub short_term_mastered: u64,
    /// Interval 21 days or more.
    pub long_term_mastered: u64,
}

impl MasteryStats {
    /// The count of `bucket`.
    fn slot(&mut self, bucket: MasteryBucket) -> &mut u64 {
        match bucket {
            MasteryBucket::Unlearned => &mut self.unlearned,
            MasteryBucket::Learning => &mut self.learning,
            MasteryBucket::ShortTermMastered => &mut self.short_term_mastered,
            MasteryBucket::LongTermMastered => &mut self.long_term_mastered,
        }
    }

    /// A new item lands in `bucket`.
    pub fn add(&mut self, bucket: MasteryBucket) {
        *self.slot(bucket) += 1;
    }

    /// An item moves from `from` to `to`.
    pub fn shift(&mut self, from: MasteryBucket, to: MasteryBucket) {
        if from != to {
            let old = self.slot(from);
            *old = old.saturating_sub(1);
            self.add(to);
        }
    }

    /// Every item counted.
    pub fn total(&self) -> u64 {
        self.unlearned + self.learning + self.short_term_mastered + self.long_term_mastered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_by_interval() {
        use MasteryBucket as B;
        assert_eq!(B::of(None), B::Unlearned);
        assert_eq!(B::of(Some(0)), B::Unlearned);
        assert_eq!(B::of(Some(1)), B::Learning);
        assert_eq!(B::of(Some(6)), B::Learning);
        assert_eq!(B::of(Some(7)), B::ShortTermMastered);
        assert_eq!(B::of(Some(20)), B::ShortTermMastered);
        assert_eq!(B::of(Some(21)), B::LongTermMastered);
        assert!(B::of(Some(30)).is_mastered() && !B::of(Some(3)).is_mastered());
    }

    #[test]
    fn items_move_between_buckets() {
        let mut m = MasteryStats::default();
        m.add(MasteryBucket::Unlearned);
        m.shift(MasteryBucket::Unlearned, MasteryBucket::Learning);
        m.shift(MasteryBucket::Learning, MasteryBucket::Learning);
        assert_eq!((m.unlearned, m.learning, m.total()), (0, 1, 1));
    }
}
