//! `--chmod`: an octal mode replaces the permission bits (setuid, setgid and
//! sticky included, as the octal value says); a symbolic mode (`u+x,g-w`,
//! `a=rX`, `g=u`) is applied to each file's own mode, with a zero umask.

use rbuild_compiler::instructions::Chmod;

/// The mode `chmod` gives a file whose mode is `mode` (a directory when
/// `dir`). Only the `0o7777` bits are returned.
pub(crate) fn apply(chmod: &Chmod, mode: u32, dir: bool) -> u32 {
    match chmod {
        Chmod::Octal(m) => m & 0o7777,
        Chmod::Symbolic(s) => symbolic(s, mode & 0o7777, dir),
    }
}

/// Bits a `who` letter covers, with the special bit that belongs to it.
fn who_bits(who: char) -> u32 {
    match who {
        'u' => 0o4700,
        'g' => 0o2070,
        'o' => 0o0007,
        _ => 0o7777,
    }
}

fn symbolic(spec: &str, mut mode: u32, dir: bool) -> u32 {
    for clause in spec.split(',') {
        let who_end = clause
            .find(|c: char| !matches!(c, 'u' | 'g' | 'o' | 'a'))
            .unwrap_or(clause.len());
        let whos = &clause[..who_end];
        // No `who` means `a` (the umask is zero, as BuildKit applies it).
        let mask = if whos.is_empty() {
            0o7777
        } else {
            whos.chars().map(who_bits).fold(0, |a, b| a | b)
        };
        // Sticky only with `a`/no who or with `o`.
        let sticky_ok = whos.is_empty() || whos.contains('a') || whos.contains('o');
        let mut rest = &clause[who_end..];
        while let Some(op) = rest.chars().next() {
            rest = &rest[1..];
            let end = rest.find(['+', '-', '=']).unwrap_or(rest.len());
            let perms = &rest[..end];
            rest = &rest[end..];
            let bits = match perms {
                "u" | "g" | "o" => {
                    // Copy the bits of one class to the others.
                    let src = match perms {
                        "u" => (mode >> 6) & 7,
                        "g" => (mode >> 3) & 7,
                        _ => mode & 7,
                    };
                    (src << 6 | src << 3 | src) & mask & 0o777
                }
                _ => {
                    let mut b = 0;
                    for p in perms.chars() {
                        b |= match p {
                            'r' => 0o444,
                            'w' => 0o222,
                            'x' => 0o111,
                            'X' if dir || mode & 0o111 != 0 => 0o111,
                            's' => 0o6000,
                            't' if sticky_ok => 0o1000,
                            _ => 0,
                        };
                    }
                    b & (mask | if sticky_ok { 0o1000 } else { 0 })
                }
            };
            match op {
                '+' => mode |= bits,
                '-' => mode &= !bits,
                '=' => {
                    let clear = mask & if sticky_ok { 0o7777 } else { 0o6777 };
                    mode = (mode & !clear) | bits;
                }
                _ => {}
            }
        }
    }
    mode & 0o7777
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(spec: &str, mode: u32, dir: bool) -> u32 {
        apply(&Chmod::Symbolic(spec.into()), mode, dir)
    }

    #[test]
    fn octal_replaces_all_bits() {
        assert_eq!(apply(&Chmod::Octal(0o4755), 0o644, false), 0o4755);
        assert_eq!(apply(&Chmod::Octal(0o640), 0o4755, false), 0o640);
    }

    #[test]
    fn symbolic_modes() {
        assert_eq!(s("u+x", 0o644, false), 0o744);
        assert_eq!(s("g-w", 0o664, false), 0o644);
        assert_eq!(s("a=r", 0o755, false), 0o444);
        assert_eq!(s("=r", 0o4755, false), 0o444);
        assert_eq!(s("a+X", 0o644, false), 0o644);
        assert_eq!(s("a+X", 0o644, true), 0o755);
        assert_eq!(s("a+X", 0o744, false), 0o755);
        assert_eq!(s("u+s", 0o755, false), 0o4755);
        assert_eq!(s("g+s", 0o755, true), 0o2755);
        assert_eq!(s("+t", 0o755, true), 0o1755);
        assert_eq!(s("go=u", 0o750, false), 0o777);
        assert_eq!(s("u+x,go-rwx", 0o666, false), 0o700);
        assert_eq!(s("o=", 0o757, false), 0o750);
        assert_eq!(s("u=rw,g=r,o=", 0o777, false), 0o640);
    }
}
