//! Word splitting used by the instruction argument parsers: the quote-aware splitter of
//! ARG/ENV/LABEL, the builder-flag extractor, and plain whitespace splitting.

/// The whitespace set BuildKit splits plain argument lists on (`[\t\v\f\r ]`).
pub(crate) fn is_split_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

/// Splits `text` on runs of space, tab, `\v`, `\f` and `\r`, returning each word with its
/// byte offset in `text`. Leading and trailing separators give no empty words.
pub fn split_whitespace(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if is_split_space(c) {
            if let Some(s) = start.take() {
                out.push((s, &text[s..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..]));
    }
    out
}

/// The quote-aware word splitter used by ARG, ENV and LABEL: splits on (Unicode)
/// whitespace outside quotes and keeps quotes and escape characters in the words.
pub fn parse_words(text: &str, escape: char) -> Vec<String> {
    parse_words_spanned(text, escape)
        .into_iter()
        .map(|(_, w)| w)
        .collect()
}

/// [`parse_words`], also giving each word's starting byte offset in `text`.
pub(crate) fn parse_words_spanned(text: &str, escape: char) -> Vec<(usize, String)> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut start = 0;
    let mut blank_ok = false;
    let mut chars = text.char_indices().peekable();
    while let Some((pos, ch)) = chars.next() {
        if phase == Phase::Spaces {
            if ch.is_whitespace() {
                continue;
            }
            phase = Phase::Word;
            start = pos;
        }
        match phase {
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if blank_ok || !word.is_empty() {
                        words.push((start, std::mem::take(&mut word)));
                    }
                    word.clear();
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    let Some((_, next)) = chars.next() else {
                        // An escape at the very end is dropped.
                        continue;
                    };
                    // Outside quotes the escape and the character after it are both kept.
                    word.push(ch);
                    word.push(next);
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                }
                if ch == escape && quote != '\'' {
                    let Some((_, next)) = chars.next() else {
                        phase = Phase::Word;
                        continue;
                    };
                    word.push(ch);
                    word.push(next);
                    continue;
                }
                word.push(ch);
            }
            Phase::Spaces => unreachable!("the phase was just set to Word"),
        }
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        words.push((start, word));
    }
    words
}

/// One `--flag[=value]` word split off the front of an instruction's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawFlag {
    /// The word with quotes removed and escapes applied, as the dump shows it.
    pub text: String,
    /// Byte range of the word in the text that was scanned.
    pub start: usize,
    pub end: usize,
}

/// Takes the leading `--` words off `line`. Returns the flags and the byte offset where
/// the remaining arguments begin. A bare `--` ends the flags and is dropped.
///
/// BuildKit's version walks bytes and treats each one as a Latin-1 character, which
/// mangles non-ASCII flag values (`--chown=josé`); this one walks characters.
pub(crate) fn extract_flags(line: &str, escape: char) -> (Vec<RawFlag>, usize) {
    let mut flags = Vec::new();
    let mut chars = line.char_indices().peekable();
    loop {
        // Looking for the start of a word.
        let start = loop {
            match chars.peek() {
                None => return (flags, line.len()),
                Some(&(_, c)) if c.is_whitespace() => {
                    chars.next();
                }
                Some(&(pos, _)) => break pos,
            }
        };
        if !line[start..].starts_with("--") {
            return (flags, start);
        }
        let mut word = String::new();
        let mut blank_ok = false;
        let mut quote: Option<char> = None;
        let mut end = line.len();
        while let Some((pos, ch)) = chars.next() {
            if let Some(q) = quote {
                if ch == q {
                    quote = None;
                    continue;
                }
                if ch == escape {
                    match chars.next() {
                        Some((_, next)) => word.push(next),
                        None => quote = None,
                    }
                    continue;
                }
                word.push(ch);
                continue;
            }
            if ch.is_whitespace() {
                end = pos;
                break;
            }
            if ch == '\'' || ch == '"' {
                quote = Some(ch);
                blank_ok = true;
                continue;
            }
            if ch == escape {
                if let Some((_, next)) = chars.next() {
                    word.push(next);
                }
                continue;
            }
            word.push(ch);
        }
        if word == "--" {
            return (flags, end);
        }
        if blank_ok || !word.is_empty() {
            flags.push(RawFlag {
                text: word,
                start,
                end,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_stop_at_first_plain_word() {
        let (flags, rest) = extract_flags("--from=a --link src dst", '\\');
        let texts: Vec<_> = flags.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(texts, ["--from=a", "--link"]);
        assert_eq!(&"--from=a --link src dst"[rest..], "src dst");
    }

    #[test]
    fn double_dash_ends_flags() {
        let line = "--a -- --b c";
        let (flags, rest) = extract_flags(line, '\\');
        assert_eq!(flags.len(), 1);
        assert_eq!(line[rest..].trim(), "--b c");
    }

    #[test]
    fn quoted_flag_values_lose_quotes() {
        let (flags, _) = extract_flags(r#"--mount="type=cache,target=/a b" x"#, '\\');
        assert_eq!(flags[0].text, "--mount=type=cache,target=/a b");
    }

    #[test]
    fn whitespace_split_offsets() {
        assert_eq!(split_whitespace(" a\t b "), vec![(1, "a"), (4, "b")]);
    }
}
