//! Segment rules compiled to SQL with sea-query, for both engines.
//!
//! Every value from a rule is bound as a parameter; the only SQL text not
//! produced by sea-query itself is the fixed fragments below (JSON functions
//! differ between SQLite and PostgreSQL), each with one placeholder that
//! sea-query fills with a built expression. The outer table is `contacts`
//! aliased `c`. Purchase rules (brand, collection) read the derived
//! `order_lines` table, not the JSON line items of the orders.

use galantis_core::segment::{
    Comparison, Condition as Rule, DAY_MS, NumberField, NumberTest, SegmentRules, TimeField,
    TimeTest,
};
use sea_query::{
    Condition, Expr, ExprTrait, PostgresQueryBuilder, Query, SelectStatement, SqliteQueryBuilder,
};
use sea_query_sqlx::{SqlxBinder, SqlxValues};

use crate::db::Engine;

/// Builds a statement for the engine.
pub(crate) fn build<S: SqlxBinder>(engine: Engine, stmt: &S) -> (String, SqlxValues) {
    match engine {
        Engine::Sqlite => stmt.build_sqlx(SqliteQueryBuilder),
        Engine::Postgres => stmt.build_sqlx(PostgresQueryBuilder),
    }
}

/// Contacts that may be in any segment: not deleted, not erased, not
/// excluded from Galantis.
pub(crate) fn eligible() -> Expr {
    Expr::col(("c", "deleted_at"))
        .is_null()
        .and(Expr::col(("c", "redacted_at")).is_null())
        .and(Expr::cust("NOT c.exclude_from_galantis"))
}

/// A fixed fragment with exactly one placeholder (`?` on SQLite, `$1` on
/// PostgreSQL) that receives `inner`.
pub(crate) fn fragment(
    engine: Engine,
    sqlite: &'static str,
    postgres: &'static str,
    inner: Expr,
) -> Expr {
    match engine {
        Engine::Sqlite => Expr::cust_with_expr(sqlite, inner),
        Engine::Postgres => Expr::cust_with_expr(postgres, inner),
    }
}

/// How conditions on orders are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Over many contacts: one pass over the orders (semi-join).
    Scan,
    /// Over a few contacts: only their orders (correlated probe).
    Probe,
}

/// The rules as one boolean expression over `c`.
pub(crate) fn compile(rules: &SegmentRules, engine: Engine, now_ms: i64, plan: Plan) -> Condition {
    let mut any = Condition::any();
    for g in &rules.groups {
        let mut all = Condition::all();
        for c in &g.conditions {
            all = all.add(condition(c, engine, now_ms, plan));
        }
        any = any.add(all);
    }
    any
}

fn negated(e: Expr, negate: bool) -> Expr {
    if negate { e.not() } else { e }
}

/// One condition over `c`.
pub(crate) fn condition(c: &Rule, engine: Engine, now: i64, plan: Plan) -> Expr {
    match c {
        Rule::Phone { negate, states } => negated(
            Expr::cust("COALESCE(c.phone_status, 'missing')")
                .is_in(states.iter().map(|s| s.as_str())),
            *negate,
        ),
        Rule::List { negate, lists } => negated(
            fragment(
                engine,
                "EXISTS (SELECT 1 FROM list_members lm WHERE lm.contact_id = c.id AND ?)",
                "EXISTS (SELECT 1 FROM list_members lm WHERE lm.contact_id = c.id AND $1)",
                Expr::col(("lm", "list_id")).is_in(lists.iter().copied()),
            ),
            *negate,
        ),
        Rule::Consent { negate, states } => negated(
            Expr::col(("c", "marketing_state")).is_in(states.iter().map(|s| s.as_str())),
            *negate,
        ),
        Rule::Country { negate, codes } => negated(
            Expr::cust("UPPER(COALESCE(c.country, ''))").is_in(codes.iter().cloned()),
            *negate,
        ),
        Rule::Language { negate, tags } => {
            let locale = || Expr::cust("REPLACE(LOWER(COALESCE(c.locale, '')), '_', '-')");
            let mut any = Condition::any();
            for t in tags {
                any = any.add(locale().eq(t.clone()));
                if !t.contains('-') {
                    any = any.add(locale().like(format!("{t}-%")));
                }
            }
            negated(any.into(), *negate)
        }
        Rule::CustomerTag { negate, tags } => negated(
            fragment(
                engine,
                "EXISTS (SELECT 1 FROM json_each(c.tags) t WHERE ?)",
                "EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE WHEN jsonb_typeof(c.tags) = 'array' THEN c.tags ELSE '[]'::jsonb END) AS t(v) WHERE $1)",
                match engine {
                    Engine::Sqlite => Expr::cust("LOWER(t.value)"),
                    Engine::Postgres => Expr::cust("LOWER(t.v)"),
                }
                .is_in(tags.iter().cloned()),
            ),
            *negate,
        ),
        Rule::PurchasedBrand { negate, vendors } => {
            // `order_lines` holds the lines of the orders that count (with a
            // contact, not cancelled, not deleted), vendors lower-cased.
            let lines = Query::select()
                .from_as("order_lines", "ol")
                .and_where(Expr::col(("ol", "vendor")).is_in(vendors.iter().cloned()))
                .to_owned();
            negated(purchased(lines, plan), *negate)
        }
        Rule::PurchasedCollection {
            negate,
            collections,
        } => {
            // The collections' products are one uncorrelated subquery that
            // PostgreSQL hashes once (`IS TRUE` keeps it from being turned
            // into a join, which on a freshly loaded table, without
            // statistics, it may drive per contact: contacts × products).
            // The lines are then read by contact or in one pass, as for brands.
            let products = Query::select()
                .column(("cp", "shopify_product_id"))
                .from_as("collection_products", "cp")
                .and_where(
                    Expr::col(("cp", "shopify_collection_id")).is_in(collections.iter().copied()),
                )
                .to_owned();
            let lines = Query::select()
                .from_as("order_lines", "ol")
                .and_where(fragment(
                    engine,
                    "(?) IS TRUE",
                    "($1) IS TRUE",
                    Expr::col(("ol", "shopify_product_id")).in_subquery(products),
                ))
                .to_owned();
            negated(purchased(lines, plan), *negate)
        }
        Rule::Number { field, test } => number(*field, *test, now),
        Rule::Time { field, test } => {
            let col = || match field {
                TimeField::LastMessageReceived => Expr::cust(
                    "(SELECT MAX(COALESCE(m.delivered_at, m.read_at)) FROM messages m WHERE m.contact_id = c.id AND m.direction = 'outbound')",
                ),
                TimeField::LastEngagedAt => Expr::cust(
                    "(SELECT MAX(m.created_at) FROM messages m WHERE m.contact_id = c.id AND m.direction = 'inbound')",
                ),
            };
            match *test {
                TimeTest::Before(t) => col().lt(t),
                TimeTest::From(t) => col().gte(t),
                TimeTest::Range(a, b) => col().gte(a).and(col().lt(b)),
                TimeTest::InLastDays(n) => col().gte(now - n * DAY_MS),
            }
        }
    }
}

/// Whether the contact `c` has one of the order lines `lines` selects (a
/// query over `order_lines` aliased `ol`, without its select list).
fn purchased(mut lines: SelectStatement, plan: Plan) -> Expr {
    match plan {
        // One pass over the matching lines (a semi-join)...
        Plan::Scan => {
            Expr::col(("c", "id")).in_subquery(lines.column(("ol", "contact_id")).to_owned())
        }
        // ...or, for a few contacts, only their lines.
        Plan::Probe => Expr::exists(
            lines
                .expr(Expr::val(1))
                .and_where(Expr::col(("ol", "contact_id")).equals(("c", "id")))
                .to_owned(),
        ),
    }
}

fn number(field: NumberField, test: NumberTest, now: i64) -> Expr {
    let plain = |e: Expr| match test {
        NumberTest::Compare(cmp, v) => match cmp {
            Comparison::Gt => e.gt(v),
            Comparison::Lt => e.lt(v),
            Comparison::Ge => e.gte(v),
            Comparison::Le => e.lte(v),
            Comparison::Eq => e.eq(v),
        },
        NumberTest::Between(a, b) => e.between(a, b),
    };
    match field {
        NumberField::OrdersCount => plain(Expr::col(("c", "orders_count"))),
        NumberField::TotalSpent => plain(Expr::col(("c", "total_spent_cents"))),
        NumberField::AverageOrderValue => plain(Expr::cust(
            "(CASE WHEN c.orders_count > 0 THEN c.total_spent_cents / c.orders_count END)",
        )),
        NumberField::DaysSinceFirstOrder => days_since("first_order_at", test, now),
        NumberField::DaysSinceLastOrder => days_since("last_order_at", test, now),
    }
}

/// Whole days since a time: floor((now - t) / day). Compiled to bounds on
/// the column itself, so both engines agree exactly (no integer division)
/// and an index on the column can serve it.
fn days_since(column: &'static str, test: NumberTest, now: i64) -> Expr {
    let col = || Expr::col(("c", column));
    // days >= n  <=>  t <= now - n·day;   days <= n  <=>  t > now - (n+1)·day
    let at_least = |n: i64| col().lte(now - n * DAY_MS);
    let at_most = |n: i64| col().gt(now - (n + 1) * DAY_MS);
    match test {
        NumberTest::Compare(cmp, n) => match cmp {
            Comparison::Gt => at_least(n + 1),
            Comparison::Ge => at_least(n),
            Comparison::Lt => at_most(n - 1),
            Comparison::Le => at_most(n),
            Comparison::Eq => at_least(n).and(at_most(n)),
        },
        NumberTest::Between(a, b) => at_least(a).and(at_most(b)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sql(engine: Engine, rules: serde_json::Value) -> String {
        let rules = SegmentRules::parse(&rules).unwrap();
        let stmt = Query::select()
            .expr(Expr::cust("COUNT(*)"))
            .from_as("contacts", "c")
            .and_where(eligible())
            .cond_where(compile(&rules, engine, 1_000_000_000_000, Plan::Scan))
            .to_owned();
        build(engine, &stmt).0
    }

    #[test]
    fn values_are_bound_never_inlined() {
        let rules = json!({"groups": [{"conditions": [
            {"field": "customer_tag", "operator": "in", "value": ["x'); DROP TABLE contacts; --"]},
            {"field": "purchased_brand", "operator": "is", "value": "Nike' OR 1=1"},
            {"field": "country", "operator": "=", "value": "MX"},
            {"field": "days_since_last_order", "operator": ">", "value": 30}
        ]}]});
        for engine in [Engine::Sqlite, Engine::Postgres] {
            let s = sql(engine, rules.clone());
            assert!(!s.contains("DROP"), "{s}");
            assert!(!s.contains("nike"), "{s}");
            assert!(!s.contains("MX"), "{s}");
        }
        let pg = sql(Engine::Postgres, rules.clone());
        assert!(pg.contains("$4"), "{pg}");
        let lite = sql(Engine::Sqlite, rules);
        assert!(lite.contains("json_each"), "{lite}");
    }
}
