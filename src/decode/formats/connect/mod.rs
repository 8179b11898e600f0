//! Kafka Connect JSON (placeholder: being written).

/// Appends the envelope's payload to `out` as plain JSON, logical types rendered.
pub fn transcode(_value: &[u8], _out: &mut String) -> Result<(), String> {
    Err("Kafka Connect JSON is not supported yet".into())
}
