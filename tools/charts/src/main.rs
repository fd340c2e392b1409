//! Renders the PNG charts of docs/observability.md: one chart per dashboard panel, from the
//! range queries the Prometheus test (tests/prometheus.rs) writes when
//! `DBMANAGER_CHART_DATA` is set. `scripts/charts.sh` runs both steps.
//!
//! Usage: `dbmanager-charts DATA.json OUT_DIR [FONT.ttf]`. With `--bench` first, DATA is the
//! hot-path benchmark's `target/bench/hotpath.json` instead, and four charts are drawn:
//! throughput and p99 latency against concurrency, per engine (docs/BENCHMARKS.md).
//! The font defaults to Debian's
//! DejaVu Sans (package `fonts-dejavu-core`); plotters draws text with `ab_glyph`, so no
//! system font library is needed.
#![forbid(unsafe_code)]

use plotters::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const WIDTH: u32 = 960;
const HEIGHT: u32 = 380;

type Failure = Box<dyn std::error::Error>;

/// One line of a chart.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// One dashboard panel's data.
struct Panel {
    title: String,
    unit: String,
    series: Vec<Series>,
}

fn panels(data: &Value) -> Result<Vec<Panel>, Failure> {
    let list = data
        .as_array()
        .ok_or("the chart data is not a JSON array")?;
    Ok(list
        .iter()
        .map(|p| Panel {
            title: p["title"].as_str().unwrap_or("untitled").to_owned(),
            unit: p["unit"].as_str().unwrap_or("short").to_owned(),
            series: p["series"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| Series {
                    name: s["name"].as_str().unwrap_or_default().to_owned(),
                    points: s["points"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|pt| Some((pt[0].as_f64()?, pt[1].as_f64()?)))
                        .collect(),
                })
                .filter(|s| !s.points.is_empty())
                .collect(),
        })
        .collect())
}

/// A file name from a panel title: `Acquire latency p50 / p95 / p99` → `acquire-latency-p50-p95-p99.png`.
fn file_name(title: &str) -> String {
    let mut out = String::new();
    for c in title.to_lowercase().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    format!("{}.png", out.trim_matches('-'))
}

/// The y-axis label for a Grafana unit.
fn unit_label(unit: &str) -> &str {
    match unit {
        "s" => "seconds",
        "reqps" => "requests / s",
        "ops" => "per second",
        "none" => "",
        _ => "count",
    }
}

/// Draws each series as a line in its own colour, with a legend entry (and a dot at each
/// point when `dots`).
fn draw_lines<'a, 'b, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    series: impl Iterator<Item = &'b Series>,
    dots: bool,
) -> Result<(), Failure>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate<From = (f64, f64)>,
{
    for (i, s) in series.enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        if dots {
            chart.draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
        }
    }
    Ok(())
}

/// A line chart of every series that is not zero throughout (a panel of counters by
/// reason has many that never moved; the caption says how many were left out).
fn lines(panel: &Panel, path: &Path) -> Result<(), Failure> {
    let moving: Vec<&Series> = panel
        .series
        .iter()
        .filter(|s| s.points.iter().any(|p| p.1 != 0.0))
        .collect();
    let left_out = panel.series.len() - moving.len();
    let caption = match left_out {
        0 => panel.title.clone(),
        n => format!("{} ({n} all-zero series not drawn)", panel.title),
    };
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0_f64, f64::max);
    let y_max = moving
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0_f64, f64::max);
    let y_max = if y_max <= 0.0 { 1.0 } else { y_max * 1.15 };
    let mut chart = ChartBuilder::on(&root)
        .caption(&caption, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the test run")
        .y_desc(unit_label(&panel.unit))
        .label_style(("sans-serif", 12))
        .draw()?;
    draw_lines(&mut chart, moving.iter().copied(), false)?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 11))
        .draw()?;
    root.present()?;
    Ok(())
}

/// A state timeline: one row per series, filled where the series has a point.
fn timeline(panel: &Panel, path: &Path) -> Result<(), Failure> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let rows: Vec<&Series> = panel.series.iter().collect();
    let x_max = rows
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(1.0_f64, f64::max);
    let n = rows.len().max(1);
    let names: Vec<String> = rows.iter().map(|s| s.name.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(&panel.title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(170)
        .build_cartesian_2d(0.0..x_max, 0.0..n as f64)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the test run")
        .y_labels(n * 2 + 1)
        .y_label_formatter(&|y: &f64| {
            let i = (y - 0.5).round();
            if (y - 0.5 - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 12))
        .disable_y_mesh()
        .draw()?;
    for (i, s) in rows.iter().enumerate() {
        let color = state_color(&s.name);
        let y0 = i as f64 + 0.1;
        let y1 = i as f64 + 0.9;
        chart.draw_series(
            s.points
                .iter()
                .map(|(t, _)| Rectangle::new([(*t, y0), (t + 1.0, y1)], color.filled())),
        )?;
    }
    root.present()?;
    Ok(())
}

fn state_color(name: &str) -> RGBColor {
    if name.ends_with("healthy") && !name.ends_with("unhealthy") {
        RGBColor(46, 160, 67)
    } else if name.ends_with("unhealthy") {
        RGBColor(214, 39, 40)
    } else if name.ends_with("connecting") {
        RGBColor(240, 170, 0)
    } else {
        RGBColor(120, 120, 120)
    }
}

/// One contender's figure at each concurrency of the hot-path benchmark.
fn bench_series(engine: &Value, figure: &dyn Fn(&Value) -> Option<f64>) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for row in engine.as_array().into_iter().flatten() {
        let Some(tasks) = row["tasks"].as_f64() else {
            continue;
        };
        let x = tasks.log2();
        for c in row["contenders"].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or_default();
            let Some(y) = figure(&c["cell"]) else {
                continue;
            };
            match out.iter_mut().find(|s| s.name == name) {
                Some(s) => s.points.push((x, y)),
                None => out.push(Series {
                    name: name.to_owned(),
                    points: vec![(x, y)],
                }),
            }
        }
        if let Some(tps) = row["pgbench_tps"].as_f64()
            && figure(&serde_json::json!({"ops_per_sec": 1.0})).is_some()
        {
            match out.iter_mut().find(|s| s.name == "pgbench") {
                Some(s) => s.points.push((x, tps)),
                None => out.push(Series {
                    name: "pgbench".into(),
                    points: vec![(x, tps)],
                }),
            }
        }
    }
    out
}

/// A chart of `series` against concurrency (x: log2 of the task count), log y when `log`.
fn concurrency_chart(
    title: &str,
    y_desc: &str,
    series: &[Series],
    log: bool,
    path: &Path,
) -> Result<(), Failure> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT + 100)).into_drawing_area();
    root.fill(&WHITE)?;
    let ys = || series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let y_max = ys().fold(1.0_f64, f64::max) * if log { 2.0 } else { 1.15 };
    let y_min = ys().fold(f64::MAX, f64::min).max(1e-3) / 2.0;
    let x_label = |x: &f64| format!("{}", 2f64.powf(*x).round());
    let y_label = |y: &f64| {
        if y.abs() >= 10.0 {
            format!("{y:.0}")
        } else {
            format!("{y:.1}")
        }
    };
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc("concurrent tasks (pool of 16)")
                .y_desc(y_desc)
                .x_labels(9)
                .x_label_formatter(&x_label)
                .y_label_formatter(&y_label)
                .label_style(("sans-serif", 12))
                .draw()?;
            draw_lines(&mut chart, series.iter(), true)?;
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 11))
                .draw()?;
        }};
    }
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70);
    if log {
        draw!(builder.build_cartesian_2d(-0.2..8.2_f64, (y_min..y_max).log_scale())?);
    } else {
        draw!(builder.build_cartesian_2d(-0.2..8.2_f64, 0.0..y_max)?);
    }
    root.present()?;
    Ok(())
}

/// The hot-path benchmark's charts.
fn bench_charts(value: &Value, out: &Path) -> Result<(), Failure> {
    for (key, engine) in [("postgres", "PostgreSQL"), ("mariadb", "MariaDB")] {
        let data = &value[key];
        if data.is_null() {
            continue;
        }
        let ops = bench_series(data, &|c| c["ops_per_sec"].as_f64());
        let p99 = bench_series(data, &|c| c["p99_us"].as_f64().map(|us| us / 1e3));
        let p99: Vec<Series> = p99.into_iter().filter(|s| s.name != "pgbench").collect();
        let a = out.join(format!("hotpath-{key}-throughput.png"));
        concurrency_chart(
            &format!("{engine}: acquire + SELECT 1 + release, throughput"),
            "operations / s",
            &ops,
            false,
            &a,
        )?;
        let b = out.join(format!("hotpath-{key}-p99.png"));
        concurrency_chart(
            &format!("{engine}: acquire + SELECT 1 + release, p99 latency"),
            "p99 latency, ms (log)",
            &p99,
            true,
            &b,
        )?;
        println!("{}\n{}", a.display(), b.display());
    }
    Ok(())
}

fn run(args: &[String]) -> Result<(), Failure> {
    let (bench, args) = match args.split_first() {
        Some((flag, rest)) if flag == "--bench" => (true, rest),
        _ => (false, args),
    };
    let [data, out, rest @ ..] = args else {
        return Err("usage: dbmanager-charts DATA.json OUT_DIR [FONT.ttf]".into());
    };
    let font_path = rest.first().map_or(DEFAULT_FONT, String::as_str);
    let font = std::fs::read(font_path).map_err(|e| {
        format!("cannot read the font {font_path} ({e}); install Debian's fonts-dejavu-core or pass a TTF")
    })?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, Vec::leak(font))
        .map_err(|_| format!("{font_path} is not a usable TrueType font"))?;
    let text = std::fs::read_to_string(data).map_err(|e| format!("cannot read {data}: {e}"))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{data} is not JSON: {e}"))?;
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;
    if bench {
        return bench_charts(&value, &out);
    }
    for panel in panels(&value)? {
        let path = out.join(file_name(&panel.title));
        if panel.title.to_lowercase().contains("timeline") {
            timeline(&panel, &path)?;
        } else {
            lines(&panel, &path)?;
        }
        println!("{} ({} series)", path.display(), panel.series.len());
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("dbmanager-charts: {e}");
        std::process::exit(1);
    }
}
