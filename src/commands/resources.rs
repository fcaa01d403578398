//! The resource-limit flags of `rbuild run` (`--memory`, `--memory-swap`, `--cpus`,
//! `--pids-limit`) and `rbuild build` (`--memory`, `--memory-swap`, `--cpu-period`,
//! `--cpu-quota`), in docker's value syntax.

use anyhow::{Context as _, bail};
use rbuild_executor::cgroup::{Limits, Swap};

/// The limits of `rbuild run`'s container.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunLimitArgs {
    /// Memory limit (`512m`, `1g`); the container is killed by the kernel's OOM killer
    /// above it.
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Memory plus swap (`-1`: unlimited swap); by default twice --memory.
    #[arg(long = "memory-swap", value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPUs' worth of time (`1.5`).
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// Processes and threads at most (`-1` or `0`: no limit).
    #[arg(long = "pids-limit", value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
}

/// The limits `rbuild build` gives every RUN step, over the config file's.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BuildLimitArgs {
    /// Memory limit of every RUN step (`512m`, `1g`; config `limits.memory`).
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Memory plus swap of every RUN step (`-1`: unlimited swap); by default twice --memory.
    #[arg(long = "memory-swap", value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// The CPU bandwidth period in microseconds for --cpu-quota (default 100000).
    #[arg(long = "cpu-period", value_name = "US")]
    pub cpu_period: Option<u64>,
    /// CPU time of every RUN step per --cpu-period, in microseconds (config `limits.cpus`
    /// in CPUs).
    #[arg(long = "cpu-quota", value_name = "US")]
    pub cpu_quota: Option<u64>,
}

fn memory(text: &str, flag: &str) -> anyhow::Result<u64> {
    let n = crate::env::parse_size(text)
        .with_context(|| format!("{flag} {text:?} is not a size (512m, 1g)"))?;
    if n < 6 << 20 {
        bail!("{flag} {text:?} is below the minimum of 6 MiB");
    }
    Ok(n)
}

fn swap(text: Option<&str>, memory: Option<u64>) -> anyhow::Result<Option<Swap>> {
    let Some(text) = text else { return Ok(None) };
    if memory.is_none() {
        bail!("--memory-swap {text:?} needs --memory");
    }
    if text == "-1" {
        return Ok(Some(Swap::Unlimited));
    }
    let n = crate::env::parse_size(text)
        .with_context(|| format!("--memory-swap {text:?} is not a size (1g) or -1"))?;
    if memory.is_some_and(|m| n < m) {
        bail!("--memory-swap {text:?} is less than --memory: it counts memory and swap together");
    }
    Ok(Some(Swap::Total(n)))
}

impl RunLimitArgs {
    /// The limits asked for.
    pub fn limits(&self) -> anyhow::Result<Limits> {
        let memory = self
            .memory
            .as_deref()
            .map(|m| memory(m, "--memory"))
            .transpose()?;
        Ok(Limits {
            memory,
            memory_swap: swap(self.memory_swap.as_deref(), memory)?,
            nano_cpus: self
                .cpus
                .as_deref()
                .map(|c| {
                    crate::config::parse_cpus(c)
                        .with_context(|| format!("--cpus {c:?} is not a positive number of CPUs"))
                })
                .transpose()?,
            pids: self
                .pids_limit
                .and_then(|n| u64::try_from(n).ok())
                .filter(|&n| n > 0),
        })
    }
}

impl BuildLimitArgs {
    /// The limits of every RUN step: these flags over `config`'s.
    pub fn limits(&self, config: Limits) -> anyhow::Result<Limits> {
        let mut limits = config;
        if let Some(m) = &self.memory {
            limits.memory = Some(memory(m, "--memory")?);
        }
        limits.memory_swap = swap(self.memory_swap.as_deref(), limits.memory)?;
        match (self.cpu_quota, self.cpu_period) {
            (Some(0), _) => bail!("--cpu-quota must be at least 1000 microseconds"),
            (Some(q), period) => {
                let period = period.unwrap_or(100_000);
                if !(1000..=1_000_000).contains(&period) {
                    bail!("--cpu-period {period} is not between 1000 and 1000000 microseconds");
                }
                limits.nano_cpus = Some(q.saturating_mul(1_000_000_000) / period);
            }
            (None, Some(_)) => bail!("--cpu-period needs --cpu-quota"),
            (None, None) => {}
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_flags_take_dockers_values() {
        let args = RunLimitArgs {
            memory: Some("512m".into()),
            memory_swap: Some("1g".into()),
            cpus: Some("1.5".into()),
            pids_limit: Some(100),
        };
        let l = args.limits().unwrap();
        assert_eq!(l.memory, Some(512 << 20));
        assert_eq!(l.memory_swap, Some(Swap::Total(1 << 30)));
        assert_eq!(l.nano_cpus, Some(1_500_000_000));
        assert_eq!(l.pids, Some(100));
        let bad = RunLimitArgs {
            memory: Some("lots".into()),
            ..RunLimitArgs::default()
        };
        assert!(
            bad.limits()
                .unwrap_err()
                .to_string()
                .contains("--memory \"lots\"")
        );
        let no_memory = RunLimitArgs {
            memory_swap: Some("1g".into()),
            ..RunLimitArgs::default()
        };
        assert!(no_memory.limits().is_err());
    }

    #[test]
    fn build_cpu_quota_is_a_share_of_the_period() {
        let args = BuildLimitArgs {
            cpu_quota: Some(50_000),
            ..BuildLimitArgs::default()
        };
        let l = args.limits(Limits::default()).unwrap();
        assert_eq!(l.nano_cpus, Some(500_000_000));
        assert_eq!(l.memory, None);
    }
}
