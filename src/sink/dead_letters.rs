//! The dead-letter table: bad records, written in the batch's own transaction.

use serde_json::Value;
use sqlx::PgConnection;

use crate::convert::format_timestamp_millis;
use crate::error::Error;
use crate::ident::Ident;
use crate::kafka::Record;
use crate::pipeline::Stage;

/// SQL for the dead-letter table, built once from the configured schema.
#[derive(Clone, Debug)]
pub struct DeadLetterSql {
    pub insert: String,
}

impl DeadLetterSql {
    pub fn new(schema: &Ident) -> Self {
        Self {
            insert: format!(
                "INSERT INTO {}.\"dead_letters\" (group_id, topic, partition, \"offset\", target_table, stage, error, \
                 record_key, record_value, headers, record_timestamp) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11::timestamptz)",
                schema.quoted()
            ),
        }
    }
}

/// Headers as a JSON array of `[name, value]` pairs (order and repeats kept; values as UTF-8
/// text, invalid bytes replaced; the raw record key and value are stored as bytes).
pub fn headers_json(record: &Record) -> String {
    let pairs: Vec<Value> = record
        .headers
        .iter()
        .map(|(k, v)| {
            let value = v.as_ref().map_or(Value::Null, |b| {
                Value::String(String::from_utf8_lossy(b).into_owned())
            });
            Value::Array(vec![Value::String(k.clone()), value])
        })
        .collect();
    Value::Array(pairs).to_string()
}

/// Inserts one dead letter inside the caller's transaction.
pub async fn insert(
    tx: &mut PgConnection,
    sql: &DeadLetterSql,
    group: &str,
    record: &Record,
    table: &str,
    stage: Stage,
    error: &str,
) -> Result<(), Error> {
    sqlx::query(&sql.insert)
        .bind(group)
        .bind(&*record.tp.topic)
        .bind(record.tp.partition)
        .bind(record.offset)
        .bind(table)
        .bind(stage.as_str())
        .bind(error)
        .bind(record.key())
        .bind(record.value())
        .bind(headers_json(record))
        .bind(record.timestamp_ms.map(format_timestamp_millis))
        .execute(tx)
        .await?;
    Ok(())
}
