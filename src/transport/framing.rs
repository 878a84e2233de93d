//! ROUTER framing: how a received multipart message maps to a route and one request body, and how
//! a reply is framed so REQ and DEALER peers (with or without the empty delimiter) all get it back.

/// Where a reply goes: the peer's routing id, and whether it framed its request with an empty
/// delimiter (REQ always does; DEALER may), which the reply then repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub identity: Vec<u8>,
    pub delimiter: bool,
}

/// One received ROUTER message, classified.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed<'a> {
    /// `[id, body]` or `[id, "", body]`.
    Request { route: Route, body: &'a [u8] },
    /// Any other shape we can still answer: the route and the number of frames after the id.
    BadShape { route: Route, frames: usize },
    /// Nothing to route a reply by (no identity frame).
    Unroutable,
}

/// Classifies `frames` (routing id first, as the ROUTER socket delivers them). `total` is the
/// number of frames the message really had; only the first few are kept by the caller.
pub fn classify(frames: &[Vec<u8>], total: usize) -> Framed<'_> {
    let Some((identity, rest)) = frames.split_first() else {
        return Framed::Unroutable;
    };
    let delimiter = rest.first().is_some_and(|f| f.is_empty()) && total >= 3;
    let route = Route {
        identity: identity.clone(),
        delimiter,
    };
    match (total, rest) {
        (2, [body]) => Framed::Request { route, body },
        (3, [delim, body]) if delim.is_empty() => Framed::Request { route, body },
        _ => Framed::BadShape {
            route,
            frames: total.saturating_sub(1),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(parts: &[&[u8]]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.to_vec()).collect()
    }

    #[test]
    fn shapes() {
        let f = v(&[b"id", b"{}"]);
        assert_eq!(
            classify(&f, 2),
            Framed::Request {
                route: Route {
                    identity: b"id".to_vec(),
                    delimiter: false
                },
                body: b"{}"
            }
        );
        let f = v(&[b"id", b"", b"{}"]);
        assert_eq!(
            classify(&f, 3),
            Framed::Request {
                route: Route {
                    identity: b"id".to_vec(),
                    delimiter: true
                },
                body: b"{}"
            }
        );
        // A DEALER sending one empty frame: an empty body, answered as a parse error upstream.
        let f = v(&[b"id", b""]);
        assert!(matches!(classify(&f, 2), Framed::Request { body: b"", .. }));
        let f = v(&[b"id", b"a", b"b"]);
        assert!(
            matches!(classify(&f, 3), Framed::BadShape { frames: 2, route } if !route.delimiter)
        );
        let f = v(&[b"id", b"", b"{}", b"x"]);
        assert!(
            matches!(classify(&f, 9), Framed::BadShape { frames: 8, route } if route.delimiter)
        );
        assert_eq!(classify(&[], 0), Framed::Unroutable);
    }
}
