//! Creating the two TUN devices and configuring them inside their namespaces.
//!
//! The devices are created in the delay line's own namespace and then moved with
//! `ip link set DEV netns NS`: a TUN file descriptor stays attached to its device across
//! the move, so no thread ever has to enter another namespace. Configuration uses
//! iproute2 (`ip -n NS ...`) rather than netlink code of our own.

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::Command;

use crate::sys::{TunError, open_tun};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Tun(#[from] TunError),
    #[error("running `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("network namespace {0:?} does not exist (create it with `ip netns add`)")]
    NoNamespace(String),
}

/// One end of the emulated link.
#[derive(Debug, Clone)]
pub struct EndSpec {
    pub netns: String,
    pub addr: Ipv4Addr,
}

#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// Name of the device inside each namespace.
    pub name: String,
    pub prefix_len: u8,
    pub mtu: u32,
}

fn ip(args: &[&str]) -> Result<(), SetupError> {
    let cmd = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| SetupError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SetupError::Command {
            cmd,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Creates the device for `end`, moves it into `end.netns`, and brings it up with its
/// address. Dropping the returned file removes the device.
pub fn create_end(end: &EndSpec, dev: &DeviceSpec, temp_name: &str) -> Result<File, SetupError> {
    // `ip netns add` creates this file; checking first gives a clearer error than ip's.
    if !std::path::Path::new("/run/netns").join(&end.netns).exists() {
        return Err(SetupError::NoNamespace(end.netns.clone()));
    }
    let tun = open_tun(temp_name)?;
    let ns = end.netns.as_str();
    ip(&["link", "set", temp_name, "netns", ns])?;
    ip(&["-n", ns, "link", "set", temp_name, "name", &dev.name])?;
    // IPv6 would start router solicitations and MLD reports on our link; they are noise
    // in measurements. Best effort: a kernel without IPv6 simply has no such knob.
    let _ = Command::new("ip")
        .args(["netns", "exec", ns, "sysctl", "-qw"])
        .arg(format!("net.ipv6.conf.{}.disable_ipv6=1", dev.name))
        .output();
    // The default TUN ring of 500 packets overflows while our reader thread waits for a
    // CPU, and such drops are not part of the emulated link: the link's own queue limit
    // (in `sched`) is the one that should decide.
    ip(&[
        "-n",
        ns,
        "link",
        "set",
        &dev.name,
        "mtu",
        &dev.mtu.to_string(),
        "txqueuelen",
        "10000",
    ])?;
    let cidr = format!("{}/{}", end.addr, dev.prefix_len);
    ip(&["-n", ns, "addr", "add", &cidr, "dev", &dev.name])?;
    ip(&["-n", ns, "link", "set", &dev.name, "up"])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    Ok(tun)
}
