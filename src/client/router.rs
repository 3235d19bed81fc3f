//! The run's remotes behind one [`Forwarder`]: each [`Call`] goes to the
//! engine of its remote, so one program mixes files of several servers,
//! the network of another and the `uname` of a third.
//!
//! Routing only, by the remote the planner found ([`Call::remote`]) or, for
//! a call that names no mount or remote file, by what it is: a socket's
//! goes to the `--net` remote, `uname` to the `--uname` one, and what a
//! process's exit sends (lock release, shadow write-back) to every remote.
//! Must not carry a call out itself, nor keep state of its own beyond the
//! list of engines: each engine fails, caches and counts on its own, so a
//! lost remote fails only its own calls.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use super::Engine;
use crate::proto::{Handle, Request, Response, SockAddr};
use crate::syscall::operation::Operation;
use crate::syscall::paths::RemoteIndex;
use crate::tracer::{Call, Forwarder};

/// One engine per remote, in the order of the run's remotes.
pub(super) struct Router {
    engines: Vec<Engine>,
    routes: Routes,
}

/// Where calls that name no remote go: a pure value, tested on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Routes {
    net: RemoteIndex,
    uname: RemoteIndex,
    /// Where each engine makes its shadow files.
    shadow_dirs: Vec<Option<PathBuf>>,
}

/// Who gets a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    One(RemoteIndex),
    /// Every remote (a process's exit touches all), no thread waiting.
    All,
}

impl Router {
    /// `engines` (each with where it makes its shadow files) must not be
    /// empty: the run always has a default remote.
    pub(super) fn new(
        engines: Vec<(Engine, Option<PathBuf>)>,
        net: RemoteIndex,
        uname: RemoteIndex,
    ) -> Self {
        assert!(!engines.is_empty(), "a run has at least one remote");
        let (engines, shadow_dirs) = engines.into_iter().unzip();
        Self {
            engines,
            routes: Routes {
                net,
                uname,
                shadow_dirs,
            },
        }
    }

    pub(super) fn engines(&self) -> &[Engine] {
        &self.engines
    }

    /// The engine of remote `index` (the default one for an index the run
    /// does not have, which the planner never gives).
    fn engine(&self, index: RemoteIndex) -> &Engine {
        self.engines.get(index).unwrap_or(&self.engines[0])
    }

    pub(super) fn net_engine(&self) -> &Engine {
        self.engine(self.routes.net)
    }
}

impl Routes {
    /// The remote of a call on `remote` (the planner's, if any) doing
    /// `operation`.
    fn route(&self, remote: Option<RemoteIndex>, operation: &Operation) -> Route {
        if let Some(remote) = remote {
            return Route::One(remote);
        }
        match operation {
            Operation::File(Request::Uname) => Route::One(self.uname),
            Operation::File(Request::ReleaseLocks { handle: None, .. }) => Route::All,
            Operation::SyncShadows { paths, .. } if paths.is_empty() => Route::All,
            Operation::SyncShadows { paths, .. } => Route::One(self.shadow_owner(paths)),
            Operation::File(_)
            | Operation::MapShadow { .. }
            | Operation::FetchExecutable { .. } => Route::One(0),
            Operation::TcpConnect { .. }
            | Operation::TcpBind { .. }
            | Operation::TcpListen { .. }
            | Operation::TcpRelease { .. }
            | Operation::PureRecv { .. }
            | Operation::PureSend { .. }
            | Operation::UdpBind { .. }
            | Operation::UdpConnect { .. }
            | Operation::UdpSend { .. }
            | Operation::UdpRecv { .. }
            | Operation::SetSockOption { .. }
            | Operation::Prefetch { .. } => Route::One(self.net),
        }
    }

    /// The remote whose shadow directory holds the first of `paths` (a
    /// `munmap` over shadows of two remotes at once waits for the first's
    /// write-back only; the others' go with their next sync or at exit).
    fn shadow_owner(&self, paths: &[Vec<u8>]) -> RemoteIndex {
        let Some(path) = paths.first() else {
            return 0;
        };
        // The default remote's directory holds the others': the deepest
        // match wins.
        self.shadow_dirs
            .iter()
            .enumerate()
            .filter_map(|(i, dir)| {
                let dir = dir.as_ref()?.as_os_str().as_encoded_bytes();
                let inside = path.strip_prefix(dir)?.first() == Some(&b'/');
                inside.then_some((dir.len(), i))
            })
            .max()
            .map_or(0, |(_, i)| i)
    }
}

impl Forwarder for Router {
    fn submit(&self, call: Call) -> Option<Response> {
        match self.routes.route(call.remote, &call.operation) {
            Route::One(remote) => self.engine(remote).submit(call),
            Route::All => {
                for engine in &self.engines {
                    let each = Call {
                        tid: call.tid,
                        nr: call.nr,
                        operation: call.operation.clone(),
                        fd: None,
                        sleep: None,
                        remote: None,
                    };
                    let _ = engine.submit(each);
                }
                None
            }
        }
    }

    fn interrupted(&self, op: u64) {
        // Sleep numbers are the tracer's, unique across remotes: the one
        // engine that knows `op` acts on it.
        for engine in &self.engines {
            engine.interrupted(op);
        }
    }

    fn watch_close(
        &self,
        read_end: OwnedFd,
        key: u64,
        handle: Handle,
        remote: Option<RemoteIndex>,
    ) {
        self.engine(remote.unwrap_or(0))
            .watch_close(read_end, key, handle, remote);
    }

    fn udp_relay(&self, v6: bool, peer: SockAddr) -> Option<std::net::SocketAddr> {
        self.net_engine().udp_relay(v6, peer)
    }

    fn udp_peer_of(&self, relay: std::net::SocketAddr) -> Option<SockAddr> {
        self.net_engine().udp_peer_of(relay)
    }

    fn trace_line(&self, line: String) {
        // One sink for all remotes.
        self.engines[0].trace_line(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Handle, SockAddr};

    fn routes() -> Routes {
        Routes {
            net: 2,
            uname: 1,
            shadow_dirs: vec![
                Some("/tmp/rscq-1".into()),
                Some("/tmp/rscq-1/remote-1".into()),
                Some("/tmp/rscq-1/remote-2".into()),
            ],
        }
    }

    #[test]
    fn the_planners_remote_wins() {
        let stat = Operation::File(Request::Fstat { handle: Handle(3) });
        assert_eq!(routes().route(Some(1), &stat), Route::One(1));
        assert_eq!(routes().route(None, &stat), Route::One(0));
    }

    #[test]
    fn sockets_go_to_net_and_uname_to_its_remote() {
        let connect = Operation::TcpConnect {
            addr: SockAddr::V4 {
                ip: [10, 0, 0, 1],
                port: 80,
            },
        };
        assert_eq!(routes().route(None, &connect), Route::One(2));
        let uname = Operation::File(Request::Uname);
        assert_eq!(routes().route(None, &uname), Route::One(1));
    }

    #[test]
    fn an_exit_touches_every_remote() {
        let release = Operation::File(Request::ReleaseLocks {
            owner: 7,
            handle: None,
        });
        assert_eq!(routes().route(None, &release), Route::All);
        let sync = Operation::SyncShadows {
            paths: Vec::new(),
            report: true,
        };
        assert_eq!(routes().route(None, &sync), Route::All);
    }

    #[test]
    fn a_shadow_belongs_to_the_remote_of_its_directory() {
        let sync = |path: &str| Operation::SyncShadows {
            paths: vec![path.as_bytes().to_vec()],
            report: false,
        };
        let r = routes();
        assert_eq!(r.route(None, &sync("/tmp/rscq-1/shadow-3")), Route::One(0));
        assert_eq!(
            r.route(None, &sync("/tmp/rscq-1/remote-2/shadow-1")),
            Route::One(2)
        );
        assert_eq!(
            r.route(None, &sync("/tmp/rscq-1/remote-1/shadow-1")),
            Route::One(1)
        );
        assert_eq!(r.route(None, &sync("/tmp/rscq-1/remote-10")), Route::One(0));
    }
}
