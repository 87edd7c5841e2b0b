//! One declaration per setting. [`option_group!`] declares a group of settings once, each with
//! its doc comment (the `--help` text), its clap attributes (the flag), its name (the TOML key,
//! in kebab-case) and its default, and generates:
//!
//! - the struct of optional values that is both the clap flags and the config file's keys;
//! - `over`, which layers one set over another (flag > config file > default), with the
//!   fields listed after `exclusive` taken together from the set that gives any of them;
//! - `defaults`, the built-in defaults;
//! - `keys` and `is_key`, the group's TOML keys;
//! - `document_defaults`, which appends `[default: ...]` to each flag's help.
//!
//! `--print-config` prints a group layered over its defaults with the same keys, so what it
//! prints is a config file `--config` accepts.

/// Declares a group of settings; see the module docs.
macro_rules! option_group {
    (
        $(#[$struct_meta:meta])*
        pub struct $name:ident $(exclusive($($exclusive:ident),+))? {
            $(
                $(#[$field_meta:meta])*
                $field:ident : $ty:ty = $default:expr
            ),* $(,)?
        }
    ) => {
        $(#[$struct_meta])*
        #[derive(Debug, Clone, Default, clap::Args, serde::Deserialize, serde::Serialize, PartialEq)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        pub struct $name {
            $(
                $(#[$field_meta])*
                #[serde(default, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }

        impl $name {
            /// Fills every field this set leaves empty from `lower` (this one takes precedence).
            /// Fields declared `exclusive` name one thing (`-m` or `-hf`): the set that gives any
            /// of them gives all of them.
            pub fn over(self, lower: Self) -> Self {
                #[allow(unused_mut)]
                let (high, mut lower) = (self, lower);
                $(
                    if false $(|| high.$exclusive.is_some())+ {
                        $(lower.$exclusive = None;)+
                    }
                )?
                Self { $($field: high.$field.or(lower.$field),)* }
            }

            /// The built-in defaults (a field without one stays empty).
            pub fn defaults() -> Self {
                Self { $($field: $default,)* }
            }

            /// The group's keys as they are written in a config file.
            pub fn keys() -> Vec<String> {
                vec![$(stringify!($field).replace('_', "-")),*]
            }

            /// Whether `key` is one of the group's config-file keys.
            pub fn is_key(key: &str) -> bool {
                Self::keys().iter().any(|k| k == key)
            }

            /// Appends `[default: ...]` to the help of each of the group's flags that has a
            /// default, in `command` (the subcommand that flattens the group).
            pub fn document_defaults(mut command: clap::Command) -> clap::Command {
                let defaults = Self::defaults();
                $(
                    if let Some(value) = &defaults.$field {
                        let shown = $crate::option_group::shown(value);
                        command = command.mut_arg(stringify!($field), |arg| {
                            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                            arg.help(format!("{help} [default: {shown}]"))
                        });
                    }
                )*
                command
            }
        }
    };
}

pub(crate) use option_group;

/// A default as the help shows it: its config-file spelling without quotes.
pub fn shown(value: &impl serde::Serialize) -> String {
    match toml::Value::try_from(value) {
        Ok(toml::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "?".to_string(),
    }
}
