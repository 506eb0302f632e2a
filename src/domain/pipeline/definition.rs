//! Pipeline definitions: named stages, each a task type with a payload template over the item
//! and earlier stages' results. Parsed and checked once, when loaded: unknown stages, cycles,
//! bad names and malformed templates are refused with a message naming the stage.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::DefinitionError;
use super::template::{self, ITEM};
use crate::domain::TaskType;

/// Longest pipeline or stage name.
const MAX_NAME: usize = 64;
/// Most stages in one pipeline.
const MAX_STAGES: usize = 32;

/// A definitions document as written (TOML or JSON): `{"pipelines": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    pipelines: Vec<RawPipeline>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: String,
    #[serde(default)]
    description: String,
    max_parallel_tasks: Option<u32>,
    batch_size: Option<u32>,
    stages: Vec<RawStage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: String,
    task_type: String,
    #[serde(default)]
    needs: Vec<String>,
    #[serde(default)]
    payload: Value,
    priority: Option<i64>,
}

/// One stage: a task of `task_type` per item, created once every stage it needs is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageDef {
    /// Unique in its pipeline; the key of its result (`stages.<name>`).
    pub name: String,
    /// What runs.
    pub task_type: TaskType,
    /// Stages whose results it reads: the declared ones and those its template names.
    pub needs: Vec<String>,
    /// The payload, with `{{item.x}}` and `{{stage.x}}` placeholders.
    pub payload: Value,
    /// The task's priority; `None`: the type's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
}

/// A checked pipeline: stages in an order where each comes after the stages it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineDef {
    /// The name sessions are created under (`POST /api/v1/pipelines/{name}/sessions`).
    pub name: String,
    /// For people.
    pub description: String,
    /// Stages of one session running at once; `None`: the service's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_tasks: Option<u32>,
    /// Items per call; `None`: the service's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// In dependency order.
    pub stages: Vec<StageDef>,
}

/// Whether a definitions document is TOML or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `*.toml`.
    Toml,
    /// `*.json`.
    Json,
}

impl Format {
    /// The format a file name says (JSON unless it ends in `.toml`).
    pub fn of_path(path: &str) -> Self {
        if path.to_ascii_lowercase().ends_with(".toml") {
            Self::Toml
        } else {
            Self::Json
        }
    }
}

/// Parses and checks every pipeline of a document.
pub fn parse_document(text: &str, format: Format) -> Result<Vec<PipelineDef>, DefinitionError> {
    let raw: RawDocument = match format {
        Format::Toml => toml::from_str(text).map_err(|e| DefinitionError::Syntax(e.to_string()))?,
        Format::Json => {
            serde_json::from_str(text).map_err(|e| DefinitionError::Syntax(e.to_string()))?
        }
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.pipelines.len());
    for p in raw.pipelines {
        if !seen.insert(p.name.clone()) {
            return Err(DefinitionError::Duplicate {
                pipeline: p.name.clone(),
                what: "pipeline",
                name: p.name,
            });
        }
        out.push(check(p)?);
    }
    Ok(out)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= MAX_NAME
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn check(p: RawPipeline) -> Result<PipelineDef, DefinitionError> {
    let pipeline = p.name.clone();
    if !valid_name(&p.name) {
        return Err(DefinitionError::BadName {
            pipeline,
            what: "pipeline",
            name: p.name,
        });
    }
    if p.stages.is_empty() {
        return Err(DefinitionError::NoStages(pipeline));
    }
    if p.stages.len() > MAX_STAGES {
        return Err(DefinitionError::BadLimit {
            pipeline,
            message: format!("at most {MAX_STAGES} stages, got {}", p.stages.len()),
        });
    }
    if p.max_parallel_tasks == Some(0) || p.batch_size == Some(0) {
        return Err(DefinitionError::BadLimit {
            pipeline,
            message: "max_parallel_tasks and batch_size must be at least 1".into(),
        });
    }
    let names: BTreeSet<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
    let mut stages = Vec::with_capacity(p.stages.len());
    let mut seen = BTreeSet::new();
    for s in &p.stages {
        stages.push(check_stage(&pipeline, s, &names, &mut seen)?);
    }
    Ok(PipelineDef {
        stages: in_dependency_order(&pipeline, stages)?,
        name: p.name,
        description: p.description,
        max_parallel_tasks: p.max_parallel_tasks,
        batch_size: p.batch_size,
    })
}

fn check_stage(
    pipeline: &str,
    s: &RawStage,
    names: &BTreeSet<&str>,
    seen: &mut BTreeSet<String>,
) -> Result<StageDef, DefinitionError> {
    if !valid_name(&s.name) || s.name == ITEM {
        return Err(DefinitionError::BadName {
            pipeline: pipeline.to_owned(),
            what: "stage",
            name: s.name.clone(),
        });
    }
    if !seen.insert(s.name.clone()) {
        return Err(DefinitionError::Duplicate {
            pipeline: pipeline.to_owned(),
            what: "stage",
            name: s.name.clone(),
        });
    }
    let bad = |message: String| DefinitionError::BadStage {
        pipeline: pipeline.to_owned(),
        stage: s.name.clone(),
        message,
    };
    let task_type: TaskType = s.task_type.parse().map_err(|e| bad(format!("{e}")))?;
    let payload = match &s.payload {
        Value::Null => Value::Object(Default::default()),
        v @ Value::Object(_) => v.clone(),
        _ => return Err(bad("payload must be an object (a template)".into())),
    };
    let mut needs: Vec<String> = s.needs.clone();
    for p in template::placeholders(&payload).map_err(bad)? {
        if p.root != ITEM && !needs.contains(&p.root) {
            needs.push(p.root);
        }
    }
    for n in &needs {
        if !names.contains(n.as_str()) {
            return Err(DefinitionError::UnknownStage {
                pipeline: pipeline.to_owned(),
                stage: s.name.clone(),
                unknown: n.clone(),
            });
        }
    }
    Ok(StageDef {
        name: s.name.clone(),
        task_type,
        needs,
        payload,
        priority: s.priority,
    })
}

/// The stages, each after those it needs (otherwise in the order written); a cycle is
/// refused, naming its stages.
fn in_dependency_order(
    pipeline: &str,
    mut left: Vec<StageDef>,
) -> Result<Vec<StageDef>, DefinitionError> {
    let mut ordered: Vec<StageDef> = Vec::with_capacity(left.len());
    while !left.is_empty() {
        let done = |n: &String| ordered.iter().any(|s| &s.name == n);
        let Some(next) = left.iter().position(|s| s.needs.iter().all(done)) else {
            return Err(DefinitionError::Cycle {
                pipeline: pipeline.to_owned(),
                cycle: find_cycle(&left),
            });
        };
        ordered.push(left.remove(next));
    }
    Ok(ordered)
}

/// One cycle among `stages` (each of which waits on another of them).
fn find_cycle(stages: &[StageDef]) -> Vec<String> {
    let by_name: HashMap<&str, &StageDef> = stages.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut path: Vec<&str> = Vec::new();
    let mut at = stages[0].name.as_str();
    loop {
        if let Some(i) = path.iter().position(|p| *p == at) {
            let mut cycle: Vec<String> = path[i..].iter().map(|s| (*s).to_owned()).collect();
            cycle.push(at.to_owned());
            return cycle;
        }
        path.push(at);
        // Every stage left waits on one that is left too.
        at = by_name[at]
            .needs
            .iter()
            .find(|n| by_name.contains_key(n.as_str()))
            .map_or(at, String::as_str);
    }
}

impl PipelineDef {
    /// The position of stage `name`.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }

    /// The positions of the stages stage `i` needs.
    pub fn needs_of(&self, i: usize) -> Vec<usize> {
        self.stages[i]
            .needs
            .iter()
            .filter_map(|n| self.stage_index(n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(doc: &str) -> Result<Vec<PipelineDef>, String> {
        parse_document(doc, Format::Json).map_err(|e| e.to_string())
    }

    #[test]
    fn orders_stages_and_infers_needs_from_templates() {
        let doc = r#"{"pipelines": [{"name": "p", "stages": [
            {"name": "b", "task_type": "prompt", "payload": {"prompt": "{{a.text}} {{item.name}}"}},
            {"name": "a", "task_type": "prompt", "payload": {"prompt": "{{item.name}}"}}
        ]}]}"#;
        let p = &json(doc).unwrap()[0];
        let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(p.stages[1].needs, ["a"]);
        assert_eq!(p.needs_of(1), [0]);
    }

    #[test]
    fn toml_works_too() {
        let doc = r#"
            [[pipelines]]
            name = "t"
            max_parallel_tasks = 2
            [[pipelines.stages]]
            name = "one"
            task_type = "echo"
            payload = { text = "{{item.name}}" }
        "#;
        let p = parse_document(doc, Format::Toml).unwrap();
        assert_eq!(p[0].max_parallel_tasks, Some(2));
        assert_eq!(Format::of_path("x.TOML"), Format::Toml);
    }

    #[test]
    fn bad_definitions_are_refused_with_clear_messages() {
        let stage = |name: &str, needs: &str| {
            format!(r#"{{"name": "{name}", "task_type": "echo", "needs": [{needs}]}}"#)
        };
        let doc = |stages: Vec<String>| {
            format!(
                r#"{{"pipelines": [{{"name": "p", "stages": [{}]}}]}}"#,
                stages.join(",")
            )
        };
        let cases = [
            (
                doc(vec![
                    stage("a", r#""c""#),
                    stage("b", r#""a""#),
                    stage("c", r#""b""#),
                ]),
                "cycle: a -> c -> b -> a",
            ),
            (doc(vec![stage("a", r#""nope""#)]), "unknown stage \"nope\""),
            (doc(vec![stage("a", ""), stage("a", "")]), "defined twice"),
            (doc(vec![stage("A", "")]), "must be 1-64 characters"),
            (doc(vec![]), "has no stages"),
            (
                doc(vec![r#"{"name": "a", "task_type": "translate"}"#.into()]),
                "unknown task type",
            ),
            (
                doc(vec![
                    r#"{"name": "a", "task_type": "echo", "payload": {"x": "{{ghost.y}}"}}"#.into(),
                ]),
                "unknown stage \"ghost\"",
            ),
            ("{\"pipelines\": 1}".into(), "do not parse"),
        ];
        for (d, want) in cases {
            let err = json(&d).unwrap_err();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }
}
