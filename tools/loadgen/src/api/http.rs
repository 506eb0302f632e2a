//! The HTTP/JSON client: `/api/v1/tasks` over one pooled reqwest client.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{LIST_PAGE_SIZE, ListPage, ListStatus, REQUEST_TIMEOUT, TaskInfo};
use crate::credentials::Credentials;
use crate::errors::CallError;
use crate::workload::Workload;

/// HTTP: one pooled client.
pub struct HttpApi {
    client: reqwest::Client,
    base: String,
    /// `Authorization` values: one per submitting user.
    submit_auth: Vec<String>,
    /// `Authorization` for lists and reads.
    read_auth: String,
}

/// HTTP task body (fields the load generator reads).
#[derive(Deserialize)]
struct HttpTask {
    task_id: String,
    completed_at: Option<DateTime<Utc>>,
}

impl From<HttpTask> for TaskInfo {
    fn from(t: HttpTask) -> Self {
        Self {
            id: t.task_id,
            completed_at: t.completed_at,
        }
    }
}

/// HTTP batch and list bodies.
#[derive(Deserialize)]
struct HttpTasks {
    tasks: Vec<HttpTask>,
    #[serde(default)]
    next_page_token: Option<String>,
}

impl HttpApi {
    /// A client for `base` that keeps up to `concurrency` idle connections.
    pub fn connect(
        base: String,
        concurrency: usize,
        credentials: &Credentials,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            client,
            base,
            submit_auth: credentials
                .submit
                .iter()
                .map(|t| format!("Bearer {t}"))
                .collect(),
            read_auth: format!("Bearer {}", credentials.read),
        })
    }

    /// Submits tasks `first..first + count` as user `user`: one `POST /api/v1/tasks`, or one
    /// `POST /api/v1/tasks/batch` when `batched`.
    pub async fn submit(
        &self,
        user: usize,
        first: usize,
        count: usize,
        batched: bool,
        work: &Workload,
    ) -> Result<Vec<String>, CallError> {
        let one = |k: usize| json!({ "type": work.task_type, "payload": work.payload_json(k) });
        if batched {
            let body = json!({ "tasks": (first..first + count).map(one).collect::<Vec<_>>() });
            let resp: HttpTasks = self
                .send_json(self.submit_auth(user), "/api/v1/tasks/batch", &body)
                .await?;
            Ok(resp.tasks.into_iter().map(|t| t.task_id).collect())
        } else {
            let resp: HttpTask = self
                .send_json(self.submit_auth(user), "/api/v1/tasks", &one(first))
                .await?;
            Ok(vec![resp.task_id])
        }
    }

    /// `GET /api/v1/tasks/{id}`.
    pub async fn get(&self, id: &str) -> Result<(), CallError> {
        let _: HttpTask = self
            .read_json(&format!("/api/v1/tasks/{}", encode_query(id)))
            .await?;
        Ok(())
    }

    /// One page of `GET /api/v1/tasks?status=…`.
    pub async fn list(&self, status: ListStatus, page_token: &str) -> Result<ListPage, CallError> {
        let mut path = format!(
            "/api/v1/tasks?status={}&page_size={LIST_PAGE_SIZE}",
            status.as_str()
        );
        if !page_token.is_empty() {
            path.push_str("&page_token=");
            path.push_str(&encode_query(page_token));
        }
        let page: HttpTasks = self.read_json(&path).await?;
        Ok(ListPage {
            tasks: page.tasks.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        })
    }

    /// The `Authorization` value of submitting user `user`.
    fn submit_auth(&self, user: usize) -> &str {
        &self.submit_auth[user % self.submit_auth.len()]
    }

    /// POSTs a JSON body with `auth` and decodes a 2xx JSON answer.
    async fn send_json<T: DeserializeOwned>(
        &self,
        auth: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, CallError> {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, auth)
            .json(body);
        Self::decode(req.send().await).await
    }

    /// GETs `path` and decodes a 2xx JSON answer.
    async fn read_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, CallError> {
        let req = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, &self.read_auth);
        Self::decode(req.send().await).await
    }

    /// A 2xx answer's JSON body, or the error: transport, status (with the body's start) or
    /// body.
    async fn decode<T: DeserializeOwned>(
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, CallError> {
        let resp = sent.map_err(|e| CallError::reqwest(&e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| CallError::reqwest(&e))?;
        if !status.is_success() {
            return Err(CallError::new(
                format!("http {}", status.as_u16()),
                String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
            ));
        }
        serde_json::from_slice(&body).map_err(|e| CallError::new("http bad body", e.to_string()))
    }
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved characters pass through).
fn encode_query(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::encode_query;

    #[test]
    fn encodes_all_but_unreserved_characters() {
        assert_eq!(encode_query("aZ09-._~"), "aZ09-._~");
        assert_eq!(encode_query("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(encode_query("é"), "%C3%A9");
    }
}
