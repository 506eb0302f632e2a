//! `GET /api/v1/task-types`: every task type and its payload fields, from the same schemas
//! that validate submits.

use axum::Json;
use serde::Serialize;

use crate::api::auth::Authenticated;
use crate::domain::payload::{self, Field, Need, SCHEMAS};

/// One type.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TypeBody {
    #[serde(rename = "type")]
    task_type: &'static str,
    default_priority: u8,
    /// Whether fields not listed are refused.
    strict: bool,
    fields: Vec<FieldBody>,
    result: &'static str,
}

/// One payload field.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FieldBody {
    name: &'static str,
    /// Its values, in words (`text, at most 200000 characters`, `1-4`, ...).
    values: String,
    required: bool,
    /// For a field of a group of which one is required: the group's first member.
    #[serde(skip_serializing_if = "Option::is_none")]
    one_of: Option<&'static str>,
    doc: &'static str,
}

impl From<&Field> for FieldBody {
    fn from(f: &Field) -> Self {
        Self {
            name: f.name,
            values: payload::describe(&f.kind).replace(" \\| ", " | "),
            required: f.need == Need::Required,
            one_of: match f.need {
                Need::OneOf(group) => Some(group),
                _ => None,
            },
            doc: f.doc,
        }
    }
}

/// Every type the service accepts, with its payload fields.
#[utoipa::path(get, path = "/api/v1/task-types", tag = "tasks",
    responses((status = 200, description = "Every task type with its payload fields", body = Vec<TypeBody>)))]
pub async fn list(Authenticated(_): Authenticated) -> Json<Vec<TypeBody>> {
    Json(
        SCHEMAS
            .iter()
            .map(|s| TypeBody {
                task_type: s.task_type.as_str(),
                default_priority: s.task_type.default_priority().value(),
                strict: s.strict,
                fields: s.all_fields().map(FieldBody::from).collect(),
                result: s.result,
            })
            .collect(),
    )
}
