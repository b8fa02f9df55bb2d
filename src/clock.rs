//! Time as the switch writes it: ISO 8601 with the configured offset (+07:00 by default).

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    offset: FixedOffset,
}

impl Clock {
    pub fn new(offset: FixedOffset) -> Clock {
        Clock { offset }
    }

    pub fn now(&self) -> DateTime<FixedOffset> {
        Utc::now().with_timezone(&self.offset)
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
