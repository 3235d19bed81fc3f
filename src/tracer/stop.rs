//! Seccomp stops: reads the stopped call, asks the planner for a [`Plan`]
//! and carries it out, one method per kind of plan (run natively, answer
//! locally, forward and hold the thread, or put it to sleep).
//!
//! Must not wait for the engine: a forwarded call leaves its thread in
//! [`ThreadState::Waiting`] or sleeping, and its reply is `reply`'s.

use std::net::SocketAddr;
use std::time::Duration;

use nix::unistd::Pid;

use super::control::Stop;
use super::state::{ExitAction, Sleep, ThreadState, exit_action};
use super::view::TraceeView;
use super::{Forwarder, RemoteSocket, Tracer, seccomp, sys};
use crate::errno::Errno;
use crate::proto::{RemotePath, Request, SockAddr};
use crate::syscall::plan::{self, Plan, PureWait, Then};

impl<F: Forwarder> Tracer<'_, F> {
    pub(super) fn on_seccomp(&mut self, stop: Stop) {
        let tid = stop.tid();
        let pid = stop.pid();
        if matches!(self.state(tid), Some(ThreadState::MapShadow { .. })) {
            // A call rscq injected for a shared mapping: it runs as is.
            return stop.resume_to_syscall_stop();
        }
        let Ok(info) = sys::seccomp_stop_info(pid) else {
            return stop.resume();
        };
        if info.ret_data != seccomp::TRAP_TAG {
            // A filter the program installed itself asked for a tracer;
            // there is none of its own, so behave as the kernel would.
            return stop.skip(Errno::ENOSYS.as_syscall_return());
        }
        let nr = i64::try_from(info.nr).unwrap_or(-1);
        let fd0 = i32::try_from(info.args[0] & 0xffff_ffff).map_or(-1, |v| v);
        // `#!` interpreters followed so far by this exec (see `exec_copy`),
        // and whether a fetch made this very call ready.
        let (exec_hops, ready) = match self.threads.get_mut(&tid) {
            Some(thread) => {
                let hops = std::mem::take(&mut thread.exec_hops);
                if hops == 0 {
                    thread.exec_floor = None;
                }
                (hops, thread.native_once.take() == Some((nr, fd0)))
            }
            None => (0, false),
        };
        let plan = {
            let mut view = TraceeView { tracer: self, pid };
            let forwarding = view.tracer.config.forwarding.clone();
            if ready {
                // Made ready by a fetch: it runs now, with only the
                // address rewriting a UDP receive needs.
                crate::syscall::udp::plan(nr, info.args, forwarding.pure_net, true, &mut view)
                    .filter(|_| forwarding.net)
                    .unwrap_or(Plan::Native)
            } else {
                plan::plan(nr, info.args, &forwarding, &mut view)
            }
        };
        self.carry_out(stop, nr, fd0, info.stack_pointer, exec_hops, plan);
    }

    /// Does what `plan` says for the call `nr` of the thread stopped at
    /// `pid` (`fd0` its first argument as an fd, `sp` its stack pointer,
    /// `exec_hops` the `#!` interpreters its `execve` followed so far).
    fn carry_out(&mut self, stop: Stop, nr: i64, fd0: i32, sp: u64, exec_hops: u32, plan: Plan) {
        let tid = stop.tid();
        match plan {
            Plan::Native => stop.resume(),
            Plan::NativeRewritten { paths, after } => {
                let after = exit_action(after, 0);
                self.rewrite_and_run(stop, sp, None, &paths, after);
            }
            Plan::NativeWithArgs { data, args } => {
                let call = Some((nr, args));
                self.rewrite_and_run(stop, sp, call, &data, ExitAction::Restore);
            }
            Plan::NativeScratch(scratch) => self.run_on_scratch(stop, sp, *scratch),
            Plan::UdpBind { fd, addr, replan } => {
                let then = if replan { Then::Replan } else { Then::Zero };
                let tgid = self.wait(stop, nr, then, format!("{fd}, {}", SocketAddr::from(addr)));
                self.forwarder.bind_udp(tid, tgid, fd, addr);
            }
            Plan::UdpConnect { fd, udp, addr } => {
                let to = addr.map_or("AF_UNSPEC".to_string(), |a| SocketAddr::from(a).to_string());
                let tgid = self.wait(stop, nr, Then::Zero, format!("{fd}, {to}"));
                self.forwarder.connect_udp(tid, tgid, fd, udp, addr);
            }
            Plan::UdpPureSend {
                fd,
                udp,
                peer,
                data,
                then,
            } => {
                let to = peer
                    .map(|p| format!(", {}", SocketAddr::from(p)))
                    .unwrap_or_default();
                self.wait(stop, nr, then, format!("{fd}, {}{to}", data.len()));
                self.forwarder.udp_send(tid, udp, peer, data);
            }
            Plan::UdpPureRecv { fd, udp, dontwait } => {
                if self.sleep(stop, nr, fd, format!("{fd}"), Sleep::ThenNative) {
                    let tgid = self.tgid_of(tid);
                    self.forwarder.udp_recv(tid, tgid, fd, udp, dontwait);
                }
            }
            Plan::Return(ret) => {
                self.trace_local(tid, nr, ret);
                stop.skip(ret);
            }
            Plan::Answer { ret, writes } => stop.answer(ret, &writes),
            Plan::EnterRemoteDir { local_path } => {
                self.set_virtual_cwd(tid, Some(local_path));
                stop.skip(0);
            }
            Plan::ConnectTcp { fd, addr } => self.start_tcp_connect(stop, nr, fd, addr),
            Plan::PureRecv {
                fd,
                pump,
                len,
                wait,
            } => self.start_pure_recv(stop, nr, fd, pump, len, wait),
            Plan::PureSend {
                fd,
                pump,
                data,
                dontwait,
            } => self.start_pure_send(stop, nr, fd, pump, data, dontwait),
            Plan::Prefetch { pumps, udp } => {
                self.forwarder.prefetch(&pumps);
                self.forwarder.udp_prefetch(&udp);
                stop.resume();
            }
            Plan::SetSockOpt { fd, option } => {
                // The call itself runs natively: the program's socket keeps
                // the option, so getsockopt answers as it would.
                self.forward_sock_option(stop.pid(), fd, option);
                stop.resume();
            }
            Plan::BindTcp { fd, addr } => {
                let tgid = self.wait(
                    stop,
                    nr,
                    Then::Zero,
                    format!("{fd}, {}", SocketAddr::from(addr)),
                );
                self.forwarder.bind_tcp(tid, tgid, fd, addr);
            }
            Plan::ListenTcp {
                fd,
                listener,
                backlog,
            } => {
                let tgid = self.wait(stop, nr, Then::Zero, format!("{fd}, {backlog}"));
                self.forwarder.listen_tcp(tid, tgid, fd, listener, backlog);
            }
            Plan::MapRemote {
                handle,
                offset,
                len,
                flags,
            } => {
                let text = format!("NULL, {len}, #{}, {offset}", handle.0);
                self.wait(stop, nr, Then::Map { flags }, text);
                self.forwarder.read_range(tid, handle, offset, len);
            }
            Plan::MapShared { handle, writable } => {
                let text = format!("NULL, MAP_SHARED, #{}", handle.0);
                self.wait(stop, nr, Then::MapShadow { writable }, text);
                self.forwarder.map_shadow(tid, handle, writable);
            }
            Plan::SyncShadows { paths, report } => {
                let text = format!("{} shared mappings", paths.len());
                self.wait(stop, nr, Then::CloseAfterFlush, text);
                self.forwarder.sync_shadows(tid, paths, report);
            }
            Plan::ExecRemote {
                path,
                path_arg,
                argv_arg,
            } => self.start_exec_fetch(stop, nr, exec_hops, path, path_arg, argv_arg),
            Plan::ForwardWait { request } => self.forward_wait(stop, nr, fd0, request),
            Plan::Forward { request, then } => self.forward(stop, nr, request, then),
        }
    }

    /// [`Plan::ConnectTcp`]: a blocking connect sleeps, a non-blocking one
    /// is held in its stop.
    fn start_tcp_connect(&mut self, stop: Stop, nr: i64, fd: i32, addr: SockAddr) {
        let tid = stop.tid();
        let request_text = format!("{fd}, {}", SocketAddr::from(addr));
        // A blocking connect may take long (a remote host that
        // drops SYNs): it sleeps, so signals still reach it. A
        // non-blocking one is held only until the remote answer.
        let blocking_socket = self.dup_fd(stop.pid(), fd).and_then(|dup| {
            let flags = rustix::fs::fcntl_getfl(&dup).ok()?;
            let ino = rustix::fs::fstat(&dup).ok()?.st_ino;
            (!flags.contains(rustix::fs::OFlags::NONBLOCK)).then_some(ino)
        });
        let tgid = self.tgid_of(tid);
        match blocking_socket {
            Some(socket) => {
                let op = self.next_sleep;
                self.next_sleep += 1;
                if self.sleep(stop, nr, fd, request_text, Sleep::Connect { op, socket }) {
                    self.forwarder.connect_tcp(tid, tgid, fd, addr, Some(op));
                }
            }
            None => {
                self.wait(stop, nr, Then::Zero, request_text);
                self.forwarder.connect_tcp(tid, tgid, fd, addr, None);
            }
        }
    }

    /// [`Plan::PureRecv`]: the thread sleeps while the engine fetches data
    /// into its socket; it then runs the call natively.
    fn start_pure_recv(
        &mut self,
        stop: Stop,
        nr: i64,
        fd: i32,
        pump: u64,
        len: u32,
        wait: PureWait,
    ) {
        let tid = stop.tid();
        let request_text = format!("{fd}, {len}");
        if self.sleep(stop, nr, fd, request_text, Sleep::ThenNative) {
            let tgid = self.tgid_of(tid);
            self.forwarder.pure_recv(tid, tgid, fd, pump, len, wait);
        }
    }

    /// [`Plan::PureSend`]: a send that may wait for room sleeps, any other
    /// is held in its stop.
    fn start_pure_send(
        &mut self,
        stop: Stop,
        nr: i64,
        fd: i32,
        pump: u64,
        data: Vec<u8>,
        dontwait: bool,
    ) {
        let tid = stop.tid();
        let request_text = format!("{fd}, {}", data.len());
        let tgid = self.tgid_of(tid);
        let blocking = !dontwait
            && self.dup_fd(stop.pid(), fd).is_some_and(|dup| {
                rustix::fs::fcntl_getfl(&dup)
                    .is_ok_and(|f| !f.contains(rustix::fs::OFlags::NONBLOCK))
            });
        if blocking {
            // The server may wait for room for as long as the peer
            // does not read: the thread sleeps, so signals and the
            // socket's send timeout still end the call.
            let op = self.next_sleep;
            self.next_sleep += 1;
            if self.sleep(stop, nr, fd, request_text, Sleep::Send { op }) {
                self.forwarder
                    .pure_send(tid, tgid, fd, pump, data, Some(op));
            }
        } else {
            self.wait(stop, nr, Then::Number, request_text);
            self.forwarder.pure_send(tid, tgid, fd, pump, data, None);
        }
    }

    /// [`Plan::ExecRemote`]: holds the thread while the engine makes a
    /// local copy of the remote executable `path` (see `exec_copy`).
    fn start_exec_fetch(
        &mut self,
        stop: Stop,
        nr: i64,
        exec_hops: u32,
        path: RemotePath,
        path_arg: u8,
        argv_arg: u8,
    ) {
        let tid = stop.tid();
        let Some(copy) = self.placeholders.as_mut().map(|d| d.copy_path()) else {
            return stop.skip(Errno::EACCES.as_syscall_return());
        };
        let text = crate::syscall::describe::describe(&Request::Stat {
            path: path.clone(),
            follow: true,
        });
        self.thread_mut(tid).exec_hops = exec_hops;
        let then = Then::Exec {
            copy: copy.clone(),
            path_arg,
            argv_arg,
        };
        self.wait(stop, nr, then, text);
        self.forwarder.fetch_executable(tid, path, copy);
    }

    /// [`Plan::ForwardWait`]: a call that may wait on the server (a lock)
    /// sleeps; its reply comes for its sleep number.
    fn forward_wait(&mut self, stop: Stop, nr: i64, fd0: i32, request: Request) {
        let tid = stop.tid();
        self.note_record_lock(tid, &request);
        let op = self.next_sleep;
        self.next_sleep += 1;
        let request = crate::syscall::locks::with_wait(request, op);
        let request_text = if self.config.trace {
            crate::syscall::describe::describe(&request)
        } else {
            String::new()
        };
        // The server may wait for as long as another process holds
        // the lock: the thread sleeps, so signals still end the call.
        if self.sleep(stop, nr, fd0, request_text, Sleep::Wait { op }) {
            // Its reply comes as a `SleeperReply` for `op`.
            let _ = self.forwarder.submit(tid, nr, request);
        }
    }

    /// [`Plan::Forward`]: holds the thread in its stop until the reply, or
    /// answers it at once if the engine already has the answer.
    fn forward(&mut self, stop: Stop, nr: i64, request: Request, then: Then) {
        let tid = stop.tid();
        self.note_record_lock(tid, &request);
        let request_text = if self.config.trace {
            crate::syscall::describe::describe(&request)
        } else {
            String::new()
        };
        self.wait(stop, nr, then, request_text);
        if let Some(response) = self.forwarder.submit(tid, nr, request) {
            self.on_reply(tid, response, Duration::ZERO);
        }
    }

    /// A record lock asked for by a process: from now on its closes of
    /// remote files and its exit release its locks.
    fn note_record_lock(&mut self, tid: i32, request: &Request) {
        if let Request::RecordLock {
            owner: crate::proto::LockOwner::Process(_),
            set: true,
            ..
        } = request
        {
            let tgid = self.tgid_of(tid);
            self.process_mut(tgid).record_locks = true;
        }
    }

    /// Hands an option the program sets on an INET stream socket to the
    /// engine, with the server socket it is for, if there is one.
    fn forward_sock_option(&self, pid: Pid, fd: i32, option: crate::proto::SockOption) {
        let Some(ino) = self
            .dup_fd(pid, fd)
            .and_then(|dup| rustix::fs::fstat(&dup).ok())
            .map(|st| st.st_ino)
        else {
            return;
        };
        let tid = pid.as_raw();
        let target = match self.sockets.lookup(tid, fd) {
            Some(RemoteSocket {
                local,
                peer: Some(peer),
                ..
            }) => Some(crate::proto::OptionTarget::Connection { local, peer }),
            _ => self
                .sockets
                .lookup_listener(tid, fd)
                .map(crate::proto::OptionTarget::Listener),
        };
        self.forwarder.set_sock_option(ino, target, option);
    }
}
