//! The ceilings: the fastest raw path for the backlog's rows, per kind of work, without Kafka
//! and without the connector, so each mode's rate is compared with Postgres doing the same work.
//!
//! Per 10,000 records of one partition, one transaction: UPDATE of that partition's offsets row,
//! then
//! - [`Work::Upsert`]: COPY into a temporary stage, `INSERT ... SELECT ... ON CONFLICT (id) DO
//!   UPDATE`. The stage holds the newest row of each id, in id order, as the connector sends
//!   rows with integer keys: Postgres neither sorts nor removes duplicates.
//! - [`Work::Insert`]: COPY of every record's row, in offset order, straight into the table.
//! - [`Work::Accumulate`]: COPY of the chunk pre-aggregated per (account, hour), one row per key
//!   in key order, into a temporary stage, then `INSERT ... SELECT ... ON CONFLICT DO UPDATE`
//!   adding to the totals: what the connector would send if it pre-aggregated each batch.
//!
//! The COPY is in binary format, the server's fastest input (it parses no number or timestamp
//! text), which the connector also uses for these column types; it is formatted before the clock
//! starts, so the figure is the database's, not this process's. Run on one connection and on two
//! connections writing disjoint partitions (hence disjoint ids) in parallel.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use kafka_pg_sink::sink::encode::binary::{self, BinType};
use sqlx::{Connection, PgConnection};
use tokio::sync::Barrier;

use super::clock::push_rfc3339_ms;
use super::infra::{Database, Server};
use super::workload::{copy_line, parse_cents, Truth, Workload};
use super::{procs, say};

pub const BATCH_ROWS: usize = 10_000;

/// The kind of work a ceiling measures: the statements of the connector mode it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Work {
    Upsert,
    Insert,
    Accumulate,
}

impl Work {
    pub fn name(self) -> &'static str {
        match self {
            Self::Upsert => "upsert",
            Self::Insert => "insert",
            Self::Accumulate => "accumulate",
        }
    }

    /// What one transaction does, for the settings printed with the results.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Upsert => "offsets UPDATE, binary COPY of the newest row per id in id order into a temp stage, INSERT ... SELECT ... ON CONFLICT DO UPDATE",
            Self::Insert => "offsets UPDATE, binary COPY of every record's row in offset order straight into the table",
            Self::Accumulate => "offsets UPDATE, binary COPY of one row per (account, hour) with the chunk's sum and count, in key order, into a temp stage, INSERT ... SELECT ... ON CONFLICT DO UPDATE adding them",
        }
    }

    fn ddl(self) -> &'static str {
        match self {
            Self::Upsert => {
                "CREATE TABLE bench_ceiling (id bigint PRIMARY KEY, account text, \
                amount numeric(14,2), ts timestamptz, meta jsonb)"
            }
            Self::Insert => {
                "CREATE TABLE bench_ceiling (id bigint, account text, \
                amount numeric(14,2), ts timestamptz, meta jsonb)"
            }
            Self::Accumulate => {
                "CREATE TABLE bench_ceiling (account text, hour timestamptz, \
                total numeric, events bigint, PRIMARY KEY (account, hour))"
            }
        }
    }

    /// The temporary stage, for the kinds that apply one.
    fn stage(self) -> Option<&'static str> {
        match self {
            Self::Upsert => Some(STAGE),
            Self::Insert => None,
            Self::Accumulate => Some(ACC_STAGE),
        }
    }

    /// The statement that applies the stage.
    fn apply(self) -> Option<&'static str> {
        match self {
            Self::Upsert => Some(UPSERT),
            Self::Insert => None,
            Self::Accumulate => Some(ACC_MERGE),
        }
    }

    fn copy(self) -> &'static str {
        match self {
            Self::Upsert => COPY_STAGE,
            Self::Insert => COPY_TABLE,
            Self::Accumulate => ACC_COPY,
        }
    }

    /// Columns per row: the insert has no `ord`.
    fn types(self) -> &'static [BinType] {
        match self {
            Self::Upsert => &TYPES,
            Self::Insert => &TYPES[..5],
            Self::Accumulate => &ACC_TYPES,
        }
    }
}

const OFFSETS_DDL: &str =
    "CREATE TABLE bench_ceiling_offsets (partition integer PRIMARY KEY, next_offset bigint NOT NULL)";
const STAGE: &str = "CREATE TEMP TABLE bench_stage ON COMMIT DELETE ROWS AS \
    SELECT id, account, amount, ts, meta, NULL::bigint AS ord FROM bench_ceiling WITH NO DATA";
const ADVANCE: &str = "UPDATE bench_ceiling_offsets SET next_offset = $1 WHERE partition = $2";
const COPY_STAGE: &str =
    "COPY pg_temp.bench_stage (id, account, amount, ts, meta, ord) FROM STDIN (FORMAT binary)";
const COPY_TABLE: &str =
    "COPY bench_ceiling (id, account, amount, ts, meta) FROM STDIN (FORMAT binary)";
/// The stage's column types, in COPY order.
const TYPES: [BinType; 6] = [
    BinType::Int8,
    BinType::Text,
    BinType::Numeric,
    BinType::Timestamptz,
    BinType::Jsonb,
    BinType::Int8,
];
const ACC_STAGE: &str = "CREATE TEMP TABLE bench_acc_stage (account text, hour timestamptz, \
    total numeric, events bigint) ON COMMIT DELETE ROWS";
const ACC_COPY: &str =
    "COPY pg_temp.bench_acc_stage (account, hour, total, events) FROM STDIN (FORMAT binary)";
const ACC_TYPES: [BinType; 4] = [
    BinType::Text,
    BinType::Timestamptz,
    BinType::Numeric,
    BinType::Int8,
];
const ACC_MERGE: &str = "INSERT INTO bench_ceiling AS t (account, hour, total, events) \
    SELECT account, hour, total, events FROM pg_temp.bench_acc_stage \
    ON CONFLICT (account, hour) DO UPDATE SET total = t.total + EXCLUDED.total, \
    events = t.events + EXCLUDED.events";
const UPSERT: &str = "INSERT INTO bench_ceiling AS t (id, account, amount, ts, meta) \
    SELECT id, account, amount, ts, meta FROM pg_temp.bench_stage \
    ON CONFLICT (id) DO UPDATE SET account = EXCLUDED.account, \
    amount = EXCLUDED.amount, ts = EXCLUDED.ts, meta = EXCLUDED.meta";

struct Batch {
    partition: i32,
    next_offset: i64,
    /// The whole binary COPY data, header and trailer included.
    data: Vec<u8>,
}

/// One load: how many connections, how long, and the CPU it cost.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Load {
    pub connections: usize,
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_s: f64,
    pub postgres_cpu_s: f64,
    /// Busy CPU of the whole machine (Postgres plus anything else running).
    pub machine_busy_s: f64,
    /// For a load measured again between the modes: the mode it followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after_mode: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Ceiling {
    pub work: Work,
    pub batch_rows: usize,
    pub loads: Vec<Load>,
    /// The better of the loads: what every mode's `ratio_to_ceiling` divides by.
    pub rows_per_s: f64,
    /// The two-connection load again after each mode: the machine's speed drifts within
    /// minutes, so each mode is bracketed by a ceiling measured just before and just after it.
    pub again: Vec<Load>,
    /// The formatted batches and what they must leave in the table, kept for the loads measured
    /// again (about the backlog's size in memory; formatting them took a second each time).
    #[serde(skip)]
    input: Option<Arc<Input>>,
}

/// What every load of the ceiling sends and verifies.
struct Input {
    batches: Arc<Vec<Batch>>,
    truth: Truth,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} batches", self.batches.len())
    }
}

impl Ceiling {
    /// The latest two-connection load: the ceiling just before the next mode.
    pub fn latest_two_connections(&self) -> Option<f64> {
        self.again
            .last()
            .or_else(|| self.loads.iter().rfind(|l| l.connections == 2))
            .map(|l| l.rows_per_s)
            .filter(|r| *r > 0.0)
    }
}

pub async fn run(server: &Server, work: &Workload, db_prefix: &str, kind: Work) -> Result<Ceiling> {
    let started = Instant::now();
    let batches = Arc::new(build(work, kind)?);
    let name = kind.name();
    say(&format!(
        "{name} ceiling: {} batches of up to {BATCH_ROWS} records formatted in {:.1} s",
        batches.len(),
        started.elapsed().as_secs_f64()
    ));
    let truth = work.truth(work.backlog);
    let mut loads = Vec::new();
    for connections in [1, 2] {
        if connections > work.partitions {
            say(&format!(
                "{name} ceiling: one partition only, so no disjoint two-connection load"
            ));
            continue;
        }
        let db = format!("{db_prefix}_{name}_ceiling{connections}");
        let load = load(server, &db, kind, &batches, connections, &truth).await?;
        say(&format!(
            "{name} ceiling, {connections} connection(s): {} rows in {:.2} s = {:.0} rows/s (CPU s: postgres {:.1}, machine busy {:.1} of {:.1})",
            load.rows, load.seconds, load.rows_per_s, load.postgres_cpu_s, load.machine_busy_s,
            load.seconds * work_cpus()
        ));
        loads.push(load);
    }
    let best = loads.iter().map(|l| l.rows_per_s).fold(0.0, f64::max);
    Ok(Ceiling {
        work: kind,
        batch_rows: BATCH_ROWS,
        loads,
        rows_per_s: best,
        again: Vec::new(),
        input: Some(Arc::new(Input { batches, truth })),
    })
}

impl Ceiling {
    /// The two-connection load once more, after `mode`, added to [`Self::again`]; nothing with a
    /// single partition.
    pub async fn again(&mut self, server: &Server, db_prefix: &str, mode: &str) -> Result<()> {
        let two = self.loads.iter().any(|l| l.connections == 2);
        let Some(input) = self.input.clone().filter(|_| two) else {
            return Ok(());
        };
        let kind = self.work;
        let name = format!("{db_prefix}_{}_ceiling2_after_{mode}", kind.name());
        let mut load = load(server, &name, kind, &input.batches, 2, &input.truth).await?;
        load.after_mode = Some(mode.to_owned());
        say(&format!(
            "{} ceiling again after {mode}, 2 connections: {} rows in {:.2} s = {:.0} rows/s (CPU s: postgres {:.1})",
            kind.name(), load.rows, load.seconds, load.rows_per_s, load.postgres_cpu_s
        ));
        self.again.push(load);
        Ok(())
    }
}

fn work_cpus() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// Chunks of each partition's backlog, partitions taken in turn, as `kind` sends them.
fn build(work: &Workload, kind: Work) -> Result<Vec<Batch>> {
    let chunked: Vec<Vec<&[u32]>> = work
        .backlog_by_partition
        .iter()
        .map(|list| list.chunks(BATCH_ROWS).collect())
        .collect();
    let rounds = chunked.iter().map(Vec::len).max().unwrap_or(0);
    let mut batches = Vec::new();
    for round in 0..rounds {
        for (partition, chunks) in chunked.iter().enumerate() {
            let Some(chunk) = chunks.get(round) else {
                continue;
            };
            let lines: Vec<String> = match kind {
                Work::Upsert => newest_by_id(work, chunk)
                    .into_iter()
                    .map(|i| line_of(work, i))
                    .collect(),
                Work::Insert => chunk.iter().map(|&i| line_of(work, i)).collect(),
                Work::Accumulate => per_account_hour(work, chunk),
            };
            let types = kind.types();
            let mut data = Vec::with_capacity(chunk.len() * 200);
            data.extend_from_slice(binary::HEADER);
            for line in lines {
                let row = binary::start_row(&mut data);
                for (field, &ty) in line.trim_end_matches('\n').split('\t').zip(types) {
                    ensure!(
                        binary::encode(ty, field, &mut data),
                        "the workload's {field:?} has no exact binary form as {ty:?}"
                    );
                }
                binary::end_row(&mut data, row, types.len() as u16);
            }
            data.extend_from_slice(binary::TRAILER);
            batches.push(Batch {
                partition: partition as i32,
                next_offset: (round * BATCH_ROWS + chunk.len()) as i64,
                data,
            });
        }
    }
    Ok(batches)
}

/// Record `i` as a COPY text line.
fn line_of(work: &Workload, i: u32) -> String {
    let mut line = String::new();
    copy_line(&work.records[i as usize], &mut line);
    line
}

/// `chunk` summed per (account, hour) as COPY text lines (account, hour, total, events), in key
/// order, as a connector pre-aggregating the batch would send them.
fn per_account_hour(work: &Workload, chunk: &[u32]) -> Vec<String> {
    const HOUR_MS: i64 = 3_600_000;
    let mut sums: std::collections::BTreeMap<(String, i64), (u64, u64)> = Default::default();
    for &i in chunk {
        let r = &work.records[i as usize];
        let key = (
            format!("acct-{}", r.account),
            r.ts_ms.div_euclid(HOUR_MS) * HOUR_MS,
        );
        let sum = sums.entry(key).or_default();
        sum.0 += u64::from(r.cents);
        sum.1 += 1;
    }
    sums.into_iter()
        .map(|((account, hour), (cents, events))| {
            let mut line = format!("{account}\t");
            push_rfc3339_ms(&mut line, hour);
            line.push_str(&format!("\t{}.{:02}\t{events}\n", cents / 100, cents % 100));
            line
        })
        .collect()
}

/// The newest record of each id in `chunk`, in id order.
fn newest_by_id(work: &Workload, chunk: &[u32]) -> Vec<u32> {
    let mut newest: std::collections::HashMap<i64, u32> = Default::default();
    for &i in chunk {
        newest.insert(work.records[i as usize].id, i);
    }
    let mut rows: Vec<(i64, u32)> = newest.into_iter().collect();
    rows.sort_unstable();
    rows.into_iter().map(|(_, i)| i).collect()
}

async fn load(
    server: &Server,
    name: &str,
    kind: Work,
    batches: &Arc<Vec<Batch>>,
    connections: usize,
    truth: &Truth,
) -> Result<Load> {
    let db = server.create_db(name).await?;
    let result = load_into(server, &db, kind, batches, connections, truth).await;
    server.drop_db(db).await;
    result
}

async fn load_into(
    server: &Server,
    db: &Database,
    kind: Work,
    batches: &Arc<Vec<Batch>>,
    connections: usize,
    truth: &Truth,
) -> Result<Load> {
    db.exec(kind.ddl()).await?;
    db.exec(OFFSETS_DDL).await?;
    sqlx::query("INSERT INTO bench_ceiling_offsets SELECT p, 0 FROM generate_series(0, $1) p")
        .bind(batches.iter().map(|b| b.partition).max().unwrap_or(0))
        .execute(&db.pool)
        .await?;
    server.checkpoint().await;
    let barrier = Arc::new(Barrier::new(connections + 1));
    let mut tasks = Vec::new();
    for c in 0..connections {
        let mine: Vec<usize> = (0..batches.len())
            .filter(|&i| batches[i].partition as usize % connections == c)
            .collect();
        let mut conn = PgConnection::connect(&db.url).await?;
        if let Some(stage) = kind.stage() {
            sqlx::raw_sql(stage).execute(&mut conn).await?;
        }
        let (batches, barrier) = (batches.clone(), barrier.clone());
        tasks.push(tokio::spawn(write(conn, kind, batches, mine, barrier)));
    }
    barrier.wait().await;
    let cpu_before = procs::postgres_cpu_seconds(server.postmaster);
    let (busy_before, _) = procs::machine_cpu_seconds();
    let started = Instant::now();
    // The connections stay open until the CPU is read: a closed backend's CPU is gone.
    let mut open = Vec::new();
    for task in tasks {
        open.push(task.await.context("ceiling writer panicked")??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let postgres_cpu_s = procs::postgres_cpu_seconds(server.postmaster) - cpu_before;
    let machine_busy_s = procs::machine_cpu_seconds().0 - busy_before;
    drop(open);
    let summed = match kind {
        Work::Accumulate => "SELECT count(*), sum(total)::text FROM bench_ceiling",
        Work::Upsert | Work::Insert => "SELECT count(*), sum(amount)::text FROM bench_ceiling",
    };
    let (rows, sum): (i64, Option<String>) = sqlx::query_as(summed).fetch_one(&db.pool).await?;
    let (want_rows, want_cents) = match kind {
        Work::Upsert => (truth.keys, truth.last_cents),
        Work::Insert => (truth.records, truth.total_cents),
        Work::Accumulate => (truth.account_hours, truth.total_cents),
    };
    ensure!(
        rows as u64 == want_rows && sum.as_deref().and_then(parse_cents) == Some(want_cents),
        "{} ceiling table holds {rows} rows (sum {sum:?}), expected {want_rows} rows (sum {want_cents} cents)",
        kind.name()
    );
    Ok(Load {
        connections,
        rows: truth.records,
        seconds,
        rows_per_s: truth.records as f64 / seconds,
        postgres_cpu_s,
        machine_busy_s,
        after_mode: None,
    })
}

async fn write(
    mut conn: PgConnection,
    kind: Work,
    batches: Arc<Vec<Batch>>,
    mine: Vec<usize>,
    start: Arc<Barrier>,
) -> Result<PgConnection> {
    start.wait().await;
    for i in mine {
        let batch = &batches[i];
        let mut tx = conn.begin().await?;
        sqlx::query(ADVANCE)
            .bind(batch.next_offset)
            .bind(batch.partition)
            .execute(&mut *tx)
            .await?;
        let mut copy = tx.copy_in_raw(kind.copy()).await?;
        copy.send(batch.data.as_slice()).await?;
        copy.finish().await?;
        if let Some(apply) = kind.apply() {
            sqlx::query(apply).execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    Ok(conn)
}
