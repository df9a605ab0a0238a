//! Crash test: this binary re-executes itself as a child (env
//! `SEALPOST_QUEUE_CRASH_CHILD=<dir>`) that enqueues from 16 threads and
//! leases messages without finishing them, printing `id len checksum` only
//! after `Durable` resolved. The parent `kill -9`s it at a random moment,
//! reopens the queue and checks that every acknowledged message is present,
//! intact, and due (its lease died with the child). Several bounded rounds on
//! the same directory.

mod support;

use sealpost_queue::{MessageId, Queue, QueueOptions};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use support::{checksum, message};

const CHILD_ENV: &str = "SEALPOST_QUEUE_CRASH_CHILD";
const ROUNDS: usize = 4;

fn main() {
    match std::env::var_os(CHILD_ENV) {
        Some(dir) => child(std::path::Path::new(&dir)),
        None => {
            let acked = parent();
            println!("crash test: {ROUNDS} rounds, {acked} acknowledged messages intact");
        }
    }
}

/// Enqueue until killed (or 20 s pass, a safety bound).
fn child(dir: &std::path::Path) {
    let queue = Arc::new(Queue::open(dir, QueueOptions::default()).expect("child open"));
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut handles = Vec::new();
    for w in 0..16u64 {
        let q = queue.clone();
        let out = out.clone();
        handles.push(std::thread::spawn(move || {
            let mut n = w;
            while Instant::now() < deadline {
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let len = 1 + (n >> 40) as usize % 20_000;
                let body: Vec<u8> = (0..len).map(|i| (n >> (i % 56)) as u8 ^ i as u8).collect();
                let sum = checksum(&body);
                let msg = message("t", &[("a@x.test", "x.test")], &body);
                let id = q.enqueue(msg).expect("enqueue").wait().expect("durable");
                let mut o = out.lock().expect("stdout");
                let _ = writeln!(o, "{id} {len} {sum}");
                let _ = o.flush();
            }
        }));
    }
    // Lease messages and never finish them, as a dying delivery worker would.
    let q = queue.clone();
    handles.push(std::thread::spawn(move || {
        while Instant::now() < deadline {
            let _ = q.take_due_any(SystemTime::now() + Duration::from_secs(1 << 40), 8);
            std::thread::sleep(Duration::from_millis(2));
        }
    }));
    for h in handles {
        let _ = h.join();
    }
}

fn parent() -> usize {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current exe");
    let mut acked: HashMap<MessageId, (usize, u64)> = HashMap::new();
    let mut seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    match line {
                        Ok(l) => lines.lock().expect("lines").push(l),
                        Err(_) => break,
                    }
                }
            })
        };
        // Wait for the first acknowledgements, then kill at a random moment.
        let start = Instant::now();
        while lines.lock().expect("lines").len() < 5 && start.elapsed() < Duration::from_secs(15) {
            std::thread::sleep(Duration::from_millis(5));
        }
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        std::thread::sleep(Duration::from_millis(10 + (seed >> 33) % 250));
        child.kill().expect("kill -9");
        let _ = child.wait();
        let _ = reader.join();
        let round_lines = lines.lock().expect("lines").clone();
        assert!(
            !round_lines.is_empty(),
            "round {round}: child acknowledged nothing"
        );
        for line in round_lines {
            // A line cut by the kill has fewer fields; it was not acknowledged.
            let parts: Vec<&str> = line.split(' ').collect();
            let [id, len, sum] = parts[..] else { continue };
            let (Ok(id), Ok(len), Ok(sum)) = (id.parse::<MessageId>(), len.parse(), sum.parse())
            else {
                continue;
            };
            acked.insert(id, (len, sum));
        }
        check(dir.path(), &acked, round);
    }
    acked.len()
}

fn check(dir: &std::path::Path, acked: &HashMap<MessageId, (usize, u64)>, round: usize) {
    let queue = Queue::open(dir, QueueOptions::default()).expect("reopen after kill");
    for (id, (len, sum)) in acked {
        let body = match queue.message_body(*id) {
            Ok(b) => b,
            Err(e) => panic!("round {round}: acknowledged {id} lost: {e}"),
        };
        assert_eq!(
            (body.len(), checksum(&body)),
            (*len, *sum),
            "round {round}: {id} damaged"
        );
    }
    // Every lease of the dead child is due again: all messages can be taken.
    let far = SystemTime::now() + Duration::from_secs(1 << 40);
    let leases = queue.take_due_any(far, usize::MAX).expect("take");
    let due: std::collections::HashSet<MessageId> = leases.iter().map(|l| l.id).collect();
    for id in acked.keys() {
        assert!(
            due.contains(id),
            "round {round}: {id} not due after restart"
        );
    }
}
