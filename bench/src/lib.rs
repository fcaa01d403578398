//! Benchmark inputs for rbuild: deterministic generated Dockerfiles (and, later, build
//! scenarios run side by side with other builders).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt::Write as _;

/// A deterministic Dockerfile of at least `lines` lines mixing every instruction kind:
/// multi-stage FROMs, RUN with flags and continuations, heredocs, COPY/ADD with flags
/// and JSON forms, ENV/LABEL/ARG word lists, HEALTHCHECK, ONBUILD, comments.
pub fn generate_dockerfile(lines: usize) -> String {
    let mut out = String::with_capacity(lines * 40);
    out.push_str("# syntax=docker/dockerfile:1\n# check=skip=all\n");
    let mut n = 2;
    let mut i = 0usize;
    while n < lines {
        let block = match i % 12 {
            0 => format!("FROM --platform=$BUILDPLATFORM alpine:3.{i} AS stage{i}\n"),
            1 => format!(
                "RUN --mount=type=cache,target=/var/cache/apk,id=apk{i} \\\n    --network=default \\\n    apk add --no-cache \\\n        curl git make gcc musl-dev \\\n    && echo done{i}\n"
            ),
            2 => format!(
                "COPY --from=stage{i} --chown=1000:1000 --chmod=0755 --link [\"/src/a {i}\", \"/dst/\"]\n"
            ),
            3 => format!("ENV APP_{i}=value{i} PATH=\"/opt/{i}/bin:$PATH\" EMPTY=''\n"),
            4 => format!("RUN <<EOF{i}\nset -eux\necho line one {i}\necho line two {i}\nEOF{i}\n"),
            5 => format!(
                "LABEL org.example.build=\"{i}\" org.example.desc=\"a \\\"quoted\\\" value\"\n"
            ),
            6 => format!("# a comment about step {i}\nARG VERSION_{i}=1.{i}.0 OTHER_{i}\n"),
            7 => format!(
                "COPY <<-CONF{i} /etc/app{i}.conf\n\tkey = {i}\n\tother = value\n\tCONF{i}\n"
            ),
            8 => format!(
                "ADD --checksum=sha256:{i:064x} --keep-git-dir --exclude=*.md https://example.com/{i}.tar.gz /opt/\n"
            ),
            9 => format!(
                "HEALTHCHECK --interval=30s --timeout=3s CMD [\"curl\", \"-f\", \"http://localhost:{i}/\"]\n"
            ),
            10 => format!("ONBUILD RUN echo onbuild {i}\nWORKDIR /app/{i}\nUSER app{i}\n"),
            _ => format!(
                "EXPOSE 80{i} 443/tcp\nENTRYPOINT [\"/bin/app{i}\", \"--serve\"]\nCMD run {i}\n"
            ),
        };
        n += block.matches('\n').count();
        out.push_str(&block);
        i += 1;
    }
    let _ = writeln!(out, "# end of {n} lines");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_dockerfile_parses() {
        let text = super::generate_dockerfile(5_000);
        assert!(text.lines().count() >= 5_000);
        let parsed = rbuild_compiler::parser::parse(&text).expect("generated Dockerfile parses");
        assert!(parsed.instructions.len() > 2_000);
        assert!(parsed.instructions.iter().any(|n| !n.heredocs.is_empty()));
    }
}
