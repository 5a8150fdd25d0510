//! The table a scenario prints: figure, value, cost per item, peer or limit
//! in the same run, ratio, goal; notes below it.

use std::fmt::Write;

use super::{Engine, Figure};

fn value(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let n = if v.abs() >= 100.0 || v.fract() == 0.0 {
        group(v.round() as i64)
    } else {
        format!("{v:.2}")
    };
    match unit {
        "" => n,
        "/s" => format!("{n}/s"),
        u => format!("{n} {u}"),
    }
}

/// 12345 → "12,345".
fn group(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

pub fn render(scenario: &str, engine: Engine, seconds: f64, figures: &[Figure]) -> String {
    let rows: Vec<[String; 6]> = figures
        .iter()
        .map(|f| {
            [
                f.name.clone(),
                value(f.value, f.unit),
                f.per_item_us
                    .map_or(String::new(), |u| format!("{u:.1} µs")),
                f.peer.as_ref().map_or(String::new(), |p| {
                    format!("{}: {}", p.name, value(p.value, f.unit))
                }),
                f.ratio.map_or(String::new(), |r| format!("{r:.2}")),
                f.goal.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let head = [
        "figure",
        "value",
        "per item",
        "peer / limit (same run)",
        "ratio",
        "goal",
    ];
    let mut w = head.map(|h| h.chars().count());
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String; 6]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            if i == 0 || i == 3 {
                let _ = write!(s, "{c}{} ", " ".repeat(pad));
            } else {
                let _ = write!(s, "{}{c} ", " ".repeat(pad));
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = format!(
        "\nbench {scenario} on {} ({seconds:.1} s)\n",
        engine.as_str()
    );
    out.push_str(&line(&head.map(String::from)));
    out.push('\n');
    out.push_str(&"-".repeat(w.iter().sum::<usize>() + 5));
    out.push('\n');
    for r in &rows {
        out.push_str(&line(r));
        out.push('\n');
    }
    for f in figures {
        if let Some(n) = &f.note {
            let _ = writeln!(out, "  {}: {n}", f.name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_values_peers_and_notes() {
        let t = render(
            "queue",
            Engine::Sqlite,
            1.0,
            &[
                Figure::rate("drain", 2137.4).vs("graphile-worker", 1935.0),
                Figure::new("p99", 7.38, "ms")
                    .goal("≤ 10 ms")
                    .note("one at a time"),
            ],
        );
        assert!(t.contains("2,137/s"), "{t}");
        assert!(t.contains("graphile-worker: 1,935/s"), "{t}");
        assert!(t.contains("1.10"), "{t}");
        assert!(t.contains("7.38 ms"), "{t}");
        assert!(t.contains("p99: one at a time"), "{t}");
    }
}
