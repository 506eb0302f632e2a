//! The pipeline definitions this service runs: the built-in `menu`, then those of
//! `PIPELINES_FILE` (a file's pipeline of the same name replaces the built-in one).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::domain::pipeline::{DefinitionError, Format, PipelineDef, built_in, parse_document};

/// The loaded definitions, by name.
#[derive(Debug, Clone, Default)]
pub struct Catalog(Arc<BTreeMap<String, PipelineDef>>);

impl Catalog {
    /// The built-in definitions and `extra`.
    pub fn with(extra: Vec<PipelineDef>) -> Self {
        let mut all: BTreeMap<String, PipelineDef> = built_in()
            .into_iter()
            .map(|p| (p.name.clone(), p))
            .collect();
        for p in extra {
            all.insert(p.name.clone(), p);
        }
        Self(Arc::new(all))
    }

    /// The built-in definitions and those of `file`; a file that cannot be read or holds a
    /// bad definition is an error naming the file and the fault.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = file else {
            return Ok(Self::with(Vec::new()));
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("PIPELINES_FILE {}: {e}", path.display()))?;
        let format = Format::of_path(&path.display().to_string());
        let defs = parse_document(&text, format).map_err(|e: DefinitionError| {
            anyhow::anyhow!("PIPELINES_FILE {}: {e}", path.display())
        })?;
        Ok(Self::with(defs))
    }

    /// One definition.
    pub fn get(&self, name: &str) -> Option<&PipelineDef> {
        self.0.get(name)
    }

    /// Every definition, by name.
    pub fn all(&self) -> impl Iterator<Item = &PipelineDef> {
        self.0.values()
    }
}
