//! The review body as the API server sends it. The fixtures are pretty-printed for people to
//! read (43 % of alice's 6.6 KB is indentation); the API server's JSON serializer writes
//! compact JSON, which is what a webhook parses in production.

/// `json` without whitespace outside strings (a valid JSON text stays valid and equal).
pub fn compact(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !b.is_ascii_whitespace() {
            in_string = b == b'"';
            out.push(b);
        }
    }
    out
}
