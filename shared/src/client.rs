//! Connecting to a coordinator (workers, CLI clients, local mode, tests): one channel, the three typed
//! gRPC clients with the token and protocol headers added ([`ClientAuth`]), and streamed, hash-checked
//! artifact transfer. The coordinator's server side of the same contract is `mer_coordinator::rpc::service`.

use crate::artifact_store::ArtifactStore;
use crate::error::SharedError;
use crate::proto::{self, PROTOCOL_HEADER, PROTOCOL_VERSION};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

/// How to reach a coordinator.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `http://host:port` or `https://host:port` (TLS).
    pub url: String,
    /// Shared-secret bearer token, if the coordinator requires one.
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for `https://` (default: the system's roots are not used; give one).
    pub tls_ca: Option<PathBuf>,
    /// Protocol version to announce (always [`PROTOCOL_VERSION`] except in tests of the check).
    pub protocol: u32,
}

impl ConnectOptions {
    /// Options for `url` with `token`.
    pub fn new(url: impl Into<String>, token: Option<String>) -> Self {
        ConnectOptions {
            url: url.into(),
            token,
            tls_ca: None,
            protocol: PROTOCOL_VERSION,
        }
    }
}

/// A channel with the authentication interceptor.
pub type Authed = InterceptedService<Channel, ClientAuth>;

/// The three gRPC clients of one connection.
#[derive(Clone)]
pub struct Clients {
    /// Worker calls.
    pub worker: proto::worker_client::WorkerClient<Authed>,
    /// Artifact transfer.
    pub artifacts: proto::artifacts_client::ArtifactsClient<Authed>,
    /// Experiment management.
    pub client: proto::client_client::ClientClient<Authed>,
    /// The protocol version announced.
    pub protocol: u32,
}

/// Largest message accepted (fold results with many predictions).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Connects (lazily: the first call opens the connection and fails if nobody listens).
pub fn connect(opts: &ConnectOptions) -> Result<Clients, SharedError> {
    let bad = |m: String| SharedError::Connect {
        url: opts.url.clone(),
        message: m,
    };
    if !(opts.url.starts_with("http://") || opts.url.starts_with("https://")) {
        return Err(bad(
            "not a coordinator URL: it must start with http:// or https:// (e.g. http://127.0.0.1:7878)"
                .into(),
        ));
    }
    let mut ep = Endpoint::from_shared(opts.url.clone())
        .map_err(|e| bad(format!("not a valid URL: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    if opts.url.starts_with("https://") || opts.tls_ca.is_some() {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &opts.tls_ca {
            let pem = std::fs::read(ca).map_err(|e| SharedError::io(ca, e))?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        ep = ep.tls_config(tls).map_err(|e| bad(format!("TLS: {e}")))?;
    }
    let channel = ep.connect_lazy();
    let auth = ClientAuth::new(opts.token.as_deref(), opts.protocol)?;
    let svc = InterceptedService::new(channel, auth);
    Ok(Clients {
        worker: proto::worker_client::WorkerClient::new(svc.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        artifacts: proto::artifacts_client::ArtifactsClient::new(svc.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        client: proto::client_client::ClientClient::new(svc)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        protocol: opts.protocol,
    })
}

/// Uploads a file as a content-addressed artifact (skipped when the coordinator has it) and returns its
/// sha256.
pub async fn upload_file(
    clients: &Clients,
    path: &Path,
    kind: &str,
) -> Result<String, SharedError> {
    let hash = crate::digest::sha256_file(path)?;
    let mut c = clients.artifacts.clone();
    let has = c
        .has(proto::HasRequest {
            sha256: hash.clone(),
        })
        .await
        .map_err(|s| SharedError::rpc("has", s))?
        .into_inner();
    if has.present {
        return Ok(hash);
    }
    let size = std::fs::metadata(path)
        .map_err(|e| SharedError::io(path, e))?
        .len();
    let mut f = std::fs::File::open(path).map_err(|e| SharedError::io(path, e))?;
    // Chunks are read up front into a channel-fed stream so a large file is not held whole in memory.
    let (tx, rx) = tokio::sync::mpsc::channel::<proto::ArtifactChunk>(4);
    let (h2, k2, p2) = (hash.clone(), kind.to_string(), path.to_path_buf());
    let reader = tokio::task::spawn_blocking(move || -> Result<(), SharedError> {
        let mut first = true;
        let mut buf = vec![0u8; proto::CHUNK_BYTES];
        loop {
            let n = f.read(&mut buf).map_err(|e| SharedError::io(&p2, e))?;
            if n == 0 && !first {
                break;
            }
            let chunk = proto::ArtifactChunk {
                sha256: if first { h2.clone() } else { String::new() },
                size: if first { size } else { 0 },
                kind: if first { k2.clone() } else { String::new() },
                data: buf[..n].to_vec(),
            };
            first = false;
            if tx.blocking_send(chunk).is_err() || n == 0 {
                break;
            }
        }
        Ok(())
    });
    let res = c
        .upload(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    reader
        .await
        .map_err(|e| SharedError::invalid("upload", format!("the file reader stopped: {e}")))??;
    let reply = res.map_err(|s| SharedError::rpc("upload", s))?.into_inner();
    if reply.sha256 != hash {
        return Err(SharedError::HashMismatch {
            expected: hash,
            actual: reply.sha256,
        });
    }
    Ok(hash)
}

/// Uploads bytes with an explicitly declared hash (tests of the server-side check use a wrong one).
pub async fn upload_bytes(
    clients: &Clients,
    declared: &str,
    bytes: &[u8],
    kind: &str,
) -> Result<String, SharedError> {
    let mut c = clients.artifacts.clone();
    let mut chunks = Vec::new();
    let mut first = true;
    for part in bytes.chunks(proto::CHUNK_BYTES).chain(if bytes.is_empty() {
        Some(&[][..])
    } else {
        None
    }) {
        chunks.push(proto::ArtifactChunk {
            sha256: if first {
                declared.to_string()
            } else {
                String::new()
            },
            size: if first { bytes.len() as u64 } else { 0 },
            kind: if first {
                kind.to_string()
            } else {
                String::new()
            },
            data: part.to_vec(),
        });
        first = false;
    }
    let reply = c
        .upload(tokio_stream::iter(chunks))
        .await
        .map_err(|s| SharedError::rpc("upload", s))?
        .into_inner();
    Ok(reply.sha256)
}

/// Downloads artifact `hash` into `cache` (unless already there), checking the bytes against the hash,
/// and returns its local path.
pub async fn download_to(
    clients: &Clients,
    hash: &str,
    cache: &ArtifactStore,
) -> Result<PathBuf, SharedError> {
    if cache.size_of(hash).is_some() {
        return Ok(cache.path_of(hash));
    }
    // One download per artifact at a time in this process: slots and agents sharing a cache wait for
    // the first download instead of fetching the same bytes concurrently.
    let dest = cache.path_of(hash);
    let gate = {
        type Gates =
            parking_lot::Mutex<std::collections::HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>;
        static IN_FLIGHT: std::sync::OnceLock<Gates> = std::sync::OnceLock::new();
        let map = IN_FLIGHT.get_or_init(Default::default);
        map.lock().entry(dest.clone()).or_default().clone()
    };
    let _held = gate.lock().await;
    if cache.size_of(hash).is_some() {
        return Ok(dest);
    }
    let mut c = clients.artifacts.clone();
    let mut stream = c
        .download(proto::DownloadRequest {
            sha256: hash.to_string(),
        })
        .await
        .map_err(|s| SharedError::rpc("download", s))?
        .into_inner();
    let mut w = cache.begin(hash)?;
    let mut declared = None;
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| SharedError::rpc("download", s))?
    {
        if declared.is_none() {
            declared = Some(chunk.size);
        }
        w.write(&chunk.data)?;
    }
    if let Some(size) = declared {
        if size != w.size() {
            return Err(SharedError::invalid(
                format!("artifact {hash}"),
                format!("announced {size} bytes, received {}", w.size()),
            ));
        }
    }
    // finish() re-checks the sha256 of what arrived and refuses a mismatch.
    w.finish()?;
    Ok(cache.path_of(hash))
}

/// Client-side: adds the token and the protocol header to every call.
#[derive(Clone)]
pub struct ClientAuth {
    bearer: Option<MetadataValue<Ascii>>,
    protocol: MetadataValue<Ascii>,
}

impl ClientAuth {
    /// `token` (if any) and a protocol version (normally [`PROTOCOL_VERSION`]).
    pub fn new(token: Option<&str>, protocol: u32) -> Result<Self, SharedError> {
        let bearer = match token.filter(|t| !t.is_empty()) {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| SharedError::invalid("token", "it must be printable ASCII"))?,
            ),
            None => None,
        };
        let protocol = MetadataValue::from(protocol);
        Ok(ClientAuth { bearer, protocol })
    }
}

impl Interceptor for ClientAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(b) = &self.bearer {
            req.metadata_mut().insert("authorization", b.clone());
        }
        req.metadata_mut()
            .insert(PROTOCOL_HEADER, self.protocol.clone());
        Ok(req)
    }
}
