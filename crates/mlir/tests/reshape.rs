//! Reshapes that split or merge dimensions, read as index relabellings: the split travels to
//! every tensor dimension tied to the split one (snapshots of the translated programs), the
//! data of a bound input is read row-major into the finer shape, and what cannot be
//! relabelled is refused in one line.

use std::path::{Path, PathBuf};

use fuseflow_mlir::{load, parse, translate, Options, Translated};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The program as index notation, then the notes.
fn shown(t: &Translated) -> String {
    let mut s = fuseflow_ir::pretty(&t.program);
    for n in &t.notes {
        s.push_str(&format!("# note: {n}\n"));
    }
    s
}

fn from_src(src: &str) -> Result<Translated, String> {
    parse(src, "m.mlir").and_then(|m| translate(&m, "m.mlir", &Options::default())).map_err(|e| e.to_string())
}

#[test]
fn a_split_relabels_the_input_and_every_tied_dimension() {
    // torch-mlir's `x.reshape(2, 3, 5) * 2` summed over the new leading dimension.
    let t = load(&fixture("torch-mlir/reshape.mlir"), &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    insta::assert_snapshot!("reshape_split", shown(&t));
}

/// `x: [4, 2, 3]` merged into `[4, 6]`, then multiplied by a `[6, 5]` weight: the weight's
/// rows are split into (2, 3) and the product sums over both.
const MERGE: &str = r#"#id = affine_map<(d0, d1) -> (d0, d1)>
module {
  func.func @forward(%x: tensor<4x2x3xf32>, %w: tensor<6x5xf32>) -> tensor<4x5xf32> {
    %cst = arith.constant 0.000000e+00 : f32
    %c = tensor.collapse_shape %x [[0], [1, 2]] : tensor<4x2x3xf32> into tensor<4x6xf32>
    %0 = tensor.empty() : tensor<4x5xf32>
    %1 = linalg.fill ins(%cst : f32) outs(%0 : tensor<4x5xf32>) -> tensor<4x5xf32>
    %2 = linalg.matmul ins(%c, %w : tensor<4x6xf32>, tensor<6x5xf32>) outs(%1 : tensor<4x5xf32>) -> tensor<4x5xf32>
    return %2 : tensor<4x5xf32>
  }
}
"#;

#[test]
fn a_merge_makes_the_contracted_weight_dimension_two_indices() {
    insta::assert_snapshot!("reshape_merge", shown(&from_src(MERGE).unwrap_or_else(|e| panic!("{e}"))));
}

#[test]
fn a_bound_weight_is_read_row_major_into_the_split_shape() {
    let dir = std::env::temp_dir().join(format!("fuseflow-mlir-reshape-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // w(r, c) = 10 r + c, declared [6, 5]; row r becomes (r / 3, r % 3).
    let mut w = fuseflow_tensor::Coo::new(vec![6, 5]);
    for r in 0..6u32 {
        for c in 0..5u32 {
            w.coords.extend([r, c]);
            w.vals.push(f64::from(10 * r + c));
        }
    }
    let path = dir.join("w.mtx");
    fuseflow_tensor::write_mtx(&path, &w).expect("write");
    let mut opts = Options::default();
    opts.inputs.insert("w".into(), path);
    let m = parse(MERGE, "m.mlir").expect("parse");
    let t = translate(&m, "m.mlir", &opts).unwrap_or_else(|e| panic!("{e}"));
    let (_, coo) = t.bind.iter().find(|(n, _)| n == "w").expect("w bound");
    assert_eq!(coo.shape, vec![2, 3, 5]);
    for (k, &v) in coo.vals.iter().enumerate() {
        let c = &coo.coords[3 * k..3 * k + 3];
        assert_eq!(v, f64::from(10 * (3 * c[0] + c[1]) + c[2]), "element {c:?}");
    }
    assert_eq!(coo.vals.len(), 30);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_two_head_gpt3_decoder_splits_its_projections_into_heads() {
    let t = load(&fixture("torch-mlir/gpt3_decoder.mlir"), &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    insta::assert_snapshot!("reshape_gpt3_decoder", shown(&t));
}

/// A function of `%a` with body `ops`, returning `ret`.
fn func(args: &str, ops: &str, ret: &str) -> String {
    format!(
        "#S = #sparse_tensor.encoding<{{ map = (d0, d1) -> (d0 : dense, d1 : compressed) }}>\nmodule {{\n  func.func @f({args}) -> {ret} {{\n{ops}\n  }}\n}}\n"
    )
}

/// `y = x * 2` over a rank-3 `x` of shape `s`.
fn double(x: &str, s: &str, y: &str) -> String {
    format!(
        "    %e{y} = tensor.empty() : tensor<{s}xf32>\n    %{y} = linalg.generic {{indexing_maps = [affine_map<(d0, d1, d2) -> (d0, d1, d2)>, affine_map<(d0, d1, d2) -> (d0, d1, d2)>], iterator_types = [\"parallel\", \"parallel\", \"parallel\"]}} ins(%{x} : tensor<{s}xf32>) outs(%e{y} : tensor<{s}xf32>) {{\n    ^bb0(%in: f32, %out: f32):\n      %m = arith.mulf %in, %in : f32\n      linalg.yield %m : f32\n    }} -> tensor<{s}xf32>"
    )
}

#[test]
fn what_cannot_be_relabelled_is_refused_in_one_line() {
    // One dimension split as (3, 4) and as (2, 6).
    let two_ways = func(
        "%a: tensor<12x5xf32>",
        &format!(
            "    %x = tensor.expand_shape %a [[0, 1], [2]] output_shape [3, 4, 5] : tensor<12x5xf32> into tensor<3x4x5xf32>\n    %y = tensor.expand_shape %a [[0, 1], [2]] output_shape [2, 6, 5] : tensor<12x5xf32> into tensor<2x6x5xf32>\n{}\n{}\n    return %p, %q : tensor<3x4x5xf32>, tensor<2x6x5xf32>",
            double("x", "3x4x5", "p"),
            double("y", "2x6x5", "q")
        ),
        "(tensor<3x4x5xf32>, tensor<2x6x5xf32>)",
    );
    // The compressed level of a CSR matrix split.
    let sparse = func(
        "%a: tensor<4x6xf32, #S>",
        &format!(
            "    %x = tensor.expand_shape %a [[0], [1, 2]] output_shape [4, 2, 3] : tensor<4x6xf32, #S> into tensor<4x2x3xf32>\n{}\n    return %p : tensor<4x2x3xf32>",
            double("x", "4x2x3", "p")
        ),
        "tensor<4x2x3xf32>",
    );
    // Groups that are not contiguous.
    let groups = func(
        "%a: tensor<6x5xf32>",
        &format!(
            "    %x = tensor.expand_shape %a [[0, 2], [1]] output_shape [2, 5, 3] : tensor<6x5xf32> into tensor<2x5x3xf32>\n{}\n    return %p : tensor<2x5x3xf32>",
            double("x", "2x5x3", "p")
        ),
        "tensor<2x5x3xf32>",
    );
    let cases = [
        (two_ways, "m.mlir:5:10: `tensor.expand_shape` at line 5: reshape [12, 5] → [2, 6, 5]: a dimension of size 3 cannot be split by 2 (it is split two incompatible ways)"),
        (sparse, "m.mlir:3:16: argument %a: dimension 1 (size 6) of a sparse tensor would be split into [2, 3], but it is a compressed level (only dense levels can be split or merged)"),
        (groups, "m.mlir:4:10: `tensor.expand_shape` at line 4: reshape [6, 5] → [2, 5, 3]: reassociation [[0, 2], [1]] is not contiguous groups covering every dimension in order"),
    ];
    for (src, want) in cases {
        let got = from_src(&src).map(|t| shown(&t)).expect_err(&src);
        assert_eq!(got, want, "\n{src}");
        assert!(!got.contains('\n'));
    }
}
