//! The test kit's Schema Registry answers the Confluent REST API as a Confluent client expects:
//! one id per schema across subjects, versions, references, lookups, the registry's error codes
//! and media type; and it does what tests need from it: credentials, outages, request counts.
//! Tests that need the own server skip themselves when `SCHEMA_REGISTRY_URL` names a real one.

use std::io::{Read, Write};

use serde_json::{json, Value};
use testkit::names::unique;
use testkit::registry::client::MEDIA_TYPE;
use testkit::registry::{
    encode_path_segment, Client, Outage, Reference, SchemaRegistry, SchemaType,
};
use testkit::skip::unless_own_registry;

const RECORD: &str = r#"{"type":"record","name":"Payment","fields":[{"name":"id","type":"long"}]}"#;

fn get(registry: &SchemaRegistry, path: &str) -> (u16, Value) {
    let response = registry.client().get(path).expect("an answer");
    (response.status, response.body)
}

fn post(registry: &SchemaRegistry, path: &str, body: Value) -> (u16, Value) {
    let response = registry.client().post(path, &body).expect("an answer");
    (response.status, response.body)
}

fn subject_path(subject: &str) -> String {
    format!("/subjects/{}", encode_path_segment(subject))
}

/// Parsed, so that a real registry's normalized spelling compares equal.
fn parsed(schema: &Value) -> Value {
    serde_json::from_str(schema.as_str().expect("schema text")).expect("schema JSON")
}

#[test]
fn a_registered_schema_is_served_by_its_id() {
    let registry = SchemaRegistry::start();
    let subject = unique("orders-value");
    let id = registry.register(&subject, SchemaType::Avro, RECORD, &[]);
    let response = registry
        .client()
        .get(&format!("/schemas/ids/{id}"))
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.content_type.as_deref(), Some(MEDIA_TYPE));
    assert_eq!(parsed(&response.body["schema"]), parsed(&json!(RECORD)));
    assert_eq!(
        response.body.get("schemaType"),
        None,
        "Avro is the default and not named"
    );
    assert_eq!(response.body.get("references"), None);
}

#[test]
fn one_schema_has_one_id_across_subjects_and_registrations() {
    let registry = SchemaRegistry::start();
    let (a, b) = (unique("a-value"), unique("b-value"));
    let id = registry.register(&a, SchemaType::Avro, RECORD, &[]);
    assert_eq!(registry.register(&b, SchemaType::Avro, RECORD, &[]), id);
    assert_eq!(registry.register(&a, SchemaType::Avro, RECORD, &[]), id);
    assert_eq!(
        get(&registry, &format!("{}/versions", subject_path(&a))),
        (200, json!([1]))
    );
    let (status, usages) = get(&registry, &format!("/schemas/ids/{id}/versions"));
    assert_eq!(status, 200);
    for subject in [&a, &b] {
        let usage = json!({ "subject": subject, "version": 1 });
        assert!(usages.as_array().unwrap().contains(&usage), "{usages}");
    }
    let as_json = registry.register(&a, SchemaType::Json, r#"{"type":"object"}"#, &[]);
    assert_ne!(as_json, id);
}

#[test]
fn versions_count_from_one_and_latest_is_the_last() {
    let registry = SchemaRegistry::start();
    let subject = unique("versions-value");
    let first = registry.register(&subject, SchemaType::Avro, RECORD, &[]);
    let second = registry.register(&subject, SchemaType::Avro, r#""string""#, &[]);
    let path = format!("{}/versions", subject_path(&subject));
    assert_eq!(get(&registry, &path), (200, json!([1, 2])));
    for (version, id) in [
        ("1", first),
        ("2", second),
        ("latest", second),
        ("-1", second),
    ] {
        let (status, body) = get(&registry, &format!("{path}/{version}"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["subject"], json!(subject));
        assert_eq!(body["id"], json!(id));
        assert_eq!(body["version"], json!(if id == first { 1 } else { 2 }));
        assert!(body["schema"].is_string());
    }
    let (_, subjects) = get(&registry, "/subjects");
    assert!(subjects.as_array().unwrap().contains(&json!(subject)));
}

#[test]
fn references_round_trip_and_must_exist() {
    let registry = SchemaRegistry::start();
    let import = format!("{}/money.proto", unique("dir"));
    let money = "syntax = \"proto3\";\npackage shop;\nmessage Money { int64 cents = 1; }\n";
    registry.register(&import, SchemaType::Protobuf, money, &[]);
    let order = format!(
        "syntax = \"proto3\";\npackage shop;\nimport \"{import}\";\n\
         message Order {{ shop.Money total = 1; }}\n"
    );
    let reference = Reference {
        name: import.clone(),
        subject: import.clone(),
        version: 1,
    };
    let subject = unique("orders-value");
    let id = registry.register(
        &subject,
        SchemaType::Protobuf,
        &order,
        std::slice::from_ref(&reference),
    );
    let (status, body) = get(&registry, &format!("/schemas/ids/{id}"));
    assert_eq!(status, 200);
    assert_eq!(body["schemaType"], json!("PROTOBUF"));
    assert_eq!(body["references"], json!([reference]));
    let (_, latest) = get(
        &registry,
        &format!("{}/versions/latest", subject_path(&subject)),
    );
    assert_eq!(latest["references"], json!([reference]));

    let dangling = Reference {
        version: 9,
        ..reference
    };
    let refused = registry.try_register(&subject, SchemaType::Protobuf, &order, &[dangling]);
    let refused = refused.expect_err("a reference to a missing version");
    assert!(format!("{refused:#}").starts_with("422"), "{refused:#}");
}

#[test]
fn lookup_finds_a_registered_schema_under_its_subject() {
    let registry = SchemaRegistry::start();
    let subject = unique("lookup-value");
    let id = registry.register(&subject, SchemaType::Avro, RECORD, &[]);
    let (status, body) = post(
        &registry,
        &subject_path(&subject),
        json!({ "schema": RECORD }),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["subject"], &body["id"], &body["version"]),
        (&json!(subject), &json!(id), &json!(1))
    );
    let other = json!({ "schema": r#""bytes""# });
    let (status, body) = post(&registry, &subject_path(&subject), other.clone());
    assert_eq!((status, &body["error_code"]), (404, &json!(40403)));
    let (status, body) = post(&registry, &subject_path(&unique("nobody")), other);
    assert_eq!((status, &body["error_code"]), (404, &json!(40401)));
}

#[test]
fn missing_things_answer_with_confluent_error_codes() {
    let registry = SchemaRegistry::start();
    let subject = unique("errors-value");
    registry.register(&subject, SchemaType::Avro, RECORD, &[]);
    let versions = format!("{}/versions", subject_path(&subject));
    let cases = [
        ("/schemas/ids/987654321".to_owned(), 404, 40403),
        (
            format!("{}/versions", subject_path(&unique("nobody"))),
            404,
            40401,
        ),
        (
            format!("{}/versions/1", subject_path(&unique("nobody"))),
            404,
            40401,
        ),
        (format!("{versions}/9"), 404, 40402),
        (format!("{versions}/0"), 422, 42202),
        ("/no/such/path".to_owned(), 404, 404),
    ];
    for (path, status, code) in cases {
        let (got, body) = get(&registry, &path);
        assert_eq!(
            (got, &body["error_code"]),
            (status, &json!(code)),
            "{path}: {body}"
        );
        assert!(body["message"].is_string(), "{path}: {body}");
    }
    let (status, body) = get(&registry, "/config");
    assert_eq!(status, 200);
    assert!(body["compatibilityLevel"].is_string(), "{body}");
}

/// A POST with a chosen Content-Type, which the test kit's client does not offer.
fn post_as(registry: &SchemaRegistry, path: &str, content_type: &str, body: &str) -> u16 {
    let authority = registry.url().trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn takes_bodies_of_every_content_type_clients_send() {
    if unless_own_registry("raw requests to the registry's own port") {
        return;
    }
    let registry = SchemaRegistry::start();
    let body = json!({ "schema": RECORD }).to_string();
    for content_type in [MEDIA_TYPE, "application/json", "application/octet-stream"] {
        let path = format!("{}/versions", subject_path(&unique("ct-value")));
        assert_eq!(
            post_as(&registry, &path, content_type, &body),
            200,
            "{content_type}"
        );
    }
    let path = format!("{}/versions", subject_path(&unique("bad-value")));
    assert_eq!(
        post_as(&registry, &path, "application/json", "{not json"),
        400
    );
}

#[test]
fn basic_auth_refuses_requests_without_the_credentials() {
    if unless_own_registry("server-side credentials") {
        return;
    }
    let registry = SchemaRegistry::start().with_basic_auth("sink", "s3cret");
    let subject = unique("auth-value");
    let id = registry.register(&subject, SchemaType::Avro, RECORD, &[]);
    let anonymous = Client::new(registry.url()).unwrap();
    let wrong = anonymous.clone().with_basic_auth("sink", "guess");
    for client in [&anonymous, &wrong] {
        let response = client.get(&format!("/schemas/ids/{id}")).unwrap();
        assert_eq!(response.status, 401);
        assert_eq!(
            response.body,
            json!({ "error_code": 401, "message": "Unauthorized" })
        );
    }
    let url_credentials = registry.url().replace("http://", "http://sink:s3cret@");
    let response = Client::new(&url_credentials)
        .unwrap()
        .get("/subjects")
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(registry.basic_auth(), Some(("sink", "s3cret")));
}

#[test]
fn server_error_outage_answers_503_until_it_ends() {
    if unless_own_registry("a simulated outage") {
        return;
    }
    let registry = SchemaRegistry::start();
    let id = registry.register(&unique("outage-value"), SchemaType::Avro, RECORD, &[]);
    let path = format!("/schemas/ids/{id}");
    registry.set_outage(Outage::ServerErrors);
    let (status, body) = get(&registry, &path);
    assert_eq!((status, &body["error_code"]), (503, &json!(50003)));
    registry.set_outage(Outage::None);
    assert_eq!(get(&registry, &path).0, 200);
    assert_eq!(registry.requests_to(&format!("GET {path}")), 2);
    assert_eq!(registry.requests_to("POST /subjects/"), 1);
    assert_eq!(registry.requests(), 3);
}

#[test]
fn refuse_outage_closes_the_port_and_reopens_it_with_the_schemas_kept() {
    if unless_own_registry("a simulated outage") {
        return;
    }
    let registry = SchemaRegistry::start();
    let id = registry.register(&unique("refuse-value"), SchemaType::Avro, RECORD, &[]);
    let path = format!("/schemas/ids/{id}");
    registry.set_outage(Outage::Refuse);
    let refused = registry
        .client()
        .get(&path)
        .expect_err("the port is closed");
    let root = refused.root_cause().to_string();
    assert!(root.contains("refused"), "{refused:#}");
    registry.set_outage(Outage::None);
    let (status, body) = get(&registry, &path);
    assert_eq!(status, 200, "{body}");
    assert_eq!(parsed(&body["schema"]), parsed(&json!(RECORD)));
    // Twice in a row, as a test that flaps the registry would.
    registry.set_outage(Outage::Refuse);
    registry.set_outage(Outage::None);
    assert_eq!(get(&registry, &path).0, 200);
}

#[tokio::test]
async fn works_from_an_async_test() {
    let registry = SchemaRegistry::start();
    let subject = unique("async-value");
    let id = registry.register(&subject, SchemaType::Json, r#"{"type":"object"}"#, &[]);
    let (status, body) = get(&registry, &format!("/schemas/ids/{id}"));
    assert_eq!((status, &body["schemaType"]), (200, &json!("JSON")));
}
