//! Tokens of the predictive query language, with 1-based character positions.

use super::error::PqlError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// An identifier or key word. `value` is folded to lower case unless `quoted`.
    Ident {
        value: String,
        quoted: bool,
    },
    /// A numeric literal exactly as written (digits, optional fraction and exponent).
    Number(String),
    /// A 'string' literal with '' unescaped.
    Str(String),
    LParen,
    RParen,
    Comma,
    Dot,
    Star,
    Minus,
    Plus,
    Arrow,
    Op(&'static str),
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    /// 1-based character position of the token's first character.
    pub pos: usize,
}

impl Token {
    /// The key word this token spells (lower case), if it is an unquoted identifier.
    pub fn keyword(&self) -> Option<&str> {
        match &self.tok {
            Tok::Ident {
                value,
                quoted: false,
            } => Some(value.as_str()),
            _ => None,
        }
    }

    pub fn is_kw(&self, kw: &str) -> bool {
        self.keyword() == Some(kw)
    }

    /// How the token reads in a message.
    pub fn describe(&self) -> String {
        match &self.tok {
            Tok::Ident {
                value,
                quoted: true,
            } => format!("\"{value}\""),
            Tok::Ident { value, .. } => format!("\"{value}\""),
            Tok::Number(n) => n.clone(),
            Tok::Str(s) => format!("'{s}'"),
            Tok::LParen => "'('".into(),
            Tok::RParen => "')'".into(),
            Tok::Comma => "','".into(),
            Tok::Dot => "'.'".into(),
            Tok::Star => "'*'".into(),
            Tok::Minus => "'-'".into(),
            Tok::Plus => "'+'".into(),
            Tok::Arrow => "'->'".into(),
            Tok::Op(o) => format!("'{o}'"),
            Tok::Eof => "end of input".into(),
        }
    }
}

/// Splits `input` into tokens; the last one is always [`Tok::Eof`].
pub fn lex(input: &str) -> Result<Vec<Token>, PqlError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        // SQL comments: -- to end of line.
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let (tok, next) = token_at(&chars, i)?;
        out.push(Token { tok, pos: i + 1 });
        i = next;
    }
    out.push(Token {
        tok: Tok::Eof,
        pos: chars.len() + 1,
    });
    Ok(out)
}

/// The token that starts at `chars[i]` (neither white space nor a comment) and the index
/// just after it.
fn token_at(chars: &[char], i: usize) -> Result<(Tok, usize), PqlError> {
    let pos = i + 1;
    let next = chars.get(i + 1).copied();
    Ok(match chars[i] {
        '(' => (Tok::LParen, i + 1),
        ')' => (Tok::RParen, i + 1),
        ',' => (Tok::Comma, i + 1),
        '*' => (Tok::Star, i + 1),
        '+' => (Tok::Plus, i + 1),
        '-' if next == Some('>') => (Tok::Arrow, i + 2),
        '-' => (Tok::Minus, i + 1),
        '=' => (Tok::Op("="), i + 1),
        '!' if next == Some('=') => (Tok::Op("!="), i + 2),
        '<' => match next {
            Some('=') => (Tok::Op("<="), i + 2),
            Some('>') => (Tok::Op("!="), i + 2),
            _ => (Tok::Op("<"), i + 1),
        },
        '>' if next == Some('=') => (Tok::Op(">="), i + 2),
        '>' => (Tok::Op(">"), i + 1),
        '.' if next.is_some_and(|d| d.is_ascii_digit()) => {
            let (n, j) = number(chars, i);
            (Tok::Number(n), j)
        }
        '.' => (Tok::Dot, i + 1),
        '\'' => {
            let (s, j) = quoted(chars, i, "unterminated quoted string")?;
            (Tok::Str(s), j)
        }
        '"' => {
            let (s, j) = quoted(chars, i, "unterminated quoted identifier")?;
            if s.is_empty() {
                return Err(PqlError::syntax(pos, "zero-length delimited identifier"));
            }
            let tok = Tok::Ident {
                value: s,
                quoted: true,
            };
            (tok, j)
        }
        d if d.is_ascii_digit() => {
            let (n, j) = number(chars, i);
            (Tok::Number(n), j)
        }
        a if a.is_alphabetic() || a == '_' => {
            let mut j = i;
            while j < chars.len()
                && (chars[j].is_alphanumeric() || chars[j] == '_' || chars[j] == '$')
            {
                j += 1;
            }
            // PostgreSQL folds only ASCII letters of unquoted identifiers.
            let value: String = chars[i..j].iter().map(|c| c.to_ascii_lowercase()).collect();
            let tok = Tok::Ident {
                value,
                quoted: false,
            };
            (tok, j)
        }
        other => {
            return Err(PqlError::syntax(
                pos,
                format!("unexpected character '{other}'"),
            ));
        }
    })
}

/// The text between the quote at `chars[start]` and its closing twin (a doubled quote
/// stands for one), and the index after the closing quote. Strings and quoted identifiers
/// share the rule, with `'` and `"`.
fn quoted(chars: &[char], start: usize, unterminated: &str) -> Result<(String, usize), PqlError> {
    let q = chars[start];
    let mut s = String::new();
    let mut j = start + 1;
    loop {
        match chars.get(j) {
            None => return Err(PqlError::syntax(start + 1, unterminated)),
            Some(&c) if c == q && chars.get(j + 1) == Some(&q) => {
                s.push(q);
                j += 2;
            }
            Some(&c) if c == q => break,
            Some(&ch) => {
                s.push(ch);
                j += 1;
            }
        }
    }
    Ok((s, j + 1))
}

fn number(chars: &[char], start: usize) -> (String, usize) {
    let mut j = start;
    while j < chars.len() && chars[j].is_ascii_digit() {
        j += 1;
    }
    if j < chars.len() && chars[j] == '.' {
        j += 1;
        while j < chars.len() && chars[j].is_ascii_digit() {
            j += 1;
        }
    }
    if j < chars.len() && (chars[j] == 'e' || chars[j] == 'E') {
        let mut k = j + 1;
        if k < chars.len() && (chars[k] == '+' || chars[k] == '-') {
            k += 1;
        }
        if k < chars.len() && chars[k].is_ascii_digit() {
            while k < chars.len() && chars[k].is_ascii_digit() {
                k += 1;
            }
            j = k;
        }
    }
    (chars[start..j].iter().collect(), j)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn folds_unquoted_keeps_quoted() {
        assert_eq!(
            toks("Sales.\"Order Items\""),
            vec![
                Tok::Ident {
                    value: "sales".into(),
                    quoted: false
                },
                Tok::Dot,
                Tok::Ident {
                    value: "Order Items".into(),
                    quoted: true
                },
                Tok::Eof
            ]
        );
        assert_eq!(
            toks("\"a\"\"b\""),
            vec![
                Tok::Ident {
                    value: "a\"b".into(),
                    quoted: true
                },
                Tok::Eof
            ]
        );
    }

    #[test]
    fn operators_numbers_strings_positions() {
        assert_eq!(
            toks("<> != <= >= < > = -> - 1.5 'it''s' 2e3"),
            vec![
                Tok::Op("!="),
                Tok::Op("!="),
                Tok::Op("<="),
                Tok::Op(">="),
                Tok::Op("<"),
                Tok::Op(">"),
                Tok::Op("="),
                Tok::Arrow,
                Tok::Minus,
                Tok::Number("1.5".into()),
                Tok::Str("it's".into()),
                Tok::Number("2e3".into()),
                Tok::Eof
            ]
        );
        let t = lex("ab  cd -- comment\n é").unwrap();
        assert_eq!(t[1].pos, 5);
        // Positions count characters, not bytes.
        let t = lex("'é' x").unwrap();
        assert_eq!(t[1].pos, 5);
    }

    #[test]
    fn lexical_errors() {
        let e = lex("x 'abc").unwrap_err();
        assert_eq!((e.sqlstate, e.position), ("42601", Some(3)));
        let e = lex("a ; b").unwrap_err();
        assert_eq!(e.position, Some(3));
        assert!(lex("\"\"").is_err());
    }
}
