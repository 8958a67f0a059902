//! `DateTimeOffset`: an instant plus the UTC offset it was written with, parsed and
//! formatted the way Microsoft Graph (ODataLib) does.

use std::fmt;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The largest UTC offset accepted, in minutes (±14:00, as .NET's DateTimeOffset).
pub const MAX_OFFSET_MINUTES: i32 = 14 * 60;

/// Seconds since the Unix epoch of 0001-01-01T00:00:00Z, the first instant a
/// `google.protobuf.Timestamp` (and a Graph DateTimeOffset) can hold.
const MIN_SECONDS: i64 = -62_135_596_800;
/// Seconds since the Unix epoch of 9999-12-31T23:59:59Z, the last whole second.
const MAX_SECONDS: i64 = 253_402_300_799;

/// A point in time with the UTC offset it was written with, at 100 ns precision.
///
/// Two values are equal when both the instant and the offset are equal, so
/// `2017-01-01T00:03:03+03:00` and `2016-12-31T21:03:03Z` are different values
/// (they format differently) although they name the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTimeOffset {
    seconds: i64,
    nanos: u32,
    offset_minutes: i32,
}

/// Why a date-time was refused. The `Display` text says what to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DateTimeError {
    #[error(
        "it is not an RFC 3339 date-time (expected yyyy-MM-ddTHH:mm:ss[.fffffff] followed by Z or ±hh:mm)"
    )]
    Malformed,
    #[error("it has no UTC offset (add Z or ±hh:mm)")]
    MissingOffset,
    #[error("it has more than 7 fractional digits (the precision is 100 ns)")]
    TooPrecise,
    #[error("it is not a valid calendar date or time of day")]
    Impossible,
    #[error("its UTC offset is outside ±14:00")]
    OffsetOutOfRange,
    #[error("it or its local time is outside 0001-01-01T00:00:00..9999-12-31T23:59:59.9999999")]
    OutOfRange,
}

impl DateTimeOffset {
    /// Parses an RFC 3339 date-time with a mandatory offset (`Z` or `±hh:mm`) and at
    /// most 7 fractional digits.
    ///
    /// # Errors
    /// A [`DateTimeError`] saying what is wrong; nothing is truncated or guessed.
    pub fn parse(text: &str) -> Result<Self, DateTimeError> {
        let b = text.as_bytes();
        // yyyy-MM-ddTHH:mm:ss is 19 bytes.
        if b.len() < 19
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't')
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(DateTimeError::Malformed);
        }
        let year = digits(&b[0..4])?;
        let month = digits(&b[5..7])?;
        let day = digits(&b[8..10])?;
        let hour = digits(&b[11..13])?;
        let minute = digits(&b[14..16])?;
        let second = digits(&b[17..19])?;

        let mut rest = &b[19..];
        let mut nanos = 0u32;
        if let Some((b'.', fraction)) = rest.split_first() {
            let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
            if len == 0 {
                return Err(DateTimeError::Malformed);
            }
            if len > 7 {
                return Err(DateTimeError::TooPrecise);
            }
            nanos = digits(&fraction[..len])? * 10u32.pow(9 - len as u32);
            rest = &fraction[len..];
        }

        let offset_minutes = match rest {
            [] => return Err(DateTimeError::MissingOffset),
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let hours = digits(&[*h1, *h2])? as i32;
                let minutes = digits(&[*m1, *m2])? as i32;
                if minutes > 59 {
                    return Err(DateTimeError::Impossible);
                }
                let total = hours * 60 + minutes;
                if total > MAX_OFFSET_MINUTES {
                    return Err(DateTimeError::OffsetOutOfRange);
                }
                if *sign == b'-' { -total } else { total }
            }
            _ => return Err(DateTimeError::Malformed),
        };

        let month = u8::try_from(month)
            .ok()
            .and_then(|m| Month::try_from(m).ok())
            .ok_or(DateTimeError::Impossible)?;
        let date = Date::from_calendar_date(year as i32, month, day as u8)
            .map_err(|_| DateTimeError::Impossible)?;
        let time = Time::from_hms_nano(hour as u8, minute as u8, second as u8, nanos)
            .map_err(|_| DateTimeError::Impossible)?;
        let offset = UtcOffset::from_whole_seconds(offset_minutes * 60)
            .map_err(|_| DateTimeError::OffsetOutOfRange)?;
        let instant = PrimitiveDateTime::new(date, time).assume_offset(offset);
        Self::from_parts(instant.unix_timestamp(), nanos, offset_minutes)
    }

    /// Builds a value from its parts: seconds and nanoseconds since the Unix epoch
    /// (as in `google.protobuf.Timestamp`) and the offset in minutes east of UTC.
    ///
    /// # Errors
    /// When the instant is out of range, the nanoseconds are not a multiple of 100,
    /// or the offset is beyond ±14:00.
    pub fn from_parts(
        seconds: i64,
        nanos: u32,
        offset_minutes: i32,
    ) -> Result<Self, DateTimeError> {
        if offset_minutes.abs() > MAX_OFFSET_MINUTES {
            return Err(DateTimeError::OffsetOutOfRange);
        }
        // As in .NET, both the UTC instant and the local time must be in range.
        let local = seconds.saturating_add(i64::from(offset_minutes) * 60);
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds)
            || !(MIN_SECONDS..=MAX_SECONDS).contains(&local)
        {
            return Err(DateTimeError::OutOfRange);
        }
        if nanos >= 1_000_000_000 {
            return Err(DateTimeError::Impossible);
        }
        if !nanos.is_multiple_of(100) {
            return Err(DateTimeError::TooPrecise);
        }
        Ok(Self {
            seconds,
            nanos,
            offset_minutes,
        })
    }

    /// Seconds since the Unix epoch.
    pub fn seconds(&self) -> i64 {
        self.seconds
    }

    /// Nanoseconds within the second (a multiple of 100).
    pub fn nanos(&self) -> u32 {
        self.nanos
    }

    /// The instant in 100 ns ticks since the Unix epoch: a total order of instants
    /// that fits an `i64`, for storage and comparisons.
    pub fn ticks(&self) -> i64 {
        self.seconds * 10_000_000 + i64::from(self.nanos / 100)
    }

    /// The value with these ticks (see [`DateTimeOffset::ticks`]) and offset.
    ///
    /// # Errors
    /// As [`DateTimeOffset::from_parts`].
    pub fn from_ticks(ticks: i64, offset_minutes: i32) -> Result<Self, DateTimeError> {
        let seconds = ticks.div_euclid(10_000_000);
        let nanos = u32::try_from(ticks.rem_euclid(10_000_000) * 100)
            .map_err(|_| DateTimeError::Impossible)?;
        Self::from_parts(seconds, nanos, offset_minutes)
    }

    /// The offset it was written with, in minutes east of UTC.
    pub fn offset_minutes(&self) -> i32 {
        self.offset_minutes
    }
}

/// Formats as ODataLib does: the local time at the kept offset, fractional digits
/// trimmed of trailing zeros (none when zero), `Z` for a zero offset.
impl fmt::Display for DateTimeOffset {
    /// `yyyy-MM-ddTHH:mm:ss[.fffffff]` (trailing zeros of the fraction dropped), then
    /// `Z` or `±hh:mm`. Written digit by digit into a buffer on the stack: it is on
    /// every response.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Both conversions are infallible for values built by `from_parts`.
        let offset =
            UtcOffset::from_whole_seconds(self.offset_minutes * 60).map_err(|_| fmt::Error)?;
        let local = OffsetDateTime::from_unix_timestamp(self.seconds)
            .map_err(|_| fmt::Error)?
            .to_offset(offset);
        let mut text = Ascii::default();
        // Local years are 0001..=9999: `from_parts` refuses the rest.
        text.number(local.year().unsigned_abs(), 4);
        text.byte(b'-');
        text.number(u8::from(local.month()).into(), 2);
        text.byte(b'-');
        text.number(local.day().into(), 2);
        text.byte(b'T');
        text.number(local.hour().into(), 2);
        text.byte(b':');
        text.number(local.minute().into(), 2);
        text.byte(b':');
        text.number(local.second().into(), 2);
        if self.nanos != 0 {
            let (mut ticks, mut width) = (self.nanos / 100, 7);
            while ticks % 10 == 0 {
                (ticks, width) = (ticks / 10, width - 1);
            }
            text.byte(b'.');
            text.number(ticks, width);
        }
        if self.offset_minutes == 0 {
            text.byte(b'Z');
        } else {
            text.byte(if self.offset_minutes < 0 { b'-' } else { b'+' });
            let minutes = self.offset_minutes.unsigned_abs();
            text.number(minutes / 60, 2);
            text.byte(b':');
            text.number(minutes % 60, 2);
        }
        f.write_str(text.as_str())
    }
}

/// The text of a formatted [`DateTimeOffset`], at most 33 ASCII bytes
/// (`9999-12-31T23:59:59.9999999+14:00`).
struct Ascii {
    bytes: [u8; 33],
    len: usize,
}

impl Default for Ascii {
    fn default() -> Self {
        Self {
            bytes: [0; 33],
            len: 0,
        }
    }
}

impl Ascii {
    fn byte(&mut self, byte: u8) {
        self.bytes[self.len] = byte;
        self.len += 1;
    }

    /// `value`'s last `width` decimal digits, zero-padded.
    fn number(&mut self, value: u32, width: u32) {
        for place in (0..width).rev() {
            self.byte(b"0123456789"[(value / 10u32.pow(place) % 10) as usize]);
        }
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and separators are ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

fn digits(bytes: &[u8]) -> Result<u32, DateTimeError> {
    bytes.iter().try_fold(0u32, |acc, c| {
        if c.is_ascii_digit() {
            Ok(acc * 10 + u32::from(c - b'0'))
        } else {
            Err(DateTimeError::Malformed)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_graph_examples() {
        for text in [
            "2017-01-01T00:03:03.9221806+03:00",
            "2019-04-25T23:45:40.42Z",
            "2020-06-29T19:32:19.3546568Z",
            "2020-06-23T18:43:24Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.9999999Z",
            "2024-02-29T12:00:00-05:30",
        ] {
            assert_eq!(DateTimeOffset::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn keeps_the_instant_and_the_offset() {
        let value = DateTimeOffset::parse("2017-01-01T00:03:03.9221806+03:00").unwrap();
        assert_eq!(value.seconds(), 1_483_218_183); // 2016-12-31T21:03:03Z
        assert_eq!(value.nanos(), 922_180_600);
        assert_eq!(value.offset_minutes(), 180);
    }

    #[test]
    fn normalises_like_odatalib() {
        let cases = [
            ("2021-05-01T10:00:00.000000+00:00", "2021-05-01T10:00:00Z"),
            (
                "2021-05-01T10:00:00.120000+00:00",
                "2021-05-01T10:00:00.12Z",
            ),
            ("2021-05-01t10:00:00z", "2021-05-01T10:00:00Z"),
        ];
        for (input, output) in cases {
            assert_eq!(DateTimeOffset::parse(input).unwrap().to_string(), output);
        }
    }

    #[test]
    fn refuses_what_it_cannot_keep_exactly() {
        use DateTimeError::*;
        let cases = [
            ("2017-01-01T00:03:03", MissingOffset),
            ("2017-01-01T00:03:03.92218061Z", TooPrecise),
            ("2017-02-30T00:00:00Z", Impossible),
            ("2017-13-01T00:00:00Z", Impossible),
            ("2017-01-01T24:00:00Z", Impossible),
            ("2017-01-01T23:59:60Z", Impossible),
            ("2017-01-01T00:00:00+15:00", OffsetOutOfRange),
            ("2017-01-01T00:00:00+03:60", Impossible),
            ("0000-12-31T23:00:00Z", OutOfRange),
            ("0001-01-01T00:30:00+01:00", OutOfRange),
            ("2017-01-01", Malformed),
            ("2017-01-01 00:00:00Z", Malformed),
            ("2017-01-01T00:00:00.Z", Malformed),
            ("2017-01-01T00:00:00+0300", Malformed),
            ("２017-01-01T00:00:00Z", Malformed),
            ("", Malformed),
        ];
        for (input, error) in cases {
            assert_eq!(DateTimeOffset::parse(input), Err(error), "{input}");
        }
    }

    #[test]
    fn ticks_round_trip_and_order_instants() {
        for text in [
            "0001-01-01T00:00:00Z",
            "1969-12-31T23:59:59.9999999Z",
            "2017-01-01T00:03:03.9221806+03:00",
        ] {
            let value = DateTimeOffset::parse(text).unwrap();
            assert_eq!(
                DateTimeOffset::from_ticks(value.ticks(), value.offset_minutes()),
                Ok(value)
            );
        }
        let earlier = DateTimeOffset::parse("2017-01-01T00:00:00+03:00").unwrap();
        let later = DateTimeOffset::parse("2016-12-31T22:00:00Z").unwrap();
        assert!(earlier.ticks() < later.ticks());
    }

    #[test]
    fn from_parts_checks_precision_and_range() {
        assert_eq!(
            DateTimeOffset::from_parts(0, 1, 0),
            Err(DateTimeError::TooPrecise)
        );
        assert_eq!(
            DateTimeOffset::from_parts(MAX_SECONDS + 1, 0, 0),
            Err(DateTimeError::OutOfRange)
        );
        assert_eq!(
            DateTimeOffset::from_parts(0, 0, 841),
            Err(DateTimeError::OffsetOutOfRange)
        );
        assert!(DateTimeOffset::from_parts(0, 100, -840).is_ok());
        assert_eq!(
            DateTimeOffset::from_parts(MIN_SECONDS, 0, -60),
            Err(DateTimeError::OutOfRange)
        );
        assert_eq!(
            DateTimeOffset::from_parts(MAX_SECONDS, 0, 60),
            Err(DateTimeError::OutOfRange)
        );
    }
}
