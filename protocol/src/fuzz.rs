//! Property-based fuzzing of everything here that reads bytes from a peer:
//! QUIC frames, SSE streams, signatures, join tokens, money. Each input is
//! arbitrary; the property is "an answer, never a panic". Cases: `PROPTEST_CASES`.

use crate::node::{AgentMessage, SchedulerMessage};
use crate::sse::SseDecoder;
use crate::wire::{self, DEFAULT_MAX_FRAME, HEADER_BYTES, PROTOCOL_VERSION};
use proptest::collection::vec;
use proptest::prelude::*;

/// A frame header that passes the length and version checks, then `body`:
/// what gets the decoder past its cheap refusals into bincode.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut frame = ((body.len() + 2) as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    frame.extend_from_slice(body);
    frame
}

proptest! {
    #[test]
    fn frames_from_either_side_decode_or_are_refused(raw in vec(any::<u8>(), 0..2048), body in vec(any::<u8>(), 0..2048)) {
        for bytes in [raw, framed(&body)] {
            let _ = wire::decode::<AgentMessage>(&bytes, DEFAULT_MAX_FRAME);
            let _ = wire::decode::<SchedulerMessage>(&bytes, DEFAULT_MAX_FRAME);
            let _ = wire::frame_len(&bytes, 64);
        }
    }

    #[test]
    fn decoded_frames_say_how_much_they_used(body in vec(any::<u8>(), 0..512)) {
        let bytes = framed(&body);
        if let Ok(Some((_, used))) = wire::decode::<AgentMessage>(&bytes, DEFAULT_MAX_FRAME) {
            prop_assert_eq!(used, bytes.len());
            prop_assert!(used >= HEADER_BYTES);
        }
    }

    #[test]
    fn sse_streams_in_any_pieces(chunks in vec(vec(any::<u8>(), 0..64), 0..32)) {
        let mut decoder = SseDecoder::new(256);
        for chunk in chunks {
            if decoder.push(&chunk).is_err() {
                break;
            }
        }
    }

    #[test]
    fn signature_headers_of_any_shape(header in any::<String>(), body in vec(any::<u8>(), 0..64), now in any::<u64>()) {
        let _ = crate::signature::verify(b"key", &header, &body, now, 300);
    }

    #[test]
    fn tokens_ids_and_amounts_of_any_text(text in any::<String>(), dollars in any::<f64>()) {
        let _ = crate::JoinToken::parse(&text);
        let _ = text.parse::<crate::AccountId>();
        let _ = crate::JobId::parse(&text);
        let _ = text.parse::<crate::Priority>();
        let _ = crate::Micros::from_dollars(dollars);
    }
}
