//! Tokens: the unit of data on every stream.

/// One stream token. Compact (16 bytes) and `Copy`, so channels never allocate per token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Token {
    /// A coordinate or a reference.
    Idx(u32),
    /// A value.
    Val(f64),
    /// A stop token `S_level`, closing `level + 1` nesting levels.
    ///
    /// `gap` resolves the SAM encoding ambiguity (sam-semantics.md §2.2): 0 means the stop ends
    /// a fiber of this stream's own level (possibly empty); `g > 0` means it only marks an empty
    /// fiber `g` levels further out (or a fiber removed by a coordinate dropper), so reducers
    /// emit no value for it and writers record no segment. It is invisible to SAM semantics:
    /// conformance comparisons ignore it.
    Stop {
        /// Stop level.
        level: u8,
        /// Levels between this stream and the level whose fiber the stop really closes.
        gap: u8,
    },
    /// The empty token `N`.
    Empty,
    /// The done token `D`.
    Done,
    /// A repeat signal `R` (only on repeat-signal streams; their `S` is `Stop`).
    Rep,
    /// A value that is a dense tile of a blocked run: an id into the run's
    /// [`crate::tile::TileArena`] (never a heap allocation of its own).
    Tile(u32),
}

impl Token {
    /// A stop of this level that ends a fiber of the stream's own level.
    pub fn stop(level: u8) -> Token {
        Token::Stop { level, gap: 0 }
    }

    /// Whether the token is a stop.
    pub fn is_stop(self) -> bool {
        matches!(self, Token::Stop { .. })
    }

    /// SAM-level equality: like `==` but ignoring the stop `gap` annotation, and comparing
    /// values numerically.
    pub fn sam_eq(self, other: Token) -> bool {
        match (self, other) {
            (Token::Stop { level: a, .. }, Token::Stop { level: b, .. }) => a == b,
            (Token::Val(a), Token::Val(b)) => a == b || (a.is_nan() && b.is_nan()),
            (Token::Val(a), Token::Idx(b)) | (Token::Idx(b), Token::Val(a)) => a == b as f64,
            (a, b) => a == b,
        }
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Idx(i) => write!(f, "{i}"),
            Token::Val(v) => write!(f, "{v}"),
            Token::Stop { level, gap: 0 } => write!(f, "S{level}"),
            Token::Stop { level, gap } => write!(f, "S{level}'{gap}"),
            Token::Empty => write!(f, "N"),
            Token::Done => write!(f, "D"),
            Token::Rep => write!(f, "R"),
            Token::Tile(t) => write!(f, "T{t}"),
        }
    }
}
