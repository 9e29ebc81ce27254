//! Splits one program line into tokens. Programs are line-oriented: every declaration,
//! statement, `param` or `fuse` line is tokenized on its own, and `#` starts a comment.

use crate::ast::Span;
use crate::error::IrError;

/// A token kind.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// Identifier: `[A-Za-z_][A-Za-z0-9_]*`.
    Ident(String),
    /// Numeric literal, kept as written (`2`, `0.5`, `1e-5`).
    Num(String),
    /// String literal with escapes resolved.
    Str(String),
    /// One punctuation character: `[ ] ( ) , = + - * /`.
    Sym(char),
}

impl Tok {
    /// How the token is described in error messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Num(s) => format!("number {s}"),
            Tok::Str(s) => format!("string {s:?}"),
            Tok::Sym(c) => format!("`{c}`"),
        }
    }
}

/// A token and its 1-based column.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub col: u32,
}

/// Tokenizes one line (without its newline). Returns the tokens and the column just past the
/// last character before any comment (for "unexpected end of line" errors).
pub(crate) fn lex_line(file: &str, line_no: u32, text: &str) -> Result<(Vec<Token>, u32), IrError> {
    let chars: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0usize;
    let col = |i: usize| u32::try_from(i + 1).unwrap_or(u32::MAX);
    let err = |i: usize, msg: String| IrError::at(file, Span { line: line_no, col: col(i) }, msg);
    let mut end = 0usize;
    while i < chars.len() {
        let c = chars[i];
        if c == '#' {
            break;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            toks.push(Token { tok: Tok::Ident(chars[start..i].iter().collect()), col: col(start) });
        } else if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i < chars.len() && chars[i] == '.' {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    while j < chars.len() && chars[j].is_ascii_digit() {
                        j += 1;
                    }
                    i = j;
                }
            }
            toks.push(Token { tok: Tok::Num(chars[start..i].iter().collect()), col: col(start) });
        } else if c == '"' {
            i += 1;
            let mut s = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(err(start, "unterminated string literal".to_string())),
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => match chars.get(i + 1) {
                        Some(&e @ ('"' | '\\')) => {
                            s.push(e);
                            i += 2;
                        }
                        _ => return Err(err(i, "unknown escape in string literal (only \\\" and \\\\)".to_string())),
                    },
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            toks.push(Token { tok: Tok::Str(s), col: col(start) });
        } else if "[](),=+-*/:".contains(c) {
            i += 1;
            toks.push(Token { tok: Tok::Sym(c), col: col(start) });
        } else {
            return Err(err(i, format!("unexpected character {c:?}")));
        }
        end = i;
    }
    Ok((toks, col(end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Tok> {
        lex_line("f", 1, s).unwrap().0.into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn numbers_identifiers_and_comments() {
        assert_eq!(
            kinds("x_1 = 2 + 0.5*1e-5 # comment (ignored"),
            vec![
                Tok::Ident("x_1".into()),
                Tok::Sym('='),
                Tok::Num("2".into()),
                Tok::Sym('+'),
                Tok::Num("0.5".into()),
                Tok::Sym('*'),
                Tok::Num("1e-5".into()),
            ]
        );
        assert_eq!(kinds("0-3"), vec![Tok::Num("0".into()), Tok::Sym('-'), Tok::Num("3".into())]);
        assert_eq!(kinds("3e"), vec![Tok::Num("3".into()), Tok::Ident("e".into())]);
    }

    #[test]
    fn strings_keep_hash_and_escapes() {
        assert_eq!(kinds(r#"file("a#b\".mtx")"#)[2], Tok::Str("a#b\".mtx".into()));
        let e = lex_line("f", 4, "file(\"abc").unwrap_err();
        assert_eq!(e.to_string(), "f:4:6: unterminated string literal");
    }

    #[test]
    fn bad_character_reports_column() {
        let e = lex_line("f", 2, "X(i) = A(i) % 2").unwrap_err();
        assert_eq!(e.to_string(), "f:2:13: unexpected character '%'");
    }
}
