//! Control messages (`struct cmsghdr` sequences, cmsg(3)) as the kernel
//! lays them out on x86_64, and the per-datagram IP header fields rscq
//! carries in them ([`IpFields`]): which fields a program's `sendmsg` sets
//! and whether Linux would accept its control buffer, which fields a
//! received message reports, and the messages that set fields on a send.
//!
//! Pure: bytes in, values out. Must not send or receive: the planner (a
//! `--pure` `sendmsg`), the client's relays and the server's UDP sockets do.

use crate::errno::Errno;
use crate::proto::IpFields;

/// `sizeof(struct cmsghdr)` on x86_64: the data follows at this offset.
pub const HEADER: usize = 16;

/// `IP_PROTOCOL` (`linux/in.h`), which the libc crate does not define.
const IP_PROTOCOL: i32 = 52;

/// One control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cmsg<'a> {
    pub level: i32,
    pub kind: i32,
    pub data: &'a [u8],
}

/// `CMSG_ALIGN`.
fn align(len: usize) -> Option<usize> {
    Some(len.checked_add(7)? & !7)
}

/// The messages of `control` in order, as the kernel walks them
/// (`for_each_cmsghdr`): fewer bytes than a header left end the walk; a
/// header whose length is shorter than a header or runs past the buffer
/// (`!CMSG_OK`) is an `Err`, after which the walk ends.
pub fn walk(control: &[u8]) -> impl Iterator<Item = Result<Cmsg<'_>, Errno>> {
    let mut at = Some(0usize);
    std::iter::from_fn(move || {
        let rest = control.get(at?..)?;
        if rest.len() < HEADER {
            return None;
        }
        let len = u64::from_ne_bytes(rest[0..8].try_into().ok()?);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len < HEADER || len > rest.len() {
            at = None;
            return Some(Err(Errno::EINVAL));
        }
        let message = Cmsg {
            level: i32::from_ne_bytes(rest[8..12].try_into().ok()?),
            kind: i32::from_ne_bytes(rest[12..16].try_into().ok()?),
            data: &rest[HEADER..len],
        };
        at = at.zip(align(len)).and_then(|(a, l)| a.checked_add(l));
        Some(Ok(message))
    })
}

/// One control message carrying `data`, padded as `CMSG_SPACE`.
pub fn encode(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
    let len = HEADER + data.len();
    let mut m = u64::try_from(len).unwrap_or(0).to_ne_bytes().to_vec();
    m.extend_from_slice(&level.to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(data);
    m.resize(align(len).unwrap_or(len), 0);
    m
}

/// Which rules a datagram's control messages follow: an IPv4 socket's send,
/// and an IPv6 socket's to an IPv4-mapped address, leave through IPv4
/// (`ip_cmsg_send`: `IP_TTL`, `IP_TOS`); any other IPv6 send through
/// IPv6 (`ip6_datagram_send_ctl`: `IPV6_HOPLIMIT`, `IPV6_TCLASS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    V4,
    V6,
}

impl Path {
    /// The path of a datagram from a socket of this family (`v6`) to a
    /// destination that is (or is not) an IPv4-mapped address.
    pub fn of(v6: bool, mapped_destination: bool) -> Self {
        if v6 && !mapped_destination {
            Self::V6
        } else {
            Self::V4
        }
    }
}

fn int_of(data: &[u8]) -> Option<i32> {
    Some(i32::from_ne_bytes(data.try_into().ok()?))
}

/// The fields a program's `sendmsg` control buffer sets on its datagram,
/// or EINVAL where Linux refuses the buffer: a header `CMSG_OK` rejects, a
/// message of the path's IP level with a wrong length or value, or a type
/// that level does not know. Other levels' messages are not judged (those
/// of `SOL_SOCKET` depend on the sender's privileges and kernel) and carry
/// nothing; nor do the IP level's other known types (`IP_PKTINFO` and the
/// like), which rscq does not carry.
pub fn send_fields(path: Path, control: &[u8]) -> Result<IpFields, Errno> {
    let mut fields = IpFields::default();
    for message in walk(control) {
        let m = message?;
        match path {
            Path::V4 if m.level == libc::SOL_IP => v4_field(m, &mut fields)?,
            Path::V6 if m.level == libc::SOL_IPV6 => v6_field(m, &mut fields)?,
            _ => {}
        }
    }
    Ok(fields)
}

/// One `SOL_IP` message of a send, as `ip_cmsg_send` judges it.
fn v4_field(m: Cmsg<'_>, fields: &mut IpFields) -> Result<(), Errno> {
    let int = int_of(m.data);
    match m.kind {
        libc::IP_TTL => {
            let ttl = int.ok_or(Errno::EINVAL)?;
            fields.ttl = Some(
                u8::try_from(ttl)
                    .ok()
                    .filter(|&t| t >= 1)
                    .ok_or(Errno::EINVAL)?,
            );
        }
        libc::IP_TOS => {
            let tos = match m.data {
                [byte] => i32::from(*byte),
                _ => int.ok_or(Errno::EINVAL)?,
            };
            fields.tos = Some(u8::try_from(tos).map_err(|_| Errno::EINVAL)?);
        }
        libc::IP_PKTINFO if m.data.len() != size_of::<libc::in_pktinfo>() => {
            return Err(Errno::EINVAL);
        }
        IP_PROTOCOL if !int.is_some_and(|p| (1..=255).contains(&p)) => {
            return Err(Errno::EINVAL);
        }
        libc::IP_PKTINFO | libc::IP_RETOPTS | IP_PROTOCOL => {}
        _ => return Err(Errno::EINVAL),
    }
    Ok(())
}

/// One `SOL_IPV6` message of a send, as `ip6_datagram_send_ctl` judges it:
/// a hop limit or traffic class of -1 is the socket's own.
fn v6_field(m: Cmsg<'_>, fields: &mut IpFields) -> Result<(), Errno> {
    let int = || {
        int_of(m.data)
            .filter(|v| (-1..=255).contains(v))
            .ok_or(Errno::EINVAL)
    };
    match m.kind {
        libc::IPV6_HOPLIMIT | libc::IPV6_2292HOPLIMIT => {
            fields.ttl = u8::try_from(int()?).ok();
        }
        libc::IPV6_TCLASS => fields.tos = u8::try_from(int()?).ok(),
        libc::IPV6_PKTINFO
        | libc::IPV6_2292PKTINFO
        | libc::IPV6_FLOWINFO
        | libc::IPV6_2292HOPOPTS
        | libc::IPV6_HOPOPTS
        | libc::IPV6_2292DSTOPTS
        | libc::IPV6_DSTOPTS
        | libc::IPV6_RTHDRDSTOPTS
        | libc::IPV6_2292RTHDR
        | libc::IPV6_RTHDR
        | libc::IPV6_DONTFRAG => {}
        _ => return Err(Errno::EINVAL),
    }
    Ok(())
}

/// The fields a received message's control messages report: `IP_TTL` and
/// `IP_TOS` (`IP_RECVTTL`, `IP_RECVTOS`), `IPV6_HOPLIMIT` and
/// `IPV6_TCLASS` (their `IPV6_RECV*` options). A message cut short ends
/// the reading; values out of range are no value.
pub fn received_fields(control: &[u8]) -> IpFields {
    let mut fields = IpFields::default();
    for m in walk(control).map_while(Result::ok) {
        let value = match m.data {
            [byte] => Some(*byte),
            data => int_of(data).and_then(|v| u8::try_from(v).ok()),
        };
        match (m.level, m.kind) {
            (libc::SOL_IP, libc::IP_TTL) | (libc::SOL_IPV6, libc::IPV6_HOPLIMIT) => {
                fields.ttl = value;
            }
            (libc::SOL_IP, libc::IP_TOS) | (libc::SOL_IPV6, libc::IPV6_TCLASS) => {
                fields.tos = value;
            }
            _ => {}
        }
    }
    fields
}

/// The control messages that set `fields` on a datagram leaving by `path`
/// (empty when it sets none).
pub fn encode_fields(path: Path, fields: IpFields) -> Vec<u8> {
    let (level, ttl, tos) = match path {
        Path::V4 => (libc::SOL_IP, libc::IP_TTL, libc::IP_TOS),
        Path::V6 => (libc::SOL_IPV6, libc::IPV6_HOPLIMIT, libc::IPV6_TCLASS),
    };
    let mut control = Vec::new();
    for (kind, value) in [(ttl, fields.ttl), (tos, fields.tos)] {
        if let Some(v) = value {
            control.extend(encode(level, kind, &i32::from(v).to_ne_bytes()));
        }
    }
    control
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(level: i32, kind: i32, v: i32) -> Vec<u8> {
        encode(level, kind, &v.to_ne_bytes())
    }

    fn fields(ttl: Option<u8>, tos: Option<u8>) -> IpFields {
        IpFields { ttl, tos }
    }

    #[test]
    fn messages_are_padded_and_walked_in_order() {
        let mut control = encode(libc::SOL_IP, libc::IP_TOS, &[7]);
        assert_eq!(control.len(), 24, "CMSG_SPACE(1)");
        assert_eq!(control[0..8], 17u64.to_ne_bytes(), "CMSG_LEN(1)");
        control.extend(int(libc::SOL_IPV6, libc::IPV6_HOPLIMIT, 9));
        let all: Vec<Cmsg<'_>> = walk(&control).map(Result::unwrap).collect();
        assert_eq!(
            all,
            vec![
                Cmsg {
                    level: libc::SOL_IP,
                    kind: libc::IP_TOS,
                    data: &[7]
                },
                Cmsg {
                    level: libc::SOL_IPV6,
                    kind: libc::IPV6_HOPLIMIT,
                    data: &9i32.to_ne_bytes()
                },
            ]
        );
        // Fewer bytes than a header after the last message: no message.
        control.extend([0; 15]);
        assert_eq!(walk(&control).count(), 2);
        assert_eq!(walk(&[]).count(), 0);
    }

    #[test]
    fn a_bad_length_is_one_error_and_ends_the_walk() {
        let good = int(libc::SOL_IP, libc::IP_TTL, 5);
        for bad_len in [0u64, 15, 49, u64::MAX] {
            let mut control = good.clone();
            control[0..8].copy_from_slice(&bad_len.to_ne_bytes());
            control.extend(&good);
            let all: Vec<_> = walk(&control).collect();
            assert_eq!(all, vec![Err(Errno::EINVAL)], "cmsg_len {bad_len}");
        }
    }

    #[test]
    fn an_ipv4_send_sets_ttl_and_tos_as_linux_checks_them() {
        let mut control = int(libc::SOL_IP, libc::IP_TTL, 9);
        control.extend(encode(libc::SOL_IP, libc::IP_TOS, &[0x10]));
        assert_eq!(
            send_fields(Path::V4, &control),
            Ok(fields(Some(9), Some(0x10)))
        );
        let tos_int = int(libc::SOL_IP, libc::IP_TOS, 0xb8);
        assert_eq!(
            send_fields(Path::V4, &tos_int),
            Ok(fields(None, Some(0xb8)))
        );
        for bad in [
            int(libc::SOL_IP, libc::IP_TTL, 0),
            int(libc::SOL_IP, libc::IP_TTL, 256),
            encode(libc::SOL_IP, libc::IP_TTL, &[5]),
            int(libc::SOL_IP, libc::IP_TOS, 256),
            int(libc::SOL_IP, libc::IP_TOS, -1),
            encode(libc::SOL_IP, libc::IP_TOS, &[1, 2]),
            encode(libc::SOL_IP, libc::IP_PKTINFO, &[0; 4]),
            int(libc::SOL_IP, IP_PROTOCOL, 0),
            int(libc::SOL_IP, libc::IP_RECVERR, 1),
        ] {
            assert_eq!(send_fields(Path::V4, &bad), Err(Errno::EINVAL), "{bad:?}");
        }
        // Known types rscq does not carry, and other levels, set nothing.
        let mut others = encode(libc::SOL_IP, libc::IP_PKTINFO, &[0; 12]);
        others.extend(int(libc::SOL_IP, IP_PROTOCOL, 17));
        others.extend(int(libc::SOL_IPV6, libc::IPV6_HOPLIMIT, 3));
        others.extend(int(libc::SOL_SOCKET, libc::SO_PRIORITY, 3));
        others.extend(int(libc::SOL_UDP, 12345, 3));
        assert_eq!(send_fields(Path::V4, &others), Ok(IpFields::default()));
        assert_eq!(send_fields(Path::V4, &[]), Ok(IpFields::default()));
    }

    #[test]
    fn an_ipv6_send_sets_hop_limit_and_traffic_class() {
        let mut control = int(libc::SOL_IPV6, libc::IPV6_TCLASS, 0x40);
        control.extend(int(libc::SOL_IPV6, libc::IPV6_HOPLIMIT, 3));
        assert_eq!(
            send_fields(Path::V6, &control),
            Ok(fields(Some(3), Some(0x40)))
        );
        // -1: the socket's own value; 0 is a hop limit.
        let mut defaults = int(libc::SOL_IPV6, libc::IPV6_TCLASS, -1);
        defaults.extend(int(libc::SOL_IPV6, libc::IPV6_HOPLIMIT, -1));
        assert_eq!(send_fields(Path::V6, &defaults), Ok(IpFields::default()));
        let zero = int(libc::SOL_IPV6, libc::IPV6_HOPLIMIT, 0);
        assert_eq!(send_fields(Path::V6, &zero), Ok(fields(Some(0), None)));
        // CPython's testOddCmsgSize: an int and one byte more.
        let mut odd = 0x40i32.to_ne_bytes().to_vec();
        odd.push(0);
        for bad in [
            encode(libc::SOL_IPV6, libc::IPV6_TCLASS, &odd),
            int(libc::SOL_IPV6, libc::IPV6_TCLASS, 256),
            int(libc::SOL_IPV6, libc::IPV6_HOPLIMIT, -2),
            int(libc::SOL_IPV6, libc::IPV6_RECVERR, 1),
        ] {
            assert_eq!(send_fields(Path::V6, &bad), Err(Errno::EINVAL), "{bad:?}");
        }
        // IPv4 messages on the IPv6 path are another level's.
        let v4 = int(libc::SOL_IP, libc::IP_TTL, 0);
        assert_eq!(send_fields(Path::V6, &v4), Ok(IpFields::default()));
    }

    #[test]
    fn received_fields_are_read_whatever_their_width() {
        let mut control = int(libc::SOL_SOCKET, libc::SO_TIMESTAMP, 0);
        control.extend(encode(libc::SOL_IP, libc::IP_TOS, &[0x28]));
        control.extend(int(libc::SOL_IP, libc::IP_TTL, 5));
        assert_eq!(received_fields(&control), fields(Some(5), Some(0x28)));
        let mut v6 = int(libc::SOL_IPV6, libc::IPV6_HOPLIMIT, 255);
        v6.extend(int(libc::SOL_IPV6, libc::IPV6_TCLASS, 0));
        assert_eq!(received_fields(&v6), fields(Some(255), Some(0)));
        // Cut short by the kernel (its length says so), or running past
        // the buffer: what came before the cut.
        let mut cut = int(libc::SOL_IP, libc::IP_TTL, 5);
        let mut short = int(libc::SOL_IP, libc::IP_TOS, 3);
        short.truncate(18);
        short[0..8].copy_from_slice(&18u64.to_ne_bytes());
        cut.extend(&short);
        assert_eq!(received_fields(&cut), fields(Some(5), None));
        let mut past = int(libc::SOL_IP, libc::IP_TTL, 5);
        past.extend(&int(libc::SOL_IP, libc::IP_TOS, 3)[..19]);
        assert_eq!(received_fields(&past), fields(Some(5), None));
        assert_eq!(
            received_fields(&int(libc::SOL_IP, libc::IP_TTL, 300)),
            IpFields::default()
        );
    }

    #[test]
    fn encoded_fields_read_back() {
        for path in [Path::V4, Path::V6] {
            let f = fields(Some(7), Some(0x20));
            let control = encode_fields(path, f);
            assert_eq!(control.len(), 48, "{path:?}");
            assert_eq!(send_fields(path, &control), Ok(f), "{path:?}");
            assert_eq!(received_fields(&control), f, "{path:?}");
            assert!(encode_fields(path, IpFields::default()).is_empty());
        }
        assert_eq!(Path::of(true, false), Path::V6);
        assert_eq!(Path::of(true, true), Path::V4);
        assert_eq!(Path::of(false, false), Path::V4);
    }
}
