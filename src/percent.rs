//! Percent-decoding of URL parts (`%XX` escapes), in the two flavours the
//! relay needs: strict for secrets, where a malformed escape must fail, and
//! lossy for what people read and type, where it is kept as written.

/// Decodes `%XX` escapes as RFC 3986 does; `+` stays a plus sign. `None` for
/// a `%` not followed by two hex digits.
pub fn decode_strict(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            decoded.push(escaped(bytes, at)?);
            at += 3;
        } else {
            decoded.push(bytes[at]);
            at += 1;
        }
    }
    Some(decoded)
}

/// Decodes `%XX` escapes, and `+` as a space when `plus_is_space` (query
/// strings as forms write them); a malformed escape is kept as written and
/// bytes that are not UTF-8 become U+FFFD.
pub fn decode_lossy(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match (bytes[at], escaped(bytes, at)) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                at += 3;
                continue;
            }
            (b'+', _) if plus_is_space => decoded.push(b' '),
            (byte, _) => decoded.push(byte),
        }
        at += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The byte that the escape at `at` (`%` and two hex digits) stands for.
fn escaped(bytes: &[u8], at: usize) -> Option<u8> {
    let high = hex_digit(*bytes.get(at + 1)?)?;
    let low = hex_digit(*bytes.get(at + 2)?)?;
    Some(high << 4 | low)
}

/// The value of one hex digit, either case.
pub fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_decoding_refuses_a_malformed_escape() {
        assert_eq!(decode_strict("a%20b+c").as_deref(), Some(&b"a b+c"[..]));
        assert_eq!(decode_strict("%e2%9c%93").as_deref(), Some("✓".as_bytes()));
        assert_eq!(decode_strict("50%"), None);
        assert_eq!(decode_strict("%zz"), None);
    }

    #[test]
    fn lossy_decoding_keeps_what_it_cannot_read() {
        assert_eq!(decode_lossy("a%20b+c", false), "a b+c");
        assert_eq!(decode_lossy("a%20b+c", true), "a b c");
        assert_eq!(decode_lossy("%2B", true), "+");
        assert_eq!(decode_lossy("50%", false), "50%");
        assert_eq!(decode_lossy("%zz%4", true), "%zz%4");
    }
}
