//! `rbuild port NAME`: a container's published ports; and `-p`/`-P` of `rbuild run`
//! resolved into the forwards of its network stack.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use rbuild_cache::containers::Containers;
use rbuild_executor::sandbox::PortForward;

use super::container::ContainerConfig;
use crate::cli::GlobalArgs;

/// `rbuild port NAME`
#[derive(Debug, Args)]
pub struct PortArgs {
    /// The container (name or id prefix).
    pub container: String,
}

pub fn run(global: &GlobalArgs, args: PortArgs) -> anyhow::Result<ExitCode> {
    let store = super::open_store(global)?;
    let containers = Containers::open(store.root())?;
    let r = containers.find(&args.container)?;
    if r.config.is_null() {
        return Ok(ExitCode::SUCCESS);
    }
    let cfg = ContainerConfig::of(&r)?;
    for p in &cfg.ports {
        let ip = p.host_ip.map_or("0.0.0.0".to_owned(), |ip| ip.to_string());
        let proto = if p.udp { "udp" } else { "tcp" };
        crate::outln!("{}/{proto} -> {ip}:{}", p.container_port, p.host_port);
    }
    Ok(ExitCode::SUCCESS)
}

/// One `-p` value: `[IP:][HOSTPORT:]CTRPORT[/tcp|udp]` (an empty or missing host port: a
/// free one is chosen).
pub fn parse(spec: &str) -> anyhow::Result<PortForward> {
    let (addr, proto) = match spec.rsplit_once('/') {
        Some((a, p)) => (a, p),
        None => (spec, "tcp"),
    };
    let udp = match proto {
        "tcp" => false,
        "udp" => true,
        _ => bail!("invalid port {spec:?}: the protocol {proto:?} is not tcp or udp"),
    };
    let port = |text: &str, what: &str| -> anyhow::Result<u16> {
        text.parse::<u16>()
            .ok()
            .filter(|p| *p != 0 || what == "host")
            .with_context(|| format!("invalid port {spec:?}: {what} port {text:?} is not a port"))
    };
    // An IPv6 address is written in brackets: `[::1]:8080:80`.
    let (ip, rest) = match addr.strip_prefix('[') {
        Some(v6) => {
            let (ip, rest) = v6
                .split_once("]:")
                .with_context(|| format!("invalid port {spec:?}: no `]:` after the address"))?;
            (Some(ip), rest)
        }
        None => {
            let parts: Vec<&str> = addr.split(':').collect();
            match parts.len() {
                1 | 2 => (None, addr),
                3 => (Some(parts[0]), &addr[parts[0].len() + 1..]),
                _ => bail!("invalid port {spec:?}: not [IP:][HOSTPORT:]CTRPORT[/PROTO]"),
            }
        }
    };
    let host_ip = match ip {
        None | Some("") => None,
        Some(ip) => Some(
            ip.parse::<IpAddr>()
                .with_context(|| format!("invalid port {spec:?}: {ip:?} is not an IP address"))?,
        ),
    };
    let (host_port, container_port) = match rest.split_once(':') {
        Some(("", c)) => (0, port(c, "container")?),
        Some((h, c)) => (port(h, "host")?, port(c, "container")?),
        None => (0, port(rest, "container")?),
    };
    Ok(PortForward {
        udp,
        host_ip,
        host_port,
        container_port,
    })
}

/// The forwards of `-p` (and, with `all`, of every exposed port, `80/tcp` as the image
/// config writes them): a host port that is taken fails with docker's message; a free
/// one is chosen where none is given.
pub fn resolve(
    publish: &[String],
    all: bool,
    exposed: &[String],
) -> anyhow::Result<Vec<PortForward>> {
    let mut ports = publish
        .iter()
        .map(|p| parse(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if all {
        for e in exposed {
            let p = parse(e).with_context(|| format!("the image exposes {e:?}"))?;
            if !ports
                .iter()
                .any(|q| q.container_port == p.container_port && q.udp == p.udp)
            {
                ports.push(p);
            }
        }
    }
    for p in &mut ports {
        let ip = p.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let at = SocketAddr::new(ip, p.host_port);
        let bound = if p.udp {
            UdpSocket::bind(at).and_then(|s| s.local_addr())
        } else {
            TcpListener::bind(at).and_then(|s| s.local_addr())
        };
        match bound {
            Ok(addr) => p.host_port = addr.port(),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                bail!(
                    "Bind for {ip}:{} failed: port is already allocated",
                    p.host_port
                )
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot listen on {at}"));
            }
        }
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_specs_parse() {
        let p = parse("8080:80").unwrap();
        assert_eq!((p.host_port, p.container_port, p.udp), (8080, 80, false));
        let p = parse("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert!(p.udp);
        let p = parse("80").unwrap();
        assert_eq!((p.host_port, p.container_port), (0, 80));
        let p = parse("[::1]:9000:90").unwrap();
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        for bad in ["x:80", "80/sctp", "1:2:3:4", "70000", "8080:0"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_taken_port_is_refused_with_dockers_message() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = resolve(&[format!("127.0.0.1:{port}:80")], false, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("Bind for 127.0.0.1:{port} failed: port is already allocated")
        );
        let free = resolve(&["80".into()], true, &["80/tcp".into(), "53/udp".into()]).unwrap();
        assert_eq!(free.len(), 2);
        assert!(free.iter().all(|p| p.host_port != 0));
    }
}
