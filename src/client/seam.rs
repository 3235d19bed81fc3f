//! The engine's side of the seam with the tracer ([`Forwarder`]): each
//! [`Call`] is dispatched by its [`Operation`] to the part of the engine that
//! carries it out, with the program's fd the tracer copied during the stop.
//!
//! Dispatch only: must not call ptrace or reach into the program (the fd
//! comes with the call), nor decide how an operation is carried out.

use std::os::fd::OwnedFd;

use super::{Engine, ReplyTo, lock};
use crate::errno::Errno;
use crate::proto::{Handle, Request, Response, SockAddr};
use crate::syscall::operation::Operation;
use crate::syscall::paths::RemoteIndex;
use crate::tracer::{Call, Forwarder};

impl Forwarder for Engine {
    fn submit(&self, call: Call) -> Option<Response> {
        let Call {
            tid,
            nr,
            operation,
            fd,
            sleep,
            remote: _,
        } = call;
        let to = ReplyTo { tid, sleep };
        match operation {
            Operation::File(request) => return self.submit_file(tid, nr, request),
            Operation::TcpConnect { addr } => self.connect_tcp(tid, fd, addr, sleep),
            Operation::TcpBind { addr } => self.bind_tcp(to, fd, addr),
            Operation::TcpListen { listener, backlog } => {
                self.listen_tcp(to, fd, listener, backlog);
            }
            Operation::TcpRelease { listener } => self.release_tcp(to, fd, listener),
            Operation::UdpRelease { udp } => self.release_udp(to, udp),
            Operation::PureRelease { pump } => return Some(self.release_pure(fd, pump)),
            Operation::PureRecv { pump, len, wait } => self.pure_recv(to, fd, pump, len, wait),
            Operation::PureSend { pump, data, urgent } => {
                self.pure_send(tid, fd, pump, data, urgent, sleep);
            }
            Operation::PureRoom { pump, timeout } => self.pure_room(to, pump, timeout),
            Operation::UdpBind { addr } => self.bind_udp(to, fd, addr),
            Operation::UdpConnect { udp, addr } => self.connect_udp(to, fd, udp, addr),
            Operation::UdpSend {
                udp,
                peer,
                data,
                ip,
            } => {
                let send = super::pure_io::UdpSend {
                    id: udp,
                    peer,
                    data,
                    ip,
                };
                self.udp_send(tid, fd, send);
            }
            Operation::UdpRecv { udp, dontwait } => self.udp_recv(to, fd, udp, dontwait),
            Operation::MapShadow { handle, writable } => {
                self.start_map_shadow(tid, handle, writable);
            }
            Operation::SyncShadows { paths, report } => {
                self.start_sync_shadows(tid, paths, report);
            }
            Operation::FetchExecutable { path, copy } => self.fetch_executable(tid, path, copy),
            Operation::SetSockOption { target, option } => match fd {
                Some(fd) => return self.set_sock_option(to, fd.ino, target, option),
                // A held thread must get an answer.
                None if option.server_only() => return Some(Err(Errno::EBADF)),
                None => {}
            },
            Operation::TcpInfo { local, peer } => self.tcp_info(to, local, peer),
            Operation::Prefetch { pumps, udp } => {
                self.prefetch(&pumps);
                self.udp_prefetch(&udp);
            }
        }
        None
    }

    fn interrupted(&self, op: u64) {
        let connect = lock(&self.sleeping_connects).remove(&op);
        if let Some((ino, tid)) = connect {
            self.connect_interrupted(ino, tid);
        }
        self.send_interrupts.interrupt(op);
        if lock(&self.waits).contains(&op) {
            // The server's wait ends, and the waiting request then replies
            // (EINTR, or its lock if that came first).
            let engine = self.clone();
            self.runtime.spawn(async move {
                if let Err(e) = engine.link.call(&Request::CancelWait { wait: op }).await {
                    engine.connection_failed(&e);
                }
            });
        }
    }

    fn watch_close(&self, read_end: OwnedFd, key: u64, handle: Handle, _: Option<RemoteIndex>) {
        self.close_when_unused(read_end, key, handle);
    }

    fn udp_relay(&self, v6: bool, peer: SockAddr) -> Option<std::net::SocketAddr> {
        self.udp.relay_addr(v6, peer)
    }

    fn udp_peer_of(&self, relay: std::net::SocketAddr) -> Option<SockAddr> {
        self.udp.peer_of(relay)
    }

    fn trace_line(&self, line: String) {
        self.trace.line(&line);
    }
}
