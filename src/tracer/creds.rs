//! The credentials a forwarded call carries: those of the thread that made
//! it, read from `/proc/TID/status` (proc(5)) while the thread is stopped in
//! its call, so they are exactly the ones its own syscall would have used.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use crate::proto::Credentials;

/// What a call runs with when its thread's credentials cannot be read: no
/// rights beyond those of `nobody`, never the server's.
const NOBODY: Credentials = Credentials {
    ruid: 65534,
    rgid: 65534,
    fsuid: 65534,
    fsgid: 65534,
    groups: Vec::new(),
    umask: 0o077,
    cap_effective: 0,
    cap_permitted: 0,
};

/// The credentials of thread `tid`: kept from an earlier call of the
/// thread when nothing could have changed them since, else read now.
pub fn of_thread(tid: i32) -> Credentials {
    let mut known = lock_known();
    if let Some(creds) = known.creds.get(&tid) {
        return creds.clone();
    }
    let Some(creds) = known.read_status(tid).and_then(|s| parse_status(&s)) else {
        return NOBODY;
    };
    known.keep(tid, creds.clone());
    creds
}

/// Thread `tid` is new or gone: a thread that gets its number later must not
/// find its credentials.
pub fn forget_thread(tid: i32) {
    let mut known = lock_known();
    known.creds.remove(&tid);
    known.status_files.remove(&tid);
}

/// A call that can change credentials or the umask returned (`setuid(2)`
/// and its kin, `capset`, `umask`, `unshare`, `setns`), or a program was
/// exec'd (set-user-ID bits, file capabilities): nothing kept is trusted
/// any more. A `umask` changes every thread that shares the caller's file
/// system information, and glibc's `setuid` changes every thread of the
/// process, so all are forgotten, not only the caller's.
///
/// This runs at the call's exit stop, after the kernel made the change;
/// a read under way in another thread holds [`KNOWN`] until it has kept
/// its result, which this then drops: no credentials read before the
/// change outlive it.
pub fn forget_all() {
    lock_known().creds.clear();
}

/// How many threads' credentials and status files are kept between calls.
const KEPT_THREADS: usize = 1024;

/// What is known of the traced threads' credentials.
#[derive(Default)]
struct Known {
    /// Each thread's credentials as last read. Valid until the thread ends
    /// or a call that can change them returns (the tracer traps those:
    /// `crate::syscall::nr`'s `Creds` family).
    creds: HashMap<i32, Credentials>,
    /// The threads' `/proc/TID/status` files, kept open: opening the file
    /// each time cost as much as reading it.
    status_files: HashMap<i32, File>,
}

static KNOWN: LazyLock<Mutex<Known>> = LazyLock::new(Mutex::default);

fn lock_known() -> MutexGuard<'static, Known> {
    KNOWN.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Known {
    fn keep(&mut self, tid: i32, creds: Credentials) {
        if self.creds.len() >= KEPT_THREADS {
            self.creds.clear();
        }
        self.creds.insert(tid, creds);
    }

    /// The text of `/proc/TID/status`, read from its start through a kept
    /// file. A thread that ended leaves a file whose reads fail (its task
    /// is gone, even if the number was given to a new thread since): that
    /// one is opened again.
    fn read_status(&mut self, tid: i32) -> Option<Vec<u8>> {
        if let Some(file) = self.status_files.get(&tid)
            && let Some(status) = read_from_start(file)
        {
            return Some(status);
        }
        self.status_files.remove(&tid);
        let file = File::open(format!("/proc/{tid}/status")).ok()?;
        let status = read_from_start(&file)?;
        if self.status_files.len() >= KEPT_THREADS {
            self.status_files.clear();
        }
        self.status_files.insert(tid, file);
        Some(status)
    }
}

/// The whole of a proc file, read from offset 0 (a proc file is made anew
/// by each read that starts at 0).
fn read_from_start(file: &File) -> Option<Vec<u8>> {
    let mut buf = vec![0; 4096];
    loop {
        let n = file.read_at(&mut buf, 0).ok()?;
        if n < buf.len() {
            buf.truncate(n);
            return (n > 0).then_some(buf);
        }
        buf.resize(buf.len() * 2, 0);
    }
}

/// The credentials in the text of a `/proc/TID/status` file.
pub fn parse_status(status: &[u8]) -> Option<Credentials> {
    let text = std::str::from_utf8(status).ok()?;
    // One pass: the fields this needs, by name.
    let mut fields: [Option<&str>; 6] = [None; 6];
    const NAMES: [&str; 6] = ["Uid", "Gid", "Groups", "Umask", "CapEff", "CapPrm"];
    for line in text.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let Some(i) = NAMES.iter().position(|n| *n == name)
            && fields[i].is_none()
        {
            fields[i] = Some(value.trim());
        }
    }
    let field = |name: &str| {
        let i = NAMES.iter().position(|n| *n == name)?;
        fields[i]
    };
    let ids = |name: &str| -> Option<[u32; 4]> {
        let values: Vec<u32> = field(name)?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        values.try_into().ok()
    };
    let hex = |name: &str| u64::from_str_radix(field(name)?, 16).ok();
    // Real, effective, saved set, file system.
    let [ruid, _, _, fsuid] = ids("Uid")?;
    let [rgid, _, _, fsgid] = ids("Gid")?;
    let groups = field("Groups")?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    Some(Credentials {
        ruid,
        rgid,
        fsuid,
        fsgid,
        groups,
        umask: u32::from_str_radix(field("Umask")?, 8).ok()?,
        cap_effective: hex("CapEff")?,
        cap_permitted: hex("CapPrm")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tpython3\nUmask:\t0027\nState:\tt (tracing stop)\n\
        Tgid:\t42\nPid:\t42\nUid:\t0\t65534\t0\t65534\nGid:\t0\t0\t0\t100\n\
        FDSize:\t64\nGroups:\t0 4 27 \nCapInh:\t0000000000000000\n\
        CapPrm:\t000001ffffffffff\nCapEff:\t0000000000000000\n";

    #[test]
    fn status_gives_real_and_fs_ids_groups_umask_and_caps() {
        let c = parse_status(STATUS.as_bytes()).expect("parses");
        assert_eq!(
            c,
            Credentials {
                ruid: 0,
                rgid: 0,
                fsuid: 65534,
                fsgid: 100,
                groups: vec![0, 4, 27],
                umask: 0o027,
                cap_effective: 0,
                cap_permitted: 0x1ff_ffff_ffff,
            }
        );
    }

    #[test]
    fn no_groups_and_missing_fields() {
        let none = STATUS.replace("Groups:\t0 4 27 ", "Groups:\t");
        assert_eq!(
            parse_status(none.as_bytes()).expect("parses").groups,
            Vec::<u32>::new()
        );
        let no_umask = STATUS.replace("Umask:\t0027\n", "");
        assert_eq!(parse_status(no_umask.as_bytes()), None);
        let short = STATUS.replace("Uid:\t0\t65534\t0\t65534", "Uid:\t0\t1");
        assert_eq!(parse_status(short.as_bytes()), None);
    }

    #[test]
    fn this_thread_reads_as_itself() {
        let tid = rustix::thread::gettid().as_raw_nonzero().get();
        let c = of_thread(tid);
        assert_eq!(c.ruid, rustix::process::getuid().as_raw());
        assert_eq!(c.fsuid, rustix::process::geteuid().as_raw());
        assert_ne!(c, NOBODY);
    }
}
