//! NumPy `.npy` arrays and scipy sparse `.npz` archives.
//!
//! Reads what `scipy.sparse.save_npz` writes for `csr`, `csc` and `coo` matrices and arrays
//! (including n-dimensional `coo` arrays stored with a `coords` key), a plain dense `.npy` array,
//! and an `.npz` holding a single dense array (as `numpy.savez(file, a)` writes, key `arr_0`).
//! Index arrays may be any integer type, data any integer, float or bool type, in either byte
//! order. Writes CSR the way scipy does (deflate-compressed, int32 indices when they fit).
//!
//! The `.npy` header is parsed here rather than with a general Python-literal parser: only
//! the `{'descr': ..., 'fortran_order': ..., 'shape': (...)}` dictionary numpy writes is needed.

use std::collections::HashMap;
use std::io::{Cursor, Read, Seek, Write};
use std::path::Path;

use crate::io_error::{path_name, quote, read_bytes};
use crate::{Coo, Format, IoError, LevelData, Tensor};

const NPY_MAGIC: &[u8] = b"\x93NUMPY";
const ZIP_MAGIC: &[u8] = b"PK";

/// Element type of an `.npy` array.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Float,
    Int,
    UInt,
    Bool,
    /// Fixed-length byte string (`S<n>`).
    Bytes,
    /// Fixed-length UCS-4 string (`U<n>`); the size is in bytes (4 per character).
    Unicode,
}

/// A parsed `.npy` array: header plus its raw data bytes.
struct Npy<'a> {
    /// Name used in errors (`file` or `file[key]`).
    what: String,
    kind: Kind,
    /// Bytes per element.
    size: usize,
    big_endian: bool,
    fortran: bool,
    shape: Vec<usize>,
    data: &'a [u8],
}

/// Tokens of the Python dict literal in an `.npy` header.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open(char),
    Close(char),
    Colon,
    Comma,
    Str(String),
    Int(u64),
    Ident(String),
}

fn lex_header(h: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = h.chars().peekable();
    while let Some(&c) = it.peek() {
        match c {
            c if c.is_whitespace() => {
                it.next();
            }
            '{' | '(' | '[' => {
                it.next();
                out.push(Tok::Open(c));
            }
            '}' | ')' | ']' => {
                it.next();
                out.push(Tok::Close(c));
            }
            ':' => {
                it.next();
                out.push(Tok::Colon);
            }
            ',' => {
                it.next();
                out.push(Tok::Comma);
            }
            '\'' | '"' => {
                it.next();
                let mut s = String::new();
                loop {
                    match it.next() {
                        Some(ch) if ch == c => break,
                        Some('\\') => return Err("escape sequences in header strings are not supported".into()),
                        Some(ch) => s.push(ch),
                        None => return Err("unterminated string in header".into()),
                    }
                }
                out.push(Tok::Str(s));
            }
            '0'..='9' => {
                let mut n: u64 = 0;
                while let Some(&d) = it.peek() {
                    if let Some(v) = d.to_digit(10) {
                        n = n
                            .checked_mul(10)
                            .and_then(|n| n.checked_add(v as u64))
                            .ok_or_else(|| "integer in header is too large".to_string())?;
                        it.next();
                    } else {
                        break;
                    }
                }
                // Python 2 long suffix.
                if matches!(it.peek(), Some('L') | Some('l')) {
                    it.next();
                }
                out.push(Tok::Int(n));
            }
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut s = String::new();
                while let Some(&d) = it.peek() {
                    if d.is_ascii_alphanumeric() || d == '_' {
                        s.push(d);
                        it.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Ident(s));
            }
            c => return Err(format!("unexpected character {c:?} in header")),
        }
    }
    Ok(out)
}

/// Header values we understand.
#[derive(Debug)]
enum Val {
    Str(String),
    Bool(bool),
    Tuple(Vec<u64>),
}

fn parse_header_dict(h: &str) -> Result<HashMap<String, Val>, String> {
    let toks = lex_header(h)?;
    let mut i = 0;
    let mut next = |what: &str| -> Result<Tok, String> {
        let t = toks.get(i).cloned().ok_or_else(|| format!("header ends early; expected {what}"))?;
        i += 1;
        Ok(t)
    };
    if next("'{'")? != Tok::Open('{') {
        return Err("header is not a dictionary".into());
    }
    let mut map = HashMap::new();
    loop {
        let key = match next("a key or '}'")? {
            Tok::Close('}') => break,
            Tok::Str(k) => k,
            t => return Err(format!("unexpected {t:?} where a header key was expected")),
        };
        if next("':'")? != Tok::Colon {
            return Err(format!("missing ':' after header key {key:?}"));
        }
        let val = match next("a value")? {
            Tok::Str(s) => Val::Str(s),
            Tok::Ident(id) if id == "True" => Val::Bool(true),
            Tok::Ident(id) if id == "False" => Val::Bool(false),
            Tok::Open('(') => {
                let mut dims = Vec::new();
                loop {
                    match next("a dimension or ')'")? {
                        Tok::Close(')') => break,
                        Tok::Int(n) => {
                            dims.push(n);
                            match next("',' or ')'")? {
                                Tok::Comma => {}
                                Tok::Close(')') => break,
                                t => return Err(format!("unexpected {t:?} in shape tuple")),
                            }
                        }
                        t => return Err(format!("unexpected {t:?} in shape tuple")),
                    }
                }
                Val::Tuple(dims)
            }
            Tok::Open('[') => return Err("structured dtypes are not supported".into()),
            t => return Err(format!("unsupported value {t:?} for header key {key:?}")),
        };
        map.insert(key, val);
        match next("',' or '}'")? {
            Tok::Comma => {}
            Tok::Close('}') => break,
            t => return Err(format!("unexpected {t:?} after a header value")),
        }
    }
    if i != toks.len() {
        return Err("unexpected text after the header dictionary".into());
    }
    Ok(map)
}

/// Parses a dtype string such as `<f8`, `|S3`, `>i4`.
fn parse_descr(d: &str) -> Result<(Kind, usize, bool), String> {
    let bad = || format!("unsupported dtype {}", quote(d));
    let mut chars = d.chars();
    let (big, rest) = match chars.next() {
        Some('<') | Some('=') | Some('|') => (false, chars.as_str()),
        Some('>') => (true, chars.as_str()),
        _ => (false, d),
    };
    let mut rc = rest.chars();
    let k = rc.next().ok_or_else(bad)?;
    let n: usize = rc.as_str().parse().map_err(|_| bad())?;
    let kind = match (k, n) {
        ('f', 4 | 8) => Kind::Float,
        ('i', 1 | 2 | 4 | 8) => Kind::Int,
        ('u', 1 | 2 | 4 | 8) => Kind::UInt,
        ('b', 1) => Kind::Bool,
        ('S' | 'a', _) => Kind::Bytes,
        ('U', _) => Kind::Unicode,
        _ => return Err(bad()),
    };
    let size = if kind == Kind::Unicode { n.checked_mul(4).ok_or_else(bad)? } else { n };
    Ok((kind, size, big))
}

/// Parses an `.npy` image; `what` names it in errors.
fn parse_npy_bytes<'a>(bytes: &'a [u8], what: &str) -> Result<Npy<'a>, IoError> {
    let err = |msg: String| IoError::invalid(what, msg);
    if bytes.len() < 8 || !bytes.starts_with(NPY_MAGIC) {
        return Err(err("not a .npy array (missing \\x93NUMPY magic)".into()));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let (hlen, start): (usize, usize) = match major {
        1 if bytes.len() >= 10 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        1..=3 => return Err(err("truncated .npy header".into())),
        _ => return Err(err(format!("unsupported .npy format version {major}.{minor}"))),
    };
    let end = start.checked_add(hlen).filter(|&e| e <= bytes.len()).ok_or_else(|| {
        err(format!("truncated .npy header: declares {hlen} bytes, file has {}", bytes.len().saturating_sub(start)))
    })?;
    let header =
        std::str::from_utf8(&bytes[start..end]).map_err(|_| err("the .npy header is not valid text".into()))?;
    let dict = parse_header_dict(header).map_err(|m| err(format!("bad .npy header: {m}")))?;
    let descr = match dict.get("descr") {
        Some(Val::Str(s)) => s.as_str(),
        Some(_) => return Err(err("bad .npy header: 'descr' is not a string".into())),
        None => return Err(err("bad .npy header: no 'descr' key".into())),
    };
    let fortran = match dict.get("fortran_order") {
        Some(Val::Bool(b)) => *b,
        Some(_) => return Err(err("bad .npy header: 'fortran_order' is not True or False".into())),
        None => return Err(err("bad .npy header: no 'fortran_order' key".into())),
    };
    let shape: Vec<usize> = match dict.get("shape") {
        Some(Val::Tuple(t)) => t
            .iter()
            .map(|&n| usize::try_from(n).map_err(|_| err(format!("dimension {n} is too large"))))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(err("bad .npy header: 'shape' is not a tuple".into())),
        None => return Err(err("bad .npy header: no 'shape' key".into())),
    };
    let (kind, size, big_endian) = parse_descr(descr).map_err(err)?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &n| a.checked_mul(n))
        .ok_or_else(|| err(format!("shape {shape:?} is too large")))?;
    let need = count.checked_mul(size).ok_or_else(|| err(format!("shape {shape:?} is too large")))?;
    let data = &bytes[end..];
    if data.len() != need {
        return Err(err(format!("array data has {} bytes; dtype {descr} and shape {shape:?} need {need}", data.len())));
    }
    Ok(Npy { what: what.to_string(), kind, size, big_endian, fortran, shape, data })
}

impl Npy<'_> {
    fn count(&self) -> usize {
        self.data.len().checked_div(self.size).unwrap_or(0)
    }

    /// Element `i` as raw bytes in big-endian order, padded to 8 bytes.
    fn raw(&self, i: usize) -> [u8; 8] {
        let b = &self.data[i * self.size..(i + 1) * self.size];
        let mut out = [0u8; 8];
        let n = self.size.min(8);
        for k in 0..n {
            // out holds the value right-aligned, most significant byte first.
            out[8 - n + k] = if self.big_endian { b[k] } else { b[n - 1 - k] };
        }
        out
    }

    fn get_f64(&self, i: usize) -> f64 {
        let r = self.raw(i);
        let u = u64::from_be_bytes(r);
        match (self.kind, self.size) {
            (Kind::Float, 4) => f32::from_bits(u as u32) as f64,
            (Kind::Float, _) => f64::from_bits(u),
            (Kind::Int, n) => sign_extend(u, n) as f64,
            (Kind::Bool, _) => (u != 0) as u8 as f64,
            _ => u as f64,
        }
    }

    /// Elements as `f64`, in C (row-major) order.
    fn to_f64(&self) -> Result<Vec<f64>, IoError> {
        match self.kind {
            Kind::Bytes | Kind::Unicode => {
                return Err(IoError::invalid(&self.what, "expected a numeric array, found strings"));
            }
            _ => {}
        }
        let v: Vec<f64> = (0..self.count()).map(|i| self.get_f64(i)).collect();
        Ok(self.c_order(v))
    }

    /// Elements as non-negative indices, in C order; floats and negatives are errors.
    fn to_indices(&self) -> Result<Vec<u64>, IoError> {
        if !matches!(self.kind, Kind::Int | Kind::UInt) {
            return Err(IoError::invalid(&self.what, "expected an integer index array"));
        }
        let mut v = Vec::with_capacity(self.count());
        for i in 0..self.count() {
            let u = u64::from_be_bytes(self.raw(i));
            if self.kind == Kind::Int && sign_extend(u, self.size) < 0 {
                return Err(IoError::invalid(
                    &self.what,
                    format!("negative index {} at position {i}", sign_extend(u, self.size)),
                ));
            }
            v.push(u);
        }
        Ok(self.c_order(v))
    }

    /// Reorders a Fortran-ordered element list into C order.
    fn c_order<T: Copy>(&self, v: Vec<T>) -> Vec<T> {
        if !self.fortran || self.shape.len() < 2 || v.is_empty() {
            return v;
        }
        let r = self.shape.len();
        let mut out = Vec::with_capacity(v.len());
        let mut c = vec![0usize; r];
        for _ in 0..v.len() {
            // Fortran flat index: first dimension varies fastest.
            let mut f = 0usize;
            for d in (0..r).rev() {
                f = f * self.shape[d] + c[d];
            }
            out.push(v[f]);
            for d in (0..r).rev() {
                c[d] += 1;
                if c[d] < self.shape[d] {
                    break;
                }
                c[d] = 0;
            }
        }
        out
    }

    /// The single string of a 0-d or 1-element string array.
    fn to_string_scalar(&self) -> Result<String, IoError> {
        if self.count() != 1 {
            return Err(IoError::invalid(
                &self.what,
                format!("expected a single string, found {} elements", self.count()),
            ));
        }
        let s = match self.kind {
            Kind::Bytes => self.data.iter().take_while(|&&b| b != 0).map(|&b| b as char).collect(),
            Kind::Unicode => self
                .data
                .chunks_exact(4)
                .map(|c| {
                    let a = [c[0], c[1], c[2], c[3]];
                    if self.big_endian {
                        u32::from_be_bytes(a)
                    } else {
                        u32::from_le_bytes(a)
                    }
                })
                .take_while(|&u| u != 0)
                .map(|u| char::from_u32(u).unwrap_or(char::REPLACEMENT_CHARACTER))
                .collect(),
            _ => return Err(IoError::invalid(&self.what, "expected a string array")),
        };
        Ok(s)
    }
}

fn sign_extend(u: u64, bytes: usize) -> i64 {
    let bits = 8 * bytes.clamp(1, 8) as u32;
    ((u << (64 - bits)) as i64) >> (64 - bits)
}

/// Checks that every dimension fits a `u32` coordinate.
fn check_shape(shape: &[usize], what: &str) -> Result<(), IoError> {
    if let Some(&n) = shape.iter().find(|&&n| n > u32::MAX as usize) {
        return Err(IoError::invalid(what, format!("dimension {n} is too large (coordinates are 32-bit)")));
    }
    Ok(())
}

/// Dense COO (zeros skipped) from a parsed array.
fn dense_to_coo(a: &Npy) -> Result<Coo, IoError> {
    check_shape(&a.shape, &a.what)?;
    let vals = a.to_f64()?;
    Coo::from_dense(&a.shape, &vals).map_err(|e| IoError::tensor(&a.what, e))
}

/// Reads a dense `.npy` array as COO (zeros are not stored).
pub fn read_npy(path: &Path) -> Result<Coo, IoError> {
    parse_npy(&read_bytes(path)?, &path_name(path))
}

/// Parses an in-memory dense `.npy` array as COO (zeros are not stored); `file_name` is used in
/// error messages.
pub fn parse_npy(bytes: &[u8], file_name: &str) -> Result<Coo, IoError> {
    dense_to_coo(&parse_npy_bytes(bytes, file_name)?)
}

/// Reads a scipy sparse `.npz` (csr, csc or coo), an `.npz` holding one dense array, or a bare
/// `.npy` array, as COO.
pub fn read_npz(path: &Path) -> Result<Coo, IoError> {
    parse_npz(&read_bytes(path)?, &path_name(path))
}

/// Reads one archive member fully, without trusting its declared size for allocation.
fn read_member<R: Read + Seek>(zip: &mut zip::ZipArchive<R>, name: &str, file: &str) -> Result<Vec<u8>, IoError> {
    let f = zip.by_name(name).map_err(|e| IoError::invalid(file, format!("cannot open member {name}: {e}")))?;
    // The declared size is what callers budgeted for ([`expanded_size`]): never read past it,
    // so that a member whose stream inflates beyond its header cannot exhaust memory.
    let declared = f.size();
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut f = f.take(declared.saturating_add(1));
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IoError::invalid(file, format!("cannot read member {name}: {e}"))),
        }
        if out.len() as u64 > declared {
            return Err(IoError::invalid(
                file,
                format!("member {name} inflates past the {declared} bytes its header declares"),
            ));
        }
    }
    Ok(out)
}

/// The bytes reading `path` as a tensor file needs before parsing: for an `.npz` (zip)
/// archive, the sum of its members' declared uncompressed sizes (reading never goes past them);
/// otherwise the file's size. Lets a caller check a memory budget before reading.
pub fn expanded_size(path: &Path) -> Result<u64, IoError> {
    let file = path_name(path);
    let meta = std::fs::metadata(path).map_err(|e| IoError::io(file.clone(), "read", e))?;
    let mut head = [0u8; 4];
    let f = std::fs::File::open(path).map_err(|e| IoError::io(file.clone(), "read", e))?;
    if meta.is_dir() || (&f).read_exact(&mut head).is_err() || !head.starts_with(ZIP_MAGIC) {
        return Ok(if meta.is_dir() { 0 } else { meta.len() });
    }
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f))
        .map_err(|e| IoError::invalid(&file, format!("not a valid .npz (zip) archive: {e}")))?;
    let mut total = meta.len();
    for i in 0..zip.len() {
        let m = zip.by_index_raw(i).map_err(|e| IoError::invalid(&file, format!("cannot open member {i}: {e}")))?;
        total = total.saturating_add(m.size());
    }
    Ok(total)
}

/// Parses an in-memory `.npz` (or `.npy`) image; `file_name` is used in error messages.
pub fn parse_npz(bytes: &[u8], file_name: &str) -> Result<Coo, IoError> {
    let file = file_name;
    if bytes.starts_with(NPY_MAGIC) {
        return parse_npy(bytes, file);
    }
    if !bytes.starts_with(ZIP_MAGIC) {
        return Err(IoError::invalid(file, "not an .npz (zip) archive or .npy array"));
    }
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| IoError::invalid(file, format!("not a valid .npz (zip) archive: {e}")))?;
    // Member names without the .npy suffix, mapped to archive names.
    let members: HashMap<String, String> =
        zip.file_names().map(|n| (n.strip_suffix(".npy").unwrap_or(n).to_string(), n.to_string())).collect();
    let mut load = |key: &str| -> Result<Vec<u8>, IoError> {
        let name = members.get(key).ok_or_else(|| IoError::invalid(file, format!("missing array '{key}'")))?;
        read_member(&mut zip, name, file)
    };
    let label = |key: &str| format!("{file}[{key}]");

    if !members.contains_key("format") {
        if members.len() != 1 {
            return Err(IoError::invalid(
                file,
                format!(
                    "no 'format' array and {} arrays; expected a scipy sparse matrix or a single dense array",
                    members.len()
                ),
            ));
        }
        let key = members.keys().next().cloned().unwrap_or_default();
        let raw = load(&key)?;
        return dense_to_coo(&parse_npy_bytes(&raw, &label(&key))?);
    }

    let raw = load("format")?;
    let format = parse_npy_bytes(&raw, &label("format"))?.to_string_scalar()?;
    let raw = load("shape")?;
    let shape_arr = parse_npy_bytes(&raw, &label("shape"))?;
    if shape_arr.shape.len() > 1 {
        return Err(IoError::invalid(&label("shape"), "expected a 1-d array"));
    }
    let shape: Vec<usize> =
        shape_arr.to_indices()?.into_iter().map(|n| usize::try_from(n).unwrap_or(usize::MAX)).collect();
    check_shape(&shape, &label("shape"))?;
    let raw = load("data")?;
    let data_arr = parse_npy_bytes(&raw, &label("data"))?;
    if data_arr.shape.len() != 1 {
        return Err(IoError::invalid(
            &label("data"),
            format!("expected a 1-d array, found shape {:?}", data_arr.shape),
        ));
    }
    let data = data_arr.to_f64()?;
    let mut index = |key: &str| -> Result<Vec<u64>, IoError> {
        let raw = load(key)?;
        let a = parse_npy_bytes(&raw, &label(key))?;
        if a.shape.len() != 1 {
            return Err(IoError::invalid(&label(key), format!("expected a 1-d array, found shape {:?}", a.shape)));
        }
        a.to_indices()
    };

    match format.as_str() {
        "csr" | "csc" => {
            if shape.len() != 2 {
                return Err(IoError::invalid(&label("shape"), format!("{format} needs 2 dimensions, found {shape:?}")));
            }
            let indptr = index("indptr")?;
            let indices = index("indices")?;
            let (outer, inner) = if format == "csr" { (shape[0], shape[1]) } else { (shape[1], shape[0]) };
            if indptr.len() != outer + 1 {
                return Err(IoError::invalid(
                    &label("indptr"),
                    format!(
                        "has {} entries; expected {} ({} + 1)",
                        indptr.len(),
                        outer + 1,
                        if format == "csr" { "rows" } else { "columns" }
                    ),
                ));
            }
            if indptr[0] != 0 {
                return Err(IoError::invalid(&label("indptr"), format!("starts at {}, not 0", indptr[0])));
            }
            if let Some(p) = indptr.windows(2).position(|w| w[0] > w[1]) {
                return Err(IoError::invalid(&label("indptr"), format!("decreases at position {}", p + 1)));
            }
            let nnz = indptr[outer];
            if nnz != indices.len() as u64 || nnz != data.len() as u64 {
                return Err(IoError::invalid(
                    file,
                    format!("indptr ends at {nnz} but indices has {} and data {} entries", indices.len(), data.len()),
                ));
            }
            let mut coo = Coo::new(shape.clone());
            coo.coords.reserve(2 * data.len());
            coo.vals.reserve(data.len());
            for o in 0..outer {
                for p in indptr[o] as usize..indptr[o + 1] as usize {
                    let i = indices[p];
                    if i >= inner as u64 {
                        return Err(IoError::invalid(
                            &label("indices"),
                            format!("index {i} at position {p} is out of range for dimension of size {inner}"),
                        ));
                    }
                    let (r, c) = if format == "csr" { (o as u32, i as u32) } else { (i as u32, o as u32) };
                    coo.push(&[r, c], data[p]);
                }
            }
            Ok(coo)
        }
        "coo" => {
            let coords: Vec<Vec<u64>> = if members.contains_key("coords") {
                let raw = load("coords")?;
                let a = parse_npy_bytes(&raw, &label("coords"))?;
                let flat = a.to_indices()?;
                let (rank, n) = match a.shape.as_slice() {
                    [r, n] => (*r, *n),
                    _ => {
                        return Err(IoError::invalid(
                            &label("coords"),
                            format!("expected a 2-d (rank, nnz) array, found shape {:?}", a.shape),
                        ))
                    }
                };
                (0..rank).map(|d| flat[d * n..(d + 1) * n].to_vec()).collect()
            } else {
                vec![index("row")?, index("col")?]
            };
            if coords.len() != shape.len() {
                return Err(IoError::invalid(file, format!("{} coordinate arrays for shape {shape:?}", coords.len())));
            }
            let mut coo = Coo::new(shape.clone());
            for (d, c) in coords.iter().enumerate() {
                if c.len() != data.len() {
                    return Err(IoError::invalid(
                        file,
                        format!("coordinate array {d} has {} entries but data has {}", c.len(), data.len()),
                    ));
                }
                if let Some(p) = c.iter().position(|&x| x >= shape[d] as u64) {
                    return Err(IoError::invalid(
                        file,
                        format!(
                            "coordinate {} at position {p} out of range for dimension {d} of size {}",
                            c[p], shape[d]
                        ),
                    ));
                }
            }
            coo.coords.reserve(shape.len() * data.len());
            for (p, &v) in data.iter().enumerate() {
                for c in &coords {
                    coo.coords.push(c[p] as u32);
                }
                coo.vals.push(v);
            }
            Ok(coo)
        }
        other => Err(IoError::invalid(
            &label("format"),
            format!("unsupported sparse format {}; expected csr, csc or coo", quote(other)),
        )),
    }
}

/// An `.npy` image (version 1.0, C order) with a little-endian dtype.
fn encode_npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_str = match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_str}, }}");
    // Like numpy: room for the first dimension to grow to 21 digits, then padding of the whole
    // preamble to a multiple of 64 bytes, ending in a newline.
    if let Some(n) = shape.first() {
        header.push_str(&" ".repeat(21usize.saturating_sub(n.to_string().len())));
    }
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len());
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Writes `(name, npy image)` members as a deflate-compressed archive.
fn write_zip(path: &Path, members: &[(&str, Vec<u8>)]) -> Result<(), IoError> {
    let file = path_name(path);
    let f = std::fs::File::create(path).map_err(|e| IoError::io(&file, "create", e))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(f));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let zerr = |e: zip::result::ZipError| IoError::invalid(&file, format!("cannot write archive: {e}"));
    for (name, bytes) in members {
        zip.start_file(format!("{name}.npy"), opts).map_err(zerr)?;
        zip.write_all(bytes).map_err(|e| IoError::io(&file, "write", e))?;
    }
    let mut w = zip.finish().map_err(zerr)?;
    w.flush().map_err(|e| IoError::io(&file, "write", e))
}

/// Writes a rank-2 tensor as a scipy CSR `.npz` (`scipy.sparse.load_npz` reads it back).
/// Duplicate coordinates are summed; indices are int32 when they fit, else int64.
pub fn write_npz_csr(path: &Path, coo: &Coo) -> Result<(), IoError> {
    let file = path_name(path);
    if coo.rank() != 2 {
        return Err(IoError::invalid(&file, format!("CSR holds matrices, but the tensor has rank {}", coo.rank())));
    }
    let t = Tensor::from_coo(coo, &Format::csr()).map_err(|e| IoError::tensor(&file, e))?;
    let (seg, crd) = match &t.levels[1] {
        LevelData::Compressed { seg, crd } => (seg, crd),
        LevelData::Dense { .. } => return Err(IoError::invalid(&file, "internal error: CSR level is not compressed")),
    };
    let max = coo.shape.iter().copied().max().unwrap_or(0).max(crd.len());
    let wide = max > i32::MAX as usize;
    let ints = |v: &[u32]| -> (String, Vec<u8>) {
        if wide {
            ("<i8".into(), v.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect())
        } else {
            ("<i4".into(), v.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect())
        }
    };
    let (idescr, indices) = ints(crd);
    let (_, indptr) = ints(seg);
    let shape: Vec<u8> = coo.shape.iter().flat_map(|&n| (n as i64).to_le_bytes()).collect();
    let data: Vec<u8> = t.vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_zip(
        path,
        &[
            ("indices", encode_npy(&idescr, &[crd.len()], &indices)),
            ("indptr", encode_npy(&idescr, &[seg.len()], &indptr)),
            ("format", encode_npy("|S3", &[], b"csr")),
            ("shape", encode_npy("<i8", &[2], &shape)),
            ("data", encode_npy("<f8", &[t.vals.len()], &data)),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
    }

    fn b_dense() -> Vec<f64> {
        vec![0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 4.0, 0.0, 5.0]
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("fuseflow-npz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// Builds an in-memory zip of `.npy` members (stored, no compression).
    fn zip_of(members: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (name, bytes) in members {
            zip.start_file(format!("{name}.npy"), opts).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn a_member_inflating_past_its_declared_size_is_refused_and_sizes_are_known_before_reading() {
        let big = encode_npy("<f8", &[4000], &f64s(&vec![0.0; 4000]));
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("x.npy", opts).unwrap();
        zip.write_all(&big).unwrap();
        let good = zip.finish().unwrap().into_inner();
        assert!(good.len() < big.len() / 10, "zeros deflate well");
        let dir = std::env::temp_dir().join(format!("fuseflow-npz-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.npz");
        std::fs::write(&path, &good).unwrap();
        assert_eq!(expanded_size(&path).unwrap(), good.len() as u64 + big.len() as u64);
        assert_eq!(parse_npz(&good, "x.npz").unwrap().shape, vec![4000]);
        // Declare 100 bytes in both headers: reading stops there with one line.
        let mut lying = good.clone();
        let patch = |b: &mut Vec<u8>, sig: &[u8], at: usize| {
            let i = b.windows(4).position(|w| w == sig).unwrap();
            b[i + at..i + at + 4].copy_from_slice(&100u32.to_le_bytes());
        };
        patch(&mut lying, b"PK\x03\x04", 22);
        patch(&mut lying, b"PK\x01\x02", 24);
        std::fs::write(&path, &lying).unwrap();
        assert_eq!(expanded_size(&path).unwrap(), lying.len() as u64 + 100);
        let e = parse_npz(&lying, "x.npz").unwrap_err().to_string();
        assert!(e.starts_with("x.npz") && e.contains("x.npy") && !e.contains('\n'), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn i32s(v: &[i32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn f64s(v: &[f64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Archive members: name (without `.npy`) and `.npy` image.
    type Members = Vec<(&'static str, Vec<u8>)>;

    /// Members of a valid CSR archive for matrix B, to be altered by tests.
    fn csr_members() -> Members {
        vec![
            ("indices", encode_npy("<i4", &[5], &i32s(&[1, 0, 2, 1, 3]))),
            ("indptr", encode_npy("<i4", &[5], &i32s(&[0, 1, 3, 3, 5]))),
            ("format", encode_npy("|S3", &[], b"csr")),
            ("shape", encode_npy("<i8", &[2], &[4i64, 4].iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>())),
            ("data", encode_npy("<f8", &[5], &f64s(&[1.0, 2.0, 3.0, 4.0, 5.0]))),
        ]
    }

    #[test]
    fn scipy_fixtures_read_as_matrix_b() {
        for name in [
            "b_csr_f64_i32.npz",
            "b_csr_f32_i64.npz",
            "b_coo.npz",
            "b_csc_int.npz",
            "b_csr_unicode_format.npz",
            "b_dense.npy",
            "b_dense_fortran.npy",
            "b_dense_be.npy",
            "b_dense_arr0.npz",
        ] {
            let c = read_npz(&fixture(name)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(c.shape, vec![4, 4], "{name}");
            assert_eq!(c.to_dense(), b_dense(), "{name}");
            assert_eq!(c.nnz(), 5, "{name}");
        }
        let c = crate::read_any(&fixture("b_dense.npy")).unwrap();
        assert_eq!(c.to_dense(), b_dense());
        let c = crate::read_any(&fixture("b_coo.npz")).unwrap();
        assert_eq!(c.to_dense(), b_dense());
    }

    #[test]
    fn scipy_nd_coo_fixture() {
        let c = read_npz(&fixture("t3_coo.npz")).unwrap();
        assert_eq!(c.shape, vec![2, 3, 4]);
        assert_eq!(c.coords, vec![0, 2, 3, 1, 0, 1, 1, 2, 0]);
        assert_eq!(c.vals, vec![1.5, 2.5, 3.5]);
    }

    #[test]
    fn csr_round_trip() {
        let p = tmp("rt.npz");
        for coo in [
            crate::random_coo(&[40, 30], 0.1, 1).unwrap(),
            crate::random_coo(&[5, 5], 1.0, 2).unwrap(),
            Coo::new(vec![3, 7]),
            Coo::new(vec![0, 0]),
        ] {
            write_npz_csr(&p, &coo).unwrap();
            let back = read_npz(&p).unwrap();
            assert_eq!(back, coo);
        }
        // Duplicates are summed on write.
        let mut d = Coo::new(vec![2, 2]);
        d.push(&[1, 1], 1.0);
        d.push(&[0, 1], 2.0);
        d.push(&[1, 1], 3.0);
        write_npz_csr(&p, &d).unwrap();
        let back = read_npz(&p).unwrap();
        assert_eq!(back.coords, vec![0, 1, 1, 1]);
        assert_eq!(back.vals, vec![2.0, 4.0]);
    }

    #[test]
    fn written_file_has_scipy_layout() {
        let p = tmp("layout.npz");
        let mut b = Coo::new(vec![4, 4]);
        for (i, j, v) in [(0, 1, 1.0), (1, 0, 2.0), (1, 2, 3.0), (3, 1, 4.0), (3, 3, 5.0)] {
            b.push(&[i, j], v);
        }
        write_npz_csr(&p, &b).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let mut zip = zip::ZipArchive::new(Cursor::new(&bytes[..])).unwrap();
        let names: Vec<String> = zip.file_names().map(String::from).collect();
        assert_eq!(names, vec!["indices.npy", "indptr.npy", "format.npy", "shape.npy", "data.npy"]);
        let fmt = read_member(&mut zip, "format.npy", "x").unwrap();
        // Byte-identical to numpy's own header for a 0-d |S3 array.
        let expect_header = "{'descr': '|S3', 'fortran_order': False, 'shape': (), }";
        assert_eq!(&fmt[10..10 + expect_header.len()], expect_header.as_bytes());
        assert_eq!(fmt.len(), 128 + 3);
        let ip = read_member(&mut zip, "indptr.npy", "x").unwrap();
        let a = parse_npy_bytes(&ip, "x").unwrap();
        assert_eq!(a.to_indices().unwrap(), vec![0, 1, 3, 3, 5]);
        // Same bytes as numpy for the indptr array of the scipy fixture.
        let fx = std::fs::read(fixture("b_csr_f64_i32.npz")).unwrap();
        let mut fz = zip::ZipArchive::new(Cursor::new(&fx[..])).unwrap();
        assert_eq!(read_member(&mut fz, "indptr.npy", "x").unwrap(), ip);
        assert_eq!(read_member(&mut fz, "format.npy", "x").unwrap(), fmt);
    }

    #[test]
    fn header_parser_accepts_numpy_variants() {
        let m = parse_header_dict("{'descr': '<f8', 'fortran_order': False, 'shape': (3L, 4), }").unwrap();
        assert!(matches!(m.get("shape"), Some(Val::Tuple(t)) if t == &vec![3, 4]));
        let m = parse_header_dict("{\"shape\": (), \"descr\": \"|b1\", \"fortran_order\": True}").unwrap();
        assert!(matches!(m.get("fortran_order"), Some(Val::Bool(true))));
        assert!(parse_header_dict("{'descr': [('a', '<f8')], }").unwrap_err().contains("structured"));
    }

    #[test]
    fn dtypes_convert() {
        let v: Vec<u8> = [-3i16, 7].iter().flat_map(|x| x.to_be_bytes()).collect();
        let img = encode_npy(">i2", &[2], &v);
        let a = parse_npy_bytes(&img, "x").unwrap();
        assert_eq!(a.to_f64().unwrap(), vec![-3.0, 7.0]);
        assert!(a.to_indices().unwrap_err().to_string().contains("negative index -3 at position 0"));
        let img = encode_npy("<u1", &[2], &[200, 1]);
        let a = parse_npy_bytes(&img, "x").unwrap();
        assert_eq!(a.to_indices().unwrap(), vec![200, 1]);
        let img = encode_npy("|b1", &[2], &[1, 0]);
        let a = parse_npy_bytes(&img, "x").unwrap();
        assert_eq!(a.to_f64().unwrap(), vec![1.0, 0.0]);
        let img = encode_npy("<f4", &[1], &1.5f32.to_le_bytes());
        let a = parse_npy_bytes(&img, "x").unwrap();
        assert_eq!(a.to_f64().unwrap(), vec![1.5]);
        assert!(a.to_indices().is_err());
        // Fortran order of a 2x3 array.
        let img = encode_npy("<f8", &[2, 3], &f64s(&[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]));
        let a = parse_npy_bytes(&img, "x").unwrap();
        let a = Npy { fortran: true, ..a };
        assert_eq!(a.to_f64().unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    }

    #[test]
    fn dense_npy_round_trip_through_parse() {
        let c = parse_npy(&encode_npy("<f8", &[2, 2], &f64s(&[0.0, 1.0, 2.0, 0.0])), "d.npy").unwrap();
        assert_eq!(c.coords, vec![0, 1, 1, 0]);
        let c = parse_npy(&encode_npy("<f8", &[], &f64s(&[2.5])), "s.npy").unwrap();
        assert_eq!((c.rank(), c.vals.clone()), (0, vec![2.5]));
        let c = parse_npy(&encode_npy("<f8", &[0, 3], &[]), "e.npy").unwrap();
        assert_eq!((c.shape.clone(), c.nnz()), (vec![0, 3], 0));
    }

    fn npz_err(members: Vec<(&str, Vec<u8>)>) -> String {
        let e = parse_npz(&zip_of(&members), "bad.npz").unwrap_err().to_string();
        assert!(e.starts_with("bad.npz"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        e
    }

    fn replace(key: &str, bytes: Vec<u8>) -> Vec<(&'static str, Vec<u8>)> {
        csr_members().into_iter().map(|(k, v)| if k == key { (k, bytes.clone()) } else { (k, v) }).collect()
    }

    #[test]
    fn malformed_npz_is_an_error() {
        // Sanity: the unaltered members read fine.
        assert_eq!(parse_npz(&zip_of(&csr_members()), "ok.npz").unwrap().to_dense(), b_dense());

        let without = |key: &str| csr_members().into_iter().filter(|(k, _)| *k != key).collect::<Vec<_>>();
        let cases: Vec<(Members, &str)> = vec![
            (without("indptr"), "bad.npz: missing array 'indptr'"),
            (without("data"), "bad.npz: missing array 'data'"),
            (without("shape"), "bad.npz: missing array 'shape'"),
            (
                replace("indptr", encode_npy("<i4", &[5], &i32s(&[0, 1, 3, 2, 5]))),
                "bad.npz[indptr]: decreases at position 3",
            ),
            (
                replace("indptr", encode_npy("<i4", &[4], &i32s(&[0, 1, 3, 5]))),
                "bad.npz[indptr]: has 4 entries; expected 5",
            ),
            (replace("indptr", encode_npy("<i4", &[5], &i32s(&[1, 1, 3, 3, 5]))), "bad.npz[indptr]: starts at 1"),
            (
                replace("indptr", encode_npy("<i4", &[5], &i32s(&[0, 1, 3, 3, 6]))),
                "bad.npz: indptr ends at 6 but indices has 5",
            ),
            (
                replace("indices", encode_npy("<i4", &[5], &i32s(&[1, 0, 9, 1, 3]))),
                "bad.npz[indices]: index 9 at position 2",
            ),
            (
                replace("indices", encode_npy("<i4", &[5], &i32s(&[1, 0, -2, 1, 3]))),
                "bad.npz[indices]: negative index -2",
            ),
            (
                replace("indices", encode_npy("<f8", &[5], &f64s(&[1.0; 5]))),
                "bad.npz[indices]: expected an integer index array",
            ),
            (replace("format", encode_npy("|S3", &[], b"bsr")), "bad.npz[format]: unsupported sparse format \"bsr\""),
            (replace("format", encode_npy("<f8", &[], &f64s(&[1.0]))), "bad.npz[format]: expected a string array"),
            (replace("shape", encode_npy("<i8", &[3], &[0u8; 24])), "bad.npz[shape]: csr needs 2 dimensions"),
            (
                replace("data", encode_npy("<f8", &[4], &f64s(&[1.0; 4]))),
                "bad.npz: indptr ends at 5 but indices has 5 and data 4",
            ),
            (replace("data", encode_npy("<f8", &[5], &f64s(&[1.0; 4]))), "bad.npz[data]: array data has 32 bytes"),
            (replace("data", b"\x93NUMPY\x01\x00\xff\xff{".to_vec()), "bad.npz[data]: truncated .npy header"),
            (replace("data", b"\x93NUMPY\x07\x00".to_vec()), "bad.npz[data]: unsupported .npy format version 7.0"),
            (replace("data", encode_npy("<c16", &[5], &[0u8; 80])), "bad.npz[data]: unsupported dtype \"<c16\""),
            (replace("data", encode_npy("|O", &[5], &[0u8; 40])), "bad.npz[data]: unsupported dtype"),
            (replace("data", b"garbage".to_vec()), "bad.npz[data]: not a .npy array"),
            (
                vec![("a", csr_members()[0].1.clone()), ("b", csr_members()[0].1.clone())],
                "bad.npz: no 'format' array and 2 arrays",
            ),
            (vec![], "bad.npz: no 'format' array and 0 arrays"),
        ];
        for (members, want) in cases {
            let e = npz_err(members);
            assert!(e.starts_with(want), "got:  {e}\nwant: {want}...");
        }
        // COO with inconsistent lengths and out-of-range coordinates.
        let coo = |row: &[i32], col: &[i32]| {
            vec![
                ("row", encode_npy("<i4", &[row.len()], &i32s(row))),
                ("col", encode_npy("<i4", &[col.len()], &i32s(col))),
                ("format", encode_npy("|S3", &[], b"coo")),
                ("shape", encode_npy("<i8", &[2], &[2i64, 2].iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>())),
                ("data", encode_npy("<f8", &[2], &f64s(&[1.0, 2.0]))),
            ]
        };
        assert_eq!(parse_npz(&zip_of(&coo(&[0, 1], &[1, 1])), "ok.npz").unwrap().to_dense(), vec![0.0, 1.0, 0.0, 2.0]);
        assert!(npz_err(coo(&[0], &[1, 1])).starts_with("bad.npz: coordinate array 0 has 1 entries but data has 2"));
        assert!(npz_err(coo(&[0, 2], &[1, 1])).starts_with("bad.npz: coordinate 2 at position 1 out of range"));
    }

    #[test]
    fn truncated_and_garbage_files_are_errors() {
        let good = zip_of(&csr_members());
        for cut in [0, 2, 10, 30, good.len() / 2, good.len() - 10, good.len() - 1] {
            let e = parse_npz(&good[..cut], "t.npz").unwrap_err().to_string();
            assert!(e.starts_with("t.npz"), "{e}");
        }
        let e = parse_npz(b"hello world", "g.npz").unwrap_err().to_string();
        assert_eq!(e, "g.npz: not an .npz (zip) archive or .npy array");
        let e = parse_npz(b"PK\x03\x04garbage", "g.npz").unwrap_err().to_string();
        assert!(e.starts_with("g.npz: not a valid .npz (zip) archive"), "{e}");
        let e = read_npz(Path::new("/nonexistent/x.npz")).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/x.npz: cannot read"), "{e}");
        let p = tmp("trunc.npz");
        std::fs::write(&p, &good[..good.len() - 5]).unwrap();
        let e = read_npz(&p).unwrap_err().to_string();
        assert!(e.starts_with(&p.display().to_string()), "{e}");
    }

    #[test]
    fn writer_errors() {
        let e = write_npz_csr(&tmp("r3.npz"), &Coo::new(vec![2, 2, 2])).unwrap_err().to_string();
        assert!(e.contains("r3.npz: CSR holds matrices"), "{e}");
        let mut c = Coo::new(vec![2, 2]);
        c.push(&[0, 3], 1.0);
        assert!(write_npz_csr(&tmp("oor.npz"), &c).is_err());
        let e = write_npz_csr(Path::new("/nonexistent/w.npz"), &Coo::new(vec![1, 1])).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/w.npz: cannot create"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in prop::collection::vec(any::<u8>(), 0..512),
            zip_prefix in any::<bool>(),
        ) {
            let mut b = bytes;
            if zip_prefix {
                b.splice(0..0, b"PK\x03\x04".iter().copied());
            }
            let _ = parse_npz(&b, "fuzz.npz");
            let _ = parse_npy(&b, "fuzz.npy");
        }

        #[test]
        fn corrupted_archives_never_panic(
            pos in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut b = zip_of(&csr_members());
            let p = pos.index(b.len());
            b[p] = byte;
            let c = cut.index(b.len() + 1);
            b.truncate(c.max(p));
            if let Err(e) = parse_npz(&b, "fuzz.npz") {
                prop_assert!(e.to_string().starts_with("fuzz.npz"));
            }
        }

        #[test]
        fn arbitrary_npy_headers_never_panic(
            header in "[{}()\\[\\]':, 0-9a-zA-Z_<>|]{0,80}",
            data in prop::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut b = NPY_MAGIC.to_vec();
            b.extend_from_slice(&[1, 0]);
            b.extend_from_slice(&(header.len() as u16).to_le_bytes());
            b.extend_from_slice(header.as_bytes());
            b.extend_from_slice(&data);
            let _ = parse_npy(&b, "fuzz.npy");
        }

        #[test]
        fn plausible_npy_headers_never_panic(
            descr in "[<>|=]?[fiubSUc]{1}[0-9]{0,2}",
            shape in prop::collection::vec(0usize..5, 0..4),
            fortran in any::<bool>(),
            exact in any::<bool>(),
            data in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let dims: Vec<String> = shape.iter().map(|n| n.to_string()).collect();
            let comma = if shape.len() == 1 { "," } else { "" };
            let header = format!(
                "{{'descr': '{descr}', 'fortran_order': {}, 'shape': ({}{comma}), }}",
                if fortran { "True" } else { "False" },
                dims.join(", ")
            );
            let mut data = data;
            if exact {
                // Make the data length match so that the conversions run.
                if let Ok((_, size, _)) = parse_descr(&descr) {
                    data.resize(size.saturating_mul(shape.iter().product::<usize>()).min(4096), 0x41);
                }
            }
            let mut b = NPY_MAGIC.to_vec();
            b.extend_from_slice(&[1, 0]);
            b.extend_from_slice(&(header.len() as u16).to_le_bytes());
            b.extend_from_slice(header.as_bytes());
            b.extend_from_slice(&data);
            let _ = parse_npy(&b, "fuzz.npy");
            // As members of a sparse archive too.
            let bytes = b.clone();
            for key in ["data", "indices", "indptr", "shape", "format"] {
                let _ = parse_npz(&zip_of(&replace(key, bytes.clone())), "fuzz.npz");
            }
        }
    }
}
