//! The HTML performance report (性能测试报告) of `txgate bench`.
//!
//! Ops hand these reports around by mail and keep them with change
//! records, often on machines without network access, so each report is one
//! self-contained file: inline SVG charts drawn here as polylines and bars,
//! an inline style sheet, no script, no external font or CSS. The markup is
//! well-formed XML as well as HTML, so tests (and other tools) can parse it.
//!
//! [`single`] reports one run; [`comparison`] sets several setups side by
//! side (the 2969 scenario: direct, through HAProxy, through txgate).

use crate::bench::{BenchResult, Quantile, Second, Summary};
use std::fmt::Write as _;

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:980px;color:#222}\
h1{font-size:1.6em;border-bottom:2px solid #1f77b4;padding-bottom:.3em}\
h2{font-size:1.2em;margin-top:1.8em;color:#1f4e79}\
table{border-collapse:collapse;margin:.5em 0}\
th,td{border:1px solid #bbb;padding:.25em .6em;text-align:right}\
th{background:#eef3f8}td.l,th.l{text-align:left}\
svg{display:block;margin:.5em 0;background:#fff}\
.note{color:#666;font-size:.85em}";

/// Escapes text for HTML and SVG content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One line of a line chart.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line chart: its title, axis labels, lines and (optional) x ticks.
#[derive(Debug, Clone, Default)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub lines: Vec<Line>,
    /// Fixed x ticks (value, label); default: evenly spaced numbers.
    pub x_ticks: Option<Vec<(f64, String)>>,
}

const W: f64 = 860.0;
const H: f64 = 300.0;
const ML: f64 = 72.0;
const MR: f64 = 150.0;
const MT: f64 = 30.0;
const MB: f64 = 48.0;

/// A "nice" step (1, 2 or 5 times a power of ten) for about `n` ticks.
fn nice_step(range: f64, n: f64) -> f64 {
    if !(range.is_finite() && range > 0.0) {
        return 1.0;
    }
    let raw = range / n;
    let p = 10f64.powf(raw.log10().floor());
    let f = raw / p;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * p
}

fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A tick label with as many decimals as the step needs.
fn tick(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()).clamp(0.0, 6.0) as usize
    };
    format!("{v:.decimals$}")
}

fn svg_open(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" \
         font-family=\"sans-serif\" font-size=\"12\" role=\"img\"><title>{}</title>\
         <text x=\"{ML}\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        esc(title),
        esc(title)
    );
}

/// Draws a line chart as SVG.
pub fn line_chart(c: &LineChart) -> String {
    let mut out = String::new();
    svg_open(&mut out, &c.title);
    let pts = c.lines.iter().flat_map(|l| l.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if let Some(t) = &c.x_ticks {
        for (x, _) in t {
            x0 = x0.min(*x);
            x1 = x1.max(*x);
        }
    }
    if !x0.is_finite() || !x1.is_finite() {
        let _ = write!(
            out,
            "<text x=\"{}\" y=\"{}\">无数据 (no data)</text></svg>",
            W / 2.0 - 40.0,
            H / 2.0
        );
        return out;
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let ystep = nice_step(y1.max(1e-9), 5.0);
    let ytop = ((y1 / ystep).ceil() * ystep).max(ystep);
    let pw = W - ML - MR;
    let ph = H - MT - MB;
    let sx = |x: f64| ML + (x - x0) / (x1 - x0) * pw;
    let sy = |y: f64| MT + ph - y / ytop * ph;
    // Grid and y ticks.
    let mut y = 0.0;
    while y <= ytop + ystep / 2.0 {
        let py = sy(y);
        let _ = write!(
            out,
            "<line x1=\"{ML}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#e5e5e5\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            ML + pw,
            ML - 6.0,
            py + 4.0,
            tick(y, ystep)
        );
        y += ystep;
    }
    // X ticks.
    let ticks: Vec<(f64, String)> = match &c.x_ticks {
        Some(t) => t.clone(),
        None => {
            let step = nice_step(x1 - x0, 8.0);
            let mut v = Vec::new();
            let mut x = (x0 / step).ceil() * step;
            while x <= x1 + step / 1000.0 {
                v.push((x, tick(x, step)));
                x += step;
            }
            v
        }
    };
    for (x, label) in &ticks {
        let px = sx(*x);
        let _ = write!(
            out,
            "<line x1=\"{px:.1}\" y1=\"{:.1}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#999\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            MT + ph,
            MT + ph + 5.0,
            MT + ph + 18.0,
            esc(label)
        );
    }
    // Axes and labels.
    let _ = write!(
        out,
        "<line x1=\"{ML}\" y1=\"{MT}\" x2=\"{ML}\" y2=\"{:.1}\" stroke=\"#333\"/>\
         <line x1=\"{ML}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">{}</text>",
        MT + ph,
        MT + ph,
        ML + pw,
        MT + ph,
        ML + pw / 2.0,
        H - 8.0,
        esc(&c.x_label),
        MT + ph / 2.0,
        MT + ph / 2.0,
        esc(&c.y_label)
    );
    for (i, l) in c.lines.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut pts = String::new();
        for &(x, y) in &l.points {
            let _ = write!(pts, "{:.1},{:.1} ", sx(x), sy(y));
        }
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            pts.trim_end()
        );
        if l.points.len() == 1 {
            let (x, y) = l.points[0];
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>",
                sx(x),
                sy(y)
            );
        }
        let ly = MT + 10.0 + 18.0 * i as f64;
        let lx = ML + pw + 12.0;
        let _ = write!(
            out,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"14\" height=\"4\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            ly - 4.0,
            lx + 20.0,
            ly + 2.0,
            esc(&l.name)
        );
    }
    out.push_str("</svg>");
    out
}

/// One bar: its label, value and optional range (min–max whisker).
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub range: Option<(f64, f64)>,
}

/// Draws a vertical bar chart as SVG.
pub fn bar_chart(title: &str, y_label: &str, bars: &[Bar]) -> String {
    let mut out = String::new();
    svg_open(&mut out, title);
    let top = bars
        .iter()
        .map(|b| b.range.map_or(b.value, |(_, hi)| hi.max(b.value)))
        .fold(0.0f64, f64::max);
    let ystep = nice_step(top.max(1e-9), 5.0);
    let ytop = ((top / ystep).ceil() * ystep).max(ystep);
    let pw = W - ML - MR;
    let ph = H - MT - MB;
    let sy = |y: f64| MT + ph - y / ytop * ph;
    let mut y = 0.0;
    while y <= ytop + ystep / 2.0 {
        let py = sy(y);
        let _ = write!(
            out,
            "<line x1=\"{ML}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#e5e5e5\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            ML + pw,
            ML - 6.0,
            py + 4.0,
            tick(y, ystep)
        );
        y += ystep;
    }
    let n = bars.len().max(1) as f64;
    let slot = pw / n;
    let bw = (slot * 0.6).min(90.0);
    for (i, b) in bars.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let cx = ML + slot * (i as f64 + 0.5);
        let py = sy(b.value.max(0.0));
        let _ = write!(
            out,
            "<rect x=\"{:.1}\" y=\"{py:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" fill=\"{color}\" opacity=\"0.85\"/>\
             <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
             <text x=\"{cx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            cx - bw / 2.0,
            (MT + ph - py).max(0.0),
            (py - 6.0).max(MT + 10.0),
            num(b.value),
            MT + ph + 18.0,
            esc(&b.label)
        );
        if let Some((lo, hi)) = b.range {
            let (plo, phi) = (sy(lo), sy(hi));
            let _ = write!(
                out,
                "<line x1=\"{cx:.1}\" y1=\"{plo:.1}\" x2=\"{cx:.1}\" y2=\"{phi:.1}\" stroke=\"#222\"/>\
                 <line x1=\"{:.1}\" y1=\"{plo:.1}\" x2=\"{:.1}\" y2=\"{plo:.1}\" stroke=\"#222\"/>\
                 <line x1=\"{:.1}\" y1=\"{phi:.1}\" x2=\"{:.1}\" y2=\"{phi:.1}\" stroke=\"#222\"/>",
                cx - 6.0,
                cx + 6.0,
                cx - 6.0,
                cx + 6.0
            );
        }
    }
    let _ = write!(
        out,
        "<line x1=\"{ML}\" y1=\"{MT}\" x2=\"{ML}\" y2=\"{:.1}\" stroke=\"#333\"/>\
         <line x1=\"{ML}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#333\"/>\
         <text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">{}</text>",
        MT + ph,
        MT + ph,
        ML + pw,
        MT + ph,
        MT + ph / 2.0,
        MT + ph / 2.0,
        esc(y_label)
    );
    out.push_str("</svg>");
    out
}

/// The x position of a percentile on a "nines" axis: 90% is 1, 99% is 2…
fn nines(p: f64) -> f64 {
    let rest = (100.0 - p).max(1e-4) / 100.0;
    (1.0 / rest).log10().min(6.0)
}

fn nines_ticks() -> Vec<(f64, String)> {
    ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
        .map(|(i, l)| (i as f64, l.to_string()))
        .collect()
}

fn distribution_line(name: &str, d: &[Quantile]) -> Line {
    Line {
        name: name.to_string(),
        points: d
            .iter()
            .map(|q| (nines(q.percentile), q.latency_us as f64 / 1000.0))
            .collect(),
    }
}

fn series_line(name: &str, s: &[Second], f: impl Fn(&Second) -> f64) -> Line {
    Line {
        name: name.to_string(),
        points: s.iter().map(|x| (x.t, f(x))).collect(),
    }
}

fn head(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\" xmlns=\"http://www.w3.org/1999/xhtml\"><head>\
         <meta charset=\"utf-8\"/><title>{}</title><style>{STYLE}</style></head><body>\n\
         <h1>{}</h1>\n",
        esc(title),
        esc(title)
    );
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>], left_cols: usize) {
    out.push_str("<table><tr>");
    for (i, h) in header.iter().enumerate() {
        let class = if i < left_cols { " class=\"l\"" } else { "" };
        let _ = write!(out, "<th{class}>{}</th>", esc(h));
    }
    out.push_str("</tr>\n");
    for r in rows {
        out.push_str("<tr>");
        for (i, c) in r.iter().enumerate() {
            let class = if i < left_cols { " class=\"l\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", esc(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn h2(out: &mut String, zh: &str, en: &str) {
    let _ = writeln!(out, "<h2>{} ({})</h2>", esc(zh), esc(en));
}

fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn machine_section(out: &mut String, m: &crate::bench::Machine) {
    h2(out, "测试环境", "Machine");
    table(
        out,
        &["项目 item", "值 value"],
        &[
            vec!["CPU 核数 (nproc)".into(), m.nproc.to_string()],
            vec!["CPU 型号 (model)".into(), m.cpu_model.clone()],
            vec!["内核 (kernel)".into(), m.kernel.clone()],
            vec!["内存 (memory)".into(), format!("{} MiB", m.memory_mib)],
        ],
        1,
    );
}

fn workload_text(r: &BenchResult) -> String {
    r.settings
        .workload
        .iter()
        .map(|w| {
            let files: Vec<&str> = w
                .fixtures
                .iter()
                .map(|f| f.rsplit('/').next().unwrap_or(f))
                .collect();
            format!("{} ×{} ({})", w.code, w.weight, files.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn settings_rows(r: &BenchResult) -> Vec<Vec<String>> {
    let s = &r.settings;
    vec![
        vec![
            "目标 (target)".into(),
            format!("{} ({})", s.target, r.label),
        ],
        vec!["交易 (workload)".into(), workload_text(r)],
        vec![
            "模式 (load model)".into(),
            match s.rate {
                Some(rate) => format!(
                    "开环 open loop, {rate} req/s, 延迟自计划发送时刻起算 (from planned send time)"
                ),
                None => "闭环 closed loop (each connection sends when its answer came)".into(),
            },
        ],
        vec!["连接数 (connections)".into(), s.connections.to_string()],
        vec![
            "连接方式 (connection mode)".into(),
            if s.long {
                "长连接 long (persistent)".into()
            } else if s.rst_close {
                "短连接 short (one connection per request, closed with RST: no TIME_WAIT at the generator)".into()
            } else {
                "短连接 short (one connection per request)".into()
            },
        ],
        vec!["预热 (warm-up)".into(), format!("{:.1} s", s.warmup_s)],
        vec![
            "测量时长 (duration)".into(),
            format!("{:.1} s", s.duration_s),
        ],
        vec!["请求上限 (max requests)".into(), s.max_requests.to_string()],
        vec!["超时 (timeout)".into(), format!("{} ms", s.timeout_ms)],
        vec!["报文长度域 (framing)".into(), s.framing.clone()],
    ]
}

/// The report of one run.
pub fn single(r: &BenchResult) -> String {
    let mut out = String::new();
    head(&mut out, "性能测试报告 (Performance test report)");
    let _ = writeln!(
        out,
        "<p class=\"note\">txgate bench, {}; 开始时间 (started, unix) {}</p>",
        esc(&r.label),
        r.started_unix
    );
    h2(&mut out, "测试场景与参数", "Scenario and settings");
    table(
        &mut out,
        &["参数 setting", "值 value"],
        &settings_rows(r),
        2,
    );

    h2(&mut out, "结果汇总", "Summary");
    let t = &r.totals;
    let l = &r.latency_us;
    table(
        &mut out,
        &[
            "TPS",
            "请求 requests",
            "应答 answered",
            "错误 errors",
            "时长 s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
        ],
        &[vec![
            format!("{:.1}", t.tps),
            t.requests.to_string(),
            t.answered.to_string(),
            t.errors.to_string(),
            format!("{:.2}", t.elapsed_s),
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999),
            ms(l.max),
        ]],
        0,
    );

    h2(&mut out, "吞吐量随时间变化", "TPS over time");
    out.push_str(&line_chart(&LineChart {
        title: "每秒交易数 TPS".into(),
        x_label: "时间 time (s)".into(),
        y_label: "TPS".into(),
        lines: vec![series_line("TPS", &r.series, |s| s.tps)],
        x_ticks: None,
    }));

    h2(
        &mut out,
        "延迟百分位随时间变化",
        "Latency percentiles over time",
    );
    out.push_str(&line_chart(&LineChart {
        title: "每秒延迟百分位 latency percentiles per second".into(),
        x_label: "时间 time (s)".into(),
        y_label: "延迟 latency (ms)".into(),
        lines: vec![
            series_line("p50", &r.series, |s| s.p50_us as f64 / 1000.0),
            series_line("p90", &r.series, |s| s.p90_us as f64 / 1000.0),
            series_line("p99", &r.series, |s| s.p99_us as f64 / 1000.0),
            series_line("p99.9", &r.series, |s| s.p999_us as f64 / 1000.0),
        ],
        x_ticks: None,
    }));

    h2(&mut out, "延迟分布", "Latency distribution");
    let rows: Vec<Vec<String>> = r
        .distribution
        .iter()
        .map(|q| vec![format!("{}%", q.percentile), ms(q.latency_us)])
        .collect();
    table(
        &mut out,
        &["百分位 percentile", "延迟 latency ms"],
        &rows,
        0,
    );
    out.push_str(&line_chart(&LineChart {
        title: "延迟分布 latency by percentile".into(),
        x_label: "百分位 percentile".into(),
        y_label: "延迟 latency (ms)".into(),
        lines: vec![distribution_line("latency", &r.distribution)],
        x_ticks: Some(nines_ticks()),
    }));

    h2(&mut out, "响应码统计", "Response codes");
    let answered = r.totals.answered.max(1) as f64;
    let rows: Vec<Vec<String>> = r
        .codes
        .iter()
        .map(|(c, n)| {
            vec![
                c.clone(),
                n.to_string(),
                format!("{:.2}%", *n as f64 * 100.0 / answered),
            ]
        })
        .collect();
    table(
        &mut out,
        &["响应码 code", "次数 count", "占比 share"],
        &rows,
        1,
    );

    h2(&mut out, "错误统计", "Errors");
    if r.errors.is_empty() {
        out.push_str("<p>无错误 (no errors): 每个应答报文头可解析，流水号与请求一致 (every answer's header parsed and echoed its SeqNo).</p>\n");
    } else {
        let rows: Vec<Vec<String>> = r
            .errors
            .iter()
            .map(|(k, n)| vec![k.clone(), n.to_string()])
            .collect();
        table(&mut out, &["类型 kind", "次数 count"], &rows, 1);
    }

    h2(&mut out, "资源消耗", "CPU use");
    let rows: Vec<Vec<String>> = r
        .cpu
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.pid.to_string(),
                format!("{:.3}", c.cpu_us as f64 / 1e6),
                format!("{:.1}", c.us_per_msg),
                format!("{:.2}", c.cores),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "进程 process",
            "pid",
            "CPU s",
            "µs/消息 per msg",
            "核 cores",
        ],
        &rows,
        1,
    );
    machine_section(&mut out, &r.machine);
    out.push_str("</body></html>\n");
    out
}

fn mode_name(long: bool) -> &'static str {
    if long {
        "长连接 long"
    } else {
        "短连接 short"
    }
}

/// The run of a setup whose TPS is the median of its runs.
fn median_run<'a>(s: &'a Summary, label: &str, long: bool) -> Option<&'a BenchResult> {
    let mut of: Vec<&BenchResult> = s
        .runs
        .iter()
        .filter(|r| r.label == label && r.settings.long == long)
        .collect();
    of.sort_by(|a, b| a.totals.tps.total_cmp(&b.totals.tps));
    of.get(of.len() / 2).copied()
}

/// The side-by-side report of several setups (`txgate bench --summarize`).
pub fn comparison(s: &Summary) -> String {
    let mut out = String::new();
    head(
        &mut out,
        "性能测试报告 (Performance test report)：对比测试 (comparison)",
    );
    let base = s.baseline.clone().unwrap_or_default();
    if let Some(first) = s.runs.first() {
        h2(&mut out, "测试场景与参数", "Scenario and settings");
        let mut rows = settings_rows(first);
        rows.retain(|r| !r[0].starts_with("目标") && !r[0].starts_with("连接方式"));
        let labels: Vec<String> =
            s.setups
                .iter()
                .map(|x| x.label.clone())
                .fold(Vec::new(), |mut v, l| {
                    if !v.contains(&l) {
                        v.push(l);
                    }
                    v
                });
        rows.insert(0, vec!["对比对象 (setups)".into(), labels.join(" / ")]);
        if let Some(short) = s.runs.iter().find(|r| !r.settings.long) {
            rows.push(vec![
                "短连接关闭方式 (short close)".into(),
                if short.settings.rst_close {
                    "RST (SO_LINGER 0): no TIME_WAIT at the generator".into()
                } else {
                    "FIN (TIME_WAIT at the generator)".into()
                },
            ]);
        }
        rows.push(vec![
            "轮次 (rounds)".into(),
            format!("{} runs, interleaved", s.runs.len()),
        ]);
        table(&mut out, &["参数 setting", "值 value"], &rows, 2);
    }

    h2(&mut out, "结果汇总", "Summary");
    let names = crate::bench::cpu_names(s);
    let mut header: Vec<String> = [
        "对象 setup",
        "连接 mode",
        "轮次 runs",
        "TPS min",
        "TPS median",
        "TPS max",
        "p50 ms",
        "p99 ms",
        "错误 errors",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    for n in &names {
        header.push(format!("{n} CPU µs/msg"));
    }
    header.push(format!("TPS / {base}"));
    let rows: Vec<Vec<String>> = s
        .setups
        .iter()
        .map(|st| {
            let mut r = vec![
                st.label.clone(),
                format!("{} × {}", st.connections, mode_name(st.long)),
                st.runs.to_string(),
                format!("{:.0}", st.tps_min),
                format!("{:.0}", st.tps_median),
                format!("{:.0}", st.tps_max),
                format!("{:.3}", st.p50_ms_median),
                format!("{:.3}", st.p99_ms_median),
                st.errors.to_string(),
            ];
            for n in &names {
                r.push(
                    st.cpu_us_per_msg
                        .get(n)
                        .map_or("–".into(), |v| format!("{v:.1}")),
                );
            }
            r.push(
                st.ratio_to_baseline
                    .map_or("–".into(), |v| format!("{v:.2}")),
            );
            r
        })
        .collect();
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    table(&mut out, &header_refs, &rows, 2);

    for long in [true, false] {
        let of: Vec<_> = s.setups.iter().filter(|x| x.long == long).collect();
        if of.is_empty() {
            continue;
        }
        let mode = mode_name(long);
        h2(
            &mut out,
            &format!("吞吐量对比：{mode}"),
            "TPS, median with min–max",
        );
        let bars: Vec<Bar> = of
            .iter()
            .map(|x| Bar {
                label: x.label.clone(),
                value: x.tps_median,
                range: Some((x.tps_min, x.tps_max)),
            })
            .collect();
        out.push_str(&bar_chart(&format!("TPS ({mode})"), "TPS", &bars));
        let bars: Vec<Bar> = of
            .iter()
            .map(|x| Bar {
                label: x.label.clone(),
                value: x.p99_ms_median,
                range: None,
            })
            .collect();
        h2(
            &mut out,
            &format!("p99 延迟对比：{mode}"),
            "p99 latency, median of runs",
        );
        out.push_str(&bar_chart(&format!("p99 ms ({mode})"), "p99 (ms)", &bars));

        h2(
            &mut out,
            &format!("吞吐量随时间变化：{mode}"),
            "TPS over time, median run of each setup",
        );
        let lines: Vec<Line> = of
            .iter()
            .filter_map(|x| median_run(s, &x.label, long))
            .map(|r| series_line(&r.label, &r.series, |p| p.tps))
            .collect();
        out.push_str(&line_chart(&LineChart {
            title: format!("TPS ({mode})"),
            x_label: "时间 time (s)".into(),
            y_label: "TPS".into(),
            lines,
            x_ticks: None,
        }));
        h2(
            &mut out,
            &format!("p99 延迟随时间变化：{mode}"),
            "p99 latency over time, median run",
        );
        let lines: Vec<Line> = of
            .iter()
            .filter_map(|x| median_run(s, &x.label, long))
            .map(|r| series_line(&r.label, &r.series, |p| p.p99_us as f64 / 1000.0))
            .collect();
        out.push_str(&line_chart(&LineChart {
            title: format!("p99 ms ({mode})"),
            x_label: "时间 time (s)".into(),
            y_label: "p99 (ms)".into(),
            lines,
            x_ticks: None,
        }));
        h2(
            &mut out,
            &format!("延迟分布：{mode}"),
            "Latency distribution, median run",
        );
        let lines: Vec<Line> = of
            .iter()
            .filter_map(|x| median_run(s, &x.label, long))
            .map(|r| distribution_line(&r.label, &r.distribution))
            .collect();
        out.push_str(&line_chart(&LineChart {
            title: format!("延迟分布 latency by percentile ({mode})"),
            x_label: "百分位 percentile".into(),
            y_label: "延迟 latency (ms)".into(),
            lines,
            x_ticks: Some(nines_ticks()),
        }));
    }

    h2(&mut out, "各轮结果", "Every run");
    let rows: Vec<Vec<String>> = s
        .runs
        .iter()
        .map(|r| {
            let codes: Vec<String> = r.codes.iter().map(|(c, n)| format!("{c}:{n}")).collect();
            vec![
                r.label.clone(),
                mode_name(r.settings.long).into(),
                format!("{:.0}", r.totals.tps),
                ms(r.latency_us.p50),
                ms(r.latency_us.p99),
                ms(r.latency_us.p999),
                r.totals.errors.to_string(),
                codes.join(" "),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "对象 setup",
            "连接 mode",
            "TPS",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "错误 errors",
            "响应码 codes",
        ],
        &rows,
        2,
    );
    machine_section(&mut out, &s.machine);
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(esc("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(1000.0, 5.0), 200.0);
        assert_eq!(nice_step(7.0, 5.0), 2.0);
        assert_eq!(nice_step(0.0, 5.0), 1.0);
    }

    #[test]
    fn nines_axis() {
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(100.0), 6.0);
        assert_eq!(nines(0.0), 0.0);
    }

    #[test]
    fn charts_are_svg_even_without_data() {
        let c = line_chart(&LineChart::default());
        assert!(c.starts_with("<svg") && c.ends_with("</svg>"));
        let b = bar_chart("t", "y", &[]);
        assert!(b.starts_with("<svg") && b.ends_with("</svg>"));
        let c = line_chart(&LineChart {
            title: "x<y".into(),
            lines: vec![Line {
                name: "a&b".into(),
                points: vec![(0.0, 1.0), (1.0, 3.0)],
            }],
            ..LineChart::default()
        });
        assert!(c.contains("<polyline") && c.contains("a&amp;b") && c.contains("x&lt;y"));
    }
}
