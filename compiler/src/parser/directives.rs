//! Parser directives (`# syntax=`, `# escape=`, `# check=`) and the syntax detection that
//! also accepts `//` comments and a JSON object.
//!
//! Directives are recognised only in the unbroken run of comment lines at the top of the
//! file: the first line that is not a well-formed known directive ends the run for good.

/// A parser directive found at the top of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// `syntax`, `escape` or `check` (lower case).
    pub name: String,
    /// The value, trimmed of surrounding whitespace.
    pub value: String,
    /// The 1-based line it is on.
    pub line: usize,
}

/// The names of the directives BuildKit knows.
const KNOWN: [&str; 3] = ["syntax", "escape", "check"];

/// Why a directive line was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectiveError {
    /// The same directive appears a second time.
    Duplicate(String),
}

/// Scans directive lines one at a time, enforcing the placement rules.
#[derive(Debug, Clone)]
pub struct DirectiveParser {
    prefix: &'static str,
    line: usize,
    seen: [bool; 3],
    done: bool,
}

impl Default for DirectiveParser {
    fn default() -> Self {
        DirectiveParser::new("#")
    }
}

impl DirectiveParser {
    /// A scanner for directives written as comments starting with `prefix` (`#` or `//`).
    pub fn new(prefix: &'static str) -> Self {
        DirectiveParser {
            prefix,
            line: 0,
            seen: [false; 3],
            done: false,
        }
    }

    /// Whether the directive run has ended.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Looks at the next line (its line end removed). Returns the directive it holds, or
    /// `None` when it is not one; a non-directive line ends the scan for good.
    pub fn parse_line(&mut self, line: &str) -> Result<Option<Directive>, DirectiveError> {
        self.line += 1;
        if self.done {
            return Ok(None);
        }
        let Some(rest) = line.strip_prefix(self.prefix) else {
            self.done = true;
            return Ok(None);
        };
        let Some((name, value)) = split_directive(rest.trim_start()) else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        let Some(index) = KNOWN.iter().position(|k| *k == name) else {
            self.done = true;
            return Ok(None);
        };
        if self.seen[index] {
            return Err(DirectiveError::Duplicate(name));
        }
        self.seen[index] = true;
        Ok(Some(Directive {
            name,
            value: value.to_string(),
            line: self.line,
        }))
    }

    /// Scans a whole text and returns the directives at its top.
    pub fn parse_all(&mut self, text: &str) -> Result<Vec<Directive>, DirectiveError> {
        let mut found = Vec::new();
        for line in text.split('\n') {
            if self.done {
                break;
            }
            let line = line.strip_suffix('\r').unwrap_or(line);
            if let Some(d) = self.parse_line(line)? {
                found.push(d);
            }
        }
        Ok(found)
    }
}

/// Go's regexp `\s` (ASCII whitespace without `\v`).
fn is_re_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r')
}

/// Splits `name = value` where the name is `[a-zA-Z][a-zA-Z0-9]*` and the value is at
/// least one character.
fn split_directive(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    if !bytes.first()?.is_ascii_alphabetic() {
        return None;
    }
    let name_end = bytes
        .iter()
        .position(|b| !b.is_ascii_alphanumeric())
        .unwrap_or(bytes.len());
    let rest = text[name_end..].trim_start_matches(is_re_space);
    let rest = rest.strip_prefix('=')?;
    let value = rest.trim_start_matches(is_re_space);
    let value = if value.is_empty() {
        // BuildKit's pattern `=\s*(.+?)\s*$` needs one character of value, so on a
        // blank value it takes the last blank.
        let last = rest.chars().next_back()?;
        &rest[rest.len() - last.len_utf8()..]
    } else {
        value.trim_end_matches(is_re_space)
    };
    Some((&text[..name_end], value))
}

/// A directive found by [`detect_syntax`] or [`parse_directive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedDirective {
    /// The value up to its first space (for `syntax`: the frontend image reference).
    pub reference: String,
    /// The whole value.
    pub cmdline: String,
    /// The 1-based line it is on (for the JSON form: 0, or 1 after a shebang line).
    pub line: usize,
}

/// Finds the `syntax` directive: as a `#` comment, as a `//` comment, or as the `"syntax"`
/// member of a JSON object filling the whole file. A leading `#!` line is skipped.
pub fn detect_syntax(text: &str) -> Option<DetectedDirective> {
    find_directive("syntax", text, true)
}

/// Finds directive `key` written as a `#` comment at the top of `text`.
pub fn parse_directive(key: &str, text: &str) -> Option<DetectedDirective> {
    find_directive(key, text, false)
}

fn find_directive(key: &str, text: &str, any_format: bool) -> Option<DetectedDirective> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let (text, first_line) = if first.starts_with("#!") {
        (rest, 1)
    } else {
        (text, 0)
    };
    let prefixes: &[&'static str] = if any_format { &["#", "//"] } else { &["#"] };
    for prefix in prefixes {
        let mut parser = DirectiveParser::new(prefix);
        parser.line = first_line;
        // A duplicate ends the scan; what was found before it still counts.
        let mut found = None;
        for line in text.split('\n') {
            if parser.done {
                break;
            }
            match parser.parse_line(line.strip_suffix('\r').unwrap_or(line)) {
                Ok(Some(d)) if d.name == key => {
                    found = Some(d);
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        if let Some(d) = found {
            let reference = d.value.split(' ').next().unwrap_or("").to_string();
            return Some(DetectedDirective {
                reference,
                cmdline: d.value,
                line: d.line,
            });
        }
    }
    if !any_format {
        return None;
    }
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str(text) else {
        return None;
    };
    match map.get(key) {
        Some(serde_json::Value::String(v)) => Some(DetectedDirective {
            reference: v.clone(),
            cmdline: v.clone(),
            line: first_line,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Option<(String, String)>, DirectiveError> {
        DirectiveParser::default()
            .parse_line(line)
            .map(|d| d.map(|d| (d.name, d.value)))
    }

    #[test]
    fn directive_values_are_trimmed() {
        assert_eq!(
            one("# Syntax =  a b  ").unwrap(),
            Some(("syntax".into(), "a b".into()))
        );
        assert_eq!(one("#escape=").unwrap(), None);
        assert_eq!(one("# unknown=x").unwrap(), None);
        assert_eq!(one("#! syntax=x").unwrap(), None);
    }

    #[test]
    fn blank_value_keeps_one_blank() {
        assert_eq!(
            one("# escape=  ").unwrap(),
            Some(("escape".into(), " ".into()))
        );
    }

    #[test]
    fn duplicates_fail_and_other_lines_end_the_run() {
        let mut p = DirectiveParser::default();
        assert!(p.parse_line("# check=skip=all").unwrap().is_some());
        assert_eq!(
            p.parse_line("# CHECK=x"),
            Err(DirectiveError::Duplicate("check".into()))
        );
        let mut p = DirectiveParser::default();
        assert_eq!(p.parse_line("FROM x").unwrap(), None);
        assert_eq!(p.parse_line("# syntax=x").unwrap(), None);
        assert!(p.is_done());
    }
}
