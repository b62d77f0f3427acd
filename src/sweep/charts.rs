//! The charts of a sweep or a capacity search: TTFT, ITL, E2E and throughput against
//! users, one point per level, on a logarithmic users axis (levels are usually
//! geometric: 1, 4, 16, 64).

use plotters::coord::combinators::{BindKeyPoints, IntoLogRange, LogCoord, WithKeyPoints};
use plotters::prelude::*;

use super::Level;

/// Element ids of the four charts, in order (tests check them all).
pub const CHART_IDS: &[&str] = &[
    "chart-ttft-vs-users",
    "chart-itl-vs-users",
    "chart-e2e-vs-users",
    "chart-throughput-vs-users",
];

const W: u32 = 720;
const H: u32 = 340;
const COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];
const RED: RGBColor = RGBColor(200, 30, 30);

type Series = (&'static str, Vec<(f64, f64)>);

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("drawing a chart: {e:?}")
}

/// The users axis: a little wider than the levels, never empty.
fn x_range(levels: &[&Level]) -> std::ops::Range<f64> {
    let lo = levels.iter().map(|l| l.users).min().unwrap_or(1) as f64;
    let hi = levels.iter().map(|l| l.users).max().unwrap_or(1) as f64;
    (lo / 1.25).max(0.5)..(hi * 1.25).max(lo * 2.0)
}

/// The users axis, logarithmic, with a tick at every level.
fn x_axis(levels: &[&Level]) -> WithKeyPoints<LogCoord<f64>> {
    let ticks = levels.iter().map(|l| l.users as f64).collect();
    x_range(levels).log_scale().with_key_points(ticks)
}

/// Lines against users; `hline`: a labelled horizontal line (a threshold);
/// `right`: one more line on an axis of its own, on the right.
fn draw(
    title: &str,
    y_desc: &str,
    levels: &[&Level],
    series: &[Series],
    hline: Option<(String, f64)>,
    right: Option<(&str, Series)>,
) -> Result<String, String> {
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|v| v.1))
        .chain(hline.iter().map(|h| h.1))
        .fold(0.0f64, f64::max);
    let ymax = if ymax > 0.0 { ymax * 1.1 } else { 1.0 };
    let rmax = right
        .as_ref()
        .map(|(_, (_, pts))| pts.iter().map(|p| p.1).fold(0.0f64, f64::max))
        .filter(|m| *m > 0.0)
        .map_or(1.0, |m| m * 1.1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        // The secondary axis is bound before the mesh is drawn, so the right label area
        // belongs to it alone (the primary's labels would overlap it otherwise).
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .right_y_label_area_size(if right.is_some() { 70 } else { 0 })
            .build_cartesian_2d(x_axis(levels), 0.0..ymax)
            .map_err(err)?
            .set_secondary_coord(x_axis(levels), 0.0..rmax);
        chart
            .configure_mesh()
            .x_desc("users (log scale)")
            .y_desc(y_desc)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(err)?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let c = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?
                .label(*name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
                .map_err(err)?;
        }
        if let Some((label, y)) = hline {
            let x = x_range(levels);
            chart
                .draw_series(LineSeries::new(
                    vec![(x.start, y), (x.end, y)],
                    RED.stroke_width(1),
                ))
                .map_err(err)?
                .label(label)
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
        }
        if let Some((desc, (name, pts))) = right {
            chart
                .configure_secondary_axes()
                .y_desc(desc)
                .draw()
                .map_err(err)?;
            let c = COLOURS[series.len() % COLOURS.len()];
            chart
                .draw_secondary_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(err)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_secondary_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Points of one figure of each level that has it.
fn points(levels: &[&Level], f: impl Fn(&Level) -> Option<f64>) -> Vec<(f64, f64)> {
    levels
        .iter()
        .filter_map(|l| Some((l.users as f64, f(l)?)))
        .collect()
}

/// The four charts, as SVG (or why one could not be drawn), in [`CHART_IDS`] order.
/// `levels` in ascending users.
pub fn all(levels: &[&Level]) -> Vec<Result<String, String>> {
    let threshold = levels
        .first()
        .map(|l| l.report.state.meta.thresholds.ttft_p95_ms);
    let s = |l: &Level| l.report.stats.clone();
    vec![
        draw(
            "TTFT against users",
            "TTFT (ms)",
            levels,
            &[
                ("P50", points(levels, |l| Some(s(l).ttft?.p50_ms))),
                ("P95", points(levels, |l| Some(s(l).ttft?.p95_ms))),
                ("P99", points(levels, |l| Some(s(l).ttft?.p99_ms))),
            ],
            threshold.map(|t| (format!("P95 threshold {t:.0} ms"), t)),
            None,
        ),
        draw(
            "Inter-token latency against users",
            "ITL (ms)",
            levels,
            &[
                ("P50", points(levels, |l| Some(s(l).itl?.p50_ms))),
                ("P95", points(levels, |l| Some(s(l).itl?.p95_ms))),
            ],
            None,
            None,
        ),
        draw(
            "End-to-end latency against users",
            "E2E (ms)",
            levels,
            &[
                ("P50", points(levels, |l| Some(s(l).e2e?.p50_ms))),
                ("P95", points(levels, |l| Some(s(l).e2e?.p95_ms))),
            ],
            None,
            None,
        ),
        draw(
            "Throughput against users",
            "requests/s",
            levels,
            &[(
                "requests/s",
                points(levels, |l| Some(l.report.stats.requests_per_second)),
            )],
            None,
            Some((
                "output tokens/s",
                (
                    "output tokens/s",
                    points(levels, |l| Some(l.report.stats.output_tokens_per_second)),
                ),
            )),
        ),
    ]
}
