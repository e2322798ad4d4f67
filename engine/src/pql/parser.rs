//! Recursive-descent parser: query text → [`Query`].

use super::ast::*;
use super::error::{sqlstate, PqlError};
use super::lexer::{lex, Tok, Token};

pub fn parse(input: &str) -> Result<Query, PqlError> {
    let toks = lex(input)?;
    let mut p = Parser {
        toks,
        i: 0,
        depth: 0,
    };
    p.query()
}

struct Parser {
    toks: Vec<Token>,
    i: usize,
    /// Nesting of conditions being parsed (parentheses, NOT, aggregates in conditions).
    depth: usize,
}

/// Conditions nest this deep at most: a backend's stack is finite, and no real query nests
/// further.
const MAX_DEPTH: usize = 64;

const AGG_NAMES: &str =
    "COUNT, SUM, AVG, MIN, MAX, COUNT_DISTINCT, FIRST, LAST, EXISTS, LIST_DISTINCT";

impl Parser {
    fn peek(&self) -> &Token {
        &self.toks[self.i]
    }

    fn peek_at(&self, n: usize) -> &Token {
        &self.toks[(self.i + n).min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let t = self.toks[self.i].clone();
        if self.i + 1 < self.toks.len() {
            self.i += 1;
        }
        t
    }

    fn too_deep(&self) -> PqlError {
        PqlError::new(
            sqlstate::STATEMENT_TOO_COMPLEX,
            format!("condition nested more than {MAX_DEPTH} levels deep"),
        )
        .at(self.peek().pos)
        .hint("Simplify the condition.")
    }

    fn err(&self, expected: &str) -> PqlError {
        let t = self.peek();
        PqlError::syntax(
            t.pos,
            format!("expected {expected}, found {}", t.describe()),
        )
    }

    fn expect_kw(&mut self, kw: &str, what: &str) -> Result<Token, PqlError> {
        if self.peek().is_kw(kw) {
            Ok(self.bump())
        } else {
            Err(self.err(what))
        }
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<Token, PqlError> {
        if self.peek().tok == tok {
            Ok(self.bump())
        } else {
            Err(self.err(what))
        }
    }

    fn query(&mut self) -> Result<Query, PqlError> {
        self.expect_kw("predict", "PREDICT")?;
        let target = self.target()?;
        self.expect_kw("for", "FOR EACH")?;
        self.expect_kw("each", "EACH after FOR")?;
        let entity = self.qname()?;
        if entity.star {
            return Err(PqlError::syntax(
                entity.pos,
                "expected <table>.<primary key column> after FOR EACH",
            ));
        }
        let mut filter = None;
        let mut assuming = None;
        if self.peek().is_kw("where") {
            self.bump();
            filter = Some(self.cond()?);
        }
        if self.peek().is_kw("assuming") {
            self.bump();
            assuming = Some(self.cond()?);
        }
        if self.peek().tok != Tok::Eof {
            let what = match (filter.is_some(), assuming.is_some()) {
                (false, false) => "WHERE, ASSUMING or end of query",
                (true, false) => "AND, OR, ASSUMING or end of query",
                _ => "AND, OR or end of query",
            };
            return Err(self.err(what));
        }
        Ok(Query {
            target,
            entity,
            filter,
            assuming,
        })
    }

    fn target(&mut self) -> Result<TargetAst, PqlError> {
        let t = self.peek().clone();
        if let Tok::Ident { .. } = &t.tok {
            if self.peek_at(1).tok == Tok::LParen {
                let call = self.agg_call()?;
                if call.agg == Agg::ListDistinct {
                    self.expect_kw("rank", "RANK TOP <k> after LIST_DISTINCT(...)")?;
                    self.expect_kw("top", "TOP after RANK")?;
                    let kt = self.bump();
                    let k = match &kt.tok {
                        Tok::Number(n) => n.parse::<u32>().ok().filter(|k| *k > 0),
                        _ => None,
                    };
                    let k = k.ok_or_else(|| {
                        PqlError::syntax(
                            kt.pos,
                            format!(
                                "expected a positive whole number after TOP, found {}",
                                kt.describe()
                            ),
                        )
                    })?;
                    return Ok(TargetAst::ListDistinct { call, k });
                }
                let cmp = if let Tok::Op(op) = self.peek().tok {
                    let pos = self.bump().pos;
                    let lit = self.literal("a literal after the comparison operator")?;
                    Some((CmpOp::from_op(op).expect("lexer operator"), lit, pos))
                } else {
                    None
                };
                return Ok(TargetAst::Agg { call, cmp });
            }
            let q = self.qname()?;
            if q.star {
                return Err(PqlError::syntax(
                    q.pos,
                    "expected an aggregate or a column of the entity table after PREDICT",
                ));
            }
            return Ok(TargetAst::Static(q));
        }
        Err(self.err("an aggregate or a column after PREDICT"))
    }

    fn literal(&mut self, what: &str) -> Result<Literal, PqlError> {
        match self.operand_literal()? {
            Some((l, _)) => Ok(l),
            None => Err(self.err(what)),
        }
    }

    /// A literal at the cursor, if there is one.
    fn operand_literal(&mut self) -> Result<Option<(Literal, usize)>, PqlError> {
        let t = self.peek().clone();
        let lit = match &t.tok {
            Tok::Number(n) => Literal::Number(n.clone()),
            Tok::Str(s) => Literal::String(s.clone()),
            Tok::Minus | Tok::Plus => {
                let sign = if t.tok == Tok::Minus { "-" } else { "" };
                match &self.peek_at(1).tok {
                    Tok::Number(n) => {
                        let n = format!("{sign}{n}");
                        self.bump();
                        self.bump();
                        return Ok(Some((Literal::Number(n), t.pos)));
                    }
                    _ => {
                        self.bump();
                        return Err(self.err("a number after the sign"));
                    }
                }
            }
            Tok::Ident {
                quoted: false,
                value,
            } if value == "true" => Literal::Boolean(true),
            Tok::Ident {
                quoted: false,
                value,
            } if value == "false" => Literal::Boolean(false),
            Tok::Ident {
                quoted: false,
                value,
            } if value == "null" => Literal::Null,
            _ => return Ok(None),
        };
        self.bump();
        Ok(Some((lit, t.pos)))
    }

    fn name(&mut self, what: &str) -> Result<Name, PqlError> {
        let t = self.peek().clone();
        match t.tok {
            Tok::Ident { value, quoted } => {
                self.bump();
                Ok(Name {
                    value,
                    quoted,
                    pos: t.pos,
                })
            }
            _ => Err(self.err(what)),
        }
    }

    /// `name(.name)*` optionally ending in `.*`.
    fn qname(&mut self) -> Result<QName, PqlError> {
        let first = self.name("a name")?;
        let pos = first.pos;
        let mut parts = vec![first];
        let mut star = false;
        while self.peek().tok == Tok::Dot {
            self.bump();
            if self.peek().tok == Tok::Star {
                self.bump();
                star = true;
                break;
            }
            parts.push(self.name("a name or '*' after '.'")?);
        }
        if parts.len() > 3 || (star && parts.len() > 2) {
            return Err(PqlError::syntax(
                pos,
                "improper qualified name (too many dotted names)",
            ));
        }
        Ok(QName { parts, star, pos })
    }

    fn agg_call(&mut self) -> Result<AggCall, PqlError> {
        let nt = self.bump();
        let name = match &nt.tok {
            Tok::Ident { value, .. } => value.clone(),
            _ => unreachable!("checked by caller"),
        };
        let agg = match (&nt.tok, Agg::from_name(&name)) {
            (Tok::Ident { quoted: false, .. }, Some(a)) => a,
            _ => {
                return Err(PqlError::new(
                    sqlstate::UNDEFINED_FUNCTION,
                    format!("aggregate {} does not exist", name),
                )
                .at(nt.pos)
                .hint(format!("PQL aggregates are {AGG_NAMES}.")))
            }
        };
        let fname = agg.name();
        self.expect(Tok::LParen, &format!("'(' after {fname}"))?;
        let arg = self.qname()?;
        let mut via = Vec::new();
        let mut filter = None;
        loop {
            if self.peek().is_kw("via") && via.is_empty() {
                self.bump();
                via.push(self.qname()?);
                while self.peek().tok == Tok::Arrow {
                    self.bump();
                    via.push(self.qname()?);
                }
            } else if self.peek().is_kw("where") && filter.is_none() {
                self.bump();
                filter = Some(self.cond()?);
            } else {
                break;
            }
        }
        self.expect(
            Tok::Comma,
            &format!("',' after the {fname} argument (then start, end, unit)"),
        )?;
        let window_pos = self.peek().pos;
        let start = self.window_bound("the window start (a whole number)")?;
        self.expect(Tok::Comma, "',' after start")?;
        let end = self.window_bound("the window end (a whole number)")?;
        self.expect(Tok::Comma, "',' after end")?;
        let ut = self.peek().clone();
        let unit = match ut.keyword().and_then(Unit::from_name) {
            Some(u) => u,
            None => return Err(self.err("a unit (hours, days, weeks or months)")),
        };
        self.bump();
        self.expect(Tok::RParen, "')' after the unit")?;
        Ok(AggCall {
            agg,
            pos: nt.pos,
            arg,
            via,
            filter,
            start,
            end,
            unit,
            window_pos,
        })
    }

    fn window_bound(&mut self, what: &str) -> Result<i64, PqlError> {
        let t = self.peek().clone();
        let (neg, nt) = match t.tok {
            Tok::Minus => (true, self.peek_at(1).clone()),
            Tok::Plus => (false, self.peek_at(1).clone()),
            _ => (false, t.clone()),
        };
        let Tok::Number(n) = &nt.tok else {
            if nt.pos != t.pos {
                self.bump();
            }
            return Err(self.err(what));
        };
        let v: i64 = n.parse().map_err(|_| {
            PqlError::syntax(
                nt.pos,
                format!("expected {what}, found {n}: window bounds are whole numbers of units"),
            )
        })?;
        if nt.pos != t.pos {
            self.bump();
        }
        self.bump();
        Ok(if neg { -v } else { v })
    }

    fn cond(&mut self) -> Result<Cond, PqlError> {
        self.depth += 1;
        let r = self.cond_inner();
        self.depth -= 1;
        r
    }

    fn cond_inner(&mut self) -> Result<Cond, PqlError> {
        if self.depth > MAX_DEPTH {
            return Err(self.too_deep());
        }
        let mut left = self.and_cond()?;
        while self.peek().is_kw("or") {
            self.bump();
            let right = self.and_cond()?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_cond(&mut self) -> Result<Cond, PqlError> {
        let mut left = self.not_cond()?;
        while self.peek().is_kw("and") {
            self.bump();
            let right = self.not_cond()?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not_cond(&mut self) -> Result<Cond, PqlError> {
        if self.peek().is_kw("not") {
            self.bump();
            self.depth += 1;
            let inner = if self.depth > MAX_DEPTH {
                Err(self.too_deep())
            } else {
                self.not_cond()
            };
            self.depth -= 1;
            return Ok(Cond::Not(Box::new(inner?)));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Cond, PqlError> {
        if self.peek().tok == Tok::LParen {
            self.bump();
            let c = self.cond()?;
            self.expect(Tok::RParen, "')' or a boolean operator")?;
            return Ok(c);
        }
        let left = self.operand()?;
        if let Tok::Op(op) = self.peek().tok {
            let pos = self.bump().pos;
            let right = self.operand()?;
            return Ok(Cond::Cmp {
                op: CmpOp::from_op(op).expect("lexer operator"),
                left,
                right,
                pos,
            });
        }
        if self.peek().is_kw("is") {
            self.bump();
            let negated = if self.peek().is_kw("not") {
                self.bump();
                true
            } else {
                false
            };
            self.expect_kw("null", "NULL after IS [NOT]")?;
            return Ok(Cond::IsNull {
                operand: left,
                negated,
            });
        }
        Ok(Cond::Truth(left))
    }

    fn operand(&mut self) -> Result<Operand, PqlError> {
        if let Some((l, pos)) = self.operand_literal()? {
            return Ok(Operand::Literal(l, pos));
        }
        match &self.peek().tok {
            Tok::Ident { .. } if self.peek_at(1).tok == Tok::LParen => {
                let call = self.agg_call()?;
                if call.agg == Agg::ListDistinct {
                    return Err(PqlError::new(
                        sqlstate::FEATURE_NOT_SUPPORTED,
                        "LIST_DISTINCT can only be the target of a query",
                    )
                    .at(call.pos));
                }
                Ok(Operand::Agg(Box::new(call)))
            }
            Tok::Ident { .. } => {
                let q = self.qname()?;
                if q.star {
                    return Err(PqlError::syntax(q.pos, "expected a column, found table.*"));
                }
                Ok(Operand::Column(q))
            }
            _ => Err(self.err("a column, a literal or an aggregate")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(q: &str) -> Query {
        parse(q).unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    fn err(q: &str) -> PqlError {
        parse(q).expect_err(q)
    }

    #[test]
    fn aggregate_target_with_comparison() {
        let q = ok(
            "PREDICT COUNT(results.* WHERE results.status_id != 1, 0, 30, days) > 0 \
                    FOR EACH drivers.driver_id",
        );
        let TargetAst::Agg { call, cmp } = q.target else {
            panic!()
        };
        assert_eq!(call.agg, Agg::Count);
        assert!(call.arg.star);
        assert_eq!(call.arg.parts[0].value, "results");
        assert_eq!((call.start, call.end, call.unit), (0, 30, Unit::Days));
        assert!(matches!(call.filter, Some(Cond::Cmp { op: CmpOp::Ne, .. })));
        assert_eq!(cmp.unwrap().0, CmpOp::Gt);
        assert_eq!(q.entity.parts.len(), 2);
    }

    #[test]
    fn every_aggregate_unit_and_operator() {
        for agg in [
            "count",
            "SUM",
            "Avg",
            "min",
            "max",
            "count_distinct",
            "first",
            "last",
            "exists",
        ] {
            for unit in ["hours", "DAYS", "weeks", "months", "day"] {
                for op in ["=", "!=", "<>", "<", "<=", ">", ">="] {
                    ok(&format!(
                        "predict {agg}(t.x, 0, 1, {unit}) {op} 1 for each e.id"
                    ));
                }
            }
        }
        let q = ok("PREDICT AVG(results.position_order, 0, 60, days) FOR EACH drivers.driver_id");
        assert!(matches!(q.target, TargetAst::Agg { cmp: None, .. }));
    }

    #[test]
    fn static_and_list_distinct_targets() {
        let q = ok("PREDICT drivers.nationality FOR EACH drivers.driver_id");
        assert!(matches!(q.target, TargetAst::Static(_)));
        let q = ok(
            "PREDICT LIST_DISTINCT(orders.product_id, 0, 7, days) RANK TOP 12 \
                    FOR EACH customers.id",
        );
        let TargetAst::ListDistinct { k, call } = q.target else {
            panic!()
        };
        assert_eq!((k, call.agg), (12, Agg::ListDistinct));
    }

    #[test]
    fn entity_filter_and_assuming() {
        let q = ok("PREDICT COUNT(results.*, 0, 30, days) FOR EACH drivers.driver_id \
                    WHERE COUNT(results.*, -365, 0, days) > 0 AND NOT drivers.nationality = 'British' \
                    OR (drivers.dob IS NOT NULL) \
                    ASSUMING COUNT(results.*, 0, 30, days) > 0");
        let Some(Cond::Or(l, r)) = q.filter else {
            panic!()
        };
        assert!(matches!(*l, Cond::And(..)));
        assert!(matches!(*r, Cond::IsNull { negated: true, .. }));
        assert!(q.assuming.is_some());
        let Cond::And(a, b) = *l else { panic!() };
        let Cond::Cmp {
            left: Operand::Agg(call),
            ..
        } = *a
        else {
            panic!()
        };
        assert_eq!((call.start, call.end), (-365, 0));
        assert!(matches!(*b, Cond::Not(_)));
    }

    #[test]
    fn literals() {
        let q = ok(
            "PREDICT COUNT(t.* WHERE t.a = -1.5 OR t.b = 'x''y' OR t.c = TRUE OR t.d = false \
                    OR t.e IS NULL OR t.f, 0, 1, days) > +2 FOR EACH e.id",
        );
        let TargetAst::Agg { cmp, .. } = q.target else {
            panic!()
        };
        assert_eq!(cmp.unwrap().1, Literal::Number("2".into()));
    }

    #[test]
    fn identifiers_follow_postgres_rules() {
        let q = ok("predict SUM(Sales.\"Order Items\".Amount, 0, 1, MONTHS) \
                    for each sales.\"Orders\".\"ID\"");
        let TargetAst::Agg { call, .. } = q.target else {
            panic!()
        };
        let v: Vec<&str> = call.arg.parts.iter().map(|n| n.value.as_str()).collect();
        assert_eq!(v, ["sales", "Order Items", "amount"]);
        assert_eq!(q.entity.parts[2].value, "ID");
        assert!(q.entity.parts[2].quoted);
    }

    #[test]
    fn via_paths() {
        let q = ok(
            "PREDICT COUNT(flights.* VIA flights.origin_id WHERE flights.x > 1, 0, 1, days) \
                    FOR EACH airports.id",
        );
        let TargetAst::Agg { call, .. } = q.target else {
            panic!()
        };
        assert_eq!(call.via.len(), 1);
        assert!(call.filter.is_some());
        let q = ok(
            "PREDICT COUNT(items.* VIA items.order_id -> orders.buyer_id, 0, 1, days) \
                    FOR EACH customers.id",
        );
        let TargetAst::Agg { call, .. } = q.target else {
            panic!()
        };
        assert_eq!(call.via.len(), 2);
    }

    #[test]
    fn syntax_errors_point_at_the_token() {
        let e = err("PREDICT COUNT(results.* 0, 30, days) FOR EACH drivers.driver_id");
        assert_eq!((e.sqlstate, e.position), ("42601", Some(25)));
        assert!(
            e.message.starts_with("syntax error at 25: expected ','"),
            "{}",
            e.message
        );
        let e = err("PREDICT COUNT(results.*, 0 30, days) FOR EACH drivers.driver_id");
        assert_eq!(e.position, Some(28));
        assert!(
            e.message.contains("expected ',' after start"),
            "{}",
            e.message
        );
        let e = err("PREDICT COUNT(results.*, 0, 30 days) FOR EACH d.id");
        assert!(e.message.contains("expected ',' after end"));
        let e = err("PREDICT COUNT(results.*, 0, 30, years) FOR EACH d.id");
        assert!(e.message.contains("unit"));
        let e = err("PREDICT COUNT(results.*, 0.5, 30, days) FOR EACH d.id");
        assert!(e.message.contains("whole numbers"));
        let e = err("COUNT(results.*, 0, 30, days)");
        assert_eq!(e.position, Some(1));
        let e = err("PREDICT COUNT(results.*, 0, 30, days) FOR d.id");
        assert!(e.message.contains("EACH"));
        let e = err("PREDICT COUNT(results.*, 0, 30, days) FOR EACH d.id extra");
        assert!(e.message.contains("WHERE, ASSUMING or end of query"));
        let e = err("PREDICT COUNT(r.*, 0, 30, days) > FOR EACH d.id");
        assert!(e.message.contains("literal"));
        let e = err("PREDICT d.* FOR EACH d.id");
        assert_eq!(e.sqlstate, "42601");
        let e = err("PREDICT x FOR EACH d.*");
        assert_eq!(e.sqlstate, "42601");
        let e = err("PREDICT a.b.c.d FOR EACH d.id");
        assert!(e.message.contains("too many"));
        let e = err("PREDICT LIST_DISTINCT(o.p, 0, 1, days) FOR EACH c.id");
        assert!(e.message.contains("RANK"));
        let e = err("PREDICT LIST_DISTINCT(o.p, 0, 1, days) RANK TOP 0 FOR EACH c.id");
        assert!(e.message.contains("positive"));
        let e = err("PREDICT x FOR EACH d.id WHERE (d.a > 1");
        assert!(e.message.contains("')'"));
        let e = err("PREDICT x FOR EACH d.id WHERE d.a IS 1");
        assert!(e.message.contains("NULL"));
        let e = err("PREDICT x FOR EACH d.id WHERE d.a > ");
        assert!(e.message.contains("end of input"));
    }

    #[test]
    fn unknown_aggregate() {
        let e = err("PREDICT MEDIAN(results.x, 0, 30, days) FOR EACH d.id");
        assert_eq!((e.sqlstate, e.position), ("42883", Some(9)));
        assert!(e.hint.unwrap().contains("COUNT_DISTINCT"));
        let e = err("PREDICT x FOR EACH d.id WHERE LIST_DISTINCT(o.p, 0, 1, days) = 1");
        assert_eq!(e.sqlstate, "0A000");
    }
}
