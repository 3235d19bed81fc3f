//! Whose rights a forwarded call runs with: the caller's, as NFS's AUTH_SYS
//! does, within what the server itself may do.
//!
//! - A server that may change its thread credentials (root, or
//!   `CAP_SETUID` + `CAP_SETGID`; the embedded executor of an rscq run as
//!   root) runs each call with the caller's fsuid, fsgid, supplementary
//!   groups and umask, and keeps only the caller's effective capabilities
//!   among its own. The kernel then makes every permission check, picks new
//!   files' owner and applies the umask and setgid rules itself.
//! - A server run as an ordinary user acts as that user and never more; only
//!   the caller's umask is applied (it can only take rights away).
//! - `--squash-root` maps a caller whose uid is 0 to an unprivileged uid and
//!   gid with no capabilities, as NFS's `root_squash`.
//!
//! [`Policy::rights`] decides on plain values; [`Rights::enter`] applies the
//! decision to the calling thread until its guard drops. A client can only
//! lose rights: ids the server could not take fail the call with `EACCES`
//! rather than running it as the server.
//!
//! Must not widen rights: a client can only lose them.

use std::cell::Cell;

use rustix::process::Gid;
use rustix::thread::{CapabilitySet, CapabilitySets};

use crate::errno::Errno;
use crate::proto::Credentials;

/// Where a squashed root caller lands, as NFS's `anonuid`/`anongid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Squash {
    pub uid: u32,
    pub gid: u32,
}

impl Squash {
    /// `nobody`/`nogroup` on Debian, and NFS's default.
    pub const NOBODY: Self = Self {
        uid: 65534,
        gid: 65534,
    };
}

/// The server's own credentials, read once, to decide and to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Own {
    pub fsuid: u32,
    pub fsgid: u32,
    pub groups: Vec<u32>,
    pub caps: CapabilitySets,
}

impl Own {
    /// The calling thread's credentials.
    pub fn current() -> Self {
        let caps = rustix::thread::capabilities(None).unwrap_or(CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        });
        Self {
            fsuid: rustix::process::geteuid().as_raw(),
            fsgid: rustix::process::getegid().as_raw(),
            groups: rustix::process::getgroups()
                .map(|g| g.into_iter().map(Gid::as_raw).collect())
                .unwrap_or_default(),
            caps,
        }
    }

    /// Whether this server may take another user's ids.
    fn may_switch(&self) -> bool {
        self.caps
            .effective
            .contains(CapabilitySet::SETUID | CapabilitySet::SETGID)
    }
}

/// The rules a session's calls run under.
#[derive(Debug, Clone)]
pub struct Policy {
    own: Own,
    squash_root: Option<Squash>,
}

/// What one call runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rights {
    /// The ids to take, or `None` to keep the server's own.
    ids: Option<Ids>,
    umask: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ids {
    fsuid: u32,
    fsgid: u32,
    groups: Vec<u32>,
    /// The effective capability set: never more than the server's own.
    effective: CapabilitySet,
}

/// Which of the caller's ids a call checks with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checking {
    /// The file-system ids, as every call but `access(2)`.
    FsIds,
    /// The real ids, as `access(2)` without `AT_EACCESS`.
    RealIds,
}

impl Policy {
    pub fn new(own: Own, squash_root: Option<Squash>) -> Self {
        Self { own, squash_root }
    }

    /// The policy of a server run with the calling thread's credentials.
    pub fn of_this_process(squash_root: Option<Squash>) -> Self {
        Self::new(Own::current(), squash_root)
    }

    /// Whether calls take their caller's ids (and not only the umask).
    pub fn acts_as_caller(&self) -> bool {
        self.own.may_switch()
    }

    /// Decides what a call of `caller` runs with.
    pub fn rights(&self, caller: &Credentials, checking: Checking) -> Rights {
        let umask = caller.umask & 0o777;
        if !self.own.may_switch() {
            return Rights { ids: None, umask };
        }
        let (mut uid, mut gid, mut caps) = match checking {
            Checking::FsIds => (caller.fsuid, caller.fsgid, caller.cap_effective),
            // As the kernel's `access_override_creds`: a non-root real uid
            // checks with no capabilities, root with its permitted set.
            Checking::RealIds => (
                caller.ruid,
                caller.rgid,
                if caller.ruid == 0 {
                    caller.cap_permitted
                } else {
                    0
                },
            ),
        };
        let mut groups = caller.groups.clone();
        if let Some(squash) = self.squash_root
            && uid == 0
        {
            uid = squash.uid;
            caps = 0;
            if gid == 0 {
                gid = squash.gid;
            }
            for g in &mut groups {
                if *g == 0 {
                    *g = squash.gid;
                }
            }
        }
        let effective = CapabilitySet::from_bits_retain(caps) & self.own.caps.permitted;
        Rights {
            ids: Some(Ids {
                fsuid: uid,
                fsgid: gid,
                groups,
                effective,
            }),
            umask,
        }
    }
}

thread_local! {
    /// Whether this thread has its own umask (`unshare(CLONE_FS)`), so that
    /// setting it for one call leaves the other threads' calls alone.
    static OWN_FS: Cell<bool> = const { Cell::new(false) };
}

/// Holds a thread's borrowed credentials; dropping it gives the server's
/// back.
#[must_use]
pub struct Entered<'p> {
    policy: &'p Policy,
    umask: rustix::fs::Mode,
    switched: bool,
}

impl Rights {
    /// Takes these rights on the calling thread until the guard drops.
    pub fn enter<'p>(&self, policy: &'p Policy) -> Result<Entered<'p>, Errno> {
        if !OWN_FS.get() {
            crate::sys::server::unshare_thread_fs().map_err(|_| Errno::EACCES)?;
            OWN_FS.set(true);
        }
        let umask = rustix::process::umask(rustix::fs::Mode::from_raw_mode(self.umask));
        let mut entered = Entered {
            policy,
            umask,
            switched: false,
        };
        let Some(ids) = &self.ids else {
            return Ok(entered);
        };
        let own = &policy.own;
        if ids.fsuid == own.fsuid
            && ids.fsgid == own.fsgid
            && ids.groups == own.groups
            && ids.effective == own.caps.effective
        {
            return Ok(entered);
        }
        entered.switched = true;
        let groups: Vec<Gid> = ids.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        rustix::thread::set_thread_groups(&groups).map_err(|_| Errno::EACCES)?;
        if crate::sys::server::set_thread_fsgid(ids.fsgid) != ids.fsgid
            || crate::sys::server::set_thread_fsuid(ids.fsuid) != ids.fsuid
        {
            return Err(Errno::EACCES);
        }
        // Changing the fsuid from 0 already dropped the file capabilities;
        // this keeps only those the caller has, of the rest too.
        let sets = CapabilitySets {
            effective: ids.effective,
            ..own.caps
        };
        rustix::thread::set_capabilities(None, sets).map_err(|_| Errno::EACCES)?;
        Ok(entered)
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        rustix::process::umask(self.umask);
        if !self.switched {
            return;
        }
        let own = &self.policy.own;
        // Restoring cannot fail for a thread that could switch: every id and
        // capability given back is the server's own.
        crate::sys::server::set_thread_fsuid(own.fsuid);
        crate::sys::server::set_thread_fsgid(own.fsgid);
        let groups: Vec<Gid> = own.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        let _ = rustix::thread::set_thread_groups(&groups);
        let _ = rustix::thread::set_capabilities(None, own.caps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_server() -> Own {
        Own {
            fsuid: 0,
            fsgid: 0,
            groups: vec![0],
            caps: CapabilitySets {
                effective: CapabilitySet::all(),
                permitted: CapabilitySet::all(),
                inheritable: CapabilitySet::empty(),
            },
        }
    }

    fn user_server() -> Own {
        Own {
            fsuid: 1000,
            fsgid: 1000,
            groups: vec![1000],
            caps: CapabilitySets {
                effective: CapabilitySet::empty(),
                permitted: CapabilitySet::empty(),
                inheritable: CapabilitySet::empty(),
            },
        }
    }

    /// A root process that called `seteuid(65534)`: real ids stay 0, and
    /// the kernel cleared its effective capabilities.
    fn dropped_root() -> Credentials {
        Credentials {
            ruid: 0,
            rgid: 0,
            fsuid: 65534,
            fsgid: 0,
            groups: vec![0, 10],
            umask: 0o077,
            cap_effective: 0,
            cap_permitted: CapabilitySet::all().bits(),
        }
    }

    fn ids(r: &Rights) -> (u32, u32, Vec<u32>, u64) {
        let i = r.ids.as_ref().expect("ids taken");
        (i.fsuid, i.fsgid, i.groups.clone(), i.effective.bits())
    }

    #[test]
    fn a_root_server_takes_the_callers_fs_ids_groups_caps_and_umask() {
        let p = Policy::new(root_server(), None);
        assert!(p.acts_as_caller());
        let r = p.rights(&dropped_root(), Checking::FsIds);
        assert_eq!(ids(&r), (65534, 0, vec![0, 10], 0));
        assert_eq!(r.umask, 0o077);
    }

    #[test]
    fn access_checks_with_the_real_ids() {
        let p = Policy::new(root_server(), None);
        let r = p.rights(&dropped_root(), Checking::RealIds);
        // Real uid 0: the permitted set, as the kernel's access() gives root.
        assert_eq!(ids(&r), (0, 0, vec![0, 10], CapabilitySet::all().bits()));
        let user = Credentials {
            ruid: 1000,
            rgid: 1000,
            fsuid: 0,
            fsgid: 0,
            cap_effective: CapabilitySet::all().bits(),
            cap_permitted: CapabilitySet::all().bits(),
            ..dropped_root()
        };
        assert_eq!(ids(&p.rights(&user, Checking::RealIds)).3, 0);
    }

    #[test]
    fn a_caller_never_gets_capabilities_the_server_lacks() {
        let mut own = root_server();
        own.caps.permitted = CapabilitySet::CHOWN | CapabilitySet::SETUID | CapabilitySet::SETGID;
        own.caps.effective = own.caps.permitted;
        let p = Policy::new(own, None);
        let root = Credentials {
            fsuid: 0,
            cap_effective: CapabilitySet::all().bits(),
            ..dropped_root()
        };
        let got = ids(&p.rights(&root, Checking::FsIds)).3;
        assert_eq!(
            got,
            (CapabilitySet::CHOWN | CapabilitySet::SETUID | CapabilitySet::SETGID).bits()
        );
    }

    #[test]
    fn an_unprivileged_server_keeps_its_ids_and_applies_only_the_umask() {
        let p = Policy::new(user_server(), Some(Squash::NOBODY));
        assert!(!p.acts_as_caller());
        let root = Credentials {
            fsuid: 0,
            cap_effective: CapabilitySet::all().bits(),
            ..dropped_root()
        };
        let r = p.rights(&root, Checking::FsIds);
        assert_eq!(r.ids, None);
        assert_eq!(r.umask, 0o077);
    }

    #[test]
    fn squash_root_maps_uid_and_gid_zero_and_drops_capabilities() {
        let p = Policy::new(root_server(), Some(Squash { uid: 99, gid: 98 }));
        let root = Credentials {
            fsuid: 0,
            fsgid: 0,
            cap_effective: CapabilitySet::all().bits(),
            ..dropped_root()
        };
        assert_eq!(
            ids(&p.rights(&root, Checking::FsIds)),
            (99, 98, vec![98, 10], 0)
        );
        // Only uid 0 is squashed; a user keeps its ids.
        let user = Credentials {
            fsuid: 1000,
            fsgid: 1000,
            groups: vec![1000],
            ..dropped_root()
        };
        assert_eq!(
            ids(&p.rights(&user, Checking::FsIds)),
            (1000, 1000, vec![1000], 0)
        );
        // access() by a root real uid is squashed too.
        assert_eq!(ids(&p.rights(&dropped_root(), Checking::RealIds)).0, 99);
    }
}
