//! Go-style duration strings (`"1h2m3s"`, `"45s"`), the form the spec uses for `uptime`.

use std::time::Duration;

/// Formats whole seconds the way Go's `time.Duration.String` does: `0s`, `59s`, `1m0s`, `1h0m5s`.
pub fn go_duration(d: Duration) -> String {
    let total = d.as_secs();
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_go_formatting() {
        let cases = [
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "1m0s"),
            (61, "1m1s"),
            (3600, "1h0m0s"),
            (3723, "1h2m3s"),
            (90061, "25h1m1s"),
        ];
        for (secs, want) in cases {
            assert_eq!(go_duration(Duration::from_secs(secs)), want);
        }
        assert_eq!(go_duration(Duration::from_millis(1999)), "1s");
    }
}
