//! The parser and the translation never panic: on arbitrary text, and on the fixtures with
//! bytes deleted, replaced or inserted (every outcome is a program or a one-line error).

use proptest::prelude::*;

const FIXTURES: [&str; 20] = [
    include_str!("fixtures/gcn.mlir"),
    // As torch-mlir writes them (resource blobs, COO/CSR encodings, masks, argmax generics).
    include_str!("fixtures/torch-mlir/gcn.mlir"),
    include_str!("fixtures/torch-mlir/attention.mlir"),
    include_str!("fixtures/torch-mlir/linear.mlir"),
    include_str!("fixtures/torch-mlir/spmm_csr.mlir"),
    // Reshapes that split and merge dimensions (relabelled), heads of attention.
    include_str!("fixtures/torch-mlir/reshape.mlir"),
    include_str!("fixtures/torch-mlir/gpt3_decoder.mlir"),
    include_str!("fixtures/attention.mlir"),
    include_str!("fixtures/layernorm.mlir"),
    include_str!("fixtures/constructs.mlir"),
    // Scalars, dynamic sizes (`?` tied, bound or refused), a kernel of constants.
    include_str!("fixtures/scalar.mlir"),
    include_str!("fixtures/dynamic.mlir"),
    include_str!("fixtures/dynamic_reshape.mlir"),
    include_str!("fixtures/constants.mlir"),
    // Arguments named by attributes (`torch.arg_name`, `mlir.name`).
    include_str!("fixtures/named_args.mlir"),
    // Block encodings (BSR, DCSR of blocks): floordiv/mod level maps.
    include_str!("fixtures/bsr_spmm.mlir"),
    include_str!("fixtures/bsc_spmm.mlir"),
    include_str!("fixtures/bsr_attention.mlir"),
    "#map = affine_map<(d0, d1) -> (d0 floordiv 2, d1 floordiv 2, d0 mod 2, d1 mod 2)>\n#B = #sparse_tensor.encoding<{ lvlTypes = [ \"compressed\", \"compressed\", \"dense\", \"dense\" ], dimToLvl = #map }>\nmodule { func.func @f(%a: tensor<4x4xf32, #B>) -> tensor<4x4xf32, #B> { return %a : tensor<4x4xf32, #B> } }",
    "#m = affine_map<(d0) -> (d0)>\nmodule { func.func @f(%a: tensor<4xf32>) -> tensor<4xf32> { return %a : tensor<4xf32> } }",
];

/// Characters the MLIR syntax is made of, so random text reaches deep into the parser.
const ALPHABET: &[u8] = b"%#@^(){}[]<>:,=-x?0123456789.\" \nabcdefgilmnoprstuxyzAFSE_";

fn check(src: &str) {
    match fuseflow_mlir::parse(src, "f.mlir") {
        Ok(m) => {
            if let Err(e) = fuseflow_mlir::translate(&m, "f.mlir", &fuseflow_mlir::Options::default()) {
                assert!(!e.to_string().contains('\n'), "{e}");
            }
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "{e}"),
    }
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(bytes in proptest::collection::vec(proptest::sample::select(ALPHABET), 0..400)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0..FIXTURES.len(),
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), 0u8..3, proptest::sample::select(ALPHABET)), 1..6),
    ) {
        let mut s: Vec<u8> = FIXTURES[which].as_bytes().to_vec();
        for (at, kind, c) in edits {
            if s.is_empty() {
                break;
            }
            let i = at.index(s.len());
            match kind {
                0 => {
                    s.remove(i);
                }
                1 => s[i] = c,
                _ => s.insert(i, c),
            }
        }
        check(&String::from_utf8_lossy(&s));
    }
}
