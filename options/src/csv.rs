//! Comma-separated option values: `--output`, `--cache-to`, `--cache-from`, `--secret`,
//! `RUN --mount`.
//!
//! Docker and buildx read each of these as one record of Go's `encoding/csv` (strict
//! quotes): fields are separated by commas; a field that starts with `"` is quoted, may hold
//! commas, and writes a `"` as `""`; its closing quote ends the field. A quote anywhere else
//! is refused, so `src="a,b"` must be written `"src=a,b"` (as buildx requires). Spaces are
//! kept as written.

/// Why an option value is not one CSV record. The field is numbered from 1, and shown as far
/// as it was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsvError {
    /// A `"` inside a field that does not start with one.
    #[error(
        "field {number} ({text:?}) has a quote inside it: quote the whole field instead, as in \"key=a,b\""
    )]
    BareQuote {
        /// The field's position, from 1.
        number: usize,
        /// The field up to and including the quote.
        text: String,
    },
    /// Text after the quote that closes a quoted field.
    #[error("field {number} ({text:?}) goes on after its closing quote")]
    AfterQuote {
        /// The field's position, from 1.
        number: usize,
        /// The field's content up to the closing quote.
        text: String,
    },
    /// A quoted field whose closing quote is missing.
    #[error("field {number} ({text:?}) opens a quote that is never closed")]
    Unterminated {
        /// The field's position, from 1.
        number: usize,
        /// The field's content after the opening quote.
        text: String,
    },
}

/// The fields of `text`, quotes removed. An empty text is one empty field.
pub fn fields(text: &str) -> Result<Vec<String>, CsvError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let number = out.len() + 1;
        let mut field = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(CsvError::Unterminated {
                            number,
                            text: field,
                        });
                    }
                    Some('"') if chars.next_if_eq(&'"').is_some() => field.push('"'),
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => out.push(field),
                Some(_) => {
                    return Err(CsvError::AfterQuote {
                        number,
                        text: field,
                    });
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                    Some(',') => {
                        out.push(field);
                        break;
                    }
                    Some('"') => {
                        field.push('"');
                        return Err(CsvError::BareQuote {
                            number,
                            text: field,
                        });
                    }
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

/// The `key=value` fields of `text`: each key trimmed and lower-cased, its value as written
/// (`None` for a field without `=`); blank fields are skipped.
pub fn pairs(text: &str) -> Result<Vec<(String, Option<String>)>, CsvError> {
    Ok(fields(text)?
        .into_iter()
        .filter(|f| !f.trim().is_empty())
        .map(|f| match f.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.to_string())),
            None => (f.trim().to_ascii_lowercase(), None),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<String> {
        fields(text).unwrap()
    }

    #[test]
    fn fields_split_as_go_encoding_csv_does() {
        assert_eq!(ok("a=1,b=2"), ["a=1", "b=2"]);
        assert_eq!(ok(""), [""]);
        assert_eq!(ok("a,,b,"), ["a", "", "b", ""]);
        assert_eq!(ok(r#"id=a,"src=x,y""#), ["id=a", "src=x,y"]);
        assert_eq!(ok(r#""a ""quoted"" word",b"#), [r#"a "quoted" word"#, "b"]);
        assert_eq!(ok(r#""""#), [""]);
        assert_eq!(ok(r#""",x"#), ["", "x"]);
        assert_eq!(ok(" a = 1 "), [" a = 1 "]);
    }

    #[test]
    fn misplaced_quotes_are_named_by_field() {
        assert_eq!(
            fields(r#"id=a,src="x,y""#),
            Err(CsvError::BareQuote {
                number: 2,
                text: "src=\"".into()
            })
        );
        // A space before the quote makes it a bare quote, as in Go.
        assert!(matches!(
            fields(r#"a, "b""#),
            Err(CsvError::BareQuote { number: 2, .. })
        ));
        assert_eq!(
            fields(r#"a,"b"c"#),
            Err(CsvError::AfterQuote {
                number: 2,
                text: "b".into()
            })
        );
        assert_eq!(
            fields(r#"a,"b,c"#),
            Err(CsvError::Unterminated {
                number: 2,
                text: "b,c".into()
            })
        );
        let e = fields(r#"id=a,src="x"#).unwrap_err().to_string();
        assert!(e.contains("field 2") && e.contains("src="), "{e}");
    }

    #[test]
    fn pairs_lower_case_keys_and_keep_values() {
        assert_eq!(
            pairs(r#"Type=Local, "dest=/a,B" ,,flag"#).unwrap_err(),
            CsvError::BareQuote {
                number: 2,
                text: " \"".into()
            }
        );
        assert_eq!(
            pairs(r#"Type=Local,"dest=/a,B",,flag, "#).unwrap(),
            [
                ("type".to_string(), Some("Local".to_string())),
                ("dest".to_string(), Some("/a,B".to_string())),
                ("flag".to_string(), None),
            ]
        );
    }
}
