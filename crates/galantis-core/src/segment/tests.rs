use serde_json::json;

use super::*;

fn one(field: &str, op: &str, value: Value) -> Result<Condition, RuleErrors> {
    SegmentRules::parse(&json!({"groups": [{"conditions": [
        {"field": field, "operator": op, "value": value}
    ]}]}))
    .map(|r| r.groups[0].conditions[0].clone())
}

#[test]
fn parses_the_example() {
    let r = SegmentRules::parse(&json!({"groups": [
        {"conditions": [{"field": "total_spent", "operator": ">", "value": 500},
                        {"field": "country", "operator": "=", "value": "mx"}]},
        {"conditions": [{"field": "orders_count", "operator": ">=", "value": 3},
                        {"field": "consent", "operator": "=", "value": "Yes"}]}
    ]}))
    .unwrap();
    assert_eq!(r.groups.len(), 2);
    assert_eq!(
        r.groups[0].conditions,
        vec![
            Condition::Number {
                field: NumberField::TotalSpent,
                test: NumberTest::Compare(Comparison::Gt, 50_000)
            },
            Condition::Country {
                negate: false,
                codes: vec!["MX".into()]
            }
        ]
    );
    assert_eq!(
        r.groups[1].conditions[1],
        Condition::Consent {
            negate: false,
            states: vec![MarketingState::Subscribed]
        }
    );
    assert!(!r.needs_periodic_refresh());
}

#[test]
fn referenced_collections_cover_every_group_and_negation() {
    let r = SegmentRules::parse(&json!({"groups": [
        {"conditions": [{"field": "purchased_collection", "operator": "in", "value": [7, 3]},
                        {"field": "country", "operator": "=", "value": "MX"}]},
        {"conditions": [{"field": "purchased_collection", "operator": "not in", "value": ["3", 9]}]}
    ]}))
    .unwrap();
    assert_eq!(r.referenced_collections(), vec![3, 7, 9]);
    let none = SegmentRules::parse(&json!({"groups": [
        {"conditions": [{"field": "orders_count", "operator": ">=", "value": 3}]}
    ]}))
    .unwrap();
    assert!(none.referenced_collections().is_empty());
}

#[test]
fn errors_name_the_path() {
    let e = SegmentRules::parse(&json!({"groups": [
        {"conditions": [{"field": "country", "operator": "=", "value": "MX"}]},
        {"conditions": [{"field": "orders_count", "operator": "before", "value": 3}]}
    ]}))
    .unwrap_err();
    assert_eq!(e.first_path(), "groups[1].conditions[0].operator");
    let e = one("shoe_size", "=", json!(42)).unwrap_err();
    assert_eq!(e.first_path(), "groups[0].conditions[0].field");
    let e = one("total_spent", ">", json!("lots")).unwrap_err();
    assert_eq!(e.first_path(), "groups[0].conditions[0].value");
    let e = SegmentRules::parse(&json!({"groups": []})).unwrap_err();
    assert_eq!(e.first_path(), "groups");
    let e = SegmentRules::parse(&json!({"groups": [{"conditions": [], "x": 1}]})).unwrap_err();
    assert_eq!(e.0.len(), 2);
    let e = SegmentRules::parse(&json!([1])).unwrap_err();
    assert_eq!(e.first_path(), "rules");
}

#[test]
fn every_field_accepts_exactly_its_operators() {
    for f in Field::ALL {
        for op in Operator::ALL {
            let r = one(f.as_str(), op.as_str(), json!(null));
            let e = r.unwrap_err();
            let expected = if f.operators().contains(&op) {
                ".value"
            } else {
                ".operator"
            };
            assert!(e.first_path().ends_with(expected), "{f} {op}: {e}");
        }
    }
}

#[test]
fn values_are_normalised() {
    assert_eq!(
        one("total_spent", "between", json!(["10", 20.5])).unwrap(),
        Condition::Number {
            field: NumberField::TotalSpent,
            test: NumberTest::Between(1000, 2050)
        }
    );
    assert!(one("total_spent", "between", json!([30, 20])).is_err());
    assert!(one("total_spent", ">", json!("1.234")).is_err());
    assert!(one("total_spent", ">", json!(-1)).is_err());
    assert_eq!(
        one("customer_tag", "in", json!(["VIP", "vip", "Gold"])).unwrap(),
        Condition::CustomerTag {
            negate: false,
            tags: vec!["vip".into(), "gold".into()]
        }
    );
    assert_eq!(
        one("language", "is not", json!("pt_BR")).unwrap(),
        Condition::Language {
            negate: true,
            tags: vec!["pt-br".into()]
        }
    );
    assert_eq!(
        one("consent", "is", json!("no")).unwrap(),
        Condition::Consent {
            negate: true,
            states: vec![MarketingState::Subscribed]
        }
    );
    assert_eq!(
        one("consent", "is not", json!(false)).unwrap(),
        Condition::Consent {
            negate: false,
            states: vec![MarketingState::Subscribed]
        }
    );
    assert!(one("consent", "in", json!(["SUBSCRIBED", "nope"])).is_err());
    assert!(one("country", "in", json!([])).is_err());
    assert!(one("country", "is", json!(["MX"])).is_err());
    assert!(one("country", "is", json!("MEX")).is_err());
    assert_eq!(
        one("phone", "is not", json!("missing_calling_code")).unwrap(),
        Condition::Phone {
            negate: true,
            states: vec![PhoneState::MissingCallingCode]
        }
    );
    assert!(one("list", "in", json!(["not-a-uuid"])).is_err());
    assert_eq!(
        one("purchased_collection", "in", json!([888888, "42"])).unwrap(),
        Condition::PurchasedCollection {
            negate: false,
            collections: vec![888888, 42]
        }
    );
}

#[test]
fn times() {
    let day = 1_735_689_600_000; // 2025-01-01T00:00:00Z
    assert_eq!(
        one("last_engaged_at", "before", json!("2025-01-01")).unwrap(),
        Condition::Time {
            field: TimeField::LastEngagedAt,
            test: TimeTest::Before(day)
        }
    );
    assert_eq!(
        one("last_engaged_at", "after", json!("2025-01-01")).unwrap(),
        Condition::Time {
            field: TimeField::LastEngagedAt,
            test: TimeTest::From(day + DAY_MS)
        }
    );
    assert_eq!(
        one(
            "last_message_received",
            "between",
            json!(["2025-01-01", "2025-01-01"])
        )
        .unwrap(),
        Condition::Time {
            field: TimeField::LastMessageReceived,
            test: TimeTest::Range(day, day + DAY_MS)
        }
    );
    assert_eq!(
        one("last_engaged_at", "in last n days", json!(30)).unwrap(),
        Condition::Time {
            field: TimeField::LastEngagedAt,
            test: TimeTest::InLastDays(30)
        }
    );
    assert!(one("last_engaged_at", "in last N days", json!(0)).is_err());
    assert!(one("last_engaged_at", "after", json!("yesterday")).is_err());
    assert!(
        one("last_engaged_at", "in last N days", json!(7))
            .unwrap()
            .needs_periodic_refresh()
    );
}
