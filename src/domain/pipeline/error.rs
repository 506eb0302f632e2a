//! Why a pipeline definition or a session request was refused.

/// A definition that cannot run: refused when the definitions are loaded, so a bad
/// `PIPELINES_FILE` stops the service at start with this message instead of failing items.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    /// The file or document does not parse.
    #[error("pipeline definitions do not parse: {0}")]
    Syntax(String),
    /// A name is not a lowercase identifier.
    #[error(
        "pipeline {pipeline:?}: {what} name {name:?} must be 1-64 characters of a-z, 0-9 and _"
    )]
    BadName {
        /// The pipeline.
        pipeline: String,
        /// `pipeline` or `stage`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// Two pipelines or two stages share a name.
    #[error("pipeline {pipeline:?}: {what} {name:?} is defined twice")]
    Duplicate {
        /// The pipeline.
        pipeline: String,
        /// `pipeline` or `stage`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A pipeline without stages.
    #[error("pipeline {0:?} has no stages")]
    NoStages(String),
    /// A stage needs (or its template reads) a stage that does not exist.
    #[error("pipeline {pipeline:?}: stage {stage:?} depends on unknown stage {unknown:?}")]
    UnknownStage {
        /// The pipeline.
        pipeline: String,
        /// The stage that refers.
        stage: String,
        /// The name it refers to.
        unknown: String,
    },
    /// The stages' dependencies form a cycle.
    #[error("pipeline {pipeline:?}: stages depend on each other in a cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The pipeline.
        pipeline: String,
        /// The stages of one cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// A stage's task type is unknown or its payload template is malformed.
    #[error("pipeline {pipeline:?}: stage {stage:?}: {message}")]
    BadStage {
        /// The pipeline.
        pipeline: String,
        /// The stage.
        stage: String,
        /// What is wrong.
        message: String,
    },
    /// A limit out of range.
    #[error("pipeline {pipeline:?}: {message}")]
    BadLimit {
        /// The pipeline.
        pipeline: String,
        /// What is wrong.
        message: String,
    },
}
