//! `rbuild exec` into a container whose files try to point it at the host: the user database
//! it resolves `-u NAME` with is read inside the container's root, whatever its links say.

use crate::support::{BASE, BuildEnv, as_root_and_rootless, finish_cmd, ok};

as_root_and_rootless!(exec_resolves_users_inside_the_container_whatever_its_links_say);

fn exec_resolves_users_inside_the_container_whatever_its_links_say(rootless: bool) {
    let env = if rootless {
        BuildEnv::rootless()
    } else {
        BuildEnv::new()
    };
    // A user database on the host, at a path the container's /etc/passwd links to.
    let host_db = env.dir.mkdir("hostdb");
    std::fs::write(
        host_db.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nhostonly:x:4242:4242::/:/bin/sh\n",
    )
    .expect("write the host's passwd");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&host_db, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let link = host_db.join("passwd");
    let script = format!(
        "ln -sf {} /etc/passwd && echo linked && exec sleep 1000",
        link.display()
    );
    ok(env
        .rbuild()
        .args(["run", "-d", "--name", "liar", BASE, "sh", "-c", &script]));
    let start = std::time::Instant::now();
    while !ok(env.rbuild().args(["logs", "liar"]))
        .stdout
        .contains("linked")
    {
        assert!(start.elapsed().as_secs() < 60, "the container never linked");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let run = finish_cmd(
        env.rbuild()
            .args(["exec", "-u", "hostonly", "liar", "id", "-u"]),
    );
    assert_ne!(run.stdout, "4242\n", "the host's user database was read");
    assert_eq!(run.code, 125, "{run:?}");
    assert!(
        run.stderr.contains("cannot resolve user \"hostonly\""),
        "{}",
        run.stderr
    );
    // The container's own users still resolve (none: the link goes nowhere inside, root is
    // the numeric default).
    assert_eq!(
        ok(env.rbuild().args(["exec", "liar", "id", "-u"])).stdout,
        "0\n"
    );
    ok(env.rbuild().args(["rm", "-f", "liar"]));
}
