//! The credentials a forwarded call carries: those of the thread that made
//! it, read from `/proc/TID/status` (proc(5)) while the thread is stopped in
//! its call, so they are exactly the ones its own syscall would have used.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

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

/// The credentials of thread `tid`.
pub fn of_thread(tid: i32) -> Credentials {
    read_status(tid)
        .and_then(|status| parse_status(&status))
        .unwrap_or(NOBODY)
}

/// How many threads' status files stay open between calls.
const KEPT_STATUS_FILES: usize = 1024;

/// The threads' `/proc/TID/status` files, kept open: every forwarded call
/// reads its thread's, and opening it each time cost as much as reading it.
static STATUS_FILES: std::sync::Mutex<Option<HashMap<i32, File>>> = std::sync::Mutex::new(None);

/// The text of `/proc/TID/status`, read from its start through a kept file.
/// A thread that ended leaves a file whose reads fail (its task is gone,
/// even if the number was given to a new thread since): that one is opened
/// again.
fn read_status(tid: i32) -> Option<Vec<u8>> {
    let mut files = STATUS_FILES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let files = files.get_or_insert_with(HashMap::new);
    if let Some(file) = files.get(&tid)
        && let Some(status) = read_from_start(file)
    {
        return Some(status);
    }
    files.remove(&tid);
    let file = File::open(format!("/proc/{tid}/status")).ok()?;
    let status = read_from_start(&file)?;
    if files.len() >= KEPT_STATUS_FILES {
        files.clear();
    }
    files.insert(tid, file);
    Some(status)
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
