//! Target 2: the real executor over the trap-filled root. No panic, no
//! request slower than [`REQUEST_TIME_BOUND`], the canary's content in no
//! reply, nothing outside the export changed.
//!
//! An input is a sequence of `Call` frames, run in order on one session.
//! The root is made afresh every [`INPUTS_PER_ROOT`] inputs; a failure's
//! reproducer is every call since then, so a replay starts from a fresh
//! root too.

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use rscq::proto::{Call, Credentials, Reply, Request, Response, frame};
use rscq::server::Executor;

use crate::driver::Target;
use crate::mutate::{Dictionary, decode_calls, encode_calls, mutate_bytes, mutate_calls};
use crate::rng::Rng;
use crate::trap_root::{TrapRoot, leaks_canary};

/// Far above any syscall's time on a busy machine; a request past it hangs.
pub const REQUEST_TIME_BOUND: Duration = Duration::from_secs(10);
const INPUTS_PER_ROOT: usize = 64;

/// The only changes made to fuzzed requests, each for the harness's own
/// safety or liveness, not the server's:
/// - opens and `F_SETFL` keep `O_NONBLOCK`: a blocking open of a FIFO
///   waits for its other end, and a read of one for data, as `open(2)`
///   and `read(2)` do (by design: the server runs them on blocking
///   threads); without it the fuzzer would hang on the kernel's semantics;
/// - lock requests never wait (a wait lasts until `CancelWait`, by design);
/// - `mknod` makes no device nodes: run as root, the server would make
///   them, and a fuzzed write to one would reach the machine's real device;
/// - `fallocate` and `copy_file_range` move at most 1 MiB, so the fuzzer
///   does not fill the disk.
pub fn make_safe(req: &mut Request) {
    match req {
        Request::Open { flags, .. }
        | Request::OpenPlus { flags, .. }
        | Request::OpenRead { flags, .. }
        | Request::SetFlags { flags, .. } => *flags |= libc::O_NONBLOCK,
        Request::Flock { wait, .. } | Request::RecordLock { wait, .. } => *wait = None,
        Request::Mknod { mode, .. } => {
            let kind = *mode & libc::S_IFMT;
            if kind == libc::S_IFCHR || kind == libc::S_IFBLK {
                *mode = (*mode & !libc::S_IFMT) | libc::S_IFREG;
            }
        }
        Request::Fallocate { len, .. } => *len = (*len).min(1 << 20),
        Request::CopyRange { len, .. } => *len = (*len).min(1 << 20),
        _ => {}
    }
}

type Job = (
    Option<Credentials>,
    Request,
    mpsc::Sender<std::thread::Result<Response>>,
);

/// The executor on a thread of its own, so a request that hangs is seen.
pub struct Session {
    jobs: mpsc::Sender<Job>,
    bound: Duration,
}

impl Session {
    pub fn new(executor: Executor, bound: Duration) -> Self {
        let executor = Arc::new(executor);
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("fuzz-executor".to_owned())
            .spawn(move || {
                for (creds, req, answer) in queue {
                    let run =
                        std::panic::AssertUnwindSafe(|| executor.execute(creds.as_ref(), req));
                    let _ = answer.send(std::panic::catch_unwind(run));
                }
            })
            .expect("executor thread");
        Self { jobs, bound }
    }

    /// Runs one call; `Err` says what went wrong (the caller names the
    /// request: formatting a megabyte write for every call would cost more
    /// than running it).
    pub fn execute(&self, call: Call) -> Result<Response, String> {
        let (answer, response) = mpsc::channel();
        self.jobs
            .send((call.creds, call.request, answer))
            .map_err(|_| "the executor thread is gone".to_owned())?;
        match response.recv_timeout(self.bound) {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(panic)) => Err(format!(
                "the executor panicked: {}",
                crate::driver::panic_message(&*panic)
            )),
            Err(_) => Err(format!("no answer within {:?}", self.bound)),
        }
    }
}

/// A request as a failure message shows it: its start is enough.
pub fn shown(req: &Request) -> String {
    let mut text = format!("{req:?}");
    if text.len() > 400 {
        let mut cut = 400;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// The name of a reply's variant, for the outcome signature.
pub fn reply_kind(response: &Response) -> String {
    let Ok(reply) = response else {
        return format!("{:?}", response.as_ref().err());
    };
    match reply {
        Reply::Done => "Done",
        Reply::Opened { .. } => "Opened",
        Reply::OpenedDir(_) => "OpenedDir",
        Reply::OpenedRead { .. } => "OpenedRead",
        Reply::Data(_) => "Data",
        Reply::Count(_) => "Count",
        Reply::Offset(_) => "Offset",
        Reply::Stat(_) => "Stat",
        Reply::Statfs(_) => "Statfs",
        Reply::Dirents(_) => "Dirents",
        Reply::DirentsPlus { .. } => "DirentsPlus",
        Reply::Uname(_) => "Uname",
        Reply::TcpConnected { .. } => "TcpConnected",
        Reply::TcpBound { .. } => "TcpBound",
        Reply::UdpBound { .. } => "UdpBound",
        Reply::StatPlus { .. } => "StatPlus",
        Reply::Lock(_) => "Lock",
        Reply::LookedUp(_) => "LookedUp",
    }
    .to_owned()
}

pub struct ExecutorTarget {
    seeds: Vec<Request>,
    dict: Dictionary,
    root: Option<(TrapRoot, Session)>,
    inputs_on_root: usize,
    /// Every call run since the root was made, as frames.
    history: Vec<u8>,
}

impl ExecutorTarget {
    pub fn new() -> Self {
        Self {
            seeds: crate::seeds::every_request()
                .into_iter()
                .filter(|r| !crate::seeds::is_network(r))
                .collect(),
            dict: Dictionary::new(std::path::Path::new("/nonexistent/canary")),
            root: None,
            inputs_on_root: 0,
            history: Vec::new(),
        }
    }

    fn fresh_root(&mut self) {
        // The old root goes first: its drop restores permissions.
        self.root = None;
        let trap = TrapRoot::new();
        let policy = rscq::server::creds::Policy::of_this_process(None);
        let executor = Executor::new(&trap.root, false, policy).expect("executor");
        self.dict = Dictionary::new(&trap.canary);
        self.root = Some((trap, Session::new(executor, REQUEST_TIME_BOUND)));
        self.inputs_on_root = 0;
        self.history.clear();
    }
}

impl Target for ExecutorTarget {
    fn name(&self) -> &'static str {
        "executor"
    }

    fn mutate(&mut self, rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
        let mut calls = decode_calls(input);
        if calls.is_empty() || rng.below(4) != 0 {
            for _ in 0..=rng.below(3) {
                mutate_calls(rng, &mut calls, &self.seeds, &self.dict);
            }
            return encode_calls(&calls);
        }
        mutate_bytes(rng, input, corpus)
    }

    fn run(&mut self, input: &[u8]) -> Result<u64, String> {
        if self.root.is_none() || self.inputs_on_root >= INPUTS_PER_ROOT {
            self.fresh_root();
        }
        self.inputs_on_root += 1;
        let mut outcome = 0u64;
        for mut call in decode_calls(input) {
            make_safe(&mut call.request);
            self.history.extend(frame::encode(&call));
            let asked = call.request.clone();
            let (_, session) = self.root.as_ref().expect("root");
            let response = session
                .execute(call)
                .map_err(|e| format!("{e}: {}", shown(&asked)))?;
            let encoded = frame::encode(&response);
            if leaks_canary(&encoded) {
                return Err(format!(
                    "the canary's content came back in the reply to {}",
                    shown(&asked)
                ));
            }
            check_reply(&asked, &response)?;
            match &response {
                Ok(Reply::Opened { handle, .. }) => self.dict.saw_handle(*handle),
                Ok(Reply::OpenedDir(dir)) => self.dict.saw_handle(dir.handle),
                _ => {}
            }
            let signature = format!(
                "{} {}",
                crate::seeds::variant_name(&asked),
                reply_kind(&response)
            );
            outcome ^= crate::driver::hash(signature.as_bytes());
        }
        let (trap, _) = self.root.as_ref().expect("root");
        trap.check_outside()?;
        Ok(outcome)
    }

    fn reproducer(&self, _input: &[u8]) -> Vec<u8> {
        self.history.clone()
    }
}

/// What a reply promises about its request.
fn check_reply(asked: &Request, response: &Response) -> Result<(), String> {
    if let (Request::Read { len, .. } | Request::Pread { len, .. }, Ok(Reply::Data(data))) =
        (asked, response)
    {
        let most = (*len).min(rscq::proto::MAX_IO);
        if data.len() > usize::try_from(most).unwrap_or(usize::MAX) {
            return Err(format!(
                "{} bytes came back for a read of {len} (limit {most})",
                data.len()
            ));
        }
    }
    Ok(())
}
