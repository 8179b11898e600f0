//! A blocking HTTP/1.1 client for a Schema Registry's REST API, enough for tests to register
//! schemas and to check the server's answers: one request per connection, JSON bodies, HTTP
//! Basic credentials, `Content-Length` or chunked responses. Plain `http://` only.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::base64::encode;

/// The media type of the registry's API, for request and response bodies.
pub const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A registry's base URL and the credentials to send it.
#[derive(Clone, Debug)]
pub struct Client {
    /// `host:port` to connect to.
    authority: String,
    /// The URL's path, prepended to every request's (a registry behind a path prefix).
    prefix: String,
    /// `Basic ...`, when credentials are given.
    authorization: Option<String>,
}

/// An answer: its status and its body parsed as JSON (`Null` when empty or not JSON).
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Value,
}

impl Client {
    /// A client for `url` (`http://host:port[/prefix]`; credentials in the URL's user info are
    /// sent as HTTP Basic).
    pub fn new(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("`{url}`: the test registry client speaks http:// only"))?;
        let (authority, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let (user_info, authority) = match authority.rsplit_once('@') {
            Some((info, authority)) => (Some(info), authority),
            None => (None, authority),
        };
        let mut client = Self {
            authority: authority.to_owned(),
            prefix: prefix.trim_end_matches('/').to_owned(),
            authorization: None,
        };
        if let Some(info) = user_info {
            let (user, password) = info.split_once(':').unwrap_or((info, ""));
            client = client.with_basic_auth(user, password);
        }
        Ok(client)
    }

    /// The same client sending `user` and `password` as HTTP Basic credentials.
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Self {
        self.authorization = Some(basic_authorization(user, password));
        self
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Response> {
        self.request("GET", path, None)
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Response> {
        self.request("POST", path, Some(body))
    }

    /// One request; an error only when no HTTP answer came (refused, reset, timed out).
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response> {
        let what = || {
            format!(
                "{method} http://{}{}{path}",
                self.authority,
                self.prefix_path()
            )
        };
        self.exchange(method, path, body).with_context(what)
    }

    fn prefix_path(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("/{}", self.prefix)
        }
    }

    fn exchange(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Response> {
        let address = self
            .authority
            .to_socket_addrs()?
            .next()
            .context("the registry's host has no address")?;
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Accept: {MEDIA_TYPE}, application/json\r\nContent-Type: {MEDIA_TYPE}\r\n\
             Content-Length: {}\r\n",
            self.prefix_path(),
            self.authority,
            body.len()
        );
        if let Some(authorization) = &self.authorization {
            head.push_str(&format!("Authorization: {authorization}\r\n"));
        }
        stream.write_all(format!("{head}\r\n{body}").as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        parse_response(&raw)
    }
}

/// The `Authorization` header value for HTTP Basic.
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!("Basic {}", encode(format!("{user}:{password}").as_bytes()))
}

fn parse_response(raw: &[u8]) -> Result<Response> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the response head")?;
    let head = std::str::from_utf8(&raw[..split]).context("response head")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .context("no status line")?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    };
    let mut body = raw[split + 4..].to_vec();
    if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    })
}

/// The payload of a chunked body.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("a chunk size line")?;
        let size_text = std::str::from_utf8(&body[..end])?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).context("a chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        let start = end + 2;
        if body.len() < start + size {
            bail!("a chunk longer than the body");
        }
        out.extend_from_slice(&body[start..start + size]);
        body = body.get(start + size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_base64() {
        assert_eq!(
            basic_authorization("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn reads_chunked_and_sized_responses() {
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        let response = parse_response(chunked).unwrap();
        assert_eq!(
            (response.status, response.body),
            (200, serde_json::json!({"a": 1}))
        );
        let sized = b"HTTP/1.1 404 Not Found\r\nContent-Type: x/y\r\nContent-Length: 2\r\n\r\n[]";
        let response = parse_response(sized).unwrap();
        assert_eq!(response.status, 404);
        assert_eq!(response.content_type.as_deref(), Some("x/y"));
    }

    #[test]
    fn takes_credentials_and_a_prefix_from_the_url() {
        let client = Client::new("http://u:p@localhost:8081/registry/").unwrap();
        assert_eq!(client.authority, "localhost:8081");
        assert_eq!(client.prefix_path(), "/registry");
        assert_eq!(client.authorization, Some(basic_authorization("u", "p")));
        assert!(Client::new("https://x").is_err());
    }
}
