import CowTraceForecast
import CowTraceFormat
import CowTraceRedis
import ArgumentParser
import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

struct Redis: ParsableCommand, OptionChecks {
    static let configuration = CommandConfiguration(
        commandName: "redis",
        abstract: "Profile a Redis BGSAVE: what its fork really copied, next to Redis's own figures.",
        discussion: """
            Attaches to a running redis-server, waits for its next fork (or starts BGSAVE \
            itself with --trigger), follows the child until it exits and prints, every \
            interval, the pages the parent and the child copied and the MiB copied so far. \
            The summary gives the total, the busiest interval and the fork latency, then \
            Redis's INFO figures for the same fork: rdb_last_cow_size (the child's peak \
            Private_Dirty) and latest_fork_usec, with the difference and what each measures.

            Redis is reached on 127.0.0.1; set REDISCLI_AUTH if it needs a password.

            Examples:
              cowtrace redis --trigger           BGSAVE on port 6379 and profile it
              cowtrace redis --pid 4242          wait for pid 4242's next fork
              cowtrace redis --port 6380 --trigger --interval 250ms --format json
            """
    )

    @Option(help: "The redis-server process to profile (its port is found from its listening sockets).")
    var pid: Int32?

    @Option(help: "The port of a Redis on 127.0.0.1 (default: 6379 when --pid is not given).")
    var port: UInt16?

    @Flag(help: "Start a BGSAVE now instead of waiting for Redis's next fork.")
    var trigger = false

    @Option(help: ArgumentHelp("Time between timeline rows: 250ms, 2s (a bare number is seconds).", valueName: "time"))
    var interval: Seconds = "1s"

    @Option(help: ArgumentHelp("Without --trigger, give up when Redis has not forked after this long: 60 (seconds), 90s, 2m (0: wait forever).", valueName: "time"))
    var timeout: Seconds = "0"

    @Option(name: .customLong("format"), help: "Output format: text (timeline, summary, comparison) or json (one object at the end).")
    var formatChoice: FormatChoice<TextOrJSON> = .text
    var format: OutputFormat { formatChoice.format }

    @OptionGroup var tierOptions: TierOptions

    func checkOptions() throws {
        if let pid, pid <= 0 { throw ValidationError("a pid must be a positive number") }
        if port == 0 { throw ValidationError("a port must be between 1 and 65535") }
        try TimeOption.check(interval, "--interval")
        try TimeOption.check(timeout, "--timeout", zeroMeans: "wait forever")
    }

    func run() throws {
        do { try profile() } catch RedisError.interrupted {
            FileHandle.standardError.write(Data("cowtrace: stopped before Redis forked\n".utf8))
        } catch let e as RedisError {
            throw CLIError(description: e.description)
        } catch { throw cliError(error) }
    }

    private func profile() throws {
        let server = try RedisServer.locate(pid: pid, port: port)
        if trigger { try server.checkNoSaveInProgress() }
        var options = tierOptions.tracerOptions()
        options.selection.pids = [server.pid]
        options.forkLineage = true
        StopSignal.install()
        let tracer = try CowTracer(options: options)
        defer { tracer.close() }
        let profiler = try RedisForkProfiler(server: server, tracer: tracer)
        let text = format == .text
        // In JSON mode the banner goes to stderr, so that stdout is only JSON.
        let banner = trigger
            ? "cowtrace: BGSAVE on redis-server pid \(server.pid) (port \(server.port)), \(tracer.tier) tier\n"
            : "cowtrace: waiting for redis-server pid \(server.pid) (port \(server.port)) to fork (Ctrl-C to stop), \(tracer.tier) tier\n"
        if text { print(banner, terminator: ""); fflush(stdout) } else { FileHandle.standardError.write(Data(banner.utf8)) }
        // The fork-risk forecast of the BGSAVE child, at every timeline row:
        // printed under the row while at risk; its riskiest reading in the summary.
        let forecaster = LiveForkForecaster(window: max(2, 2.5 * interval.value), pageSize: tracer.pageSize)
        var worst: ForkRisk?
        let report = try profiler.run(
            trigger: trigger, waitSeconds: timeout.value > 0 ? timeout.value : nil,
            intervalSeconds: interval.value,
            shouldStop: { StopSignal.isRequested },
            onFork: { child in
                guard text else { return }
                print("fork: child \(child)\n" + ForkProfileText.timelineHeader)
                fflush(stdout)
            },
            onSample: { sample in
                let risk = (try? tracer.snapshot()).flatMap { snapshot in
                    forecaster.update(snapshot).first { $0.parentPID == server.pid }
                }
                if let risk, worst.map({ Int64(risk.sharedBytes) - Int64(risk.headroomBytes) > Int64($0.sharedBytes) - Int64($0.headroomBytes) }) ?? true {
                    worst = risk
                }
                guard text else { return }
                print(ForkProfileText.row(sample))
                if let risk, risk.atRisk { print("  forecast: " + risk.text) }
                fflush(stdout)
            })
        if text {
            print("")
            ForkProfileText.summary(report.profile).forEach { print($0) }
            RedisComparisonText.lines(report.redis).forEach { print($0) }
            print("forecast:      " + (worst.map { $0.text } ?? "no reading (the child ended before the first interval)"))
        } else {
            var json = try SnakeCaseJSON.line(report)
            if let close = json.lastIndex(of: "}") {
                json.insert(contentsOf: ",\"forecast\":" + (worst?.json ?? "null"), at: close)
            }
            print(json)
        }
    }
}
