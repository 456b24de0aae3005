//! The one pooled upstream HTTP client: hyper-util's connection pool on hyper, TLS by rustls.
//!
//! It replaced reqwest on the hot path: reqwest's redirect and retry layers, its `Url` round
//! trips (IDNA) and its boxed futures cost ~30k instructions per request (callgrind, issue
//! 13) for features the gateway turns off (it never follows a redirect, never retries a
//! POST itself). What is left is what a request needs: a method, a URI parsed once, headers,
//! a body, the response head and its body frames.

use std::fmt;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::Stream;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, Method, StatusCode, Uri};
use http_body_util::{BodyExt, BodyStream, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

type Inner = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Cheap to clone: every clone shares one connection pool.
#[derive(Clone)]
pub struct HttpClient {
    inner: Inner,
}

/// A request that could not be sent, or a response body that broke off. Never names the
/// URL (a key could sit in a query string).
#[derive(Debug)]
pub enum TransportError {
    /// The request itself is malformed (a header value a key cannot carry, a bad URL).
    Invalid(String),
    /// Connecting or sending failed, or the connection closed before the response head.
    Send(hyper_util::client::legacy::Error),
    /// The response body failed mid-way.
    Body(hyper::Error),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (head, source): (String, Option<&dyn std::error::Error>) = match self {
            TransportError::Invalid(m) => (m.clone(), None),
            TransportError::Send(e) if e.is_connect() => ("cannot connect".into(), Some(e)),
            TransportError::Send(e) => ("error sending request".into(), Some(e)),
            TransportError::Body(e) => ("error reading response body".into(), Some(e)),
        };
        f.write_str(&head)?;
        // The whole chain ("connection refused", "connection reset by peer"...) is what an
        // operator needs; hyper's own errors carry no URL.
        let mut source = source.and_then(std::error::Error::source);
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

impl std::error::Error for TransportError {}

impl TransportError {
    pub fn is_connect(&self) -> bool {
        matches!(self, TransportError::Send(e) if e.is_connect())
    }

    /// A connect that ran out of `connect_seconds`.
    pub fn is_timeout(&self) -> bool {
        let mut source: Option<&dyn std::error::Error> = Some(self);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::TimedOut {
                    return true;
                }
            }
            source = match s.downcast_ref::<TransportError>() {
                Some(TransportError::Send(e)) => Some(e),
                Some(TransportError::Body(e)) => Some(e),
                _ => s.source(),
            };
        }
        false
    }
}

/// Client-wide settings, from the config.
pub struct ClientOptions {
    pub connect_timeout: Duration,
}

impl HttpClient {
    pub fn new(opts: &ClientOptions) -> HttpClient {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(opts.connect_timeout));
        http.set_nodelay(true);
        // https endpoints need TLS; plain http ones (Ollama, local proxies) stay allowed.
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            // Without a timer the pool never expires idle connections.
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        HttpClient { inner }
    }

    pub fn post(&self, uri: impl IntoUri) -> RequestBuilder {
        self.request(Method::POST, uri)
    }

    pub fn get(&self, uri: impl IntoUri) -> RequestBuilder {
        self.request(Method::GET, uri)
    }

    fn request(&self, method: Method, uri: impl IntoUri) -> RequestBuilder {
        RequestBuilder {
            client: self.inner.clone(),
            method,
            uri: uri.into_uri(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }
}

/// Mozilla's roots (webpki-roots, as reqwest used) plus the system's store, so a gateway
/// behind a TLS-inspecting proxy whose CA is installed system-wide (SSL_CERT_FILE /
/// SSL_CERT_DIR honoured) reaches its upstreams too. Read once per client build.
fn tls_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A broken system certificate is skipped, not fatal: Mozilla's roots still work.
        let _ = roots.add(cert);
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    // ALPN (h2, http/1.1) is set by the connector builder from the enabled versions.
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// What a request's URL may be given as: a `Uri` parsed once (the hot path), or a string.
pub trait IntoUri {
    fn into_uri(self) -> Result<Uri, TransportError>;
}

impl IntoUri for Uri {
    fn into_uri(self) -> Result<Uri, TransportError> {
        Ok(self)
    }
}

impl IntoUri for &str {
    fn into_uri(self) -> Result<Uri, TransportError> {
        self.parse()
            .map_err(|_| TransportError::Invalid("the upstream URL is not valid".into()))
    }
}

impl IntoUri for &String {
    fn into_uri(self) -> Result<Uri, TransportError> {
        self.as_str().into_uri()
    }
}

impl IntoUri for String {
    fn into_uri(self) -> Result<Uri, TransportError> {
        self.as_str().into_uri()
    }
}

pub struct RequestBuilder {
    client: Inner,
    method: Method,
    uri: Result<Uri, TransportError>,
    headers: HeaderMap,
    body: Bytes,
}

impl RequestBuilder {
    /// Adds a header. A name or value that cannot be a header fails the send, naming the
    /// header (never its value: it may be a key).
    pub fn header<K, V>(mut self, name: K, value: V) -> Self
    where
        K: TryInto<HeaderName>,
        V: TryInto<HeaderValue>,
    {
        if self.uri.is_err() {
            return self;
        }
        match (name.try_into(), value.try_into()) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            (Ok(n), Err(_)) => {
                self.uri = Err(TransportError::Invalid(format!(
                    "the value of header {n} is not a valid header value"
                )))
            }
            (Err(_), _) => {
                self.uri = Err(TransportError::Invalid("invalid header name".into()));
            }
        }
        self
    }

    pub fn json_body(self, body: impl Into<Bytes>) -> Self {
        let mut b = self.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        b.body = body.into();
        b
    }

    /// Appends `name=value` pairs to the URL's query, percent-encoded.
    pub fn query(mut self, pairs: &[(&str, String)]) -> Self {
        if let Ok(uri) = &self.uri {
            let mut s = uri.to_string();
            let mut sep = if uri.query().is_some() { '&' } else { '?' };
            for (k, v) in pairs {
                s.push(sep);
                percent_encode(k, &mut s);
                s.push('=');
                percent_encode(v, &mut s);
                sep = '&';
            }
            self.uri = s.as_str().into_uri();
        }
        self
    }

    pub async fn send(self) -> Result<Response, TransportError> {
        let uri = self.uri?;
        let mut req = http::Request::new(Full::new(self.body));
        *req.method_mut() = self.method;
        *req.uri_mut() = uri;
        *req.headers_mut() = self.headers;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(TransportError::Send)?;
        Ok(Response { inner: resp })
    }
}

/// Unreserved characters as they are, everything else as `%XX` (RFC 3986).
fn percent_encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// An upstream's response: its head, and its body read frame by frame.
pub struct Response {
    inner: http::Response<Incoming>,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The next piece of the body as it arrives; `None` at its end (trailers skipped).
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, TransportError> {
        loop {
            match self.inner.body_mut().frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(TransportError::Body(e)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The whole body.
    pub async fn bytes(mut self) -> Result<Bytes, TransportError> {
        let mut body = BytesMut::new();
        while let Some(chunk) = self.chunk().await? {
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// The body as a stream of pieces, each yielded as it arrives.
    pub fn bytes_stream(self) -> impl Stream<Item = Result<Bytes, TransportError>> + Send {
        use futures::StreamExt;
        BodyStream::new(self.inner.into_body()).filter_map(|frame| async move {
            match frame {
                Err(e) => Some(Err(TransportError::Body(e))),
                Ok(frame) => frame.into_data().ok().map(Ok),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_are_percent_encoded_and_appended() {
        let client = HttpClient::new(&ClientOptions {
            connect_timeout: Duration::from_secs(1),
        });
        let b = client
            .get("http://h:1/v1beta/models?key=1")
            .query(&[("pageSize", "10".into()), ("pageToken", "a b/c=".into())]);
        assert_eq!(
            b.uri.unwrap().to_string(),
            "http://h:1/v1beta/models?key=1&pageSize=10&pageToken=a%20b%2Fc%3D"
        );
    }

    #[test]
    fn a_bad_header_value_fails_the_send_without_showing_it() {
        let client = HttpClient::new(&ClientOptions {
            connect_timeout: Duration::from_secs(1),
        });
        let b = client.get("http://h:1/").header("x-api-key", "sk-secret\n");
        let err = b.uri.unwrap_err().to_string();
        assert!(
            err.contains("x-api-key") && !err.contains("sk-secret"),
            "{err}"
        );
    }
}
