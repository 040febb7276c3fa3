import CowTraceFormat
import ArgumentParser
import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Hist: ParsableCommand, OptionChecks {
    static let configuration = CommandConfiguration(
        commandName: "hist",
        abstract: "Print per-process log2 histograms of copy-on-write faults, bucketed in the kernel.",
        discussion: """
            Histograms, per process:
              copy-latency         ns spent in the write-protect fault, faults that copied.
                                   Needs a tier that sees the fault return (fentry or
                                   kprobe); the tracepoint tier cannot, and says so.
              copies-per-interval  copies per --burst-interval in which the process copied
                                   (burst size): a BGSAVE child shows large bursts.
              offset-in-MAPPING    write-protect faults by the mapping they hit (heap,
                                   stack, anon-mmap, file-private, shared), valued by
                                   the fault's offset into that mapping, in bytes.

            Examples:
              cowtrace hist -c redis-cli bgsave        histograms of a command, at its end
              cowtrace hist -p 1234 5 3                every 5 s, three times
              cowtrace hist --all --format json 10 1   one JSON object after 10 s
            """
    )

    @OptionGroup var tierOptions: TierOptions

    @Option(help: "Output format: text (bcc layout), json (one object per interval) or csv.")
    var format: OutputFormat = .text

    @Option(help: ArgumentHelp("Interval of the copies-per-interval histogram: 100ms, 1s (a bare number is seconds).", valueName: "time"))
    var burstInterval: Seconds = "100ms"

    @Flag(help: "Leave out the offset-in-MAPPING histograms: on the tracepoint tier they cost a VMA lookup (about 1 µs) per write-protect fault.")
    var noMapping = false

    @Argument(help: "Time between prints: 5 (seconds), 500ms, 2m (default: 1 s, or only at the end with -c).")
    var interval: Seconds?

    @Argument(help: "Stop after this many prints.")
    var count: Int?

    @OptionGroup var selection: SelectionOptions

    func checkOptions() throws {
        try selection.requireSelection()
        try TimeOption.check(interval, "interval")
        if let count, count <= 0 { throw ValidationError("count must be at least 1") }
        try TimeOption.check(burstInterval, "--burst-interval")
    }

    func run() throws {
        do { try trace() } catch let e as ExitCode { throw e } catch { throw cliError(error) }
    }

    private func trace() throws {
        var options = tierOptions.tracerOptions()
        options.histograms = true
        options.mappingHistograms = !noMapping
        options.burstIntervalNanoseconds = max(1, UInt64((burstInterval.value * 1e9).rounded()))
        selection.apply(to: &options)
        StopSignal.install()
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        let run = try TracedRun(selection: selection) { try? tracer.trace(pid: $0) }
        try run.start()
        if !tracer.tier.seesFaultReturn, format == .text {
            FileHandle.standardError.write(Data("cowtrace: the \(tracer.tier) tier cannot see a fault return: no copy-latency histogram (the fentry and kprobe tiers have it)\n".utf8))
        }
        let period = interval?.value ?? (selection.command.isEmpty ? 1 : .infinity)
        var renderer = HistogramRenderer(format: format)
        var printed = 0
        while true {
            StopSignal.sleep(period.isFinite ? period : 3600) { run.commandExited() }
            let finished = StopSignal.isRequested || run.commandExited()
            run.refresh()
            let isLast = finished || (count.map { printed + 1 >= $0 } ?? false)
            if isLast { run.end() }
            if period.isFinite || isLast {
                let histograms = try tracer.histograms()
                var out = renderer.render(histograms, at: Date())
                if format == .text && out.isEmpty { out = "(no write-protect faults yet)\n" }
                print(out, terminator: "")
                let drops = try tracer.drops()
                if drops.total > 0 && format == .text {
                    print("LOST: \(drops.histogramMapFull) histogram updates (map full: raise --max-processes), \(drops.processMapFull) processes not counted, \(drops.vmaLookupBusy) faults left out of the mapping histograms (VMA lookup refused: another BPF tool was looking VMAs up)")
                }
                fflush(stdout)
                printed += 1
            }
            if isLast { break }
        }
        try run.finish()
    }
}
