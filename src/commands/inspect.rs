//! `rbuild inspect NAME...`: a container's record, settings and state, or an image's
//! descriptor, manifest and config, as JSON (containers first, as docker looks them up).

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};

use crate::cli::GlobalArgs;

/// `rbuild inspect NAME...`
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The containers or images (names or ids).
    #[arg(required = true)]
    pub names: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: InspectArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let containers = rbuild_cache::containers::Containers::open(store.root())?;
    let mut out = Vec::new();
    for arg in &args.names {
        if let Ok(r) = containers.find(arg) {
            out.push(container(&containers, &r));
            continue;
        }
        let (name, descriptor) = super::find_image(&store, arg)?;
        let (manifest_desc, manifest) = store.image_manifest(&descriptor)?;
        let manifest_digest = rbuild_cache::descriptor_digest(&manifest_desc)?;
        let config_digest = rbuild_cache::descriptor_digest(manifest.config())?;
        let manifest: Value = serde_json::from_slice(&store.read_blob(&manifest_digest)?)
            .with_context(|| format!("manifest {manifest_digest} of {arg} is not JSON"))?;
        let config: Value = serde_json::from_slice(&store.read_blob(&config_digest)?)
            .with_context(|| format!("config {config_digest} of {arg} is not JSON"))?;
        out.push(json!({
            "name": name,
            "id": descriptor.digest().to_string(),
            "descriptor": descriptor,
            "manifestDescriptor": manifest_desc,
            "manifest": manifest,
            "config": config,
        }));
    }
    crate::outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

/// A container as docker's inspect shows it (its main keys).
fn container(
    containers: &rbuild_cache::containers::Containers,
    r: &rbuild_cache::containers::Record,
) -> Value {
    use super::container::{ContainerConfig, Status, status};
    let time = |t: Option<i64>| {
        t.and_then(|s| jiff::Timestamp::from_second(s).ok())
            .map(|t| t.to_string())
            .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
    };
    let st = status(containers, r);
    let cfg = ContainerConfig::of(r).ok();
    let ports: serde_json::Map<String, Value> = cfg
        .iter()
        .flat_map(|c| c.ports.iter())
        .map(|p| {
            (
                format!("{}/{}", p.container_port, if p.udp { "udp" } else { "tcp" }),
                json!([{
                    "HostIp": p.host_ip.map_or("0.0.0.0".into(), |ip| ip.to_string()),
                    "HostPort": p.host_port.to_string(),
                }]),
            )
        })
        .collect();
    let mut state = json!({
        "Status": st.word(),
        "Running": st == Status::Running,
        "Dead": st == Status::Dead,
        "Pid": if st == Status::Running { r.init_pid.unwrap_or(0) } else { 0 },
        "ExitCode": r.exit_code.unwrap_or(0),
        "StartedAt": time(r.started),
        "FinishedAt": time(r.finished),
    });
    if let Some(h) = &r.health {
        state["Health"] = h.clone();
    }
    json!({
        "Id": r.id,
        "Name": format!("/{}", r.name),
        "Created": time(Some(r.created)),
        "Path": r.command.first(),
        "Args": r.command.get(1..).unwrap_or_default(),
        "State": state,
        "Image": r.image_digest,
        "LogPath": containers.path(&r.id).join(rbuild_cache::containers::LOG),
        "Config": {
            "Image": r.image,
            "Cmd": r.command,
            "Env": cfg.as_ref().map(|c| c.env.clone()),
            "WorkingDir": cfg.as_ref().map(|c| c.workdir.clone()),
            "User": cfg.as_ref().map(|c| c.user.clone()),
            "Tty": cfg.as_ref().is_some_and(|c| c.tty),
            "StopSignal": cfg.as_ref().map(|c| c.stop_signal.clone()),
            "Healthcheck": cfg.as_ref().and_then(|c| c.healthcheck.as_ref()).map(|h| json!({
                "Test": h.test, "Interval": h.interval, "Timeout": h.timeout,
                "StartPeriod": h.start_period, "StartInterval": h.start_interval, "Retries": h.retries,
            })),
        },
        "NetworkSettings": { "Ports": ports },
        "SupervisorPid": if r.detached && st == Status::Running { r.pid } else { 0 },
    })
}
