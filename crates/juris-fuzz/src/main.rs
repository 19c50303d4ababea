//! `juris-fuzz TARGET [--seconds N] [--seed S]`: runs one fuzz target on its corpus and on
//! mutants for N seconds (default 60), printing the inputs run; `juris-fuzz list` names the
//! targets. A panic stops the run with the input written under `target/fuzz-crashes/`.

use std::time::{Duration, Instant};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first() else {
        eprintln!("usage: juris-fuzz TARGET|list [--seconds N] [--seed S]");
        return std::process::ExitCode::from(2);
    };
    if name == "list" {
        for target in juris_fuzz::TARGETS {
            println!("{}", target.name);
        }
        return std::process::ExitCode::SUCCESS;
    }
    let Some(target) = juris_fuzz::target(name) else {
        eprintln!("unknown target {name:?} (juris-fuzz list)");
        return std::process::ExitCode::from(2);
    };
    let value = |flag: &str, default: u64| -> Result<u64, String> {
        match args.iter().position(|a| a == flag) {
            None => Ok(default),
            Some(at) => args
                .get(at + 1)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{flag} needs a number")),
        }
    };
    let (seconds, seed) = match (value("--seconds", 60), value("--seed", 0)) {
        (Ok(seconds), Ok(seed)) => (seconds, seed),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let seed = if seed == 0 { rand::random() } else { seed };
    let until = Instant::now() + Duration::from_secs(seconds);
    println!("{}: seed {seed}, {seconds} s", target.name);
    match juris_fuzz::run(target, seed, |n| n % 1024 != 0 || Instant::now() < until) {
        Ok(report) => {
            println!("{}: {} inputs, no panic", target.name, report.inputs);
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot read the corpus: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
