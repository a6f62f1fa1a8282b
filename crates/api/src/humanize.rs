//! Durations and ages as Ignite (and kubectl) print them: `45s`, `5m30s`, `3h`, `22y`.

use chrono::{DateTime, Utc};

/// Formats a duration the way Kubernetes' `HumanDuration` does, which is what Ignite's
/// `CREATED` column shows.
pub fn human_duration(d: chrono::Duration) -> String {
    let seconds = d.num_seconds();
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// How long ago `then` was, seen from `now`.
pub fn age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    human_duration(now - then)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn matches_kubernetes_human_duration() {
        let cases = [
            (Duration::seconds(-5), "<invalid>"),
            (Duration::seconds(-1), "0s"),
            (Duration::seconds(45), "45s"),
            (Duration::seconds(119), "119s"),
            (Duration::seconds(150), "2m30s"),
            (Duration::minutes(5), "5m"),
            (Duration::minutes(90), "90m"),
            (Duration::minutes(200), "3h20m"),
            (Duration::hours(7), "7h"),
            (Duration::hours(30), "30h"),
            (Duration::hours(50), "2d2h"),
            (Duration::days(3), "3d"),
            (Duration::days(400), "400d"),
            (Duration::days(800), "2y70d"),
            (Duration::days(365 * 22 + 10), "22y"),
        ];
        for (d, want) in cases {
            assert_eq!(human_duration(d), want, "{d:?}");
        }
    }
}
