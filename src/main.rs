//! The `sealpost` command: argument parsing only; the library does the work.
fn main() {
    println!("sealpost {}", env!("CARGO_PKG_VERSION"));
}
