//! Heredocs: finding `<<EOF` words on an instruction line and reading their bodies.
//!
//! BuildKit finds heredoc words by running its shell lexer over the line in a raw mode
//! (quotes and escapes kept, unset variables left as written) and then matching each word
//! against `^(\d*)<<(-?)\s*([^<]*)$`. The small lexer here reproduces just that mode: it
//! does no variable expansion at all (every variable is unset), only quote, escape,
//! `<<` and `${...}` structure, which is all heredoc detection depends on. Variable
//! expansion proper lives in the shell lexer.

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter, quotes removed.
    pub name: String,
    /// The file descriptor before `<<` (0 when none is written).
    pub file_descriptor: u64,
    /// Whether the body gets variable expansion (false when any part of the word was
    /// quoted).
    pub expand: bool,
    /// `<<-`: leading tabs may precede the terminator (and are stripped by [`chomp`]).
    pub chomp: bool,
    /// The body, each line with its line end, exactly as written.
    pub content: String,
}

/// Why a heredoc word could not be lexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeredocWordError {
    /// What the lexer found wrong (an unterminated quote, a bad `${`).
    Invalid(String),
    /// `${...}` nests deeper than [`super::MAX_NESTING`] on the line.
    TooDeep,
}

/// Why [`lex_words`] stopped.
#[derive(Debug)]
enum LexError {
    /// BuildKit's lexer fails the same way.
    Syntax(String),
    /// Deeper than [`super::MAX_NESTING`]: BuildKit's lexer recurses without bound here.
    TooDeep,
}

impl From<LexError> for HeredocWordError {
    fn from(e: LexError) -> Self {
        match e {
            LexError::Syntax(reason) => HeredocWordError::Invalid(reason),
            LexError::TooDeep => HeredocWordError::TooDeep,
        }
    }
}

/// Removes leading tabs from every line of `text` (the `<<-` form).
pub fn chomp(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        out.push_str(line.trim_start_matches('\t'));
    }
    out
}

/// Parses one word as a heredoc opener (`<<EOF`, `3<<-'EOF'`, `<< EOF`). `Ok(None)` when
/// it is not one; an error when the delimiter has an unterminated quote.
pub fn parse_heredoc_word(word: &str) -> Result<Option<Heredoc>, HeredocWordError> {
    // ^(\d*)<<(-?)\s*([^<]*)$
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, after),
    };
    let rest = after.trim_start_matches([' ', '\t', '\n', '\x0c', '\r']);
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    // No digits means 0; a number too large saturates, as Go's ParseUint does.
    let file_descriptor = match &word[..digits] {
        "" => 0,
        d => d.parse().unwrap_or(u64::MAX),
    };
    let cooked = lex_words(rest, false, false)?;
    if cooked.len() != 1 {
        return Ok(None);
    }
    let raw = lex_words(rest, true, false)?;
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    let expand = raw.len() == 1 && quotes(&cooked[0]) == quotes(&raw[0]);
    let name = cooked.into_iter().next().unwrap_or_default();
    Ok(Some(Heredoc {
        name,
        file_descriptor,
        expand,
        chomp,
        content: String::new(),
    }))
}

/// Finds the heredoc openers on an instruction line, in order. A line the lexer rejects
/// (an unterminated quote) has none; one nesting `${` too deep is an error.
pub fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, HeredocWordError> {
    let words = match lex_words(line, true, true) {
        Ok(words) => words,
        Err(LexError::Syntax(_)) => return Ok(Vec::new()),
        Err(LexError::TooDeep) => return Err(HeredocWordError::TooDeep),
    };
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc_word(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Splits `input` into words the way BuildKit's shell lexer does with every variable
/// unset and left as written. `raw_quotes` keeps quote characters in the words,
/// `raw_escapes` keeps the backslashes.
fn lex_words(input: &str, raw_quotes: bool, raw_escapes: bool) -> Result<Vec<String>, LexError> {
    let mut lx = Lexer {
        chars: input.chars().collect(),
        pos: 0,
        raw_quotes,
        raw_escapes,
        buf: String::new(),
        depth: 0,
    };
    let mut words = Words::default();
    lx.run(None, raw_escapes, Some(&mut words))?;
    Ok(words.finish(&mut lx.buf))
}

#[derive(Default)]
struct Words {
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, buf: &mut String, c: char) {
        if c.is_whitespace() {
            if self.in_word && !buf.is_empty() {
                self.words.push(std::mem::take(buf));
                self.in_word = false;
            }
        } else {
            buf.push(c);
            self.in_word = true;
        }
    }

    fn add_raw(&mut self, buf: &mut String, s: &str) {
        buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self, buf: &mut String) -> Vec<String> {
        if !buf.is_empty() {
            self.words.push(std::mem::take(buf));
        }
        self.words
    }
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    raw_quotes: bool,
    raw_escapes: bool,
    /// The current word, shared with nested `${...}` scans (which clear it, as
    /// BuildKit's lexer does).
    buf: String,
    /// How many `${...}` scans are open.
    depth: usize,
}

const ESCAPE: char = '\\';

fn syntax(reason: &str) -> LexError {
    LexError::Syntax(reason.to_owned())
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Scans until `stop` (or the end when `None`), returning the text produced.
    fn run(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
        mut words: Option<&mut Words>,
    ) -> Result<String, LexError> {
        let saved_raw = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let result = self.run_inner(stop, &mut words);
        self.raw_escapes = saved_raw;
        result
    }

    fn run_inner(
        &mut self,
        stop: Option<char>,
        words: &mut Option<&mut Words>,
    ) -> Result<String, LexError> {
        let mut result = String::new();
        self.buf.clear();
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok(result);
            }
            let special = match c {
                '$' => Some(self.dollar()?),
                '<' => Some(self.possible_heredoc()),
                '\'' => Some(self.single_quote()?),
                '"' => Some(self.double_quote()?),
                _ => None,
            };
            if let Some(text) = special {
                result.push_str(&text);
                if let Some(w) = words.as_deref_mut() {
                    if c == '$' {
                        for ch in text.chars() {
                            w.add_char(&mut self.buf, ch);
                        }
                    } else {
                        w.add_raw(&mut self.buf, &text);
                    }
                }
                continue;
            }
            self.pos += 1;
            if c == ESCAPE {
                if self.raw_escapes {
                    if let Some(w) = words.as_deref_mut() {
                        w.add_raw(&mut self.buf, "\\");
                    }
                    result.push(c);
                }
                let Some(next) = self.bump() else { break };
                if let Some(w) = words.as_deref_mut() {
                    let mut tmp = [0u8; 4];
                    w.add_raw(&mut self.buf, next.encode_utf8(&mut tmp));
                }
                result.push(next);
            } else {
                if let Some(w) = words.as_deref_mut() {
                    w.add_char(&mut self.buf, c);
                }
                result.push(c);
            }
        }
        match stop {
            Some(s) => Err(LexError::Syntax(format!(
                "unexpected end of statement while looking for matching {s}"
            ))),
            None => Ok(result),
        }
    }

    fn possible_heredoc(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.pos += 1;
        let mut out = String::from("<<");
        // `<<- EOF`: BuildKit's lexer splits this into `<<-` and `EOF` and so finds no
        // heredoc, although its own tests list `EOF` for it; the space is taken here, so
        // the word stays whole. BuildKit would read the body lines as instructions
        // (ending with the unknown instruction `EOF`), so in practice only files it
        // rejects parse differently.
        if self.peek() == Some('-')
            && self
                .chars
                .get(self.pos + 1)
                .is_some_and(|c| matches!(c, '\t' | '\r' | ' '))
        {
            out.push('-');
            self.pos += 1;
        }
        while let Some(c) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            out.push(c);
            self.pos += 1;
        }
        out
    }

    fn single_quote(&mut self) -> Result<String, LexError> {
        self.pos += 1;
        let mut out = String::new();
        if self.raw_quotes {
            out.push('\'');
        }
        loop {
            match self.bump() {
                None => {
                    return Err(LexError::Syntax(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    ));
                }
                Some('\'') => {
                    if self.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, LexError> {
        self.pos += 1;
        let mut out = String::new();
        if self.raw_quotes {
            out.push('"');
        }
        loop {
            match self.peek() {
                None => {
                    return Err(LexError::Syntax(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    ));
                }
                Some('"') => {
                    self.pos += 1;
                    if self.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    out.push_str(&v);
                }
                Some(mut c) => {
                    self.pos += 1;
                    if c == ESCAPE {
                        if self.raw_escapes {
                            out.push(c);
                        }
                        match self.peek() {
                            None => continue,
                            Some(n @ ('"' | '$' | ESCAPE)) => {
                                self.pos += 1;
                                c = n;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(c);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_numeric() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return c.to_string();
            }
            if !c.is_alphanumeric() && c != '_' {
                break;
            }
            name.push(c);
            self.pos += 1;
        }
        name
    }

    /// `$name`, `${name}`, `${name<op>word}`, `${name/pat/repl}` with every variable
    /// unset: the text is kept as written (words processed), errors as BuildKit's.
    fn dollar(&mut self) -> Result<String, LexError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            return Ok(format!("${name}"));
        }
        self.pos += 1;
        match self.peek() {
            None => return Err(syntax("syntax error: missing '}'")),
            Some('{' | '}' | ':') => return Err(syntax("syntax error: bad substitution")),
            Some(_) => {}
        }
        let name = self.name();
        let Some(ch) = self.bump() else {
            return Err(syntax("unsupported modifier in substitution"));
        };
        match ch {
            '}' => Ok(format!("${{{name}}}")),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut op = ch.to_string();
                let mut modifier = ch;
                if ch == ':' {
                    match self.bump() {
                        Some(c) => {
                            op.push(c);
                            modifier = c;
                        }
                        None => return Err(syntax("syntax error: missing '}'")),
                    }
                    if modifier == '#' || modifier == '%' {
                        return Err(syntax(&format!(
                            "unsupported modifier ({op}) in substitution"
                        )));
                    }
                }
                let raw = modifier == '#' || modifier == '%';
                let word = self.nested('}', raw, "syntax error: missing '}'")?;
                Ok(format!("${{{name}{op}{word}}}"))
            }
            '/' => {
                if self.peek() == Some('/') {
                    self.pos += 1;
                }
                let pattern = self.nested('/', true, "syntax error: missing '/' in ${}")?;
                let replacement = self.nested('}', true, "syntax error: missing '}'")?;
                Ok(format!("${{{name}/{pattern}/{replacement}}}"))
            }
            _ => Err(syntax(&format!(
                "unsupported modifier ({ch}) in substitution"
            ))),
        }
    }

    fn nested(
        &mut self,
        stop: char,
        raw_escapes: bool,
        eof_error: &str,
    ) -> Result<String, LexError> {
        if self.depth >= super::MAX_NESTING {
            return Err(LexError::TooDeep);
        }
        // BuildKit's nested scan works in the buffer it shares with the outer word: it
        // clears it on entry and again when it collects its own words on exit, so the
        // outer word loses what it had gathered before the `${`.
        let mut words = Words::default();
        self.depth += 1;
        let result = self.run(Some(stop), raw_escapes, Some(&mut words));
        self.depth -= 1;
        if result.is_ok() {
            words.finish(&mut self.buf);
        }
        result.map_err(|e| match e {
            LexError::Syntax(_) if self.peek().is_none() => syntax(eof_error),
            e => e,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_heredoc_spacing() {
        assert_eq!(
            lex_words("RUN <<  EOF  > foo", true, true).unwrap(),
            ["RUN", "<<  EOF", ">", "foo"]
        );
    }

    #[test]
    fn nested_substitution_shares_the_word_buffer() {
        assert_eq!(lex_words("a${X:-bc}d", true, true).unwrap(), ["${X:-bc}d"]);
    }

    #[test]
    fn unterminated_quote_on_line_means_no_heredocs() {
        assert!(heredocs_from_line("RUN <<EOF echo 'x").unwrap().is_empty());
    }

    #[test]
    fn bad_substitution_on_line_means_no_heredocs() {
        assert!(heredocs_from_line("RUN <<EOF echo ${").unwrap().is_empty());
    }

    #[test]
    fn fd_overflow_is_zero() {
        let d = parse_heredoc_word("99999999999999999999<<EOF")
            .unwrap()
            .unwrap();
        assert_eq!(d.file_descriptor, u64::MAX);
    }

    #[test]
    fn chomp_strips_tabs_per_line() {
        assert_eq!(chomp("\t\ta\n\tb\nc"), "a\nb\nc");
    }
}
