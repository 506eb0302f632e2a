//! Pipelines (seed 004): definitions as a DAG of stages over the items of a session, their
//! payload templates, the items callers send, and the state machines of stages, items and
//! sessions. Pure: the store keeps these states and the scheduler drives them.

mod definition;
mod error;
mod items;
mod menu;
mod state;
pub mod template;

pub use definition::{Format, PipelineDef, StageDef, parse_document};
pub use error::DefinitionError;
pub use items::{MAX_ITEM_BYTES, MAX_ITEM_ID, NewItem, parse_items};
pub use menu::MENU;
pub use state::{
    ItemStatus, SessionStatus, StageStatus, finish, finished_session, initial, item_status,
};

/// The built-in definitions (seed 004's `menu`).
pub fn built_in() -> Vec<PipelineDef> {
    // MENU is a constant whose test proves it parses.
    parse_document(MENU, Format::Json).unwrap_or_default()
}
