//! Test helpers that need the product's own types: the real writer, with the row plan the
//! connector builds at start-up, and batches as the pipeline hands them to it. Everything that
//! sees the connector from the outside is in the test kit (`testkit::prelude`).

use std::sync::Arc;

use sqlx::PgPool;

/// The real writer for `config`'s mappings, with the row plan the connector builds at start-up
/// (column types read from the database). The schema must be migrated.
pub async fn sink_writer(
    config: &kafka_pg_sink::config::Config,
    group: &str,
    metrics: kafka_pg_sink::metrics::Metrics,
) -> (
    kafka_pg_sink::sink::Writer,
    Arc<kafka_pg_sink::sink::encode::Decoder>,
) {
    use std::str::FromStr;
    let pool = PgPool::connect(config.postgres.url.expose()).await.unwrap();
    let (decoder, sql) = kafka_pg_sink::app::row_plan(&pool, config, Default::default())
        .await
        .unwrap();
    let writer = kafka_pg_sink::sink::Writer::new(
        sqlx::postgres::PgConnectOptions::from_str(config.postgres.url.expose()).unwrap(),
        Arc::clone(&decoder),
        sql,
        &config.schema,
        group.into(),
        metrics,
    );
    (writer, decoder)
}

/// One partition's records (all of `records[0]`'s partition, in offset order) as the pipeline
/// hands them to a writer, expecting the stored offset `expected`.
pub fn batch_of_records(
    records: Vec<kafka_pg_sink::record::Record>,
    expected: Option<i64>,
) -> kafka_pg_sink::sink::Batch {
    kafka_pg_sink::sink::Batch {
        tp: records[0].tp.clone(),
        expected,
        rewind: false,
        records,
        advance_to: None,
        epoch: 1,
        cancel: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    }
}
