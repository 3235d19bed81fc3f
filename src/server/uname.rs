//! `uname(2)` of the server's machine.
//!
//! Must not change anything.

use crate::proto::{Reply, Response, Utsname};

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
