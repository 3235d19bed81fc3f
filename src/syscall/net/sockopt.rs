//! `getsockopt` and `setsockopt` with `--net`: the few options whose truth
//! is the server's socket (answered here, or asked of the server:
//! `TCP_INFO`), or that the server's socket needs too (passed on after the
//! native call), or that is the server's alone (`SO_BINDTODEVICE`: held
//! and passed on, never run locally).
//!
//! Every other option is the local socket's: this module must let those
//! calls run untouched, before reading anything from the program.

use crate::errno::Errno;
use crate::proto::{DEVICE_NAME, OptionTarget, SockOption};
use crate::syscall::layout;
use crate::syscall::plan::{Plan, Planner, Tracee, arg_i32};
use crate::syscall::sockets::RemoteSocket;

impl<T: Tracee> Planner<'_, T> {
    /// `getsockopt(fd, level, name, value, len)`, trapped for two options
    /// whose truth is the server's: `SO_ERROR` of a remote connect that
    /// ended after its caller went on (the kernel only saw rscq's stand-in
    /// reset), and `IPV6_V6ONLY` of a UDP socket bound dual-stack on the
    /// server (its local stand-in, bound to `::1`, is IPv6-only).
    pub(super) fn getsockopt(&mut self, fd: i32, a: [u64; 6]) -> Plan {
        // Most calls are the program's own: they go on untouched before
        // anything is read from the program.
        let value = match (arg_i32(a[1]), arg_i32(a[2])) {
            (libc::SOL_SOCKET, libc::SO_ERROR) => match self.t.connect_error(fd) {
                Some(errno) => errno.0,
                None => return Plan::Native,
            },
            (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) if self.t.dual_stack(fd) => 0,
            (libc::IPPROTO_TCP, libc::TCP_INFO) => return self.tcp_info(fd, a),
            _ => return Plan::Native,
        };
        let Ok(len_bytes) = self.t.read_bytes(a[4], 4) else {
            return Plan::fail(Errno::EFAULT);
        };
        let room = i32::from_ne_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let Ok(room) = usize::try_from(room) else {
            return Plan::fail(Errno::EINVAL);
        };
        let bytes = value.to_ne_bytes();
        let shown = bytes.len().min(room);
        let shown_len = i32::try_from(shown).unwrap_or(0);
        Plan::Answer {
            ret: 0,
            writes: vec![
                (a[3], bytes[..shown].to_vec()),
                (a[4], shown_len.to_ne_bytes().to_vec()),
            ],
        }
    }

    /// `getsockopt(fd, SOL_TCP, TCP_INFO, value, len)` of a remote
    /// connection: the server socket's `struct tcp_info` (its round trip,
    /// window and counters are the remote connection's, not those of rscq's
    /// loopback stand-in).
    fn tcp_info(&mut self, fd: i32, a: [u64; 6]) -> Plan {
        let Some(RemoteSocket {
            local,
            peer: Some(peer),
            udp: None,
            ..
        }) = self.t.remote_socket(fd)
        else {
            return Plan::Native;
        };
        let Ok(len_bytes) = self.t.read_bytes(a[4], 4) else {
            return Plan::fail(Errno::EFAULT);
        };
        let room = i32::from_ne_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        match u32::try_from(room) {
            Ok(room) => Plan::tcp_info(fd, local, peer, a[3], a[4], room),
            Err(_) => Plan::fail(Errno::EINVAL),
        }
    }

    /// `setsockopt(fd, level, name, value, len)`: an option the server's
    /// socket needs too, or `Native`.
    pub(super) fn setsockopt(&mut self, fd: i32, a: [u64; 6]) -> Plan {
        let (level, name, len) = (arg_i32(a[1]), arg_i32(a[2]), a[4]);
        if (level, name) == (libc::SOL_SOCKET, libc::SO_BINDTODEVICE) {
            return self.bind_to_device(fd, a);
        }
        let Ok(value) = self
            .t
            .read_bytes(a[3], usize::try_from(len.min(8)).unwrap_or(0))
        else {
            return Plan::Native;
        };
        let Some(option) = layout::decode_sock_option(level, name, &value) else {
            return Plan::Native;
        };
        if self.is_inet_stream(fd) {
            Plan::set_sock_option(fd, self.option_target(fd), option)
        } else {
            Plan::Native
        }
    }

    /// `setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, len)` of an INET
    /// stream socket: the device is one of the server's, so the call does
    /// not run on the local socket (where the name may be unknown, or
    /// another device); the engine answers it once the option is on the
    /// server's socket, or kept for its connect or bind.
    fn bind_to_device(&mut self, fd: i32, a: [u64; 6]) -> Plan {
        if !self.is_inet_stream(fd) {
            return Plan::Native;
        }
        // As the kernel (`sock_setbindtodevice`): a negative length is
        // EINVAL, and at most IFNAMSIZ - 1 bytes count, up to a NUL.
        let Ok(len) = usize::try_from(arg_i32(a[4])) else {
            return Plan::fail(Errno::EINVAL);
        };
        let Ok(bytes) = self.t.read_bytes(a[3], len.min(DEVICE_NAME - 1)) else {
            return Plan::fail(Errno::EFAULT);
        };
        let mut device = [0u8; DEVICE_NAME];
        for (to, byte) in device.iter_mut().zip(bytes.iter().take_while(|b| **b != 0)) {
            *to = *byte;
        }
        let option = SockOption::BindToDevice(device);
        Plan::server_option(fd, self.option_target(fd), option)
    }

    fn is_inet_stream(&mut self, fd: i32) -> bool {
        matches!(
            self.t.socket_kind(fd),
            Some((libc::AF_INET | libc::AF_INET6, libc::SOCK_STREAM))
        )
    }

    /// The server socket an option set on socket `fd` is for: its remote
    /// connection, or its remote listener; `None` while it has neither (the
    /// option then goes with its connect or bind).
    fn option_target(&mut self, fd: i32) -> Option<OptionTarget> {
        match self.t.remote_socket(fd) {
            Some(RemoteSocket {
                local,
                peer: Some(peer),
                ..
            }) => Some(OptionTarget::Connection { local, peer }),
            _ => self.t.remote_listener(fd).map(OptionTarget::Listener),
        }
    }
}
