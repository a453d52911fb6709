//! Unit tests of the message decoder: hand-written wire bytes, every malformed case, and every
//! truncation of every message kind.

use bytes::BufMut;
use surefoot_core_lifecycle::{Classify, ErrorClass};
use surefoot_core_model::Lsn;

use super::samples::{self, one_of_each};
use crate::pgoutput::encode::encode;
use crate::pgoutput::{
    DecodeError, Field, LogicalMessage, Message, MessageKind, ReplicaIdentity, TruncateOptions,
    TupleValue, decode,
};

#[test]
fn every_truncation_of_every_kind_is_a_typed_error_naming_the_message() {
    for message in one_of_each() {
        let bytes = encode(&message);
        assert_eq!(decode(&bytes).as_ref(), Ok(&message));
        assert_eq!(decode(&[]), Err(DecodeError::Empty));
        for len in 1..bytes.len() {
            match decode(&bytes[..len]) {
                Err(
                    DecodeError::Truncated { message: kind, .. }
                    | DecodeError::UnterminatedString { message: kind, .. },
                ) => assert_eq!(kind, message.kind(), "prefix of {len} bytes"),
                other => panic!("prefix of {len} bytes of {message:?} gave {other:?}"),
            }
        }
    }
}

#[test]
fn begin_is_read_as_the_documentation_lays_it_out() {
    let mut bytes = vec![b'B'];
    bytes.put_u64(0x0000_0001_0000_0010); // final LSN 1/10
    bytes.put_i64(1_500_000); // 2000-01-01 00:00:01.5 UTC
    bytes.put_u32(42); // xid
    let Ok(Message::Begin(begin)) = decode(&bytes) else {
        panic!("not a Begin");
    };
    assert_eq!(begin.final_lsn.to_string(), "1/10");
    assert_eq!(
        begin.commit_time.to_rfc3339(),
        "2000-01-01T00:00:01.500+00:00"
    );
    assert_eq!(begin.xid, 42);
}

#[test]
fn relation_and_update_are_read_as_the_documentation_lays_them_out() {
    let mut relation = vec![b'R'];
    relation.put_u32(16_384);
    relation.put_slice(b"public\0users\0d");
    relation.put_u16(1);
    relation.put_slice(b"\x01id\0");
    relation.put_u32(20);
    relation.put_i32(-1);
    let Ok(Message::Relation(relation)) = decode(&relation) else {
        panic!("not a Relation");
    };
    assert_eq!(
        (relation.namespace.as_str(), relation.name.as_str()),
        ("public", "users")
    );
    assert_eq!(relation.replica_identity, ReplicaIdentity::Default);
    assert!(relation.columns[0].is_key());
    assert_eq!(relation.columns[0].type_modifier, -1);

    let mut update = vec![b'U'];
    update.put_u32(16_384);
    update.put_slice(b"K\x00\x02n");
    update.put_slice(b"t\x00\x00\x00\x017");
    update.put_slice(b"N\x00\x02u");
    update.put_slice(b"b\x00\x00\x00\x00");
    let Ok(Message::Update(update)) = decode(&update) else {
        panic!("not an Update");
    };
    assert_eq!(
        update.new.values,
        [
            TupleValue::UnchangedToast,
            TupleValue::Binary(Default::default())
        ]
    );
    assert_eq!(update.new.values[0].kind_byte(), b'u');
}

#[test]
fn unknown_tags_are_rejected() {
    for tag in [b'S', b'E', b'A', b'P', b'K', 0, 0xff] {
        assert_eq!(decode(&[tag]), Err(DecodeError::UnknownTag { tag }));
    }
}

fn relation_bytes(name: &[u8], identity: u8) -> Vec<u8> {
    let mut bytes = vec![b'R'];
    bytes.put_u32(1);
    bytes.put_slice(b"public\0");
    bytes.put_slice(name);
    bytes.put_u8(0);
    bytes.put_u8(identity);
    bytes.put_u16(0);
    bytes
}

#[test]
fn bad_utf8_and_bad_letters_name_the_field() {
    let error = decode(&relation_bytes(b"us\xffers", b'd'));
    assert!(matches!(
        error,
        Err(DecodeError::InvalidUtf8 {
            message: MessageKind::Relation,
            field: Field::RelationName,
            ..
        })
    ));
    let unexpected = |message, field, byte| {
        Err::<Message, _>(DecodeError::UnexpectedByte {
            message,
            field,
            byte,
        })
    };
    let identity = decode(&relation_bytes(b"users", b'x'));
    assert_eq!(
        identity,
        unexpected(MessageKind::Relation, Field::ReplicaIdentity, b'x')
    );
    let marker_cases: [(&[u8], MessageKind, u8); 4] = [
        (b"I\0\0\0\x01X", MessageKind::Insert, b'X'),
        (b"U\0\0\0\x01X", MessageKind::Update, b'X'),
        (b"U\0\0\0\x01K\0\0O", MessageKind::Update, b'O'),
        (b"D\0\0\0\x01N", MessageKind::Delete, b'N'),
    ];
    for (bytes, kind, byte) in marker_cases {
        assert_eq!(decode(bytes), unexpected(kind, Field::TupleMarker, byte));
    }
    let kind = decode(b"I\0\0\0\x01N\0\x01x");
    assert_eq!(
        kind,
        unexpected(MessageKind::Insert, Field::ValueKind(0), b'x')
    );
}

#[test]
fn negative_lengths_are_rejected() {
    let value = decode(b"I\0\0\0\x01N\0\x01t\xff\xff\xff\xff");
    assert_eq!(
        value,
        Err(DecodeError::NegativeLength {
            message: MessageKind::Insert,
            field: Field::ValueLength(0),
            value: -1
        })
    );
    let truncate = decode(b"T\x80\0\0\0\0");
    assert!(matches!(
        truncate,
        Err(DecodeError::NegativeLength {
            field: Field::RelationCount,
            ..
        })
    ));
    let mut message = vec![b'M', 0];
    message.put_u64(1);
    message.put_slice(b"p\0");
    message.put_i32(-5);
    assert!(matches!(
        decode(&message),
        Err(DecodeError::NegativeLength {
            field: Field::ContentLength,
            ..
        })
    ));
}

#[test]
fn huge_counts_on_short_input_are_truncations_not_allocations() {
    let truncate = decode(b"T\x7f\xff\xff\xff\0\0\0\0\x01");
    assert!(matches!(
        truncate,
        Err(DecodeError::Truncated {
            field: Field::RelationId,
            needed: 4,
            available: 0,
            ..
        })
    ));
    let tuple = decode(b"I\0\0\0\x01N\xff\xffn");
    assert!(matches!(
        tuple,
        Err(DecodeError::Truncated {
            field: Field::ValueKind(1),
            ..
        })
    ));
    let relation = decode(b"R\0\0\0\x01a\0b\0f\xff\xff");
    assert!(matches!(
        relation,
        Err(DecodeError::Truncated {
            field: Field::ColumnFlags(0),
            ..
        })
    ));
}

#[test]
fn timestamps_beyond_chrono_are_rejected() {
    let mut bytes = vec![b'C', 0];
    bytes.put_u64(1);
    bytes.put_u64(2);
    bytes.put_i64(i64::MAX);
    let error = decode(&bytes);
    assert_eq!(
        error,
        Err(DecodeError::TimestampOutOfRange {
            message: MessageKind::Commit,
            field: Field::CommitTimestamp,
            micros: i64::MAX
        })
    );
}

#[test]
fn errors_say_which_message_and_field_broke() {
    let cases = [
        (decode(b"I\0\0"), "Insert message truncated in RelationId"),
        (
            decode(b"I\0\0\0\x01N\0\x01t\0\0\0\x09ab"),
            "value of column 0",
        ),
        (decode(b"R\0\0\0\x01a\0b\0f\0\x01\x01"), "name of column 0"),
        (
            decode(b"R\0\0\0\x01a\0b\0f\0\x01\x01c\0\0"),
            "type of column 0",
        ),
        (
            decode(b"R\0\0\0\x01a\0b\0f\0\x01\x01c\0\0\0\0\x01\0"),
            "type modifier of column 0",
        ),
        (decode(b"I\0\0\0\x01N\0\x01t\0"), "value length of column 0"),
        (decode(b"Q"), "unknown pgoutput message tag 0x51"),
        (
            decode(b"Oabcdefgh\0x"),
            "Origin message has 1 trailing bytes",
        ),
        (
            decode(b"Y\0\0\0\x01a\0b"),
            "TypeName has no terminating NUL",
        ),
        (
            decode(b"D\0\0\0\x01Z"),
            "unexpected byte 0x5a in TupleMarker",
        ),
        (decode(b""), "empty pgoutput message"),
    ];
    for (result, expected) in cases {
        let message = result.map(|ok| format!("{ok:?}")).unwrap_err().to_string();
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
    let utf8 = decode(&relation_bytes(b"\xff", b'd')).unwrap_err();
    assert!(utf8.to_string().contains("RelationName is not valid UTF-8"));
    assert!(std::error::Error::source(&utf8).is_some());
    let negative = decode(b"T\x80\0\0\0\0").unwrap_err().to_string();
    assert!(negative.contains("RelationCount is negative"), "{negative}");
    assert_eq!(utf8.class(), ErrorClass::Permanent);
}

#[test]
fn message_kinds_and_flags_read_back() {
    for message in one_of_each() {
        let kind = message.kind();
        assert_eq!(MessageKind::from_tag(kind.tag()), Some(kind));
        assert_eq!(kind.to_string(), format!("{kind:?}"));
    }
    assert_eq!(MessageKind::from_tag(b'Z'), None);
    for identity in [
        ReplicaIdentity::Default,
        ReplicaIdentity::Nothing,
        ReplicaIdentity::Full,
        ReplicaIdentity::Index,
    ] {
        assert_eq!(ReplicaIdentity::from_byte(identity.byte()), Some(identity));
    }
    let options = TruncateOptions(TruncateOptions::CASCADE | TruncateOptions::RESTART_IDENTITY);
    assert!(options.cascade() && options.restart_identity());
    assert!(!TruncateOptions::default().cascade());
    assert!(!TruncateOptions::default().restart_identity());
    assert!(samples::heartbeat(true).is_transactional());
    let plain = LogicalMessage {
        flags: 0,
        lsn: Lsn(1),
        prefix: String::new(),
        content: Default::default(),
    };
    assert!(!plain.is_transactional());
}
