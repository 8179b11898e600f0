//! The payments table most end-to-end tests use: an upsert target with an audit trigger, its
//! mapping, and deterministic records.

/// Target table plus an audit trigger that records every row application, so a record applied
/// twice shows up even when the upsert itself is idempotent.
pub const PAYMENTS_DDL: &str = r#"
CREATE TABLE payments (
    id bigint PRIMARY KEY,
    account text NOT NULL,
    amount numeric(14, 2) NOT NULL,
    src_partition integer,
    src_offset bigint
);
CREATE TABLE applied (id bigint NOT NULL, amount numeric(14, 2) NOT NULL);
CREATE FUNCTION audit_payment() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO applied VALUES (NEW.id, NEW.amount);
    RETURN NEW;
END $$;
CREATE TRIGGER audit AFTER INSERT OR UPDATE ON payments FOR EACH ROW EXECUTE FUNCTION audit_payment();
"#;

/// The mapping for [`PAYMENTS_DDL`].
pub fn payments_mapping(topic: &str) -> String {
    format!(
        r#"
[[mappings]]
topic = "{topic}"
table = "payments"
key = ["id"]
columns = {{ id = "value.id", account = "value.account", amount = "value.amount", src_partition = "kafka.partition", src_offset = "kafka.offset" }}
"#
    )
}

/// The JSON value of payment `id`, and its amount in cents.
pub fn payment(id: u64) -> (String, i64) {
    let cents = (id * 7919 % 100_000) as i64;
    (
        format!(
            r#"{{"id":{id},"account":"acct-{}","amount":"{}.{:02}"}}"#,
            id % 13,
            cents / 100,
            cents % 100
        ),
        cents,
    )
}
