//! A scripted API server for the reconcile tests without a cluster (controller-rs's fixtures): a
//! kube `Client` over an in-memory service whose every request the test answers in order, so
//! each scenario says exactly what a reconcile reads and writes. The same reconciles against a
//! real kube-apiserver are in `tests/tests/operator_*.rs`.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{Client, api::ObjectMeta, client::Body, runtime::controller::Action};
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};

use crate::{
    controller::{Context, cache::Caches},
    metrics::Metrics,
};

/// The namespace every scenario runs in.
pub(super) const NS: &str = "vpn";

/// The API server's side of the client: each request, taken in order.
pub(super) struct ApiServer(Handle<Request<Body>, Response<Body>>);

/// One request the reconcile made.
pub(super) struct Call {
    pub(super) method: Method,
    /// Path and query.
    pub(super) uri: String,
    pub(super) body: Value,
    reply: SendResponse<Response<Body>>,
}

impl Call {
    async fn of(request: Request<Body>, reply: SendResponse<Response<Body>>) -> Self {
        let (parts, body) = request.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Self {
            method: parts.method,
            uri: parts.uri.to_string(),
            body,
            reply,
        }
    }

    /// The path without the query.
    pub(super) fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }

    pub(super) fn answer(self, status: StatusCode, body: &Value) {
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap();
        self.reply.send_response(response);
    }

    pub(super) fn not_found(self) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": "NotFound", "code": 404, "message": "not found"});
        self.answer(StatusCode::NOT_FOUND, &status);
    }

    pub(super) fn conflict(self) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": "AlreadyExists", "code": 409, "message": "already exists"});
        self.answer(StatusCode::CONFLICT, &status);
    }

    /// Answers a status apply with `object` carrying the applied status.
    pub(super) fn applied_to(self, object: &impl serde::Serialize) {
        let mut object = serde_json::to_value(object).unwrap();
        object["status"] = self.body["status"].clone();
        self.answer(StatusCode::OK, &object);
    }

    /// Answers with what was sent (a create echoed back).
    pub(super) fn echo(self) {
        let body = self.body.clone();
        self.answer(StatusCode::OK, &body);
    }
}

impl ApiServer {
    /// The next request, which must be `method` on a path starting with `path`.
    pub(super) async fn expect(&mut self, method: Method, path: &str) -> Call {
        let call = self.next(&format!("{method} {path}")).await;
        assert_eq!(
            (&call.method, call.uri.starts_with(path)),
            (&method, true),
            "got {} {}; expected {method} {path}",
            call.method,
            call.uri
        );
        call
    }

    /// The next request, whatever it is; `expected` names it in the failure when none comes.
    pub(super) async fn next(&mut self, expected: &str) -> Call {
        let (request, reply) = tokio::time::timeout(Duration::from_secs(10), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request; expected {expected}"))
            .unwrap_or_else(|| panic!("the client is gone; expected {expected}"));
        Call::of(request, reply).await
    }

    /// Runs `reconciled` to its end, giving each request it makes to `answer`; returns its result
    /// and every request as `METHOD path`, in the order made.
    pub(super) async fn serve(
        &mut self,
        reconciled: tokio::task::JoinHandle<crate::Result<Action>>,
        mut answer: impl FnMut(Call),
    ) -> (crate::Result<Action>, Vec<String>) {
        let mut made = Vec::new();
        let mut reconciled = std::pin::pin!(reconciled);
        let deadline = tokio::time::sleep(Duration::from_secs(30));
        let mut deadline = std::pin::pin!(deadline);
        loop {
            tokio::select! {
                result = &mut reconciled => return (result.unwrap(), made),
                request = self.0.next_request() => {
                    let (request, reply) = request.expect("the client is gone");
                    let call = Call::of(request, reply).await;
                    made.push(format!("{} {}", call.method, call.path()));
                    answer(call);
                }
                () = &mut deadline => panic!("the reconcile did not finish; made {made:#?}"),
            }
        }
    }

    /// No request beyond the ones expected: the client (and so the reconcile) is done.
    pub(super) async fn expect_no_more(mut self) {
        if let Ok(Some((request, _))) =
            tokio::time::timeout(Duration::from_secs(1), self.0.next_request()).await
        {
            panic!("unexpected {} {}", request.method(), request.uri());
        }
    }
}

/// The reconcile's result; a reconcile still waiting is one that made a request the scenario
/// does not expect (and so never answers): that fails the test instead of hanging it.
pub(super) async fn finished(reconciled: tokio::task::JoinHandle<crate::Result<Action>>) -> Action {
    tokio::time::timeout(Duration::from_secs(10), reconciled)
        .await
        .expect("the reconcile made a request this scenario does not expect")
        .unwrap()
        .unwrap()
}

/// Secret `name` holding `password` under the default key `password`.
pub(super) fn password_secret(name: &str, password: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "password".into(),
            ByteString(password.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    }
}

/// `object` as the JSON an answer carries.
pub(super) fn json_of(object: &impl serde::Serialize) -> Value {
    serde_json::to_value(object).unwrap()
}

/// A context over a scripted API server; with `caches`, the reconciles read from them as the
/// gateway controller's do.
pub(super) fn context(caches: Option<Caches>) -> (Arc<Context>, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let context = Context::new(
        client,
        Metrics::new(),
        "sstp-gateway:test".into(),
        None,
        "test".into(),
    );
    let context = match caches {
        Some(caches) => context.with_caches(caches),
        None => context,
    };
    (Arc::new(context), ApiServer(handle))
}
