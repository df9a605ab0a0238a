//! `sealpost-bench`: SMTP load generator and discarding sink. Argument
//! parsing only; the work is in the library (`bench/src/lib.rs`).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use sealpost_bench::config_gen::{self, ScaleOptions};
use sealpost_bench::{SendOptions, Sink, SinkOptions};

#[derive(Parser)]
#[command(
    name = "sealpost-bench",
    version,
    about = "SMTP load generator and discarding sink"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a configuration with many managed domains (issue 17 scale).
    GenConfig {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        domains: u32,
        #[arg(long, default_value_t = 10_000)]
        tenants: u32,
        /// The SMTP listener's address.
        #[arg(long, default_value = "127.0.0.1:2525")]
        listen: String,
        /// `[server] data_dir`.
        #[arg(long, default_value = "data")]
        data_dir: String,
        /// `[admin] socket`.
        #[arg(long, default_value = "data/admin.sock")]
        admin_socket: String,
    },
    /// Accept SMTP, discard bodies, count messages by X-Bench-Id.
    Sink {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long)]
        listen: SocketAddr,
        /// Offer STARTTLS with a self-signed certificate made at start.
        #[arg(long)]
        tls_self_signed: bool,
        /// Stop after this many distinct messages.
        #[arg(long)]
        expect: Option<u64>,
        /// Stop after this many seconds without a new message.
        #[arg(long, default_value_t = 30.0)]
        idle_timeout: f64,
    },
    /// Send messages over concurrent connections and report rate and latency.
    Send {
        /// The SMTP server to load.
        #[arg(long)]
        to: SocketAddr,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 100)]
        messages_per_connection: usize,
        /// Message size in octets.
        #[arg(long, default_value_t = 10240)]
        size: usize,
        /// Use STARTTLS (any server certificate is accepted).
        #[arg(long)]
        starttls: bool,
        #[arg(long, default_value = "bench@sender.bench.invalid")]
        from: String,
        /// Recipients of every message, comma-separated.
        #[arg(long, default_value = "bench@sink.bench.invalid")]
        rcpt: String,
        #[arg(long, default_value = "sealpost-bench.invalid")]
        ehlo: String,
        /// Prefix of the X-Bench-Id values (default: the start time).
        #[arg(long)]
        run_id: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::GenConfig {
            out,
            domains,
            tenants,
            listen,
            data_dir,
            admin_socket,
        } => {
            let scale = ScaleOptions { domains, tenants };
            let main = config_gen::main_section(&listen, &data_dir, &admin_socket);
            std::fs::write(&out, config_gen::single_file(&main, &scale))?;
        }
        Command::Sink {
            listen,
            tls_self_signed,
            expect,
            idle_timeout,
        } => {
            let options = SinkOptions {
                listen,
                tls_self_signed,
                expect,
                idle_timeout: Duration::from_secs_f64(idle_timeout),
            };
            let sink = Sink::bind(options).await?;
            println!("listening on {}", sink.local_addr()?);
            let report = sink.run().await;
            println!("{report}");
            println!("{}", report.to_json());
        }
        Command::Send {
            to,
            connections,
            messages_per_connection,
            size,
            starttls,
            from,
            rcpt,
            ehlo,
            run_id,
        } => {
            let run_id = run_id.unwrap_or_else(|| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                format!("run{}", now.as_millis())
            });
            let options = SendOptions {
                to,
                connections,
                messages_per_connection,
                size,
                starttls,
                from,
                rcpt,
                ehlo,
                run_id,
            };
            let report = sealpost_bench::send::run(options).await?;
            println!("{report}");
            println!("{}", report.to_json());
        }
    }
    Ok(())
}
