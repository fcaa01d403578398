//! What a build step and an `rbuild run` container reach on the network: by default a
//! network namespace of their own with outbound access only. Servers the test starts on the
//! host's loopback and on the host's own address are not reachable; a server in a separate
//! network namespace that plays the internet (a veth pair the test makes) is. The host's
//! network needs `--allow network.host`; `--add-host` entries are seen during a step and not
//! kept in the image; the cgroup namespace hides where the host placed the build. Each check
//! runs as root and as an unprivileged user. A host whose resolver is on its loopback (as
//! systemd-resolved's 127.0.0.53) is made in a network and mount namespace of the test's: a
//! step's DNS queries reach that resolver through pasta's forwarder.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Child, Command};

use crate::support::{BASE, BuildEnv, finish_cmd, ok};

/// A TCP server on `addr` answering every request with `HTTP 200` and `body`.
fn http_server(addr: &str, body: &'static str) -> u16 {
    let l = TcpListener::bind((addr, 0)).expect("bind the test server");
    let port = l.local_addr().expect("local addr").port();
    std::thread::spawn(move || {
        for mut c in l.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = write!(
                c,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// The host's own address on the interface of its default route.
fn host_address() -> String {
    let out = ok(Command::new("ip").args(["-4", "-o", "route", "get", "192.0.2.250"])).stdout;
    let mut words = out.split_whitespace();
    words
        .find(|w| *w == "src")
        .and_then(|_| words.next())
        .unwrap_or_else(|| panic!("no source address in {out:?}"))
        .to_owned()
}

/// A network namespace behind a veth pair whose busybox httpd plays a server on the internet.
struct Internet {
    ns: String,
    host_if: String,
    addr: String,
    server: Child,
    _docroot: crate::support::Dir,
}

impl Internet {
    fn new() -> Internet {
        // One per test of this process, each with its own names and subnet.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = (std::process::id() % 10_000) * 10 + k;
        let n = (id % 250) as u8 + 1;
        let ns = format!("rbinet{id}");
        let host_if = format!("rbh{id}");
        let addr = format!("10.213.{n}.2");
        let _ = finish_cmd(Command::new("ip").args(["netns", "del", &ns]));
        let _ = finish_cmd(Command::new("ip").args(["link", "del", &host_if]));
        ok(Command::new("ip").args(["netns", "add", &ns]));
        ok(Command::new("ip").args([
            "link", "add", &host_if, "type", "veth", "peer", "name", "inet0", "netns", &ns,
        ]));
        ok(Command::new("ip").args(["addr", "add", &format!("10.213.{n}.1/30"), "dev", &host_if]));
        ok(Command::new("ip").args(["link", "set", &host_if, "up"]));
        let in_ns = |args: &[&str]| {
            ok(Command::new("ip").args(["netns", "exec", &ns]).args(args));
        };
        in_ns(&["ip", "addr", "add", &format!("{addr}/30"), "dev", "inet0"]);
        in_ns(&["ip", "link", "set", "inet0", "up"]);
        in_ns(&["ip", "link", "set", "lo", "up"]);
        let docroot = crate::support::Dir::new();
        std::fs::write(docroot.path().join("hello"), "from the internet\n").expect("write");
        let server = Command::new("ip")
            .args(["netns", "exec", &ns, "busybox", "httpd", "-f", "-p"])
            .arg(format!("{addr}:8080"))
            .arg("-h")
            .arg(docroot.path())
            .spawn()
            .expect("start busybox httpd");
        let i = Internet {
            ns,
            host_if,
            addr,
            server,
            _docroot: docroot,
        };
        // Wait until it answers from the host.
        for _ in 0..50 {
            if std::net::TcpStream::connect((i.addr.as_str(), 8080)).is_ok() {
                return i;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the internet's server did not start");
    }
}

impl Drop for Internet {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
    }
}

/// The probe a step and a container run: what it reached, and the interfaces it sees.
fn probe(inet: &Internet, lo_port: u16, own: &str, own_port: u16) -> String {
    format!(
        "wget -q -O - http://{}:8080/hello; \
         wget -q -O - http://127.0.0.1:{lo_port}/ 2>/dev/null; \
         wget -q -O - http://{own}:{own_port}/ 2>/dev/null; \
         echo; ls /sys/class/net | tr '\\n' ' '; echo; cat /proc/net/dev",
        inet.addr
    )
}

fn network_is_the_steps_own(env: &BuildEnv) {
    let inet = Internet::new();
    let lo_port = http_server("127.0.0.1", "host-loopback-reached\n");
    let own = host_address();
    let own_port = http_server(&own, "host-address-reached\n");
    let script = probe(&inet, lo_port, &own, own_port);
    let check = |seen: &str| {
        assert!(seen.contains("from the internet"), "{seen}");
        assert!(!seen.contains("host-loopback-reached"), "{seen}");
        assert!(!seen.contains("host-address-reached"), "{seen}");
        assert!(!seen.contains(&inet.host_if), "{seen}");
    };
    env.dockerfile(&format!("FROM {BASE}\nRUN ({script}) > /seen 2>&1\n"));
    env.build(&["-t", "probe"]);
    check(
        &ok(env
            .rbuild()
            .args(["run", "--rm", "--network", "none", "probe", "cat", "/seen"]))
        .stdout,
    );
    check(
        &ok(env
            .rbuild()
            .args(["run", "--rm", BASE, "sh", "-c", &script]))
        .stdout,
    );

    // The host's network only with the entitlement, and then the loopback is reached.
    let refused = env.build_fails(&["--network", "host", "--no-cache"]);
    assert!(
        refused.stderr.contains("--allow network.host"),
        "{}",
        refused.stderr
    );
    let r = finish_cmd(
        env.rbuild()
            .args(["run", "--rm", "--network", "host", BASE, "true"]),
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("--allow network.host"), "{}", r.stderr);
    env.build(&[
        "--network",
        "host",
        "--allow",
        "network.host",
        "--no-cache",
        "-t",
        "hostnet",
    ]);
    let seen = env.sh("hostnet", "cat /seen");
    assert!(seen.contains("host-loopback-reached"), "{seen}");
    let seen = ok(env.rbuild().args([
        "run",
        "--rm",
        "--network",
        "host",
        "--allow",
        "network.host",
        BASE,
        "sh",
        "-c",
        &script,
    ]))
    .stdout;
    assert!(seen.contains("host-loopback-reached"), "{seen}");

    // `RUN --network=host` names its line.
    env.dockerfile(&format!("FROM {BASE}\nRUN --network=host true\n"));
    let refused = env.build_fails(&[]);
    assert!(
        refused.stderr.contains("RUN --network=host at line 2")
            && refused.stderr.contains("--allow network.host"),
        "{}",
        refused.stderr
    );
    let mistyped = finish_cmd(&mut env.build_cmd(&["--allow", "network.hots"]));
    assert!(
        mistyped.stderr.contains("did you mean network.host?"),
        "{mistyped:?}"
    );
}

#[test]
fn a_step_and_a_container_reach_the_internet_but_not_the_host() {
    network_is_the_steps_own(&BuildEnv::new());
}

#[test]
fn a_rootless_step_and_container_reach_the_internet_but_not_the_host() {
    network_is_the_steps_own(&BuildEnv::rootless());
}

/// `--add-host` entries are in `/etc/hosts` while the step runs, and not in its layer.
fn added_hosts_stay_out_of_the_image(env: &BuildEnv) {
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN grep db.test /etc/hosts > /seen\n"
    ));
    let out = env.ctx.join("out");
    ok(&mut env.build_cmd(&[
        "--add-host",
        "db.test:10.1.2.3",
        "-o",
        &format!("type=local,dest={}", out.display()),
    ]));
    let seen = std::fs::read_to_string(out.join("seen")).expect("read /seen");
    assert_eq!(seen, "10.1.2.3\tdb.test\n");
    let hosts = std::fs::read_to_string(out.join("etc/hosts")).unwrap_or_default();
    assert!(!hosts.contains("db.test"), "{hosts}");
    let r = ok(env.rbuild().args([
        "run",
        "--rm",
        "--add-host",
        "db.test:10.1.2.3",
        BASE,
        "grep",
        "db.test",
        "/etc/hosts",
    ]));
    assert_eq!(r.stdout, "10.1.2.3\tdb.test\n");
    let gw = finish_cmd(&mut env.build_cmd(&["--add-host", "h:host-gateway"]));
    assert!(
        gw.stderr.contains("host-gateway is not available"),
        "{gw:?}"
    );
}

#[test]
fn added_hosts_are_seen_by_the_step_and_not_kept() {
    added_hosts_stay_out_of_the_image(&BuildEnv::new());
}

#[test]
fn rootless_added_hosts_are_seen_by_the_step_and_not_kept() {
    added_hosts_stay_out_of_the_image(&BuildEnv::rootless());
}

/// A step and a container have a cgroup namespace of their own: `/proc/self/cgroup` names no
/// host cgroup (the host's `memory:/process_api/...` or `0::/user.slice/...` show as `/`).
fn cgroups_are_namespaced(env: &BuildEnv) {
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN cut -d: -f3 /proc/self/cgroup | sort -u > /cg\n"
    ));
    env.build(&["-t", "cg"]);
    assert_eq!(env.sh("cg", "cat /cg"), "/\n");
    assert_eq!(
        env.sh(BASE, "cut -d: -f3 /proc/self/cgroup | sort -u"),
        "/\n"
    );
}

#[test]
fn a_step_sees_no_host_cgroup_path() {
    cgroups_are_namespaced(&BuildEnv::new());
}

#[test]
fn a_rootless_step_sees_no_host_cgroup_path() {
    cgroups_are_namespaced(&BuildEnv::rootless());
}

/// The processes (`PID cmdline`) in the network namespace `ns` (`net:[INODE]`) or holding
/// it open: the stack that connects it, its holder, anything still running in it.
fn processes_holding(ns: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let is_ns = |link: std::path::PathBuf| {
        std::fs::read_link(link).is_ok_and(|t| t.as_os_str() == std::ffi::OsStr::new(ns))
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter(|e| {
            let dir = e.path();
            is_ns(dir.join("ns/net"))
                || std::fs::read_dir(dir.join("fd"))
                    .map(|fds| fds.filter_map(Result::ok).any(|fd| is_ns(fd.path())))
                    .unwrap_or(false)
        })
        .map(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            format!("{} {cmdline}", e.file_name().to_string_lossy())
        })
        .collect()
}

/// The `rbuild` process started as `child` (directly, or through runuser for a rootless
/// environment): `child` or its first descendant running the rbuild binary.
fn rbuild_process(child: &Child) -> u32 {
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_rbuild")).expect("the rbuild binary");
    let parent_of = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat[stat.rfind(')')? + 1..]
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    for _ in 0..100 {
        let found = std::fs::read_dir("/proc")
            .expect("read /proc")
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .find(|&pid| {
                let mut p = pid;
                while p != child.id() {
                    match parent_of(p) {
                        Some(pp) if pp > 1 => p = pp,
                        _ => return false,
                    }
                }
                std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == exe)
            });
        if let Some(pid) = found {
            return pid;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("no rbuild process under pid {}", child.id());
}

/// A build killed with SIGKILL while a RUN step runs leaves nothing in, or holding, the
/// step's network namespace: the stack and its holder end with the rbuild process.
fn killed_build_leaves_no_network_stack(env: &BuildEnv) {
    use std::io::BufRead as _;
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN readlink /proc/self/ns/net; sleep 120\n"
    ));
    let mut child = env
        .build_cmd(&["--no-cache"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start rbuild");
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(at) = line.find("net:[") {
                let _ = tx.send(line[at..].trim().to_owned());
            }
        }
    });
    let ns = rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the step prints its network namespace");
    assert!(!processes_holding(&ns).is_empty(), "{ns} is in use");
    let pid = rbuild_process(&child);
    ok(Command::new("kill").args(["-KILL", &pid.to_string()]));
    let _ = child.wait();
    assert_released(&ns, "after rbuild was killed");
}

/// Waits up to 10 s for no process to be in, or hold, the network namespace `ns` (a killed
/// pasta frees its memory before its descriptors).
fn assert_released(ns: &str, when: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = processes_holding(ns);
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "10 s {when}, {ns} is still held by {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_killed_build_leaves_no_network_stack() {
    killed_build_leaves_no_network_stack(&BuildEnv::new());
}

#[test]
fn a_killed_rootless_build_leaves_no_network_stack() {
    killed_build_leaves_no_network_stack(&BuildEnv::rootless());
}

/// The RUN steps of a build share one network namespace, and a `--network=none` step has its
/// own; the namespace's stack ends with the build, whether it succeeds or fails.
fn steps_share_the_builds_network(env: &BuildEnv) {
    env.dockerfile(&format!(
        "FROM {BASE} AS one\nRUN readlink /proc/self/ns/net > /ns\n\
         FROM {BASE} AS two\nRUN readlink /proc/self/ns/net > /ns\n\
         FROM one\nCOPY --from=two /ns /ns2\nRUN readlink /proc/self/ns/net > /ns3\n\
         RUN --network=none readlink /proc/self/ns/net > /none\n"
    ));
    env.build(&["-t", "shared"]);
    let seen = env.sh("shared", "cat /ns /ns2 /ns3 /none");
    let ns: Vec<&str> = seen.lines().collect();
    assert_eq!(ns.len(), 4, "{seen}");
    assert!(ns[0].starts_with("net:["), "{seen}");
    assert!(
        ns[0] == ns[1] && ns[1] == ns[2],
        "one namespace per build: {seen}"
    );
    assert_ne!(ns[3], ns[0], "--network=none has its own: {seen}");
    assert_released(ns[0], "after the build");

    env.dockerfile(&format!(
        "FROM {BASE}\nRUN readlink /proc/self/ns/net; exit 3\n"
    ));
    let failed = env.build_fails(&[]);
    let at = failed.stderr.find("net:[").expect("the step's namespace");
    let ns = failed.stderr[at..]
        .split_whitespace()
        .next()
        .unwrap_or_default();
    assert_released(ns, "after the failed build");
}

#[test]
fn a_builds_steps_share_one_network_namespace() {
    steps_share_the_builds_network(&BuildEnv::new());
}

#[test]
fn a_rootless_builds_steps_share_one_network_namespace() {
    steps_share_the_builds_network(&BuildEnv::rootless());
}

/// The name the test's resolver answers, and its address.
const DNS_NAME: &str = "forwarded.rbuild-test.example";
const DNS_ADDR: [u8; 4] = [10, 77, 66, 55];

/// A DNS answer to `query`: `DNS_ADDR` for an A question about `DNS_NAME`, no records (but no
/// error) for its other types, NXDOMAIN for other names.
fn dns_answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: labels, then type and class.
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question = &query[12..at + 4];
    let known = labels.join(".") == DNS_NAME;
    let answer = known && qtype == 1;
    let mut out = Vec::new();
    out.extend_from_slice(&query[..2]);
    // QR, RD copied, RA; NXDOMAIN for unknown names.
    out.push(0x80 | (query[2] & 0x01));
    out.push(if known { 0x80 } else { 0x83 });
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&u16::from(answer).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    if answer {
        // A pointer to the question's name, A, IN, a TTL of 60, four bytes of address.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend_from_slice(&DNS_ADDR);
    }
    Some(out)
}

/// A network namespace standing in for a host whose resolver is on its loopback: `lo` up with
/// a resolver on 127.0.0.53:53 (a thread of the test, moved into the namespace), an
/// interface with an address and a default route for pasta to take as the way out, and
/// `/etc/netns/NAME/resolv.conf` naming 127.0.0.53, which `ip netns exec` binds over
/// `/etc/resolv.conf` in the mount namespace it makes for the command.
struct LoopbackResolverHost {
    ns: String,
    queries: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl LoopbackResolverHost {
    fn new() -> LoopbackResolverHost {
        let ns = format!("rbdns{}", std::process::id());
        let _ = finish_cmd(Command::new("ip").args(["netns", "del", &ns]));
        let queries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Made first, so a failed set-up is cleaned up too.
        let host = LoopbackResolverHost {
            ns: ns.clone(),
            queries: queries.clone(),
        };
        ok(Command::new("ip").args(["netns", "add", &ns]));
        let in_ns = |args: &[&str]| {
            ok(Command::new("ip").args(["netns", "exec", &ns]).args(args));
        };
        in_ns(&["ip", "link", "set", "lo", "up"]);
        // A veth pair with both ends inside (this kernel has no dummy interfaces).
        in_ns(&[
            "ip", "link", "add", "out0", "type", "veth", "peer", "name", "out1",
        ]);
        in_ns(&["ip", "addr", "add", "10.214.0.2/24", "dev", "out0"]);
        in_ns(&["ip", "link", "set", "out0", "up"]);
        in_ns(&["ip", "link", "set", "out1", "up"]);
        in_ns(&["ip", "route", "add", "default", "via", "10.214.0.1"]);
        let etc = std::path::Path::new("/etc/netns").join(&ns);
        std::fs::create_dir_all(&etc).expect("mkdir /etc/netns/NAME");
        std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.53\n")
            .expect("write the namespace's resolv.conf");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let path = format!("/run/netns/{ns}");
        let counted = queries.clone();
        std::thread::spawn(move || {
            // setns affects this thread only.
            let fd = std::fs::File::open(&path).expect("open the namespace");
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&fd),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("enter the namespace");
            let sock = std::net::UdpSocket::bind("127.0.0.53:53").expect("bind 127.0.0.53:53");
            ready_tx.send(()).expect("report ready");
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if let Some(reply) = dns_answer(&buf[..n]) {
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        ready_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the resolver started");
        host
    }

    /// `cmd` run in the namespace (and a mount namespace with its resolv.conf).
    fn exec(&self, cmd: &Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(cmd.get_program());
        c.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.stdin(std::process::Stdio::null());
        c
    }
}

impl Drop for LoopbackResolverHost {
    fn drop(&mut self) {
        // The resolver's thread keeps the namespace alive until the process ends; its name
        // and resolv.conf go now.
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(std::path::Path::new("/etc/netns").join(&self.ns));
        let _ = std::fs::remove_dir("/etc/netns");
    }
}

#[test]
fn dns_reaches_a_resolver_on_the_hosts_loopback_through_the_forwarder() {
    let env = BuildEnv::new();
    let host = LoopbackResolverHost::new();
    env.dockerfile(&format!(
        "FROM {BASE}\nRUN cat /etc/resolv.conf; nslookup {DNS_NAME}\n"
    ));
    let run = ok(&mut host.exec(&env.build_cmd(&["--no-cache"])));
    let address = DNS_ADDR.map(|b| b.to_string()).join(".");
    assert!(
        run.stderr.contains("nameserver 169.254.1.1"),
        "the step's resolv.conf names the forwarder: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("Address: {address}")),
        "the step resolved {DNS_NAME} through the host's loopback resolver: {}",
        run.stderr
    );
    assert!(
        host.queries.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "the resolver on 127.0.0.53 was asked"
    );
}
