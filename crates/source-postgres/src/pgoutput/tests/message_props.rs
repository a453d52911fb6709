//! Property tests of the message decoder: the test encoder's output decodes back to the same
//! message; every prefix and every extension of it is a typed error; arbitrary bytes never panic.

use proptest::collection::vec;
use proptest::prelude::*;

use super::strategies::{message, tuple};
use crate::pgoutput::encode::encode;
use crate::pgoutput::{DecodeError, Insert, Message, decode, decode_bytes};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn encoded_messages_decode_to_the_same_message(original in message()) {
        let bytes = encode(&original);
        prop_assert_eq!(decode(&bytes), Ok(original.clone()));
        prop_assert_eq!(decode_bytes(bytes.into()), Ok(original));
    }

    #[test]
    fn tuples_with_nulls_unchanged_toast_and_text_round_trip(
        relation_id: u32,
        new in tuple(),
    ) {
        let original = Message::Insert(Insert { relation_id, new });
        prop_assert_eq!(decode(&encode(&original)), Ok(original));
    }

    #[test]
    fn every_prefix_of_a_message_is_a_typed_error(original in message()) {
        let bytes = encode(&original);
        for len in 0..bytes.len() {
            let error = decode(&bytes[..len]);
            let typed = matches!(
                error,
                Err(DecodeError::Empty
                    | DecodeError::Truncated { .. }
                    | DecodeError::UnterminatedString { .. })
            );
            prop_assert!(typed, "prefix of {} bytes gave {:?}", len, error);
        }
    }

    #[test]
    fn trailing_bytes_are_rejected(original in message(), extra in vec(any::<u8>(), 1..16)) {
        let mut bytes = encode(&original);
        bytes.extend_from_slice(&extra);
        let expected = DecodeError::TrailingBytes { message: original.kind(), count: extra.len() };
        prop_assert_eq!(decode(&bytes), Err(expected));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..64)) {
        if let Err(error) = decode(&bytes) {
            prop_assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn corrupted_messages_never_panic(
        original in message(),
        position: prop::sample::Index,
        byte: u8,
    ) {
        let mut bytes = encode(&original);
        let index = position.index(bytes.len());
        bytes[index] = byte;
        // A changed byte may still decode; an error must say what broke.
        if let Err(error) = decode(&bytes) {
            prop_assert!(!error.to_string().is_empty());
        }
    }
}
