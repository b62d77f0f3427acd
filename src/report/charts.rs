//! The report's charts, drawn as SVG with plotters (text sizes are estimated, so no
//! font files are needed: the static binary stays self-contained).

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::client::ErrorKind;
use crate::state::{Hist, RunState, Second};

const W: u32 = 720;
const H: u32 = 340;

/// Colours of turns and error kinds, distinct and readable in print.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

type Result<T> = std::result::Result<T, String>;

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing a chart: {e:?}")
}

/// Upper end of an axis: a little above the largest value, never zero.
fn top(max: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        max * 1.08
    } else {
        1.0
    }
}

/// An empty chart that says why it is empty (so every chart is always present).
fn empty(title: &str, why: &str) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        root.titled(title, ("sans-serif", 18)).map_err(err)?;
        root.draw(&Text::new(
            why.to_string(),
            (W as i32 / 2 - 120, H as i32 / 2),
            ("sans-serif", 15),
        ))
        .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// What every chart shares: title, axes, grid, legend.
struct Frame<'a> {
    title: &'a str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    x_desc: &'a str,
    y_desc: String,
    /// Whole-number x labels, at most this many (turn numbers).
    whole_x: Option<u32>,
    legend: SeriesLabelPosition,
}

/// Draw the frame, let `series` draw into it, add the legend, return the SVG.
fn draw(f: Frame<'_>, series: impl FnOnce(&mut Chart<'_, '_>) -> Result<()>) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(f.title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(f.x, f.y)
            .map_err(err)?;
        let whole = |x: &f64| format!("{x:.0}");
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(f.x_desc).y_desc(f.y_desc);
        if let Some(n) = f.whole_x {
            mesh.x_labels(n.min(20) as usize).x_label_formatter(&whole);
        }
        mesh.draw().map_err(err)?;
        series(&mut chart)?;
        chart
            .configure_series_labels()
            .position(f.legend)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Median and P95 TTFT per turn number: the cache speedup shows as the drop after turn 1.
pub fn ttft_by_turn(turns: &[(u32, f64, f64)]) -> Result<String> {
    let median = turns.iter().map(|t| (t.0, t.1)).collect();
    let p95 = turns.iter().map(|t| (t.0, t.2)).collect();
    by_turn(
        "TTFT by turn (median and P95)",
        &[("median".into(), median), ("P95".into(), p95)],
    )
}

/// Named lines of a value per turn number.
pub fn by_turn(title: &str, series: &[(String, Vec<(u32, f64)>)]) -> Result<String> {
    if series.iter().all(|(_, s)| s.is_empty()) {
        return empty(title, "no successful request");
    }
    let all = || series.iter().flat_map(|(_, s)| s.iter());
    let max_turn = all().map(|t| t.0).max().unwrap_or(1);
    let frame = Frame {
        title,
        x: 0.5..max_turn as f64 + 0.5,
        y: 0.0..top(all().map(|t| t.1).fold(0.0, f64::max)),
        x_desc: "turn",
        y_desc: "TTFT (ms)".into(),
        whole_x: Some(max_turn),
        legend: SeriesLabelPosition::UpperRight,
    };
    draw(frame, |chart| {
        for (i, (name, pts)) in series.iter().enumerate() {
            let pts: Vec<(f64, f64)> = pts.iter().map(|t| (t.0 as f64, t.1)).collect();
            let c = colour(i);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
                .map_err(err)?;
        }
        Ok(())
    })
}

/// Cumulative distribution of TTFT from its histogram, with the P95 threshold marked.
pub fn ttft_cdf(h: &Hist, threshold_ms: f64) -> Result<String> {
    cdf(
        "TTFT distribution (cumulative)",
        &[("TTFT", h)],
        threshold_ms,
    )
}

/// The cumulative distributions of several histograms, overlaid, with a threshold.
pub fn cdf(title: &str, series: &[(&str, &Hist)], threshold_ms: f64) -> Result<String> {
    if series.iter().all(|(_, h)| h.is_empty()) {
        return empty(title, "no successful request");
    }
    let curves: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .map(|(name, h)| {
            let n = h.len() as f64;
            let mut seen = 0u64;
            let mut curve: Vec<(f64, f64)> = Vec::new();
            for v in h.0.iter_recorded() {
                seen += v.count_at_value();
                curve.push((
                    v.value_iterated_to() as f64 / 1000.0,
                    seen as f64 / n * 100.0,
                ));
            }
            let step = (curve.len() / 2000).max(1);
            let last = *curve.last().expect("not empty");
            let mut curve: Vec<(f64, f64)> = curve.into_iter().step_by(step).collect();
            curve.push(last);
            (*name, curve)
        })
        .collect();
    let xmax = top(curves
        .iter()
        .flat_map(|(_, c)| c.last())
        .map(|p| p.0)
        .fold(threshold_ms, f64::max));
    let frame = Frame {
        title,
        x: 0.0..xmax,
        y: 0.0..100.0,
        x_desc: "TTFT (ms)",
        y_desc: "% of requests".into(),
        whole_x: None,
        legend: SeriesLabelPosition::LowerRight,
    };
    draw(frame, |chart| {
        for (i, (name, curve)) in curves.into_iter().enumerate() {
            let c = colour(i);
            chart
                .draw_series(LineSeries::new(curve, c.stroke_width(2)))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        let red = RGBColor(200, 30, 30);
        chart
            .draw_series(LineSeries::new(
                vec![(threshold_ms, 0.0), (threshold_ms, 100.0)],
                red.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("P95 threshold {threshold_ms:.0} ms"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], red.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, 95.0), (xmax, 95.0)],
                RGBColor(160, 160, 160),
            ))
            .map_err(err)?;
        Ok(())
    })
}

/// Named lines over the run's time (seconds since its start).
fn lines_over_time(
    title: &str,
    y_desc: &str,
    empty_why: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<String> {
    if series.iter().all(|(_, pts)| pts.is_empty()) {
        return empty(title, empty_why);
    }
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (xmax, ymax) = all.fold((0.0f64, 0.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
    let frame = Frame {
        title,
        x: 0.0..top(xmax),
        y: 0.0..top(ymax),
        x_desc: "time since start (s)",
        y_desc: y_desc.into(),
        whole_x: None,
        legend: SeriesLabelPosition::UpperRight,
    };
    draw(frame, |chart| {
        for (i, (name, pts)) in series.iter().enumerate() {
            let c = colour(i);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            if pts.len() <= 120 {
                chart
                    .draw_series(pts.iter().map(|p| Circle::new(*p, 2, c.filled())))
                    .map_err(err)?;
            }
        }
        Ok(())
    })
}

/// Seconds of the run with their offset from its first second.
fn seconds(state: &RunState) -> impl Iterator<Item = (f64, &Second)> {
    let first = state.timeline.keys().next().copied().unwrap_or(0);
    state
        .timeline
        .iter()
        .map(move |(k, s)| ((k - first) as f64, s))
}

pub fn ttft_over_time(state: &RunState) -> Result<String> {
    let mean: Vec<(f64, f64)> = seconds(state)
        .filter(|(_, s)| s.ttft_n > 0)
        .map(|(t, s)| (t, s.ttft_sum_us as f64 / s.ttft_n as f64 / 1000.0))
        .collect();
    let max: Vec<(f64, f64)> = seconds(state)
        .filter(|(_, s)| s.ttft_n > 0)
        .map(|(t, s)| (t, s.ttft_max_us as f64 / 1000.0))
        .collect();
    lines_over_time(
        "TTFT over time (per second of the run)",
        "TTFT (ms)",
        "no successful request",
        &[("mean".into(), mean), ("max".into(), max)],
    )
}

pub fn e2e_over_time(state: &RunState) -> Result<String> {
    let mean: Vec<(f64, f64)> = seconds(state)
        .filter(|(_, s)| s.e2e_n > 0)
        .map(|(t, s)| (t, s.e2e_sum_us as f64 / s.e2e_n as f64 / 1000.0))
        .collect();
    lines_over_time(
        "End-to-end latency over time (mean per second)",
        "E2E (ms)",
        "no successful request",
        &[("mean E2E".into(), mean)],
    )
}

/// Output tokens and requests started, per second of the run.
pub fn throughput_over_time(state: &RunState) -> Result<String> {
    let tokens: Vec<(f64, f64)> = seconds(state)
        .map(|(t, s)| (t, s.output_tokens as f64))
        .collect();
    let requests: Vec<(f64, f64)> = seconds(state)
        .map(|(t, s)| (t, s.requests as f64))
        .collect();
    lines_over_time(
        "Throughput over time",
        "per second",
        "no request",
        &[
            ("output tokens/s".into(), tokens),
            ("requests/s".into(), requests),
        ],
    )
}

/// Mean prompt and server-reported cached tokens per turn: `(turn, prompt, cached)`.
pub fn cached_by_turn(per_turn: &[(u32, f64, f64)]) -> Result<String> {
    let title = "Server-reported cached tokens per turn (mean)";
    if per_turn.is_empty() {
        return empty(title, "the server reported no cached tokens");
    }
    let max_turn = per_turn.iter().map(|t| t.0).max().unwrap_or(1);
    let frame = Frame {
        title,
        x: 0.5..max_turn as f64 + 0.5,
        y: 0.0..top(per_turn.iter().map(|v| v.1).fold(0.0, f64::max)),
        x_desc: "turn",
        y_desc: "tokens".into(),
        whole_x: Some(max_turn),
        legend: SeriesLabelPosition::UpperLeft,
    };
    draw(frame, |chart| {
        for (i, name) in ["prompt tokens", "cached tokens"].into_iter().enumerate() {
            let c = colour(i + 2);
            let off = if i == 0 { -0.2 } else { 0.0 };
            let bars: Vec<Rectangle<(f64, f64)>> = per_turn
                .iter()
                .map(|(t, prompt, cached)| {
                    let y = if i == 0 { *prompt } else { *cached };
                    Rectangle::new(
                        [(*t as f64 + off, 0.0), (*t as f64 + off + 0.2, y)],
                        c.filled(),
                    )
                })
                .collect();
            chart
                .draw_series(bars)
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
        }
        Ok(())
    })
}

/// Failed requests per second of the run, one line per error kind.
pub fn errors_over_time(state: &RunState) -> Result<String> {
    let mut kinds: Vec<ErrorKind> = state.errors.keys().copied().collect();
    kinds.sort_unstable();
    let series: Vec<(String, Vec<(f64, f64)>)> = kinds
        .iter()
        .map(|k| {
            let pts = seconds(state)
                .map(|(t, s)| (t, s.errors.get(k).copied().unwrap_or(0) as f64))
                .collect();
            (k.label().to_string(), pts)
        })
        .collect();
    lines_over_time(
        "Errors over time, by kind",
        "failed requests per second",
        "no request failed",
        &series,
    )
}

/// Per pod, `value` of each scrape against seconds since the measured phase began.
fn pod_series(
    state: &RunState,
    value: impl Fn(&crate::scrape::GaugePoint) -> Option<f64>,
) -> Vec<(String, Vec<(f64, f64)>)> {
    let Some(server) = &state.server else {
        return Vec::new();
    };
    let origin = state
        .started_at
        .or_else(|| {
            server
                .pods
                .values()
                .flat_map(|p| p.series.first())
                .map(|g| g.at)
                .min()
        })
        .unwrap_or(crate::state::Wall(0));
    let many = server.pods.len() > 1;
    server
        .pods
        .values()
        .enumerate()
        .map(|(i, p)| {
            let pts = p
                .series
                .iter()
                // The baseline scrape comes just before the start: drawn at 0.
                .filter_map(|g| Some((((g.at.0 - origin.0) as f64 / 1e6).max(0.0), value(g)?)))
                .collect();
            let name = if many {
                format!("pod {}", i + 1)
            } else {
                "pod".into()
            };
            (name, pts)
        })
        .collect()
}

/// The server's KV cache usage at each scrape, per pod (vLLM's `kv_cache_usage_perc`).
pub fn kv_usage_over_time(state: &RunState) -> Result<String> {
    lines_over_time(
        "Server KV cache usage over time (per scrape)",
        "KV cache usage (%)",
        "no server metrics (--metrics-url)",
        &pod_series(state, |g| g.kv_usage.map(|v| v * 100.0)),
    )
}

/// Requests waiting in the server's queue at each scrape, per pod.
pub fn waiting_over_time(state: &RunState) -> Result<String> {
    lines_over_time(
        "Server requests waiting over time (per scrape)",
        "waiting requests",
        "no server metrics (--metrics-url)",
        &pod_series(state, |g| g.waiting),
    )
}

/// Median reuse efficiency per turn: of the previous turn's prompt and reply, the share
/// the server reported cached.
pub fn reuse_by_turn(p50: &std::collections::BTreeMap<u32, f64>) -> Result<String> {
    let title = "Reuse efficiency by turn (median)";
    if p50.is_empty() {
        return empty(title, "no later turn with cached tokens in usage");
    }
    let max_turn = p50.keys().copied().max().unwrap_or(2);
    let frame = Frame {
        title,
        x: 0.5..max_turn as f64 + 0.5,
        y: 0.0..105.0,
        x_desc: "turn",
        y_desc: "reused of reusable prefix (%)".into(),
        whole_x: Some(max_turn),
        legend: SeriesLabelPosition::LowerRight,
    };
    let pts: Vec<(f64, f64)> = p50.iter().map(|(t, p)| (*t as f64, *p)).collect();
    draw(frame, |chart| {
        let c = colour(2);
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label("median")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
        Ok(())
    })
}
