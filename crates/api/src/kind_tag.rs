//! Serde helpers that write and check the `kind` of an object. Each object type stores
//! its kind and API version as unit fields, so a value can never carry the wrong ones.

macro_rules! kind_tag {
    ($module:ident, $kind:expr) => {
        pub(crate) mod $module {
            use serde::{Deserialize, Deserializer, Serializer};

            pub fn serialize<S: Serializer>(_: &(), serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str($kind.as_str())
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<(), D::Error> {
                let v = String::deserialize(deserializer)?;
                if v == $kind.as_str() {
                    Ok(())
                } else {
                    Err(serde::de::Error::custom(format!(
                        "expected kind {:?}, found {v:?}",
                        $kind.as_str()
                    )))
                }
            }
        }
    };
}

kind_tag!(vm, crate::Kind::Vm);
kind_tag!(image, crate::Kind::Image);
kind_tag!(kernel, crate::Kind::Kernel);
kind_tag!(snapshot, crate::Kind::Snapshot);
kind_tag!(configuration, crate::Kind::Configuration);
