//! The nearest known name to a mistyped one, for `-32601 method_not_found`'s `data.suggestion`:
//! an edit distance small enough that the name was surely meant, or nothing. Pure functions.

/// The name in `known` nearest to `name`, if it is close enough: at most 1 edit for names of up to
/// 4 characters, 2 for up to 10, 3 beyond. Letter case is ignored and swapping two neighbouring
/// characters is one edit. On a tie, the first in `known` wins.
pub fn nearest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let name: Vec<char> = name.to_lowercase().chars().collect();
    let most = match name.len() {
        0 => return None,
        1..=4 => 1,
        5..=10 => 2,
        _ => 3,
    };
    known
        .iter()
        .filter_map(|k| {
            let k_chars: Vec<char> = k.to_lowercase().chars().collect();
            // Lengths this far apart cannot be within `most` edits: skip the table.
            if k_chars.len().abs_diff(name.len()) > most {
                return None;
            }
            let d = distance(&name, &k_chars);
            (d <= most).then_some((d, *k))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`: the optimal
/// string alignment distance, over three rows of the table.
pub fn distance(a: &[char], b: &[char]) -> usize {
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut row: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        row[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (prev[j] + 1).min(row[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            row[j] = best;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::ALL;

    fn d(a: &str, b: &str) -> usize {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        distance(&a, &b)
    }

    #[test]
    fn distances() {
        let table = [
            ("", "", 0),
            ("", "abc", 3),
            ("abc", "", 3),
            ("kitten", "sitting", 3),
            ("session.list", "session.list", 0),
            ("sesion.list", "session.list", 1),
            ("message.sned", "message.send", 1), // a swap is one edit
            ("ab", "ba", 1),
            ("ca", "abc", 3), // the restricted distance: no edit of a swapped pair
            ("héllo", "hello", 1),
        ];
        for (a, b, want) in table {
            assert_eq!(d(a, b), want, "{a:?} -> {b:?}");
            assert_eq!(d(b, a), want, "symmetric: {b:?} -> {a:?}");
        }
    }

    #[test]
    fn close_names_get_the_method_meant_and_far_ones_nothing() {
        let table = [
            ("sesion.list", Some("session.list")),
            ("Session.List", Some("session.list")),
            ("message.sned", Some("message.send")),
            ("sessions.list", Some("session.list")),
            ("instance.pong", Some("instance.ping")),
            ("mesage.lst", Some("message.list")),
            ("hitl.respnod", Some("hitl.respond")),
            ("state.sync", Some("state.sync")),
            ("ping", None),
            ("nope", None),
            ("", None),
            ("session.frobnicate", None),
            ("x", None),
        ];
        for (name, want) in table {
            assert_eq!(nearest(name, ALL), want, "{name:?}");
        }
    }

    #[test]
    fn a_huge_name_costs_nothing() {
        let name = "a".repeat(1 << 20);
        assert_eq!(nearest(&name, ALL), None);
    }
}
