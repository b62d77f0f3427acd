//! What the reports show of an open loop: offered against achieved rate, and the
//! conversations active over time.

use plotters::prelude::*;

use crate::state::open_loop::OpenLoopStats;

/// Element id of the chart of conversations active over time (open loop only).
pub const ACTIVE_CHART_ID: &str = "chart-active-conversations";

/// At most this many samples of the active count in the text summary.
const TEXT_SAMPLES: usize = 20;

/// The summary's lines about the open loop.
pub fn lines(s: &OpenLoopStats) -> Vec<String> {
    let mut out = vec![
        format!(
            "Open loop: {} new conversations/s for {} s (Poisson arrivals; they start whether or not the server keeps up, so parallel does not apply)",
            s.rate_per_s, s.duration_s
        ),
        format!(
            "  Offered: {} conversations in {} s ({:.2}/s)",
            s.planned, s.duration_s, s.offered_per_s
        ),
        format!(
            "  Achieved: {} first turns answered, {}/s; {} conversations started, {} ended",
            s.first_turns_ok,
            s.achieved_per_s
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "N/A".into()),
            s.started,
            s.ended
        ),
    ];
    if !s.active.is_empty() {
        let step = s.active.len().div_ceil(TEXT_SAMPLES);
        let samples: Vec<String> = s
            .active
            .iter()
            .step_by(step)
            .map(|(_, n)| n.to_string())
            .collect();
        out.push(format!(
            "  Active conversations: peak {}; every {step} s from the start: {}",
            s.peak_active,
            samples.join(" ")
        ));
    }
    out
}

/// The user-info data keys of an open loop (without prefix).
pub fn data(s: &OpenLoopStats) -> Vec<(&'static str, String)> {
    vec![
        (
            "offered_conversations_per_second",
            format!("{:.2}", s.offered_per_s),
        ),
        (
            "achieved_conversations_per_second",
            s.achieved_per_s
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "N/A".into()),
        ),
        ("peak_active_conversations", s.peak_active.to_string()),
    ]
}

/// Conversations active in each second of the run, as SVG.
pub fn active_chart(s: &OpenLoopStats) -> Result<String, String> {
    let err = |e: &dyn std::fmt::Debug| format!("drawing a chart: {e:?}");
    let (w, h) = (720u32, 340u32);
    let xmax = s.active.last().map(|p| p.0).unwrap_or(0.0).max(1.0) * 1.05;
    let ymax = (s.peak_active.max(1) as f64) * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Conversations active over time (offered {:.2}/s, achieved {})",
                    s.offered_per_s,
                    s.achieved_per_s
                        .map(|v| format!("{v:.2}/s"))
                        .unwrap_or_else(|| "N/A".into())
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..xmax, 0.0..ymax)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("time since start (s)")
            .y_desc("active conversations")
            .draw()
            .map_err(|e| err(&e))?;
        let blue = RGBColor(31, 119, 180);
        chart
            .draw_series(LineSeries::new(
                s.active.iter().map(|(t, n)| (*t, *n as f64)),
                blue.stroke_width(2),
            ))
            .map_err(|e| err(&e))?;
        let end = RGBColor(160, 160, 160);
        chart
            .draw_series(LineSeries::new(
                vec![(s.duration_s, 0.0), (s.duration_s, ymax)],
                end,
            ))
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}
