//! Arbitrary input never panics the text and pickle parsers.

use fuseflow_datasets::edgelist::parse_edge_list;
use fuseflow_datasets::{pickle, IdBase, LoadOptions};
use proptest::prelude::*;

/// A valid adjacency pickle: `defaultdict(list, {0: [1, 2], 1: [0], 2: [0, 300]})`, protocol 2.
const GOOD: &[u8] = b"\x80\x02ccollections\ndefaultdict\nq\x00c__builtin__\nlist\nq\x01\x85q\x02Rq\x03(K\x00]q\x04(K\x01K\x02eK\x01]q\x05K\x00aK\x02]q\x06(K\x00M,\x01eu.";

/// Bytes biased towards pickle opcodes and small arguments.
fn pickle_like() -> impl Strategy<Value = Vec<u8>> {
    let op = prop_oneof![
        Just(0x80u8),
        Just(2u8),
        Just(b'('),
        Just(b'.'),
        Just(b'K'),
        Just(b'M'),
        Just(b'J'),
        Just(b']'),
        Just(b'}'),
        Just(b'a'),
        Just(b'e'),
        Just(b's'),
        Just(b'u'),
        Just(b't'),
        Just(0x85u8),
        Just(b'q'),
        Just(b'h'),
        Just(b'R'),
        Just(b'b'),
        Just(b'N'),
        Just(b'0'),
        Just(b'2'),
        Just(b'U'),
        Just(b'X'),
        Just(b'\n'),
        Just(0x8au8),
        any::<u8>(),
    ];
    prop::collection::vec(op, 0..200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn edge_list_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300), one in any::<bool>(), n in prop::option::of(0usize..50)) {
        let opts = LoadOptions { base: if one { IdBase::One } else { IdBase::Zero }, num_nodes: n, ..Default::default() };
        if let Ok(g) = parse_edge_list(&bytes, "f.txt", &opts) {
            prop_assert!(g.validate().is_ok());
        }
    }

    #[test]
    fn edge_list_text_never_panics(text in "[0-9 ,#%\\-a\\n\\t\\r]{0,200}") {
        match parse_edge_list(text.as_bytes(), "f.txt", &LoadOptions::default()) {
            Ok(g) => prop_assert!(g.validate().is_ok()),
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.starts_with("f.txt:") && !msg.contains('\n'), "{}", msg);
            }
        }
    }

    #[test]
    fn pickle_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = pickle::parse_adjacency(&bytes, "p");
        let _ = pickle::parse_shape(&bytes, "p");
    }

    #[test]
    fn pickle_never_panics_on_opcode_soup(bytes in pickle_like()) {
        for r in [pickle::parse_adjacency(&bytes, "p").err(), pickle::parse_shape(&bytes, "p").err()].into_iter().flatten() {
            let msg = r.to_string();
            prop_assert!(msg.starts_with("p: byte ") && !msg.contains('\n'), "{}", msg);
        }
    }

    #[test]
    fn pickle_never_panics_on_mutations(edits in prop::collection::vec((0usize..GOOD.len(), any::<u8>()), 1..4), cut in 0usize..=GOOD.len()) {
        let mut bytes = GOOD.to_vec();
        for (i, b) in edits {
            bytes[i] = b;
        }
        bytes.truncate(cut.max(1));
        let _ = pickle::parse_adjacency(&bytes, "p");
        let _ = pickle::parse_shape(&bytes, "p");
    }
}
