//! The server host's own: `uname(2)` of the machine, and its resolver
//! files (for `--net`).
//!
//! Must not change anything, nor read beneath the export root.

use super::executor::misrouted;
use crate::errno::Errno;
use crate::proto::{Reply, Request, Response, Utsname};

/// `uname(2)`; it cannot fail.
pub(super) fn uname() -> Response {
    let uts = rustix::system::uname();
    Ok(Reply::Uname(Utsname {
        sysname: uts.sysname().to_bytes().to_vec(),
        nodename: uts.nodename().to_bytes().to_vec(),
        release: uts.release().to_bytes().to_vec(),
        version: uts.version().to_bytes().to_vec(),
        machine: uts.machine().to_bytes().to_vec(),
        domainname: uts.domainname().to_bytes().to_vec(),
    }))
}

/// Runs one request about the server host itself (routed here by the
/// executor).
pub(super) fn execute(req: Request) -> Response {
    match req {
        Request::Uname => uname(),
        Request::ReadSystemFile { file } => system_file(file),
        other => misrouted(&other),
    }
}

/// The server host's own copy of a resolver file, read from its real `/etc`
/// (not beneath the export root): the name is from a fixed list, never a
/// path the client chose.
fn system_file(file: crate::proto::SystemFile) -> Response {
    use std::io::Read as _;
    let f = std::fs::File::open(file.path()).map_err(|e| Errno::from_io(&e))?;
    let mut data = Vec::new();
    f.take(u64::from(crate::proto::MAX_IO))
        .read_to_end(&mut data)
        .map_err(|e| Errno::from_io(&e))?;
    Ok(Reply::Data(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_nix_uname() {
        let Ok(Reply::Uname(uts)) = uname() else {
            panic!("uname failed");
        };
        let expected = nix::sys::utsname::uname().expect("uname");
        assert_eq!(uts.sysname, expected.sysname().as_encoded_bytes());
        assert_eq!(uts.nodename, expected.nodename().as_encoded_bytes());
        assert_eq!(uts.release, expected.release().as_encoded_bytes());
        assert_eq!(uts.version, expected.version().as_encoded_bytes());
        assert_eq!(uts.machine, expected.machine().as_encoded_bytes());
        assert_eq!(uts.domainname, expected.domainname().as_encoded_bytes());
    }
}
