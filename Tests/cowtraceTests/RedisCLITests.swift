import CowTraceRedis
import CowTraceKit
import CowTraceTestSupport
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `cowtrace redis` and `cowtrace fork-profile` end to end, against a real
/// redis-server doing a real BGSAVE while the test rewrites keys in place.
final class RedisCLITests: XCTestCase {
    /// The workload: 100k keys of 1 KiB (jemalloc puts each value in a
    /// 1280-byte slot), and SETRANGE key:i 0 X on the first quarter during
    /// the save. Each write lands in one page, and consecutive values share
    /// pages, so the parent copies about 25000 * 1280 / 4096 pages.
    static let keys = 100_000
    static let valueBytes = 1024
    static let rewritten = 25_000
    static var expectedParentCopies: Double { Double(rewritten) * 1280 / 4096 }

    /// cowtrace's copies (parent + child) against rdb_last_cow_size: within
    /// 5% or 1 MiB, whichever is larger. Both count the same pages (each
    /// parent copy makes the old page private to the child); what separates
    /// them is the child's own fresh allocations (rio buffers, stack: in
    /// Private_Dirty, never a copy fault) and Redis sampling Private_Dirty
    /// at the end of the save rather than at exit. Measured: under 1%.
    static let cowTolerance = (fraction: 0.05, floorBytes: 1.0 * 1_048_576)
    /// cowtrace's fork latency (time in the clone syscall) against
    /// latest_fork_usec (Redis's wall time around fork(), at-fork handlers
    /// included): within a factor of 2 either way. Measured: 0.79 to 0.99x.
    static let forkLatencyFactor = 2.0

    final class Running {
        let process = Process()
        let out = Pipe(), err = Pipe()

        func finish() -> (status: Int32, stdout: String, stderr: String) {
            let stdout = out.fileHandleForReading.readDataToEndOfFile()
            let stderr = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
        }

        /// Reads stdout until a line contains `text`; returns what was read.
        func readUntil(_ text: String, seconds: Double = 30) -> String {
            var seen = ""
            let deadline = Date().addingTimeInterval(seconds)
            while !seen.contains(text) && Date() < deadline && process.isRunning {
                seen += String(decoding: out.fileHandleForReading.availableData, as: UTF8.self)
            }
            return seen
        }
    }

    private func start(_ arguments: [String], environment: [String: String] = [:]) throws -> Running {
        let r = Running()
        r.process.executableURL = builtProductsDirectory().appendingPathComponent("cowtrace")
        r.process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["REDISCLI_AUTH"] = nil
        r.process.environment = env.merging(environment) { $1 }
        r.process.standardOutput = r.out
        r.process.standardError = r.err
        try r.process.run()
        addTeardownBlock { if r.process.isRunning { r.process.terminate(); r.process.waitUntilExit() } }
        return r
    }

    private func cowtrace(_ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        try start(arguments, environment: environment).finish()
    }

    private func assertOneLineError(_ r: (status: Int32, stdout: String, stderr: String), _ text: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNotEqual(r.status, 0, "must fail", file: file, line: line)
        let errors = r.stderr.split(separator: "\n").filter { $0.hasPrefix("Error:") }
        XCTAssertEqual(errors.count, 1, "one Error: line in \(r.stderr)", file: file, line: line)
        XCTAssertTrue(r.stderr.contains(text), "stderr was: \(r.stderr)", file: file, line: line)
    }

    /// Rewrites the first `rewritten` values in place, in pipelined batches.
    private func rewriteKeys(_ server: RedisTestServer) throws {
        let client = try server.client()
        for batch in stride(from: 0, to: Self.rewritten, by: 1000) {
            let replies = try client.pipeline((batch..<min(batch + 1000, Self.rewritten)).map { ["SETRANGE", "key:\($0)", "0", "X"] })
            XCTAssertTrue(replies.allSatisfy { $0 == .integer(Int64(Self.valueBytes)) }, "SETRANGE must keep the length: \(replies.first!)")
        }
    }

    private func prepare() throws -> RedisTestServer {
        let server = try RedisTestServer(self)
        try server.fill(keys: Self.keys, valueBytes: Self.valueBytes)
        // A 1 us sleep on one key in three: the save lasts a few seconds.
        try server.client().command(["CONFIG", "SET", "rdb-key-save-delay", "-3"])
        return server
    }

    func testTriggeredBGSaveMatchesRedisOwnFigures() throws {
        try requireBPF()
        let server = try prepare()
        let run = try start(["redis", "--port", "\(server.port)", "--trigger", "--interval", "250ms", "--format", "json"])
        XCTAssertTrue(try server.waitFor("rdb_bgsave_in_progress", 1), "cowtrace did not start a BGSAVE")
        try rewriteKeys(server)
        let stillSaving = try server.client().info("persistence").integer("rdb_bgsave_in_progress") == 1
        let r = run.finish()
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(stillSaving, "the save ended before the writes did: raise rdb-key-save-delay")
        let report = try decodeSnakeCaseJSON(RedisForkReport.self, r.stdout)
        let redis = try XCTUnwrap(report.redis, "no comparison: \(r.stdout)")
        let persistence = try server.client().info("persistence")
        let stats = try server.client().info("stats")

        XCTAssertEqual(report.redisPid, server.pid)
        // The fork-risk forecast of the save: this host has GiBs to spare, so
        // it fits; the headroom is the host's MemAvailable + SwapFree (read
        // here, 10 % slack: the host's use moves), the shared bytes at most
        // Redis's anonymous rss (its /proc status).
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let forecast = try XCTUnwrap(object["forecast"] as? [String: Any], "no forecast: \(r.stdout.suffix(300))")
        XCTAssertEqual(forecast["parent_pid"] as? Int, Int(server.pid))
        XCTAssertEqual(forecast["at_risk"] as? Bool, false)
        let meminfo = try String(contentsOfFile: "/proc/meminfo", encoding: .utf8)
        func kB(_ key: String) -> Double { Double(meminfo.split(separator: "\n").first { $0.hasPrefix(key + ":") }?.split(separator: " ")[1] ?? "0").map { $0 * 1024 } ?? 0 }
        if forecast["domain"] as? String == "host" {
            XCTAssertEqual(Double(try XCTUnwrap(forecast["headroom_bytes"] as? UInt64)), kB("MemAvailable") + kB("SwapFree"),
                           accuracy: (kB("MemAvailable") + kB("SwapFree")) * 0.1)
        }
        let status = try String(contentsOfFile: "/proc/\(server.pid)/status", encoding: .utf8)
        let rssAnon = Double(status.split(separator: "\n").first { $0.hasPrefix("RssAnon:") }?.split(whereSeparator: \.isWhitespace)[1] ?? "0")! * 1024
        let shared = Double(try XCTUnwrap(forecast["shared_bytes"] as? UInt64))
        XCTAssertGreaterThan(shared, 0)
        XCTAssertLessThanOrEqual(shared, rssAnon * 1.1, "shared bytes vs redis-server's RssAnon")
        XCTAssertEqual(report.profile.endedBy, .exit)
        XCTAssertEqual(report.profile.childExitCode, 0)
        XCTAssertEqual(redis.saveStatus, "ok")
        XCTAssertEqual(redis.redisField, "rdb_last_cow_size")
        XCTAssertEqual(redis.redisCowBytes, UInt64(try XCTUnwrap(persistence.integer("rdb_last_cow_size"))), "the figure Redis reports now")
        XCTAssertEqual(redis.latestForkMicroseconds, UInt64(try XCTUnwrap(stats.integer("latest_fork_usec"))))
        XCTAssertFalse(report.profile.samples.isEmpty)
        XCTAssertEqual(report.profile.samples.last?.bytesCopiedSoFar, report.profile.bytesCopied)
        // The child exits without exec: its own copies (its heap, its rio
        // buffers: a few dozen pages) must survive its exit, the timeline
        // must add up to the totals, and the cumulative figure never drops.
        XCTAssertGreaterThan(report.profile.childCopies, 0, "the save child's own copies were lost at its exit")
        XCTAssertEqual(report.profile.samples.reduce(0) { $0 + $1.childCopies }, report.profile.childCopies)
        XCTAssertEqual(report.profile.samples.reduce(0) { $0 + $1.parentCopies }, report.profile.parentCopies)
        let cumulative = report.profile.samples.map(\.bytesCopiedSoFar)
        XCTAssertEqual(cumulative, cumulative.sorted(), "bytes copied so far must never decrease")

        // The workload's own expectation, independent of Redis's figure.
        XCTAssertEqual(Double(report.profile.parentCopies), Self.expectedParentCopies, accuracy: Self.expectedParentCopies * 0.15,
                       "parent copies for \(Self.rewritten) rewritten values")
        XCTAssertGreaterThan(redis.redisCowBytes, 25 << 20, "Redis saw the copy-on-write too")

        let tolerance = max(Double(redis.redisCowBytes) * Self.cowTolerance.fraction, Self.cowTolerance.floorBytes)
        XCTAssertEqual(Double(redis.cowtraceCowBytes), Double(redis.redisCowBytes), accuracy: tolerance,
                       "cowtrace \(redis.cowtraceCowBytes) B vs rdb_last_cow_size \(redis.redisCowBytes) B")

        let ours = try XCTUnwrap(redis.cowtraceForkMicroseconds, "fork latency unknown")
        let theirs = Double(try XCTUnwrap(redis.latestForkMicroseconds))
        XCTAssertGreaterThan(theirs, 0)
        XCTAssertLessThanOrEqual(ours, theirs * Self.forkLatencyFactor, "fork latency \(ours) us vs latest_fork_usec \(theirs)")
        XCTAssertGreaterThanOrEqual(ours, theirs / Self.forkLatencyFactor, "fork latency \(ours) us vs latest_fork_usec \(theirs)")
        print(String(format: "redis BGSAVE: cowtrace %.2f MiB (parent %llu, child %llu pages) vs rdb_last_cow_size %.2f MiB (%+.2f%%); fork %.0f us vs latest_fork_usec %.0f us",
                     Double(redis.cowtraceCowBytes) / 1_048_576, report.profile.parentCopies, report.profile.childCopies,
                     Double(redis.redisCowBytes) / 1_048_576, redis.differencePercent ?? 0, ours, theirs))
    }

    /// redis-benchmark (a real client load, not in-place rewrites) during a
    /// triggered BGSAVE, text output: the CHILD column adds up to the
    /// summary's child figure (the save child's own copies survive its
    /// exit), and COPIED(MiB) never goes down.
    func testRedisBenchmarkDuringTheSaveKeepsEveryFigure() throws {
        try requireBPF()
        guard let benchmark = ["/usr/bin/redis-benchmark", "/usr/local/bin/redis-benchmark"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("redis-benchmark is not installed: run scripts/setup (apt-get install redis-tools)")
        }
        let server = try prepare()
        let run = try start(["redis", "--port", "\(server.port)", "--trigger", "--interval", "100ms"])
        XCTAssertTrue(try server.waitFor("rdb_bgsave_in_progress", 1), "cowtrace did not start a BGSAVE")
        let load = Process()
        load.executableURL = URL(fileURLWithPath: benchmark)
        load.arguments = ["-h", "127.0.0.1", "-p", "\(server.port)", "-t", "set", "-n", "50000", "-r", "\(Self.keys)", "-d", "\(Self.valueBytes)", "-q"]
        load.standardOutput = FileHandle.nullDevice
        load.standardError = FileHandle.nullDevice
        try load.run()
        load.waitUntilExit()
        XCTAssertEqual(load.terminationStatus, 0, "redis-benchmark failed")
        let r = run.finish()
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        let rows = lines.map { $0.split(separator: " ", omittingEmptySubsequences: true) }
            .filter { $0.count == 4 && $0[0].hasSuffix("s") && Double($0[0].dropLast()) != nil }
        XCTAssertGreaterThan(rows.count, 1, r.stdout)
        let summary = try XCTUnwrap(lines.first { $0.hasPrefix("copied:") }, r.stdout)
        let child = try XCTUnwrap(summary.split(separator: "child ").last?.split(separator: ")").first.flatMap { Int($0) }, String(summary))
        let parent = try XCTUnwrap(summary.split(separator: "parent ").last?.split(separator: ",").first.flatMap { Int($0) }, String(summary))
        XCTAssertGreaterThan(child, 0, "the save child's own copies were lost at its exit: \(summary)")
        XCTAssertEqual(rows.compactMap { Int($0[2]) }.reduce(0, +), child, r.stdout)
        XCTAssertEqual(rows.compactMap { Int($0[1]) }.reduce(0, +), parent, r.stdout)
        let mib = rows.compactMap { Double($0[3]) }
        XCTAssertEqual(mib, mib.sorted(), "COPIED(MiB) must never decrease:\n\(r.stdout)")
        // SET gives each value a fresh allocation: what the parent copies is
        // the dict and the pages jemalloc reuses (measured: a few hundred).
        XCTAssertGreaterThan(parent, 0, "redis-benchmark's SETs during the save must copy pages: \(summary)")
    }

    /// Without --trigger: waits for the BGSAVE someone else starts; text output.
    func testWaitsForTheNextBGSaveAndPrintsTheComparison() throws {
        try requireBPF()
        let server = try prepare()
        let run = try start(["redis", "--pid", "\(server.pid)", "--interval", "500ms", "--timeout", "60"])
        let banner = run.readUntil("waiting for redis-server")
        XCTAssertTrue(banner.contains("pid \(server.pid) (port \(server.port))"), banner)
        try server.client().bgsave()
        XCTAssertTrue(try server.waitFor("rdb_bgsave_in_progress", 1))
        try rewriteKeys(server)
        let r = run.finish()
        XCTAssertEqual(r.status, 0, r.stderr)
        let text = banner + r.stdout
        for expected in ["ELAPSED", "PARENT", "CHILD", "COPIED(MiB)", "copied:", "fork latency:", "rdb_last_cow_size", "latest_fork_usec", "difference"] {
            XCTAssertTrue(text.contains(expected), "missing \(expected) in:\n\(text)")
        }
    }

    /// The generic command on the same workload: no Redis comparison.
    func testForkProfileFollowsAnySnapshotChild() throws {
        try requireBPF()
        let server = try prepare()
        let run = try start(["fork-profile", "-p", "\(server.pid)", "--interval", "500ms", "--timeout", "60"])
        _ = run.readUntil("waiting for pid")
        try server.client().bgsave()
        XCTAssertTrue(try server.waitFor("rdb_bgsave_in_progress", 1))
        try rewriteKeys(server)
        let r = run.finish()
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stdout.contains("rdb_last_cow_size"), r.stdout)
        let line = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("copied:") }, r.stdout)
        // "copied:        31.8 MiB (8128 pages: parent 8106, child 22)"
        let parent = try XCTUnwrap(line.split(separator: "parent ").last?.split(separator: ",").first.flatMap { Double($0) }, String(line))
        XCTAssertEqual(parent, Self.expectedParentCopies, accuracy: Self.expectedParentCopies * 0.15, String(line))
        XCTAssertTrue(r.stdout.contains("exited with status 0"), r.stdout)
    }

    // MARK: bad input: one line each

    func testNoRedisAtThatPort() throws {
        let port = try freeLoopbackPort()
        assertOneLineError(try cowtrace(["redis", "--port", "\(port)", "--trigger"]),
                           "no Redis listening on 127.0.0.1:\(port): start redis-server or pass --port")
    }

    func testPidThatIsNotRedisServer() throws {
        assertOneLineError(try cowtrace(["redis", "--pid", "\(getpid())"]), "pid \(getpid()) is not redis-server (it is ")
    }

    func testBGSaveAlreadyRunning() throws {
        let server = try RedisTestServer(self)
        try server.fill(keys: 20000, valueBytes: 100)
        try server.client().command(["CONFIG", "SET", "rdb-key-save-delay", "1000"])
        try server.client().bgsave()
        assertOneLineError(try cowtrace(["redis", "--port", "\(server.port)", "--trigger"]),
                           "a background save is already in progress on Redis at 127.0.0.1:\(server.port)")
    }

    func testRedisThatRefusesTheCommand() throws {
        let server = try RedisTestServer(self, extraArguments: ["--requirepass", "sesame"])
        assertOneLineError(try cowtrace(["redis", "--port", "\(server.port)", "--trigger"]),
                           "Redis at 127.0.0.1:\(server.port) refused INFO: NOAUTH")
    }

    func testNoForkWithinTheTimeout() throws {
        try requireBPF()
        let server = try RedisTestServer(self)
        assertOneLineError(try cowtrace(["redis", "--port", "\(server.port)", "--timeout", "1"]),
                           "redis-server pid \(server.pid) did not fork within 1 s")
    }

    func testHelpTeachesWithExamples() throws {
        for command in ["redis", "fork-profile"] {
            let r = try cowtrace([command, "--help"])
            XCTAssertEqual(r.status, 0)
            XCTAssertTrue(r.stdout.contains("Examples:") && r.stdout.contains("cowtrace \(command) "), r.stdout)
        }
    }
}
