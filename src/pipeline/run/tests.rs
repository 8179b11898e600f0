//! The run loop driven through its channels, with a stand-in for the writers that commits every
//! batch: which records reach a batch, and when an offsets-only batch is cut.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::pipeline::Limits;
use crate::record::Record;
use crate::sink::Outcome;

const WAIT: Duration = Duration::from_millis(5);

fn tp() -> TopicPartition {
    TopicPartition::new("t", 0)
}

fn records(offsets: impl IntoIterator<Item = i64>) -> Event {
    let records: Vec<Record> = offsets
        .into_iter()
        .map(|o| Record::new(tp(), o, None, None, Some(b"{}"), Vec::new()))
        .collect();
    let bytes = records.iter().map(Record::size).sum();
    Event::Records { records, bytes }
}

/// Runs a pipeline over `events` (then end of input) with writers that commit every batch, and
/// returns the batches as (records' offsets, offsets-only target).
async fn run(events: Vec<Event>) -> Vec<(Vec<i64>, Option<i64>)> {
    let (events_tx, events_rx) = mpsc::channel(64);
    let (commands, _commands_rx) = std::sync::mpsc::channel();
    let (batches_tx, mut batches_rx) = mpsc::channel::<Batch>(8);
    let (results_tx, results_rx) = mpsc::unbounded_channel();
    let pipeline = Pipeline::new(
        Wiring {
            events: events_rx,
            commands,
            batches: batches_tx,
            results: results_rx,
        },
        Batcher::new(Limits {
            max_records: 1000,
            max_bytes: 1 << 20,
            max_wait: WAIT,
        }),
        Arc::new(FlowControl::new(10_000, 1 << 24)),
        1,
        false,
        Metrics::new().unwrap(),
        Arc::new(Health::default()),
    );
    let seen = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(batch) = batches_rx.recv().await {
            let offsets: Vec<i64> = batch.records.iter().map(|r| r.offset).collect();
            seen.push((offsets, batch.advance_to));
            let outcome = match batch.next_offset() {
                Some(next_offset) => Outcome::Committed { next_offset },
                None => Outcome::Aborted,
            };
            let _ = results_tx.send(WriteBatch {
                tp: batch.tp,
                epoch: batch.epoch,
                records: batch.records.len(),
                outcome,
            });
        }
        seen
    });
    let feed = tokio::spawn(async move {
        for event in events {
            events_tx.send(event).await.unwrap();
            // Each event is handled, and anything due is written, before the next.
            tokio::time::sleep(WAIT * 10).await;
        }
        events_tx.send(Event::EndOfInput).await.unwrap();
    });
    pipeline
        .run(CancellationToken::new(), WAIT, Duration::from_secs(5))
        .await
        .unwrap();
    feed.await.unwrap();
    seen.await.unwrap()
}

#[tokio::test]
async fn a_record_fetched_twice_is_written_once() {
    let batches = run(vec![
        Event::Assigned(vec![(tp(), Some(10))]),
        records(10..15),
        // Fetched again from 12 (a restart of fetching), and within one chunk too.
        records([12, 13, 14, 15, 16, 15, 16, 17]),
        records(5..18),
    ])
    .await;
    let written: Vec<i64> = batches.iter().flat_map(|(o, _)| o.clone()).collect();
    assert_eq!(written, (10..18).collect::<Vec<_>>(), "{batches:?}");
}

#[tokio::test]
async fn the_floor_moves_back_only_where_the_partition_restarts() {
    let batches = run(vec![
        Event::Assigned(vec![(tp(), Some(10))]),
        records(10..13),
        // An out-of-range reset to the log start: records from there are accepted again.
        Event::Reset {
            tp: tp(),
            offset: 0,
        },
        records(0..3),
    ])
    .await;
    let written: Vec<Vec<i64>> = batches.into_iter().map(|(o, _)| o).collect();
    assert_eq!(written, vec![vec![10, 11, 12], vec![0, 1, 2]]);
}

/// The mock broker writes no transaction markers: here librdkafka's position past them is fed
/// as it would report it.
#[tokio::test]
async fn a_position_past_committed_records_moves_the_stored_offset_there() {
    let batches = run(vec![
        Event::Assigned(vec![(tp(), Some(0))]),
        records(0..3),
        // A commit marker at 3: the position is 4 once the records are committed.
        Event::Positions(vec![(tp(), 4)]),
        // Records after an aborted transaction (4..=6) and its marker (7).
        records([8]),
        Event::Positions(vec![(tp(), 9)]),
        // A stale or equal position moves nothing.
        Event::Positions(vec![(tp(), 9)]),
        Event::Positions(vec![(tp(), 5)]),
    ])
    .await;
    assert_eq!(
        batches,
        vec![(vec![0, 1, 2], None), (vec![], Some(4)), (vec![8], None)],
        "the position 9 equals the offset after record 8: nothing to move"
    );
}

#[tokio::test]
async fn a_position_is_ignored_while_records_before_it_are_not_committed() {
    let batches = run(vec![
        Event::Assigned(vec![(tp(), None)]),
        // Nothing stored yet: a position alone never moves the offset.
        Event::Positions(vec![(tp(), 3)]),
        records(3..5),
        Event::Positions(vec![(tp(), 6)]),
    ])
    .await;
    // Record 3..5 is written; the position 6 arrived after it was committed: one marker at 5.
    assert_eq!(batches, vec![(vec![3, 4], None), (vec![], Some(6))]);
}
