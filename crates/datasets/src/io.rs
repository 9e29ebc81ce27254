//! File helpers shared by the loaders: reading, transparent gzip, and names for messages.

use std::io::Read;
use std::path::Path;

use crate::DatasetError;

/// The two bytes every gzip member starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Display form of a path for error messages.
pub(crate) fn path_name(path: &Path) -> String {
    path.display().to_string()
}

/// Reads a whole file as bytes, naming the file on failure.
pub(crate) fn read_raw(path: &Path) -> Result<Vec<u8>, DatasetError> {
    std::fs::read(path).map_err(|e| DatasetError::io(&path_name(path), "read", e))
}

/// Reads a whole file, decompressing it if it is gzip (detected by its magic bytes, whatever
/// the extension).
pub(crate) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DatasetError> {
    let raw = read_raw(path)?;
    gunzip_if_needed(raw, &path_name(path))
}

/// Decompresses `raw` if it starts with the gzip magic, else returns it unchanged.
pub(crate) fn gunzip_if_needed(raw: Vec<u8>, file: &str) -> Result<Vec<u8>, DatasetError> {
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4));
    flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(|e| {
        DatasetError::io(file, "decompress", std::io::Error::new(e.kind(), format!("invalid gzip data: {e}")))
    })?;
    Ok(out)
}

/// Reads only the first line of a (possibly gzip-compressed) file, without decompressing the
/// rest. Returns `None` for an empty file.
pub(crate) fn first_line(path: &Path) -> Result<Option<String>, DatasetError> {
    let file = path_name(path);
    let f = std::fs::File::open(path).map_err(|e| DatasetError::io(&file, "read", e))?;
    let mut head = [0u8; 2];
    let mut reader = std::io::BufReader::new(f);
    let n = read_up_to(&mut reader, &mut head).map_err(|e| DatasetError::io(&file, "read", e))?;
    let prefix = std::io::Cursor::new(head[..n].to_vec()).chain(reader);
    let mut line = Vec::new();
    let res = if head[..n] == GZIP_MAGIC {
        take_line(flate2::read::MultiGzDecoder::new(prefix), &mut line)
    } else {
        take_line(prefix, &mut line)
    };
    res.map_err(|e| DatasetError::io(&file, "read", e))?;
    if line.is_empty() {
        return Ok(None);
    }
    let text = String::from_utf8(line).map_err(|_| DatasetError::parse(&file, 1, "invalid UTF-8"))?;
    Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
}

/// Fills `buf` as far as the reader allows; returns the number of bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Appends bytes from `r` to `out` up to and including the first newline (at most 16 MiB).
fn take_line(r: impl Read, out: &mut Vec<u8>) -> std::io::Result<()> {
    const MAX_LINE: u64 = 16 << 20;
    let mut r = std::io::BufReader::new(r.take(MAX_LINE));
    std::io::BufRead::read_until(&mut r, b'\n', out)?;
    Ok(())
}

/// Iterates over the lines of `bytes` with their 1-based numbers; a trailing `\r` is removed.
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = bytes.is_empty();
    body.split(|&b| b == b'\n')
        .take(if empty { 0 } else { usize::MAX })
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix(b"\r").unwrap_or(l)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_and_trimmed() {
        let v: Vec<_> = lines(b"a\r\nb\n\nc").collect();
        assert_eq!(v, vec![(1, &b"a"[..]), (2, &b"b"[..]), (3, &b""[..]), (4, &b"c"[..])]);
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"x\n").count(), 1);
    }

    #[test]
    fn bad_gzip_is_an_error() {
        let e = gunzip_if_needed(vec![0x1f, 0x8b, 0, 1, 2], "f.gz").unwrap_err();
        assert!(e.to_string().starts_with("f.gz: cannot decompress"), "{e}");
        assert_eq!(gunzip_if_needed(b"plain".to_vec(), "f").unwrap(), b"plain");
    }
}
