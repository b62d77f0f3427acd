//! The report's charts, drawn as SVG with plotters (text sizes are estimated, so no
//! font files are needed: the static binary stays self-contained).

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// One request as the charts see it (a row of results.json's `requests`).
#[derive(Debug, Clone, Default)]
pub struct Point {
    pub turn: u32,
    pub start_s: f64,
    pub ttft_ms: Option<f64>,
    pub e2e_ms: Option<f64>,
    pub output_tokens: Option<f64>,
    pub prompt_tokens: Option<f64>,
    pub cached_tokens: Option<f64>,
    pub error: Option<String>,
}

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
    let title = "TTFT by turn (median and P95)";
    if turns.is_empty() {
        return empty(title, "no successful request");
    }
    let max_turn = turns.iter().map(|t| t.0).max().unwrap_or(1);
    let frame = Frame {
        title,
        x: 0.5..max_turn as f64 + 0.5,
        y: 0.0..top(turns.iter().map(|t| t.2).fold(0.0, f64::max)),
        x_desc: "turn",
        y_desc: "TTFT (ms)".into(),
        whole_x: Some(max_turn),
        legend: SeriesLabelPosition::UpperRight,
    };
    draw(frame, |chart| {
        for (i, name) in ["median", "P95"].into_iter().enumerate() {
            let pts: Vec<(f64, f64)> = turns
                .iter()
                .map(|t| (t.0 as f64, if i == 0 { t.1 } else { t.2 }))
                .collect();
            let c = colour(i);
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?
                .label(name)
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

/// Cumulative distribution of TTFT, with the P95 threshold marked.
pub fn ttft_cdf(points: &[Point], threshold_ms: f64) -> Result<String> {
    let title = "TTFT distribution (cumulative)";
    let mut v: Vec<f64> = points
        .iter()
        .filter(|p| p.error.is_none())
        .filter_map(|p| p.ttft_ms)
        .collect();
    if v.is_empty() {
        return empty(title, "no successful request");
    }
    v.sort_by(f64::total_cmp);
    let xmax = top(v[v.len() - 1].max(threshold_ms));
    let n = v.len() as f64;
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
        let step = (v.len() / 2000).max(1);
        let curve: Vec<(f64, f64)> = v
            .iter()
            .enumerate()
            .step_by(step)
            .map(|(i, x)| (*x, (i + 1) as f64 / n * 100.0))
            .collect();
        chart
            .draw_series(LineSeries::new(curve, colour(0).stroke_width(2)))
            .map_err(err)?
            .label("TTFT")
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour(0).stroke_width(2))
            });
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

/// A scatter of one value of every request over the run's time, coloured by turn.
fn scatter_by_turn(
    points: &[Point],
    title: &str,
    y_desc: &str,
    value: impl Fn(&Point) -> Option<f64>,
) -> Result<String> {
    let pts: Vec<(f64, f64, u32)> = points
        .iter()
        .filter(|p| p.error.is_none())
        .filter_map(|p| Some((p.start_s, value(p)?, p.turn)))
        .collect();
    if pts.is_empty() {
        return empty(title, "no successful request");
    }
    let max_turn = pts.iter().map(|p| p.2).max().unwrap_or(1);
    let frame = Frame {
        title,
        x: 0.0..top(pts.iter().map(|p| p.0).fold(0.0, f64::max)),
        y: 0.0..top(pts.iter().map(|p| p.1).fold(0.0, f64::max)),
        x_desc: "time since start (s)",
        y_desc: y_desc.into(),
        whole_x: None,
        legend: SeriesLabelPosition::UpperRight,
    };
    draw(frame, |chart| {
        // Thin out huge runs: a chart of 5,000 points per turn shows the same picture.
        let step = (pts.len() / 20_000).max(1);
        for turn in 1..=max_turn {
            let c = colour(turn as usize - 1);
            let series: Vec<(f64, f64)> = pts
                .iter()
                .filter(|p| p.2 == turn)
                .step_by(step)
                .map(|p| (p.0, p.1))
                .collect();
            if series.is_empty() {
                continue;
            }
            let drawn = chart
                .draw_series(series.into_iter().map(|p| Circle::new(p, 2, c.filled())))
                .map_err(err)?;
            if turn <= 10 {
                drawn
                    .label(format!("turn {turn}"))
                    .legend(move |(x, y)| Circle::new((x + 6, y), 3, c.filled()));
            }
        }
        Ok(())
    })
}

pub fn ttft_over_time(points: &[Point]) -> Result<String> {
    scatter_by_turn(
        points,
        "TTFT of every request over time, by turn",
        "TTFT (ms)",
        |p| p.ttft_ms,
    )
}

pub fn e2e_over_time(points: &[Point]) -> Result<String> {
    scatter_by_turn(
        points,
        "End-to-end latency of every request over time",
        "E2E (ms)",
        |p| p.e2e_ms,
    )
}

/// Output tokens per second of each request (tokens after the first ÷ decode time).
pub fn tokens_per_second(points: &[Point]) -> Result<String> {
    scatter_by_turn(
        points,
        "Output tokens per second of every request",
        "tokens/s",
        |p| {
            let (n, e2e, ttft) = (p.output_tokens?, p.e2e_ms?, p.ttft_ms?);
            (n > 1.0 && e2e > ttft).then(|| (n - 1.0) / ((e2e - ttft) / 1000.0))
        },
    )
}

/// Mean prompt and server-reported cached tokens per turn.
pub fn cached_by_turn(points: &[Point]) -> Result<String> {
    let title = "Server-reported cached tokens per turn (mean)";
    let mut per_turn: std::collections::BTreeMap<u32, (f64, f64, f64)> = Default::default();
    for p in points.iter().filter(|p| p.error.is_none()) {
        if let (Some(prompt), Some(cached)) = (p.prompt_tokens, p.cached_tokens) {
            let e = per_turn.entry(p.turn).or_default();
            e.0 += prompt;
            e.1 += cached;
            e.2 += 1.0;
        }
    }
    if per_turn.is_empty() {
        return empty(title, "the server reported no usage");
    }
    let max_turn = *per_turn.keys().max().unwrap_or(&1);
    let frame = Frame {
        title,
        x: 0.5..max_turn as f64 + 0.5,
        y: 0.0..top(per_turn.values().map(|v| v.0 / v.2).fold(0.0, f64::max)),
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
                .map(|(t, v)| {
                    let y = if i == 0 { v.0 / v.2 } else { v.1 / v.2 };
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

/// Failed requests per time bucket, one line per error kind.
pub fn errors_over_time(points: &[Point], wall_s: f64) -> Result<String> {
    let title = "Errors over time, by kind";
    let failed: Vec<(f64, &str)> = points
        .iter()
        .filter_map(|p| Some((p.start_s, p.error.as_deref()?)))
        .collect();
    if failed.is_empty() {
        return empty(title, "no request failed");
    }
    let span = top(wall_s.max(failed.iter().map(|f| f.0).fold(0.0, f64::max)));
    let buckets = 40usize;
    let width = span / buckets as f64;
    let mut kinds: Vec<&str> = failed.iter().map(|f| f.1).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut counts = vec![vec![0u32; buckets]; kinds.len()];
    for (t, k) in &failed {
        let b = ((t / width) as usize).min(buckets - 1);
        let ki = kinds.iter().position(|x| x == k).expect("kind listed");
        counts[ki][b] += 1;
    }
    let frame = Frame {
        title,
        x: 0.0..span,
        y: 0.0..top(counts.iter().flatten().copied().max().unwrap_or(1) as f64),
        x_desc: "time since start (s)",
        y_desc: format!("failed requests per {width:.1} s"),
        whole_x: None,
        legend: SeriesLabelPosition::UpperRight,
    };
    draw(frame, |chart| {
        for (ki, kind) in kinds.iter().enumerate() {
            let c = colour(ki + 3);
            let series: Vec<(f64, f64)> = counts[ki]
                .iter()
                .enumerate()
                .map(|(b, n)| ((b as f64 + 0.5) * width, *n as f64))
                .collect();
            chart
                .draw_series(LineSeries::new(series, c.stroke_width(2)))
                .map_err(err)?
                .label(kind.to_string())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        Ok(())
    })
}
