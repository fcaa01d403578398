//! `rbuild exec`: runs a command in a running detached container, in its namespaces and
//! under its confinement (capabilities, no_new_privs, seccomp filter).

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use rbuild_cache::containers::Containers;
use rbuild_executor::sandbox::SandboxError;
use rbuild_executor::sandbox::exec::{ExecSpec, ExecStdio};

use super::container::{self, ContainerConfig, Status};
use crate::cli::GlobalArgs;

/// `rbuild exec [-i] [-t] [-e K=V] [-u USER] [-w DIR] NAME CMD...`
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short = 'i', long = "interactive")]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short = 't', long = "tty")]
    pub tty: bool,
    /// Set an environment variable (`K=V`, or `K` to pass the host's value).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// The user: `name`, `uid`, `name:group` or `uid:gid` (default: the container's).
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// The working directory (default: the container's).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// The container (name or id prefix).
    pub container: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: ExecArgs) -> anyhow::Result<ExitCode> {
    match exec(global, &args) {
        Ok(code) => Ok(ExitCode::from(u8::try_from(code).unwrap_or(255))),
        Err(err) => {
            let code = err
                .chain()
                .find_map(|e| match e.downcast_ref::<SandboxError>() {
                    Some(SandboxError::Exec { code, .. }) => u8::try_from(*code).ok(),
                    _ => None,
                })
                .unwrap_or(super::run::EXIT_RBUILD);
            crate::report::render_error(&err);
            Ok(ExitCode::from(code))
        }
    }
}

fn exec(global: &GlobalArgs, args: &ExecArgs) -> anyhow::Result<i32> {
    let store = super::open_store(global)?;
    let containers = Containers::open(store.root())?;
    let r = containers.find(&args.container)?;
    let init = match (container::status(&containers, &r), r.init_pid) {
        (Status::Running, Some(init)) if r.detached => init,
        (Status::Running, _) => bail!(
            "container {} runs in the foreground: exec joins detached containers (rbuild run -d)",
            r.name
        ),
        _ => bail!("container {} is not running", r.name),
    };
    let cfg = ContainerConfig::of(&r)?;
    let mut env = cfg.env.clone();
    super::run::override_env(&mut env, args.env.iter().cloned(), &|k| {
        std::env::var(k).ok()
    });
    if args.tty {
        env.retain(|e| !e.starts_with("TERM="));
        env.push("TERM=xterm".into());
    }
    let workdir = args.workdir.clone().unwrap_or(cfg.workdir.clone());
    if !workdir.starts_with('/') {
        bail!("the working directory {workdir:?} is not an absolute path");
    }
    let spec = ExecSpec {
        argv: args.command.clone(),
        env,
        workdir,
        user: args.user.clone().unwrap_or(cfg.user.clone()),
        id_map: super::id_map(global, &store)?,
        seccomp: super::run::parse_security_opts(&cfg.security_opt)?,
        stdio: match (args.tty, args.interactive) {
            (true, _) => ExecStdio::Tty,
            (false, true) => ExecStdio::Inherit,
            (false, false) => ExecStdio::NoInput,
        },
        timeout: None,
    };
    let outcome = rbuild_executor::sandbox::exec::exec(init, spec)
        .with_context(|| format!("cannot exec {:?} in container {}", args.command, r.name))?;
    Ok(outcome.exit_code)
}
