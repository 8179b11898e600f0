//! Unit tests of the `offsets` subcommand: argument parsing, target resolution, the show table.

use super::set::{outside_the_log, resolve, Planned};
use super::show::{render, show_row};
use super::stored::Stored;
use super::*;
use clap::{CommandFactory, Parser};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: OffsetsCommand,
}

fn parse(args: &[&str]) -> Result<OffsetsCommand, clap::Error> {
    Cli::try_parse_from(std::iter::once("offsets").chain(args.iter().copied())).map(|c| c.command)
}

#[test]
fn set_takes_exactly_one_target() {
    Cli::command().debug_assert();
    assert!(parse(&["set", "--topic", "t"]).is_err());
    assert!(parse(&["set", "--topic", "t", "--to-earliest", "--to-latest"]).is_err());
    let Ok(OffsetsCommand::Set(args)) = parse(&["set", "--topic", "t", "--to-offset", "7"]) else {
        panic!("parses");
    };
    assert_eq!(args.target().unwrap(), Target::Offset(7));
    let Ok(OffsetsCommand::Set(args)) = parse(&[
        "set",
        "--topic",
        "t",
        "--to-timestamp",
        "1970-01-01T00:00:01Z",
    ]) else {
        panic!("parses");
    };
    assert_eq!(args.target().unwrap(), Target::Timestamp(1000));
    let Ok(OffsetsCommand::Set(args)) =
        parse(&["set", "--topic", "t", "--to-timestamp", "yesterday"])
    else {
        panic!("parses");
    };
    assert!(args.target().is_err());
}

#[test]
fn targets_resolve_against_the_watermarks() {
    assert_eq!(resolve(Target::Earliest, 3, 9, None), 3);
    assert_eq!(resolve(Target::Latest, 3, 9, None), 9);
    assert_eq!(resolve(Target::Offset(5), 3, 9, None), 5);
    assert_eq!(resolve(Target::Timestamp(0), 3, 9, Some(4)), 4);
    assert_eq!(
        resolve(Target::Timestamp(0), 3, 9, None),
        9,
        "nothing that recent: log end"
    );
    let p = |partition, new| Planned {
        partition,
        low: 3,
        high: 9,
        old: None,
        new,
    };
    let plan = [p(0, 3), p(1, 9), p(2, 2), p(3, 10)];
    assert_eq!(
        outside_the_log("t", &plan),
        [
            "t/2: 2 is outside the log, 3..=9",
            "t/3: 10 is outside the log, 3..=9"
        ]
    );
}

#[test]
fn show_rows_compute_lag_and_flag_offsets_outside_the_log() {
    let stored = |next_offset| Stored {
        next_offset,
        updated_ms: 0,
    };
    let row = show_row("t", 1, Some(&stored(7)), Some((2, 10)));
    assert_eq!(row[..6], ["t", "1", "7", "2", "10", "3"]);
    assert_eq!(row[6], "1970-01-01T00:00:00.000Z");
    assert_eq!(row[7], "");
    assert_eq!(show_row("t", 1, None, Some((2, 10)))[5], "8*");
    assert!(show_row("t", 1, Some(&stored(1)), Some((2, 10)))[7].contains("retention"));
    assert!(show_row("t", 1, Some(&stored(11)), Some((2, 10)))[7].contains("beyond log end"));
    assert!(show_row("t", 1, Some(&stored(11)), None)[7].contains("not on the broker"));
}

#[test]
fn render_aligns_columns() {
    let rows = vec![
        vec!["topic".to_string(), "lag".into(), "".into()],
        vec!["a".to_string(), "12345".into(), "".into()],
    ];
    assert_eq!(
        render(&rows, &[false, true, false]),
        "topic    lag\na      12345\n"
    );
}
