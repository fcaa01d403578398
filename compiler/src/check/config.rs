//! The check configuration: BuildKit's `# check=skip=A,B;error=true;experimental=C`
//! syntax, from the directive, `--check-config` or the config file.

use std::collections::BTreeSet;

use super::{Finding, Severity, rule};

/// Which rules run and how their findings count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// Rules not run.
    pub skip: BTreeSet<String>,
    /// `skip=all`: no rule runs.
    pub skip_all: bool,
    /// `error=true`: every finding is an error (BuildKit fails the build on one).
    pub error: bool,
    /// Experimental rules turned on.
    pub experimental: BTreeSet<String>,
    /// `experimental=all`.
    pub experimental_all: bool,
    /// Flag packages installed without a pinned version (an opt-in: not every team pins).
    pub pin_versions: bool,
}

/// A check option that is not `skip`, `error` or `experimental`, or a bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A part without `=`.
    #[error("invalid check option {0:?}: expected KEY=VALUE")]
    NoValue(String),
    /// An unknown key.
    #[error("invalid check option {0:?}: expected skip, error or experimental")]
    UnknownKey(String),
    /// `error=` with something other than a boolean.
    #[error("invalid value for check option error: {0:?}: expected true or false")]
    NotBool(String),
}

/// Parses `skip=A,B;error=true;experimental=C` as BuildKit does (parts split on `;`, keys
/// and values trimmed, `all` for every rule, booleans as Go's `ParseBool`).
pub fn parse_check_options(text: &str) -> Result<CheckConfig, ConfigError> {
    let mut out = CheckConfig::default();
    let text = text.trim();
    if text.is_empty() {
        return Ok(out);
    }
    for part in text.splitn(3, ';') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| ConfigError::NoValue(part.to_string()))?;
        let v = v.trim();
        let list = || -> BTreeSet<String> { v.split(',').map(|r| r.trim().to_string()).collect() };
        match k.trim() {
            "skip" if v == "all" => out.skip_all = true,
            "skip" => out.skip = list(),
            "experimental" if v == "all" => out.experimental_all = true,
            "experimental" => out.experimental = list(),
            "error" => {
                out.error = match v {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => true,
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => false,
                    _ => return Err(ConfigError::NotBool(v.to_string())),
                }
            }
            other => return Err(ConfigError::UnknownKey(other.to_string())),
        }
    }
    Ok(out)
}

impl CheckConfig {
    /// Merges `other` over this one: skips and experimental rules add up, `error=` from
    /// `other` wins when it is given as true (BuildKit merges the same way).
    pub fn merge(&mut self, other: &CheckConfig) {
        self.skip.extend(other.skip.iter().cloned());
        self.skip_all |= other.skip_all;
        self.experimental.extend(other.experimental.iter().cloned());
        self.experimental_all |= other.experimental_all;
        self.error |= other.error;
        self.pin_versions |= other.pin_versions;
    }

    /// Whether `name` runs under this configuration: experimental rules only when turned
    /// on (a skip list does not hide them, as in BuildKit), the others unless skipped.
    pub fn runs(&self, name: &str) -> bool {
        let experimental = rule(name).is_some_and(|r| r.experimental);
        if experimental {
            self.experimental_all || self.experimental.contains(name)
        } else {
            !self.skip_all && !self.skip.contains(name)
        }
    }

    /// The finding as this configuration reports it: `None` when its rule does not run,
    /// an error under `error=true` (info findings stay info).
    pub fn apply(&self, mut finding: Finding) -> Option<Finding> {
        if !self.runs(finding.rule) {
            return None;
        }
        if self.error && finding.severity == Severity::Warning {
            finding.severity = Severity::Error;
        }
        Some(finding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_syntax() {
        let c = parse_check_options(" skip = JSONArgsRecommended, StageNameCasing ; error=true")
            .unwrap();
        assert!(c.skip.contains("JSONArgsRecommended") && c.skip.contains("StageNameCasing"));
        assert!(c.error);
        assert!(parse_check_options("skip=all").unwrap().skip_all);
        assert_eq!(
            parse_check_options("error=maybe"),
            Err(ConfigError::NotBool("maybe".into()))
        );
        assert_eq!(
            parse_check_options("warn=all"),
            Err(ConfigError::UnknownKey("warn".into()))
        );
        assert_eq!(
            parse_check_options("skip"),
            Err(ConfigError::NoValue("skip".into()))
        );
    }

    #[test]
    fn experimental_rules_need_turning_on() {
        let c = CheckConfig::default();
        assert!(!c.runs("InvalidDefinitionDescription"));
        assert!(c.runs("UndefinedVar"));
        let c = parse_check_options("experimental=InvalidDefinitionDescription;skip=all").unwrap();
        assert!(c.runs("InvalidDefinitionDescription"));
        assert!(!c.runs("UndefinedVar"));
    }
}
