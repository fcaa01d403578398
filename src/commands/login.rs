//! `rbuild login [-u USER] [--password-stdin] [REGISTRY]`: checks the credentials against the
//! registry's `/v2/`, then stores them (a credential helper when the config names one, else a
//! base64 `auth` entry written atomically).

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use rbuild_registry::credentials::helper_store;
use rbuild_registry::{Client, Credential, CredentialStore, DockerConfig, Secret};

use super::registry::{
    RegistryArgs, credentials_file, registry_name, runtime, write_credentials_file,
};

/// `rbuild login`
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The user name (asked for on a terminal when not given).
    #[arg(short, long)]
    pub username: Option<String>,
    /// The password; visible to other users in the process list, prefer --password-stdin.
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from stdin (one line).
    #[arg(long)]
    pub password_stdin: bool,
    /// The registry (default: docker.io).
    pub registry: Option<String>,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
}

pub fn run(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let registry = registry_name(args.registry.as_deref());
    let username = match args.username {
        Some(u) => u,
        None if args.password_stdin => bail!("--password-stdin needs --username"),
        None => prompt_username()?,
    };
    if username.is_empty() {
        bail!("empty user name for {registry}");
    }
    let password = if args.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the password from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = args.password {
        tracing::warn!(
            "a password on the command line is visible to other users; use --password-stdin"
        );
        p
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ").context("cannot read the password")?
    } else {
        bail!("no password for {registry}: use --password-stdin or run on a terminal");
    };
    if password.is_empty() {
        bail!("empty password for {registry}");
    }
    let password = Secret::new(password);

    let store = CredentialStore::anonymous().with_credential(
        &registry,
        Credential::Basic {
            username: username.clone(),
            password: password.clone(),
        },
    );
    let client = Client::new(args.registry_args.client_options(store));
    runtime()?
        .block_on(client.check_login(&registry))
        .with_context(|| format!("cannot log in to {registry}"))?;

    let path = credentials_file();
    let mut config = DockerConfig::load_or_default(&path)?;
    if let Some(helper) = config.helper_for(&registry) {
        helper_store(&helper, &registry, &username, &password)?;
        eprintln!("login succeeded for {registry} (stored with docker-credential-{helper})");
    } else {
        config.set_basic(&registry, &username, &password);
        write_credentials_file(&path, &config.to_json())?;
        eprintln!(
            "login succeeded for {registry} (stored in {})",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn prompt_username() -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("no user name: use --username");
    }
    eprint!("Username: ");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the user name")?;
    Ok(line.trim().to_string())
}
