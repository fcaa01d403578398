//! A parse of the POSIX shell that RUN hands to `/bin/sh -c`, into simple commands grouped
//! in pipelines, as far as the checks need it: words after quote removal, leading variable
//! assignments apart, redirections and comments dropped, compound commands (`if`, `while`,
//! `{ ...; }`, subshells) opened so the commands inside them count. Command substitutions
//! (`$(...)`, backticks) and parameter expansions stay inside their word, unexpanded; the
//! commands of a `$(...)` are parsed too. Nothing is run and nothing is expanded.
//!
//! ```
//! use rbuild_compiler::check::sh;
//!
//! let s = sh::parse("set -eux; apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y 'curl' > /dev/null");
//! let names: Vec<&str> = s.commands.iter().map(|c| c.name()).collect();
//! assert_eq!(names, ["set", "apt-get", "apt-get"]);
//! assert_eq!(s.commands[2].assigns, ["DEBIAN_FRONTEND=noninteractive"]);
//! assert_eq!(s.commands[2].words, ["apt-get", "install", "-y", "curl"]);
//! ```

/// The deepest `$(...)` nesting whose commands are parsed; deeper ones stay words.
const MAX_DEPTH: usize = 16;

/// One simple command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Command {
    /// `NAME=value` words before the command name.
    pub assigns: Vec<String>,
    /// The command name and its arguments, quotes removed.
    pub words: Vec<String>,
    /// The pipeline it belongs to (an index shared by `a | b`).
    pub pipeline: usize,
}

impl Command {
    /// The command name (empty for a bare assignment).
    pub fn name(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }

    /// The name without its directory (`/usr/bin/apt-get` is `apt-get`).
    pub fn base_name(&self) -> &str {
        let n = self.name();
        n.rsplit('/').next().unwrap_or(n)
    }

    /// The arguments.
    pub fn args(&self) -> &[String] {
        self.words.get(1..).unwrap_or(&[])
    }

    /// The command run through `sudo`, `env`, `nice`, `exec`, `command`, `time` and the like,
    /// with their options and `env`'s assignments skipped; `self` when there is none.
    pub fn unwrapped(&self) -> Command {
        let mut words: &[String] = &self.words;
        while let Some(first) = words.first() {
            let base = first.rsplit('/').next().unwrap_or(first);
            if !matches!(
                base,
                "sudo"
                    | "env"
                    | "nice"
                    | "exec"
                    | "command"
                    | "time"
                    | "nohup"
                    | "doas"
                    | "gosu"
                    | "su-exec"
            ) {
                break;
            }
            let takes_user = matches!(base, "gosu" | "su-exec");
            words = &words[1..];
            // Options (and, for sudo, the value of -u/-g).
            while let Some(w) = words.first() {
                if w.starts_with('-') && w.len() > 1 {
                    let takes_value = base == "sudo"
                        && matches!(
                            w.as_str(),
                            "-u" | "-g" | "-C" | "-h" | "-p" | "-U" | "-r" | "-t"
                        );
                    words = &words[1..];
                    if takes_value && !words.is_empty() {
                        words = &words[1..];
                    }
                } else if base == "env" && is_assignment(w) {
                    words = &words[1..];
                } else {
                    break;
                }
            }
            if takes_user && !words.is_empty() {
                words = &words[1..];
            }
        }
        Command {
            assigns: self.assigns.clone(),
            words: words.to_vec(),
            pipeline: self.pipeline,
        }
    }
}

/// A parsed script.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Script {
    /// Every simple command, in order (those inside compound commands and `$(...)` too).
    pub commands: Vec<Command>,
}

impl Script {
    /// The commands of pipeline `index`, in order.
    pub fn pipeline(&self, index: usize) -> impl Iterator<Item = &Command> {
        self.commands.iter().filter(move |c| c.pipeline == index)
    }
}

/// Whether `w` is `NAME=value` with a valid shell name.
pub fn is_assignment(w: &str) -> bool {
    match w.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Tok {
    Word(String),
    /// `|`
    Pipe,
    /// `;`, `&`, `&&`, `||`, newline, `(`, `)`: ends a command (and its pipeline).
    Sep,
}

/// Parses `script`. Never fails: what it does not understand (an unterminated quote, a
/// `case` statement) ends up as words or is skipped.
pub fn parse(script: &str) -> Script {
    let mut out = Script::default();
    let mut pipelines = 0;
    parse_into(script, &mut out, &mut pipelines, 0);
    out
}

fn parse_into(script: &str, out: &mut Script, pipelines: &mut usize, depth: usize) {
    let mut subs = Vec::new();
    let toks = lex(script, &mut subs);
    let mut cur = Command {
        pipeline: *pipelines,
        ..Command::default()
    };
    let mut skip_until_do = false;
    let mut in_case = 0usize;
    let flush = |cur: &mut Command, out: &mut Script, new_pipeline: bool, pipelines: &mut usize| {
        if !cur.words.is_empty() || !cur.assigns.is_empty() {
            out.commands.push(std::mem::take(cur));
        }
        if new_pipeline {
            *pipelines += 1;
        }
        cur.pipeline = *pipelines;
    };
    for tok in toks {
        match tok {
            Tok::Word(w) => {
                if in_case > 0 {
                    if w == "esac" {
                        in_case -= 1;
                    }
                    continue;
                }
                if cur.words.is_empty() {
                    if skip_until_do {
                        if w == "do" {
                            skip_until_do = false;
                        }
                        continue;
                    }
                    match w.as_str() {
                        "if" | "then" | "else" | "elif" | "do" | "while" | "until" | "!" | "{"
                        | "}" | "fi" | "done" | "time" => continue,
                        "for" | "select" => {
                            skip_until_do = true;
                            continue;
                        }
                        "case" => {
                            in_case += 1;
                            continue;
                        }
                        _ => {}
                    }
                    if is_assignment(&w) {
                        cur.assigns.push(w);
                        continue;
                    }
                }
                cur.words.push(w);
            }
            Tok::Pipe => flush(&mut cur, out, false, pipelines),
            Tok::Sep => flush(&mut cur, out, true, pipelines),
        }
    }
    flush(&mut cur, out, true, pipelines);
    if depth < MAX_DEPTH {
        for sub in subs {
            parse_into(&sub, out, pipelines, depth + 1);
        }
    }
}

/// Splits `s` into words and operators; the bodies of `$(...)` and backticks go to `subs`.
fn lex(s: &str, subs: &mut Vec<String>) -> Vec<Tok> {
    let b: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut i = 0;
    let end_word = |word: &mut String, in_word: &mut bool, toks: &mut Vec<Tok>| {
        if *in_word {
            toks.push(Tok::Word(std::mem::take(word)));
            *in_word = false;
        }
    };
    while i < b.len() {
        let c = b[i];
        match c {
            '\\' => {
                if b.get(i + 1) == Some(&'\n') {
                    i += 2;
                    continue;
                }
                if let Some(&n) = b.get(i + 1) {
                    word.push(n);
                }
                in_word = true;
                i += 2;
            }
            '\'' => {
                in_word = true;
                i += 1;
                while i < b.len() && b[i] != '\'' {
                    word.push(b[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                in_word = true;
                i += 1;
                while i < b.len() && b[i] != '"' {
                    if b[i] == '\\' && matches!(b.get(i + 1), Some('"' | '\\' | '$' | '`')) {
                        word.push(b[i + 1]);
                        i += 2;
                        continue;
                    }
                    if b[i] == '$' && b.get(i + 1) == Some(&'(') {
                        let (text, next) = balanced(&b, i + 1);
                        subs.push(text.clone());
                        word.push_str("$(");
                        word.push_str(&text);
                        word.push(')');
                        i = next;
                        continue;
                    }
                    word.push(b[i]);
                    i += 1;
                }
                i += 1;
            }
            '`' => {
                in_word = true;
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != '`' {
                    i += if b[i] == '\\' { 2 } else { 1 };
                }
                let body: String = b[start..i.min(b.len())].iter().collect();
                word.push('`');
                word.push_str(&body);
                word.push('`');
                subs.push(body);
                i += 1;
            }
            '$' if b.get(i + 1) == Some(&'(') || b.get(i + 1) == Some(&'{') => {
                in_word = true;
                let (text, next) = balanced(&b, i + 1);
                if b[i + 1] == '(' {
                    if !text.starts_with('(') {
                        subs.push(text.clone());
                    }
                    word.push_str("$(");
                    word.push_str(&text);
                    word.push(')');
                } else {
                    word.push_str("${");
                    word.push_str(&text);
                    word.push('}');
                }
                i = next;
            }
            '#' if !in_word => {
                while i < b.len() && b[i] != '\n' {
                    i += 1;
                }
            }
            ' ' | '\t' | '\r' => {
                end_word(&mut word, &mut in_word, &mut toks);
                i += 1;
            }
            '\n' | ';' | '(' | ')' => {
                end_word(&mut word, &mut in_word, &mut toks);
                toks.push(Tok::Sep);
                i += 1;
            }
            '&' => {
                end_word(&mut word, &mut in_word, &mut toks);
                if b.get(i + 1) == Some(&'>') {
                    // `&>file`: a redirection.
                    i = skip_redirect_target(&b, i + 2);
                    continue;
                }
                toks.push(Tok::Sep);
                i += if b.get(i + 1) == Some(&'&') { 2 } else { 1 };
            }
            '|' => {
                end_word(&mut word, &mut in_word, &mut toks);
                if b.get(i + 1) == Some(&'|') {
                    toks.push(Tok::Sep);
                    i += 2;
                } else {
                    toks.push(Tok::Pipe);
                    i += if b.get(i + 1) == Some(&'&') { 2 } else { 1 };
                }
            }
            '>' | '<' => {
                // A file descriptor number right before the operator belongs to it.
                if in_word && !word.is_empty() && word.chars().all(|c| c.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                }
                end_word(&mut word, &mut in_word, &mut toks);
                let mut j = i + 1;
                while j < b.len() && matches!(b[j], '>' | '<' | '&' | '|') {
                    j += 1;
                }
                i = skip_redirect_target(&b, j);
            }
            _ => {
                in_word = true;
                word.push(c);
                i += 1;
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut toks);
    toks
}

/// Skips blanks and one word (a redirection's target) from `i`.
fn skip_redirect_target(b: &[char], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], ' ' | '\t') {
        i += 1;
    }
    let mut quote = None;
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if matches!(c, ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')') => break,
            None if c == '\\' => i += 1,
            None => {}
        }
        i += 1;
    }
    i
}

/// The text between the bracket at `open` and its match (nesting and quotes followed), and
/// the index after the closing bracket.
fn balanced(b: &[char], open: usize) -> (String, usize) {
    let (o, c) = if b[open] == '(' {
        ('(', ')')
    } else {
        ('{', '}')
    };
    let mut depth = 0usize;
    let mut i = open;
    let mut quote: Option<char> = None;
    while i < b.len() {
        let ch = b[i];
        match quote {
            Some(q) if ch == q => quote = None,
            Some('"') if ch == '\\' => i += 1,
            Some(_) => {}
            None => {
                if ch == '\\' {
                    i += 1;
                } else if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                } else if ch == o {
                    depth += 1;
                } else if ch == c {
                    depth -= 1;
                    if depth == 0 {
                        return (b[open + 1..i].iter().collect(), i + 1);
                    }
                }
            }
        }
        i += 1;
    }
    (b[(open + 1).min(b.len())..].iter().collect(), b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &str) -> Vec<String> {
        parse(s)
            .commands
            .iter()
            .map(|c| c.words.join(" "))
            .collect()
    }

    #[test]
    fn lists_pipelines_and_compounds() {
        assert_eq!(
            names("if [ -f x ]; then cd /tmp && make; else echo 'no; really' | tee log 2>&1; fi"),
            ["[ -f x ]", "cd /tmp", "make", "echo no; really", "tee log"]
        );
        let s = parse("curl -fsSL https://x | sudo bash -s -- -y; echo done");
        assert_eq!(s.commands[0].pipeline, s.commands[1].pipeline);
        assert_ne!(s.commands[1].pipeline, s.commands[2].pipeline);
        assert_eq!(s.commands[1].unwrapped().words, ["bash", "-s", "--", "-y"]);
        assert_eq!(
            names("for p in a b; do pip install \"$p\"; done; (cd sub && npm ci)"),
            ["pip install $p", "cd sub", "npm ci"]
        );
    }

    #[test]
    fn substitutions_are_words_and_their_commands_count() {
        let s = parse("echo \"$(curl -s https://x | sh)\" ${A:-b} `id -u` # trailing comment");
        assert_eq!(
            s.commands[0].words,
            ["echo", "$(curl -s https://x | sh)", "${A:-b}", "`id -u`"]
        );
        let all: Vec<&str> = s.commands.iter().map(|c| c.name()).collect();
        assert_eq!(all, ["echo", "curl", "sh", "id"]);
    }

    #[test]
    fn redirections_and_continuations() {
        assert_eq!(
            names("apt-get install -y \\\n  curl >/dev/null 2>&1 &>/tmp/log < in"),
            ["apt-get install -y curl"]
        );
        assert_eq!(names("echo a>b c"), ["echo a c"]);
        // Unterminated quotes do not lose the text.
        assert_eq!(names("echo 'abc"), ["echo abc"]);
        assert!(
            parse("case $x in a) echo a;; esac; ls")
                .commands
                .iter()
                .any(|c| c.name() == "ls")
        );
    }
}
