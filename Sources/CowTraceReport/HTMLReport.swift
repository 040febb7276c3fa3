import CowTraceFormat
import Foundation

/// `cowtrace report -o report.html`: one self-contained page (inline CSS and
/// SVG, no scripts, no network) about one recording. Pure: the same input
/// gives the same bytes.
///
/// Sections (ids): summary, processes, copies-over-time, classes-over-time,
/// class-breakdown, histograms, fork-tree, oom-kills. Chart elements carry
/// class names the tests and docs/report.md rely on:
///   copies over time   `<svg id="chart-copies-over-time">`, `<path class="area series series-N" data-pid>`
///                      (N = 0… by copies, `series-other` for the rest)
///   faults by class    `<svg id="chart-classes-over-time">`, `<path class="area series class-copy">`…
///   class breakdown    `<svg id="chart-class-breakdown">`, `<g class="bar-row" data-pid>` holding
///                      `<rect class="seg class-copy">`, `class-reuse`, `class-zero-fill`, `class-file-copy`,
///                      `class-shared-write`, `class-other`
///   histograms         `<svg id="chart-copies-per-interval">` (all processes) and
///                      `chart-copies-per-interval-PID`, `<rect class="col hist-bar">`
///   fork tree          `<ul class="fork-tree">`, `<li class="fork-node" data-pid>`
///   OOM kills          `<table class="oom-kills">`, `<tr class="oom-kill" data-pid>`
public enum HTMLReport {
    /// Colours of the top processes in the copies-over-time chart (Tableau 10), then "other".
    public static let seriesColors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7"]
    public static let otherColor = "#bab0ac"
    /// Colour of the histogram columns.
    public static let histogramColor = "#6a3d9a"
    /// How many processes get their own series in copies over time (the rest is "other").
    public static let topSeries = 6

    /// The write-protect fault classes as charted: (class, name, colour, css class).
    public static let classStyles: [(cls: RecordedFaultClass, name: String, color: String, cssClass: String)] = [
        (.copy, "copy", "#d62728", "class-copy"),
        (.fileCopy, "file copy", "#ff7f0e", "class-file-copy"),
        (.zeroFill, "zero fill", "#8c8c8c", "class-zero-fill"),
        (.sharedWrite, "shared write", "#1f77b4", "class-shared-write"),
        (.reuse, "reuse", "#2ca02c", "class-reuse"),
        (.other, "other", "#9467bd", "class-other"),
    ]

    /// The page. `records` are the recording's records (any order), used for
    /// the faults-by-class-over-time chart; `totals` must be folded from them.
    public static func render(_ input: RecordingReportInput, records: [TraceRecord]) -> String {
        let path = HTMLEscape.text(input.path)
        var out = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <meta name="generator" content="cowtrace \(HTMLEscape.text(CowTraceVersion.current))">
            <title>cowtrace report: \(path)</title>
            <style>
            \(css)
            </style>
            </head>
            <body>
            <header><h1>cowtrace report</h1><p class="file">\(path)</p></header>

            """
        out += summarySection(input)
        out += processSection(input)
        out += copiesOverTimeSection(input)
        out += classesOverTimeSection(input, records: records)
        out += classBreakdownSection(input)
        out += histogramSection(input)
        out += forkTreeSection(input)
        out += oomSection(input)
        out += """
            <footer>Written by <code>cowtrace report</code> from the recorded events alone (no model): \
            each write-protect fault has the class the kernel gave it. Self-contained: no scripts, fonts or \
            network resources.</footer>
            </body>
            </html>

            """
        return out
    }

    /// Convenience: folds `records` (with 120 time bins) and renders.
    public static func render(path: String, header: TraceHeader, records: [TraceRecord], cut: TraceCut? = nil) -> String {
        let totals = RecordedTotals(records: records, header: header, bins: 120)
        return render(RecordingReportInput(path: path, header: header, totals: totals, cut: cut), records: records)
    }

    // MARK: sections

    static func summarySection(_ r: RecordingReportInput) -> String {
        let t = r.totals.total
        var out = "<section id=\"summary\">\n<h2>Recording</h2>\n"
        if let cut = r.cutText { out += "<p class=\"warning cut\">\(HTMLEscape.text(cut))</p>\n" }
        if r.totals.lostEvents > 0 {
            out += "<p class=\"warning lost\">\(r.totals.lostEvents) events lost (\(HTMLEscape.text(r.lostText))): the counts below miss them; the kernel counters do not.</p>\n"
        }
        let mib = Double(t.pagesCopied * r.pageSize) / 1_048_576
        let tiles: [(String, String)] = [
            (String(format: "%.1f MiB", mib), "copied (\(t.pagesCopied) pages)"),
            ("\(t.writeProtectFaults)", "write-protect faults"),
            ("\(r.shownProcesses.count)", "active processes"),
            ("\(t.forks)", "forks"),
            (String(format: "%.2f s", r.durationSeconds), "recorded"),
            ("\(r.totals.lostEvents)", "events lost"),
        ]
        out += "<div class=\"tiles\">"
        for (value, label) in tiles {
            out += "<div class=\"tile\"><div class=\"value\">\(HTMLEscape.text(value))</div><div class=\"label\">\(HTMLEscape.text(label))</div></div>"
        }
        out += "</div>\n<table class=\"facts\">\n"
        for (name, value) in r.facts {
            out += "<tr><th>\(HTMLEscape.text(name))</th><td>\(HTMLEscape.text(value))</td></tr>\n"
        }
        out += "<tr><th>lost events</th><td>\(HTMLEscape.text(r.lostText))</td></tr>\n</table>\n"
        if !r.totals.gaps.isEmpty {
            out += "<details class=\"gaps\"><summary>\(r.totals.gaps.count) gap records</summary><table class=\"data\"><tr><th>time</th><th>reason</th><th>lost</th></tr>\n"
            for g in r.totals.gaps.prefix(200) {
                out += "<tr><td>\(time(r, g.time))</td><td>\(HTMLEscape.text(RecordingReport.lossName(g.reason)))</td><td class=\"num\">\(g.lost)</td></tr>\n"
            }
            out += "</table></details>\n"
        }
        return out + "</section>\n"
    }

    static func processSection(_ r: RecordingReportInput) -> String {
        var out = "<section id=\"processes\">\n<h2>Per-process totals</h2>\n"
        let rows = r.shownProcesses
        if rows.isEmpty { return out + "<p class=\"empty\">No process faulted, forked or exec'd.</p>\n</section>\n" }
        out += "<table class=\"data totals\">\n<tr><th>pid</th><th>ppid</th><th>comm</th><th>copies</th><th>reuses</th><th>zero fills</th><th>file copies</th><th>shared writes</th><th>MiB copied</th><th>forks</th><th>execs</th><th>exit</th><th>kernel counters</th></tr>\n"
        for p in rows.prefix(500) {
            let c = p.classes
            let mismatches = p.counterMismatches
            let kernel: String
            if p.counters == nil {
                kernel = "<td class=\"kernel none\">none</td>"
            } else if mismatches.isEmpty {
                kernel = "<td class=\"kernel same\">= events</td>"
            } else {
                kernel = "<td class=\"kernel differs\">⚠ " + mismatches.map { "\(HTMLEscape.text($0.field)) \($0.kernel) (events \($0.events))" }.joined(separator: ", ") + "</td>"
            }
            out += "<tr class=\"process\(mismatches.isEmpty ? "" : " differs")\" data-pid=\"\(p.pid)\"><td class=\"num\">\(p.pid)</td><td class=\"num\">\(p.ppid.map { "\($0)" } ?? "")</td>"
                + "<td>\(HTMLEscape.text(p.comm))</td><td class=\"num\">\(c.copies)</td><td class=\"num\">\(c.reuses)</td>"
                + "<td class=\"num\">\(c.zeroFills)</td><td class=\"num\">\(c.fileCopies)</td><td class=\"num\">\(c.sharedWrites)</td>"
                + "<td class=\"num\">\(String(format: "%.1f", Double(p.pagesCopied * r.pageSize) / 1_048_576))</td>"
                + "<td class=\"num\">\(p.forks)</td><td class=\"num\">\(p.execs)</td><td>\(HTMLEscape.text(exitText(p.exitCode)))</td>\(kernel)</tr>\n"
        }
        out += "</table>\n"
        if rows.count > 500 { out += "<p class=\"note\">\(rows.count - 500) more processes not shown.</p>\n" }
        return out + "</section>\n"
    }

    static func copiesOverTimeSection(_ r: RecordingReportInput) -> String {
        var out = "<section id=\"copies-over-time\">\n<h2>Copies over time</h2>\n"
        let copying = r.totals.byCopies.filter { $0.pagesCopied > 0 }
        guard !copying.isEmpty else { return out + "<p class=\"empty\">No copies were recorded.</p>\n</section>\n" }
        let top = copying.prefix(topSeries)
        var series: [SVGChart.Series] = []
        for (i, p) in top.enumerated() {
            series.append(SVGChart.Series(label: processLabel(p), color: seriesColors[i % seriesColors.count],
                                          values: p.copiesOverTime.map { Double($0) },
                                          cssClass: "series series-\(i)", pid: p.pid))
        }
        let rest = copying.dropFirst(topSeries)
        if !rest.isEmpty {
            var values = [Double](repeating: 0, count: r.totals.binCount)
            for p in rest { for (i, v) in p.copiesOverTime.enumerated() where i < values.count { values[i] += Double(v) } }
            series.append(SVGChart.Series(label: "other (\(rest.count) processes)", color: otherColor, values: values,
                                          cssClass: "series series-other"))
        }
        out += "<p class=\"note\">Pages copied (copy and file copy) per \(binText(r)), stacked: the \(top.count) processes that copied most\(rest.isEmpty ? "" : ", then the rest").</p>\n"
        out += SVGChart.stackedArea(id: "chart-copies-over-time", title: "Copies over time per process", series: series,
                                    seconds: r.durationSeconds, yLabel: "copies per \(binText(r))")
        return out + "</section>\n"
    }

    static func classesOverTimeSection(_ r: RecordingReportInput, records: [TraceRecord]) -> String {
        var out = "<section id=\"classes-over-time\">\n<h2>Write-protect faults over time, by class</h2>\n"
        var bins: [RecordedFaultClass: [Double]] = [:]
        let n = r.totals.binCount
        RecordedTotals.forEachClassifiedFault(RecordedTotals.sortedByTime(records)) { f in
            let cls: RecordedFaultClass = f.faultClass == .unresolved ? .reuse : f.faultClass
            bins[cls, default: [Double](repeating: 0, count: n)][r.totals.bin(of: f.time)] += 1
        }
        guard !bins.isEmpty else { return out + "<p class=\"empty\">No write-protect faults were recorded.</p>\n</section>\n" }
        let series = classStyles.compactMap { style -> SVGChart.Series? in
            guard let values = bins[style.cls] else { return nil }
            return SVGChart.Series(label: style.name, color: style.color, values: values, cssClass: "series \(style.cssClass)")
        }
        out += "<p class=\"note\">All processes; each fault with the class the kernel gave it, per \(binText(r)).</p>\n"
        out += SVGChart.stackedArea(id: "chart-classes-over-time", title: "Write-protect faults over time by class",
                                    series: series, seconds: r.durationSeconds, yLabel: "faults per \(binText(r))",
                                    height: 300)
        return out + "</section>\n"
    }

    static func classBreakdownSection(_ r: RecordingReportInput) -> String {
        var out = "<section id=\"class-breakdown\">\n<h2>Write-protect faults by class, per process</h2>\n"
        let rows = r.shownProcesses.filter { $0.classes.total > 0 }
            .sorted { a, b in a.classes.total != b.classes.total ? a.classes.total > b.classes.total : a.pid < b.pid }
        guard !rows.isEmpty else { return out + "<p class=\"empty\">No write-protect faults were recorded.</p>\n</section>\n" }
        let shown = Array(rows.prefix(25))
        let segments = classStyles.map { SVGChart.Segment(name: $0.name, color: $0.color, cssClass: $0.cssClass) }
        let barRows = shown.map { p in
            SVGChart.BarRow(label: processLabel(p), values: classStyles.map { Double(p.classes[$0.cls]) }, pid: p.pid)
        }
        out += "<p class=\"note\">The \(shown.count) processes with most write-protect faults\(rows.count > shown.count ? " (of \(rows.count))" : ""); bar length is the number of faults.</p>\n"
        out += SVGChart.stackedBars(id: "chart-class-breakdown", title: "Write-protect faults by class per process",
                                    rows: barRows, segments: segments)
        return out + "</section>\n"
    }

    static func histogramSection(_ r: RecordingReportInput) -> String {
        let intervalMs = Double(r.totals.burstInterval) / 1e6
        let interval = intervalMs == intervalMs.rounded() ? "\(Int(intervalMs)) ms" : String(format: "%.1f ms", intervalMs)
        var out = "<section id=\"histograms\">\n<h2>Copies per \(interval) interval</h2>\n"
        let copying = r.totals.byCopies.filter { $0.pagesCopied > 0 }
        guard !copying.isEmpty else { return out + "<p class=\"empty\">No copies were recorded.</p>\n</section>\n" }
        out += "<p class=\"note\">How bursty copying is: for each \(interval) interval in which a process copied (an interval opens at a copy, as the kernel's copies-per-interval histogram counts them), its copies, in log2 buckets.</p>\n<div class=\"charts\">\n"
        out += histogram(id: "chart-copies-per-interval", title: "All processes", buckets: r.totals.total.copiesPerInterval, interval: interval)
        for p in copying.prefix(3) {
            out += histogram(id: "chart-copies-per-interval-\(p.pid)", title: processLabel(p), buckets: p.copiesPerInterval, interval: interval)
        }
        return out + "</div>\n</section>\n"
    }

    static func histogram(id: String, title: String, buckets: [UInt64], interval: String) -> String {
        guard let first = buckets.firstIndex(where: { $0 > 0 }), let last = buckets.lastIndex(where: { $0 > 0 }) else { return "" }
        let range = first...max(last, first + 3 < buckets.count ? first + 3 : last)
        let values = range.map { buckets[$0] }
        let labels = range.map(bucketLabel)
        return "<figure class=\"histogram\"><figcaption>\(HTMLEscape.text(title))</figcaption>\n"
            + SVGChart.columns(id: id, title: "Copies per \(interval) interval: \(title)", values: values, labels: labels,
                               color: histogramColor, cssClass: "hist-bar", xLabel: "copies in the interval",
                               yLabel: "intervals")
            + "</figure>\n"
    }

    static func forkTreeSection(_ r: RecordingReportInput) -> String {
        var out = "<section id=\"fork-tree\">\n<h2>Fork tree</h2>\n"
        let totals = r.totals
        guard !totals.forks.isEmpty else { return out + "<p class=\"empty\">No forks were recorded.</p>\n</section>\n" }
        var children: [Int32: [RecordedFork]] = [:]
        for f in totals.forks { children[f.parent, default: []].append(f) }
        let maxCopies = max(1, totals.processes.values.map(\.pagesCopied).max() ?? 1)
        var visited = Set<Int32>()
        var nodes = 0
        let limit = 1000
        func node(_ pid: Int32, fork: RecordedFork?) -> String {
            guard visited.insert(pid).inserted, nodes < limit else { return "" }
            nodes += 1
            let p = totals.processes[pid] ?? RecordedProcess(pid: pid)
            let copies = p.pagesCopied
            let mib = Double(copies * r.pageSize) / 1_048_576
            var when: [String] = []
            if let f = fork { when.append(f.time.map { "forked at \(time(r, $0))" } ?? "running at start") }
            if let e = p.exitTime { when.append("\(exitText(p.exitCode)) at \(time(r, e))") }
            let width = copies == 0 ? 0 : max(2, Int((Double(copies) / Double(maxCopies) * 240).rounded()))
            var s = "<li class=\"fork-node\" data-pid=\"\(pid)\"><span class=\"pid\">pid \(pid)</span> <span class=\"comm\">\(HTMLEscape.text(p.comm.isEmpty ? "?" : p.comm))</span> "
                + "<span class=\"copies\">\(copies) copies (\(String(format: "%.1f", mib)) MiB)</span>"
                + "<span class=\"bar\" style=\"width:\(width)px\"></span>"
            if !when.isEmpty { s += " <span class=\"when\">\(HTMLEscape.text(when.joined(separator: ", ")))</span>" }
            if let kids = children[pid], !kids.isEmpty {
                s += "\n<ul>\n" + kids.map { node($0.child, fork: $0) }.joined() + "</ul>"
            }
            return s + "</li>\n"
        }
        let inTree = Set(totals.forks.flatMap { [$0.parent, $0.child] })
        let childSet = Set(totals.forks.map(\.child))
        var roots = inTree.subtracting(childSet).sorted()
        out += "<ul class=\"fork-tree\">\n"
        for root in roots { out += node(root, fork: nil) }
        // Cycles (pid reuse) leave nodes unvisited: start from them too.
        roots = inTree.subtracting(visited).sorted()
        for root in roots { out += node(root, fork: nil) }
        out += "</ul>\n"
        if nodes >= limit { out += "<p class=\"note\">Only the first \(limit) processes are shown.</p>\n" }
        return out + "</section>\n"
    }

    static func oomSection(_ r: RecordingReportInput) -> String {
        var out = "<section id=\"oom-kills\">\n<h2>OOM kills</h2>\n"
        let kills = r.totals.oomKills
        guard !kills.isEmpty else { return out + "<p class=\"empty\">No OOM kills were recorded.</p>\n</section>\n" }
        out += "<table class=\"data oom-kills\">\n<tr><th>time</th><th>wall clock (UTC)</th><th>victim pid</th><th>comm</th><th>uid</th><th>oom_score_adj</th><th>anon rss</th><th>file rss</th><th>shmem rss</th><th>total vm</th><th>page tables</th><th>constraint</th></tr>\n"
        for k in kills {
            out += "<tr class=\"oom-kill\" data-pid=\"\(k.victim)\"><td>\(time(r, k.time))</td><td>\(HTMLEscape.text(RecordingReport.wallClock(r.header, k.time)))</td>"
                + "<td class=\"num\">\(k.victim)</td><td>\(HTMLEscape.text(k.comm))</td><td class=\"num\">\(k.uid)</td><td class=\"num\">\(k.oomScoreAdj)</td>"
                + "<td class=\"num\">\(kib(k.anonRSSKB))</td><td class=\"num\">\(kib(k.fileRSSKB))</td><td class=\"num\">\(kib(k.shmemRSSKB))</td>"
                + "<td class=\"num\">\(kib(k.totalVMKB))</td><td class=\"num\">\(kib(k.pgtablesKB))</td><td>\(HTMLEscape.text(k.constraint))</td></tr>\n"
        }
        return out + "</table>\n</section>\n"
    }

    // MARK: helpers

    /// "pid 1234 (comm)".
    static func processLabel(_ p: RecordedProcess) -> String { "pid \(p.pid) (\(p.comm.isEmpty ? "?" : p.comm))" }

    /// "+1.234 s" from the start of the recording.
    static func time(_ r: RecordingReportInput, _ t: UInt64) -> String {
        String(format: "+%.3f s", RecordingReport.seconds(r, t))
    }

    static func binText(_ r: RecordingReportInput) -> String {
        let ms = Double(r.totals.endTime - r.totals.startTime) / 1e6 / Double(r.totals.binCount)
        if ms >= 1000 { return String(format: "%.1f s", ms / 1000) }
        if ms >= 10 { return String(format: "%.0f ms", ms) }
        if ms >= 0.1 { return String(format: "%.1f ms", ms) }
        return String(format: "%.0f µs", ms * 1000)
    }

    static func exitText(_ code: UInt32?) -> String {
        code.map { ExitStatus(raw: $0).description } ?? ""
    }

    static func kib(_ kb: UInt64) -> String { RecordingReport.bytes(kb * 1024) }

    /// A log2 bucket's values: "1", "2–3", …, "1k–2k" (high end exclusive from 1024).
    static func bucketLabel(_ i: Int) -> String {
        if i == 0 { return "1" }
        let low = UInt64(1) << UInt64(i)
        if low >= 1024 {
            func k(_ v: UInt64) -> String { v >= 1 << 20 ? "\(v >> 20)M" : "\(v >> 10)k" }
            return "\(k(low))–\(k(low << 1))"
        }
        return "\(low)–\(low * 2 - 1)"
    }

    static let css = """
        :root { color-scheme: light; }
        * { box-sizing: border-box; }
        body { margin: 0 auto; padding: 16px 24px 40px; max-width: 1180px; background: #ffffff; color: #1d2330;
               font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
        header h1 { margin: 8px 0 0; font-size: 24px; }
        header .file { margin: 2px 0 12px; color: #5b6472; font-family: ui-monospace, "DejaVu Sans Mono", monospace; word-break: break-all; }
        h2 { font-size: 18px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #e3e6eb; }
        section { margin-bottom: 12px; }
        .tiles { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0 14px; }
        .tile { flex: 1 1 150px; background: #f4f6f9; border: 1px solid #e3e6eb; border-radius: 6px; padding: 8px 12px; }
        .tile .value { font-size: 20px; font-weight: 600; }
        .tile .label { color: #5b6472; font-size: 12px; }
        table { border-collapse: collapse; }
        table.facts th { text-align: left; font-weight: 600; padding: 2px 16px 2px 0; color: #3b4350; vertical-align: top; }
        table.facts td { padding: 2px 0; word-break: break-word; }
        table.data { width: 100%; font-size: 13px; }
        table.data th { background: #f4f6f9; text-align: left; padding: 4px 6px; border-bottom: 1px solid #d5d9e0; white-space: nowrap; }
        table.data td { padding: 3px 6px; border-bottom: 1px solid #eef0f3; word-break: break-word; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; }
        td.kernel.same { color: #2a7a2a; }
        td.kernel.differs, tr.differs td.kernel { color: #b3261e; font-weight: 600; }
        .warning { background: #fff4e5; border-left: 4px solid #f28e2b; padding: 6px 10px; margin: 8px 0; }
        .note { color: #5b6472; margin: 4px 0 8px; }
        .empty { color: #5b6472; font-style: italic; }
        svg.chart { display: block; max-width: 100%; height: auto; margin: 6px 0; }
        svg.chart text { font: 11px system-ui, "DejaVu Sans", sans-serif; fill: #3b4350; }
        svg.chart .axis-label { font-size: 12px; fill: #5b6472; }
        svg.chart .grid { stroke: #e8ebef; stroke-width: 1; }
        svg.chart .axis-line, svg.chart .tick { stroke: #8a93a0; stroke-width: 1; }
        svg.chart .row-total, svg.chart .col-count { fill: #5b6472; }
        .charts { display: flex; flex-wrap: wrap; gap: 12px; }
        figure.histogram { margin: 0; flex: 0 1 545px; }
        figure.histogram figcaption { font-weight: 600; font-size: 13px; }
        ul.fork-tree, ul.fork-tree ul { list-style: none; margin: 0; padding-left: 22px; }
        ul.fork-tree { padding-left: 0; }
        ul.fork-tree li { margin: 3px 0; padding-left: 10px; border-left: 1px solid #d5d9e0; }
        ul.fork-tree .pid { font-weight: 600; font-variant-numeric: tabular-nums; }
        ul.fork-tree .comm { font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
        ul.fork-tree .copies { color: #3b4350; margin-left: 6px; }
        ul.fork-tree .bar { display: inline-block; height: 10px; background: #d62728; margin-left: 8px; vertical-align: middle; }
        ul.fork-tree .when { color: #5b6472; font-size: 12px; margin-left: 6px; }
        details.gaps { margin: 8px 0; }
        footer { margin-top: 32px; color: #8a93a0; font-size: 12px; }
        """
}
