//! Seed 000's image style: how an `image_generation` task wants its picture to look. Each
//! image provider maps it to what its API understands (see `providers/openai.rs` and
//! `providers/unsplash.rs`).

use std::str::FromStr;

use crate::domain::DomainError;

/// The look of a generated or searched image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageStyle {
    /// A realistic photograph.
    Photo,
    /// Subdued, true-to-life colours (DALL-E 3's `natural`).
    Natural,
    /// Saturated, dramatic colours (DALL-E 3's `vivid`).
    Vivid,
    /// A flat illustration, as in a textbook.
    Illustration,
    /// A cartoon drawing.
    Cartoon,
    /// A watercolour painting.
    Watercolor,
    /// Black line art on white, like a dictionary's pictures.
    LineArt,
}

impl ImageStyle {
    /// Every style, in wire names, in declaration order.
    pub const NAMES: &'static [&'static str] = &[
        "photo",
        "natural",
        "vivid",
        "illustration",
        "cartoon",
        "watercolor",
        "line_art",
    ];
    const ALL: [ImageStyle; 7] = [
        Self::Photo,
        Self::Natural,
        Self::Vivid,
        Self::Illustration,
        Self::Cartoon,
        Self::Watercolor,
        Self::LineArt,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// How the style reads in a prompt to an image model ("a watercolor painting").
    pub fn prompt_phrase(self) -> &'static str {
        match self {
            Self::Photo => "a realistic photograph",
            Self::Natural => "a natural-looking image",
            Self::Vivid => "a vivid, dramatic image",
            Self::Illustration => "a clean flat illustration",
            Self::Cartoon => "a cartoon drawing",
            Self::Watercolor => "a watercolor painting",
            Self::LineArt => "black line art on a white background",
        }
    }

    /// A word a photo search adds to its query for this style, if any.
    pub fn search_keyword(self) -> Option<&'static str> {
        match self {
            Self::Photo | Self::Natural => None,
            Self::Vivid => Some("colorful"),
            Self::Illustration => Some("illustration"),
            Self::Cartoon => Some("cartoon"),
            Self::Watercolor => Some("watercolor"),
            Self::LineArt => Some("line art"),
        }
    }
}

impl FromStr for ImageStyle {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|style| style.as_str() == s)
            .ok_or_else(|| {
                DomainError::Invalid(format!(
                    "unknown image style {s:?}; expected one of {}",
                    Self::NAMES.join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for style in ImageStyle::ALL {
            assert_eq!(style.as_str().parse::<ImageStyle>(), Ok(style));
        }
        assert!("oil".parse::<ImageStyle>().is_err());
    }
}
