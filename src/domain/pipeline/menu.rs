//! Seed 004's menu pipeline, the built-in example: a menu entry's name becomes its
//! translation, category, description, allergens and ingredients (each a `prompt` stage), a
//! searched photo and a generated image (`image_generation` stages). Without provider keys the
//! development answers and tiles fill it in deterministically.

/// The `menu` definition (JSON, as a `PIPELINES_FILE` would hold it).
pub const MENU: &str = r#"{"pipelines": [{
  "name": "menu",
  "description": "Seed 004: a Japanese menu entry -> translation, category, description, allergens, ingredients, a photo found and an image generated",
  "stages": [
    {"name": "translation", "task_type": "prompt", "payload": {
      "system": "You translate Japanese restaurant menus into natural English.",
      "prompt": "Translate this menu item name into English.\n{{item.name}}",
      "schema": {"type": "object", "required": ["translation"],
                 "properties": {"translation": {"type": "string"}}}}},
    {"name": "category", "task_type": "prompt", "payload": {
      "prompt": "Which menu category (e.g. Appetizers, Main dishes, Noodles, Drinks, Desserts) is this item in? Give it in English and in Japanese.\n{{item.name}}",
      "schema": {"type": "object", "required": ["category", "category_translation"],
                 "properties": {"category": {"type": "string"},
                                "category_translation": {"type": "string"}}}}},
    {"name": "description", "task_type": "prompt", "payload": {
      "prompt": "Describe this dish in one appetising English sentence for foreign guests.\n{{translation.translation}} ({{item.name}})",
      "schema": {"type": "object", "required": ["description"],
                 "properties": {"description": {"type": "string"}}}}},
    {"name": "allergens", "task_type": "prompt", "payload": {
      "prompt": "List the allergens this dish likely contains (of the 28 labelled in Japan), in English.\n{{translation.translation}} ({{item.name}})",
      "schema": {"type": "object", "required": ["allergens"],
                 "properties": {"allergens": {"type": "array", "items": {"type": "string"}}}}}},
    {"name": "ingredients", "task_type": "prompt", "needs": ["description"], "payload": {
      "prompt": "List the main ingredients of this dish, in English.\n{{translation.translation}}: {{description.description}}",
      "schema": {"type": "object", "required": ["ingredients"],
                 "properties": {"ingredients": {"type": "array", "items": {"type": "string"}}}}}},
    {"name": "image_search", "task_type": "image_generation", "payload": {
      "source": "search", "query": "{{translation.translation}}",
      "orientation": "landscape", "count": 1}},
    {"name": "generated_image", "task_type": "image_generation", "payload": {
      "source": "generate", "style": "photo",
      "prompt": "A photograph of {{translation.translation}} as served in a Japanese restaurant. {{description.description}}"}}
  ]
}]}"#;

#[cfg(test)]
mod tests {
    use super::super::{Format, parse_document};
    use super::*;

    #[test]
    fn the_menu_is_a_valid_seven_stage_pipeline() {
        let p = parse_document(MENU, Format::Json).unwrap().remove(0);
        assert_eq!(p.name, "menu");
        let names: Vec<&str> = p.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "translation",
                "category",
                "description",
                "allergens",
                "ingredients",
                "image_search",
                "generated_image"
            ]
        );
        assert_eq!(p.stages[4].needs, ["description", "translation"]);
        assert_eq!(p.stages[5].needs, ["translation"]);
        assert_eq!(p.stages[6].needs, ["translation", "description"]);
    }
}
