//! Versioned records: every stored value starts with its record type's version
//! byte, then the bincode payload. A value that cannot be read is an error the
//! caller sees (and operators count), never a record that silently vanishes.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A type stored as a value.
pub trait Record: Serialize + DeserializeOwned + Send + 'static {
    /// What it is, for logs and metrics ("job", "ledger entry").
    const KIND: &'static str;
    /// The layout written now. Bump it when the layout changes and read the
    /// older one in [`Record::upgrade`].
    const VERSION: u8;

    /// Reads a payload written under an earlier `version`. None is known by default.
    fn upgrade(version: u8, _payload: &[u8]) -> Result<Self, DecodeError> {
        Err(DecodeError::UnknownVersion {
            kind: Self::KIND,
            version,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty {kind} record")]
    Empty { kind: &'static str },
    #[error("{kind} record of unknown version {version}")]
    UnknownVersion { kind: &'static str, version: u8 },
    #[error("{kind} record does not decode: {reason}")]
    Corrupt { kind: &'static str, reason: String },
}

/// Largest record read: a corrupt length prefix must not claim all of memory.
const MAX_RECORD: usize = 256 * 1024 * 1024;

fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_RECORD>,
> {
    bincode::config::standard().with_limit::<MAX_RECORD>()
}

/// `[VERSION] ‖ bincode(record)`.
pub fn encode<R: Record>(record: &R) -> Vec<u8> {
    let mut bytes = vec![R::VERSION];
    // Writing plain owned data into a Vec cannot fail; an empty payload would
    // then fail to decode and be reported, not pass silently.
    let _ = bincode::serde::encode_into_std_write(record, &mut bytes, config());
    bytes
}

pub fn decode<R: Record>(bytes: &[u8]) -> Result<R, DecodeError> {
    let (&version, payload) = bytes
        .split_first()
        .ok_or(DecodeError::Empty { kind: R::KIND })?;
    if version == R::VERSION {
        payload_of(R::KIND, payload)
    } else {
        R::upgrade(version, payload)
    }
}

/// Decodes a bincode payload (no version byte): for [`Record::upgrade`] impls.
pub fn payload_of<T: DeserializeOwned>(
    kind: &'static str,
    payload: &[u8],
) -> Result<T, DecodeError> {
    match bincode::serde::decode_from_slice(payload, config()) {
        Ok((value, read)) if read == payload.len() => Ok(value),
        Ok((_, read)) => Err(DecodeError::Corrupt {
            kind,
            reason: format!("{} trailing bytes", payload.len() - read),
        }),
        Err(e) => Err(DecodeError::Corrupt {
            kind,
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Thing {
        a: u32,
        b: String,
    }

    impl Record for Thing {
        const KIND: &'static str = "thing";
        const VERSION: u8 = 2;
        fn upgrade(version: u8, payload: &[u8]) -> Result<Self, DecodeError> {
            match version {
                1 => payload_of::<u32>(Self::KIND, payload).map(|a| Thing {
                    a,
                    b: "upgraded".into(),
                }),
                _ => Err(DecodeError::UnknownVersion {
                    kind: Self::KIND,
                    version,
                }),
            }
        }
    }

    #[test]
    fn records_carry_their_version_and_old_ones_upgrade() {
        let thing = Thing {
            a: 7,
            b: "x".into(),
        };
        let bytes = encode(&thing);
        assert_eq!(bytes[0], 2);
        assert_eq!(decode::<Thing>(&bytes).unwrap(), thing);

        let mut v1 = vec![1u8];
        bincode::serde::encode_into_std_write(9u32, &mut v1, config()).unwrap();
        assert_eq!(decode::<Thing>(&v1).unwrap().b, "upgraded");

        assert_eq!(
            decode::<Thing>(&[9, 0]).unwrap_err(),
            DecodeError::UnknownVersion {
                kind: "thing",
                version: 9
            }
        );
        assert!(matches!(
            decode::<Thing>(&[]),
            Err(DecodeError::Empty { .. })
        ));
        assert!(matches!(
            decode::<Thing>(&[2, 0xff, 0xff]),
            Err(DecodeError::Corrupt { .. })
        ));
        let mut long = encode(&thing);
        long.push(0);
        assert!(
            matches!(decode::<Thing>(&long), Err(DecodeError::Corrupt { .. })),
            "trailing bytes are corruption"
        );
    }
}
