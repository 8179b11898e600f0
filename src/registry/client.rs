//! The HTTP side of the Schema Registry: one request, its URL failover, and what the answer
//! means (the Confluent REST API: `GET /schemas/ids/{id}`, `GET /subjects/{s}/versions/{v}`).
//!
//! Guarantee: every failure comes back as [`Error::Registry`] with the HTTP status (none when no
//! answer came) and the registry's `error_code`, so `error::classify` alone decides between
//! waiting and stopping.

use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

use crate::config::SchemaRegistryConfig;
use crate::error::Error;

/// What the registry says about a schema.
#[derive(Clone, Debug, Deserialize)]
pub struct RawSchema {
    pub schema: String,
    #[serde(rename = "schemaType")]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Vec<RawReference>,
    /// Present when fetched by subject and version.
    pub id: Option<u32>,
}

/// A reference as the registry lists it.
#[derive(Clone, Debug, Deserialize)]
pub struct RawReference {
    pub name: String,
    pub subject: String,
    pub version: i32,
}

/// The registry's error body.
#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<i64>,
    message: Option<String>,
}

/// A client for one registry (possibly several URLs serving it).
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    /// Base URLs without credentials or a trailing slash, tried in order.
    bases: Vec<String>,
    /// The `Authorization` header value, if any.
    auth: Option<String>,
}

impl Client {
    pub fn new(config: &SchemaRegistryConfig) -> Result<Self, Error> {
        let fatal = |what: &str, e: &dyn std::fmt::Display| {
            Error::Fatal(format!("schema_registry.{what}: {e}"))
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .timeout(Duration::from_millis(config.timeout_ms))
            .user_agent(concat!("kafka-pg-sink/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| fatal("ca_file", &format!("{path}: {e}")))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| fatal("ca_file", &format!("{path}: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&config.client_cert_file, &config.client_key_file) {
            let read = |what: &str, path: &str| {
                std::fs::read(path).map_err(|e| fatal(what, &format!("{path}: {e}")))
            };
            let identity = reqwest::Identity::from_pkcs8_pem(
                &read("client_cert_file", cert)?,
                &read("client_key_file", key)?,
            )
            .map_err(|e| fatal("client_key_file", &e))?;
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(|e| fatal("url", &e))?;
        let mut bases = Vec::new();
        let mut url_auth = None;
        for url in config.url.expose().split(',').map(str::trim) {
            let (base, auth) = split_credentials(url);
            bases.push(base.trim_end_matches('/').to_owned());
            url_auth = url_auth.or(auth);
        }
        let basic = |user: &str, password: &str| {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            format!("Basic {token}")
        };
        let auth = match (&config.bearer_token, &config.username, &config.password) {
            (Some(token), _, _) => Some(format!("Bearer {}", token.expose())),
            (None, Some(user), Some(password)) => Some(basic(user, password.expose())),
            _ => url_auth.map(|(user, password)| basic(&user, &password)),
        };
        Ok(Self { http, bases, auth })
    }

    /// `GET /schemas/ids/{id}`.
    pub async fn schema_by_id(&self, id: u32) -> Result<RawSchema, Error> {
        self.get(&format!("/schemas/ids/{id}")).await
    }

    /// `GET /subjects/{subject}/versions/{version}` (`version` may be `latest`).
    pub async fn schema_by_version(
        &self,
        subject: &str,
        version: &str,
    ) -> Result<RawSchema, Error> {
        self.get(&format!(
            "/subjects/{}/versions/{version}",
            percent_encode(subject)
        ))
        .await
    }

    /// The first base URL, for messages.
    pub fn url(&self) -> &str {
        &self.bases[0]
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, Error> {
        let mut last = None;
        for base in &self.bases {
            let mut request = self.http.get(format!("{base}{path}")).header(
                "Accept",
                "application/vnd.schemaregistry.v1+json, application/json",
            );
            if let Some(auth) = &self.auth {
                request = request.header("Authorization", auth);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    // No answer from this URL: try the next one.
                    last = Some(Error::Registry {
                        status: None,
                        code: None,
                        message: format!("GET {base}{path}: {}", describe(&e)),
                    });
                    continue;
                }
            };
            let status = response.status();
            let body = response.bytes().await.map_err(|e| Error::Registry {
                status: None,
                code: None,
                message: format!("GET {base}{path}: reading the answer: {}", describe(&e)),
            })?;
            if status.is_success() {
                return serde_json::from_slice(&body).map_err(|e| Error::Registry {
                    status: Some(status.as_u16()),
                    code: None,
                    message: format!(
                        "GET {base}{path}: the answer is not a schema registry's ({e}): {}",
                        snippet(&body)
                    ),
                });
            }
            let parsed: Option<ErrorBody> = serde_json::from_slice(&body).ok();
            let code = parsed.as_ref().and_then(|b| b.error_code);
            let message = parsed
                .and_then(|b| b.message)
                .unwrap_or_else(|| snippet(&body));
            return Err(Error::Registry {
                status: Some(status.as_u16()),
                code,
                message: format!("GET {base}{path}: HTTP {status}: {message}"),
            });
        }
        Err(last.unwrap_or_else(|| Error::Fatal("schema_registry.url: no URL".into())))
    }
}

/// `https://user:pass@host:8081/path` → (`https://host:8081/path`, (`user`, `pass`)).
fn split_credentials(url: &str) -> (String, Option<(String, String)>) {
    let Some(scheme_end) = url.find("://") else {
        return (url.to_owned(), None);
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let (user, password) = rest[..at].split_once(':').unwrap_or((&rest[..at], ""));
            let base = format!("{}{}", &url[..scheme_end + 3], &rest[at + 1..]);
            (base, Some((user.to_owned(), password.to_owned())))
        }
        None => (url.to_owned(), None),
    }
}

/// A subject in a URL path: unreserved characters as they are, everything else `%XX`.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A transport error with its causes (reqwest's own text hides the useful part).
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None if text.is_empty() => "(empty body)".into(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_the_url_become_basic_auth() {
        let (base, auth) = split_credentials("https://key:s3cr3t@registry:8081/sr");
        assert_eq!(base, "https://registry:8081/sr");
        assert_eq!(auth, Some(("key".into(), "s3cr3t".into())));
        assert_eq!(split_credentials("http://registry:8081").1, None);
        assert_eq!(percent_encode("orders-value"), "orders-value");
        assert_eq!(percent_encode("a/b c"), "a%2Fb%20c");
    }
}
