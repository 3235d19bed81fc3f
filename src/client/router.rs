//! The run's remotes behind one [`Forwarder`]: each [`Call`] goes to the
//! engine of its remote, so one program mixes files of several servers,
//! the network of another and the `uname` of a third.
//!
//! Routing only, by the remote the planner found ([`Call::remote`]) or, for
//! a call that names no mount or remote file, by what it is: a socket's
//! goes to the `--net` remote, `uname` to the `--uname` one, what a
//! process's exit sends (lock release, shadow write-back) to every remote,
//! and an `munmap`/`msync` over shadows of several remotes to each of them
//! (the engines push at once, and the one reply waits for all).
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
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    One(RemoteIndex),
    /// Every remote (a process's exit touches all), no thread waiting.
    All,
    /// A write-back of shadows of several remotes: each remote's paths, in
    /// the order of the remotes; the thread waits for all of them.
    Shadows(Vec<(RemoteIndex, Vec<Vec<u8>>)>),
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
            Operation::SyncShadows { paths, .. } => self.shadow_route(paths),
            Operation::File(_)
            | Operation::MapShadow { .. }
            | Operation::FetchExecutable { .. } => Route::One(0),
            Operation::TcpConnect { .. }
            | Operation::TcpBind { .. }
            | Operation::TcpListen { .. }
            | Operation::TcpRelease { .. }
            | Operation::UdpRelease { .. }
            | Operation::PureRelease { .. }
            | Operation::PureRecv { .. }
            | Operation::PureSend { .. }
            | Operation::PureRoom { .. }
            | Operation::UdpBind { .. }
            | Operation::UdpConnect { .. }
            | Operation::UdpSend { .. }
            | Operation::UdpRecv { .. }
            | Operation::SetSockOption { .. }
            | Operation::TcpInfo { .. }
            | Operation::Prefetch { .. } => Route::One(self.net),
        }
    }

    /// The remotes of the shadows at `paths`: one, or each with its own.
    fn shadow_route(&self, paths: &[Vec<u8>]) -> Route {
        let mut owners: Vec<(RemoteIndex, Vec<Vec<u8>>)> = Vec::new();
        for path in paths {
            let owner = self.shadow_owner(path);
            match owners.iter_mut().find(|(r, _)| *r == owner) {
                Some((_, mine)) => mine.push(path.clone()),
                None => owners.push((owner, vec![path.clone()])),
            }
        }
        owners.sort_by_key(|(r, _)| *r);
        match owners.as_slice() {
            [] => Route::One(0),
            [(only, _)] => Route::One(*only),
            _ => Route::Shadows(owners),
        }
    }

    /// The remote whose shadow directory holds `path`.
    fn shadow_owner(&self, path: &[u8]) -> RemoteIndex {
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
            Route::Shadows(parts) => {
                let report = matches!(call.operation, Operation::SyncShadows { report: true, .. });
                let parts = parts
                    .into_iter()
                    .map(|(remote, paths)| (self.engine(remote).clone(), paths))
                    .collect();
                Engine::sync_shadows_across(parts, call.tid, report);
                None
            }
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

    #[test]
    fn a_range_over_shadows_of_two_remotes_goes_to_both() {
        let sync = Operation::SyncShadows {
            paths: vec![
                b"/tmp/rscq-1/remote-2/shadow-1".to_vec(),
                b"/tmp/rscq-1/shadow-3".to_vec(),
                b"/tmp/rscq-1/remote-2/shadow-4".to_vec(),
            ],
            report: true,
        };
        assert_eq!(
            routes().route(None, &sync),
            Route::Shadows(vec![
                (0, vec![b"/tmp/rscq-1/shadow-3".to_vec()]),
                (
                    2,
                    vec![
                        b"/tmp/rscq-1/remote-2/shadow-1".to_vec(),
                        b"/tmp/rscq-1/remote-2/shadow-4".to_vec()
                    ]
                ),
            ])
        );
    }
}
