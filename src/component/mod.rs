//! What every node of a pipeline file is, whatever its role. Its settings are deserialized on
//! their own, so one bad node does not hide the errors of another; it checks its own settings
//! ([`Component`]); and its role's trait builds it: [`crate::sources::SourceNode`],
//! [`crate::operators::OperatorNode`] or [`crate::sinks::SinkNode`]. The checks that span nodes are
//! [`crate::config`]'s.
//!
//! Each role's table of kinds is one `kinds!` list in its module: a new kind is a module of
//! its own (its config struct, its checks, its build) and one line there.

mod duration;
mod stream;

pub use duration::{parse_flag as parse_duration_flag, Millis};
pub(crate) use stream::on_either;
pub use stream::{concat_events, concat_invalid, AnyStream, Port, StreamKind};

use crate::event::EventFormat;
use crate::kafka::ClusterConfig;
use std::collections::BTreeMap;
use std::fmt;

/// One problem in a pipeline file, located by node and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The node (or section, such as `clusters.region-a`) the error is in.
    pub node: String,
    /// The field, or empty when the node as a whole is wrong.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.node, self.message)
        } else {
            write!(f, "{}.{}: {}", self.node, self.field, self.message)
        }
    }
}

/// Where the checks of one node report.
pub struct Errors<'a> {
    node: &'a str,
    out: &'a mut Vec<ConfigError>,
}

impl<'a> Errors<'a> {
    /// Errors of `node`, appended to `out`.
    pub fn new(node: &'a str, out: &'a mut Vec<ConfigError>) -> Errors<'a> {
        Errors { node, out }
    }

    /// `field` of this node is wrong.
    pub fn field(&mut self, field: &str, message: impl Into<String>) {
        self.out.push(ConfigError {
            node: self.node.into(),
            field: field.into(),
            message: message.into(),
        });
    }
}

/// What a node's own checks may see besides its settings.
pub struct CheckContext<'a> {
    /// `[clusters.*]`.
    pub clusters: &'a BTreeMap<String, ClusterConfig>,
    /// `[event]`.
    pub event: &'a EventFormat,
}

impl CheckContext<'_> {
    /// `cluster` must be declared in `[clusters]`.
    pub fn cluster(&self, cluster: &str, errors: &mut Errors<'_>) {
        if !self.clusters.contains_key(cluster) {
            let known: Vec<&str> = self.clusters.keys().map(|s| s.as_str()).collect();
            let known = if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            };
            errors.field(
                "cluster",
                format!("unknown cluster \"{cluster}\" (declared: {known})"),
            );
        }
    }
}

/// A node of any role: it checks its own settings.
pub trait Component {
    /// Reports every problem of this node's own settings.
    fn check(&self, cx: &CheckContext<'_>, errors: &mut Errors<'_>);
}

/// Deserializes one node or section named `name`, reporting what is wrong by field.
pub fn deserialize<T: serde::de::DeserializeOwned>(
    name: &str,
    value: toml::Value,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(e) => {
            let field = e.path().to_string();
            let message = e.into_inner().message().trim().to_string();
            // serde reports unknown and missing fields at the parent; name the field itself.
            let field = backticked(&message, "unknown field `")
                .or_else(|| backticked(&message, "missing field `"))
                .map(|f| {
                    if field == "." || field == f || field.ends_with(&format!(".{f}")) {
                        f
                    } else {
                        format!("{field}.{f}")
                    }
                })
                .unwrap_or(if field == "." { String::new() } else { field });
            errors.push(ConfigError {
                node: name.into(),
                field,
                message,
            });
            None
        }
    }
}

fn backticked(message: &str, prefix: &str) -> Option<String> {
    let start = message.find(prefix)? + prefix.len();
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_string())
}

/// Declares a role's table of kinds: the enum of their configs, chosen by `type`, with its
/// parser, its `type` names and its view as the role's trait.
macro_rules! kinds {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $role:path {
            $( $(#[$vmeta:meta])* $variant:ident($ty:ty) = $tag:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($ty), )+
        }

        impl $name {
            /// Every `type` of this table.
            pub const TYPES: &'static [&'static str] = &[$($tag),+];

            /// Deserializes node `name` of type `tag` (the `type` field already taken out),
            /// reporting every error.
            pub fn parse(
                name: &str,
                tag: &str,
                value: toml::Value,
                errors: &mut Vec<$crate::component::ConfigError>,
            ) -> Option<$name> {
                match tag {
                    $( $tag => $crate::component::deserialize(name, value, errors).map($name::$variant), )+
                    other => {
                        errors.push($crate::component::ConfigError {
                            node: name.into(),
                            field: "type".into(),
                            message: format!(
                                "unknown type \"{other}\" (expected one of: {})",
                                Self::TYPES.join(", ")
                            ),
                        });
                        None
                    }
                }
            }

            /// The node's `type`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $( $name::$variant(_) => $tag, )+
                }
            }

            /// The node in its role.
            pub fn node(&self) -> &dyn $role {
                match self {
                    $( $name::$variant(c) => c, )+
                }
            }
        }
    };
}
pub(crate) use kinds;
