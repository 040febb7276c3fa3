import CowTraceKit
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Redis's own account of the last fork, next to cowtrace's.
public struct RedisCowComparison: Codable, Equatable, Sendable {
    /// Which child Redis forked: "rdb" (BGSAVE), "aof" (rewrite) or "module".
    public var childType: String
    /// The INFO persistence field compared: rdb_last_cow_size, aof_last_cow_size
    /// or module_fork_last_cow_size (bytes).
    public var redisField: String
    public var redisCowBytes: UInt64
    /// Pages copied by the parent and the child while the child lived, in bytes.
    public var cowtraceCowBytes: UInt64
    /// INFO stats latest_fork_usec: the parent's wall time around fork().
    public var latestForkMicroseconds: UInt64?
    /// cowtrace's fork latency: the parent's time in the clone syscall.
    public var cowtraceForkMicroseconds: Double?
    /// rdb_last_bgsave_status (ok/err), for an rdb child.
    public var saveStatus: String?

    public init(childType: String, redisField: String, redisCowBytes: UInt64, cowtraceCowBytes: UInt64,
                latestForkMicroseconds: UInt64?, cowtraceForkMicroseconds: Double?, saveStatus: String?) {
        self.childType = childType
        self.redisField = redisField
        self.redisCowBytes = redisCowBytes
        self.cowtraceCowBytes = cowtraceCowBytes
        self.latestForkMicroseconds = latestForkMicroseconds
        self.cowtraceForkMicroseconds = cowtraceForkMicroseconds
        self.saveStatus = saveStatus
    }

    public var differenceBytes: Int64 { Int64(bitPattern: cowtraceCowBytes) - Int64(bitPattern: redisCowBytes) }
    /// cowtrace relative to Redis, in percent; nil when Redis reports 0.
    public var differencePercent: Double? {
        redisCowBytes == 0 ? nil : Double(differenceBytes) * 100 / Double(redisCowBytes)
    }
}

/// A profiled Redis fork: the generic profile and the comparison.
public struct RedisForkReport: Codable, Equatable, Sendable {
    public var redisPid: Int32
    public var port: UInt16
    public var redisVersion: String?
    public var triggered: Bool
    public var profile: ForkProfile
    /// nil when profiling stopped before the child ended: Redis publishes
    /// its figures only when it reaps the child.
    public var redis: RedisCowComparison?
}

/// Profiles one fork of a traced redis-server (a BGSAVE it starts itself, or
/// the next fork Redis makes) and reads Redis's figures for it afterwards.
public final class RedisForkProfiler {
    public let server: RedisServer
    public let profiler: ForkProfiler
    private let client: RedisClient

    /// `tracer` must trace `server.pid` with `forkLineage` on. Forks from
    /// here on are candidates.
    public init(server: RedisServer, tracer: CowTracer) throws {
        self.server = server
        client = try server.connect()
        profiler = ForkProfiler(tracer: tracer, parent: server.pid)
    }

    /// With `trigger`, refuses to start when a save already runs, then sends
    /// BGSAVE; without, waits up to `waitSeconds` for the next fork.
    public func run(trigger: Bool, waitSeconds: Double?, intervalSeconds: Double,
                    shouldStop: @escaping () -> Bool = { false },
                    onFork: (Int32) -> Void = { _ in },
                    onSample: (ForkProfileSample) -> Void = { _ in }) throws -> RedisForkReport {
        let version = try client.info("server")["redis_version"]
        if trigger {
            if try client.info("persistence").integer("rdb_bgsave_in_progress") == 1 {
                throw RedisError.saveInProgress(host: server.host, port: server.port)
            }
            profiler.arm()
            try client.bgsave()
        }
        // Without trigger, forks count from init on: the caller may have told
        // the user "waiting" already.
        guard let child = try profiler.waitForFork(timeoutSeconds: trigger ? 10 : waitSeconds, shouldStop: shouldStop) else {
            if shouldStop() { throw RedisError.interrupted }
            throw RedisError.noFork(pid: server.pid, seconds: trigger ? 10 : waitSeconds ?? 0)
        }
        onFork(child)
        // Redis marks the child's type before it can answer another command;
        // a child already reaped (a tiny save) is taken for a BGSAVE.
        let during = try client.info("persistence")
        let childType = trigger || during.integer("rdb_bgsave_in_progress") == 1 ? "rdb"
            : during.integer("aof_rewrite_in_progress") == 1 ? "aof"
            : during.integer("module_fork_in_progress") == 1 ? "module" : "rdb"
        let profile = try profiler.follow(child: child, intervalSeconds: intervalSeconds, shouldStop: shouldStop, onSample: onSample)
        if profile.endedBy == .running {
            return RedisForkReport(redisPid: server.pid, port: server.port, redisVersion: version,
                                   triggered: trigger, profile: profile, redis: nil)
        }
        let after = try waitForParentToReap(childType: childType)
        let field = ["rdb": "rdb_last_cow_size", "aof": "aof_last_cow_size"][childType] ?? "module_fork_last_cow_size"
        guard let redisCow = after.integer(field) else { throw RedisError.missingField(section: "persistence", field: field) }
        let stats = try client.info("stats")
        let comparison = RedisCowComparison(
            childType: childType, redisField: field,
            redisCowBytes: UInt64(max(0, redisCow)),
            cowtraceCowBytes: profile.bytesCopied,
            latestForkMicroseconds: stats.integer("latest_fork_usec").map { UInt64(max(0, $0)) },
            cowtraceForkMicroseconds: profile.forkLatencyNanoseconds.map { Double($0) / 1000 },
            saveStatus: childType == "rdb" ? after["rdb_last_bgsave_status"] : nil)
        return RedisForkReport(redisPid: server.pid, port: server.port, redisVersion: version,
                               triggered: trigger, profile: profile, redis: comparison)
    }

    /// Redis reaps its child in serverCron (every 1000/hz ms) and only then
    /// publishes the child's CoW figure.
    private func waitForParentToReap(childType: String) throws -> RedisInfo {
        let flag = childType == "rdb" ? "rdb_bgsave_in_progress" : childType == "aof" ? "aof_rewrite_in_progress" : "module_fork_in_progress"
        let deadline = monotonicNanoseconds() + 5_000_000_000
        var info = try client.info("persistence")
        while info.integer(flag) == 1 && monotonicNanoseconds() < deadline {
            usleep(20_000)
            info = try client.info("persistence")
        }
        return info
    }
}

/// The text of the comparison, after the generic summary.
public enum RedisComparisonText {
    public static func lines(_ c: RedisCowComparison?) -> [String] {
        guard let c else {
            return ["", "stopped before the child ended: Redis publishes its figures only when it reaps the child, so there is nothing to compare"]
        }
        let mib = ForkProfileText.mebibytes
        var lines = ["", "compared with Redis's own figures:",
                     "                 cowtrace        Redis"]
        var cow = String(format: "copy-on-write  %8.1f MiB  %8.1f MiB (%@)", mib(c.cowtraceCowBytes), mib(c.redisCowBytes), c.redisField)
        if let pct = c.differencePercent {
            cow += String(format: "  difference %+.1f MiB (%+.1f%%)", Double(c.differenceBytes) / 1_048_576, pct)
        }
        lines.append(cow)
        let ours = c.cowtraceForkMicroseconds.map { String(format: "%8.3f ms ", $0 / 1000) } ?? "   unknown  "
        let theirs = c.latestForkMicroseconds.map { String(format: "%8.3f ms (latest_fork_usec)", Double($0) / 1000) } ?? "unknown"
        lines.append("fork latency   \(ours) \(theirs)")
        if let status = c.saveStatus, status != "ok" { lines.append("Redis reports the save failed (rdb_last_bgsave_status:\(status))") }
        lines += [
            "",
            "cowtrace counts the pages the kernel copied on write faults, in the parent and the",
            "child, from the fork to the child's exit; each parent copy leaves the old page to",
            "the child alone. Redis's \(c.redisField) is the peak of the child's summed",
            "Private_Dirty in /proc/self/smaps, sampled during the save and once at its end: it",
            "also counts pages the child dirtied by allocating (buffers, stack) and pages the",
            "parent freed, and misses copies made after its last sample.",
            "cowtrace's fork latency is the parent's time inside the fork syscall; latest_fork_usec",
            "is Redis's wall time around fork(), including the at-fork handlers of libc and jemalloc.",
        ]
        return lines
    }
}
