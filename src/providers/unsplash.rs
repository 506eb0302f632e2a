//! Unsplash photo search (`GET {base}/search/photos`), for image tasks that want an existing
//! photo rather than a generated one.

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use super::http::ProviderHttp;
use super::{
    Adapter, AdapterConfig, Capability, Image, ImageResponse, ImageSearchRequest, ProviderError,
};
use crate::domain::ErrorClass;
use crate::domain::payload::ImageStyle;

/// Unsplash.
pub struct UnsplashAdapter {
    http: ProviderHttp,
}

impl UnsplashAdapter {
    /// An adapter named `name` (usually `unsplash`).
    pub fn new(name: &str, config: AdapterConfig, client: reqwest::Client) -> Self {
        let mut http = ProviderHttp::new(name, config, client);
        http.status_override = Some(hourly_limit);
        Self { http }
    }
}

/// Unsplash signals its hourly limit as 403 with `X-Ratelimit-Remaining: 0`.
fn hourly_limit(status: StatusCode, headers: &HeaderMap) -> Option<ErrorClass> {
    let exhausted = headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0");
    (status == StatusCode::FORBIDDEN && exhausted).then_some(ErrorClass::RateLimited)
}

#[async_trait]
impl Adapter for UnsplashAdapter {
    fn name(&self) -> &str {
        &self.http.name
    }

    fn capabilities(&self) -> &[Capability] {
        &[Capability::ImageSearch]
    }

    async fn search_images(
        &self,
        request: &ImageSearchRequest,
    ) -> Result<ImageResponse, ProviderError> {
        let mut url = reqwest::Url::parse(&self.http.url("/search/photos")).map_err(|e| {
            self.http
                .error(ErrorClass::NonRetryable, format!("bad base URL: {e}"))
        })?;
        {
            let mut query = url.query_pairs_mut();
            // Unsplash has no style parameter; a keyword narrows the search instead.
            match request.style.and_then(ImageStyle::search_keyword) {
                Some(keyword) => {
                    query.append_pair("query", &format!("{} {keyword}", request.query))
                }
                None => query.append_pair("query", &request.query),
            };
            query.append_pair("per_page", &request.count.clamp(1, 30).to_string());
            if let Some(orientation) = &request.orientation {
                query.append_pair("orientation", orientation);
            }
        }
        let get = self
            .http
            .client
            .get(url)
            .header(
                "Authorization",
                format!("Client-ID {}", self.http.config.api_key),
            )
            .header("Accept-Version", "v1");
        self.http
            .bounded(async {
                let response = self.http.send(get).await?;
                self.read_found(&self.http.body(response).await?)
            })
            .await
    }
}

impl UnsplashAdapter {
    /// A whole search answer body, read.
    pub(crate) fn read_found(&self, body: &[u8]) -> Result<ImageResponse, ProviderError> {
        let found: Found = self.http.parse(body)?;
        Ok(ImageResponse {
            images: found.results.into_iter().map(Image::from).collect(),
            model: self.http.name.clone(),
        })
    }
}

/// The search answer.
#[derive(Deserialize)]
struct Found {
    results: Vec<Photo>,
}

#[derive(Deserialize)]
struct Photo {
    width: Option<u32>,
    height: Option<u32>,
    description: Option<String>,
    alt_description: Option<String>,
    urls: Urls,
    links: Option<Links>,
    user: Option<User>,
}

#[derive(Deserialize)]
struct Urls {
    regular: Option<String>,
}

#[derive(Deserialize)]
struct Links {
    html: Option<String>,
}

#[derive(Deserialize)]
struct User {
    name: Option<String>,
}

impl From<Photo> for Image {
    fn from(p: Photo) -> Self {
        Image {
            url: p.urls.regular,
            b64_json: None,
            description: p.alt_description.or(p.description),
            author: p.user.and_then(|u| u.name),
            source_url: p.links.and_then(|l| l.html),
            width: p.width,
            height: p.height,
        }
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn a_photo_becomes_an_image() {
        let found: Found = serde_json::from_str(
            r#"{"total":1,"total_pages":1,"results":[{"id":"x","width":4000,"height":3000,
            "description":null,"alt_description":"a cat on a sofa",
            "urls":{"raw":"r","full":"f","regular":"https://images.unsplash.com/x?w=1080","small":"s","thumb":"t"},
            "links":{"html":"https://unsplash.com/photos/x"},"user":{"name":"Ann Photographer"}}]}"#,
        )
        .unwrap();
        let image = Image::from(found.results.into_iter().next().unwrap());
        assert_eq!(
            image.url.as_deref(),
            Some("https://images.unsplash.com/x?w=1080")
        );
        assert_eq!(image.description.as_deref(), Some("a cat on a sofa"));
        assert_eq!(image.author.as_deref(), Some("Ann Photographer"));
        assert_eq!(
            image.source_url.as_deref(),
            Some("https://unsplash.com/photos/x")
        );
        assert_eq!((image.width, image.height), (Some(4000), Some(3000)));
    }

    #[test]
    fn forbidden_with_no_requests_left_is_the_hourly_limit() {
        let mut h = HeaderMap::new();
        assert_eq!(hourly_limit(StatusCode::FORBIDDEN, &h), None);
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        assert_eq!(
            hourly_limit(StatusCode::FORBIDDEN, &h),
            Some(ErrorClass::RateLimited)
        );
        assert_eq!(hourly_limit(StatusCode::UNAUTHORIZED, &h), None);
    }
}
