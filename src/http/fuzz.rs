//! Randomized tests of the parser, std only: a fixed-seed PRNG generates and
//! mutates tens of thousands of request heads, and an independent,
//! line-by-line reading of the grammar says which of them are valid.

use super::*;

/// xorshift64*: tiny, deterministic, good enough to explore inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const LIMITS: Limits = Limits {
    max_line: 96,
    max_head: 384,
    max_headers: 6,
};

/// Picks from `good` most of the time and from `bad` now and then.
fn piece<'a>(rng: &mut Rng, good: &[&'a str], bad: &[&'a str]) -> &'a str {
    if rng.below(12) == 0 {
        bad[rng.below(bad.len())]
    } else {
        good[rng.below(good.len())]
    }
}

/// A plausible request head, usually valid, built from realistic pieces.
fn generate(rng: &mut Rng) -> Vec<u8> {
    const METHODS: &[&str] = &["GET", "HEAD", "OPTIONS", "POST", "DELETE", "M-SEARCH"];
    const BAD_METHODS: &[&str] = &["get", "", "G\0T"];
    const TARGETS: &[&str] = &[
        "/healthz",
        "/healthz?verbose&exclude=db",
        "/",
        "*",
        "http://h:8080/healthz",
        "https://h",
        "http://h?q",
        "/a%20b",
    ];
    const BAD_TARGETS: &[&str] = &["host:443", "http://", "", "/a b", "/\u{e9}"];
    const VERSIONS: &[&str] = &["HTTP/1.1", "HTTP/1.0", "HTTP/1.9"];
    const BAD_VERSIONS: &[&str] = &["HTTP/2.0", "http/1.1", "HTTP/1.", "HTTP/1.1 "];
    const NAMES: &[&str] = &[
        "Host",
        "Accept",
        "User-Agent",
        "Connection",
        "X-Odd_Name!",
        "Content-Length",
    ];
    const BAD_NAMES: &[&str] = &["Transfer-Encoding", "Bad Name", "", " Folded"];
    const VALUES: &[&str] = &[
        "",
        "x",
        " padded ",
        "close",
        "keep-alive",
        "0",
        "12",
        "caf\u{e9}",
    ];
    const BAD_VALUES: &[&str] = &["1,2", "a\0b", "a\rb", "-1"];
    const ENDINGS: &[&str] = &["\r\n", "\r\n", "\r\n", "\n"];
    const BAD_ENDINGS: &[&str] = &["\r", "\r\r\n"];

    let mut head = String::new();
    head.push_str(piece(rng, METHODS, BAD_METHODS));
    head.push(' ');
    head.push_str(piece(rng, TARGETS, BAD_TARGETS));
    head.push(' ');
    head.push_str(piece(rng, VERSIONS, BAD_VERSIONS));
    head.push_str(piece(rng, ENDINGS, BAD_ENDINGS));
    for _ in 0..rng.below(LIMITS.max_headers + 2) {
        head.push_str(piece(rng, NAMES, BAD_NAMES));
        head.push(':');
        head.push_str(piece(rng, VALUES, BAD_VALUES));
        head.push_str(piece(rng, ENDINGS, BAD_ENDINGS));
    }
    head.push_str(piece(rng, ENDINGS, BAD_ENDINGS));
    head.into_bytes()
}

/// Flips, inserts, deletes or duplicates a few bytes, favouring the bytes that matter.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    const INTERESTING: &[u8] = b"\r\n :\t\0\x7f\xff/?HT1.";
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(input.len() + 1);
        let byte = if rng.below(2) == 0 {
            *rng.pick(INTERESTING)
        } else {
            rng.next() as u8
        };
        match rng.below(4) {
            0 if at < input.len() => input[at] = byte,
            1 => input.insert(at, byte),
            2 if at < input.len() => {
                input.remove(at);
            }
            _ => {
                let end = (at + rng.below(16)).min(input.len());
                let copy = input[at..end].to_vec();
                input.splice(at..at, copy);
            }
        }
    }
}

/// The grammar read another way: cut the input into lines first, then check
/// each line whole. `Some(len)` if the input starts with a valid, complete head.
fn oracle(input: &[u8]) -> Option<usize> {
    let mut lines = Vec::new();
    let (mut start, mut skipped, mut line_start) = (0, 0, 0);
    let end = loop {
        let newline = start + input[start..].iter().position(|&b| b == b'\n')?;
        let line = input[start..newline]
            .strip_suffix(b"\r")
            .unwrap_or(&input[start..newline]);
        start = newline + 1;
        if line.contains(&b'\r') {
            return None;
        }
        if line.is_empty() && lines.is_empty() {
            // RFC 9112, section 2.2: a few empty lines before the request line are ignored.
            skipped += 1;
            if skipped > MAX_EMPTY_LINES {
                return None;
            }
            line_start = start;
            continue;
        }
        if line.is_empty() {
            break start;
        }
        lines.push(line);
    };
    if end > LIMITS.max_head || lines.len() > LIMITS.max_headers + 1 {
        return None;
    }
    let (request_line, fields) = lines.split_first()?;
    if input[line_start..].iter().position(|&b| b == b'\n')? + 1 > LIMITS.max_line {
        return None;
    }
    let parts: Vec<&[u8]> = request_line.split(|&b| b == b' ').collect();
    let [method, target, version] = parts[..] else {
        return None;
    };
    let method_ok = !method.is_empty()
        && method
            .iter()
            .all(|&b| b.is_ascii_uppercase() || b == b'-' || b == b'_');
    let target_ok = !target.is_empty()
        && target.iter().all(|&b| (0x21..0x7f).contains(&b))
        && (target[0] == b'/'
            || target == b"*"
            || [&b"http://"[..], b"https://"].iter().any(|scheme| {
                target.len() > scheme.len()
                    && target[..scheme.len()].eq_ignore_ascii_case(scheme)
                    && !matches!(target[scheme.len()], b'/' | b'?')
            }));
    let version_ok =
        version.len() == 8 && version.starts_with(b"HTTP/1.") && version[7].is_ascii_digit();
    if !(method_ok && target_ok && version_ok) {
        return None;
    }
    let (mut lengths, mut hosts, mut codings) = (0, 0, 0);
    for field in fields {
        let colon = field.iter().position(|&b| b == b':')?;
        let (name, value) = (&field[..colon], &field[colon + 1..]);
        let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
        if name.is_empty() || !name.iter().all(token) {
            return None;
        }
        if !value.iter().all(|&b| b == b'\t' || b >= 0x20 && b != 0x7f) {
            return None;
        }
        let value = String::from_utf8_lossy(value);
        match name.to_ascii_lowercase().as_slice() {
            b"content-length" => {
                lengths += 1;
                value
                    .trim_matches(|c| c == ' ' || c == '\t')
                    .parse::<u64>()
                    .ok()
                    .filter(|_| {
                        let v = value.trim_matches(|c| c == ' ' || c == '\t');
                        !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())
                    })?;
            }
            b"host" => hosts += 1,
            b"transfer-encoding" => codings += 1,
            _ => {}
        }
    }
    if lengths > 1 || hosts > 1 || codings > 0 {
        return None;
    }
    Some(end)
}

#[test]
fn test_random_and_mutated_heads_are_judged_as_the_grammar_says() {
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let (mut accepted, mut rejected) = (0, 0);
    for case in 0..40_000 {
        let mut input = generate(&mut rng);
        if case % 2 == 1 {
            mutate(&mut rng, &mut input);
        }
        let parsed = match parse(&input, &LIMITS) {
            Ok(Parsed::Complete(_, len)) => {
                assert!(
                    len <= input.len() && len <= LIMITS.max_head,
                    "read past its limits"
                );
                Some(len)
            }
            _ => None,
        };
        assert_eq!(
            parsed,
            oracle(&input),
            "case {case}: {:?}",
            String::from_utf8_lossy(&input)
        );
        if parsed.is_some() {
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    // The generator must exercise both sides, or this test proves little.
    assert!(
        accepted > 5_000 && rejected > 5_000,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn test_random_bytes_never_panic_or_overrun() {
    let mut rng = Rng(0xdead_beef_0bad_f00d);
    for _ in 0..20_000 {
        let len = rng.below(LIMITS.max_head * 2);
        let input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if let Ok(Parsed::Complete(_, n)) = parse(&input, &LIMITS) {
            assert!(n <= input.len() && n <= LIMITS.max_head);
        }
    }
}

#[test]
fn test_valid_heads_survive_being_fed_one_byte_at_a_time() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut checked = 0;
    while checked < 2_000 {
        let input = generate(&mut rng);
        let Some(len) = oracle(&input) else { continue };
        checked += 1;
        for cut in 0..len {
            assert_eq!(
                parse(&input[..cut], &LIMITS),
                Ok(Parsed::Partial),
                "cut at {cut} of {:?}",
                String::from_utf8_lossy(&input)
            );
        }
        let whole = parse(&input[..len], &LIMITS);
        assert!(matches!(whole, Ok(Parsed::Complete(_, n)) if n == len));
    }
}
