//! The rule table: every rule's name, origin, default severity and summary, in one place
//! so the renderers, the documentation and the configuration agree.

use super::Severity;

/// Where a rule comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// BuildKit's build checks: same name, same semantics.
    Buildkit,
    /// Best practices that hadolint also checks (its rule code is given).
    Practice,
    /// Checks that need the resolved build: base image configs, the context, the store.
    Resolved,
}

/// One rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleInfo {
    /// Its name (`UndefinedVar`).
    pub name: &'static str,
    /// Where it comes from.
    pub origin: Origin,
    /// Its default severity.
    pub severity: Severity,
    /// Off unless turned on with `experimental=` (as in BuildKit).
    pub experimental: bool,
    /// What it checks, in one line.
    pub summary: &'static str,
    /// The hadolint rules that check the same thing.
    pub hadolint: &'static [&'static str],
}

impl RuleInfo {
    /// The rule's documentation page, relative to the repository root.
    pub fn doc_path(&self) -> String {
        format!("docs/checks/{}.md", self.name)
    }

    /// The rule's documentation page as a URL.
    pub fn doc_url(&self) -> String {
        format!("{DOCS_BASE}{}.md", self.name)
    }
}

/// Where the rule pages are published.
pub const DOCS_BASE: &str = "https://github.com/rbuild/rbuild/blob/main/docs/checks/";

const fn r(
    name: &'static str,
    origin: Origin,
    severity: Severity,
    summary: &'static str,
    hadolint: &'static [&'static str],
) -> RuleInfo {
    RuleInfo {
        name,
        origin,
        severity,
        experimental: false,
        summary,
        hadolint,
    }
}

use Origin::{Buildkit as B, Practice as P, Resolved as R};
use Severity::{Info as I, Warning as W};

/// Every rule, BuildKit's first.
pub const RULES: &[RuleInfo] = &[
    r(
        "ConsistentInstructionCasing",
        B,
        W,
        "All instructions should use the same casing (upper or lower)",
        &[],
    ),
    r(
        "CopyIgnoredFile",
        B,
        W,
        "A COPY or ADD source is excluded by .dockerignore",
        &[],
    ),
    r(
        "DuplicateStageName",
        B,
        W,
        "Stage names should be unique",
        &[],
    ),
    r(
        "ExposeInvalidFormat",
        B,
        W,
        "EXPOSE should not name an IP address or a host port",
        &[],
    ),
    r(
        "ExposeProtoCasing",
        B,
        W,
        "The protocol in EXPOSE should be lowercase",
        &[],
    ),
    r(
        "FromAsCasing",
        B,
        W,
        "The AS keyword should match the case of the FROM keyword",
        &[],
    ),
    r(
        "FromPlatformFlagConstDisallowed",
        B,
        W,
        "FROM --platform should not be a constant",
        &[],
    ),
    r(
        "InvalidBaseImagePlatform",
        B,
        W,
        "The base image's platform is not the stage's",
        &[],
    ),
    r(
        "InvalidDefaultArgInFrom",
        B,
        W,
        "A global ARG's default gives an empty or invalid base image name",
        &[],
    ),
    RuleInfo {
        experimental: true,
        ..r(
            "InvalidDefinitionDescription",
            B,
            W,
            "A comment above a stage or ARG should start with its name",
            &[],
        )
    },
    r(
        "JSONArgsRecommended",
        B,
        W,
        "CMD and ENTRYPOINT should use the JSON (exec) form",
        &["DL3025"],
    ),
    r(
        "LegacyKeyValueFormat",
        B,
        W,
        "ENV and LABEL should use key=value, not the legacy `key value`",
        &[],
    ),
    r(
        "MaintainerDeprecated",
        B,
        W,
        "MAINTAINER is deprecated; use a LABEL",
        &["DL4000"],
    ),
    r(
        "MultipleInstructionsDisallowed",
        B,
        W,
        "Only the last CMD, ENTRYPOINT or HEALTHCHECK of a stage counts",
        &["DL4003", "DL4004", "DL3012"],
    ),
    r(
        "NoEmptyContinuation",
        B,
        W,
        "Empty continuation lines will become errors",
        &[],
    ),
    r(
        "RedundantTargetPlatform",
        B,
        W,
        "FROM --platform=$TARGETPLATFORM is the default",
        &[],
    ),
    r(
        "ReservedStageName",
        B,
        W,
        "Stage names should not be reserved words (scratch, context)",
        &[],
    ),
    r(
        "SecretsUsedInArgOrEnv",
        B,
        W,
        "Secrets should not be passed in ARG or ENV",
        &[],
    ),
    r(
        "StageNameCasing",
        B,
        W,
        "Stage names should be lowercase",
        &[],
    ),
    r(
        "UndefinedArgInFrom",
        B,
        W,
        "FROM should only use declared ARGs",
        &[],
    ),
    r(
        "UndefinedVar",
        B,
        W,
        "Variables should be defined before they are used",
        &[],
    ),
    r(
        "WorkdirRelativePath",
        B,
        W,
        "A relative WORKDIR depends on the base image's",
        &[],
    ),
    r(
        "AptGetMissingYes",
        P,
        W,
        "apt-get install needs -y in a build",
        &["DL3014"],
    ),
    r(
        "AptGetNoInstallRecommends",
        P,
        I,
        "apt-get install should use --no-install-recommends",
        &["DL3015"],
    ),
    r(
        "AptListsNotCleaned",
        P,
        I,
        "apt-get lists should be removed in the RUN that downloads them",
        &["DL3009"],
    ),
    r(
        "UnpinnedPackage",
        P,
        W,
        "Packages should be installed at pinned versions (opt-in)",
        &["DL3008", "DL3013", "DL3018"],
    ),
    r(
        "ApkAddNoCache",
        P,
        I,
        "apk add should use --no-cache",
        &["DL3019"],
    ),
    r(
        "PipNoCacheDir",
        P,
        I,
        "pip install should use --no-cache-dir",
        &["DL3042"],
    ),
    r(
        "PipeToShell",
        P,
        W,
        "A script downloaded and piped into a shell runs unverified",
        &[],
    ),
    r(
        "CdInRun",
        P,
        W,
        "Use WORKDIR rather than cd in RUN",
        &["DL3003"],
    ),
    r(
        "SudoInRun",
        P,
        W,
        "Build steps run as the image's user; sudo is not needed",
        &["DL3004"],
    ),
    r(
        "AddInsteadOfCopy",
        P,
        I,
        "Use COPY for local files; ADD also fetches and unpacks",
        &["DL3020"],
    ),
    r(
        "FromLatestTag",
        P,
        W,
        "A base image at `latest` changes under the build",
        &["DL3007"],
    ),
    r(
        "FromUntagged",
        P,
        W,
        "A base image without a tag is `latest`",
        &["DL3006"],
    ),
    r(
        "LastUserRoot",
        P,
        W,
        "The image should not run as root",
        &["DL3002"],
    ),
    r(
        "CopyContextBeforeInstall",
        P,
        W,
        "Copying the whole context before installing dependencies busts their cache",
        &[],
    ),
    r(
        "UnusedStage",
        R,
        I,
        "A stage the target does not use is not built",
        &[],
    ),
    r(
        "SecretFileCopied",
        R,
        W,
        "A secret-looking file of the context is copied into the image",
        &[],
    ),
    r(
        "PackageCacheInLayer",
        R,
        W,
        "A RUN leaves a package manager's cache in its layer",
        &[],
    ),
    r(
        "UnknownUser",
        R,
        W,
        "USER names a user the base image's /etc/passwd lacks",
        &[],
    ),
];

/// The rule named `name`.
pub fn rule(name: &str) -> Option<&'static RuleInfo> {
    RULES.iter().find(|r| r.name == name)
}
