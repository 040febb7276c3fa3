import CowTraceForecast
import CowTraceFormat
import ArgumentParser
import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Stat: ParsableCommand, OptionChecks {
    static let configuration = CommandConfiguration(
        commandName: "stat",
        abstract: "Print per-process copy-on-write counts, every interval.",
        discussion: """
            Counts are totals since cowtrace started, kept exactly in the kernel. COPIES are \
            pages copied after fork, REUSES write faults that found the page exclusive, \
            ZEROFILL first writes to the shared zero page, FILECOPY MAP_PRIVATE file pages \
            copied, SHARED writes to shared mappings (never copied). Exited processes are \
            marked with *, and those a signal killed are named under the table.

            With -c, cowtrace exits with the command's status when the command fails (like \
            time(1)). Ctrl-C or SIGTERM ends the command too (it gets the same signal), \
            prints the final table and exits 130 or 143; without -c they just stop, with 0.

            Examples:
              cowtrace stat -c redis-cli bgsave        trace a command and its children,
                                                       print totals at its end
              cowtrace stat -p 1234 5                  trace pid 1234 (and its future
                                                       children), print every 5 s
              cowtrace stat --all --format json 1 10   every process, JSON lines, 10 times
                                                       a second apart
              cowtrace stat --cgroup /sys/fs/cgroup/system.slice/web.service
              cowtrace stat --threads -p 1234          which of pid 1234's threads paid for
                                                       its copies
            """
    )

    @Option(help: "Output format: text, json (one object per interval) or csv.")
    var format: OutputFormat = .text

    @Option(help: "Text format: show at most this many processes, most copies first (0: all).")
    var top: Int = 20

    @OptionGroup var tierOptions: TierOptions

    @Argument(help: "Time between tables: 5 (seconds), 500ms, 2m (default: 1 s, or only the final table with -c).")
    var interval: Seconds?

    @Argument(help: "Stop after this many tables.")
    var count: Int?

    @Flag(help: "Also watch for OOM kills (any process) and print each under the table, with its ancestry (see `cowtrace oom`).")
    var oom = false

    @Flag(help: "Also count per thread: each process's threads, from their first write fault on, listed under it (text: rows marked └; json: a \"threads\" array; csv: rows with a tid column).")
    var threads = false

    @Option(help: ArgumentHelp("Write the user stacks of copy faults to this file as folded stacks (for flamegraph.pl or speedscope), symbolized from each process's ELF symbols. Frames beyond the faulting function need frame pointers.", valueName: "file"))
    var stacks: String?

    @Flag(help: "Also forecast each live fork whose child has not exec'd: shared bytes, copy rate, the headroom of its memory cgroup or the host, time to exhaustion and the likely OOM victim (text: a line under the table for each fork at risk; json: a \"forecast\" array). See docs/forecast.md.")
    var forecast = false

    @Option(help: ArgumentHelp("Keep at most this many exited processes as rows (0: all). Beyond that, the oldest exits are folded into one summed row (json: \"folded_exited\"), so totals stay exact while a long --all run's memory and output stop growing with every process that ever ran.", valueName: "n"))
    var maxExited: Int = 10_000

    @Flag(help: "Overwrite the --stacks file if it exists.")
    var force = false

    @OptionGroup var selection: SelectionOptions

    func checkOptions() throws {
        try selection.requireSelection()
        try OutputPath.checkOverwrite(stacks, "--stacks", force: force)
        try TimeOption.check(interval, "interval")
        if let count, count <= 0 { throw ValidationError("count must be at least 1") }
        if maxExited < 0 { throw ValidationError("--max-exited must be 0 (keep all) or more, not \(maxExited)") }
        if forecast && format == .csv { throw ValidationError("--forecast prints under text tables or into json lines, not csv (--format text|json)") }
    }

    func run() throws {
        do { try trace() } catch let e as ExitCode { throw e } catch { throw cliError(error) }
    }

    private func trace() throws {
        var options = tierOptions.tracerOptions()
        selection.apply(to: &options)
        options.userStacks = stacks != nil
        options.perThread = threads
        options.processEvents = stacks != nil // exec events: read each program's maps while it runs
        StopSignal.install()
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        let stackCollector = try stacks.map { try StackCollector(tracer: tracer, path: $0) }
        let oomWatcher = oom ? try OOMWatcher(options: options, lineage: false, existingTracer: tracer) : nil
        defer { oomWatcher?.close() }
        var oomPrinted = 0
        // Whatever ends the loop, even an error, the command does not outlive us (TracedRun's deinit).
        let run = try TracedRun(selection: selection) { try? tracer.trace(pid: $0) }
        try run.start()
        var history = TraceHistory(maxExited: maxExited)
        let period = interval?.value ?? (selection.command.isEmpty ? 1 : .infinity)
        var renderer = TableRenderer(format: format, maxRows: format == .text ? top : 0)
        let forecaster = forecast ? LiveForkForecaster(window: max(2, 2.5 * (period.isFinite ? period : 1)), pageSize: tracer.pageSize) : nil
        var printed = 0
        while true {
            StopSignal.sleep(period.isFinite ? period : 3600) {
                oomWatcher?.poll(timeoutMilliseconds: 0)
                stackCollector?.poll()
                return run.commandExited()
            }
            let finished = StopSignal.isRequested || run.commandExited()
            let isLast = finished || (count.map { printed + 1 >= $0 } ?? false)
            // The final table shows the command's end (and how it ended), not a command we are about to stop.
            if isLast { run.end() }
            run.refresh()
            let snapshot = history.merge(try tracer.snapshot(), retiringFrom: tracer)
            let table = ProcessTable(snapshot: snapshot, tier: tracer.tier, pageSize: tracer.pageSize, showsThreads: threads,
                                     earlier: history.earlier, folded: history.folded)
            if period.isFinite || isLast {
                var rendered = renderer.render(table, at: Date(), final: isLast)
                if let risks = forecaster?.update(snapshot) {
                    switch format {
                    case .text:
                        for r in risks where r.atRisk { rendered += "forecast: " + r.text + "\n" }
                    case .json:
                        // One more key in the interval's object: "forecast": every live fork.
                        if let close = rendered.lastIndex(of: "}") {
                            rendered.insert(contentsOf: ",\"forecast\":[" + risks.map(\.json).joined(separator: ",") + "]", at: close)
                        }
                    case .csv:
                        break
                    }
                }
                print(rendered, terminator: format == .text ? "\n" : "")
                fflush(stdout)
                printed += 1
                for report in (oomWatcher?.reports ?? []).dropFirst(oomPrinted) {
                    print(format == .text ? report.text() + "\n" : ((try? SnakeCaseJSON.line(report)) ?? "{}"))
                    oomPrinted += 1
                }
                fflush(stdout)
            }
            if isLast { break }
        }
        if let stackCollector, let path = stacks {
            let (n, copies) = try stackCollector.finish()
            FileHandle.standardError.write(Data("cowtrace: \(n) stacks, \(copies) copies written to \(path) (flamegraph.pl \(path) > copies.svg)\n".utf8))
        }
        // Like time(1): a command that failed on its own makes cowtrace fail too.
        try run.finish()
    }
}
