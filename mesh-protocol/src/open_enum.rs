//! `open_string_enum!`: a string enum that keeps values it does not know.
//!
//! Most wire enums drop unknown values into a unit `Unknown` (`#[serde(other)]`). A few values
//! must survive unknown: a runner id (`x-…` runners are routed by name) and an error code (logged
//! by name, acted on by `retryable`). Those use this macro instead: the known values become
//! variants, anything else is kept verbatim in the `other` variant and re-encoded unchanged.

macro_rules! open_string_enum {
    (
        $(#[doc = $doc:literal])*
        pub enum $name:ident {
            $( $(#[$variant_doc:meta])* $variant:ident = $wire:literal, )+
        }
        other = $other:ident;
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$variant_doc])* $variant, )+
            /// A value this version does not know, kept as spelled on the wire. Build values with
            /// `From<&str>`, which maps known spellings to their own variant.
            $other(String),
        }

        impl $name {
            /// Every value this version knows, as spelled on the wire.
            pub const KNOWN: &'static [&'static str] = &[$($wire),+];

            /// The value as spelled on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )+
                    Self::$other(value) => value,
                }
            }

            /// Whether this version of the protocol knows the value.
            pub fn is_known(&self) -> bool {
                !matches!(self, Self::$other(_))
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $( $wire => Self::$variant, )+
                    other => Self::$other(other.to_owned()),
                }
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                match value.as_str() {
                    $( $wire => Self::$variant, )+
                    _ => Self::$other(value),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(Self::from)
            }
        }

        #[cfg(feature = "schema")]
        impl ::schemars::JsonSchema for $name {
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                // Any string is valid; the known values are listed so readers and tools see them.
                let description: Vec<&str> = [$($doc),*].iter().map(|line| line.trim()).collect();
                let mut schema = ::serde_json::Map::new();
                schema.insert("description".into(), description.join(" ").into());
                schema.insert("type".into(), "string".into());
                schema.insert(
                    "examples".into(),
                    ::serde_json::Value::from(Self::KNOWN.to_vec()),
                );
                ::schemars::Schema::from(schema)
            }
        }
    };
}
