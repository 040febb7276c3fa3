import ArgumentParser
import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Record: ParsableCommand, OptionChecks {
    static let configuration = CommandConfiguration(
        commandName: "record",
        abstract: "Record every traced fault, fork, exec, exit, address-space change and OOM kill to a file.",
        discussion: """
            The file (format: docs/trace-format.md) is written in checksummed blocks, a \
            complete block at least every --flush-interval, so a recorder killed with \
            SIGKILL leaves a file that reads back up to its last block. Events the kernel \
            could not hand over (ring buffer full) are written as gaps with their count.

            Then:
              cowtrace report FILE     the recorded per-process totals
              cowtrace replay FILE     the same run through the simulated MMU
              cowtrace check FILE      the kernel's classes against the model's, per fault

            Examples:
              cowtrace record -o bgsave.ctr -c redis-cli bgsave
              cowtrace record -o web.ctr -p 1234 --duration 30s
              cowtrace record -o all.ctr --all --duration 10
            """
    )

    @Option(name: .shortAndLong, help: ArgumentHelp("The recording to write.", valueName: "file"))
    var output: String

    @Flag(help: "Overwrite the output file if it exists.")
    var force = false

    @Option(help: ArgumentHelp("Stop after this long: 30 (seconds), 500ms, 2m, 1h. Default: until the command exits, or Ctrl-C.", valueName: "time"))
    var duration: Seconds?

    @Option(help: ArgumentHelp("Kernel ring buffers in MiB (a power of two), split over the CPUs: one ring each, at least 1 MiB.", valueName: "MiB"))
    var ringBufferMib: UInt32 = 64

    @Option(help: ArgumentHelp("Time between complete blocks on disk (what a crash can lose): 0.25 (seconds), 250ms, 1s.", valueName: "time"))
    var flushInterval: Seconds = "0.25"

    @Flag(help: "Do not record OOM kills.")
    var noOom = false

    @OptionGroup var tierOptions: TierOptions

    @OptionGroup var selection: SelectionOptions

    func checkOptions() throws {
        try selection.requireSelection()
        try TimeOption.check(duration, "--duration")
        try OutputPath.checkOverwrite(output, "-o", force: force)
        if ringBufferMib == 0 || ringBufferMib & (ringBufferMib - 1) != 0 || ringBufferMib > 1024 {
            throw ValidationError("--ring-buffer-mib \(ringBufferMib): expected a power of two from 1 to 1024")
        }
        try TimeOption.check(flushInterval, "--flush-interval")
    }

    func run() throws {
        do { try record() } catch let e as ExitCode { throw e } catch { throw cliError(error) }
    }

    private func record() throws {
        var options = RecorderOptions(path: output)
        options.tracer = {
            var t = tierOptions.tracerOptions()
            t.emitEvents = true
            t.recordAddressSpace = true
            t.eventsWithoutWakeup = true
            t.ringBufferBytes = ringBufferMib << 20
            selection.apply(to: &t)
            return t
        }()
        options.overwrite = force
        options.flushIntervalSeconds = flushInterval.value
        options.recordOOMKills = !noOom
        options.selectionDescription = selection.summary
        StopSignal.install()
        let recorder = try TraceRecorder(options: options)
        let run = try TracedRun(selection: selection) { try? recorder.trace(pid: $0) }
        try run.start()
        let deadline = duration.map { DispatchTimeShim.now() + $0.value }
        var reason = "interrupted"
        FileHandle.standardError.write(Data("cowtrace: recording to \(output) (tier: \(recorder.tier)); Ctrl-C to stop\n".utf8))
        if recorder.initialSnapshot.processes > 0 {
            FileHandle.standardError.write(Data("cowtrace: initial snapshot: \(recorder.initialSnapshot.text)\n".utf8))
        }
        while true {
            if StopSignal.isRequested { reason = "signal"; break }
            if run.commandExited() { reason = "command exited"; break }
            if let deadline, DispatchTimeShim.now() >= deadline { reason = "duration"; break }
            try recorder.pump(waitMilliseconds: 5)
            run.refresh()
        }
        // The command's exit is part of the recording.
        run.end()
        let summary = try recorder.finish(reason: reason)
        let mib = Double(summary.bytes) / 1_048_576
        var line = String(format: "cowtrace: %@: %llu records, %.1f MiB, %.1f s (%@)", output, summary.records, mib, summary.seconds, reason)
        line += summary.lostEvents == 0 ? ", no events lost" : ", \(summary.lostEvents) EVENTS LOST (recorded as gaps; raise --ring-buffer-mib)"
        FileHandle.standardError.write(Data((line + "\n").utf8))
        try run.finish()
    }
}
