//! A TCP proxy on loopback that delays every byte by a fixed one-way time: a network like
//! DSQL's, where the cluster is a remote service and a tool call pays round trips.
//!
//! Why by hand: the benchmark needs one small, exact thing (a constant delay per direction,
//! order kept, no bandwidth model) between two local processes; `tc netem` needs root and
//! touches the whole loopback device, and the proxy crates shape bandwidth, not latency.
//!
//! How: one thread accepts; each connection gets, per direction, a reader that stamps each
//! chunk with `now + delay` and a writer that sleeps until the stamp and forwards it, so a
//! chunk is never held longer than the delay (plus the sleep's wake-up, ~0.1 ms here) and
//! pipelined messages keep their spacing. OS threads and `std::thread::sleep` rather than
//! tokio timers, whose 1 ms granularity would round the delay itself. Threads end when their
//! socket closes; the accept thread when the proxy is dropped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub struct DelayProxy {
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl DelayProxy {
    /// Listens on 127.0.0.1:`port` and forwards each connection to 127.0.0.1:`upstream`,
    /// delaying each direction by `one_way`.
    pub fn start(port: u16, upstream: u16, one_way: Duration) -> Result<DelayProxy, String> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .map_err(|e| format!("delay proxy: bind 127.0.0.1:{port}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("delay proxy: nonblocking: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let accept = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        match TcpStream::connect((Ipv4Addr::LOCALHOST, upstream)) {
                            Ok(server) => splice(client, server, one_way),
                            Err(e) => eprintln!("delay proxy: connect upstream: {e}"),
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => {
                        eprintln!("delay proxy: accept: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        });
        Ok(DelayProxy {
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Both directions of one connection, each delayed by `one_way`.
fn splice(client: TcpStream, server: TcpStream, one_way: Duration) {
    for s in [&client, &server] {
        let _ = s.set_nodelay(true);
    }
    let pairs = [
        (client.try_clone(), server.try_clone()),
        (server.try_clone(), client.try_clone()),
    ];
    for (from, to) in pairs {
        if let (Ok(from), Ok(to)) = (from, to) {
            delayed(from, to, one_way);
        }
    }
}

/// Forwards `from` to `to`, each chunk no earlier than `one_way` after it was read.
fn delayed(mut from: TcpStream, mut to: TcpStream, one_way: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + one_way, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        // Dropping `tx` tells the writer the stream ended.
    });
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
