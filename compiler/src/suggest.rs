//! "Did you mean ...?": the known word closest to a typo.
//!
//! One rule for every suggestion rbuild makes (instruction keywords, instruction flags,
//! subcommands, stage and image names): the Damerau-Levenshtein distance (a swap of two
//! neighbours counts once), accepted when it is at most 1 for words of up to 3 characters,
//! 2 up to 12 characters and 3 beyond, so that short words do not match everything.

/// The candidate closest to `word`, when it is close enough to be a likely typo of it (never
/// `word` itself). Ties go to the earliest candidate.
pub fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = match word.chars().count() {
        0 => return None,
        1..=3 => 1,
        4..=12 => 2,
        _ => 3,
    };
    let mut best: Option<(&'a str, usize)> = None;
    for candidate in candidates {
        let distance = strsim::damerau_levenshtein(word, candidate);
        if distance == 0 || distance > limit {
            continue;
        }
        if best.is_none_or(|(_, d)| distance < d) {
            best = Some((candidate, distance));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn close_words_only() {
        let subcommands = ["build", "images", "inspect", "import", "run", "rm", "rmi"];
        assert_eq!(closest("imagse", subcommands), Some("images"));
        assert_eq!(closest("inspekt", subcommands), Some("inspect"));
        assert_eq!(closest("buidl", subcommands), Some("build"));
        assert_eq!(closest("rmm", subcommands), Some("rm"));
        assert_eq!(closest("images", subcommands), None);
        assert_eq!(closest("src", subcommands), None);
        assert_eq!(closest("hello", subcommands), None);
        assert_eq!(closest("", subcommands), None);
        assert_eq!(
            closest(
                "docker.io/library/myap:latest",
                ["docker.io/library/myapp:latest"]
            ),
            Some("docker.io/library/myapp:latest")
        );
    }
}
