//! Schema Registry formats end to end: records serialized by Confluent's own Python serializers
//! (an implementation independent of the connector's decoder) against a registry, produced to
//! the broker, and checked as exact typed rows in Postgres.
//!
//! The registry is `SCHEMA_REGISTRY_URL`, or the test kit's Confluent-compatible server. Tests
//! that switch the registry off need the test kit's own server and say so when skipped.

use std::time::Duration;

use serde_json::{json, Value};
use testkit::prelude::*;

const FAST_BATCHES: &str = "[batch]\nmax_records = 50\nmax_wait_ms = 50\n";

const PAYMENTS: &str = "CREATE TABLE payments (
    id bigint PRIMARY KEY,
    amount numeric(20,4) NOT NULL,
    fee numeric(18,2),
    paid_at timestamptz,
    paid_ms timestamptz,
    booked_on date,
    at_clock time,
    ref uuid,
    note text,
    tags jsonb,
    city text,
    raw bytea,
    ratio double precision,
    state text,
    channel text
)";

/// A named type of its own subject, referenced by the payment schema.
const ADDRESS: &str = r#"{"type": "record", "name": "Address", "namespace": "shop",
  "fields": [{"name": "city", "type": "string"}, {"name": "zip", "type": ["null", "string"], "default": null}]}"#;

/// Registers [`ADDRESS`] under a subject of its own, and the reference the payment schema names
/// it by.
fn address_reference(registry: &SchemaRegistry) -> Reference {
    let subject = unique("shop-address");
    registry.register(&subject, SchemaType::Avro, ADDRESS, &[]);
    Reference {
        name: "shop.Address".into(),
        subject,
        version: 1,
    }
}

/// The payment schema; `extra` adds fields at the end (schema evolution).
fn payment_schema(extra: &str) -> String {
    format!(
        r#"{{"type": "record", "name": "Payment", "namespace": "shop", "fields": [
  {{"name": "id", "type": "long"}},
  {{"name": "amount", "type": {{"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 4}}}},
  {{"name": "fee", "type": ["null", {{"type": "fixed", "name": "Fee", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 2}}], "default": null}},
  {{"name": "paid_at", "type": {{"type": "long", "logicalType": "timestamp-micros"}}}},
  {{"name": "paid_ms", "type": {{"type": "long", "logicalType": "timestamp-millis"}}}},
  {{"name": "booked_on", "type": {{"type": "int", "logicalType": "date"}}}},
  {{"name": "at_clock", "type": {{"type": "long", "logicalType": "time-micros"}}}},
  {{"name": "ref", "type": {{"type": "string", "logicalType": "uuid"}}}},
  {{"name": "note", "type": ["null", "string"], "default": null}},
  {{"name": "tags", "type": {{"type": "array", "items": "string"}}}},
  {{"name": "address", "type": "shop.Address"}},
  {{"name": "raw", "type": "bytes"}},
  {{"name": "ratio", "type": "double"}},
  {{"name": "state", "type": {{"type": "enum", "name": "State", "symbols": ["NEW", "PAID", "VOID"]}}}}{extra}
]}}"#
    )
}

const KEY_SCHEMA: &str = r#"{"type": "record", "name": "PaymentKey", "namespace": "shop", "fields": [{"name": "id", "type": "long"}]}"#;

const CHANNEL: &str = r#",
  {"name": "channel", "type": ["null", "string"], "default": null}"#;

/// Payment `i`: the value for the serializer, and the row Postgres must hold, as text.
fn payment(i: i64, with_channel: bool) -> (Value, Vec<Option<String>>) {
    // Exact decimals around the edges: negative, many digits, trailing zeros.
    let amount = format!(
        "{}{}.{:04}",
        if i % 3 == 0 { "-" } else { "" },
        i * 1_000_003 % 9_999_999_999,
        i % 10_000
    );
    let fee = (i % 4 != 0).then(|| format!("{}.{:02}", i % 1000, i % 100));
    let micros = 1_764_780_780_123_456i64 + i * 1_000_001;
    let millis = -86_400_000i64 * 365 + i * 999;
    let days = 20_425 + i;
    let note = (i % 5 != 0).then(|| format!("note {i}: tab\tquote\" ü"));
    let state = ["NEW", "PAID", "VOID"][(i % 3) as usize];
    let channel = (with_channel && i % 2 == 0).then(|| format!("web-{i}"));
    let mut value = json!({
        "id": i,
        "amount": {"$decimal": amount},
        "fee": fee.as_ref().map(|f| json!({"$decimal": f})),
        "paid_at": {"$timestamp": iso_micros(micros)},
        "paid_ms": {"$timestamp": iso_micros(millis * 1000)},
        "booked_on": {"$date": date(days)},
        "at_clock": {"$time": format!("12:34:{:02}.{:06}", i % 60, i % 1_000_000)},
        "ref": {"$uuid": format!("5a0b6f3e-8d4c-4a1e-9b2f-{:012x}", i)},
        "note": note,
        "tags": [format!("t{i}"), "x"],
        "address": {"city": format!("City {i}"), "zip": null},
        "raw": {"$bytes": format!("00ff{:02x}", i % 256)},
        "ratio": i as f64 / 10.0,
        "state": state,
    });
    if with_channel {
        value["channel"] = json!(channel);
    }
    let row = vec![
        Some(i.to_string()),
        Some(trim_sign_zero(&amount)),
        fee,
        Some(micros.to_string()),
        Some((millis * 1000).to_string()),
        Some(date(days)),
        Some(
            format!("12:34:{:02}.{:06}", i % 60, i % 1_000_000)
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_owned(),
        ),
        Some(format!("5a0b6f3e-8d4c-4a1e-9b2f-{:012x}", i)),
        note,
        Some(format!(r#"["t{i}", "x"]"#)),
        Some(format!("City {i}")),
        Some(format!("00ff{:02x}", i % 256)),
        Some(format!("{}", i as f64 / 10.0)),
        Some(state.to_owned()),
        channel,
    ];
    (value, row)
}

/// `-0.0000` is how a zero amount would be written with a sign; numeric prints it unsigned.
fn trim_sign_zero(amount: &str) -> String {
    match amount.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_owned(),
        _ => amount.to_owned(),
    }
}

/// Microseconds since the epoch as RFC 3339 UTC with six fraction digits.
fn iso_micros(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}.{frac:06}Z",
        date(days),
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    )
}

/// Days since the epoch as `YYYY-MM-DD` (civil calendar, from Howard Hinnant's algorithm).
fn date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A payment row as Postgres prints it: the id and amount, then the nullable columns.
type PaymentRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The rows as text, in the order of [`payment`]'s row.
async fn rows(db: &TestDb) -> Vec<Vec<Option<String>>> {
    let rows: Vec<PaymentRow> = sqlx::query_as(
        "SELECT id::text, amount::text, fee::text, \
         (extract(epoch FROM paid_at) * 1000000)::bigint::text, \
         (extract(epoch FROM paid_ms) * 1000000)::bigint::text, \
         booked_on::text, at_clock::text, ref::text, note, tags::text, city, encode(raw, 'hex'), \
         ratio::text, state, channel FROM payments ORDER BY payments.id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|r| {
            vec![
                Some(r.0),
                Some(r.1),
                r.2,
                r.3,
                r.4,
                r.5,
                r.6,
                r.7,
                r.8,
                r.9,
                r.10,
                r.11,
                r.12,
                r.13,
                r.14,
            ]
        })
        .collect()
}

/// The table holds exactly `expected`, compared row by row.
async fn assert_rows(db: &TestDb, expected: &[Vec<Option<String>>]) {
    let actual = rows(db).await;
    for (a, e) in actual.iter().zip(expected) {
        assert_eq!(a, e, "row of id {:?}", e[0]);
    }
    assert_eq!(actual.len(), expected.len());
}

fn mapping(topic: &str, registry: &SchemaRegistry) -> String {
    let auth = match registry.basic_auth() {
        Some((user, password)) => format!("username = \"{user}\"\npassword = \"{password}\"\n"),
        None => String::new(),
    };
    format!(
        "{FAST_BATCHES}\n[schema_registry]\nurl = \"{}\"\n{auth}\n\
         [[mappings]]\ntopic = \"{topic}\"\ntable = \"payments\"\nformat = \"avro\"\nkey_format = \"avro\"\n\
         key = [\"id\"]\n\
         columns = {{ id = \"key.id\", amount = \"value.amount\", fee = \"value.fee\", paid_at = \"value.paid_at\", \
         paid_ms = \"value.paid_ms\", booked_on = \"value.booked_on\", at_clock = \"value.at_clock\", ref = \"value.ref\", \
         note = \"value.note\", tags = \"value.tags\", city = \"value.address.city\", raw = \"value.raw\", \
         ratio = \"value.ratio\", state = \"value.state\", channel = \"value.channel\" }}\n",
        registry.url()
    )
}

async fn wait_for_log_end(built: &Built, ends: &[(i32, i64)]) {
    let done = eventually(Duration::from_secs(90), || async {
        built.stored_offsets().await == ends
    })
    .await;
    assert!(
        done,
        "stored offsets {:?} never reached {ends:?}",
        built.stored_offsets().await
    );
}

async fn dead_letters(db: &TestDb) -> Vec<(i64, String, String)> {
    sqlx::query_as(
        "SELECT \"offset\", stage, error FROM kafka_pg_sink.dead_letters ORDER BY \"offset\"",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_records_become_exact_typed_rows_through_references_and_schema_evolution() {
    let built = Scenario::new()
        .ddl(PAYMENTS)
        .topic("avro_payments")
        .build()
        .await;
    let registry = SchemaRegistry::start();
    let serializer = PySerializer::start(&registry);
    let topic = &built.topic;
    let references = [address_reference(&registry)];

    // 60 records with the first schema, then 60 with a newer one that adds an optional field:
    // the newer schema id arrives mid-stream.
    let mut producer = built.producer();
    let mut expected = Vec::new();
    for i in 0..120 {
        let evolved = i >= 60;
        let schema = payment_schema(if evolved { CHANNEL } else { "" });
        let (value, row) = payment(i, evolved);
        let value = serializer
            .try_avro(topic, false, &schema, &references, &value)
            .unwrap_or_else(|e| panic!("serializing payment {i}: {e:#}"));
        let key = serializer.avro(topic, true, KEY_SCHEMA, &json!({"id": i}));
        producer.send_bytes(topic, 0, Some(&key), Some(&value));
        expected.push(row);
    }
    producer.flush();

    let sink = built.sink(&mapping(topic, &registry));
    wait_for_log_end(&built, &[(0, 120)]).await;
    assert_rows(&built.db, &expected).await;
    assert!(dead_letters(&built.db).await.is_empty());
    // Each schema was fetched once, not once per record: the key's, the two values' (and the
    // reference of each).
    let ok = sink
        .metric(
            "kafka_pg_sink_schema_registry_requests_total",
            "outcome=\"ok\"",
        )
        .unwrap();
    assert!((3.0..=6.0).contains(&ok), "{ok} registry requests");
}

/// Serialized payments `range` with the schema that adds `extra`, keyed by id.
fn serialized(
    serializer: &PySerializer,
    topic: &str,
    range: std::ops::Range<i64>,
    extra: &str,
    references: &[Reference],
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let schema = payment_schema(extra);
    range
        .map(|i| {
            let (value, _) = payment(i, !extra.is_empty());
            let value = serializer
                .try_avro(topic, false, &schema, references, &value)
                .unwrap_or_else(|e| panic!("serializing payment {i}: {e:#}"));
            (
                serializer.avro(topic, true, KEY_SCHEMA, &json!({"id": i})),
                value,
            )
        })
        .collect()
}

fn produce(producer: &mut TestProducer, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) {
    for (key, value) in records {
        producer.send_bytes(topic, 0, Some(key), Some(value));
    }
    producer.flush();
}

async fn ready(sink: &Sink) -> Option<u16> {
    sink.get("/readyz").map(|(status, _)| status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_mid_stream_loses_nothing_dead_letters_nothing_and_flips_readiness() {
    if unless_own_registry("switches the registry off") {
        return;
    }
    let registry = SchemaRegistry::start();
    let built = Scenario::new()
        .ddl(PAYMENTS)
        .topic("avro_outage")
        .build()
        .await;
    let serializer = PySerializer::start(&registry);
    let topic = &built.topic;
    let references = [address_reference(&registry)];
    // Every phase is serialized up front (the serializer registers its schemas), each phase with
    // a schema the connector has not seen yet.
    let zip = r#",
  {"name": "zip2", "type": ["null", "string"], "default": null}"#;
    let phases = [
        serialized(&serializer, topic, 0..40, "", &references),
        serialized(&serializer, topic, 40..80, CHANNEL, &references),
        serialized(
            &serializer,
            topic,
            80..120,
            &format!("{CHANNEL}{zip}"),
            &references,
        ),
    ];
    let mut producer = built.producer();
    produce(&mut producer, topic, &phases[0]);
    let sink = built.sink(&mapping(topic, &registry));
    wait_for_log_end(&built, &[(0, 40)]).await;
    assert!(
        eventually(Duration::from_secs(30), || async {
            ready(&sink).await == Some(200)
        })
        .await,
        "the connector never became ready"
    );

    for (phase, outage) in [(1, Outage::ServerErrors), (2, Outage::Refuse)] {
        registry.set_outage(outage);
        produce(&mut producer, topic, &phases[phase]);
        let not_ready = eventually(Duration::from_secs(30), || async {
            ready(&sink).await == Some(503)
                && sink.metric("kafka_pg_sink_schema_registry_up", "") == Some(0.0)
        })
        .await;
        assert!(
            not_ready,
            "readiness did not go down during the {outage:?} outage"
        );
        // Nothing of the new phase is applied or dead-lettered while the registry is away.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let end = 40 * phase as i64;
        assert_eq!(built.stored_offsets().await, vec![(0, end)]);
        assert!(dead_letters(&built.db).await.is_empty());
        assert_eq!(
            built.db.scalar_i64("SELECT count(*) FROM payments").await,
            end
        );
        registry.set_outage(Outage::None);
        wait_for_log_end(&built, &[(0, end + 40)]).await;
        assert!(
            eventually(Duration::from_secs(30), || async {
                ready(&sink).await == Some(200)
            })
            .await,
            "readiness did not recover after the {outage:?} outage"
        );
    }
    assert!(dead_letters(&built.db).await.is_empty());
    let expected: Vec<_> = (0..120)
        .map(|i| {
            let mut row = payment(i, i >= 40).1;
            if i < 40 {
                row[14] = None;
            }
            row
        })
        .collect();
    assert_rows(&built.db, &expected).await;
    assert!(
        sink.metric(
            "kafka_pg_sink_schema_registry_requests_total",
            "outcome=\"unavailable\""
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        sink.metric("kafka_pg_sink_schema_registry_up", ""),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_payloads_become_dead_letters_with_precise_reasons_and_their_neighbours_apply()
{
    let built = Scenario::new()
        .ddl(PAYMENTS)
        .topic("avro_bad")
        .build()
        .await;
    let registry = SchemaRegistry::start();
    let serializer = PySerializer::start(&registry);
    let topic = &built.topic;
    let references = [address_reference(&registry)];
    let good = serialized(&serializer, topic, 0..6, "", &references);
    let key_of = |i: usize| good[i].0.clone();
    let body = &good[1].1;
    let mut truncated = body.clone();
    truncated.truncate(body.len() - 5);
    // The key schema's id with a payment body: decodes as one long, then bytes are left over.
    let mut wrong_schema = good[0].0[..5].to_vec();
    wrong_schema.extend_from_slice(&body[5..]);
    let mut unregistered = body.clone();
    unregistered[1..5].copy_from_slice(&0x7fff_fff0u32.to_be_bytes());
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("unknown magic byte 0x7b", br#"{"id": 1}"#.to_vec()),
        ("truncated: 2 byte(s)", vec![0, 0, 1]),
        ("does not decode with its schema", truncated),
        ("byte(s) left after the record", wrong_schema),
        ("is not registered in the schema registry", unregistered),
    ];
    let mut producer = built.producer();
    // Good records first, so the registry has found schemas before the unregistered id comes.
    produce(&mut producer, topic, &good[..2]);
    let sink = built.sink(&mapping(topic, &registry));
    wait_for_log_end(&built, &[(0, 2)]).await;
    for (i, (_, value)) in bad.iter().enumerate() {
        producer.send_bytes(topic, 0, Some(&key_of(2)), Some(value));
        producer.send_bytes(topic, 0, Some(&good[2 + i % 4].0), Some(&good[2 + i % 4].1));
    }
    producer.flush();
    wait_for_log_end(&built, &[(0, 12)]).await;
    let letters = dead_letters(&built.db).await;
    assert_eq!(letters.len(), bad.len(), "{letters:#?}");
    for ((offset, stage, error), (reason, _)) in letters.iter().zip(&bad) {
        assert_eq!(stage, "decode", "offset {offset}: {error}");
        assert!(
            error.contains(reason),
            "offset {offset}: `{error}` lacks `{reason}`"
        );
    }
    assert!(letters
        .iter()
        .skip(2)
        .all(|(_, _, e)| e.contains("schema id")));
    assert_eq!(
        built.db.scalar_i64("SELECT count(*) FROM payments").await,
        6,
        "every good record is applied"
    );
    drop(sink);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_registry_credentials_stop_the_connector_and_dead_letter_nothing() {
    if unless_own_registry("requires credentials on the registry") {
        return;
    }
    let registry = SchemaRegistry::start_own()
        .expect("a registry")
        .with_basic_auth("connector", "right");
    let built = Scenario::new()
        .ddl(PAYMENTS)
        .topic("avro_auth")
        .build()
        .await;
    let serializer = PySerializer::start(&registry);
    let topic = &built.topic;
    let references = [address_reference(&registry)];
    let mut producer = built.producer();
    produce(
        &mut producer,
        topic,
        &serialized(&serializer, topic, 0..5, "", &references),
    );
    let rest = mapping(topic, &registry).replace("password = \"right\"", "password = \"wrong\"");
    assert!(rest.contains("\"wrong\""));
    let (config, _) = built.config(&rest);
    let (code, stderr) = run_until_exit(&config, Duration::from_secs(60));
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}: {stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(
        !stderr.contains("wrong"),
        "the password is printed: {stderr}"
    );
    assert!(dead_letters(&built.db).await.is_empty());
    // The start offset may be stored at assignment; nothing past it.
    assert!(
        built
            .stored_offsets()
            .await
            .iter()
            .all(|&(_, offset)| offset == 0),
        "{:?}",
        built.stored_offsets().await
    );
    assert_eq!(
        built.db.scalar_i64("SELECT count(*) FROM payments").await,
        0
    );
}
