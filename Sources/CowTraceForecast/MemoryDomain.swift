import CowTraceFormat
import CowTraceKit
import Foundation

/// The memory that runs out first for a process: the memory cgroup among
/// its ancestors with the least left under its limit, or the host.
public struct MemoryDomain: Sendable, Equatable {
    /// The cgroup path ("/system.slice/redis.service"), or nil for the host.
    public var cgroup: String?
    /// memory.max (v2), memory.limit_in_bytes (v1), or the host's MemTotal.
    public var limitBytes: UInt64
    /// memory.current / memory.usage_in_bytes, or MemTotal − MemAvailable.
    public var usageBytes: UInt64
    /// Swap the domain may still use: memory.swap.max − memory.swap.current
    /// (v2), memsw − limit (v1), capped by the host's SwapFree; SwapFree for the host.
    public var swapFreeBytes: UInt64
    /// vm.overcommit_memory: 0 heuristic, 1 always, 2 never.
    public var overcommitMode: Int
    /// CommitLimit − Committed_AS (what mode 2 still lets be committed).
    public var commitHeadroomBytes: Int64

    public init(cgroup: String?, limitBytes: UInt64, usageBytes: UInt64, swapFreeBytes: UInt64,
                overcommitMode: Int, commitHeadroomBytes: Int64) {
        self.cgroup = cgroup; self.limitBytes = limitBytes; self.usageBytes = usageBytes
        self.swapFreeBytes = swapFreeBytes; self.overcommitMode = overcommitMode; self.commitHeadroomBytes = commitHeadroomBytes
    }

    /// "host" or the cgroup path.
    public var name: String { cgroup ?? "host" }

    /// What the domain has left before the OOM killer: limit − usage (+ swap
    /// it may still use); under overcommit mode 2 no more than the commit
    /// headroom. For the host, MemAvailable (which counts reclaimable page
    /// cache) + SwapFree.
    public var headroomBytes: UInt64 {
        var h = (limitBytes > usageBytes ? limitBytes - usageBytes : 0) + swapFreeBytes
        if overcommitMode == 2 { h = min(h, UInt64(max(commitHeadroomBytes, 0))) }
        return h
    }

    /// /proc/meminfo, in bytes.
    public static func meminfo(_ text: String? = readPseudoFile("/proc/meminfo")) -> [String: UInt64] {
        var out: [String: UInt64] = [:]
        for line in (text ?? "").split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard parts.count >= 2, let v = UInt64(parts[1]) else { continue }
            out[String(parts[0].dropLast())] = parts.count > 2 && parts[2] == "kB" ? v * 1024 : v
        }
        return out
    }

    public static func host() -> MemoryDomain {
        let m = meminfo()
        let total = m["MemTotal"] ?? 0, available = m["MemAvailable"] ?? 0
        let mode = readPseudoFile("/proc/sys/vm/overcommit_memory").flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        return MemoryDomain(cgroup: nil, limitBytes: total, usageBytes: total > available ? total - available : 0,
                            swapFreeBytes: m["SwapFree"] ?? 0, overcommitMode: mode,
                            commitHeadroomBytes: Int64(m["CommitLimit"] ?? 0) - Int64(m["Committed_AS"] ?? 0))
    }

    /// The domain of a process in memory cgroup `path` (nil: the host's).
    /// Every limited ancestor is looked at: the one with the least headroom wins,
    /// and the host when it has less than all of them.
    public static func of(cgroup path: String?, hierarchy: MemoryCgroupHierarchy? = .live()) -> MemoryDomain {
        let host = host()
        guard let path, let hierarchy else { return host }
        var best = host
        var current = path
        while true {
            if let dir = hierarchy.directory(of: current),
               let limit = hierarchy.limitBytes(ofCgroup: current),
               let usage = readPseudoFile(dir + "/" + hierarchy.usageFile).flatMap({ UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) {
                var swap: UInt64 = 0
                if hierarchy.version == .v2 {
                    let max = readPseudoFile(dir + "/memory.swap.max").flatMap(MemoryCgroupHierarchy.parseLimit)
                    let used = readPseudoFile(dir + "/memory.swap.current").flatMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
                    if FileManager.default.fileExists(atPath: dir + "/memory.swap.max") {
                        swap = max.map { $0 > used ? $0 - used : 0 } ?? host.swapFreeBytes
                    }
                } else if let memsw = readPseudoFile(dir + "/memory.memsw.limit_in_bytes").flatMap(MemoryCgroupHierarchy.parseLimit) {
                    swap = memsw > limit ? memsw - limit : 0
                }
                let domain = MemoryDomain(cgroup: current, limitBytes: limit, usageBytes: usage,
                                          swapFreeBytes: min(swap, host.swapFreeBytes), overcommitMode: host.overcommitMode,
                                          commitHeadroomBytes: host.commitHeadroomBytes)
                if domain.headroomBytes < best.headroomBytes { best = domain }
            }
            guard current != "/", let slash = current.lastIndex(of: "/") else { break }
            current = slash == current.startIndex ? "/" : String(current[..<slash])
        }
        return best
    }

    /// The processes charged to this domain: the cgroup's and its
    /// descendants' (or every process for the host).
    public func memberPIDs(hierarchy: MemoryCgroupHierarchy? = .live()) -> [Int32] {
        if let cgroup, let dir = hierarchy?.directory(of: cgroup), let members = try? CgroupMembers(path: dir) {
            return members.pids()
        }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return names.compactMap { Int32($0) }
    }
}
