//! The REST API of the test registry: the subset of the Confluent Schema Registry API that a
//! connector and the Confluent serializers use, answered from a [`Store`] with the registry's
//! media type and its `{"error_code", "message"}` error bodies.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use super::client::MEDIA_TYPE;
use super::proto_text;
use super::store::{Reference, Registered, Schema, SchemaType, Store, StoreError, Version};

type Shared = State<Arc<Mutex<Store>>>;

/// The API's routes over `store`; anything else is a Confluent-shaped 404 or 405.
pub fn router(store: Arc<Mutex<Store>>) -> Router {
    Router::new()
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/versions", get(usages))
        .route("/schemas/types", get(types))
        .route("/config", get(config))
        .route("/config/{subject}", get(config))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { error(405, 405, "HTTP 405 Method Not Allowed") })
        .with_state(store)
}

/// A JSON answer with the registry's media type.
pub fn reply(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, MEDIA_TYPE)],
        body.to_string(),
    )
        .into_response()
}

/// The registry's error body.
pub fn error(status: u16, code: u32, message: &str) -> Response {
    ApiError::new(status, code, message).into_response()
}

/// An error answer: HTTP status, the registry's `error_code` and its `message`.
pub struct ApiError {
    status: u16,
    code: u32,
    message: String,
}

impl ApiError {
    fn new(status: u16, code: u32, message: &str) -> Self {
        Self {
            status,
            code,
            message: message.to_owned(),
        }
    }

    fn not_found() -> Self {
        Self::new(404, 404, "HTTP 404 Not Found")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, code) = e.codes();
        Self::new(status, code, &e.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error_code": self.code, "message": self.message });
        reply(self.status, &body)
    }
}

type Answer = Result<Response, ApiError>;

/// A registration or lookup body. Unknown fields (`metadata`, `ruleSet`, ...) are ignored, as
/// Confluent's serializers send them and ask the registry to accept them.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaBody {
    schema: Option<String>,
    schema_type: Option<String>,
    #[serde(default)]
    references: Option<Vec<Reference>>,
}

/// The schema in a request body, whatever its declared content type (the API takes its own
/// media type, `application/json` and `application/octet-stream` alike).
fn schema_from(body: &[u8]) -> Result<Schema, ApiError> {
    let body: SchemaBody = serde_json::from_slice(body)
        .map_err(|e| ApiError::new(400, 400, &format!("Bad request body: {e}")))?;
    let type_name = body.schema_type.as_deref().unwrap_or("AVRO");
    let schema_type = SchemaType::parse(type_name)
        .ok_or_else(|| StoreError::InvalidSchema(format!("unknown schema type {type_name}")))?;
    let mut text = body.schema.unwrap_or_default();
    if schema_type == SchemaType::Protobuf {
        // Stored and answered as .proto text, as Confluent's registry does.
        text = proto_text::from_serialized(&text).unwrap_or(text);
    }
    Ok(Schema {
        schema_type,
        text,
        references: body.references.unwrap_or_default(),
    })
}

/// The fields every answer about a schema carries; `schemaType` only when not Avro and
/// `references` only when there are some, as Confluent's registry answers.
fn describe(schema: &Schema, mut into: serde_json::Map<String, Value>) -> Value {
    into.insert("schema".into(), schema.text.clone().into());
    if schema.schema_type != SchemaType::Avro {
        into.insert("schemaType".into(), schema.schema_type.as_str().into());
    }
    if !schema.references.is_empty() {
        into.insert("references".into(), json!(schema.references));
    }
    Value::Object(into)
}

fn describe_version(store: &Store, subject: &str, found: Registered) -> Answer {
    let mut fields = serde_json::Map::new();
    fields.insert("subject".into(), subject.into());
    fields.insert("version".into(), found.version.into());
    fields.insert("id".into(), found.id.into());
    Ok(reply(200, &describe(store.schema(found.id)?, fields)))
}

fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

async fn register(State(store): Shared, Path(subject): Path<String>, body: Bytes) -> Answer {
    let id = lock(&store).register(&subject, schema_from(&body)?)?;
    Ok(reply(200, &json!({ "id": id })))
}

async fn lookup(State(store): Shared, Path(subject): Path<String>, body: Bytes) -> Answer {
    let schema = schema_from(&body)?;
    let store = lock(&store);
    describe_version(&store, &subject, store.lookup(&subject, &schema)?)
}

async fn subjects(State(store): Shared) -> Response {
    reply(200, &json!(lock(&store).subjects()))
}

async fn versions(State(store): Shared, Path(subject): Path<String>) -> Answer {
    Ok(reply(200, &json!(lock(&store).versions(&subject)?)))
}

async fn version(State(store): Shared, Path((subject, v)): Path<(String, String)>) -> Answer {
    let store = lock(&store);
    describe_version(
        &store,
        &subject,
        store.version(&subject, Version::parse(&v)?)?,
    )
}

/// The global id in a path; a path whose id is not a number names nothing.
fn schema_id(text: &str) -> Result<u32, ApiError> {
    text.parse().map_err(|_| ApiError::not_found())
}

async fn schema_by_id(State(store): Shared, Path(id): Path<String>) -> Answer {
    let store = lock(&store);
    let schema = store.schema(schema_id(&id)?)?;
    Ok(reply(200, &describe(schema, serde_json::Map::new())))
}

async fn usages(State(store): Shared, Path(id): Path<String>) -> Answer {
    let usages = lock(&store).usages(schema_id(&id)?)?;
    let list: Vec<Value> = usages
        .into_iter()
        .map(|(subject, version)| json!({ "subject": subject, "version": version }))
        .collect();
    Ok(reply(200, &Value::Array(list)))
}

async fn types() -> Response {
    reply(200, &json!(["JSON", "PROTOBUF", "AVRO"]))
}

/// Compatibility is never checked here; serializers may still ask what it is.
async fn config() -> Response {
    reply(200, &json!({ "compatibilityLevel": "BACKWARD" }))
}
