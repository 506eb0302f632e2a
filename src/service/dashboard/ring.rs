//! The last 15 minutes of [`Point`]s, one a second: the history a new dashboard starts with.

use std::collections::VecDeque;

use super::point::Point;

/// Seconds of history kept.
pub const HISTORY_SECONDS: usize = 15 * 60;

/// The newest [`HISTORY_SECONDS`] points, oldest first.
#[derive(Debug, Default)]
pub struct Ring {
    points: VecDeque<Point>,
}

impl Ring {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the point of a new second, dropping the oldest past the window.
    pub fn push(&mut self, point: Point) {
        if self.points.len() == HISTORY_SECONDS {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    /// Every point, oldest first.
    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }

    /// The newest `n` points (fewer when the ring holds fewer).
    pub fn last(&self, n: usize) -> impl Iterator<Item = &Point> {
        self.points.iter().skip(self.points.len().saturating_sub(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_fifteen_minutes() {
        let mut r = Ring::new();
        for at in 0..(HISTORY_SECONDS as i64 + 10) {
            r.push(Point {
                at,
                ..Point::default()
            });
        }
        assert_eq!(r.points().count(), HISTORY_SECONDS);
        assert_eq!(r.points().next().map(|p| p.at), Some(10));
        let last: Vec<i64> = r.last(2).map(|p| p.at).collect();
        assert_eq!(
            last,
            [HISTORY_SECONDS as i64 + 8, HISTORY_SECONDS as i64 + 9]
        );
    }
}
