//! Window specifications: [`TimeWindows`], [`SlidingWindows`] and [`SessionWindows`].
//! Invalid ones (a zero size, an advance larger than the size, ...) are reported by
//! `StreamsBuilder::build`, as Kafka throws when they are built.

use std::time::Duration;

use super::Window;

/// Most windows one record may fall in (hopping windows: size / advance). More is almost
/// certainly a mistake: each window costs a store write and a changelog record per record.
pub const HOPPING_WINDOWS_PER_RECORD_MAX: i64 = 10_000;

/// Longest size, advance, difference, gap or grace accepted, so that sums of a timestamp
/// and a few of them cannot overflow (about 18 000 years).
const SPAN_MS_MAX: i64 = i64::MAX / 16;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn check_span(what: &str, value_ms: i64) -> Result<(), String> {
    if value_ms > SPAN_MS_MAX {
        return Err(format!("{what} is {value_ms} ms; at most {SPAN_MS_MAX} ms is supported"));
    }
    Ok(())
}

/// Fixed-size time windows `[start, start + size)`: tumbling, or hopping with
/// [`TimeWindows::advance_by`] (Kafka's `TimeWindows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    pub(crate) size_ms: i64,
    pub(crate) advance_ms: i64,
    pub(crate) grace_ms: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size` that accept records up to `grace` after their end.
    pub fn of_size_with_grace(size: Duration, grace: Duration) -> TimeWindows {
        TimeWindows { size_ms: ms(size), advance_ms: ms(size), grace_ms: ms(grace) }
    }

    /// Tumbling windows of `size` that close at their end.
    pub fn of_size_no_grace(size: Duration) -> TimeWindows {
        Self::of_size_with_grace(size, Duration::ZERO)
    }

    /// Builder: hopping windows, one starting every `advance` (at most the size).
    pub fn advance_by(self, advance: Duration) -> TimeWindows {
        TimeWindows { advance_ms: ms(advance), ..self }
    }

    /// Window size in ms.
    pub fn size_ms(&self) -> i64 {
        self.size_ms
    }

    /// Distance between window starts in ms (the size for tumbling windows).
    pub fn advance_ms(&self) -> i64 {
        self.advance_ms
    }

    /// Grace period in ms.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    /// The windows a record at `timestamp` falls in, by start (none for negative times,
    /// as windows start at 0 or later, or for an invalid spec).
    pub fn windows_for(&self, timestamp: i64) -> Vec<Window> {
        if timestamp < 0 || self.validate().is_err() {
            return Vec::new();
        }
        let mut start = (timestamp - self.size_ms + self.advance_ms).max(0) / self.advance_ms * self.advance_ms;
        let mut out = Vec::new();
        while start <= timestamp {
            out.push(Window { start, end: start + self.size_ms });
            start += self.advance_ms;
        }
        out
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        check_span("TimeWindows size", self.size_ms)?;
        check_span("TimeWindows grace", self.grace_ms)?;
        if self.size_ms <= 0 {
            return Err("TimeWindows size must be larger than zero".into());
        }
        if self.advance_ms <= 0 || self.advance_ms > self.size_ms {
            return Err(format!("TimeWindows advance must be larger than zero and at most the size ({} ms); got {} ms", self.size_ms, self.advance_ms));
        }
        let per_record = (self.size_ms + self.advance_ms - 1) / self.advance_ms;
        if per_record > HOPPING_WINDOWS_PER_RECORD_MAX {
            return Err(format!(
                "TimeWindows of {} ms advancing by {} ms put each record in {per_record} windows; at most {HOPPING_WINDOWS_PER_RECORD_MAX} are allowed",
                self.size_ms, self.advance_ms
            ));
        }
        Ok(())
    }
}

/// Sliding windows of a fixed time difference (KIP-450, Kafka's `SlidingWindows`): the
/// windows `[t - d, t]` and `[t + 1, t + 1 + d]` around each record time `t`, both ends
/// inclusive, so every distinct set of records at most `d` apart has one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    pub(crate) diff_ms: i64,
    pub(crate) grace_ms: i64,
}

impl SlidingWindows {
    /// Windows of records at most `time_difference` apart, accepting records up to `grace`
    /// after a window's end.
    pub fn of_time_difference_and_grace(time_difference: Duration, grace: Duration) -> SlidingWindows {
        SlidingWindows { diff_ms: ms(time_difference), grace_ms: ms(grace) }
    }

    /// Windows of records at most `time_difference` apart, closing at their end.
    pub fn of_time_difference_no_grace(time_difference: Duration) -> SlidingWindows {
        Self::of_time_difference_and_grace(time_difference, Duration::ZERO)
    }

    /// The time difference (window size) in ms.
    pub fn time_difference_ms(&self) -> i64 {
        self.diff_ms
    }

    /// Grace period in ms.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        check_span("SlidingWindows time difference", self.diff_ms)?;
        check_span("SlidingWindows grace", self.grace_ms)
    }
}

/// Session windows (Kafka's `SessionWindows`): a key's records at most the inactivity gap
/// apart form one session `[first, last]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    pub(crate) gap_ms: i64,
    pub(crate) grace_ms: i64,
}

impl SessionWindows {
    /// Sessions split by `gap` of inactivity, accepting records up to `grace` after a
    /// session's end.
    pub fn of_inactivity_gap_and_grace(gap: Duration, grace: Duration) -> SessionWindows {
        SessionWindows { gap_ms: ms(gap), grace_ms: ms(grace) }
    }

    /// Sessions split by `gap` of inactivity, closing at their end.
    pub fn of_inactivity_gap_no_grace(gap: Duration) -> SessionWindows {
        Self::of_inactivity_gap_and_grace(gap, Duration::ZERO)
    }

    /// The inactivity gap in ms.
    pub fn inactivity_gap_ms(&self) -> i64 {
        self.gap_ms
    }

    /// Grace period in ms.
    pub fn grace_ms(&self) -> i64 {
        self.grace_ms
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        check_span("SessionWindows gap", self.gap_ms)?;
        check_span("SessionWindows grace", self.grace_ms)?;
        if self.gap_ms <= 0 {
            return Err("SessionWindows gap must be larger than zero".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(w: TimeWindows, ts: i64) -> Vec<i64> {
        w.windows_for(ts).iter().map(|w| w.start).collect()
    }

    #[test]
    fn windows_for_matches_kafka() {
        let tumbling = TimeWindows::of_size_no_grace(Duration::from_millis(10));
        assert_eq!(tumbling.windows_for(0), vec![Window::new(0, 10)]);
        assert_eq!(starts(tumbling, 9), vec![0]);
        assert_eq!(starts(tumbling, 10), vec![10]);
        let hopping = tumbling.advance_by(Duration::from_millis(3));
        // Starts are multiples of 3 in (ts - 10, ts], and never negative.
        assert_eq!(starts(hopping, 2), vec![0]);
        assert_eq!(starts(hopping, 12), vec![3, 6, 9, 12]);
        assert!(tumbling.windows_for(-1).is_empty());
    }

    #[test]
    fn invalid_specs_say_why() {
        assert!(TimeWindows::of_size_no_grace(Duration::ZERO).validate().unwrap_err().contains("size"));
        let w = TimeWindows::of_size_no_grace(Duration::from_millis(10));
        assert!(w.advance_by(Duration::from_millis(11)).validate().unwrap_err().contains("advance"));
        assert!(w.advance_by(Duration::ZERO).validate().is_err());
        let many = TimeWindows::of_size_no_grace(Duration::from_secs(86_400)).advance_by(Duration::from_millis(1));
        assert!(many.validate().unwrap_err().contains("windows"));
        assert!(SessionWindows::of_inactivity_gap_no_grace(Duration::ZERO).validate().is_err());
        assert!(SlidingWindows::of_time_difference_no_grace(Duration::MAX).validate().unwrap_err().contains("at most"));
        assert!(SlidingWindows::of_time_difference_no_grace(Duration::ZERO).validate().is_ok(), "Kafka allows a zero difference");
    }
}
