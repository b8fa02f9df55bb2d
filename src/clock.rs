//! Time as the switch writes it: ISO 8601 with the configured offset (+07:00 by default).

use chrono::{DateTime, FixedOffset, SecondsFormat, Timelike, Utc};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset: FixedOffset,
}

impl Clock {
    pub fn new(offset: FixedOffset) -> Clock {
        Clock { offset }
    }

    /// Now, in whole seconds: IPG timestamps carry no fractions, and a stored time must
    /// print the same as the answer that carried it.
    pub fn now(&self) -> DateTime<FixedOffset> {
        let t = Utc::now().with_timezone(&self.offset);
        t.with_nanosecond(0).unwrap_or(t)
    }

    /// `2022-04-05T06:11:58+07:00`
    pub fn stamp(&self, t: DateTime<FixedOffset>) -> String {
        t.with_timezone(&self.offset)
            .to_rfc3339_opts(SecondsFormat::Secs, false)
    }

    pub fn stamp_now(&self) -> String {
        self.stamp(self.now())
    }
}
