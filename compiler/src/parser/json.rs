//! The JSON ("exec") form of instruction arguments: `["executable", "arg"]`.
//!
//! Hand-written rather than serde_json because the decision has to match BuildKit's Go
//! decoder exactly: an invalid document falls back to the plain form, a valid array with
//! a non-string element is an error, a lone UTF-16 surrogate escape decodes to U+FFFD
//! (serde_json rejects it), and a number that overflows a float64 makes the document
//! invalid. It only needs arrays of strings, so it validates every other value without
//! building it, with an explicit stack instead of recursion.

/// Why a text is not a JSON array of strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonArrayError {
    /// Not a (valid) JSON array: the caller falls back to the plain form.
    NotJsonArray,
    /// A valid JSON array with an element that is not a string: an error.
    NotStringArray,
}

/// Go's limit on nesting depth; deeper documents are invalid.
const MAX_DEPTH: usize = 10_000;

/// Parses `text` (leading whitespace allowed) as a JSON array of strings.
pub fn parse_json_array(text: &str) -> Result<Vec<String>, JsonArrayError> {
    let text = text.trim_start();
    if !text.starts_with('[') {
        return Err(JsonArrayError::NotJsonArray);
    }
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        i: 1,
    };
    let mut out = Vec::new();
    let mut non_string = false;
    p.ws();
    if p.peek() == Some(b']') {
        p.i += 1;
    } else {
        loop {
            p.ws();
            if p.peek() == Some(b'"') {
                out.push(p.string().ok_or(JsonArrayError::NotJsonArray)?);
            } else {
                p.value().ok_or(JsonArrayError::NotJsonArray)?;
                non_string = true;
            }
            p.ws();
            match p.next() {
                Some(b',') => continue,
                Some(b']') => break,
                _ => return Err(JsonArrayError::NotJsonArray),
            }
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(JsonArrayError::NotJsonArray);
    }
    if non_string {
        return Err(JsonArrayError::NotStringArray);
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// Validates one value of any kind (nested arrays and objects included).
    fn value(&mut self) -> Option<()> {
        // Each entry: true for an object, false for an array.
        let mut stack: Vec<bool> = Vec::new();
        loop {
            // Parse one value start.
            self.ws();
            match self.peek()? {
                b'{' => {
                    self.i += 1;
                    stack.push(true);
                    if stack.len() >= MAX_DEPTH {
                        return None;
                    }
                    self.ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        stack.pop();
                    } else {
                        self.ws();
                        self.string()?;
                        self.ws();
                        if self.next()? != b':' {
                            return None;
                        }
                        continue;
                    }
                }
                b'[' => {
                    self.i += 1;
                    stack.push(false);
                    if stack.len() >= MAX_DEPTH {
                        return None;
                    }
                    self.ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        stack.pop();
                    } else {
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b't' => self.literal("true")?,
                b'f' => self.literal("false")?,
                b'n' => self.literal("null")?,
                _ => self.number()?,
            }
            // A value is complete: close containers or move to the next element.
            loop {
                let Some(&is_object) = stack.last() else {
                    return Some(());
                };
                self.ws();
                match self.next()? {
                    b',' => {
                        if is_object {
                            self.ws();
                            self.string()?;
                            self.ws();
                            if self.next()? != b':' {
                                return None;
                            }
                        }
                        break;
                    }
                    b'}' if is_object => {
                        stack.pop();
                    }
                    b']' if !is_object => {
                        stack.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    fn literal(&mut self, word: &str) -> Option<()> {
        if self.s[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    fn number(&mut self) -> Option<()> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !self.peek()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        // Go decodes numbers into float64 and fails on overflow.
        let n: f64 = self.text[start..self.i].parse().ok()?;
        n.is_finite().then_some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.text.get(self.i..self.i + 4)?;
        if !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        u32::from_str_radix(h, 16).ok()
    }

    /// Parses a string starting at the opening quote.
    fn string(&mut self) -> Option<String> {
        if self.next()? != b'"' {
            return None;
        }
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(&self.text[start..self.i]);
            match self.next()? {
                b'"' => return Some(out),
                b'\\' => {}
                _ => return None, // a control character
            }
            let c = match self.next()? {
                b'"' => '"',
                b'\\' => '\\',
                b'/' => '/',
                b'b' => '\x08',
                b'f' => '\x0c',
                b'n' => '\n',
                b'r' => '\r',
                b't' => '\t',
                b'u' => {
                    let u = self.hex4()?;
                    if (0xD800..0xDC00).contains(&u) {
                        // A high surrogate: combine with a following low one if present.
                        let save = self.i;
                        if self.s[self.i..].starts_with(b"\\u") {
                            self.i += 2;
                            let low = self.hex4().filter(|l| (0xDC00..0xE000).contains(l));
                            if let Some(low) = low {
                                let c = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00);
                                out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                                continue;
                            }
                        }
                        self.i = save;
                        '\u{fffd}'
                    } else {
                        char::from_u32(u).unwrap_or('\u{fffd}')
                    }
                }
                _ => return None,
            };
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_surrogate_becomes_replacement_character() {
        assert_eq!(parse_json_array(r#"["\ud800x"]"#).unwrap(), ["\u{fffd}x"]);
        assert_eq!(parse_json_array(r#"["\ud83d\ude00"]"#).unwrap(), ["😀"]);
    }

    #[test]
    fn invalid_documents_fall_back() {
        for text in [
            "['a']",
            r#"["a""#,
            r#"["a"] x"#,
            r#"["a",]"#,
            "[1e999]",
            "[01]",
        ] {
            assert_eq!(
                parse_json_array(text),
                Err(JsonArrayError::NotJsonArray),
                "{text}"
            );
        }
    }

    #[test]
    fn nested_values_are_validated() {
        assert_eq!(
            parse_json_array(r#"["a", {"b": [1, {"c": null}, [], {}]}, "d"]"#),
            Err(JsonArrayError::NotStringArray)
        );
        assert_eq!(
            parse_json_array(r#"["a", {"b": [1, {"c" null}]}]"#),
            Err(JsonArrayError::NotJsonArray)
        );
        let deep = "[".repeat(20_000);
        assert_eq!(parse_json_array(&deep), Err(JsonArrayError::NotJsonArray));
    }
}
