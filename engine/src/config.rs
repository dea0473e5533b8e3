//! Reading config files: TOML, YAML or JSON by extension, strict, with errors that name the
//! file, the key and what was expected.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// The formats a config file can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.toml`
    Toml,
    /// `.yaml` or `.yml`
    Yaml,
    /// `.json`
    Json,
}

impl Format {
    /// The format a path's extension names.
    pub fn of(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "toml" => Some(Self::Toml),
            "yaml" | "yml" => Some(Self::Yaml),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Reads and parses a config file. Unknown keys and bad values are errors (the structs say
/// `deny_unknown_fields`); the message names the file, the key path and the problem.
pub fn load_file<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let format = Format::of(path).ok_or_else(|| Error::Config {
        path: path.to_path_buf(),
        message: "unknown config format: expected a .toml, .yaml, .yml or .json file".into(),
    })?;
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_str(&text, format).map_err(|message| Error::Config {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses config text in `format`; the error is a message naming the key path.
pub fn parse_str<T: DeserializeOwned>(
    text: &str,
    format: Format,
) -> std::result::Result<T, String> {
    fn at(path: &serde_path_to_error::Path) -> String {
        let path = path.to_string();
        if path == "." || path.is_empty() {
            String::new()
        } else {
            format!("at `{path}`: ")
        }
    }
    match format {
        Format::Toml => {
            let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
            serde_path_to_error::deserialize(de)
                .map_err(|e| format!("{}{}", at(e.path()), e.inner().message().trim_end()))
        }
        Format::Yaml => {
            let de = serde_yaml::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de)
                .map_err(|e| format!("{}{}", at(e.path()), e.inner()))
        }
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize(&mut de)
                .map_err(|e| format!("{}{}", at(e.path()), e.inner()))
        }
    }
}
