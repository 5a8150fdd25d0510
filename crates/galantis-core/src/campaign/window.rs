//! The send window: the local hours of the day (in an IANA time zone)
//! during which a campaign may dispatch. `start == end` is not a window;
//! `end < start` spans midnight (e.g. 21:00–02:00).

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// A parsed send window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub timezone: Tz,
}

/// The stored and served form: `{"start":"09:00","end":"21:00","timezone":"America/Mexico_City"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendWindowSpec {
    pub start: String,
    pub end: String,
    pub timezone: String,
}

fn hhmm(field: &str, s: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(s, "%H:%M")
        .map_err(|_| format!("send_window.{field}: expected HH:MM (24 h), got {s:?}"))
}

impl SendWindow {
    pub fn parse(spec: &SendWindowSpec) -> Result<Self, String> {
        let start = hhmm("start", &spec.start)?;
        let end = hhmm("end", &spec.end)?;
        if start == end {
            return Err("send_window: start and end must differ".into());
        }
        let timezone: Tz = spec.timezone.parse().map_err(|_| {
            format!(
                "send_window.timezone: {:?} is not an IANA time zone (e.g. America/Mexico_City)",
                spec.timezone
            )
        })?;
        Ok(Self {
            start,
            end,
            timezone,
        })
    }

    pub fn spec(&self) -> SendWindowSpec {
        SendWindowSpec {
            start: self.start.format("%H:%M").to_string(),
            end: self.end.format("%H:%M").to_string(),
            timezone: self.timezone.name().to_owned(),
        }
    }

    /// Whether `now` falls inside the window (start inclusive, end exclusive).
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        let t = now.with_timezone(&self.timezone).time();
        if self.start < self.end {
            t >= self.start && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// `now` when the window is open, else the next instant it opens.
    pub fn next_opening(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        if self.is_open(now) {
            return now;
        }
        let today = now.with_timezone(&self.timezone).date_naive();
        // The opening today, else tomorrow's (two days cover any DST shift).
        (0..3)
            .filter_map(|d| self.opening_on(today + Duration::days(d)))
            .find(|t| *t > now)
            .unwrap_or(now + Duration::days(1))
    }

    /// The instant the window opens on local `day`. A start that falls in a
    /// DST gap opens at the first valid minute after it.
    fn opening_on(&self, day: NaiveDate) -> Option<DateTime<Utc>> {
        let mut local = day.and_time(self.start);
        for _ in 0..180 {
            if let Some(t) = self.timezone.from_local_datetime(&local).earliest() {
                return Some(t.with_timezone(&Utc));
            }
            local += Duration::minutes(1);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: &str, end: &str, tz: &str) -> SendWindow {
        SendWindow::parse(&SendWindowSpec {
            start: start.into(),
            end: end.into(),
            timezone: tz.into(),
        })
        .unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn open_inside_closed_outside_in_the_windows_zone() {
        // Mexico City is UTC-6 (no DST since 2022).
        let win = w("09:00", "21:00", "America/Mexico_City");
        assert!(!win.is_open(at("2026-03-10T14:59:00Z"))); // 08:59 local
        assert!(win.is_open(at("2026-03-10T15:00:00Z"))); // 09:00
        assert!(win.is_open(at("2026-03-11T02:59:00Z"))); // 20:59
        assert!(!win.is_open(at("2026-03-11T03:00:00Z"))); // 21:00
    }

    #[test]
    fn next_opening_is_today_or_tomorrow() {
        let win = w("09:00", "21:00", "America/Mexico_City");
        assert_eq!(
            win.next_opening(at("2026-03-10T12:00:00Z")),
            at("2026-03-10T15:00:00Z")
        );
        assert_eq!(
            win.next_opening(at("2026-03-11T04:00:00Z")),
            at("2026-03-11T15:00:00Z")
        );
        let now = at("2026-03-10T16:00:00Z");
        assert_eq!(win.next_opening(now), now);
    }

    #[test]
    fn overnight_windows_and_dst() {
        let win = w("21:00", "02:00", "Europe/Madrid");
        assert!(win.is_open(at("2026-01-10T23:30:00Z"))); // 00:30 local
        assert!(!win.is_open(at("2026-01-10T12:00:00Z")));
        assert_eq!(
            win.next_opening(at("2026-01-10T12:00:00Z")),
            at("2026-01-10T20:00:00Z")
        );
        // 02:30 does not exist in Madrid on 2026-03-29: opens at 03:00 local.
        let gap = w("02:30", "05:00", "Europe/Madrid");
        assert_eq!(
            gap.next_opening(at("2026-03-28T22:00:00Z")),
            at("2026-03-29T01:00:00Z")
        );
    }

    #[test]
    fn bad_windows_name_the_field() {
        for (s, e, tz, field) in [
            ("9am", "21:00", "UTC", "send_window.start"),
            ("09:00", "25:00", "UTC", "send_window.end"),
            ("09:00", "21:00", "Mars/Olympus", "send_window.timezone"),
            ("09:00", "09:00", "UTC", "send_window"),
        ] {
            let err = SendWindow::parse(&SendWindowSpec {
                start: s.into(),
                end: e.into(),
                timezone: tz.into(),
            })
            .unwrap_err();
            assert!(err.starts_with(field), "{err}");
        }
    }
}
