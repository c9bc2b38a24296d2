//! The table and `target/bench/report.json`.

use serde::Serialize;

/// One measured value, the library's and the floor's.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) metric: String,
    pub(crate) unit: String,
    pub(crate) library: f64,
    pub(crate) floor: Option<f64>,
    /// The library's cost over the floor's (1.00 = as cheap as the floor; for rates, the
    /// floor's rate over the library's).
    pub(crate) ratio: Option<f64>,
    pub(crate) target: Option<String>,
    pub(crate) met: Option<bool>,
}

/// Whether larger values are better (rates) or worse (costs).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Better {
    Lower,
    Higher,
}

impl Row {
    pub(crate) fn new(
        scenario: &str,
        metric: &str,
        unit: &str,
        library: f64,
        floor: Option<f64>,
        better: Better,
    ) -> Self {
        let ratio = floor.filter(|f| *f > 0.0 && library > 0.0).map(|f| match better {
            Better::Lower => library / f,
            Better::Higher => f / library,
        });
        Self {
            scenario: scenario.to_owned(),
            metric: metric.to_owned(),
            unit: unit.to_owned(),
            library,
            floor,
            ratio,
            target: None,
            met: None,
        }
    }

    pub(crate) fn target(mut self, text: &str, met: bool) -> Self {
        self.target = Some(text.to_owned());
        self.met = Some(met);
        self
    }
}

fn number(value: f64) -> String {
    if value == 0.0 {
        "0".to_owned()
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// The markdown table.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut out = String::from("| scenario | metric | library | floor | ratio | target |\n|---|---|---|---|---|---|\n");
    for row in rows {
        let floor = row.floor.map_or_else(|| "—".to_owned(), number);
        let ratio = row.ratio.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×"));
        let target = match (&row.target, row.met) {
            (Some(text), Some(true)) => format!("{text} ✓"),
            (Some(text), _) => format!("{text} ✗"),
            (None, _) => String::new(),
        };
        out.push_str(&format!(
            "| {} | {} ({}) | {} | {} | {} | {} |\n",
            row.scenario,
            row.metric,
            row.unit,
            number(row.library),
            floor,
            ratio,
            target
        ));
    }
    out
}
