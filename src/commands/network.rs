//! The network flags `build` and `run` share: `--allow` (buildx's entitlements), the refusal
//! of the host's network without `network.host`, and `--add-host`.

use anyhow::{Context, bail};
use rbuild_engine::Entitlements;

/// The entitlement names `--allow` accepts.
const ENTITLEMENTS: [&str; 2] = ["network.host", "security.insecure"];

/// Parses the `--allow` values (each may hold several, comma-separated).
pub fn entitlements(values: &[String]) -> anyhow::Result<Entitlements> {
    let mut e = Entitlements::default();
    for name in values.iter().flat_map(|v| v.split(',')).map(str::trim) {
        match name {
            "network.host" => e.network_host = true,
            "security.insecure" => e.security_insecure = true,
            _ => {
                let mut msg = format!(
                    "unknown entitlement {name:?} in --allow (known: {})",
                    ENTITLEMENTS.join(", ")
                );
                if let Some(best) =
                    rbuild_compiler::suggest::closest(name, ENTITLEMENTS.iter().copied())
                {
                    msg.push_str(&format!("; did you mean {best}?"));
                }
                bail!(msg);
            }
        }
    }
    Ok(e)
}

/// Refuses `--network host` without `--allow network.host`.
pub fn check_host_network(host: bool, allow: &Entitlements) -> anyhow::Result<()> {
    if host && !allow.network_host {
        bail!(
            "--network host needs the network.host entitlement: pass --allow network.host to \
             give the host's network (its loopback and every service on it) to the sandbox"
        );
    }
    Ok(())
}

/// Parses `--add-host HOST:IP` (docker's syntax; `HOST=IP` too). The address `host-gateway`
/// names the host as seen from the sandbox, which the sandbox's network does not offer: the
/// host is deliberately unreachable from it.
pub fn add_host(value: &str) -> anyhow::Result<(String, String)> {
    let (host, addr) = value
        .split_once('=')
        .or_else(|| value.split_once(':'))
        .with_context(|| format!("invalid --add-host {value:?}: expected HOST:IP"))?;
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '#') {
        bail!("invalid --add-host {value:?}: {host:?} is not a host name");
    }
    if addr == "host-gateway" {
        bail!(
            "--add-host {value}: host-gateway is not available: a sandbox's own network \
             namespace has no address that reaches the host (use --network host with \
             --allow network.host to reach the host's services)"
        );
    }
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    addr.parse::<std::net::IpAddr>()
        .with_context(|| format!("invalid --add-host {value:?}: {addr:?} is not an IP address"))?;
    Ok((host.to_owned(), addr.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entitlements_are_parsed_and_typos_get_a_suggestion() {
        let e = entitlements(&["network.host".into()]).unwrap();
        assert!(e.network_host && !e.security_insecure);
        let e = entitlements(&["network.host,security.insecure".into()]).unwrap();
        assert!(e.network_host && e.security_insecure);
        let err = entitlements(&["network.hots".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean network.host?"), "{err}");
    }

    #[test]
    fn add_host_takes_docker_syntax() {
        assert_eq!(
            add_host("db.test:10.1.2.3").unwrap(),
            ("db.test".into(), "10.1.2.3".into())
        );
        assert_eq!(add_host("v6:[::1]").unwrap(), ("v6".into(), "::1".into()));
        assert_eq!(
            add_host("v6:fd00::1").unwrap(),
            ("v6".into(), "fd00::1".into())
        );
        assert!(add_host("x:not-an-ip").is_err());
        let err = add_host("gw:host-gateway").unwrap_err().to_string();
        assert!(err.contains("host-gateway is not available"), "{err}");
    }
}
