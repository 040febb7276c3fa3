import CowTraceFormat
import CowTraceRedis
import ArgumentParser
import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct ForkProfile: ParsableCommand, OptionChecks {
    static let configuration = CommandConfiguration(
        commandName: "fork-profile",
        abstract: "Profile the snapshot children a process forks: what each fork copied, and when.",
        discussion: """
            Waits for the process to fork, follows the child until it exits or execs and \
            prints, every interval, the pages the parent and the child copied and the MiB \
            copied so far; then the total, the busiest interval and the fork latency (the \
            parent's time in the fork syscall). Made for processes that fork a child to \
            work on a snapshot of their memory (Redis, Valkey, KeyDB). While one child is profiled, the parent's copies are all \
            counted against it, even if it has other children alive.

            Examples:
              cowtrace fork-profile -p 4242          profile pid 4242's next fork
              cowtrace fork-profile -p 4242 --count 3 --interval 250ms
              cowtrace fork-profile -p 4242 --format json --timeout 60
            """
    )

    @Option(name: .shortAndLong, help: "The process whose forks to profile.")
    var pid: Int32

    @Option(help: ArgumentHelp("Time between timeline rows: 250ms, 2s (a bare number is seconds).", valueName: "time"))
    var interval: Seconds = "1s"

    @Option(help: "Profile this many forks, one after the other, then stop.")
    var count: Int = 1

    @Option(help: ArgumentHelp("Give up when the process has not forked after this long: 60 (seconds), 90s, 2m (0: wait forever).", valueName: "time"))
    var timeout: Seconds = "0"

    @Option(name: .customLong("format"), help: "Output format: text (timeline and summary) or json (one object per fork).")
    var formatChoice: FormatChoice<TextOrJSON> = .text
    var format: OutputFormat { formatChoice.format }

    @OptionGroup var tierOptions: TierOptions

    func checkOptions() throws {
        if pid <= 0 { throw ValidationError("a pid must be a positive number") }
        try TimeOption.check(interval, "--interval")
        if count <= 0 { throw ValidationError("--count must be at least 1") }
        try TimeOption.check(timeout, "--timeout", zeroMeans: "wait forever")
    }

    func run() throws {
        do { try profile() } catch { throw cliError(error) }
    }

    private func profile() throws {
        var options = tierOptions.tracerOptions()
        options.selection.pids = [pid]
        options.forkLineage = true
        StopSignal.install()
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        let profiler = ForkProfiler(tracer: tracer, parent: pid)
        let text = format == .text
        // In JSON mode the banner goes to stderr, so that stdout is only JSON.
        let banner = "cowtrace: waiting for pid \(pid) to fork (Ctrl-C to stop), \(tracer.tier) tier\n"
        if text { print(banner, terminator: ""); fflush(stdout) } else { FileHandle.standardError.write(Data(banner.utf8)) }
        for n in 0..<count {
            guard let child = try profiler.waitForFork(timeoutSeconds: timeout.value > 0 ? timeout.value : nil, shouldStop: { StopSignal.isRequested }) else {
                if StopSignal.isRequested { return }
                if kill(pid, 0) != 0 && errno == ESRCH {
                    throw CLIError(description: "pid \(pid) exited after \(n) of \(count) forks")
                }
                throw CLIError(description: "pid \(pid) did not fork within \(String(format: "%g", timeout.value)) s: raise --timeout, or check that it forks")
            }
            if text {
                print("\(n > 0 ? "\n" : "")fork: child \(child)\n" + ForkProfileText.timelineHeader)
                fflush(stdout)
            }
            let profile = try profiler.follow(child: child, intervalSeconds: interval.value,
                                              shouldStop: { StopSignal.isRequested }) { sample in
                guard text else { return }
                print(ForkProfileText.row(sample))
                fflush(stdout)
            }
            if text {
                print("")
                ForkProfileText.summary(profile).forEach { print($0) }
            } else {
                print(try SnakeCaseJSON.line(profile))
            }
            fflush(stdout)
            if StopSignal.isRequested { return }
        }
    }
}
