//! `bench --zoo`: every named model (RegNet's zoo and the other families) on each backend (and ONNX Runtime beside each with
//! `--peers`), then a table and latency plotted against MACs and against activations, with how
//! well each predicts the time on this machine (the RegNet paper finds activations predict GPU
//! run time better than FLOPs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use regnet_wgpu::config::Architecture;
use regnet_wgpu::plot::{Axis, Chart, Series};
use regnet_wgpu::{Error, Plan, Result, Weights};

use super::{measure_rows, print_rows, Args};

/// One measured (model, backend, batch).
#[derive(Clone, Debug)]
struct Point {
    model: String,
    gmacs: f64,
    /// Millions of activations per image (pycls' count).
    mact: f64,
    mparams: f64,
    /// `gpu`, `cpu`, `onnxruntime-cpu`, ...
    backend: String,
    batch: usize,
    median_ms: f64,
}

/// Runs the zoo (one model at a time, each row printed as it comes), or reads the rows of
/// earlier runs (`--zoo-from`); then the correlations, the table (`--markdown`) and the charts
/// (`--svg`).
pub fn run_zoo(args: &Args) -> Result<()> {
    let points = if args.zoo_from.is_empty() {
        measure_zoo(args)?
    } else {
        read_points(&args.zoo_from)?
    };
    report(args, &points)
}

/// The point of one measured row of `model`.
fn point(model: &str, plan: &Plan, backend: String, batch: usize, median_ms: f64) -> Point {
    Point {
        model: model.to_string(),
        gmacs: plan.macs() as f64 / 1e9,
        mact: plan.activations() as f64 / 1e6,
        mparams: plan.num_params() as f64 / 1e6,
        backend,
        batch,
        median_ms,
    }
}

/// Every named model within the MACs bounds, measured; each row printed as it comes.
fn measure_zoo(args: &Args) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    let names: Vec<&str> = if args.zoo_models.is_empty() {
        Architecture::names().collect()
    } else {
        args.zoo_models.iter().map(String::as_str).collect()
    };
    for name in names {
        let arch = Architecture::named(name)?;
        let plan = Plan::new(&arch, args.size, args.size)?;
        let gmacs = plan.macs() as f64 / 1e9;
        let below = args.zoo_min_gmacs.is_some_and(|m| gmacs < m);
        if below || args.zoo_max_gmacs.is_some_and(|m| gmacs > m) {
            eprintln!("zoo: {name} ({gmacs:.2} GMACs) left out by --zoo-min/max-gmacs");
            continue;
        }
        let weights = Weights::random(&plan, 0);
        let rows = zoo_rows(args, name, &plan, &weights);
        let precision = args.precision.to_string();
        print_rows(args, name, plan.macs() as f64, &precision, &rows, None);
        for r in &rows {
            points.push(point(name, &plan, r.backend.clone(), r.batch, r.st.median));
        }
        if args.peers {
            // A model the peer's libraries do not have gets no peer row, said on stderr; the
            // zoo goes on.
            match peer_rows(args, name) {
                Ok(rows) => {
                    for (backend, batch, ms) in rows {
                        points.push(point(name, &plan, backend, batch, ms));
                    }
                }
                Err(e) => eprintln!("zoo: no peer row for {name}: {e}"),
            }
        }
    }
    Ok(points)
}

/// A model's rows, one (backend, batch) at a time: one that cannot run (a batch whose values
/// pass the adapter's binding limit, say) is said on stderr and left out; the zoo goes on.
fn zoo_rows(args: &Args, name: &str, plan: &Plan, weights: &Weights) -> Vec<super::Row> {
    let mut rows = Vec::new();
    for backend in &args.backend {
        for &batch in &args.batch {
            let one = Args {
                backend: vec![backend.clone()],
                batch: vec![batch],
                ..args.clone()
            };
            match measure_rows(&one, plan, weights, &mut Vec::new()) {
                Ok(r) => rows.extend(r),
                Err(e) => eprintln!("zoo: {name} on {backend} at batch {batch}: {e}"),
            }
        }
    }
    rows
}

/// The points of earlier runs' JSON lines (rows with `model`, `backend`, `batch`, `size` and
/// `median_ms`; other lines are skipped), the models' counts from their plans at `size`.
fn read_points(files: &[PathBuf]) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    let mut plans: BTreeMap<(String, usize), Plan> = BTreeMap::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|source| Error::Io {
            path: f.clone(),
            source,
        })?;
        for line in text.lines() {
            let Ok(j) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let (Some(model), Some(backend), Some(batch), Some(size), Some(ms)) = (
                j["model"].as_str(),
                j["backend"].as_str(),
                j["batch"].as_u64(),
                j["size"].as_u64(),
                j["median_ms"].as_f64(),
            ) else {
                continue;
            };
            let key = (model.to_string(), size as usize);
            if !plans.contains_key(&key) {
                let plan = Plan::new(&Architecture::named(model)?, key.1, key.1)?;
                plans.insert(key.clone(), plan);
            }
            points.push(point(
                model,
                &plans[&key],
                backend.into(),
                batch as usize,
                ms,
            ));
        }
    }
    Ok(points)
}

/// The correlations (stderr), the table (`--markdown`) and the charts (`--svg`).
fn report(args: &Args, points: &[Point]) -> Result<()> {
    let series = by_series(points);
    let fits: Vec<String> = series
        .iter()
        .map(|(key, pts)| {
            let r_macs = log_correlation(pts.iter().map(|p| (p.gmacs, p.median_ms)));
            let r_act = log_correlation(pts.iter().map(|p| (p.mact, p.median_ms)));
            format!(
                "{key}: r(log time, log MACs) = {r_macs:.3}, r(log time, log activations) = \
                 {r_act:.3} over {} models",
                pts.len()
            )
        })
        .collect();
    for f in &fits {
        eprintln!("zoo: {f}");
    }
    if let Some(path) = &args.markdown {
        let table = markdown(points, &series, &fits);
        std::fs::write(path, table).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
    }
    if let Some(path) = &args.svg {
        write_charts(path, &series, args.size)?;
    }
    Ok(())
}

/// The points of each (backend, batch), in order of first appearance.
fn by_series(points: &[Point]) -> Vec<(String, Vec<&Point>)> {
    let mut out: Vec<(String, Vec<&Point>)> = Vec::new();
    for p in points {
        let key = format!("{} batch {}", p.backend, p.batch);
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(p),
            None => out.push((key, vec![p])),
        }
    }
    out
}

/// Pearson's r between the logarithms of x and y (NaN with fewer than 3 points).
fn log_correlation(pts: impl Iterator<Item = (f64, f64)>) -> f64 {
    let v: Vec<(f64, f64)> = pts
        .filter(|(x, y)| *x > 0.0 && *y > 0.0)
        .map(|(x, y)| (x.ln(), y.ln()))
        .collect();
    if v.len() < 3 {
        return f64::NAN;
    }
    let n = v.len() as f64;
    let (mx, my) = (
        v.iter().map(|p| p.0).sum::<f64>() / n,
        v.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in &v {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    sxy / (sxx * syy).sqrt()
}

/// The table: a row per model (GMACs, activations, params, then each series' median ms).
fn markdown(points: &[Point], series: &[(String, Vec<&Point>)], fits: &[String]) -> String {
    let mut models: Vec<&Point> = Vec::new();
    for p in points {
        if !models.iter().any(|m| m.model == p.model) {
            models.push(p);
        }
    }
    let mut ms: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for (key, pts) in series {
        for p in pts {
            ms.insert((p.model.as_str(), key.as_str()), p.median_ms);
        }
    }
    let mut s = String::from("| model | GMACs | activations (M) | params (M) |");
    for (key, _) in series {
        s += &format!(" {key} (ms) |");
    }
    s += "\n|---|---:|---:|---:|";
    s += &"---:|".repeat(series.len());
    s.push('\n');
    for m in models {
        s += &format!(
            "| {} | {:.3} | {:.2} | {:.2} |",
            m.model, m.gmacs, m.mact, m.mparams
        );
        for (key, _) in series {
            match ms.get(&(m.model.as_str(), key.as_str())) {
                Some(v) => s += &format!(" {v:.1} |"),
                None => s += " |",
            }
        }
        s.push('\n');
    }
    s.push('\n');
    for f in fits {
        s += &format!("- {f}\n");
    }
    s
}

/// Latency against MACs at `path`, and against activations beside it (`-activations` before
/// the extension).
fn write_charts(path: &Path, series: &[(String, Vec<&Point>)], size: usize) -> Result<()> {
    let chart = |x_label: &str, x: fn(&Point) -> f64| {
        let mut c = Chart::new(
            format!("The zoo at {size}x{size}: median time per batch"),
            Axis::log(x_label),
            Axis::log("median time per batch (ms)"),
        );
        for (key, pts) in series {
            let r = log_correlation(pts.iter().map(|p| (x(p), p.median_ms)));
            let label = format!("{key} (r = {r:.2})");
            c.series.push(Series::points(
                label,
                pts.iter().map(|p| (x(p), p.median_ms)),
            ));
        }
        c.subtitle = Some("r: Pearson's correlation of log time and log x over the models".into());
        c.to_svg()
    };
    let write = |p: &Path, svg: String| {
        std::fs::write(p, svg).map_err(|source| Error::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    write(path, chart("multiply-adds per image (G)", |p| p.gmacs)?)?;
    write(
        &beside(path, "-activations"),
        chart("activations per image (M, pycls' count)", |p| p.mact)?,
    )
}

/// `path` with `suffix` before its extension.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    path.with_file_name(format!("{stem}{suffix}{ext}"))
}

/// ONNX Runtime CPU on `model` (`scripts/bench_peers.py`, the model exported from torchvision
/// or timm), at every batch, its JSON lines printed as they are: (backend, batch, median ms).
fn peer_rows(args: &Args, model: &str) -> Result<Vec<(String, usize, f64)>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_peers.py");
    let batches: Vec<String> = args.batch.iter().map(|b| b.to_string()).collect();
    let out = Command::new(&args.python)
        .args([script, "--model", model, "--batch", &batches.join(",")])
        .args([
            "--size",
            &args.size.to_string(),
            "--iters",
            &args.iters.to_string(),
        ])
        .args([
            "--warmup",
            &args.warmup.to_string(),
            "--backends",
            "onnxruntime-cpu",
        ])
        .args(["--threads", &rayon::current_num_threads().to_string()])
        .output()
        .map_err(|e| Error::Input(format!("--peers: cannot run {}: {e}", args.python)))?;
    if !out.status.success() {
        return Err(Error::Input(format!(
            "--peers: {} {script} failed on {model} (it needs torch, torchvision, timm and \
             onnxruntime): {}",
            args.python,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        )));
    }
    let mut rows = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(j) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        println!("{line}");
        let backend = j["backend"].as_str().unwrap_or("peer").to_string();
        let batch = j["batch"].as_u64().unwrap_or(0) as usize;
        if let Some(ms) = j["median_ms"].as_f64() {
            rows.push((backend, batch, ms));
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_of_a_power_law_is_one() {
        let pts = [(1.0, 3.0), (2.0, 12.0), (4.0, 48.0), (8.0, 192.0)];
        assert!((log_correlation(pts.into_iter()) - 1.0).abs() < 1e-12);
        let inverse = [(1.0, 8.0), (2.0, 4.0), (4.0, 2.0)];
        assert!((log_correlation(inverse.into_iter()) + 1.0).abs() < 1e-12);
        assert!(log_correlation([(1.0, 1.0)].into_iter()).is_nan());
    }

    #[test]
    fn the_second_chart_sits_beside_the_first() {
        assert_eq!(
            beside(Path::new("docs/zoo.svg"), "-activations"),
            Path::new("docs/zoo-activations.svg")
        );
    }
}
