//! What the Debian package and the systemd unit ship (`dist/`,
//! `[package.metadata.deb]`): the packaged configuration passes `config
//! check` with the real binary, the unit keeps its hardening and agrees
//! with the configuration and the package, and `systemd-analyze security`
//! scores it (where systemd-analyze is installed). Building and
//! installing the package is `dist/debian/test-install.sh`, a step of its
//! own in `.ci/run` (it needs root, debootstrap and a mirror); building
//! and running the container image is `dist/container/test-image.sh`,
//! the step after it (root, podman, debootstrap, a mirror).
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::sealpost::run_cli;

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The values of `key=` in the unit, in order.
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_packaged_configuration_passes_config_check() {
    // The package's conffile and the container image's configuration.
    for file in ["dist/sealpost.toml", "dist/container/sealpost.toml"] {
        let (code, out, err) = run_cli(&repo(file), &["config", "check"]);
        assert_eq!(code, Some(0), "{file}: stdout:\n{out}\nstderr:\n{err}");
        let config = sealpost::config::Config::load(&repo(file)).expect("valid");
        assert_eq!(
            config.server.data_dir,
            Path::new("/var/lib/sealpost"),
            "{file}: the unit's ReadWritePaths, the image's volume"
        );
        assert!(
            config.admin.socket.starts_with("/var/lib/sealpost"),
            "{file}: the admin socket must be where sealpost may write"
        );
        assert_eq!(config.limits.min_free_disk, 1 << 30, "{file}");
        assert!(
            config.admin.metrics_listen.is_some(),
            "{file}: health checks need the metrics listener"
        );
    }
}

#[test]
fn the_container_image_runs_unprivileged_with_a_volume_and_a_healthcheck() {
    // dist/container/test-image.sh builds and runs the image (as root, in
    // .ci/run); this checks the Dockerfile as text wherever the tests run,
    // and that it agrees with the files and the configuration it uses.
    let dockerfile = read("Dockerfile");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        stages,
        ["FROM ${RUST_IMAGE} AS build", "FROM ${RUNTIME_IMAGE}"],
        "build and runtime stages, their bases given by build arguments"
    );
    // The defaults are the official images: Debian slim at run time.
    for default in [
        "ARG RUST_IMAGE=docker.io/library/rust:1-bookworm\n",
        "ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim\n",
    ] {
        assert!(dockerfile.contains(default), "{default}");
    }
    let (build, runtime) = dockerfile.split_once(stages[1]).expect("runtime stage");
    // The binary leaves target/ in the build stage, so target/ can be a
    // cache mount or a volume (the test script mounts one).
    assert!(build.contains("cp target/release/sealpost /usr/local/bin/sealpost"));
    assert!(runtime.contains("COPY --from=build /usr/local/bin/sealpost /usr/bin/sealpost\n"));
    assert!(runtime.contains("\nUSER sealpost:sealpost\n"));
    assert!(runtime.contains("VOLUME [\"/var/lib/sealpost\"]"));
    assert!(runtime.contains("HEALTHCHECK ") && runtime.contains("/healthz/ready"));
    let config =
        sealpost::config::Config::load(&repo("dist/container/sealpost.toml")).expect("valid");
    let metrics = config.admin.metrics_listen.expect("metrics listener");
    assert!(runtime.contains(&format!("/dev/tcp/127.0.0.1/{}", metrics.port())));
    let smtp = config.listeners[0].address.port();
    assert!(runtime.contains(&format!("EXPOSE {smtp} {}\n", metrics.port())));
    for copied in dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY dist/"))
    {
        let source = copied.split_whitespace().next().expect("source");
        assert!(repo(&format!("dist/{source}")).is_file(), "{source}");
    }
    // What the build context leaves out: build output and history.
    let ignored = read(".dockerignore");
    for path in ["target/", ".git"] {
        assert!(
            ignored.lines().any(|l| l == path),
            "{path} not in .dockerignore"
        );
    }
}

#[test]
fn the_unit_is_hardened() {
    let unit = read("dist/systemd/sealpost.service");
    for (key, want) in [
        ("Type", "notify"),
        ("User", "sealpost"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        (
            "ExecStart",
            "/usr/bin/sealpost --config /etc/sealpost/sealpost.toml serve",
        ),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/sealpost"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("PrivateTmp", "yes"),
        ("WatchdogSec", "30s"),
        ("KillMode", "mixed"),
    ] {
        assert_eq!(unit_values(&unit, key), [want], "{key}= in the unit");
    }
    // The stop's bounds fit in the unit's stop timeout.
    let stop = sealpost::server::SMTP_DRAIN.max(sealpost::server::DELIVERY_GRACE)
        + sealpost::inbound::CLOSE_MARGIN;
    let timeout: u64 = unit_values(&unit, "TimeoutStopSec")[0]
        .trim_end_matches('s')
        .parse()
        .expect("seconds");
    assert!(stop.as_secs() * 2 < timeout, "{stop:?} vs {timeout} s");

    let Ok(out) = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(repo("dist/systemd/sealpost.service"))
        .output()
    else {
        eprintln!("systemd-analyze is not installed: the exposure score is not checked");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("sealpost.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(score <= 2.0, "exposure {score} (docs/service.md says 1.5)");
}

#[test]
fn the_package_metadata_names_files_that_exist() {
    let manifest: toml::Table = read("Cargo.toml").parse().expect("Cargo.toml");
    let deb = &manifest["package"]["metadata"]["deb"];
    let conf_files: Vec<&str> = deb["conf-files"]
        .as_array()
        .expect("conf-files")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(conf_files, ["/etc/sealpost/sealpost.toml"]);
    let mut destinations = Vec::new();
    for asset in deb["assets"].as_array().expect("assets") {
        let source = asset[0].as_str().expect("source");
        let destination = asset[1].as_str().expect("destination");
        if source != "target/release/sealpost" {
            assert!(repo(source).is_file(), "asset {source} is missing");
        }
        destinations.push(if destination.ends_with('/') {
            format!(
                "/{destination}{}",
                source.rsplit('/').next().unwrap_or(source)
            )
        } else {
            format!("/{destination}")
        });
    }
    for conf in &conf_files {
        assert!(destinations.iter().any(|d| d == conf), "{conf} is no asset");
    }
    assert!(destinations.iter().any(|d| d == "/usr/bin/sealpost"));

    let scripts = deb["maintainer-scripts"].as_str().expect("scripts dir");
    for script in ["preinst", "postinst", "postrm"] {
        let path = repo(scripts).join(script);
        let text = std::fs::read_to_string(&path).expect("maintainer script");
        assert!(text.starts_with("#!/bin/sh\n"), "{script}");
        assert!(text.contains("set -e\n"), "{script}");
        assert!(
            text.contains("#DEBHELPER#"),
            "{script}: the unit's snippets go there"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{script} is executable");
        if let Ok(out) = Command::new("sh").arg("-n").arg(&path).output() {
            assert!(out.status.success(), "{script}: {out:?}");
        }
    }
    let units = &deb["systemd-units"];
    let unit = repo(units["unit-scripts"].as_str().expect("unit dir")).join(format!(
        "{}.service",
        units["unit-name"].as_str().expect("name")
    ));
    assert!(unit.is_file(), "{}", unit.display());
}
