use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

mod props;
mod step;

use super::*;
use crate::templates::TemplateStatus;
use crate::{DomainEvent, MarketingState};

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

pub(crate) fn tpl(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

pub(crate) fn approved(ids: &[Uuid]) -> HashMap<Uuid, TemplateStatus> {
    ids.iter().map(|i| (*i, TemplateStatus::Approved)).collect()
}

pub(crate) fn facts(ids: &[Uuid]) -> Facts {
    let mut f = Facts::new(MarketingState::Subscribed);
    f.templates = ids.iter().map(|i| (*i, TemplateStatus::Approved)).collect();
    f.values.insert("customer.first_name".into(), "Ana".into());
    f
}

fn issues(
    flow: &Value,
    cap: Option<FrequencyCap>,
    t: &HashMap<Uuid, TemplateStatus>,
) -> Vec<(Option<String>, &'static str, bool)> {
    let f = Flow::parse(flow).unwrap();
    validate(&f, t, cap)
        .into_iter()
        .map(|i| (i.node_id, i.code, i.blocking))
        .collect()
}

#[test]
fn parses_a_flow_with_every_node_kind() {
    let v = recipe(
        RecipeKind::AbandonedCheckout,
        &RecipeTemplates {
            template_ids: BTreeMap::from([("standard".into(), tpl(1))]),
            ..Default::default()
        },
    );
    let f = Flow::parse(&v.flow).unwrap();
    assert_eq!(f.nodes.len(), 7);
    assert_eq!(
        f.trigger().unwrap().1.trigger,
        TriggerKind::AbandonedCheckout
    );
    assert_eq!(f.nodes[0].position, Some(Position { x: 0.0, y: 0.0 }));
    let NodeKind::Delay(d) = &f.node("wait_30m").unwrap().kind else {
        panic!()
    };
    assert_eq!(d.span.duration(), Duration::minutes(30));
    assert_eq!(f.next("is_vip", Some(BranchLabel::Yes)), Some("send_vip"));
    assert_eq!(f.template_ids(), vec![tpl(1)]);
}

#[test]
fn parse_collects_every_error_with_its_path_and_node() {
    let v = json!({
        "nodes": [
            {"id": "t", "type": "trigger", "trigger": "ORDER_EXPLODED"},
            {"id": "d", "type": "delay", "amount": 0, "unit": "weeks"},
            {"id": "x", "type": "teleport"},
            {"id": "a", "type": "action", "template_id": "nope", "colour": "red"},
            {"id": "c", "type": "condition", "group": {"op": "xor", "rules": []}},
            {"id": "c2", "type": "condition", "group": {"op": "and", "rules": [
                {"condition": "ORDER_VALUE", "operator": "~", "value": "lots"},
                {"op": "or", "rules": [{"condition": "MOON_PHASE"}]}
            ]}},
            {"id": "a2", "type": "action", "variables": {"1": {"source": "customer.shoe_size"}}},
            {"id": "a2", "type": "action"}
        ],
        "edges": [{"from": "t", "to": "ghost"}, {"from": "c2", "to": "a2"}, {"from": "a2", "to": "c2", "branch": "yes"}]
    });
    let errs = Flow::parse(&v).unwrap_err().0;
    let got: Vec<(String, Option<String>)> = errs
        .iter()
        .map(|e| (e.path.clone(), e.node_id.clone()))
        .collect();
    let n = |s: &str| Some(s.to_owned());
    for want in [
        ("nodes[0].trigger".to_owned(), n("t")),
        ("nodes[1].unit".into(), n("d")),
        ("nodes[2].type".into(), n("x")),
        ("nodes[3].template_id".into(), n("a")),
        ("nodes[4].group.op".into(), n("c")),
        ("nodes[5].group.rules[0].operator".into(), n("c2")),
        ("nodes[5].group.rules[0].value".into(), n("c2")),
        ("nodes[5].group.rules[1].rules[0].condition".into(), n("c2")),
        ("nodes[6].variables.1.source".into(), n("a2")),
        ("nodes[7].id".into(), n("a2")),
        ("edges[0].to".into(), None),
        ("edges[1].branch".into(), n("c2")),
        ("edges[2].branch".into(), n("a2")),
    ] {
        assert!(got.contains(&want), "missing {want:?} in {got:#?}");
    }
    let unknown = errs.iter().find(|e| e.path == "nodes[3].colour").unwrap();
    assert!(unknown.message.contains("unknown key"));
    assert!(
        errs.iter()
            .find(|e| e.path == "nodes[2].type")
            .unwrap()
            .message
            .contains("teleport")
    );
    assert!(Flow::parse(&json!([])).is_err());
    assert!(Flow::parse(&json!({"nodes": [], "edges": [], "extra": 1})).is_err());
}

#[test]
fn drafts_parse_incomplete_and_validation_names_what_is_missing() {
    let v = json!({
        "nodes": [
            {"id": "t", "type": "trigger", "trigger": "CUSTOMER_TAGGED"},
            {"id": "c", "type": "condition"},
            {"id": "a", "type": "action"},
            {"id": "lonely", "type": "delay", "amount": 1, "unit": "hours"},
            {"id": "r", "type": "condition", "group": {"op": "and", "rules": [{"condition": "USER_REPLY_STATUS"}]}}
        ],
        "edges": [{"from": "t", "to": "c"}, {"from": "c", "to": "a", "branch": "yes"}]
    });
    let got = issues(&v, None, &HashMap::new());
    let b = |node: Option<&str>, code: &'static str| (node.map(str::to_owned), code, true);
    for want in [
        b(None, "frequency_cap_missing"),
        b(Some("t"), "trigger_incomplete"),
        b(Some("c"), "branch_missing"),
        b(Some("c"), "condition_incomplete"),
        b(Some("a"), "template_missing"),
        b(Some("lonely"), "node_unreachable"),
        b(Some("lonely"), "node_not_connected"),
        b(Some("r"), "condition_incomplete"),
        b(Some("r"), "node_unreachable"),
    ] {
        assert!(got.contains(&want), "missing {want:?} in {got:#?}");
    }
}

#[test]
fn validation_blocks_unapproved_templates_cycles_and_extra_triggers() {
    let v = json!({
        "nodes": [
            {"id": "t", "type": "trigger", "trigger": "ORDER_PLACED"},
            {"id": "t2", "type": "trigger", "trigger": "ORDER_SHIPPED"},
            {"id": "a", "type": "action", "template_id": tpl(1)},
            {"id": "c", "type": "condition", "group": {"op": "or", "rules": [{"condition": "CUSTOMER_TAG", "tag": "VIP"}]}},
            {"id": "b", "type": "action", "template_id": tpl(2)}
        ],
        "edges": [
            {"from": "t", "to": "a"}, {"from": "a", "to": "c"},
            {"from": "c", "to": "a", "branch": "yes"}, {"from": "c", "to": "b", "branch": "no"},
            {"from": "t2", "to": "b"}
        ]
    });
    let mut t = approved(&[tpl(1)]);
    t.insert(tpl(2), TemplateStatus::Paused);
    let got = issues(&v, Some(FrequencyCap::Days7), &t);
    assert!(
        got.contains(&(Some("t2".into()), "trigger_duplicate", true)),
        "{got:?}"
    );
    assert!(got.contains(&(Some("b".into()), "template_not_approved", true)));
    assert!(
        got.iter()
            .any(|(_, c, b)| *c == "cycle_without_delay" && *b),
        "{got:?}"
    );
    // The same loop through a delay is fine.
    let mut v2 = v.clone();
    v2["nodes"].as_array_mut().unwrap().remove(1);
    v2["edges"].as_array_mut().unwrap().pop();
    v2["nodes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "d", "type": "delay", "amount": 1, "unit": "days"}));
    v2["edges"][2] = json!({"from": "c", "to": "d", "branch": "yes"});
    v2["edges"]
        .as_array_mut()
        .unwrap()
        .push(json!({"from": "d", "to": "a"}));
    let got = issues(&v2, Some(FrequencyCap::Days7), &approved(&[tpl(1), tpl(2)]));
    assert!(got.iter().all(|(_, _, b)| !b), "{got:?}");
}

#[test]
fn every_recipe_parses_and_validates() {
    for kind in RecipeKind::ALL {
        let given = RecipeTemplates {
            template_ids: kind
                .slots()
                .iter()
                .enumerate()
                .map(|(i, s)| (s.to_string(), tpl(i as u128 + 1)))
                .collect(),
            segment_id: Some(Uuid::from_u128(99)),
            tag: None,
        };
        let r = recipe(kind, &given);
        let flow = Flow::parse(&r.flow).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        let found = validate(
            &flow,
            &approved(&[tpl(1), tpl(2), tpl(3)]),
            Some(r.frequency_cap),
        );
        assert!(found.iter().all(|i| !i.blocking), "{kind:?}: {found:?}");
        assert_eq!(RecipeKind::parse(kind.as_str()), Some(kind));
    }
    assert_eq!(
        recipe(RecipeKind::AbandonedCheckout, &Default::default()).frequency_cap,
        FrequencyCap::Days7
    );
    assert_eq!(
        recipe(RecipeKind::Welcome, &Default::default()).frequency_cap,
        FrequencyCap::Ever
    );
    assert_eq!(
        recipe(RecipeKind::BackInStock, &Default::default()).frequency_cap,
        FrequencyCap::Hours24
    );
    assert_eq!(
        recipe(RecipeKind::VipWinback, &Default::default()).frequency_cap,
        FrequencyCap::Days30
    );
}

#[test]
fn the_gate_checks_consent_then_cap_then_exclusions() {
    let now = t0();
    assert_eq!(
        gate(
            MarketingState::Pending,
            FrequencyCap::Days7,
            Some(now),
            true,
            now
        )
        .unwrap_err()
        .code(),
        "not_subscribed"
    );
    let last = now - Duration::hours(23);
    let e = gate(
        MarketingState::Subscribed,
        FrequencyCap::Hours24,
        Some(last),
        true,
        now,
    )
    .unwrap_err();
    assert_eq!(
        e,
        GateRefusal::Capped {
            until: Some(last + Duration::hours(24))
        }
    );
    assert_eq!(
        gate(
            MarketingState::Subscribed,
            FrequencyCap::Hours24,
            Some(now - Duration::hours(24)),
            true,
            now
        )
        .unwrap_err()
        .code(),
        "excluded"
    );
    assert!(
        gate(
            MarketingState::Subscribed,
            FrequencyCap::Hours24,
            Some(now - Duration::hours(24)),
            false,
            now
        )
        .is_ok()
    );
    assert_eq!(
        gate(
            MarketingState::Subscribed,
            FrequencyCap::Ever,
            Some(now - Duration::days(900)),
            false,
            now
        )
        .unwrap_err(),
        GateRefusal::Capped { until: None }
    );
    assert!(
        gate(
            MarketingState::Subscribed,
            FrequencyCap::Ever,
            None,
            false,
            now
        )
        .is_ok()
    );
    for c in FrequencyCap::ALL {
        assert_eq!(FrequencyCap::parse(c.as_str()), Some(c));
        assert_eq!(serde_json::to_value(c).unwrap(), json!(c.as_str()));
    }
    let ex: Exclusion = serde_json::from_value(json!({"type": "segment", "id": tpl(5)})).unwrap();
    assert_eq!(
        ex,
        Exclusion {
            kind: ExclusionKind::Segment,
            id: tpl(5)
        }
    );
    assert!(serde_json::from_value::<Exclusion>(json!({"type": "tag", "id": tpl(5)})).is_err());
}

#[test]
fn events_map_to_trigger_facts_with_enrolment_keys() {
    let (c, o, ev) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
    let f = trigger_fact(
        &DomainEvent::OrderCreated {
            order_id: o,
            shopify_order_id: 9,
            contact_id: Some(c),
            total_price: Some("10.00".into()),
        },
        ev,
        t0(),
    )
    .unwrap();
    assert_eq!(
        (f.trigger, f.audience, f.key.as_str()),
        (
            TriggerKind::OrderPlaced,
            Audience::Contact(c),
            "order:00000000-0000-0000-0000-000000000002"
        )
    );
    assert_eq!(f.variables["order.total_price"], "10.00");
    let f = trigger_fact(
        &DomainEvent::OrderShipped {
            order_id: o,
            shopify_order_id: 9,
            tracking_company: None,
            tracking_number: None,
            tracking_url: Some("u".into()),
        },
        ev,
        t0(),
    )
    .unwrap();
    assert_eq!(f.audience, Audience::ContactOfOrder(o));
    let f = trigger_fact(
        &DomainEvent::CustomerTagged {
            contact_id: c,
            tag: " VIP ".into(),
        },
        ev,
        t0(),
    )
    .unwrap();
    let node = |tag: &str| TriggerNode {
        trigger: TriggerKind::CustomerTagged,
        tag: Some(tag.into()),
        segment_id: None,
        list_id: None,
    };
    assert!(node("vip").matches(&f));
    assert!(!node("gold").matches(&f));
    let f = trigger_fact(
        &DomainEvent::VariantRestocked {
            variant_id: o,
            shopify_variant_id: 1,
            shopify_product_id: 2,
            previous_quantity: 0,
            quantity: 3,
        },
        ev,
        t0(),
    )
    .unwrap();
    assert_eq!(f.audience, Audience::VariantSubscribers(o));
    assert!(
        trigger_fact(
            &DomainEvent::CheckoutAbandoned {
                checkout_id: o,
                contact_id: None,
                token: None,
                version: Some(1),
                abandoned_checkout_url: None,
                total_price: None,
                currency: None,
                line_items: Vec::new(),
            },
            ev,
            t0()
        )
        .is_none()
    );
    assert!(
        trigger_fact(
            &DomainEvent::ProductCreated {
                shopify_product_id: 1
            },
            ev,
            t0()
        )
        .is_none()
    );
    for k in TriggerKind::ALL {
        assert_eq!(TriggerKind::parse(k.as_str()), Some(k));
    }
}

#[test]
fn run_state_round_trips_as_json() {
    let flow = step::reply_flow(
        json!({"condition": "USER_REPLY_STATUS", "window": {"amount": 2, "unit": "hours"}}),
    );
    let s = step::run(
        &flow,
        &RunState::new(),
        Input::Start,
        &facts(&[tpl(1), tpl(2)]),
        t0(),
    );
    let v = serde_json::to_value(&s.state).unwrap();
    assert_eq!(v["wait"]["kind"], "event");
    assert_eq!(serde_json::from_value::<RunState>(v).unwrap(), s.state);
}
