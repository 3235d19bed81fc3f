//! `rscq-delayline`: a user-space replacement for `tc qdisc netem` on kernels without
//! `sch_netem`. Two TUN devices, one per network namespace, joined by a delay line that
//! applies delay, loss, a rate cap and a tail-drop queue to each direction.
//!
//! Per direction there are two threads: a reader that timestamps each packet as it
//! leaves the sender's stack and asks the pure scheduler (`sched`) when it may leave, and
//! a writer that sleeps precisely until then and injects it into the receiver's stack.
//! Splitting them keeps a blocking `read` from ever delaying a due packet.
//!
//! SIGUSR1 cuts the link (every packet read from then on is dropped, as if the cable were
//! pulled) and SIGUSR2 restores it, so tests can emulate an outage of any length.

mod clock;
mod sched;
mod setup;
mod sys;

use std::fs::File;
use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use anyhow::{Context, Result, bail};
use clap::Parser;
use nix::sys::signal::{SigSet, Signal};

use sched::{Link, LinkParams, PPM, Verdict};
use setup::{DeviceSpec, EndSpec};

/// Emulate a link between two network namespaces: fixed delay, loss, rate cap, queue.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Namespace of side A (must exist, e.g. `ip netns add A`).
    #[arg(long)]
    ns_a: String,
    /// Namespace of side B.
    #[arg(long)]
    ns_b: String,
    /// Round-trip time in milliseconds; each direction gets half of it.
    #[arg(long)]
    rtt_ms: f64,
    /// Random loss per direction, in percent.
    #[arg(long, default_value_t = 0.0)]
    loss_pct: f64,
    /// Rate cap per direction in Mbit/s (IP packet bytes); unlimited if absent.
    #[arg(long)]
    rate_mbit: Option<f64>,
    /// Bottleneck queue limit in packets per direction; 0 means unlimited.
    #[arg(long, default_value_t = 1000)]
    queue_pkts: usize,
    /// Additional bottleneck queue limit in bytes per direction.
    #[arg(long)]
    queue_bytes: Option<usize>,
    #[arg(long, default_value = "10.77.0.1")]
    addr_a: Ipv4Addr,
    #[arg(long, default_value = "10.77.0.2")]
    addr_b: Ipv4Addr,
    #[arg(long, default_value_t = 24)]
    prefix_len: u8,
    #[arg(long, default_value_t = 1500)]
    mtu: u32,
    /// Name of the TUN device inside each namespace.
    #[arg(long, default_value = "rscq-dl")]
    dev: String,
    /// Seed of the loss generator (direction B→A uses a derived seed).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Busy-wait budget before each departure, in microseconds.
    #[arg(long, default_value_t = 50)]
    spin_us: u64,
}

/// Packets accepted by the scheduler but not yet written. Bounds memory if the rate is
/// unlimited and the delay long; overflow is counted, never blocks the reader.
const INFLIGHT_LIMIT: usize = 65_536;
/// Set while the link is cut (between SIGUSR1 and SIGUSR2): both directions drop
/// every packet they read.
static CUT: AtomicBool = AtomicBool::new(false);
/// Larger than any MTU we configure, so a read never truncates a packet.
const READ_BUF: usize = 65_536;

#[derive(Debug, Default)]
struct Counters {
    read: AtomicU64,
    sent: AtomicU64,
    lost: AtomicU64,
    queue_full: AtomicU64,
    overflow: AtomicU64,
    write_errors: AtomicU64,
    /// Packets dropped because the link was cut (SIGUSR1).
    cut: AtomicU64,
    /// Packets written more than 100 µs after their departure time.
    late: AtomicU64,
}

impl Counters {
    fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "read={} sent={} lost={} queue_full={} overflow={} write_errors={} cut={} late={}",
            g(&self.read),
            g(&self.sent),
            g(&self.lost),
            g(&self.queue_full),
            g(&self.overflow),
            g(&self.write_errors),
            g(&self.cut),
            g(&self.late)
        )
    }
}

enum Event {
    Signal(Signal),
    Fatal(anyhow::Error),
}

struct Packet {
    at_ns: u64,
    data: Vec<u8>,
}

fn params_from(cli: &Cli) -> Result<LinkParams> {
    if !(cli.rtt_ms.is_finite() && (0.0..=600_000.0).contains(&cli.rtt_ms)) {
        bail!("--rtt-ms must be between 0 and 600000");
    }
    if !(cli.loss_pct.is_finite() && (0.0..=100.0).contains(&cli.loss_pct)) {
        bail!("--loss-pct must be between 0 and 100");
    }
    let rate_bps = match cli.rate_mbit {
        None => None,
        Some(r) if r.is_finite() && (0.001..=100_000.0).contains(&r) => {
            NonZeroU64::new(float_to_u64(r * 1e6))
        }
        Some(_) => bail!("--rate-mbit must be between 0.001 and 100000"),
    };
    let loss_ppm = u32::try_from(float_to_u64(cli.loss_pct * f64::from(PPM) / 100.0))
        .context("loss in ppm")?
        .min(PPM);
    Ok(LinkParams {
        // Half of the RTT each way, in ns.
        delay_ns: float_to_u64(cli.rtt_ms * 1e6 / 2.0),
        rate_bps,
        queue_pkts: (cli.queue_pkts > 0).then_some(cli.queue_pkts),
        queue_bytes: cli.queue_bytes,
        loss_ppm,
        seed: cli.seed,
    })
}

/// Rounds a finite, non-negative, range-checked float to an integer.
fn float_to_u64(v: f64) -> u64 {
    debug_assert!(v.is_finite() && (0.0..1.8e19).contains(&v));
    // Callers validated the range, so neither truncation nor sign loss can happen.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = v.round() as u64;
    n
}

fn spawn_direction(
    label: &'static str,
    from: Arc<File>,
    to: Arc<File>,
    params: LinkParams,
    spin_ns: u64,
    counters: Arc<Counters>,
    events: mpsc::Sender<Event>,
) -> Result<()> {
    let (tx, rx) = mpsc::sync_channel::<Packet>(INFLIGHT_LIMIT);

    let rx_counters = Arc::clone(&counters);
    let rx_events = events.clone();
    std::thread::Builder::new()
        .name(format!("{label}-rx"))
        .spawn(move || {
            let err = read_loop(&from, params, &tx, &rx_counters);
            let _ = rx_events.send(Event::Fatal(err.context(format!("{label} reader"))));
        })
        .context("spawn reader")?;

    std::thread::Builder::new()
        .name(format!("{label}-tx"))
        .spawn(move || {
            if let Err(e) = clock::tighten_timer_slack() {
                eprintln!("rscq-delayline: {label}: cannot lower timer slack: {e}");
            }
            write_loop(&to, &rx, spin_ns, &counters);
            // The reader hung up; it reports why.
            drop(events);
        })
        .context("spawn writer")?;
    Ok(())
}

/// Runs until reading fails; returns that error.
fn read_loop(
    mut from: &File,
    params: LinkParams,
    tx: &mpsc::SyncSender<Packet>,
    counters: &Counters,
) -> anyhow::Error {
    let mut link = Link::new(params);
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return anyhow::anyhow!("TUN device closed"),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return anyhow::Error::new(e).context("read from TUN"),
        };
        let now = sys::monotonic_ns();
        counters.read.fetch_add(1, Ordering::Relaxed);
        if CUT.load(Ordering::Relaxed) {
            counters.cut.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match link.offer(now, n) {
            Verdict::Send { at_ns } => {
                let packet = Packet {
                    at_ns,
                    data: buf[..n].to_vec(),
                };
                match tx.try_send(packet) {
                    Ok(()) => {}
                    Err(mpsc::TrySendError::Full(_)) => {
                        counters.overflow.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::TrySendError::Disconnected(_)) => {
                        return anyhow::anyhow!("writer thread gone");
                    }
                }
            }
            Verdict::Lost => {
                counters.lost.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::QueueFull => {
                counters.queue_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn write_loop(mut to: &File, rx: &mpsc::Receiver<Packet>, spin_ns: u64, counters: &Counters) {
    while let Ok(packet) = rx.recv() {
        clock::sleep_until(packet.at_ns, spin_ns);
        if sys::monotonic_ns().saturating_sub(packet.at_ns) > 100_000 {
            counters.late.fetch_add(1, Ordering::Relaxed);
        }
        // A write fails e.g. while the far device is down; that is a drop, not a reason
        // to stop the link.
        // A TUN write takes the whole packet or fails; anything else would be a drop.
        let counter = match to.write(&packet.data) {
            Ok(n) if n == packet.data.len() => &counters.sent,
            Ok(_) | Err(_) => &counters.write_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let params_ab = params_from(&cli)?;
    let params_ba = LinkParams {
        // Independent loss patterns per direction, still reproducible from one seed.
        seed: cli.seed ^ 0x5555_5555_5555_5555,
        ..params_ab.clone()
    };
    if cli.ns_a == cli.ns_b {
        bail!("--ns-a and --ns-b must differ");
    }

    // Block the signals before any thread exists so that every thread inherits the mask
    // and only the dedicated waiter below ever sees them.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGUSR1);
    signals.add(Signal::SIGUSR2);
    signals.thread_block().context("block signals")?;

    let dev = DeviceSpec {
        name: cli.dev.clone(),
        prefix_len: cli.prefix_len,
        mtu: cli.mtu,
    };
    // Temporary names in our own namespace must not collide with other instances.
    let pid = std::process::id();
    let end_a = EndSpec {
        netns: cli.ns_a.clone(),
        addr: cli.addr_a,
    };
    let end_b = EndSpec {
        netns: cli.ns_b.clone(),
        addr: cli.addr_b,
    };
    let tun_a = Arc::new(
        setup::create_end(&end_a, &dev, &format!("rdl{pid}a"))
            .with_context(|| format!("set up side A in {}", cli.ns_a))?,
    );
    let tun_b = Arc::new(
        setup::create_end(&end_b, &dev, &format!("rdl{pid}b"))
            .with_context(|| format!("set up side B in {}", cli.ns_b))?,
    );

    let (events_tx, events) = mpsc::channel();
    let ab = Arc::new(Counters::default());
    let ba = Arc::new(Counters::default());
    let spin_ns = cli.spin_us.saturating_mul(1000);
    spawn_direction(
        "a2b",
        Arc::clone(&tun_a),
        Arc::clone(&tun_b),
        params_ab,
        spin_ns,
        Arc::clone(&ab),
        events_tx.clone(),
    )?;
    spawn_direction(
        "b2a",
        Arc::clone(&tun_b),
        Arc::clone(&tun_a),
        params_ba,
        spin_ns,
        Arc::clone(&ba),
        events_tx.clone(),
    )?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while let Ok(sig) = signals.wait() {
                match sig {
                    Signal::SIGUSR1 => {
                        CUT.store(true, Ordering::Relaxed);
                        eprintln!("rscq-delayline: link cut");
                    }
                    Signal::SIGUSR2 => {
                        CUT.store(false, Ordering::Relaxed);
                        eprintln!("rscq-delayline: link restored");
                    }
                    other => {
                        let _ = events_tx.send(Event::Signal(other));
                        break;
                    }
                }
            }
        })
        .context("spawn signal thread")?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready").context("write ready")?;
    stdout.flush().context("flush ready")?;
    drop(stdout);

    let outcome = events.recv().context("all threads gone")?;
    eprintln!("rscq-delayline: A->B {}", ab.summary());
    eprintln!("rscq-delayline: B->A {}", ba.summary());
    // Returning ends the process, which closes both TUN files and so removes the
    // devices; the worker threads blocked in read() die with it.
    match outcome {
        Event::Signal(sig) => {
            eprintln!("rscq-delayline: {sig}, exiting");
            Ok(())
        }
        Event::Fatal(e) => Err(e),
    }
}
