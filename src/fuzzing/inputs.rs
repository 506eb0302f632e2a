//! Client requests: HTTP JSON bodies and gRPC messages, decoded and validated into domain
//! requests as the handlers do.

use prost::Message;

use super::pick;
use crate::api::error::ApiError;
use crate::api::grpc::tasks::{list_filter, new_task, new_tasks};
use crate::api::http::json::{SubmitBatchRequest, SubmitRequest};
use crate::api::proto;
use crate::auth::Caller;
use crate::domain::{Role, SubmitPolicy, Tier, UserId};

/// A user, or an admin (who may ask for higher priorities).
fn caller(admin: bool) -> Caller {
    Caller {
        // A valid literal id: cannot fail.
        user_id: UserId::parse("fuzz-user").expect("a valid user id"),
        role: if admin { Role::Admin } else { Role::User },
        tier: Tier::Free,
    }
}

/// `data[0]`: 0 `POST /api/v1/tasks`, 1 `POST /api/v1/tasks/batch`, as a user; 2 and 3 the
/// same as an admin. The rest is the body, decoded by axum's `Json` as the extractor does.
pub fn http_json(data: &[u8]) {
    let Some((variant, body)) = pick(data, 4) else {
        return;
    };
    let caller = caller(variant >= 2);
    let policy = SubmitPolicy::default();
    let _ = if variant % 2 == 0 {
        axum::Json::<SubmitRequest>::from_bytes(body)
            .map_err(ApiError::from)
            .and_then(|axum::Json(r)| r.into_new_task(&caller, &policy).map(|t| vec![t]))
    } else {
        axum::Json::<SubmitBatchRequest>::from_bytes(body)
            .map_err(ApiError::from)
            .and_then(|axum::Json(r)| r.into_new_tasks(&caller, &policy))
    };
}

/// `data[0]`: 0 `SubmitTask`, 1 `SubmitTasks`, 2 `ListTasks` as a user; 3 to 5 the same as an
/// admin. The rest is the protobuf message, decoded by prost as tonic does.
pub fn grpc_request(data: &[u8]) {
    let Some((variant, message)) = pick(data, 6) else {
        return;
    };
    let caller = caller(variant >= 3);
    let policy = SubmitPolicy::default();
    match variant % 3 {
        0 => {
            if let Ok(r) = proto::SubmitTaskRequest::decode(message) {
                let _ = new_task(&caller, r, &policy);
            }
        }
        1 => {
            if let Ok(r) = proto::SubmitTasksRequest::decode(message) {
                let _ = new_tasks(&caller, r, &policy);
            }
        }
        _ => {
            if let Ok(r) = proto::ListTasksRequest::decode(message) {
                let _ = list_filter(&r);
            }
        }
    }
}
