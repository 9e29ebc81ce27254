//! The translation of the MLIR fixtures (snapshots of the program as index notation, with the
//! notes), the data of constants, and the one-line errors for what is not supported.

use std::path::{Path, PathBuf};

use fuseflow_mlir::{load, parse, translate, Options, Translated};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn translated(name: &str) -> Translated {
    load(&fixture(name), &Options::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// The program as index notation, then the notes.
fn shown(t: &Translated) -> String {
    let mut s = fuseflow_ir::pretty(&t.program);
    for u in &t.program.user_stmts {
        if let Some(b) = u.builtin {
            s.push_str(&format!("# user statement at line {}: {b}\n", u.span.line));
        }
    }
    for n in &t.notes {
        s.push_str(&format!("# note: {n}\n"));
    }
    s
}

#[test]
fn gcn_translates_to_one_statement_per_op_and_a_softmax() {
    let t = translated("gcn.mlir");
    assert_eq!(t.program.user_stmts.len(), 8);
    insta::assert_snapshot!("gcn", shown(&t));
}

#[test]
fn attention_translates_with_its_softmax() {
    insta::assert_snapshot!("attention", shown(&translated("attention.mlir")));
}

#[test]
fn torch_layer_norm_becomes_the_builtin() {
    let t = translated("layernorm.mlir");
    let builtins: Vec<_> = t.program.user_stmts.iter().filter_map(|u| u.builtin).collect();
    assert_eq!(builtins, ["layernorm"]);
    insta::assert_snapshot!("layernorm", shown(&t));
}

#[test]
fn other_constructs_translate() {
    insta::assert_snapshot!("constructs", shown(&translated("constructs.mlir")));
}

#[test]
fn dense_resource_blob_and_dense_array_are_bound_as_data() {
    let t = translated("constructs.mlir");
    let w = &t.bind.iter().find(|(n, _)| n == "w").expect("w bound").1;
    assert_eq!(w.shape, vec![4, 3]);
    assert_eq!(w.vals, (1..=12).map(f64::from).collect::<Vec<_>>());
    let v = &t.bind.iter().find(|(n, _)| n == "v").expect("v bound").1;
    assert_eq!(v.vals, vec![1.0, -2.0, 0.5, 4.0]);
}

#[test]
fn a_transposed_constant_is_bound_transposed() {
    let src = r#"
#map = affine_map<(d0, d1) -> (d0, d1)>
#map1 = affine_map<(d0, d1) -> (d1, d0)>
module {
  func.func @forward(%x: tensor<2x3xf32>) -> tensor<2x2xf32> {
    %w = arith.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
    %z = arith.constant 0.0 : f32
    %0 = tensor.empty() : tensor<3x2xf32>
    %wt = linalg.generic {indexing_maps = [#map, #map1], iterator_types = ["parallel", "parallel"]} ins(%w : tensor<2x3xf32>) outs(%0 : tensor<3x2xf32>) {
    ^bb0(%in: f32, %out: f32):
      linalg.yield %in : f32
    } -> tensor<3x2xf32>
    %1 = tensor.empty() : tensor<2x2xf32>
    %2 = linalg.fill ins(%z : f32) outs(%1 : tensor<2x2xf32>) -> tensor<2x2xf32>
    %y = linalg.matmul ins(%x, %wt : tensor<2x3xf32>, tensor<3x2xf32>) outs(%2 : tensor<2x2xf32>) -> tensor<2x2xf32>
    return %y : tensor<2x2xf32>
  }
}"#;
    let m = parse(src, "t.mlir").unwrap();
    let t = translate(&m, "t.mlir", &Options::default()).unwrap();
    let (name, coo) = &t.bind[0];
    assert_eq!(name, "wt");
    assert_eq!(coo.shape, vec![3, 2]);
    // (row, column, value) of the transpose of [[1, 2, 3], [4, 5, 6]].
    let mut points: Vec<(u32, u32, f64)> =
        (0..coo.nnz()).map(|p| (coo.coords(p)[0], coo.coords(p)[1], coo.vals[p])).collect();
    points.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(points, vec![(0, 0, 1.0), (0, 1, 4.0), (1, 0, 2.0), (1, 1, 5.0), (2, 0, 3.0), (2, 1, 6.0)]);
}

#[test]
fn sizes_are_parameters() {
    let mut opts = Options::default();
    opts.params.insert("D48".into(), 10);
    let t = load(&fixture("gcn.mlir"), &opts).unwrap();
    assert_eq!(t.program.decl("adj").unwrap().shape, vec![10, 10]);
    assert_eq!(t.program.params["D48"], 10);
    opts.params.insert("D47".into(), 10);
    let e = load(&fixture("gcn.mlir"), &opts).unwrap_err().to_string();
    assert!(e.contains("--param D47: no dimension of @forward has that size"), "{e}");
}

/// A one-generic function around `body` (inputs `%in`, `%in_1`, output `%out`).
fn generic(iters: &str, out_map: &str, body: &str) -> String {
    format!(
        r#"module {{
  func.func @forward(%a: tensor<4x5xf32>, %b: tensor<4x5xf32>) -> tensor<4x1xf32> {{
    %0 = tensor.empty() : tensor<4x1xf32>
    %r = linalg.generic {{indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>, {out_map}], iterator_types = [{iters}]}} ins(%a, %b : tensor<4x5xf32>, tensor<4x5xf32>) outs(%0 : tensor<4x1xf32>) {{
    ^bb0(%in: f32, %in_1: f32, %out: f32):
{body}
    }} -> tensor<4x1xf32>
    return %r : tensor<4x1xf32>
  }}
}}"#
    )
}

fn error_of(src: &str) -> String {
    match parse(src, "m.mlir").and_then(|m| translate(&m, "m.mlir", &Options::default())) {
        Ok(_) => panic!("accepted:\n{src}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unsupported_constructs_are_one_line_errors_naming_the_op_and_line() {
    let red = r#""parallel", "reduction""#;
    let out = "affine_map<(d0, d1) -> (d0, 0)>";
    let cases = [
        (
            generic(red, out, "      %m = arith.mulf %in, %out : f32\n      linalg.yield %m : f32"),
            "m.mlir:4:10: `linalg.generic` at line 4: body with reduction iterators must be `addf`/`maximumf` (or `cmpf`+`select`) of the output and one value",
        ),
        (
            generic(red, out, "      %m = math.log %in : f32\n      %s = arith.addf %m, %out : f32\n      linalg.yield %s : f32"),
            "m.mlir:4:10: `linalg.generic` at line 4: body operation `math.log` (line 6) is not supported",
        ),
        (
            generic(red, out, "      %c = arith.cmpf olt, %in, %in_1 : f32\n      %m = arith.select %c, %in, %out : f32\n      linalg.yield %m : f32"),
            "m.mlir:4:10: `linalg.generic` at line 4: `arith.select` other than ReLU (x > 0 ? x : 0) or a maximum/minimum is not supported",
        ),
        (
            "module {\n  func.func @f(%a: tensor<?x4xf32>) -> tensor<4xf32> {\n  }\n}".to_string(),
            "m.mlir:2:16: argument %a dimension 0 is dynamic (`?`): bind it with --input a=FILE or give --param Da_0=N",
        ),
        (
            "module {\n  func.func @f(%a: tensor<4xf32>) -> tensor<4xf32> {\n    %0 = tensor.extract_slice %a[0] [4] [1] : tensor<4xf32> to tensor<4xf32>\n    return %0 : tensor<4xf32>\n  }\n}".to_string(),
            "m.mlir:3:10: `tensor.extract_slice` at line 3: this operation is not supported",
        ),
        ("module {\n  func.func @f(".to_string(), "m.mlir:2:16: expected a value `%name`, found end of file"),
    ];
    for (src, want) in cases {
        assert_eq!(error_of(&src), want, "\n{src}");
    }
}

#[test]
fn several_functions_are_one_group_each() {
    let src = r#"
module {
  func.func @scale(%a: tensor<4x5xf32>) -> tensor<4x5xf32> {
    %c = arith.constant 2.0 : f32
    %0 = tensor.empty() : tensor<4x5xf32>
    %r = linalg.generic {indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%a : tensor<4x5xf32>) outs(%0 : tensor<4x5xf32>) {
    ^bb0(%in: f32, %out: f32):
      %m = arith.mulf %in, %c : f32
      linalg.yield %m : f32
    } -> tensor<4x5xf32>
    return %r : tensor<4x5xf32>
  }
  func.func @add(%a: tensor<4x5xf32>, %b: tensor<4x5xf32>) -> tensor<4x5xf32> {
    %0 = tensor.empty() : tensor<4x5xf32>
    %r = linalg.add ins(%a, %b : tensor<4x5xf32>, tensor<4x5xf32>) outs(%0 : tensor<4x5xf32>) -> tensor<4x5xf32>
    return %r : tensor<4x5xf32>
  }
}"#;
    let m = parse(src, "two.mlir").unwrap();
    let mut opts = Options::default();
    opts.densities.insert("add.b".into(), 0.5);
    let t = translate(&m, "two.mlir", &opts).unwrap();
    let p = &t.program;
    let groups: Vec<Vec<usize>> = p.groups.iter().map(|g| g.stmts.clone()).collect();
    assert_eq!(groups, vec![vec![0], vec![1]]);
    assert_eq!(fuseflow_ir::pretty_stmt(&p.stmts[1]), "add_r(i,j) = add_a(i,j) + add_b(i,j)");
    assert!(
        matches!(p.decl("add_b").unwrap().source, Some(fuseflow_ir::Source::Random { density, .. }) if density == 0.5)
    );
    opts.densities.insert("b".into(), 0.5);
    let e = translate(&m, "two.mlir", &opts).unwrap_err().to_string();
    assert!(e.contains("name the value as FUNCTION.NAME"), "{e}");
}

#[test]
fn torch_mlir_masked_attention_becomes_a_masked_softmax() {
    // torch-mlir's masked_fill(mask == 0, -inf): an i1 zero test, then select with a -inf splat.
    let t = translated("torch-mlir/attention.mlir");
    let builtins: Vec<_> = t.program.user_stmts.iter().filter_map(|u| u.builtin).collect();
    assert_eq!(builtins, ["masked_softmax"]);
    insta::assert_snapshot!("torch_mlir_attention", shown(&t));
}

#[test]
fn torch_mlir_linear_reads_its_bias_through_a_broadcast_view() {
    insta::assert_snapshot!("torch_mlir_linear", shown(&translated("torch-mlir/linear.mlir")));
}

/// A function with torch-mlir's masked_fill (an i1 zero test of `%m`, then `select` with −∞)
/// whose result `%s` is consumed by `consumer` (a body over `%in` with output `%out`).
fn masked(consumer: &str) -> String {
    format!(
        r#"#map = affine_map<(d0, d1) -> (d0, d1)>
#map0 = affine_map<(d0, d1) -> ()>
module {{
  func.func @f(%x: tensor<4x5xf32>, %m: tensor<4x5xf32>) -> tensor<4x5xf32> {{
    %z = arith.constant 0.000000e+00 : f32
    %ninf = arith.constant dense<0xFF800000> : tensor<f32>
    %0 = tensor.empty() : tensor<4x5xi1>
    %c = linalg.generic {{indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]}} ins(%m : tensor<4x5xf32>) outs(%0 : tensor<4x5xi1>) {{
    ^bb0(%in: f32, %out: i1):
      %e = arith.cmpf oeq, %in, %z : f32
      linalg.yield %e : i1
    }} -> tensor<4x5xi1>
    %1 = tensor.empty() : tensor<4x5xf32>
    %s = linalg.generic {{indexing_maps = [#map, #map0, #map, #map], iterator_types = ["parallel", "parallel"]}} ins(%c, %ninf, %x : tensor<4x5xi1>, tensor<f32>, tensor<4x5xf32>) outs(%1 : tensor<4x5xf32>) {{
    ^bb0(%in: i1, %in_1: f32, %in_2: f32, %out: f32):
      %v = arith.select %in, %in_1, %in_2 : f32
      linalg.yield %v : f32
    }} -> tensor<4x5xf32>
    %r = linalg.generic {{indexing_maps = [#map, #map], iterator_types = ["parallel", "parallel"]}} ins(%s : tensor<4x5xf32>) outs(%1 : tensor<4x5xf32>) {{
    ^bb0(%in: f32, %out: f32):
{consumer}
    }} -> tensor<4x5xf32>
    return %r : tensor<4x5xf32>
  }}
}}"#
    )
}

#[test]
fn a_masked_fill_read_other_than_by_a_softmax_is_refused() {
    // exp(-inf) would be 0 but exp(0) is 1: x * mask means masked_fill only inside a softmax.
    let e = error_of(&masked("      %v = math.exp %in : f32\n      linalg.yield %v : f32"));
    assert_eq!(
        e,
        "m.mlir:14:10: `linalg.generic` at line 14: a masked_fill(mask == 0, -inf) result is read by something other than a softmax over it (only masked softmax is supported)"
    );
    // A fill other than -inf is not a mask.
    let src = masked("      linalg.yield %in : f32").replace("dense<0xFF800000>", "dense<1.0>");
    assert_eq!(
        error_of(&src),
        "m.mlir:14:10: `linalg.generic` at line 14: `arith.select` on a mask must fill with -inf (masked_fill(mask == 0, -inf))"
    );
}

#[test]
fn torch_mlir_exact_gelu_reads_math_erf() {
    // gelu(approximate='none'): x * ((erf(x / sqrt 2) + 1) * 0.5), one statement with `erf`.
    insta::assert_snapshot!("torch_mlir_gelu", shown(&translated("torch-mlir/gelu.mlir")));
}

#[test]
fn scalar_tensors_translate() {
    insta::assert_snapshot!("scalar", shown(&translated("scalar.mlir")));
}

#[test]
fn a_kernel_of_constants_reads_its_fills_as_data() {
    let t = translated("constants.mlir");
    insta::assert_snapshot!("constants", shown(&t));
    // The fills hold their constants at their declared shapes; a zero fill holds nothing.
    let a = &t.bind.iter().find(|(n, _)| n == "a").expect("a bound").1;
    assert_eq!((a.shape.clone(), a.vals.clone()), (vec![3, 4], vec![2.0; 12]));
    let b = &t.bind.iter().find(|(n, _)| n == "b").expect("b bound").1;
    assert_eq!((b.shape.clone(), b.vals.clone()), (vec![4, 5], vec![0.5; 20]));
    let z = &t.bind.iter().find(|(n, _)| n == "z").expect("z bound").1;
    assert_eq!((z.shape.clone(), z.vals.len()), (vec![4, 5], 0));
}

#[test]
fn scalar_and_constant_kernel_errors_are_one_line() {
    let nil = "affine_map<() -> ()>";
    let cases = [
        (
            // A bare `f32` argument is not a tensor (a rank-0 `tensor<f32>` is).
            format!("#n = {nil}\nmodule {{\n  func.func @f(%a: f32) -> tensor<f32> {{\n    %0 = tensor.empty() : tensor<f32>\n    %1 = linalg.generic {{indexing_maps = [#n], iterator_types = []}} outs(%0 : tensor<f32>) {{\n    ^bb0(%out: f32):\n      %s = arith.addf %a, %a : f32\n      linalg.yield %s : f32\n    }} -> tensor<f32>\n    return %1 : tensor<f32>\n  }}\n}}"),
            "m.mlir:5:10: `linalg.generic` at line 5: the body reads %a: argument %a is a bare `f32`, not a tensor (write a scalar argument as `tensor<f32>`)",
        ),
        (
            // A zero-dimensional map on a matrix.
            format!("#n = {nil}\nmodule {{\n  func.func @f(%a: tensor<2x3xf32>) -> tensor<f32> {{\n    %0 = tensor.empty() : tensor<f32>\n    %1 = linalg.generic {{indexing_maps = [#n, #n], iterator_types = []}} ins(%a : tensor<2x3xf32>) outs(%0 : tensor<f32>) {{\n    ^bb0(%in: f32, %out: f32):\n      linalg.yield %in : f32\n    }} -> tensor<f32>\n    return %1 : tensor<f32>\n  }}\n}}"),
            "m.mlir:5:10: `linalg.generic` at line 5: indexing map 0 has 0 results but %a has rank 2",
        ),
        (
            // A kernel of constants with no tensor operand at all: nothing to read as data.
            "#m = affine_map<(d0) -> (d0)>\nmodule {\n  func.func @f() -> tensor<4xf32> {\n    %c = arith.constant 2.0 : f32\n    %0 = tensor.empty() : tensor<4xf32>\n    %1 = linalg.generic {indexing_maps = [#m], iterator_types = [\"parallel\"]} outs(%0 : tensor<4xf32>) {\n    ^bb0(%out: f32):\n      linalg.yield %c : f32\n    } -> tensor<4xf32>\n    return %1 : tensor<4xf32>\n  }\n}".to_string(),
            "m.mlir:6:10: `linalg.generic` at line 6: the result is broadcast over loop i, which no tensor operand reads (index notation cannot express it)",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(error_of(&src), want, "\n{src}");
    }
}

fn with(inputs: &[(&str, &Path)], params: &[(&str, i64)]) -> Options {
    Options {
        inputs: inputs.iter().map(|(n, p)| (n.to_string(), p.to_path_buf())).collect(),
        params: params.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        ..Options::default()
    }
}

#[test]
fn dynamic_sizes_are_tied_bound_from_files_or_parameters() {
    let path = fixture("dynamic.mlir");
    // The columns of %w are tied to nothing static: --param names them.
    let t = load(&path, &with(&[], &[("Dw_1", 6)])).unwrap_or_else(|e| panic!("{e}"));
    insta::assert_snapshot!("dynamic", shown(&t));
    // Or the data of an --input file of %w.
    let dir = std::env::temp_dir().join(format!("fuseflow-mlir-dynamic-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let w = dir.join("w.mtx");
    std::fs::write(&w, "%%MatrixMarket matrix coordinate real general\n4 7 2\n1 1 1.5\n4 7 -2\n").unwrap();
    let t = load(&path, &with(&[("w", &w)], &[])).unwrap_or_else(|e| panic!("{e}"));
    let y = t.program.decls.iter().find(|d| d.name == "y").expect("y declared");
    assert_eq!(y.shape, vec![3, 7]);
    assert_eq!(t.bind.iter().find(|(n, _)| n == "w").expect("w bound").1.shape, vec![4, 7]);
    // Without either: one line naming the argument and the dimension.
    let e = load(&path, &Options::default()).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:8:43: argument %w dimension 1 is dynamic (`?`): bind it with --input w=FILE or give --param Dw_1=N",
            path.display()
        )
    );
    // A dimension tied to a static size takes no --param of its own.
    let e = load(&path, &with(&[], &[("Dw_1", 6), ("Dx_0", 5)])).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{}:8:22: --param Dx_0: argument %x dimension 0 is tied to a dimension of size 3 (resize that with --param D3=N)", path.display())
    );
    // Data contradicting a dimension tied to a static size is the ordinary shape error.
    let x = dir.join("x.mtx");
    std::fs::write(&x, "%%MatrixMarket matrix coordinate real general\n5 4 1\n1 1 1\n").unwrap();
    let e = load(&path, &with(&[("x", &x)], &[("Dw_1", 6)])).unwrap_err().to_string();
    assert!(e.contains("the file has shape [5, 4] but %x is declared [3, 4]"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_nonzero_fill_too_large_to_hold_as_data_is_refused() {
    let path = fixture("constants.mlir");
    let e = load(&path, &with(&[], &[("D4", 30_000_000)])).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}:17:28: fill %a of 2 read as data has shape [3, 30000000]: more than 67108864 elements (shrink it with --param)",
            path.display()
        )
    );
}

#[test]
fn a_bsr_operand_is_declared_blocked_like_bcsr() {
    let t = translated("bsr_spmm.mlir");
    let a = t.program.decl("A").expect("A declared");
    assert_eq!((a.block, fuseflow_ir::format_name(&a.format)), (Some(2), "csr".to_string()));
    assert_eq!(t.program.decl("B").expect("B declared").block, None);
    insta::assert_snapshot!("bsr_spmm", shown(&t));
}

#[test]
fn a_dcsr_of_blocks_mask_is_declared_like_bdcsr() {
    let t = translated("bsr_attention.mlir");
    let m = t.program.decl("mask").expect("mask declared");
    assert_eq!((m.block, fuseflow_ir::format_name(&m.format)), (Some(4), "dcsr".to_string()));
    insta::assert_snapshot!("bsr_attention", shown(&t));
}

/// The encoding of the first argument of a one-argument function of type `tensor<8x8xf32, ENC>`
/// (`aliases` are written before the module).
fn encoding(aliases: &str, enc: &str) -> fuseflow_mlir::ast::Encoding {
    let src = format!(
        "{aliases}\nmodule {{\n  func.func @f(%a: tensor<8x8xf32, {enc}>) -> tensor<8x8xf32, {enc}> {{\n    return %a : tensor<8x8xf32, {enc}>\n  }}\n}}\n"
    );
    let m = parse(&src, "e.mlir").unwrap_or_else(|e| panic!("{e}\n{src}"));
    match &m.funcs[0].args[0].1 {
        fuseflow_mlir::ast::Type::Tensor(t) => t.encoding.clone().expect("an encoding"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn block_encodings_read_the_same_in_every_spelling() {
    use fuseflow_mlir::ast::LevelKind::{Compressed, Dense};
    let bsr = "#sparse_tensor.encoding<{ map = (d0, d1) -> (d0 floordiv 2 : dense, d1 floordiv 2 : compressed, d0 mod 2 : dense, d1 mod 2 : dense) }>";
    let spellings = [
        ("", bsr.to_string()),
        // Other dimension names, widths, and an alias of the encoding.
        (
            "#BSR = #sparse_tensor.encoding<{\n  map = ( i, j ) ->\n  ( i floordiv 2 : dense,\n    j floordiv 2 : compressed,\n    i mod 2 : dense,\n    j mod 2 : dense ),\n  posWidth = 64, crdWidth = 64\n}>",
            "#BSR".to_string(),
        ),
        // MLIR's explicit level variables and level-to-dimension expressions.
        (
            "",
            "#sparse_tensor.encoding<{ map = {il, jl, ii, jj} (i = il * 2 + ii, j = jl * 2 + jj) -> (il = i floordiv 2 : dense, jl = j floordiv 2 : compressed, ii = i mod 2 : dense, jj = j mod 2 : dense) }>".to_string(),
        ),
        // The older fields, with the map inline or as an `affine_map` alias.
        (
            "",
            "#sparse_tensor.encoding<{ lvlTypes = [ \"dense\", \"compressed\", \"dense\", \"dense\" ], dimToLvl = affine_map<(i, j) -> (i floordiv 2, j floordiv 2, i mod 2, j mod 2)> }>".to_string(),
        ),
        (
            "#map = affine_map<(d0, d1) -> (d0 floordiv 2, d1 floordiv 2, d0 mod 2, d1 mod 2)>",
            "#sparse_tensor.encoding<{ lvlTypes = [ \"dense\", \"compressed\", \"dense\", \"dense\" ], dimToLvl = #map }>".to_string(),
        ),
    ];
    for (aliases, enc) in &spellings {
        let e = encoding(aliases, enc);
        assert_eq!((e.dims, e.levels.clone(), e.block), (2, vec![(0, Dense), (1, Compressed)], Some(2)), "{enc}");
    }
    // A vector is blocked along its only dimension.
    let src = "#BV = #sparse_tensor.encoding<{ map = (i) -> (i floordiv 4 : compressed, i mod 4 : dense) }>\nmodule {\n  func.func @f(%a: tensor<16xf32, #BV>, %b: tensor<16xf32>) -> tensor<16xf32> {\n    %0 = tensor.empty() : tensor<16xf32>\n    %r = linalg.mul ins(%a, %b : tensor<16xf32, #BV>, tensor<16xf32>) outs(%0 : tensor<16xf32>) -> tensor<16xf32>\n    return %r : tensor<16xf32>\n  }\n}\n";
    let t = translate(&parse(src, "v.mlir").unwrap(), "v.mlir", &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    let a = t.program.decl("a").expect("a declared");
    assert_eq!((a.block, a.format.levels.clone()), (Some(4), vec![fuseflow_tensor::LevelFormat::Compressed]));
    // BSC: the column blocks outer, as `csc block(2)`; the in-block order does not matter.
    for inner in ["i mod 2 : dense, j mod 2 : dense", "j mod 2 : dense, i mod 2 : dense"] {
        let bsc = format!(
            "#sparse_tensor.encoding<{{ map = (i, j) -> (j floordiv 2 : dense, i floordiv 2 : compressed, {inner}) }}>"
        );
        let e = encoding("", &bsc);
        assert_eq!((e.dims, e.levels.clone(), e.block), (2, vec![(1, Dense), (0, Compressed)], Some(2)), "{bsc}");
    }
    let t = translate(
        &parse(
            &block_fn(
                "(i, j) -> (j floordiv 2 : dense, i floordiv 2 : compressed, i mod 2 : dense, j mod 2 : dense)",
                "8x8",
            ),
            "m.mlir",
        )
        .unwrap(),
        "m.mlir",
        &Options::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let a = t.program.decl("a").expect("a declared");
    let csc = fuseflow_tensor::Format {
        levels: vec![fuseflow_tensor::LevelFormat::Dense, fuseflow_tensor::LevelFormat::Compressed],
        mode_order: vec![1, 0],
    };
    assert_eq!((a.block, a.format.clone()), (Some(2), csc));
    // Without floordiv/mod nothing is blocked.
    let csr = encoding("", "#sparse_tensor.encoding<{ map = (d0, d1) -> (d0 : dense, d1 : compressed) }>");
    assert_eq!(csr.block, None);
}

/// A function reading `tensor<SHAPE x f32, ENC>` (with `#E` defined as `enc`) through a copy.
fn block_fn(enc: &str, shape: &str) -> String {
    format!(
        "#E = #sparse_tensor.encoding<{{ map = {enc} }}>\n#m = affine_map<(d0, d1) -> (d0, d1)>\nmodule {{\n  func.func @f(%a: tensor<{shape}xf32, #E>, %b: tensor<{shape}xf32>) -> tensor<{shape}xf32> {{\n    %0 = tensor.empty() : tensor<{shape}xf32>\n    %r = linalg.mul ins(%a, %b : tensor<{shape}xf32, #E>, tensor<{shape}xf32>) outs(%0 : tensor<{shape}xf32>) -> tensor<{shape}xf32>\n    return %r : tensor<{shape}xf32>\n  }}\n}}\n"
    )
}

#[test]
fn block_encodings_outside_blocking_are_one_line_errors() {
    let bsr = "(i, j) -> (i floordiv 2 : dense, j floordiv 2 : compressed, i mod 2 : dense, j mod 2 : dense)";
    // It translates at a shape 2 divides (the case the errors below break).
    let ok = block_fn(bsr, "8x8");
    let t = translate(&parse(&ok, "m.mlir").unwrap(), "m.mlir", &Options::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.program.decl("a").expect("a declared").block, Some(2));
    let cases = [
        (
            block_fn("(i, j) -> (i floordiv 2 : dense, j floordiv 4 : compressed, i mod 2 : dense, j mod 4 : dense)", "8x8"),
            "m.mlir:1:71: level `j floordiv 4`: blocks of different sizes per dimension (non-square blocks) are not supported; use one block size B for every dimension",
        ),
        (
            block_fn("(i, j) -> (i floordiv 2 : dense, i mod 2 : dense, j floordiv 2 : compressed, j mod 2 : dense)", "8x8"),
            "m.mlir:1:71: level 1 is `i mod 2`, expected a block level (`d floordiv B`): a block encoding lists every dimension `floordiv 2`, then every dimension `mod 2`",
        ),
        (
            block_fn("(i, j) -> (i : dense, j floordiv 2 : compressed, j mod 2 : dense)", "8x8"),
            "m.mlir:1:49: level `i` in a block encoding: every dimension must be split into `floordiv B` and `mod B` levels",
        ),
        (
            block_fn("(i, j) -> (i floordiv 2 : dense, j : compressed, i mod 2 : dense, j mod 3 : dense)", "8x8"),
            "m.mlir:1:71: level `j` in a block encoding: every dimension must be split into `floordiv B` and `mod B` levels",
        ),
        (
            block_fn("(i, j) -> (i floordiv 2 : dense, j floordiv 2 : compressed, i mod 2 : dense, j mod 3 : dense)", "8x8"),
            "m.mlir:1:115: `j mod 3` without a matching `j floordiv 3` level",
        ),
        (
            block_fn("(i, j) -> (i floordiv 2 : dense, j floordiv 2 : compressed, i mod 2 : dense, j mod 2 : compressed)", "8x8"),
            "m.mlir:1:115: in-block level `j mod 2` must be dense (a tile is a dense 2 × 2 block)",
        ),
        (
            block_fn("(i, j) -> (i floordiv 1 : dense, j floordiv 1 : compressed, i mod 1 : dense, j mod 1 : dense)", "8x8"),
            "m.mlir:1:49: block size 1: a block size must be at least 2",
        ),
        (
            "#E = #sparse_tensor.encoding<{ map = (i, j, k) -> (i : dense, j floordiv 2 : compressed, k floordiv 2 : compressed, j mod 2 : dense, k mod 2 : dense) }>\n".to_string(),
            "m.mlir:1:63: block encoding (floordiv/mod levels) of a 3-D tensor: only matrices and vectors can be blocked",
        ),
        (
            // The block size must divide every dimension.
            block_fn(bsr, "8x7"),
            "m.mlir:4:16: a: the block encoding at line 1 (2 × 2 blocks) block size 2 does not divide dimension 1 (size 7)",
        ),
        (
            // A size-1 dimension (dropped everywhere) cannot hold a tile.
            block_fn(bsr, "1x8"),
            "m.mlir:4:16: a: the block encoding at line 1 (2 × 2 blocks) cannot block dimension 0 of size 1",
        ),
        (
            // A reshape would cut the tiles apart.
            "#E = #sparse_tensor.encoding<{ map = (i, j) -> (i floordiv 2 : dense, j floordiv 2 : compressed, i mod 2 : dense, j mod 2 : dense) }>\nmodule {\n  func.func @f(%a: tensor<8x8xf32, #E>) -> tensor<2x4x8xf32> {\n    %0 = tensor.expand_shape %a [[0, 1], [2]] output_shape [2, 4, 8] : tensor<8x8xf32, #E> into tensor<2x4x8xf32>\n    return %0 : tensor<2x4x8xf32>\n  }\n}\n".to_string(),
            "m.mlir:3:16: argument %a: dimension 0 (size 8) of a block-encoded (2 × 2 tiles) tensor would be split into [2, 4], but blocked dimensions cannot be split or merged",
        ),
        (
            // floordiv/mod index nothing: an indexing map with them is refused where it is used.
            "#m = affine_map<(d0, d1) -> (d0 floordiv 2, d1)>\nmodule {\n  func.func @f(%a: tensor<4x4xf32>) -> tensor<2x4xf32> {\n    %0 = tensor.empty() : tensor<2x4xf32>\n    %r = linalg.generic {indexing_maps = [#m, #m], iterator_types = [\"parallel\", \"parallel\"]} ins(%a : tensor<4x4xf32>) outs(%0 : tensor<2x4xf32>) {\n    ^bb0(%in: f32, %out: f32):\n      linalg.yield %in : f32\n    } -> tensor<2x4xf32>\n    return %r : tensor<2x4xf32>\n  }\n}\n".to_string(),
            "m.mlir:1:30: affine map results other than a dimension or a constant (e.g. `d0 + d1`, `floordiv`) are not supported",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(error_of(&src), want, "\n{src}");
    }
    // A size that --param makes indivisible by the block size is refused the same way.
    let e = translate(&parse(&ok, "m.mlir").unwrap(), "m.mlir", &with(&[], &[("D8", 9)])).unwrap_err().to_string();
    assert_eq!(
        e,
        "m.mlir:4:16: a: the block encoding at line 1 (2 × 2 blocks) block size 2 does not divide dimension 0 (size 9)"
    );
}

#[test]
fn arguments_are_named_by_their_attributes() {
    let t = translated("named_args.mlir");
    let inputs: Vec<&str> =
        t.program.decls.iter().filter(|d| d.role == fuseflow_ir::Role::Input).map(|d| d.name.as_str()).collect();
    assert_eq!(inputs, ["adj", "x", "input_1"]);
    insta::assert_snapshot!("named_args", shown(&t));
}

#[test]
fn a_named_argument_binds_by_its_name_or_its_ssa_name() {
    let path = fixture("named_args.mlir");
    let dir = std::env::temp_dir().join(format!("fuseflow-mlir-named-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let adj = dir.join("adj.mtx");
    std::fs::write(&adj, "%%MatrixMarket matrix coordinate real general\n8 8 2\n1 2 1.5\n8 7 -2\n").unwrap();
    for key in ["adj", "arg0"] {
        let t = load(&path, &with(&[(key, &adj)], &[])).unwrap_or_else(|e| panic!("{key}: {e}"));
        let bound = &t.bind.iter().find(|(n, _)| n == "adj").unwrap_or_else(|| panic!("{key}: adj not bound")).1;
        assert_eq!((bound.shape.clone(), bound.vals.clone()), (vec![8, 8], vec![1.5, -2.0]), "{key}");
    }
    // --density takes the name too; the name as written, not the identifier made of it.
    let mut opts = Options::default();
    opts.densities.insert("input.1".into(), 0.25);
    let t = load(&path, &opts).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        t.program.decl("input_1").unwrap().source,
        Some(fuseflow_ir::Source::Random { density, .. }) if density == 0.25
    ));
    // Both names of one argument at once, and an unknown name listing the names.
    let e = load(&path, &with(&[("adj", &adj), ("arg0", &adj)], &[])).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{}: --input adj and --input arg0 name the same argument (arg0); give one of them", path.display())
    );
    let e = load(&path, &with(&[("w", &adj)], &[])).unwrap_err().to_string();
    assert!(e.ends_with("(arguments: adj (%arg0), x (%arg1), input.1 (%arg2))"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ambiguous_argument_names_are_one_line_errors() {
    let f = |a: &str, b: &str| {
        format!(
            "module {{\n  func.func @f(%arg0: tensor<4xf32> {{torch.arg_name = \"{a}\"}}, %arg1: tensor<4xf32> {{torch.arg_name = \"{b}\"}}) -> tensor<4xf32> {{\n    %0 = tensor.empty() : tensor<4xf32>\n    %r = linalg.add ins(%arg0, %arg1 : tensor<4xf32>, tensor<4xf32>) outs(%0 : tensor<4xf32>) -> tensor<4xf32>\n    return %r : tensor<4xf32>\n  }}\n}}\n"
        )
    };
    let t = translate(&parse(&f("a", "b"), "m.mlir").unwrap(), "m.mlir", &Options::default()).unwrap();
    assert_eq!(fuseflow_ir::pretty_stmt(&t.program.stmts[0]), "r(i) = a(i) + b(i)");
    assert_eq!(
        error_of(&f("a", "a")),
        "m.mlir:2:61: argument %arg1 is named `a` like argument %arg0: argument names must differ"
    );
    assert_eq!(
        error_of(&f("arg1", "b")),
        "m.mlir:2:16: argument %arg0 is named `arg1`, the SSA name of argument %arg1: argument names must differ from other arguments' SSA names"
    );
    // Names that are not identifiers (or are built-in names) become identifiers deterministically.
    let t = translate(&parse(&f("1st", "exp"), "m.mlir").unwrap(), "m.mlir", &Options::default()).unwrap();
    assert_eq!(fuseflow_ir::pretty_stmt(&t.program.stmts[0]), "r(i) = t1st(i) + exp_v(i)");
}

#[test]
fn a_named_arguments_dynamic_size_takes_its_name_in_the_parameter() {
    let src = "module {\n  func.func @f(%arg0: tensor<4x?xf32> {torch.arg_name = \"w\"}) -> tensor<4x?xf32> {\n    %0 = tensor.empty(%d) : tensor<4x?xf32>\n    %r = linalg.exp ins(%arg0 : tensor<4x?xf32>) outs(%0 : tensor<4x?xf32>) -> tensor<4x?xf32>\n    return %r : tensor<4x?xf32>\n  }\n}\n";
    let m = parse(src, "m.mlir").unwrap();
    for key in ["Dw_1", "Darg0_1"] {
        let t = translate(&m, "m.mlir", &with(&[], &[(key, 5)])).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(t.program.decl("w").expect("w declared").shape, vec![4, 5], "{key}");
    }
    let e = translate(&m, "m.mlir", &with(&[], &[("Dw_1", 5), ("Darg0_1", 6)])).unwrap_err().to_string();
    assert_eq!(
        e,
        "m.mlir: --param Darg0_1 and --param Dw_1 name the same dynamic dimension (Darg0_1); give one of them"
    );
}

#[test]
fn dynamic_sizes_are_tied_across_reshapes_that_split_or_merge() {
    // %x's rows through a one-dimension group, %v as a product, %u's rows as a quotient.
    let t = translated("dynamic_reshape.mlir");
    insta::assert_snapshot!("dynamic_reshape", shown(&t));
    for (name, shape) in [("x", vec![2, 4, 16]), ("v", vec![4, 16]), ("u", vec![4, 16])] {
        assert_eq!(t.program.decl(name).unwrap_or_else(|| panic!("{name} declared")).shape, shape, "{name}");
    }
}

/// A function collapsing its argument of type `from` into `tensor<64xf32>` and returning it.
fn collapse(from: &str) -> String {
    format!(
        "module {{\n  func.func @f(%d: tensor<{from}xf32>) -> tensor<64xf32> {{\n    %c = tensor.collapse_shape %d [[0, 1]] : tensor<{from}xf32> into tensor<64xf32>\n    %0 = tensor.empty() : tensor<64xf32>\n    %r = linalg.exp ins(%c : tensor<64xf32>) outs(%0 : tensor<64xf32>) -> tensor<64xf32>\n    return %r : tensor<64xf32>\n  }}\n}}\n"
    )
}

#[test]
fn dynamic_sizes_a_reshape_cannot_determine_are_one_line_errors() {
    // Two unknown factors: the first is named, and binding it determines the other.
    let two = collapse("?x?");
    assert_eq!(
        error_of(&two),
        "m.mlir:2:16: argument %d dimension 0 is dynamic (`?`): bind it with --input d=FILE or give --param Dd_0=N"
    );
    let t = translate(&parse(&two, "m.mlir").unwrap(), "m.mlir", &with(&[], &[("Dd_0", 4)]))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.program.decl("d").expect("d declared").shape, vec![4, 16]);
    // A factor the static size is not a multiple of.
    assert_eq!(
        error_of(&collapse("?x6")),
        "m.mlir:3:10: `tensor.collapse_shape` at line 3: a dynamic (`?`) dimension cannot be sized: 64 is not a multiple of the other dimensions' product 6"
    );
    // A --param that does not divide either.
    let e = translate(&parse(&two, "m.mlir").unwrap(), "m.mlir", &with(&[], &[("Dd_0", 5)])).unwrap_err().to_string();
    assert_eq!(
        e,
        "m.mlir:3:10: `tensor.collapse_shape` at line 3: a dynamic (`?`) dimension cannot be sized: 64 is not a multiple of the other dimensions' product 5"
    );
    // A size the reshape determines takes no --param of its own.
    let e = translate(&parse(&collapse("?x16"), "m.mlir").unwrap(), "m.mlir", &with(&[], &[("Dd_0", 4)]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "m.mlir:2:16: --param Dd_0: argument %d dimension 0 is tied to a dimension of size 4 (resize that with --param D4=N)"
    );
}
