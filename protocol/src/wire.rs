//! Frames on scheduler ↔ node-agent streams: `u32` big-endian length, then a
//! `u16` protocol version, then the bincode-encoded message. The length is checked
//! against a maximum before anything is buffered, and the version before anything
//! is decoded, so a peer of another version, a garbage frame or a huge one is
//! refused with a typed error, never a panic or an unbounded allocation.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Bumped whenever a message changes shape.
pub const PROTOCOL_VERSION: u16 = 2;
/// Length prefix plus version.
pub const HEADER_BYTES: usize = 6;
/// Default largest frame; large outputs are streamed as several chunks below it.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame of {size} bytes is over the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error(
        "peer speaks protocol version {theirs}, this side speaks {ours}: upgrade the older one"
    )]
    Version { ours: u16, theirs: u16 },
    #[error("frame does not decode: {0}")]
    Decode(String),
    #[error("frame has {0} bytes after its message")]
    Trailing(usize),
    #[error("message does not encode: {0}")]
    Encode(String),
}

/// Caps what one decode may claim, whatever lengths a hostile frame declares.
const DECODE_LIMIT: usize = 64 * 1024 * 1024;

fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_LIMIT>,
> {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// One message as a complete frame.
pub fn encode<T: Serialize>(message: &T, max_frame: usize) -> Result<Vec<u8>, WireError> {
    let body = bincode::serde::encode_to_vec(message, config())
        .map_err(|e| WireError::Encode(e.to_string()))?;
    let size = body.len() + 2;
    if size > max_frame {
        return Err(WireError::TooLarge {
            size,
            max: max_frame,
        });
    }
    let mut frame = Vec::with_capacity(HEADER_BYTES + body.len());
    frame.extend_from_slice(&(size as u32).to_be_bytes());
    frame.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// The size of the frame starting `buffer` (header included) once its length
/// prefix is there; refuses sizes over `max_frame` before any body arrives.
pub fn frame_len(buffer: &[u8], max_frame: usize) -> Result<Option<usize>, WireError> {
    let Some(prefix) = buffer.get(..4) else {
        return Ok(None);
    };
    let size = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if size > max_frame {
        return Err(WireError::TooLarge {
            size,
            max: max_frame,
        });
    }
    if size < 2 {
        return Err(WireError::Decode("frame shorter than its version".into()));
    }
    Ok(Some(4 + size))
}

/// Decodes the first frame of `buffer`: `Ok(None)` until it is complete, then the
/// message and how many bytes it used.
pub fn decode<T: DeserializeOwned>(
    buffer: &[u8],
    max_frame: usize,
) -> Result<Option<(T, usize)>, WireError> {
    let Some(total) = frame_len(buffer, max_frame)? else {
        return Ok(None);
    };
    let Some(frame) = buffer.get(..total) else {
        return Ok(None);
    };
    let theirs = u16::from_be_bytes([frame[4], frame[5]]);
    if theirs != PROTOCOL_VERSION {
        return Err(WireError::Version {
            ours: PROTOCOL_VERSION,
            theirs,
        });
    }
    let (message, used) = bincode::serde::decode_from_slice(&frame[HEADER_BYTES..], config())
        .map_err(|e| WireError::Decode(e.to_string()))?;
    let trailing = frame.len() - HEADER_BYTES - used;
    if trailing != 0 {
        return Err(WireError::Trailing(trailing));
    }
    Ok(Some((message, total)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Sample {
        Ping(u64),
        Text { body: String },
    }

    #[test]
    fn frames_round_trip_and_wait_for_their_last_byte() {
        let message = Sample::Text {
            body: "héllo".into(),
        };
        let frame = encode(&message, DEFAULT_MAX_FRAME).unwrap();
        for cut in 0..frame.len() {
            assert_eq!(
                decode::<Sample>(&frame[..cut], DEFAULT_MAX_FRAME),
                Ok(None),
                "{cut}"
            );
        }
        let mut two = frame.clone();
        two.extend(encode(&Sample::Ping(7), DEFAULT_MAX_FRAME).unwrap());
        let (first, used) = decode::<Sample>(&two, DEFAULT_MAX_FRAME).unwrap().unwrap();
        assert_eq!((first, used), (message, frame.len()));
        let (second, _) = decode::<Sample>(&two[used..], DEFAULT_MAX_FRAME)
            .unwrap()
            .unwrap();
        assert_eq!(second, Sample::Ping(7));
    }

    #[test]
    fn another_version_is_refused_by_name() {
        let mut frame = encode(&Sample::Ping(1), DEFAULT_MAX_FRAME).unwrap();
        frame[4..6].copy_from_slice(&9u16.to_be_bytes());
        let error = decode::<Sample>(&frame, DEFAULT_MAX_FRAME).unwrap_err();
        assert_eq!(
            error,
            WireError::Version {
                ours: PROTOCOL_VERSION,
                theirs: 9
            }
        );
        assert!(error.to_string().contains("version 9"));
    }

    #[test]
    fn oversized_frames_are_refused_before_their_body_arrives() {
        let header = [0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode::<Sample>(&header, DEFAULT_MAX_FRAME),
            Err(WireError::TooLarge { .. })
        ));
        let big = Sample::Text {
            body: "x".repeat(2048),
        };
        assert!(matches!(
            encode(&big, 1024),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = decode::<Sample>(&bytes, DEFAULT_MAX_FRAME);
            // A valid header over a garbage body.
            let mut framed = ((bytes.len() + 2) as u32).to_be_bytes().to_vec();
            framed.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
            framed.extend_from_slice(&bytes);
            if let Ok(Some((message, _))) = decode::<Sample>(&framed, DEFAULT_MAX_FRAME) {
                // Whatever decodes must be a real message that re-encodes.
                assert!(encode(&message, DEFAULT_MAX_FRAME).is_ok());
            }
        }
        let short = [0, 0, 0, 1, 0];
        assert!(decode::<Sample>(&short, DEFAULT_MAX_FRAME).is_err());
        let mut trailing = encode(&Sample::Ping(1), DEFAULT_MAX_FRAME).unwrap();
        trailing.push(0);
        let len = (trailing.len() - 4) as u32;
        trailing[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            decode::<Sample>(&trailing, DEFAULT_MAX_FRAME),
            Err(WireError::Trailing(1))
        );
    }
}
