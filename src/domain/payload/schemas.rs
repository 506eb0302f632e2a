//! The payload schema of every task type: the one description that submit validation (HTTP,
//! gRPC, batch), `GET /api/v1/task-types` and the README's table are made from.

use super::ImageStyle;
use super::field::{Field, Kind, MAX_MODEL_LEN};
use crate::domain::TaskType;

/// Longest article or source text (characters): a long article is ~100,000.
pub const MAX_TEXT_CHARS: usize = 200_000;
/// Longest prompt, instruction or context (characters).
const MAX_PROMPT_CHARS: usize = 4_000;
/// Longest summary to validate (characters).
const MAX_SUMMARY_CHARS: usize = 20_000;
/// Longest vocabulary item (characters).
const MAX_ITEM_CHARS: usize = 200;
/// Longest echo delay, whatever `TASK_TIMEOUT` allows (10 minutes).
pub const MAX_ECHO_DELAY_MS: i64 = 600_000;

/// What a task type's payload may hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TypeSchema {
    /// The type.
    pub task_type: TaskType,
    /// Its fields.
    pub fields: &'static [Field],
    /// Whether a field not listed is refused (every type but `echo`).
    pub strict: bool,
    /// The fields every AI type accepts (model, tokens, cache), listed once for all.
    pub common: &'static [Field],
    /// What the task returns, for the docs.
    pub result: &'static str,
}

const LENGTHS: &[&str] = &["short", "medium", "long"];
const SOURCES: &[&str] = &["generate", "search"];
const SIZES: &[&str] = &[
    "256x256",
    "512x512",
    "1024x1024",
    "1024x1536",
    "1536x1024",
    "1024x1792",
    "1792x1024",
    "auto",
];
const ORIENTATIONS: &[&str] = &["landscape", "portrait", "squarish"];
const TEST_TYPES: &[&str] = &[
    "multiple_choice",
    "fill_in_the_blank",
    "true_false",
    "translation",
    "short_answer",
];
const LEVELS: &[&str] = &[
    "beginner",
    "elementary",
    "intermediate",
    "advanced",
    "native",
];

/// `model`, `cache`: every type that calls a provider.
const CALL_OPTIONS: &[Field] = &[
    Field::optional(
        "model",
        Kind::Text {
            min: 1,
            max: MAX_MODEL_LEN,
        },
        "the provider's model instead of its configured default",
    ),
    Field::optional("cache", Kind::Bool, "`false` skips the response cache"),
];

/// `model`, `max_tokens`, `temperature`, `cache`: the text types.
const TEXT_OPTIONS: &[Field] = &[
    CALL_OPTIONS[0],
    Field::optional(
        "max_tokens",
        Kind::Int { min: 16, max: 8192 },
        "longest answer in tokens",
    ),
    Field::optional(
        "temperature",
        Kind::Number { min: 0.0, max: 2.0 },
        "sampling temperature",
    ),
    CALL_OPTIONS[1],
];

const PREFERENCES: &[Field] = &[
    Field::optional("length", Kind::Choice(LENGTHS), "as `length`"),
    Field::optional("language", Kind::Language, "as `language`"),
];

/// Every type's schema, in [`TaskType::ALL`] order.
pub const SCHEMAS: [TypeSchema; 8] = [
    TypeSchema {
        task_type: TaskType::Echo,
        fields: &[
            Field::optional(
                "delay_ms",
                Kind::Int {
                    min: 0,
                    max: MAX_ECHO_DELAY_MS,
                },
                "waits this long first (at most `TASK_TIMEOUT`)",
            ),
            Field::optional(
                "fail_times",
                Kind::Int { min: 0, max: 100 },
                "fails the first that many attempts with a retryable error",
            ),
        ],
        strict: false,
        common: &[],
        result: "the payload",
    },
    TypeSchema {
        task_type: TaskType::Summarize,
        fields: &[
            Field::one_of(
                "text",
                "text",
                Kind::Text {
                    min: 1,
                    max: MAX_TEXT_CHARS,
                },
                "the text to summarize",
            ),
            Field::one_of(
                "text",
                "content",
                Kind::Text {
                    min: 1,
                    max: MAX_TEXT_CHARS,
                },
                "the same, seed 003's name",
            ),
            Field::optional("length", Kind::Choice(LENGTHS), "default `medium`"),
            Field::optional(
                "language",
                Kind::Language,
                "the summary's language, default `en`",
            ),
            Field::optional(
                "user_preferences",
                Kind::Object(PREFERENCES),
                "seed 003's `{length, language}`",
            ),
        ],
        strict: true,
        common: TEXT_OPTIONS,
        result: "`{\"summary\", \"key_points\": [..], \"language\", \"length\", \"method\": \"ai\" | \"extraction\", \"provider\", \"model\"}`",
    },
    TypeSchema {
        task_type: TaskType::ExtractContent,
        fields: &[Field::required(
            "url",
            Kind::HttpUrl,
            "the article; public addresses only unless `EXTRACT_ALLOW_PRIVATE`",
        )],
        strict: true,
        common: &[CALL_OPTIONS[1]],
        result: "`{\"url\", \"final_url\", \"title\", \"byline\", \"site_name\", \"language\", \"published_time\", \"excerpt\", \"text\", \"length\"}` (readability extraction, no AI call)",
    },
    TypeSchema {
        task_type: TaskType::ValidateSummary,
        fields: &[
            Field::required(
                "original",
                Kind::Text {
                    min: 1,
                    max: MAX_TEXT_CHARS,
                },
                "the source text",
            ),
            Field::required(
                "summary",
                Kind::Text {
                    min: 1,
                    max: MAX_SUMMARY_CHARS,
                },
                "the summary to check",
            ),
        ],
        strict: true,
        common: TEXT_OPTIONS,
        result: "`{\"valid\": bool, \"score\": 0..1, \"issues\": [..], \"provider\", \"model\"}`",
    },
    TypeSchema {
        task_type: TaskType::ItemInfoGeneration,
        fields: &[
            Field::required(
                "item",
                Kind::Text {
                    min: 1,
                    max: MAX_ITEM_CHARS,
                },
                "the word or phrase",
            ),
            Field::optional(
                "language",
                Kind::Language,
                "the item's language, default `en`",
            ),
            Field::optional(
                "explanation_language",
                Kind::Language,
                "the language to explain in, default `language`",
            ),
            Field::optional(
                "context",
                Kind::Text {
                    min: 1,
                    max: MAX_PROMPT_CHARS,
                },
                "where the item was met",
            ),
        ],
        strict: true,
        common: TEXT_OPTIONS,
        result: "`{\"item\", \"meaning\", \"part_of_speech\", \"pronunciation\", \"examples\": [{\"sentence\", \"translation\"}], \"synonyms\", \"notes\", \"provider\", \"model\"}`",
    },
    TypeSchema {
        task_type: TaskType::ImageGeneration,
        fields: &[
            Field::one_of(
                "prompt",
                "prompt",
                Kind::Text {
                    min: 1,
                    max: MAX_PROMPT_CHARS,
                },
                "what to draw or find",
            ),
            Field::one_of(
                "prompt",
                "query",
                Kind::Text {
                    min: 1,
                    max: MAX_PROMPT_CHARS,
                },
                "the same, for a search",
            ),
            Field::one_of(
                "prompt",
                "description",
                Kind::Text {
                    min: 1,
                    max: MAX_PROMPT_CHARS,
                },
                "the same, seed 000's name",
            ),
            Field::optional(
                "style",
                Kind::Choice(ImageStyle::NAMES),
                "seed 000's image style (see Image styles)",
            ),
            Field::optional(
                "source",
                Kind::Choice(SOURCES),
                "default `generate` when a generating provider is configured, else `search`",
            ),
            Field::optional("count", Kind::Int { min: 1, max: 4 }, "default 1"),
            Field::optional("size", Kind::Choice(SIZES), "generated images' size"),
            Field::optional(
                "orientation",
                Kind::Choice(ORIENTATIONS),
                "searched photos' shape",
            ),
        ],
        strict: true,
        common: CALL_OPTIONS,
        result: "`{\"images\": [{\"url\" | \"b64_json\", \"description\", \"author\"?, \"source_url\"?, \"width\"?, \"height\"?}], \"source\", \"style\"?, \"provider\", \"model\"}`",
    },
    TypeSchema {
        task_type: TaskType::TestCustomization,
        fields: &[
            Field::required(
                "items",
                Kind::Items {
                    max_items: 100,
                    max_len: MAX_ITEM_CHARS,
                },
                "the vocabulary items to test: strings or item objects",
            ),
            Field::optional(
                "instruction",
                Kind::Text {
                    min: 1,
                    max: MAX_PROMPT_CHARS,
                },
                "seed 000's free-text customisation, e.g. \"focus on phrasal verbs\"",
            ),
            Field::optional("level", Kind::Choice(LEVELS), "default `intermediate`"),
            Field::optional("question_count", Kind::Int { min: 1, max: 20 }, "default 5"),
            Field::optional(
                "test_type",
                Kind::Choice(TEST_TYPES),
                "default `multiple_choice`",
            ),
        ],
        strict: true,
        common: TEXT_OPTIONS,
        result: "`{\"questions\": [{\"item\", \"question\", \"choices\", \"answer\", \"explanation\"}], \"instruction\"?, \"provider\", \"model\"}`",
    },
    TypeSchema {
        task_type: TaskType::Prompt,
        fields: &[
            Field::required(
                "prompt",
                Kind::Text {
                    min: 1,
                    max: MAX_SUMMARY_CHARS,
                },
                "the question to the model (a pipeline stage renders it from its template)",
            ),
            Field::optional(
                "system",
                Kind::Text {
                    min: 1,
                    max: MAX_PROMPT_CHARS,
                },
                "instructions for the model",
            ),
            Field::optional(
                "schema",
                Kind::Any,
                "a JSON schema (object) the answer must match; a mismatch is a retryable failure",
            ),
        ],
        strict: true,
        common: TEXT_OPTIONS,
        result: "the answer: with `schema`, its JSON object; without, `{\"text\"}`; plus `provider`, `model`",
    },
];
