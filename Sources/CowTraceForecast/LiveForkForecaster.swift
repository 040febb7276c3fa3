import CowTraceFormat
import CowTraceKit
import Foundation
import MMUSim

/// One live fork whose child has not exec'd, seen against its memory domain.
public struct ForkRisk: Sendable, Equatable {
    public var parentPID: Int32
    public var childPID: Int32
    /// "host" or the cgroup path of the domain that runs out first.
    public var domain: String
    /// An upper bound on what the pair can still copy: the child's resident
    /// anonymous pages less those either side copied since the fork. Loose
    /// with several children of one parent (each is counted as if alone) and
    /// when the child allocated pages of its own.
    public var sharedBytes: UInt64
    public var headroomBytes: UInt64
    /// Bytes copied per second by the pair over the recent window.
    public var copyBytesPerSecond: Double
    /// headroom / rate, when the rate is above zero.
    public var secondsToExhaustion: Double?
    /// Shared bytes exceed the headroom: the OOM killer acts if the pair goes on writing.
    public var atRisk: Bool
    /// The domain's process with the highest oom_badness now (MMUSim's rule; a tie goes to the later pid).
    public var likelyVictimPID: Int32?
    public var likelyVictimComm: String?
}

/// Follows the forks of a traced snapshot from interval to interval:
/// remembers each pair when first seen (the parent's copies then), keeps a
/// short window of the pair's copies for the rate, and reads the domain's
/// limits and processes from /proc and the cgroup files at each update.
public final class LiveForkForecaster {
    struct Pair {
        var parent: Int32
        var parentCopiesAtFork: UInt64
        var samples: [(time: Double, copied: UInt64)] = []
    }
    private var pairs: [Int32: Pair] = [:]
    public let window: Double
    let pageSize: UInt64
    /// Name each fork's likely OOM victim: reads the status of every process
    /// in the domain (for the host, all of /proc) at each update. Off where
    /// the victim is not shown (serve's gauges), so a scrape stays cheap.
    public let likelyVictims: Bool

    public init(window: Double = 2, pageSize: UInt64 = 4096, likelyVictims: Bool = true) {
        self.window = window
        self.pageSize = pageSize
        self.likelyVictims = likelyVictims
    }

    public func update(_ snapshot: TraceSnapshot, now: Double = Double(DispatchTime.now().uptimeNanoseconds) / 1e9) -> [ForkRisk] {
        let copied = { (c: ProcessCounters) in c.copies + c.fileCopies }
        var live = Set<Int32>()
        var risks: [ForkRisk] = []
        var domains: [String: (MemoryDomain, [ProcessMemory])] = [:]
        for (pid, info) in snapshot.info.sorted(by: { $0.key < $1.key }) where !info.exited {
            guard let c = snapshot.counters[pid], c.execs == 0,
                  let parentInfo = snapshot.info[info.ppid], !parentInfo.exited,
                  let parentCounters = snapshot.counters[info.ppid] else { continue }
            live.insert(pid)
            if pairs[pid]?.parent != info.ppid {
                pairs[pid] = Pair(parent: info.ppid, parentCopiesAtFork: copied(parentCounters))
            }
            var pair = pairs[pid]!
            let pairCopied = copied(c) + (copied(parentCounters) &- pair.parentCopiesAtFork)
            pair.samples.append((now, pairCopied))
            let window = self.window
            pair.samples.removeAll { now - $0.time > window && $0.time != now }
            pairs[pid] = pair
            guard let child = ProcessMemory.read(pid: pid, smaps: false) else { continue }
            let key = child.memoryCgroup ?? "host"
            if domains[key] == nil {
                let d = MemoryDomain.of(cgroup: child.memoryCgroup)
                domains[key] = (d, likelyVictims ? d.memberPIDs().compactMap { ProcessMemory.read(pid: $0, smaps: false) } : [])
            }
            let (domain, members) = domains[key]!
            let shared = child.anonBytes > pairCopied * pageSize ? child.anonBytes - pairCopied * pageSize : 0
            var rate = 0.0
            if let first = pair.samples.first, let last = pair.samples.last, last.time > first.time {
                rate = Double(last.copied &- first.copied) * Double(pageSize) / (last.time - first.time)
            }
            let headroom = domain.headroomBytes
            let victim = members.isEmpty ? nil : Self.likelyVictim(members, totalPages: Int((domain.limitBytes + domain.swapFreeBytes) / pageSize), pageSize: pageSize)
            risks.append(ForkRisk(parentPID: info.ppid, childPID: pid, domain: domain.name, sharedBytes: shared,
                                  headroomBytes: headroom, copyBytesPerSecond: rate,
                                  secondsToExhaustion: rate > 0 ? Double(headroom) / rate : nil,
                                  atRisk: shared > headroom, likelyVictimPID: victim?.pid, likelyVictimComm: victim?.comm))
        }
        pairs = pairs.filter { live.contains($0.key) }
        return risks
    }

    /// select_bad_process over real processes, with MMUSim's oom_badness.
    static func likelyVictim(_ members: [ProcessMemory], totalPages: Int, pageSize: UInt64) -> ProcessMemory? {
        var chosen: ProcessMemory?
        var chosenPoints = Int.min
        for p in members.sorted(by: { $0.pid < $1.pid }) where p.pid != 1 {
            let rss = Int((p.anonBytes + p.fileBytes + p.shmemBytes) / pageSize)
            guard let points = Machine.oomBadness(rssPages: rss, swapPages: Int(p.swapBytes / pageSize),
                                                  pageTablePages: Int((p.pageTableBytes + pageSize - 1) / pageSize),
                                                  oomScoreAdj: p.oomScoreAdj, totalPages: totalPages),
                  points >= chosenPoints else { continue }
            chosen = p
            chosenPoints = points
        }
        return chosen
    }
}

extension ForkRisk {
    /// The line `stat --forecast` prints under the table.
    public var text: String {
        func mib(_ b: UInt64) -> String { String(format: "%.1f MiB", Double(b) / 1_048_576) }
        let eta = secondsToExhaustion.map { String(format: ", exhausted in %.1f s", $0) } ?? ""
        let victim = likelyVictimPID.map { " likely victim \($0) (\(likelyVictimComm ?? "?"))." } ?? ""
        return "\(atRisk ? "AT RISK" : "fits   "): fork \(parentPID) -> \(childPID) in \(domain): shared \(mib(sharedBytes)) vs headroom \(mib(headroomBytes)), copying \(mib(UInt64(copyBytesPerSecond)))/s\(eta).\(victim)"
    }

    public var json: String {
        "{\"parent_pid\":\(parentPID),\"child_pid\":\(childPID),\"domain\":\(OutputFormat.jsonString(domain)),\"shared_bytes\":\(sharedBytes),\"headroom_bytes\":\(headroomBytes),\"copy_bytes_per_second\":\(Int(copyBytesPerSecond)),\"seconds_to_exhaustion\":\(secondsToExhaustion.map { String(format: "%.3f", $0) } ?? "null"),\"at_risk\":\(atRisk),\"likely_victim_pid\":\(likelyVictimPID.map { "\($0)" } ?? "null")}"
    }
}
