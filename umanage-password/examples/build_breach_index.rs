//! Builds an offline breach index from a Have I Been Pwned `SHA1:COUNT` file.
//!
//! ```text
//! cargo run --release -p umanage-password --example build_breach_index -- pwned-passwords-sha1.txt pwned.idx
//! cargo run --release -p umanage-password --example build_breach_index -- pwned.idx --check 'P@ssw0rd'
//! ```

use std::path::Path;
use std::process::ExitCode;

use umanage_password::breach::offline::build_index_file;
use umanage_password::breach::{BuildOptions, OfflineIndex};
use umanage_password::normalize::NormalizedPassword;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [index, flag, password] if flag == "--check" => check(index, password),
        [input, output] => build(input, output),
        _ => {
            eprintln!("usage: build_breach_index INPUT.txt OUTPUT.idx");
            eprintln!("       build_breach_index INDEX.idx --check PASSWORD");
            ExitCode::from(2)
        }
    }
}

fn build(input: &str, output: &str) -> ExitCode {
    let started = std::time::Instant::now();
    match build_index_file(Path::new(input), Path::new(output), BuildOptions::default()) {
        Ok(stats) => {
            println!(
                "{} lines, {} distinct hashes, {} prefix bits, input {}, {:.1?}",
                stats.lines,
                stats.records,
                stats.prefix_bits,
                if stats.input_sorted {
                    "sorted (streamed)"
                } else {
                    "unsorted (sorted in memory)"
                },
                started.elapsed()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(index: &str, password: &str) -> ExitCode {
    let result = OfflineIndex::open(index).and_then(|index| {
        let password = NormalizedPassword::new(password)?;
        Ok(index.lookup(&password)?)
    });
    match result {
        Ok(Some(count)) => {
            println!("breached: seen {count} times");
            ExitCode::from(1)
        }
        Ok(None) => {
            println!("not found");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
