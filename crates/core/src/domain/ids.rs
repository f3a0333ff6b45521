//! String identifiers of WeChat and of wxnotify, each a newtype that can only hold a valid value.

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string was empty (or only whitespace).
    #[error("{kind} is empty")]
    Empty {
        /// Which identifier, e.g. `openid`.
        kind: &'static str,
    },
    /// The string was longer than WeChat or wxnotify allows.
    #[error("{kind} is {len} bytes long, at most {max} are allowed")]
    TooLong {
        /// Which identifier.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The string holds a character outside the identifier's alphabet.
    #[error("{kind} contains {found:?}; only ASCII letters, digits and {extra:?} are allowed")]
    BadChar {
        /// Which identifier.
        kind: &'static str,
        /// The first offending character.
        found: char,
        /// Punctuation the identifier allows besides letters and digits.
        extra: &'static str,
    },
}

pub(super) fn check(
    kind: &'static str,
    s: &str,
    max: usize,
    extra: &'static str,
) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > max {
        return Err(IdError::TooLong {
            kind,
            len: s.len(),
            max,
        });
    }
    if let Some(found) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(*c)))
    {
        return Err(IdError::BadChar { kind, found, extra });
    }
    Ok(())
}

/// Defines a validated string newtype: private field, `parse`, `TryFrom<String>`, `AsRef<str>`,
/// `Display`, serde as a plain string (deserialising validates), and a JSON Schema.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, max = $max:literal, extra = $extra:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `s` and wraps it.
            pub fn parse(s: impl Into<String>) -> Result<Self, $crate::domain::IdError> {
                let s = s.into();
                $crate::domain::ids::check($kind, &s, $max, $extra)?;
                Ok(Self(s))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::domain::IdError;
            fn try_from(s: String) -> Result<Self, $crate::domain::IdError> {
                Self::parse(s)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::domain::IdError;
            fn from_str(s: &str) -> Result<Self, $crate::domain::IdError> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl schemars::JsonSchema for $name {
            fn inline_schema() -> bool {
                false
            }
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let extra = $crate::domain::ids::regex_escape($extra);
                schemars::json_schema!({
                    "type": "string",
                    "minLength": 1,
                    "maxLength": $max,
                    "pattern": format!("^[A-Za-z0-9{extra}]+$"),
                    "description": concat!("A ", $kind, ".")
                })
            }
        }
    };
}

/// Escapes the punctuation of an identifier alphabet for a JSON Schema character class.
pub(super) fn regex_escape(extra: &str) -> String {
    extra.chars().map(|c| format!("\\{c}")).collect()
}
pub(super) use string_id;

string_id!(
    /// A WeChat appid (`wx…`) of an Official Account or a Mini Program.
    AppId, "appid", max = 32, extra = "_-"
);
string_id!(
    /// A per-app user id: the same person has different openids in the OA and the Mini Program.
    OpenId, "openid", max = 64, extra = "_-"
);
string_id!(
    /// The id that joins one person's openids across apps bound to one Open Platform account.
    UnionId, "unionid", max = 64, extra = "_-"
);
string_id!(
    /// wxnotify's name for an OA / Mini Program pair (`default` for the single app of the env).
    AppName, "app name", max = 64, extra = "_-."
);
string_id!(
    /// A job's idempotency key; also sent as WeChat's `client_msg_id`, which drops resends within
    /// ten minutes.
    JobId, "job id", max = 64, extra = "_-.:"
);

impl JobId {
    /// A new random, time-ordered id (UUID v7).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }
}

impl JobId {
    /// A stable id derived from a message's bytes (UUID v5), for jobs published without one.
    pub fn from_content(bytes: &[u8]) -> Self {
        const NAMESPACE: uuid::Uuid =
            uuid::Uuid::from_u128(0x5d1c_0b3e_8f3a_4c61_9e0f_6a7b_2c4d_9e10);
        Self(uuid::Uuid::new_v5(&NAMESPACE, bytes).to_string())
    }
}

impl AppName {
    /// The app configured by the `WXNOTIFY_OA_*` environment variables.
    pub fn default_app() -> Self {
        Self("default".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openid_accepts_wechat_alphabet() {
        let id = OpenId::parse("oGZUI0egBJY1zhBYw2KhdUfwVJJE-_x").unwrap();
        assert_eq!(id.as_str(), "oGZUI0egBJY1zhBYw2KhdUfwVJJE-_x");
    }

    #[test]
    fn ids_refuse_empty_long_and_hostile_strings() {
        assert_eq!(OpenId::parse(""), Err(IdError::Empty { kind: "openid" }));
        assert!(matches!(
            OpenId::parse("a".repeat(65)),
            Err(IdError::TooLong {
                len: 65,
                max: 64,
                ..
            })
        ));
        assert!(matches!(
            OpenId::parse("o\u{202e}x"),
            Err(IdError::BadChar {
                found: '\u{202e}',
                ..
            })
        ));
        assert!(matches!(
            JobId::parse("a b"),
            Err(IdError::BadChar { found: ' ', .. })
        ));
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        let err = serde_json::from_str::<UnionId>("\"bad id\"").unwrap_err();
        assert!(err.to_string().contains("unionid contains ' '"), "{err}");
        let ok: AppId = serde_json::from_str("\"wx1234567890abcdef\"").unwrap();
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            "\"wx1234567890abcdef\""
        );
    }

    #[test]
    fn generated_job_ids_are_valid_and_distinct() {
        let a = JobId::generate();
        let b = JobId::generate();
        assert_ne!(a, b);
        assert!(JobId::parse(a.as_str()).is_ok());
    }
}
