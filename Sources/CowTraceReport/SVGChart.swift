import CowTraceFormat
import Foundation

/// Inline SVG charts for the HTML report: pure functions from numbers to
/// markup, deterministic (fixed number formatting, no randomness, no dates).
/// Every string that reaches the markup goes through `HTMLEscape.text`.
public enum SVGChart {
    /// One coloured series of a stacked area chart.
    public struct Series: Equatable, Sendable {
        public var label: String
        public var color: String
        /// One value per time bin.
        public var values: [Double]
        /// Extra class names of the series' `<path>` (and its legend swatch).
        public var cssClass: String
        /// data-pid of the path (nil: none, e.g. "other").
        public var pid: Int32?
        public init(label: String, color: String, values: [Double], cssClass: String, pid: Int32? = nil) {
            self.label = label; self.color = color; self.values = values; self.cssClass = cssClass; self.pid = pid
        }
    }

    /// One row of a stacked horizontal bar chart.
    public struct BarRow: Equatable, Sendable {
        public var label: String
        public var values: [Double]
        public var pid: Int32?
        public init(label: String, values: [Double], pid: Int32? = nil) {
            self.label = label; self.values = values; self.pid = pid
        }
    }

    /// A segment kind of a stacked bar (the same in every row).
    public struct Segment: Equatable, Sendable {
        public var name: String
        public var color: String
        public var cssClass: String
        public init(name: String, color: String, cssClass: String) {
            self.name = name; self.color = color; self.cssClass = cssClass
        }
    }

    // MARK: stacked area over time

    /// A stacked area chart of `series` over `bins` equal bins spanning
    /// `seconds`; each bin is drawn flat (a step), series stacked bottom-up
    /// in the order given, with x and y axes, ticks, and a legend.
    /// Paths carry `class="area <series.cssClass>"` and `data-pid`.
    public static func stackedArea(id: String, title: String, series: [Series], seconds: Double, yLabel: String,
                                   width: Int = 1100, height: Int = 360) -> String {
        let bins = series.map(\.values.count).max() ?? 0
        let left = 70.0, right = 20.0, top = 16.0
        let legendRows = (series.count + 2) / 3
        let bottom = 44.0 + 20.0 * Double(legendRows)
        let plotW = Double(width) - left - right, plotH = Double(height) - top - bottom
        var totals = [Double](repeating: 0, count: bins)
        for s in series { for (i, v) in s.values.enumerated() { totals[i] += v } }
        let yMax = countCeiling(totals.max() ?? 0)
        func x(_ bin: Int) -> Double { left + plotW * Double(bin) / Double(max(1, bins)) }
        func y(_ v: Double) -> Double { top + plotH - plotH * v / yMax }

        var out = svgOpen(id: id, title: title, width: width, height: height)
        out += yAxis(left: left, top: top, plotW: plotW, plotH: plotH, yMax: yMax, label: yLabel)
        out += timeAxis(left: left, top: top, plotW: plotW, plotH: plotH, seconds: seconds)
        var below = [Double](repeating: 0, count: bins)
        for s in series {
            var upper = below
            for i in 0..<bins where i < s.values.count { upper[i] += s.values[i] }
            var d = ""
            if bins > 0 {
                d = "M\(f(x(0))),\(f(y(below[0])))"
                for i in 0..<bins { d += " L\(f(x(i))),\(f(y(upper[i]))) L\(f(x(i + 1))),\(f(y(upper[i])))" }
                for i in stride(from: bins - 1, through: 0, by: -1) {
                    d += " L\(f(x(i + 1))),\(f(y(below[i]))) L\(f(x(i))),\(f(y(below[i])))"
                }
                d += " Z"
            }
            let pid = s.pid.map { " data-pid=\"\($0)\"" } ?? ""
            let sum = s.values.reduce(0, +)
            out += "<path class=\"area \(attr(s.cssClass))\"\(pid) fill=\"\(attr(s.color))\" stroke=\"none\" d=\"\(d)\"><title>\(HTMLEscape.text(s.label)): \(count(sum))</title></path>\n"
            below = upper
        }
        out += legend(series.map { ($0.label, $0.color, $0.cssClass) }, left: left,
                      top: Double(height) - 20.0 * Double(legendRows) - 4, width: plotW)
        return out + "</svg>\n"
    }

    // MARK: stacked horizontal bars

    /// One horizontal bar per row, its segments stacked left to right in
    /// `segments` order, scaled to the largest row total; the label left of
    /// the bar, the total right of it, a legend below.
    /// Segments are `<rect class="seg <segment.cssClass>">`.
    public static func stackedBars(id: String, title: String, rows: [BarRow], segments: [Segment],
                                   width: Int = 1100) -> String {
        let labelW = 250.0, right = 90.0, rowH = 24.0, barH = 16.0, top = 8.0
        let legendH = 30.0
        let height = Int(top + rowH * Double(rows.count) + legendH + 8)
        let plotW = Double(width) - labelW - right
        let maxTotal = max(1, rows.map { $0.values.reduce(0, +) }.max() ?? 1)
        var out = svgOpen(id: id, title: title, width: width, height: height)
        for (r, row) in rows.enumerated() {
            let y = top + rowH * Double(r)
            let pid = row.pid.map { " data-pid=\"\($0)\"" } ?? ""
            out += "<g class=\"bar-row\"\(pid)>"
            out += "<text class=\"row-label\" x=\"\(f(labelW - 8))\" y=\"\(f(y + barH - 3))\" text-anchor=\"end\">\(HTMLEscape.text(row.label))</text>"
            var x = labelW
            for (i, v) in row.values.enumerated() where i < segments.count && v > 0 {
                let w = max(1, plotW * v / maxTotal)
                let s = segments[i]
                out += "<rect class=\"seg \(attr(s.cssClass))\" x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(w))\" height=\"\(f(barH))\" fill=\"\(attr(s.color))\"><title>\(HTMLEscape.text(row.label)) \(HTMLEscape.text(s.name)): \(count(v))</title></rect>"
                x += w
            }
            let total = row.values.reduce(0, +)
            out += "<text class=\"row-total\" x=\"\(f(x + 6))\" y=\"\(f(y + barH - 3))\">\(count(total))</text></g>\n"
        }
        out += legend(segments.map { ($0.name, $0.color, $0.cssClass) }, left: labelW,
                      top: top + rowH * Double(rows.count) + 6, width: plotW, columns: segments.count)
        return out + "</svg>\n"
    }

    // MARK: columns (histograms)

    /// A bar chart of `values` with one column per label, count labels above
    /// the non-empty columns. Columns are `<rect class="col <cssClass>">`.
    public static func columns(id: String, title: String, values: [UInt64], labels: [String], color: String,
                               cssClass: String, xLabel: String, yLabel: String,
                               width: Int = 540, height: Int = 260) -> String {
        let left = 60.0, right = 12.0, top = 18.0, bottom = 70.0
        let plotW = Double(width) - left - right, plotH = Double(height) - top - bottom
        let yMax = countCeiling(Double(values.max() ?? 0))
        let n = max(1, values.count)
        let slot = plotW / Double(n)
        var out = svgOpen(id: id, title: title, width: width, height: height)
        out += yAxis(left: left, top: top, plotW: plotW, plotH: plotH, yMax: yMax, label: yLabel)
        for (i, v) in values.enumerated() {
            let h = plotH * Double(v) / yMax
            let x = left + slot * Double(i) + slot * 0.12
            let label = i < labels.count ? labels[i] : ""
            if v > 0 {
                out += "<rect class=\"col \(attr(cssClass))\" x=\"\(f(x))\" y=\"\(f(top + plotH - h))\" width=\"\(f(slot * 0.76))\" height=\"\(f(max(1, h)))\" fill=\"\(attr(color))\"><title>\(HTMLEscape.text(label)): \(v)</title></rect>"
                out += "<text class=\"col-count\" x=\"\(f(x + slot * 0.38))\" y=\"\(f(top + plotH - h - 3))\" text-anchor=\"middle\">\(v)</text>"
            }
            let lx = x + slot * 0.38, ly = top + plotH + 14
            if values.count > 6 {
                // Many columns: slanted labels, so that "1k–2k" and "512–1023" do not overlap.
                out += "<text class=\"tick-label\" x=\"\(f(lx))\" y=\"\(f(ly))\" text-anchor=\"end\" transform=\"rotate(-35 \(f(lx)) \(f(ly)))\">\(HTMLEscape.text(label))</text>\n"
            } else {
                out += "<text class=\"tick-label\" x=\"\(f(lx))\" y=\"\(f(ly))\" text-anchor=\"middle\">\(HTMLEscape.text(label))</text>\n"
            }
        }
        out += "<text class=\"axis-label\" x=\"\(f(left + plotW / 2))\" y=\"\(f(Double(height) - 8))\" text-anchor=\"middle\">\(HTMLEscape.text(xLabel))</text>\n"
        return out + "</svg>\n"
    }

    // MARK: pieces

    static func svgOpen(id: String, title: String, width: Int, height: Int) -> String {
        "<svg class=\"chart\" id=\"\(attr(id))\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" role=\"img\" aria-label=\"\(attr(title))\">\n<title>\(HTMLEscape.text(title))</title>\n"
    }

    static func yAxis(left: Double, top: Double, plotW: Double, plotH: Double, yMax: Double, label: String) -> String {
        var out = "<g class=\"axis y-axis\">"
        let step = yMax / 4
        for k in 0...4 {
            let v = step * Double(k)
            let y = top + plotH - plotH * v / yMax
            out += "<line class=\"grid\" x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(left + plotW))\" y2=\"\(f(y))\"/>"
            out += "<text class=\"tick-label\" x=\"\(f(left - 6))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(count(v))</text>"
        }
        out += "<line class=\"axis-line\" x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + plotH))\"/>"
        out += "<text class=\"axis-label\" transform=\"translate(14,\(f(top + plotH / 2))) rotate(-90)\" text-anchor=\"middle\">\(HTMLEscape.text(label))</text>"
        return out + "</g>\n"
    }

    static func timeAxis(left: Double, top: Double, plotW: Double, plotH: Double, seconds: Double) -> String {
        var out = "<g class=\"axis x-axis\">"
        let base = top + plotH
        out += "<line class=\"axis-line\" x1=\"\(f(left))\" y1=\"\(f(base))\" x2=\"\(f(left + plotW))\" y2=\"\(f(base))\"/>"
        let span = seconds > 0 ? seconds : 1
        let step = niceStep(span / 6)
        var t = 0.0
        var k = 0
        while t <= span * 1.0000001 && k < 50 {
            let x = left + plotW * t / span
            out += "<line class=\"tick\" x1=\"\(f(x))\" y1=\"\(f(base))\" x2=\"\(f(x))\" y2=\"\(f(base + 4))\"/>"
            out += "<text class=\"tick-label\" x=\"\(f(x))\" y=\"\(f(base + 16))\" text-anchor=\"middle\">\(secondsLabel(t, step: step))</text>"
            k += 1
            t = step * Double(k)
        }
        out += "<text class=\"axis-label\" x=\"\(f(left + plotW / 2))\" y=\"\(f(base + 32))\" text-anchor=\"middle\">seconds since the recording started</text>"
        return out + "</g>\n"
    }

    static func legend(_ items: [(String, String, String)], left: Double, top: Double, width: Double, columns: Int = 3) -> String {
        var out = "<g class=\"legend\">"
        let colW = width / Double(max(1, columns))
        for (i, item) in items.enumerated() {
            let x = left + colW * Double(i % columns), y = top + 20 * Double(i / columns)
            out += "<rect class=\"swatch \(attr(item.2))\" x=\"\(f(x))\" y=\"\(f(y))\" width=\"12\" height=\"12\" fill=\"\(attr(item.1))\"/>"
            out += "<text class=\"legend-label\" x=\"\(f(x + 18))\" y=\"\(f(y + 11))\">\(HTMLEscape.text(item.0))</text>"
        }
        return out + "</g>\n"
    }

    /// The smallest 1, 2 or 5 × 10^k at least `v` (1 for 0).
    public static func niceCeiling(_ v: Double) -> Double {
        guard v > 0 else { return 1 }
        let step = niceStep(v / 4)
        return (v / step).rounded(.up) * step
    }

    /// The top of a count axis with 4 whole-number steps: a nice ceiling of
    /// `v`, at least 4, rounded up to a multiple of 4.
    public static func countCeiling(_ v: Double) -> Double {
        let top = max(4, niceCeiling(v))
        return (top / 4).rounded(.up) * 4
    }

    /// A 1, 2 or 5 × 10^k step near `v`, at least `v`.
    static func niceStep(_ v: Double) -> Double {
        guard v > 0 else { return 1 }
        let magnitude = pow(10, floor(log10(v)))
        for m in [1.0, 2.0, 5.0, 10.0] where m * magnitude >= v * 0.999999 { return m * magnitude }
        return 10 * magnitude
    }

    /// Fixed-point coordinates: 1 decimal.
    static func f(_ v: Double) -> String {
        let r = (v * 10).rounded() / 10
        return r == r.rounded() ? String(Int(r)) : String(format: "%.1f", r)
    }

    /// Counts: integers as such, large ones with k/M.
    static func count(_ v: Double) -> String {
        if v >= 10_000_000 { return String(format: "%.0fM", v / 1_000_000) }
        if v >= 100_000 { return String(format: "%.0fk", v / 1000) }
        if v == v.rounded() { return String(Int(v)) }
        return String(format: "%.1f", v)
    }

    static func secondsLabel(_ t: Double, step: Double) -> String {
        if step >= 1 { return String(format: "%.0f", t) }
        if step >= 0.1 { return String(format: "%.1f", t) }
        if step >= 0.01 { return String(format: "%.2f", t) }
        return String(format: "%.3f", t)
    }

    static func attr(_ s: String) -> String { HTMLEscape.text(s) }
}

/// Escaping for text and attribute values in HTML and inline SVG.
public enum HTMLEscape {
    /// `&`, `<`, `>`, `"` and `'` as character references; control
    /// characters other than tab and newline (not allowed in HTML) as U+FFFD.
    public static func text(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            case "\t", "\n": out.unicodeScalars.append(scalar)
            case _ where scalar.value < 0x20 || scalar.value == 0x7f || (0x80...0x9f).contains(scalar.value):
                out += "\u{FFFD}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
