//! `x0x-sim`: runs the overlay simulator (`x0x::sim`) once and prints its report.
//!
//! ```text
//! cargo run --release --bin x0x-sim -- --agents N --publishers P --messages M \
//!     --latency-ms LO..HI --loss F --seed S [--rate R] [--payload BYTES] \
//!     [--kill FRACTION --at SECONDS] [--partition A|B --for SECONDS [--at SECONDS]] \
//!     [--tasklist-holders K] [--topics T --subscribers S [--hot N@MSG_PER_S]] \
//!     [--origin-frames on|off]
//! ```
//!
//! Progress goes to stderr; the last line on stdout is one JSON object. The arguments are
//! parsed by hand: a CLI crate would be a dependency of every program that links x0x.

use std::process::ExitCode;
use std::time::Duration;

use x0x::sim::{self, Config};

const USAGE: &str = "usage: x0x-sim --agents N --publishers P --messages M --latency-ms LO..HI \
--loss F --seed S [--rate MSG_PER_S] [--payload BYTES] [--join-gap-ms MS] [--settle S] \
[--kill FRACTION --at SECONDS] [--partition A|B --for SECONDS [--at SECONDS]] \
[--tasklist-holders K] [--topics T --subscribers S [--hot N@MSG_PER_S]] \
[--origin-frames on|off]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse(&args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("x0x-sim: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut progress = |line: &str| eprintln!("x0x-sim: {line}");
    match sim::run(&config, &mut progress) {
        Ok(report) => {
            println!("{}", report.to_json());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("x0x-sim: {error}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> Result<Config, String> {
    let mut config = Config::default();
    let mut kill_fraction = None;
    let mut partition = None;
    let mut at = None;
    let mut duration = None;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        if flag == "--help" || flag == "-h" {
            return Err("help".into());
        }
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |what: &str| -> Result<f64, String> {
            value
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{flag}: {what} expected, got {value:?}"))
        };
        let count = || -> Result<usize, String> {
            value
                .parse::<usize>()
                .map_err(|_| format!("{flag}: a whole number expected, got {value:?}"))
        };
        match flag.as_str() {
            "--agents" => config.agents = count()?,
            "--publishers" => config.publishers = count()?,
            "--messages" => config.messages = count()?,
            "--payload" => config.payload = count()?,
            "--seed" => {
                config.seed = value
                    .parse()
                    .map_err(|_| format!("--seed: a whole number expected, got {value:?}"))?;
            }
            "--rate" => config.rate = number("messages per second")?,
            "--loss" => config.loss = number("a probability")?,
            "--join-gap-ms" => config.join_gap = Duration::from_secs_f64(number("ms")? / 1e3),
            "--settle" => config.settle = Duration::from_secs_f64(number("seconds")?),
            "--tasklist-holders" => config.tasklist_holders = count()?,
            "--topics" => config.topics = count()?,
            "--subscribers" => config.subscribers = count()?,
            "--hot" => {
                // N subscribers, one of them publishing at MSG_PER_S: "100@100".
                let bad = || format!("--hot: N@MSG_PER_S expected, got {value:?}");
                let (n, rate) = value.split_once('@').ok_or_else(bad)?;
                let n = n.parse::<usize>().map_err(|_| bad())?;
                let rate = rate
                    .parse::<f64>()
                    .ok()
                    .filter(|r| r.is_finite())
                    .ok_or_else(bad)?;
                config.hot = Some((n, rate));
            }
            "--latency-ms" => {
                let (lo, hi) = value.split_once("..").unwrap_or((value, value));
                let ms = |text: &str| -> Result<Duration, String> {
                    text.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite() && *v >= 0.0)
                        .map(|v| Duration::from_secs_f64(v / 1e3))
                        .ok_or_else(|| {
                            format!("--latency-ms: LO..HI in ms expected, got {value:?}")
                        })
                };
                // Link latency is one way: an RTT is twice it.
                config.latency = (ms(lo)?, ms(hi)?);
            }
            "--origin-frames" => {
                config.origin_frames = match value.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => {
                        return Err(format!(
                            "--origin-frames: on or off expected, got {value:?}"
                        ))
                    }
                };
            }
            "--kill" => kill_fraction = Some(number("a fraction")?),
            "--partition" => {
                let (a, b) = value
                    .split_once('|')
                    .ok_or_else(|| format!("--partition: A|B expected, got {value:?}"))?;
                let side = |text: &str| {
                    text.parse::<f64>()
                        .map_err(|_| format!("--partition: A|B expected, got {value:?}"))
                };
                let (a, b) = (side(a)?, side(b)?);
                if a <= 0.0 || b <= 0.0 {
                    return Err("--partition: both sides must be positive".into());
                }
                partition = Some(a / (a + b));
            }
            "--at" => at = Some(Duration::from_secs_f64(number("seconds")?)),
            "--for" => duration = Some(Duration::from_secs_f64(number("seconds")?)),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if let Some(fraction) = kill_fraction {
        let at = at.ok_or("--kill needs --at SECONDS")?;
        config.kill = Some((fraction.min(1.0), at));
    }
    if let Some(side_a) = partition {
        let duration = duration.ok_or("--partition needs --for SECONDS")?;
        config.partition = Some((side_a, at.unwrap_or(Duration::from_secs(1)), duration));
    }
    Ok(config)
}
