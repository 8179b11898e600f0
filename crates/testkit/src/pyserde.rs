//! Confluent's own Python serializers as an encoder for tests: bytes in the Confluent wire
//! format (magic byte 0, the schema id big-endian, for Protobuf the message indexes, then the
//! payload) made by code the connector's decoder shares nothing with, and registered in the
//! registry exactly as a Confluent producer registers them.
//!
//! The serializers run in `crates/testkit/python/kps_serde.py`, a child process that dies with
//! its parent and speaks JSON lines (its module comment is the protocol). Its Python is
//! `KPS_PYTHON` when set, else the venv `scripts/ensure-python-serde.sh` makes sure of, run
//! once per test process (the first run installs the pinned packages: about a minute).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::registry::{Reference, SchemaRegistry};

/// One serializer process, talking to one registry.
pub struct PySerializer {
    registry: String,
    /// `user:password` for the registry, when it wants credentials.
    basic_auth: Option<String>,
    io: Mutex<Io>,
    child: Child,
}

struct Io {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl PySerializer {
    /// A serializer process for `registry` (with its credentials); panics when Python or the
    /// serializers cannot be had.
    pub fn start(registry: &SchemaRegistry) -> Self {
        let mut serializer = Self::start_for(registry.url())
            .unwrap_or_else(|e| panic!("starting the Python serializers: {e:#}"));
        if let Some((user, password)) = registry.basic_auth() {
            serializer.basic_auth = Some(format!("{user}:{password}"));
        }
        serializer
    }

    /// A serializer process for the registry at `url`.
    pub fn start_for(url: &str) -> Result<Self> {
        let python = python()?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/kps_serde.py");
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = crate::process::bound_to_parent(&mut command)
            .spawn()
            .with_context(|| format!("{} {}", python.display(), script.display()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("the serializer process's stdin and stdout");
        };
        let serializer = Self {
            registry: url.to_owned(),
            basic_auth: None,
            io: Mutex::new(Io {
                stdin,
                stdout: BufReader::new(stdout),
            }),
            child,
        };
        serializer.call(&json!({ "op": "ping" }))?;
        Ok(serializer)
    }

    /// `value` serialized by Confluent's `AvroSerializer` against `schema` (Avro markers such
    /// as `{"$decimal": "1.50"}` for values JSON cannot carry: see `kps_serde.py`).
    pub fn avro(&self, topic: &str, is_key: bool, schema: &str, value: &Value) -> Vec<u8> {
        expect(self.try_avro(topic, is_key, schema, &[], value))
    }

    /// [`PySerializer::avro`] with references to schemas registered under other subjects, or
    /// the serializer's error.
    pub fn try_avro(
        &self,
        topic: &str,
        is_key: bool,
        schema: &str,
        references: &[Reference],
        value: &Value,
    ) -> Result<Vec<u8>> {
        let mut request = self.request("avro", topic, is_key, schema, value);
        request["references"] = json!(references);
        self.serialize(&request)
    }

    /// `value` (proto3 JSON) as the message `message` (default: the file's first) of `proto`,
    /// serialized by Confluent's `ProtobufSerializer`; `imports` are the files `proto` imports
    /// by name, which the serializer registers as references.
    pub fn protobuf(
        &self,
        topic: &str,
        is_key: bool,
        proto: &str,
        message: Option<&str>,
        imports: &[(&str, &str)],
        value: &Value,
    ) -> Vec<u8> {
        expect(self.try_protobuf(topic, is_key, proto, message, imports, value))
    }

    /// [`PySerializer::protobuf`], or the serializer's (or protoc's) error.
    pub fn try_protobuf(
        &self,
        topic: &str,
        is_key: bool,
        proto: &str,
        message: Option<&str>,
        imports: &[(&str, &str)],
        value: &Value,
    ) -> Result<Vec<u8>> {
        let mut request = self.request("protobuf", topic, is_key, proto, value);
        request["message"] = json!(message);
        let imports: serde_json::Map<String, Value> = imports
            .iter()
            .map(|(name, text)| ((*name).to_owned(), Value::from(*text)))
            .collect();
        request["imports"] = Value::Object(imports);
        self.serialize(&request)
    }

    /// `value` serialized by Confluent's `JSONSerializer` (which validates it) against the
    /// JSON Schema `schema`.
    pub fn json_schema(&self, topic: &str, is_key: bool, schema: &str, value: &Value) -> Vec<u8> {
        expect(self.try_json_schema(topic, is_key, schema, value))
    }

    /// [`PySerializer::json_schema`], or the serializer's error.
    pub fn try_json_schema(
        &self,
        topic: &str,
        is_key: bool,
        schema: &str,
        value: &Value,
    ) -> Result<Vec<u8>> {
        self.serialize(&self.request("json_schema", topic, is_key, schema, value))
    }

    /// Any request of the protocol (its `registry` and credentials filled in when absent):
    /// the answer, or its `error` as an error.
    pub fn call(&self, request: &Value) -> Result<Value> {
        let mut request = request.clone();
        if request.get("registry").is_none() {
            request["registry"] = json!(self.registry);
        }
        if let (Some(auth), None) = (&self.basic_auth, request.get("basic_auth")) {
            request["basic_auth"] = json!(auth);
        }
        let answer = self.exchange(&request)?;
        match answer.get("error") {
            Some(error) => Err(anyhow!("{}", error.as_str().unwrap_or_default())),
            None => Ok(answer),
        }
    }

    fn request(
        &self,
        format: &str,
        topic: &str,
        is_key: bool,
        schema: &str,
        value: &Value,
    ) -> Value {
        json!({ "format": format, "topic": topic, "is_key": is_key, "schema": schema, "value": value })
    }

    fn serialize(&self, request: &Value) -> Result<Vec<u8>> {
        let answer = self.call(request)?;
        let hex = answer
            .get("hex")
            .and_then(Value::as_str)
            .with_context(|| format!("no bytes in the answer {answer}"))?;
        decode_hex(hex)
    }

    fn exchange(&self, request: &Value) -> Result<Value> {
        let mut io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        writeln!(io.stdin, "{request}").context("writing to the serializer process")?;
        io.stdin.flush()?;
        let mut line = String::new();
        if io.stdout.read_line(&mut line)? == 0 {
            bail!("the serializer process exited (its stderr is above)");
        }
        serde_json::from_str(&line).with_context(|| format!("the serializer's answer `{line}`"))
    }
}

impl Drop for PySerializer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn expect(result: Result<Vec<u8>>) -> Vec<u8> {
    result.unwrap_or_else(|e| panic!("the Confluent serializer failed: {e:#}"))
}

fn decode_hex(hex: &str) -> Result<Vec<u8>> {
    if hex.len() % 2 != 0 {
        bail!("odd-length hex from the serializer");
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).context("hex from the serializer"))
        .collect()
}

/// The Python that has the serializers: `KPS_PYTHON`, else the venv of
/// `scripts/ensure-python-serde.sh`, run at most once per process.
pub fn python() -> Result<PathBuf> {
    if let Ok(python) = std::env::var("KPS_PYTHON") {
        if !python.trim().is_empty() {
            return Ok(PathBuf::from(python.trim()));
        }
    }
    static ENSURED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ENSURED
        .get_or_init(|| ensure().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn ensure() -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ensure-python-serde.sh");
    let output = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let python = stdout.lines().last().unwrap_or("").trim();
    if !output.status.success() || python.is_empty() {
        bail!("{} failed ({})", script.display(), output.status);
    }
    Ok(PathBuf::from(python))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_decodes() {
        assert_eq!(super::decode_hex("00ff10").unwrap(), vec![0, 255, 16]);
        assert!(super::decode_hex("0").is_err());
    }
}
