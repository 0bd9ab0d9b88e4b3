//! SVG chart primitives shared by the lab's reports and the web pages: a plot area with linear
//! scales and axes ([`Plot`]), "nice" ticks, the palette, legends, and the escaping they use.
//! Charts are plain SVG strings, self-contained (no scripts, no external assets).

use crate::report::money;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
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

/// Money for an axis tick: whole units without the cents.
pub fn tick_money(amount: i64, currency: &str) -> String {
    let m = money(amount, currency);
    m.strip_suffix(".00")
        .map(str::to_string)
        .or_else(|| {
            m.strip_suffix(&format!(".00 {currency}"))
                .map(|s| format!("{s} {currency}"))
        })
        .unwrap_or(m)
}

/// The charts' colours, in the order names are given them.
pub const PALETTE: &[&str] = &[
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1", "#edc948", "#9c755f",
];

/// "Nice" tick values covering `lo..=hi`.
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut out = Vec::new();
    let mut t = (lo / step).floor() * step;
    while t <= hi + step * 1e-9 {
        out.push(t);
        t += step;
    }
    out
}

/// A plot area with linear scales: the SVG is `w`×`h`, the margins leave room for the axes, and
/// the data ranges `x` and `y` map onto the area inside them.
pub struct Plot {
    pub w: f64,
    pub h: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
    pub x: (f64, f64),
    pub y: (f64, f64),
}

impl Plot {
    /// The report's chart size and margins; an empty range is widened to ±1 around its value.
    pub fn new(x: (f64, f64), y: (f64, f64)) -> Plot {
        let fix = |r: (f64, f64)| if r.1 > r.0 { r } else { (r.0 - 1.0, r.0 + 1.0) };
        Plot {
            w: 560.0,
            h: 320.0,
            left: 76.0,
            right: 16.0,
            top: 16.0,
            bottom: 44.0,
            x: fix(x),
            y: fix(y),
        }
    }
    /// The SVG x coordinate of the value `v`.
    pub fn px(&self, v: f64) -> f64 {
        self.left + (v - self.x.0) / (self.x.1 - self.x.0) * (self.w - self.left - self.right)
    }
    /// The SVG y coordinate of the value `v`.
    pub fn py(&self, v: f64) -> f64 {
        self.h
            - self.bottom
            - (v - self.y.0) / (self.y.1 - self.y.0) * (self.h - self.top - self.bottom)
    }
    /// Writes the opening `<svg>` tag, labelled for screen readers.
    pub fn open(&self, svg: &mut String, label: &str) {
        let _ = write!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" role="img" aria-label="{}" font-family="sans-serif" font-size="11">"#,
            self.w,
            self.h,
            escape(label)
        );
    }
    /// Axes with ticks; `fx`/`fy` format tick values.
    #[allow(clippy::too_many_arguments)]
    pub fn axes(
        &self,
        svg: &mut String,
        xlabel: &str,
        ylabel: &str,
        fx: &dyn Fn(f64) -> String,
        fy: &dyn Fn(f64) -> String,
        xt: &[f64],
        yt: &[f64],
    ) {
        let (x0, x1) = (self.left, self.w - self.right);
        let (y0, y1) = (self.h - self.bottom, self.top);
        let _ = write!(
            svg,
            r##"<g class="axis" stroke="#888"><line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}"/>"##
        );
        for &t in xt {
            if t < self.x.0 - 1e-9 || t > self.x.1 + 1e-9 {
                continue;
            }
            let x = self.px(t);
            let _ = write!(
                svg,
                r#"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{:.1}"/><text stroke="none" x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                y0 + 4.0,
                y0 + 16.0,
                escape(&fx(t))
            );
        }
        for &t in yt {
            if t < self.y.0 - 1e-9 || t > self.y.1 + 1e-9 {
                continue;
            }
            let y = self.py(t);
            let _ = write!(
                svg,
                r##"<line class="grid" stroke="#eee" x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}"/><text stroke="none" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 - 6.0,
                y + 4.0,
                escape(&fy(t))
            );
        }
        let _ = write!(
            svg,
            r#"<text stroke="none" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text stroke="none" transform="translate(12 {:.1}) rotate(-90)" text-anchor="middle">{}</text></g>"#,
            (x0 + x1) / 2.0,
            self.h - 6.0,
            escape(xlabel),
            (y0 + y1) / 2.0,
            escape(ylabel)
        );
    }
}

/// A chart's placeholder when there is nothing to plot (no deals).
pub fn empty_chart(label: &str) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 560 80" role="img" aria-label="{0}"><text x="280" y="44" text-anchor="middle">{0}: no deals</text></svg>"#,
        escape(label)
    )
}

/// One palette colour per name, in order (the same name keeps its colour across a report).
pub fn colors_for<'a>(names: impl Iterator<Item = &'a String>) -> BTreeMap<String, &'static str> {
    names
        .enumerate()
        .map(|(i, n)| (n.clone(), PALETTE[i % PALETTE.len()]))
        .collect()
}

/// A legend paragraph: one swatch per name, after `what: `.
pub fn legend<C: AsRef<str>>(colors: &BTreeMap<String, C>, what: &str) -> String {
    let mut s = format!(r#"<p class="legend">{}: "#, escape(what));
    for (b, c) in colors {
        let _ = write!(
            s,
            r#"<span><i style="background:{}"></i>{}</span> "#,
            c.as_ref(),
            escape(b)
        );
    }
    s.push_str("</p>");
    s
}

/// `n` colours, all different from each other and from `taken` (the colours already given,
/// say, to arms): the palette's colours not taken while they suffice, else `n` hues spread
/// evenly around the colour wheel.
pub fn distinct_colors(n: usize, taken: &[&str]) -> Vec<String> {
    let free: Vec<&str> = PALETTE
        .iter()
        .copied()
        .filter(|c| !taken.contains(c))
        .collect();
    if n <= free.len() {
        return free[..n].iter().map(|c| c.to_string()).collect();
    }
    (0..n)
        .map(|k| format!("hsl({:.1},65%,42%)", k as f64 * 360.0 / n as f64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_colors_differ_from_each_other_and_from_the_taken_ones() {
        let taken = &PALETTE[..3];
        for n in [1, 5, 6, 9, 40] {
            let c = distinct_colors(n, taken);
            let set: std::collections::BTreeSet<&String> = c.iter().collect();
            assert_eq!((c.len(), set.len()), (n, n), "{c:?}");
            assert!(c.iter().all(|c| !taken.contains(&c.as_str())), "{c:?}");
        }
    }
}
