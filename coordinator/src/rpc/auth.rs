//! Authentication and protocol checks on every gRPC call: a shared-secret bearer token
//! (`authorization: Bearer <token>`) and the protocol version header ([`PROTOCOL_HEADER`]). The server
//! side is a tonic interceptor in front of every service; the client side ([`mer_shared::client::ClientAuth`]) adds both headers.

use mer_shared::proto::{PROTOCOL_HEADER, PROTOCOL_VERSION};
use std::sync::Arc;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Server-side check of the token and the protocol version.
#[derive(Clone, Default)]
pub struct ServerAuth {
    token: Option<Arc<str>>,
}

impl ServerAuth {
    /// Requires `token` when given; always requires the protocol header.
    pub fn new(token: Option<String>) -> Self {
        ServerAuth {
            token: token.filter(|t| !t.is_empty()).map(Arc::from),
        }
    }
}

/// Compares without an early exit (the token is a secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a request's protocol header against ours.
pub fn check_protocol<T>(req: &Request<T>) -> Result<(), Status> {
    let v = req
        .metadata()
        .get(PROTOCOL_HEADER)
        .ok_or_else(|| Status::failed_precondition(format!("missing {PROTOCOL_HEADER} header: the client is not a mer client of protocol {PROTOCOL_VERSION}")))?;
    let theirs: u32 = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| Status::failed_precondition(format!("bad {PROTOCOL_HEADER} header")))?;
    if theirs != PROTOCOL_VERSION {
        return Err(Status::failed_precondition(format!(
            "protocol version mismatch: the coordinator speaks protocol {PROTOCOL_VERSION}, this client speaks {theirs}; use matching mer versions"
        )));
    }
    Ok(())
}

impl Interceptor for ServerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.token {
            let got = req
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let ok = got
                .strip_prefix("Bearer ")
                .is_some_and(|t| same(t.as_bytes(), token.as_bytes()));
            if !ok {
                return Err(Status::unauthenticated(if got.is_empty() {
                    "no bearer token: this coordinator needs --token / MER_TOKEN"
                } else {
                    "wrong bearer token"
                }));
            }
        }
        check_protocol(&req)?;
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mer_shared::client::ClientAuth;

    fn req(client: &mut ClientAuth) -> Request<()> {
        client.call(Request::new(())).unwrap()
    }

    #[test]
    fn token_and_protocol_are_checked() {
        let mut server = ServerAuth::new(Some("s3cret".into()));
        let mut good = ClientAuth::new(Some("s3cret"), PROTOCOL_VERSION).unwrap();
        assert!(server.call(req(&mut good)).is_ok());
        let mut wrong = ClientAuth::new(Some("guess"), PROTOCOL_VERSION).unwrap();
        let e = server.call(req(&mut wrong)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unauthenticated);
        assert!(e.message().contains("wrong bearer token"));
        let mut none = ClientAuth::new(None, PROTOCOL_VERSION).unwrap();
        assert_eq!(
            server.call(req(&mut none)).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let mut old = ClientAuth::new(Some("s3cret"), PROTOCOL_VERSION + 1).unwrap();
        let e = server.call(req(&mut old)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(
            e.message().contains("protocol version mismatch"),
            "{}",
            e.message()
        );
        // Without a token configured, anything with the right protocol passes.
        let mut open = ServerAuth::new(None);
        assert!(open.call(req(&mut none)).is_ok());
        assert!(
            open.call(Request::new(())).is_err(),
            "the protocol header is always required"
        );
    }
}
