//! What a sweep prints and draws: JSON lines or a table, the summary, the charts.

use std::path::Path;

use regnet_wgpu::design_space::{stats, Sample};
use regnet_wgpu::plot::{Annotation, Axis, Chart, Series};
use regnet_wgpu::{Error, Result};
use serde_json::{json, Map, Value};

/// One measured model: a sample of a space, or a zoo model (`model` set).
pub struct Row {
    /// The space it was drawn from (`regnet`, `anynet`), or `zoo`.
    pub space: String,
    /// The zoo model's name.
    pub model: Option<String>,
    /// Its spec (`--regnet` / `--anynet` syntax).
    pub spec: String,
    /// Parameters, MACs and activations at the sweep's size, as `plan` counts them.
    pub params: u64,
    /// Multiply-adds for one image.
    pub macs: u64,
    /// Activations for one image.
    pub activations: u64,
    /// Ops of the plan.
    pub ops: u64,
    /// Median latency of a run (a batch), milliseconds.
    pub median_ms: f64,
}

impl Row {
    /// A measured sample.
    pub fn sample(s: &Sample, median_ms: f64) -> Row {
        Row {
            space: s.space.to_string(),
            model: None,
            spec: s.spec.clone(),
            params: s.params,
            macs: s.macs,
            activations: s.activations,
            ops: s.ops,
            median_ms,
        }
    }

    /// The JSON line of a sample (zoo models carry `model` too).
    pub fn json(&self) -> Value {
        let mut m = Map::new();
        m.insert("space".into(), json!(self.space));
        if let Some(name) = &self.model {
            m.insert("model".into(), json!(name));
        }
        m.insert("spec".into(), json!(self.spec));
        m.insert("params".into(), json!(self.params));
        m.insert("macs".into(), json!(self.macs));
        m.insert("activations".into(), json!(self.activations));
        m.insert("ops".into(), json!(self.ops));
        m.insert("median_ms".into(), json!(round3(self.median_ms)));
        Value::Object(m)
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The header of the table (`--json` off).
pub fn table_header() -> String {
    format!(
        "{:>4}  {:<7} {:>8} {:>8} {:>8} {:>10}  spec",
        "#", "space", "MMACs", "Mparams", "Macts", "median ms"
    )
}

/// One line of the table.
pub fn table_row(i: usize, r: &Row) -> String {
    let m = |x: u64| format!("{:.1}", x as f64 / 1e6);
    let label = r.model.as_deref().unwrap_or(&r.spec);
    format!(
        "{:>4}  {:<7} {:>8} {:>8} {:>8} {:>10.2}  {label}",
        i,
        r.space,
        m(r.macs),
        m(r.params),
        m(r.activations),
        r.median_ms
    )
}

/// What correlates with latency, over `rows`: `{"macs": r, "params": r, "activations": r,
/// "ops": r}`.
fn correlations(rows: &[&Row], f: fn(&[f64], &[f64]) -> Option<f64>) -> Value {
    let ms: Vec<f64> = rows.iter().map(|r| r.median_ms).collect();
    let by = |g: fn(&Row) -> u64| {
        let x: Vec<f64> = rows.iter().map(|r| g(r) as f64).collect();
        f(&x, &ms).map(round3)
    };
    json!({
        "macs": by(|r| r.macs),
        "params": by(|r| r.params),
        "activations": by(|r| r.activations),
        "ops": by(|r| r.ops),
    })
}

/// The samples on the Pareto front of MACs against latency, fastest first.
pub fn pareto<'a>(rows: &[&'a Row]) -> Vec<&'a Row> {
    let macs: Vec<f64> = rows.iter().map(|r| r.macs as f64).collect();
    let ms: Vec<f64> = rows.iter().map(|r| r.median_ms).collect();
    stats::pareto_front(&macs, &ms)
        .into_iter()
        .map(|i| rows[i])
        .collect()
}

/// The sampled model with the most MACs within `budget` milliseconds.
pub fn best_under<'a>(rows: &[&'a Row], budget: f64) -> Option<&'a Row> {
    let macs: Vec<f64> = rows.iter().map(|r| r.macs as f64).collect();
    let ms: Vec<f64> = rows.iter().map(|r| r.median_ms).collect();
    stats::best_under_budget(&macs, &ms, budget).map(|i| rows[i])
}

/// The summary's statistics over the samples (zoo rows excluded): correlations, the Pareto
/// front, the pick under the budget, and per space when several were swept.
pub fn statistics(samples: &[Row], budget_ms: Option<f64>) -> Map<String, Value> {
    let all: Vec<&Row> = samples.iter().collect();
    let mut m = Map::new();
    m.insert("samples".into(), json!(samples.len()));
    m.insert("pearson".into(), correlations(&all, stats::pearson));
    m.insert("spearman".into(), correlations(&all, stats::spearman));
    let front: Vec<&str> = pareto(&all).iter().map(|r| r.spec.as_str()).collect();
    m.insert("pareto".into(), json!(front));
    m.insert("budget_ms".into(), json!(budget_ms));
    let best = budget_ms.and_then(|b| best_under(&all, b)).map(Row::json);
    m.insert("best_under_budget".into(), json!(best));
    let spaces = space_names(samples);
    if spaces.len() > 1 {
        let per: Map<String, Value> = spaces
            .iter()
            .map(|sp| {
                let rows: Vec<&Row> = samples.iter().filter(|r| &r.space == sp).collect();
                let ms: Vec<f64> = rows.iter().map(|r| r.median_ms).collect();
                let v = json!({
                    "samples": rows.len(),
                    "median_ms": stats::median(&ms).map(round3),
                    "pearson": correlations(&rows, stats::pearson),
                    "spearman": correlations(&rows, stats::spearman),
                });
                (sp.clone(), v)
            })
            .collect();
        m.insert("by_space".into(), Value::Object(per));
    }
    m
}

fn space_names(rows: &[Row]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for r in rows {
        if !v.contains(&r.space) {
            v.push(r.space.clone());
        }
    }
    v
}

/// The summary for people: correlations, the front, the budget's pick.
pub fn summary_text(s: &Map<String, Value>) -> String {
    let r = |k: &str, what: &str| {
        let v = &s[k][what];
        v.as_f64().map_or("n/a".into(), |x| format!("{x:+.3}"))
    };
    let mut out = format!(
        "correlation of latency with   MACs   params   activations   ops\n\
         Pearson                      {:>6}   {:>6}   {:>6}        {:>6}\n\
         Spearman                     {:>6}   {:>6}   {:>6}        {:>6}\n",
        r("pearson", "macs"),
        r("pearson", "params"),
        r("pearson", "activations"),
        r("pearson", "ops"),
        r("spearman", "macs"),
        r("spearman", "params"),
        r("spearman", "activations"),
        r("spearman", "ops"),
    );
    if let Some(front) = s["pareto"].as_array() {
        out += &format!(
            "Pareto front (MACs vs latency, fastest first), {} on it:\n",
            front.len()
        );
        for spec in front {
            out += &format!("  {}\n", spec.as_str().unwrap_or_default());
        }
    }
    if let Some(b) = s["budget_ms"].as_f64() {
        match s["best_under_budget"].as_object() {
            Some(best) => {
                out += &format!(
                    "most MACs under {b} ms: {} ({:.1} MMACs, {} ms)\n",
                    best["spec"].as_str().unwrap_or_default(),
                    best["macs"].as_f64().unwrap_or(0.0) / 1e6,
                    best["median_ms"]
                )
            }
            None => out += &format!("no sampled model runs under {b} ms\n"),
        }
    }
    out
}

/// Writes the charts into `dir`: the latency EDF per space, latency against MACs (with the
/// Pareto front) and against activations, the zoo models marked. Returns the files written.
pub fn write_svgs(
    dir: &Path,
    samples: &[Row],
    zoo: &[Row],
    title: &str,
) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::Input(format!("cannot create {}: {e}", dir.display())))?;
    let spaces = space_names(samples);
    let per_space = |x: fn(&Row) -> f64| -> Vec<Series> {
        spaces
            .iter()
            .map(|sp| {
                let pts = samples
                    .iter()
                    .filter(|r| &r.space == sp)
                    .map(|r| (x(r), r.median_ms));
                Series::points(format!("{sp} samples"), pts)
            })
            .collect()
    };
    let marks = |x: fn(&Row) -> f64| -> Vec<Annotation> {
        zoo.iter()
            .map(|r| Annotation {
                label: r.model.clone().unwrap_or_default(),
                x: x(r),
                y: r.median_ms,
            })
            .collect()
    };
    let ms_axis = || Axis::linear("median latency (ms)");
    let mut charts = Vec::new();

    let mut edf = Chart::new(
        format!("Latency EDF: {title}"),
        ms_axis(),
        Axis::linear("share of models at or below (EDF)"),
    );
    for sp in &spaces {
        let ms: Vec<f64> = samples
            .iter()
            .filter(|r| &r.space == sp)
            .map(|r| r.median_ms)
            .collect();
        edf.series.push(Series::steps(sp.clone(), stats::edf(&ms)));
    }
    charts.push(("latency_edf.svg", edf));

    let all: Vec<&Row> = samples.iter().collect();
    let mmacs = |r: &Row| r.macs as f64 / 1e6;
    let mut vs_macs = Chart::new(
        format!("Latency vs MACs: {title}"),
        Axis::linear("MACs (millions, one image)"),
        ms_axis(),
    );
    vs_macs.series = per_space(mmacs);
    let front: Vec<(f64, f64)> = pareto(&all)
        .iter()
        .map(|r| (mmacs(r), r.median_ms))
        .collect();
    vs_macs.series.push(Series::line("Pareto front", front));
    vs_macs.annotations = marks(mmacs);
    charts.push(("latency_vs_macs.svg", vs_macs));

    let macts = |r: &Row| r.activations as f64 / 1e6;
    let mut vs_acts = Chart::new(
        format!("Latency vs activations: {title}"),
        Axis::linear("activations (millions, one image)"),
        ms_axis(),
    );
    vs_acts.series = per_space(macts);
    vs_acts.annotations = marks(macts);
    charts.push(("latency_vs_activations.svg", vs_acts));

    let mut written = Vec::new();
    for (name, chart) in charts {
        let path = dir.join(name);
        std::fs::write(&path, chart.to_svg()?)
            .map_err(|e| Error::Input(format!("cannot write {}: {e}", path.display())))?;
        written.push(path);
    }
    Ok(written)
}
