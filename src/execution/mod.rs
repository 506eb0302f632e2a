//! What each task type does: prompts for the text types, article extraction, images, and the
//! runner that executes one attempt of a task through the cache and the provider router.

mod attempts;
mod cache;
mod dev_image;
mod extract;
mod json;
mod prompt_type;
mod prompts;
mod runner;
mod sink;

pub use attempts::AttemptRecorder;
pub use cache::{CacheCounters, CacheStats, MemoryCache, RedisCache, ResponseCache};
pub(crate) use extract::article;
pub use extract::{ExtractConfig, Extractor};
pub use runner::{ProviderOutput, TaskRunner, TaskRunnerParts};
pub use sink::TokenCollector;
