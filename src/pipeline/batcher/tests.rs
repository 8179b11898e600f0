use std::collections::HashMap;

use testkit::rng::Rng;

use super::*;

fn record(partition: i32, offset: i64, size: usize) -> Record {
    Record::new(
        TopicPartition::new("t", partition),
        offset,
        None,
        None,
        Some(&vec![b'x'; size]),
        Vec::new(),
    )
}

#[test]
fn every_record_leaves_once_in_order_within_limits() {
    for seed in 1..200u64 {
        let mut rng = Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let limits = Limits {
            max_records: 1 + rng.below(20) as usize,
            max_bytes: 1 + rng.below(400) as usize,
            max_wait: Duration::from_millis(rng.below(50)),
        };
        let mut batcher = Batcher::new(limits);
        let start = Instant::now();
        let mut next_offset: HashMap<i32, i64> = HashMap::new();
        let mut pushed = 0usize;
        let mut seen: HashMap<i32, Vec<i64>> = HashMap::new();
        let mut dropped = 0usize;
        for step in 0..500u64 {
            let now = start + Duration::from_millis(step);
            let held: usize = batcher
                .buffers
                .values()
                .flat_map(|b| b.runs.iter().flatten())
                .map(Record::size)
                .sum();
            assert_eq!(batcher.bytes(), held, "seed {seed}: byte count drifted");
            for b in batcher.buffers.values() {
                let len: usize = b.runs.iter().map(Vec::len).sum();
                assert_eq!(b.len, len, "seed {seed}: record count drifted");
            }
            match rng.below(10) {
                0..=3 => {
                    let p = rng.below(4) as i32;
                    let o = next_offset.entry(p).or_insert(0);
                    batcher.push(record(p, *o, rng.below(100) as usize), now);
                    *o += 1;
                    pushed += 1;
                }
                4..=5 => {
                    let p = rng.below(4) as i32;
                    let o = next_offset.entry(p).or_insert(0);
                    let run: Vec<Record> = (0..rng.below(6))
                        .map(|i| record(p, *o + i as i64, rng.below(100) as usize))
                        .collect();
                    *o += run.len() as i64;
                    pushed += run.len();
                    batcher.push_run(TopicPartition::new("t", p), run, now);
                }
                6..=8 => {
                    let busy_mask = rng.next_u64();
                    let drain = rng.below(4) == 0;
                    for (tp, batch) in
                        batcher.take_ready(now, drain, 1 + rng.below(4) as usize, |tp| {
                            busy_mask >> tp.partition & 1 == 1
                        })
                    {
                        assert!(
                            busy_mask >> tp.partition & 1 == 0,
                            "seed {seed}: busy partition flushed"
                        );
                        assert!(
                            !batch.is_empty() && batch.len() <= limits.max_records,
                            "seed {seed}"
                        );
                        let bytes: usize = batch.iter().map(Record::size).sum();
                        assert!(
                            batch.len() == 1 || bytes <= limits.max_bytes,
                            "seed {seed}: {bytes} bytes"
                        );
                        assert!(
                            batch.iter().all(|r| r.tp == tp),
                            "seed {seed}: mixed partitions"
                        );
                        seen.entry(tp.partition)
                            .or_default()
                            .extend(batch.iter().map(|r| r.offset));
                    }
                }
                _ => {
                    let p = rng.below(4) as i32;
                    let n = batcher.drop_partition(&TopicPartition::new("t", p));
                    dropped += n;
                    // Restart the partition's sequence after what was delivered, as a re-seek would.
                    let delivered = seen
                        .get(&p)
                        .and_then(|v| v.last().copied())
                        .map_or(0, |o| o + 1);
                    next_offset.insert(p, delivered);
                }
            }
        }
        for _ in 0..=pushed {
            for (tp, batch) in
                batcher.take_ready(start + Duration::from_secs(60), true, usize::MAX, |_| false)
            {
                seen.entry(tp.partition)
                    .or_default()
                    .extend(batch.iter().map(|r| r.offset));
            }
        }
        assert!(batcher.is_empty(), "seed {seed}");
        assert_eq!(batcher.bytes(), 0, "seed {seed}: byte count drifted");
        let delivered: usize = seen.values().map(Vec::len).sum();
        assert_eq!(
            delivered + dropped,
            pushed,
            "seed {seed}: records lost or duplicated"
        );
        for (p, offsets) in &seen {
            assert!(
                offsets.windows(2).all(|w| w[1] == w[0] + 1),
                "seed {seed}: partition {p} out of order: {offsets:?}"
            );
        }
    }
}

#[test]
fn waits_until_a_limit_is_reached() {
    let limits = Limits {
        max_records: 3,
        max_bytes: 1000,
        max_wait: Duration::from_millis(100),
    };
    let mut batcher = Batcher::new(limits);
    let t0 = Instant::now();
    batcher.push(record(0, 0, 1), t0);
    batcher.push(record(0, 1, 1), t0);
    assert!(batcher
        .take_ready(t0 + Duration::from_millis(99), false, 1, |_| false)
        .is_empty());
    let ready = batcher.take_ready(t0 + Duration::from_millis(100), false, 1, |_| false);
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].1.len(), 2);
    for o in 2..9 {
        batcher.push(record(0, o, 1), t0);
    }
    let ready = batcher.take_ready(t0, false, 1, |_| false);
    assert_eq!(
        ready[0].1.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_eq!(batcher.len(), 4);
}

#[test]
fn free_writers_take_the_fullest_due_buffers_first_then_the_longest_waiting() {
    let limits = Limits {
        max_records: 4,
        max_bytes: 1000,
        max_wait: Duration::from_millis(10),
    };
    let mut batcher = Batcher::new(limits);
    let t0 = Instant::now();
    // Partition 1 is full; 0 and 2 hold one record each, 0 waiting longer; 4 holds two, newer
    // than 0 and 2; 3 is not due yet.
    batcher.push(record(0, 0, 1), t0);
    for o in 0..4 {
        batcher.push(record(1, o, 1), t0 + Duration::from_millis(5));
    }
    batcher.push(record(2, 0, 1), t0 + Duration::from_millis(6));
    batcher.push(record(4, 0, 1), t0 + Duration::from_millis(8));
    batcher.push(record(4, 1, 1), t0 + Duration::from_millis(8));
    let now = t0 + Duration::from_millis(19);
    batcher.push(record(3, 0, 1), now);
    assert!(batcher.take_ready(now, false, 0, |_| false).is_empty());
    let order = |ready: Vec<(TopicPartition, Vec<Record>)>| {
        ready.iter().map(|(tp, _)| tp.partition).collect::<Vec<_>>()
    };
    assert_eq!(
        order(batcher.take_ready(now, false, 2, |_| false)),
        vec![1, 4]
    );
    assert_eq!(
        order(batcher.take_ready(now, false, 5, |_| false)),
        vec![0, 2]
    );
    // Partition 3 is not due without a flush, and is taken with one.
    assert!(batcher.take_ready(now, false, 5, |_| false).is_empty());
    assert_eq!(order(batcher.take_ready(now, true, 5, |_| false)), vec![3]);
    assert!(batcher.is_empty());
}

#[test]
fn a_starving_buffer_goes_before_fuller_ones() {
    let limits = Limits {
        max_records: 4,
        max_bytes: 1000,
        max_wait: Duration::from_millis(10),
    };
    let t0 = Instant::now();
    let now = t0 + limits.max_wait * STARVE_AFTER_WAITS;
    // Partition 0: one record since t0; partition 1: full since `now`.
    let filled = || {
        let mut batcher = Batcher::new(limits);
        batcher.push(record(0, 0, 1), t0);
        for o in 0..4 {
            batcher.push(record(1, o, 1), now);
        }
        batcher
    };
    let first = |at| filled().take_ready(at, false, 1, |_| false)[0].0.partition;
    // Just under the bound the full buffer goes first; at the bound the starving one does.
    assert_eq!(first(now - Duration::from_millis(1)), 1);
    assert_eq!(first(now), 0);
}

#[test]
fn a_light_partition_is_not_starved_by_partitions_that_are_always_full() {
    let limits = Limits {
        max_records: 10,
        max_bytes: 1 << 20,
        max_wait: Duration::from_millis(100),
    };
    let mut batcher = Batcher::new(limits);
    let t0 = Instant::now();
    let mut next = [0i64; 4];
    let mut light_taken_at = None;
    for round in 0..150u64 {
        let now = t0 + Duration::from_millis(10 * round);
        // Partitions 0..3 receive 10 records every round: always full, forever.
        for p in 0..3 {
            let run = (0..10)
                .map(|i| record(p, next[p as usize] + i, 1))
                .collect();
            batcher.push_run(TopicPartition::new("t", p), run, now);
            next[p as usize] += 10;
        }
        if round == 1 {
            batcher.push(record(3, 0, 1), now);
        }
        // One free writer per round.
        for (tp, _) in batcher.take_ready(now, false, 1, |_| false) {
            if tp.partition == 3 && light_taken_at.is_none() {
                light_taken_at = Some(round);
            }
        }
    }
    let round = light_taken_at.expect("the light partition was never written");
    // Rounds are 10 ms apart: written once it has waited STARVE_AFTER_WAITS x max_wait (1 s).
    let bound = 1 + 10 * u64::from(STARVE_AFTER_WAITS) + 1;
    assert!(
        (bound - 2..=bound).contains(&round),
        "written in round {round}, expected by round {bound}"
    );
}

#[test]
fn a_chunk_splits_into_its_runs_in_order() {
    let parts = [0, 0, 1, 1, 1, 0, 2];
    let chunk: Vec<Record> = parts
        .iter()
        .enumerate()
        .map(|(i, &p)| record(p, i as i64, 10))
        .collect();
    let split: Vec<Vec<(i32, i64)>> = runs(chunk)
        .iter()
        .map(|run| run.iter().map(|r| (r.tp.partition, r.offset)).collect())
        .collect();
    assert_eq!(
        split,
        vec![
            vec![(0, 0), (0, 1)],
            vec![(1, 2), (1, 3), (1, 4)],
            vec![(0, 5)],
            vec![(2, 6)],
        ]
    );
    assert!(runs(Vec::new()).is_empty());
}
