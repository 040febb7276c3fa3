import CowTraceReport
import ArgumentParser
import CowTraceFormat
import CowTraceKit
import Foundation

struct Report: ParsableCommand, OptionChecks {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Print the per-process totals of a recording, or write them as an HTML page with charts.",
        discussion: """
            The totals come from the recorded events alone (no model): each write-protect \
            fault has the class the kernel gave it (COPIES, REUSES, ZEROFILL, FILECOPY, \
            SHARED as in `cowtrace stat`). The kernel's own counters, recorded alongside, \
            are shown next to a process's row when they differ from the events (marked !): \
            events were lost or the recording was cut. A recording without an end record \
            (the recorder was killed) is read up to its last complete block; a damaged one \
            needs --salvage. See docs/report.md.

            Examples:
              cowtrace report run.ctr                   totals, header summary, lost events
              cowtrace report run.ctr --format json     the same as one JSON object
              cowtrace report run.ctr -o run.html       a self-contained page with charts
              cowtrace report cut.ctr --salvage         the totals up to the damage
            """
    )

    @Argument(help: ArgumentHelp("A recording written by `cowtrace record -o`.", valueName: "file"))
    var file: String

    @Flag(help: "Read a damaged recording up to the damage instead of failing.")
    var salvage = false

    @Option(help: "Output format: text, json or csv (stdout). With -o: only printed when given.")
    var format: OutputFormat?

    @Option(help: "Text format: show at most this many processes, most copies first (0: all).")
    var top: Int = 0

    @Option(name: .shortAndLong, help: ArgumentHelp("Write a self-contained HTML page with charts to this file (never follows a symlink).", valueName: "report.html"))
    var output: String?

    @Flag(help: "Overwrite the -o file if it exists.")
    var force = false

    func checkOptions() throws {
        if top < 0 { throw ValidationError("--top must be 0 (all) or more") }
        try OutputPath.checkOverwrite(output, "-o", force: force)
    }

    func run() throws {
        do { try report() } catch let e as ExitCode { throw e } catch { throw reportError(error) }
    }

    private func report() throws {
        let contents = try TraceFileReader.read(path: file, salvage: salvage)
        // Sorted once: the HTML page's second look finds them in order.
        let records = RecordedTotals.sortedByTime(contents.records)
        let totals = RecordedTotals(sorted: records, header: contents.header, bins: 120)
        let input = RecordingReportInput(path: file, header: contents.header, totals: totals, cut: contents.cut,
                                         blocks: contents.blocks, bytes: contents.bytes)
        if let output {
            let page = HTMLReport.render(input, records: records)
            let out = try OutputFile(path: output)
            try out.write(page)
            try out.close()
            var line = "cowtrace: wrote \(output) (\(input.shownProcesses.count) processes, \(totals.total.pagesCopied) pages copied)"
            if let cut = input.cutText { line += "; \(cut)" }
            FileHandle.standardError.write(Data((line + "\n").utf8))
            guard let format else { return }
            print(RecordingReport.render(input, format: format, top: top), terminator: "")
        } else {
            print(RecordingReport.render(input, format: format ?? .text, top: top), terminator: "")
        }
    }

    /// The reader's and the output file's errors as one line.
    private func reportError(_ error: Error) -> Error {
        if let e = error as? TraceFileError { return CLIError(description: e.description) }
        return cliError(error)
    }
}
